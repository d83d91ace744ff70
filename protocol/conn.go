package protocol

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lyremq/lyre/conf"
)

var (
	// ErrSlowConsumer closes a connection whose socket write made no progress for Server.WriteTimeout.
	ErrSlowConsumer = errors.New("protocol: slow consumer")
	// ErrServerClosed is the close reason of connections still open when Shutdown's context ends, and the
	// error of Listen after Shutdown.
	ErrServerClosed = errors.New("protocol: server closed")
	// ErrDetectTimeout closes a connection that did not send enough bytes to be recognised in time.
	ErrDetectTimeout = errors.New("protocol: detect timeout")
	// ErrHandlerDone is the close reason when Handler.Serve returned without closing the connection.
	ErrHandlerDone = errors.New("protocol: handler done")
	// ErrDisconnected marks the ordinary end a client asked for (MQTT or STOMP DISCONNECT). Front-ends
	// wrap it in their own reason, fmt.Errorf("mqtt: %w", protocol.ErrDisconnected), so that the close
	// is logged at Debug like EOF rather than at Info like a protocol error.
	ErrDisconnected = errors.New("protocol: client disconnected")
	// ErrOutboundClosed is returned to a reader that waited for room in a connection that closed meanwhile.
	ErrOutboundClosed = errors.New("protocol: connection closed")
	// errPanic is the close reason after a handler panicked.
	errPanic = errors.New("protocol: handler panic")
)

// handlerFlushTimeout bounds how long what is queued is flushed after Handler.Serve returns.
const handlerFlushTimeout = time.Second

// connIDs numbers connections process-wide, so IDs stay unique across servers in one process (tests).
var connIDs atomic.Uint64

// Conn is one client connection. Its reader goroutine runs Handler.Serve; writes go through a bounded
// outbound queue drained by a writer goroutine that runs only while there is something to write.
//
// All methods are safe for concurrent use, except that only the handler's goroutine reads Reader and
// each Begin is followed by one Commit on the same goroutine.
type Conn struct {
	id    uint64
	srv   *Server
	nc    net.Conn  // the socket, or the TLS connection over it
	tlsc  *tls.Conn // nc when the connection is TLS, else nil
	set   *Settings
	proto string
	r     io.Reader
	logp  atomic.Pointer[zap.Logger] // built on first Log call: a zap child logger costs ~1 KiB
	since int64                      // accepted at, Unix nanoseconds
	stats counters
	// rechecks is Server.rechecks when the connection was opened: a reload's re-check that ran before
	// the front-end registered its hook is caught up with (OnRecheck).
	rechecks uint32
	// defers: r is the connection's own connReader, which flushes CommitDeferred output before it reads
	// from the socket; otherwise CommitDeferred commits at once. (The bools sit in rechecks' padding.)
	defers bool
	isDone bool // guarded by out.mu, see done

	out outbound
	// pace holds the subscribers that asked this connection's publisher to hold back (pace.go).
	pace atomic.Pointer[pacer]

	closeOnce sync.Once
	// Guarded by out.mu. done is made by the first Done call (most connections never wait on one, and a
	// channel costs 96 bytes) and closed once the connection is closed, which sets isDone; reason is set
	// before.
	reason  error
	done    chan struct{}
	session Session // set by the front-end after login (SetSession)

	l *listener // that accepted it, for the goroutine that resumes it
	parkState
}

// closedChan is what Done returns for a connection already closed when Done is first called.
var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

func newConn(s *Server, nc net.Conn, r io.Reader, set *Settings, proto string) *Conn {
	c := &Conn{
		id:    connIDs.Add(1),
		srv:   s,
		nc:    nc,
		r:     r,
		set:   set,
		proto: proto,
		since: time.Now().UnixNano(),
	}
	c.rechecks = s.rechecks.Load()
	switch cr := r.(type) {
	case *connReader:
		cr.owner, c.defers = c, true

		cr.count = &c.stats.bytesIn
		c.stats.bytesIn.Store(uint64(cr.w - cr.r)) // the bytes read while detecting, replayed from the buffer
	case *wsConn:
		cr.src.count = &c.stats.bytesIn
	}
	return c
}

// ID returns the connection's process-unique number.
func (c *Conn) ID() uint64 { return c.id }

// Log returns the connection's logger, named after its protocol and carrying conn_id and remote.
func (c *Conn) Log() *zap.Logger {
	if l := c.logp.Load(); l != nil {
		return l
	}
	l := c.srv.log.Named(c.proto).With(zap.Uint64("conn_id", c.id), zap.Stringer("remote", c.nc.RemoteAddr()))
	c.logp.CompareAndSwap(nil, l)
	return c.logp.Load()
}

// Connector returns the configuration of the connector that accepted the connection.
func (c *Conn) Connector() *conf.Connector { return &c.set.Connector }

// Settings returns the settings of the connector that accepted the connection (defaults applied,
// grammars built), shared by all its connections.
func (c *Conn) Settings() *Settings { return c.set }

// Protocol returns the recognised protocol, MQTT or STOMP.
func (c *Conn) Protocol() string { return c.proto }

// Reader returns the buffered inbound stream: the bytes read while sniffing, then the socket. It also
// implements io.ByteReader. Only the handler's goroutine may read it, and only until Serve returns (its
// buffer then goes back to a pool). A read error is returned once: after a deadline error the handler
// may set a new deadline and read on.
func (c *Conn) Reader() io.Reader { return c.r }

// ArmReadDeadline sets the read deadline d from now: a handler calls it before each packet or frame it
// reads, so a peer silent for d times out. Setting a deadline updates a runtime timer, which at hundreds
// of thousands of packets a second costs a tenth of the broker's time; so while bytes already read wait
// in the buffer (the next read does not wait for the peer) a deadline at least d away is kept, and one
// armed then is armed d/16 further. The peer so gets d, and at most d/16 more, since its last packet.
func (c *Conn) ArmReadDeadline(d time.Duration) {
	now := time.Since(clockStart) // monotonic only: cheaper than time.Now
	dl := now + d
	cr, ok := c.r.(*connReader)
	if !ok {
		c.rdl = dl
		_ = c.nc.SetReadDeadline(clockStart.Add(dl))
		return
	}
	if cr.r < cr.w {
		if cr.deadline-now >= d {
			return
		}
		dl += d / 16
	}
	cr.deadline, c.rdl = dl, dl
	_ = c.nc.SetReadDeadline(clockStart.Add(dl))
}

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetReadDeadline sets the socket's read deadline (keep-alive / heart-beat enforcement); it also holds
// while the connection is parked. Reader goroutine only, like ArmReadDeadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if cr, ok := c.r.(*connReader); ok {
		cr.deadline = 0 // not ArmReadDeadline's any more: its next call arms
	}
	c.rdl = 0
	if !t.IsZero() {
		c.rdl = max(t.Sub(clockStart), 1)
	}
	return c.nc.SetReadDeadline(t)
}

// Done is closed once the connection is closed.
func (c *Conn) Done() <-chan struct{} {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	if c.done == nil {
		if c.isDone {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

// Err returns the close reason once Done is closed, else nil.
func (c *Conn) Err() error {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	if c.isDone {
		return c.reason
	}
	return nil
}

// Close closes the connection now, dropping what is queued. The first reason wins; later calls do
// nothing. Closing the socket unblocks the reader, so the handler's next read fails.
func (c *Conn) Close(reason error) {
	c.closeOnce.Do(func() {
		// A CloseAfter still flushing came first: its reason is the one that explains the close.
		if pending := c.out.close(); pending != nil {
			reason = pending
		}
		if ws, ok := c.nc.(*wsConn); ok {
			_ = ws.Close() // a close frame, briefly, then the socket
		} else if c.tlsc != nil {
			// Close the socket under TLS: tls.Conn.Close first sends a close_notify alert, which can block
			// for seconds on a peer that does not read. MQTT and STOMP end sessions with their own packets.
			_ = c.tlsc.NetConn().Close()
		} else {
			_ = c.nc.Close()
		}
		c.wake(true) // a parked reader: its Step reads the closed socket's error and ends the session
		c.out.mu.Lock()
		c.reason, c.isDone = reason, true
		done := c.done
		c.out.mu.Unlock()
		if done != nil {
			close(done)
		}
		c.logClose(reason)
	})
}

// CloseAfter stops accepting output, flushes what is already queued, then closes the connection with
// reason. The connection is closed no later than d from now even if the peer does not read (die_delay).
func (c *Conn) CloseAfter(reason error, d time.Duration) {
	if c.out.closeAfter(c, reason, d) {
		c.Close(reason)
	}
}

// OnDrain registers f, called on the writer goroutine each time the outbound queue becomes empty.
// Sessions holding back messages (Begin returned false) use it to resume. Begin refuses only while the
// queue is not empty, that is while the writer runs, so a refused Begin is always followed by an OnDrain
// call unless the connection closes. f must not block; it may queue more.
func (c *Conn) OnDrain(f func()) {
	c.out.mu.Lock()
	c.out.onDrain = f
	c.out.mu.Unlock()
}

// OnShutdown registers f, called by Server.Shutdown on the shutdown goroutine: the front-end queues its
// goodbye (MQTT 5 DISCONNECT, STOMP ERROR) and calls CloseAfter. f must not block. Without a hook the
// connection is closed at once on shutdown.
func (c *Conn) OnShutdown(f func()) {
	c.out.mu.Lock()
	c.out.onShutdown = f
	c.out.mu.Unlock()
}

// shutdown runs the connection's shutdown hook, or closes it when there is none. The hook runs at most
// once, even if Shutdown is called again.
func (c *Conn) shutdown() { c.shutdownWith(ErrServerClosed) }

// shutdownWith is shutdown with reason for a connection without a hook (CloseConnector's).
func (c *Conn) shutdownWith(reason error) {
	c.out.mu.Lock()
	if c.out.shutdownSeen {
		c.out.mu.Unlock()
		return
	}
	c.out.shutdownSeen = true
	f := c.out.onShutdown
	c.out.mu.Unlock()
	if f == nil {
		c.Close(reason)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("shutdown hook panic", zap.Uint64("conn_id", c.id), zap.Any("panic", r),
				zap.ByteString("stack", debug.Stack()))
			c.Close(fmt.Errorf("%w: %v", errPanic, r))
		}
	}()
	f()
}

// logClose logs the close once, at a level that matches how interesting the reason is.
func (c *Conn) logClose(reason error) {
	lvl := zapcore.InfoLevel
	switch {
	case isQuietClose(reason):
		lvl = zapcore.DebugLevel
	case errors.Is(reason, ErrSlowConsumer):
		lvl = zapcore.WarnLevel
	}
	if c.srv.log.Core().Enabled(lvl) {
		fields := []zap.Field{zap.String("connector", c.set.Connector.Name), zap.Uint64("conn_id", c.id),
			zap.Stringer("remote", c.nc.RemoteAddr()), zap.String("protocol", c.proto)}
		if c.tlsc != nil {
			fields = append(fields, zap.Bool("tls", true))
		}
		if reason != nil {
			fields = append(fields, zap.String("reason", reason.Error()))
		}
		c.srv.log.Log(lvl, "connection closed", fields...)
	}
}

// isQuietClose reports reasons that are the ordinary end of a connection: the peer went away or asked
// to, the handler finished, or the server is shutting down.
func isQuietClose(err error) bool {
	return err == nil ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, ErrHandlerDone) ||
		errors.Is(err, ErrDisconnected) ||
		errors.Is(err, ErrServerClosed)
}

// isTimeout reports a deadline error from the socket.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
