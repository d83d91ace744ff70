package protocol

import (
	"fmt"
	"sync"
	"time"
)

// Outbound queue sizing.
const (
	// DefaultMaxPending is the default Server.MaxPending: bytes queued per connection before Begin refuses.
	DefaultMaxPending = 8 << 20
	// DefaultWriteTimeout is the default Server.WriteTimeout.
	DefaultWriteTimeout = 10 * time.Second
	// chunkSize is the initial capacity of a pooled outbound buffer.
	chunkSize = 4 << 10
	// maxPooledChunk: larger buffers (one big message) go to the garbage collector, not back to the pool.
	maxPooledChunk = 1 << 20
	// writePiece bounds one socket write, so the write deadline measures a stall, not a large transfer.
	writePiece = 256 << 10
)

// chunk boxes a buffer so the pool stores a pointer (no allocation per Put).
type chunk struct{ b []byte }

var chunkPool = sync.Pool{New: func() any { return &chunk{b: make([]byte, 0, chunkSize)} }}

func getChunk() *chunk { return chunkPool.Get().(*chunk) }

func putChunk(c *chunk) {
	if cap(c.b) > maxPooledChunk {
		return
	}
	c.b = c.b[:0]
	chunkPool.Put(c)
}

// outbound is a connection's write queue, bounded in bytes. Encoders append to the tail buffer in place
// under mu; the writer goroutine swaps the buffer out under mu and writes it without holding mu, so a
// slow socket never blocks a publisher. An idle connection holds no buffer and runs no writer.
type outbound struct {
	mu       sync.Mutex
	q        *chunk // queued bytes; nil when nothing is queued (the buffer is back in the pool)
	inflight int    // bytes the writer is writing now
	writing  bool   // the writer goroutine is running
	closing  bool   // CloseAfter or Close was called: Begin refuses
	closed   bool

	closeReason error       // the pending CloseAfter's reason
	deadline    time.Time   // the pending CloseAfter's latest close time
	timer       *time.Timer // closes at deadline

	onDrain    func()
	onShutdown func()
}

// pendingLocked returns the bytes queued or being written.
func (o *outbound) pendingLocked() int {
	n := o.inflight
	if o.q != nil {
		n += len(o.q.b)
	}
	return n
}

// close marks the queue closed, drops what is queued and returns the pending CloseAfter reason, if any.
func (o *outbound) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closing, o.closed = true, true
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	if o.q != nil {
		putChunk(o.q)
		o.q = nil
	}
	o.onDrain, o.onShutdown = nil, nil
	return o.closeReason
}

// closeAfter stops output and arranges the close of c once flushed, no later than d from now. It
// reports whether nothing is left to flush, so the caller closes now.
func (o *outbound) closeAfter(c *Conn, reason error, d time.Duration) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	if !o.closing {
		o.closing = true
		o.closeReason = reason
	}
	if !o.writing && o.pendingLocked() == 0 {
		return true
	}
	deadline := time.Now().Add(d)
	if o.timer == nil || deadline.Before(o.deadline) {
		if o.timer != nil {
			o.timer.Stop()
		}
		o.deadline = deadline
		o.timer = time.AfterFunc(d, func() { c.Close(reason) })
	}
	return false
}

// Begin locks the outbound queue and returns its tail buffer for the caller to append to, then pass to
// Commit. It never blocks on the socket: it returns false (and leaves the queue unlocked) when the
// connection is closing or more than Server.MaxPending bytes are already queued. A message is never
// split, so one message larger than MaxPending is still accepted into an empty queue.
func (c *Conn) Begin() ([]byte, bool) {
	o := &c.out
	o.mu.Lock()
	if o.closing || o.pendingLocked() > c.srv.maxPending() {
		o.mu.Unlock()
		return nil, false
	}
	if o.q == nil {
		o.q = getChunk()
	}
	return o.q.b, true
}

// Commit stores b, the buffer returned by Begin with bytes appended, unlocks the queue and starts the
// writer if it is not running. It must follow a successful Begin.
func (c *Conn) Commit(b []byte) {
	o := &c.out
	o.q.b = b
	if !o.writing && len(b) > 0 {
		o.writing = true
		// Added under mu: a connection that accepts output is still counted by its serve goroutine, so
		// this Add never races with Shutdown's Wait.
		c.srv.wg.Add(1)
		go c.writeLoop()
	}
	o.mu.Unlock()
}

// Write queues p. It returns false, queueing nothing, when Begin would.
func (c *Conn) Write(p []byte) bool {
	b, ok := c.Begin()
	if !ok {
		return false
	}
	c.Commit(append(b, p...))
	return true
}

// Pending returns the bytes queued and not yet written to the socket.
func (c *Conn) Pending() int {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return c.out.pendingLocked()
}

// writeLoop writes the queue to the socket until it is empty, then exits.
func (c *Conn) writeLoop() {
	defer c.srv.wg.Done()
	o := &c.out
	var written *chunk // the buffer just written, recycled under mu
	drained := false   // onDrain ran since the last write
	for {
		o.mu.Lock()
		o.inflight = 0
		if written != nil {
			putChunk(written)
			written = nil
		}
		if o.closed {
			o.writing = false
			o.mu.Unlock()
			return
		}
		if o.q == nil || len(o.q.b) == 0 {
			if f := o.onDrain; f != nil && !o.closing && !drained {
				// The hook may queue more; writing stays true, so Commit does not start a second writer.
				o.mu.Unlock()
				drained = true
				f()
				continue
			}
			o.writing = false
			if o.q != nil {
				putChunk(o.q)
				o.q = nil
			}
			flushedReason, closeNow := o.closeReason, o.closing
			o.mu.Unlock()
			if closeNow {
				c.Close(flushedReason)
			}
			return
		}
		out := o.q
		o.q = nil
		o.inflight = len(out.b)
		o.mu.Unlock()

		drained = false
		if err := c.writeAll(out.b); err != nil {
			o.mu.Lock()
			o.inflight = 0
			o.writing = false
			o.mu.Unlock()
			putChunk(out)
			c.Close(err)
			return
		}
		written = out
	}
}

// writeAll writes b in pieces, each under a fresh write deadline.
func (c *Conn) writeAll(b []byte) error {
	timeout := c.srv.writeTimeout()
	for len(b) > 0 {
		n := min(len(b), writePiece)
		if err := c.nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		k, err := c.nc.Write(b[:n])
		b = b[k:]
		if err != nil {
			if isTimeout(err) {
				return fmt.Errorf("%w: socket write blocked for %s with %d bytes left", ErrSlowConsumer, timeout, len(b))
			}
			return err
		}
	}
	return nil
}
