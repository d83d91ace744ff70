package protocol

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Outbound queue sizing.
const (
	// DefaultMaxPending is the default Server.MaxPending: bytes a connection queues beyond its largest
	// message before Begin refuses.
	DefaultMaxPending = 8 << 20
	// DefaultWriteTimeout is the default Server.WriteTimeout.
	DefaultWriteTimeout = 10 * time.Second
	// chunkSize is the capacity of a new outbound buffer.
	chunkSize = 4 << 10
	// chunkFull: Begin starts a new chunk once the tail holds this much, so a long queue is a list of
	// small pooled chunks rather than one buffer regrown (and copied) as it fills.
	chunkFull = 16 << 10
	// maxPooledChunk: larger buffers (one big message) go to the garbage collector, not back to the pool.
	maxPooledChunk = 256 << 10
	// writePiece bounds one socket write, so the write deadline measures a stall, not a large transfer.
	writePiece = 256 << 10
	// maxIdleSlice: chunk and iovec lists longer than this are dropped when the queue empties, so a
	// connection that once had a backlog does not keep its bookkeeping while idle.
	maxIdleSlice = 8
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

// outbound is a connection's write queue, bounded in bytes. Encoders append to the tail chunk in place
// under mu; the writer goroutine swaps the chunk list out under mu and writes it (writev) without
// holding mu, so a slow socket never blocks a publisher. An idle connection holds no chunk and runs no
// writer.
type outbound struct {
	mu       sync.Mutex
	bufs     []*chunk // queued chunks, oldest first; Begin appends to the last one
	queued   int      // bytes in bufs except the last chunk
	inflight int      // bytes the writer is writing now
	writing  bool     // the writer goroutine is running
	// deferred: CommitDeferred queued output and left the writer stopped; the connection's reader starts
	// it (Flush) before it next waits for the socket. Atomic so the reader checks it without mu.
	deferred atomic.Bool
	closing  bool // CloseAfter or Close was called: Begin refuses
	closed   bool

	// big and bigOut are the largest message (one Commit) in bufs and in the batch being written: the
	// limit bounds what is queued beyond it, so no message is refused for its size (windowLocked).
	big, bigOut int

	after *pendingClose // set by CloseAfter: most connections never have one

	// Back-pressure for publishers feeding this connection (pace.go): room is closed when the queue is
	// down to half its limit; slow is set when a publisher waited in vain, until the queue empties.
	room chan struct{}
	slow bool

	onDrain      func()
	onShutdown   func()
	onRecheck    func() bool // recheck.go
	shutdownSeen bool        // Server.Shutdown already ran onShutdown (or closed the connection)
}

// pendingClose is a CloseAfter in progress.
type pendingClose struct {
	reason   error       // the first CloseAfter's reason
	deadline time.Time   // the latest close time
	timer    *time.Timer // closes at deadline
}

// writerState is the writer goroutine's scratch, taken from writerPool while it runs so an idle
// connection holds none.
type writerState struct {
	spare []*chunk    // the list swapped with outbound.bufs, so a batch allocates nothing
	iov   net.Buffers // one writev's pieces

	// For writeNow's one non-blocking writev: the arguments and results of rawWritev, which is made
	// once per writerState so passing it to syscall.RawConn.Write allocates nothing.
	raw      [][]byte
	rawN     int
	rawErr   error
	rawWrite func(fd uintptr) bool
}

var writerPool = sync.Pool{New: func() any {
	w := new(writerState)
	w.rawWrite = func(fd uintptr) bool {
		w.rawN, w.rawErr = unix.Writev(int(fd), w.raw)
		return true // one attempt: a full socket is the writer goroutine's to wait for
	}
	return w
}}

// pendingLocked returns the bytes queued or being written.
func (o *outbound) pendingLocked() int {
	n := o.queued + o.inflight
	if k := len(o.bufs); k > 0 {
		n += len(o.bufs[k-1].b)
	}
	return n
}

// windowLocked returns the bytes queued or being written beyond the largest message among them: what
// Server.MaxPending bounds and back-pressure measures. Counting the largest message too would refuse a
// message larger than the limit whenever the queue is not empty (an earlier one still being written), so
// messages larger than the limit would reach a busy subscriber one at a time, the others dropped.
func (o *outbound) windowLocked() int {
	return o.pendingLocked() - max(o.big, o.bigOut)
}

// emptyLocked reports whether nothing is queued (the writer may still be writing a batch).
func (o *outbound) emptyLocked() bool {
	return o.queued == 0 && (len(o.bufs) == 0 || len(o.bufs[len(o.bufs)-1].b) == 0)
}

// releaseLocked returns the queued chunks to the pool.
func (o *outbound) releaseLocked() {
	for i, ch := range o.bufs {
		putChunk(ch)
		o.bufs[i] = nil
	}
	o.bufs = o.bufs[:0]
	o.queued, o.big = 0, 0
	if cap(o.bufs) > maxIdleSlice {
		o.bufs = nil
	}
}

// roomLocked wakes the publishers waiting for room once the queue is down to half its limit (limit)
// beyond its largest message, and forgets the slow mark once it is empty.
func (o *outbound) roomLocked(limit int) {
	if o.room != nil && o.windowLocked() <= limit/2 {
		close(o.room)
		o.room = nil
	}
	if o.pendingLocked() == 0 {
		o.slow = false
	}
}

// close marks the queue closed, drops what is queued and returns the pending CloseAfter reason, if any.
func (o *outbound) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closing, o.closed = true, true
	o.deferred.Store(false)
	o.releaseLocked()
	if o.room != nil {
		close(o.room) // nobody waits for a closed connection
		o.room = nil
	}
	o.onDrain, o.onShutdown, o.onRecheck = nil, nil, nil
	if o.after == nil {
		return nil
	}
	if o.after.timer != nil {
		o.after.timer.Stop()
		o.after.timer = nil
	}
	return o.after.reason
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
		o.after = &pendingClose{reason: reason}
	}
	if !o.writing && o.pendingLocked() == 0 {
		return true
	}
	c.startWriterLocked() // what CommitDeferred left is flushed before the close too
	if o.after == nil {   // closing after a write error: Close follows with that error
		o.after = &pendingClose{}
	}
	pc := o.after
	deadline := time.Now().Add(d)
	if pc.timer == nil || deadline.Before(pc.deadline) {
		if pc.timer != nil {
			pc.timer.Stop()
		}
		pc.deadline = deadline
		pc.timer = time.AfterFunc(d, func() { c.Close(reason) })
	}
	return false
}

// Begin locks the outbound queue and returns its tail buffer for the caller to append to (one message),
// then pass to Commit. It never blocks on the socket: it returns false (and leaves the queue unlocked)
// when the connection is closing or more than Server.MaxPending bytes are already queued beyond the
// largest message queued (windowLocked). A message is never split nor refused for its size: one larger
// than MaxPending is accepted whenever the rest of the queue is within the limit.
func (c *Conn) Begin() ([]byte, bool) {
	o := &c.out
	o.mu.Lock()
	if o.closing || o.windowLocked() > c.srv.maxPending() {
		c.startWriterLocked() // deferred output is never what a refused caller waits behind
		o.mu.Unlock()
		return nil, false
	}
	n := len(o.bufs)
	if n == 0 || len(o.bufs[n-1].b) >= chunkFull {
		if n > 0 {
			o.queued += len(o.bufs[n-1].b)
		}
		o.bufs = append(o.bufs, getChunk())
		n++
	}
	return o.bufs[n-1].b, true
}

// Commit stores b, the buffer returned by Begin with bytes appended, unlocks the queue and starts the
// writer if it is not running. It must follow a successful Begin.
func (c *Conn) Commit(b []byte) {
	c.commitLocked(b, false)
	c.out.mu.Unlock()
}

// CommitDeferred is Commit for output the connection's own reader goroutine produces while handling what
// it read (acknowledgements, and deliveries those acknowledgements released). It does not start the
// writer: the reader does, in Flush, before it next waits for the socket or for anything else. One
// socket read's worth of input so gets one write of answers, not a write (and a writer wake-up) each.
// Output committed by other goroutines still starts the writer at once and carries the deferred bytes
// along. Only the reader goroutine may call it, and only on a connection whose Reader it reads (a
// WebSocket connection commits at once).
func (c *Conn) CommitDeferred(b []byte) {
	c.commitLocked(b, c.defers)
	c.out.mu.Unlock()
}

// Flush starts the writer for output CommitDeferred left queued. The reader calls it before it blocks;
// the connection's own reads and Pace do so already.
//
// On a plain TCP connection Flush writes on the caller's goroutine what the socket takes without waiting
// (one non-blocking writev), and starts the writer goroutine only for what is left: most answers leave
// with no goroutine started and woken for them, which at moderate rates was a fifth of the broker's time.
func (c *Conn) Flush() {
	o := &c.out
	if !o.deferred.Load() {
		return
	}
	o.mu.Lock()
	tc, plain := c.nc.(*net.TCPConn)
	if !plain || o.writing || o.emptyLocked() {
		c.startWriterLocked()
		o.mu.Unlock()
		return
	}
	raw, err := tc.SyscallConn() // not kept: an idle connection holds nothing for it
	if err != nil {
		c.startWriterLocked()
		o.mu.Unlock()
		return
	}
	o.deferred.Store(false)
	o.writing = true
	c.srv.wg.Add(1) // as startWriterLocked: the writer's share, whichever goroutine writes
	w := writerPool.Get().(*writerState)
	batch := c.takeBatchLocked(w)
	o.mu.Unlock()
	c.writeNow(raw, w, batch)
}

// takeBatchLocked swaps the queued chunks out for the writer to write without holding mu.
func (c *Conn) takeBatchLocked(w *writerState) []*chunk {
	o := &c.out
	batch := o.bufs
	o.inflight = o.pendingLocked()
	o.bufs, w.spare = w.spare, nil
	o.queued = 0
	o.big, o.bigOut = 0, o.big
	return batch
}

// writeNow writes batch with one non-blocking writev, then, if the queue is then empty and no drain hook
// queues more, stops being the writer; otherwise (bytes the socket did not take, a write error, new output,
// a close) it hands the rest to a writer goroutine.
func (c *Conn) writeNow(raw syscall.RawConn, w *writerState, batch []*chunk) {
	o := &c.out
	w.raw = w.raw[:0]
	total, all := 0, 0 // bytes in this writev, bytes in the batch
	for _, ch := range batch {
		if len(ch.b) > 0 && total < writePiece {
			w.raw = append(w.raw, ch.b)
			total += len(ch.b)
		}
		all += len(ch.b)
	}
	w.rawN, w.rawErr = 0, nil
	// An error (an expired write deadline, a broken socket, EAGAIN) is left for the writer goroutine
	// to meet again, under its own deadline, and to handle as it always does.
	err := raw.Write(w.rawWrite)
	n := max(w.rawN, 0)
	clear(w.raw)
	c.stats.bytesOut.Add(uint64(n))
	if err != nil || w.rawErr != nil || n < total || total < all {
		// Find where the socket stopped: chunk i, byte off.
		i, off := 0, n
		for i < len(batch) && off >= len(batch[i].b) {
			off -= len(batch[i].b)
			i++
		}
		if n > 0 {
			c.wroteSome(n)
		}
		go c.writeRest(w, batch, i, off)
		return
	}
	o.mu.Lock()
	o.inflight, o.bigOut = 0, 0
	for i, ch := range batch {
		putChunk(ch)
		batch[i] = nil
	}
	if cap(batch) <= maxIdleSlice {
		w.spare = batch[:0]
	}
	o.roomLocked(c.srv.maxPending())
	if f := o.onDrain; f != nil && o.emptyLocked() && !o.closing {
		o.mu.Unlock()
		f() // as the writer goroutine would, with writing still set; it may queue more
		o.mu.Lock()
	}
	if !o.emptyLocked() || o.closing || o.closed {
		o.mu.Unlock()
		go c.writeRest(w, nil, 0, 0)
		return
	}
	o.writing = false
	o.releaseLocked()
	o.mu.Unlock()
	c.srv.wg.Done()
	writerPool.Put(w)
}

// commitLocked is Commit without the unlock; with deferWrite it leaves the writer stopped (Flush).
func (c *Conn) commitLocked(b []byte, deferWrite bool) {
	o := &c.out
	tail := o.bufs[len(o.bufs)-1]
	o.big = max(o.big, len(b)-len(tail.b))
	tail.b = b
	switch {
	case o.writing:
	case o.emptyLocked():
		// Nothing was appended: give the chunk back rather than hold it on an idle connection.
		o.releaseLocked()
	case deferWrite:
		o.deferred.Store(true)
	default:
		c.startWriterLocked()
	}
}

// startWriterLocked starts the writer goroutine unless it runs or there is nothing to write.
func (c *Conn) startWriterLocked() {
	o := &c.out
	if o.deferred.Load() {
		o.deferred.Store(false)
	}
	if o.writing || o.emptyLocked() {
		return
	}
	o.writing = true
	// Added under mu: a connection that accepts output is still counted by its serve goroutine, so
	// this Add never races with Shutdown's Wait.
	c.srv.wg.Add(1)
	go c.writeLoop()
}

// CommitOver is Commit that also reports whether the queue is then past half its limit beyond its
// largest message (windowLocked) while the connection is not marked slow (Stuck), read under the lock
// Commit releases: a sink that took a message learns without another lock whether to ask its publisher
// to hold back (HoldFor with this connection as the Brake).
func (c *Conn) CommitOver(b []byte) (over bool) {
	o := &c.out
	c.commitLocked(b, false)
	over = !o.slow && o.windowLocked() > c.srv.maxPending()/2
	o.mu.Unlock()
	return over
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

// Room implements Brake: nil while at most half of the outbound limit is queued beyond the largest
// message, else a channel closed once it is.
func (c *Conn) Room() <-chan struct{} {
	o := &c.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.windowLocked() <= c.srv.maxPending()/2 {
		return nil
	}
	c.startWriterLocked() // a publisher waits for this queue to drain: it must be draining
	if o.room == nil {
		o.room = make(chan struct{})
	}
	return o.room
}

// Stuck implements Brake: the connection made no room in PaceTimeout; until its queue empties it drops
// instead of holding publishers back.
func (c *Conn) Stuck() {
	c.out.mu.Lock()
	c.out.slow = true
	c.out.mu.Unlock()
}

// Pending returns the bytes queued and not yet written to the socket.
func (c *Conn) Pending() int {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return c.out.pendingLocked()
}

// writeLoop writes the queue to the socket until it is empty, then exits.
func (c *Conn) writeLoop() { c.writeRest(writerPool.Get().(*writerState), nil, 0, 0) }

// writeRest is the writer goroutine: it first writes what writeNow left of batch (from chunk i, byte
// off), then the queue until it is empty.
func (c *Conn) writeRest(w *writerState, batch []*chunk, i, off int) {
	defer c.srv.wg.Done()
	o := &c.out
	defer writerPool.Put(w)
	var written []*chunk // the batch just written, recycled under mu
	drained := false     // onDrain ran since the last write
	if batch != nil {
		if err := c.writeChunks(w, batch, i, off); err != nil {
			c.writeFailed(batch, err)
			return
		}
		written = batch
	}
	for {
		o.mu.Lock()
		o.inflight, o.bigOut = 0, 0
		if written != nil {
			for i, ch := range written {
				putChunk(ch)
				written[i] = nil
			}
			if cap(written) <= maxIdleSlice {
				w.spare = written[:0]
			}
			written = nil
		}
		if o.closed {
			o.writing = false
			o.mu.Unlock()
			return
		}
		o.roomLocked(c.srv.maxPending())
		if o.emptyLocked() {
			if f := o.onDrain; f != nil && !o.closing && !drained {
				// The hook may queue more; writing stays true, so Commit does not start a second writer.
				o.mu.Unlock()
				drained = true
				f()
				continue
			}
			o.writing = false
			o.releaseLocked()
			if cap(w.iov) > maxIdleSlice {
				w.iov = nil
			}
			closeNow := o.closing
			var flushedReason error
			if o.after != nil {
				flushedReason = o.after.reason
			}
			o.mu.Unlock()
			if closeNow {
				c.Close(flushedReason)
			}
			return
		}
		batch := c.takeBatchLocked(w)
		o.mu.Unlock()

		drained = false
		if err := c.writeChunks(w, batch, 0, 0); err != nil {
			c.writeFailed(batch, err)
			return
		}
		written = batch
	}
}

// writeFailed ends the writer after a write error: the socket is broken, so output is refused until
// Close completes.
func (c *Conn) writeFailed(batch []*chunk, err error) {
	o := &c.out
	o.mu.Lock()
	o.inflight, o.bigOut = 0, 0
	o.writing = false
	o.closing = true
	o.mu.Unlock()
	c.Close(err)
	for i, ch := range batch {
		putChunk(ch)
		batch[i] = nil
	}
}

// writeChunks writes the chunks from chunks[i].b[off] on with writev, at most writePiece bytes per call,
// each call under a fresh write deadline.
func (c *Conn) writeChunks(w *writerState, chunks []*chunk, i, off int) error {
	timeout := c.srv.writeTimeout()
	for i < len(chunks) {
		iov := w.iov[:0]
		n := 0
		for i < len(chunks) && n < writePiece {
			b := chunks[i].b[off:]
			if len(b) > writePiece-n {
				b = b[:writePiece-n]
				off += len(b)
			} else {
				i, off = i+1, 0
			}
			if len(b) > 0 {
				iov = append(iov, b)
				n += len(b)
			}
		}
		if n == 0 {
			break
		}
		backing := iov[:0]
		w.iov = iov
		if err := c.nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		// WriteTo consumes w.iov (a field, so the call does not allocate) and clears what it wrote. A
		// WebSocket takes the pieces as one message, not one message per piece.
		var written int64
		var err error
		if ws, ok := c.nc.(*wsConn); ok {
			written, err = ws.writeBuffers(&w.iov)
		} else if len(w.iov) == 1 {
			// One piece (an idle connection's PINGRESP or heart-beat): a plain write, since the first
			// writev makes the socket keep an iovec array for the rest of its life.
			var k int
			k, err = c.nc.Write(w.iov[0])
			written = int64(k)
		} else {
			written, err = w.iov.WriteTo(c.nc)
		}
		w.iov = backing
		c.stats.bytesOut.Add(uint64(written))
		if err != nil {
			clear(backing[:cap(backing)])
			if isTimeout(err) {
				return fmt.Errorf("%w: socket write blocked for %s with %d bytes of the batch left",
					ErrSlowConsumer, timeout, int64(n)-written)
			}
			return err
		}
		if i < len(chunks) {
			c.wroteSome(n)
		}
	}
	return nil
}

// wroteSome accounts n bytes of the batch being written as gone while more of it is left, so the window
// shrinks as the socket takes the batch rather than at its end: publishers held back for this connection
// (Room) resume while it still has up to half its limit to write, and it never idles waiting for them. The
// largest message of the batch may be among the bytes written: bigOut no longer counts more than is left.
func (c *Conn) wroteSome(n int) {
	o := &c.out
	o.mu.Lock()
	o.inflight -= n
	o.bigOut = min(o.bigOut, o.inflight)
	o.roomLocked(c.srv.maxPending())
	o.mu.Unlock()
}
