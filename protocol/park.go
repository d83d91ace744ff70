package protocol

import (
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// A Stepper is a session served one packet (or frame) at a time by the connection core, so that between
// packets an idle connection can park without a goroutine (see the package doc, "Idle connections"). A
// handler's Serve hands it over with Conn.Continue once its CONNECT is answered, and returns.
//
// The core calls Step, on one goroutine at a time, whenever input is buffered or arrives; on a connection
// that cannot park (TLS, or no readiness notification on this system) it calls Step again at once, and
// Step then blocks in its read as a Serve loop would. Step returns nil to be called again, or the error
// that ends the session. End is called once, with that error (or the panic's), on the goroutine that ran
// the last Step; the connection is then flushed and closed as after Serve.
type Stepper interface {
	// Step reads and handles one packet or frame. When it is entered with input buffered it may return
	// nil having consumed only keep-alive bytes (STOMP heart-beats).
	Step() error
	// Buffered reports input the front-end's decoder holds itself, beyond the connection's reader.
	Buffered() bool
	// End ends the session; err is Step's error.
	End(err error)
}

// Reader states (Conn.state): which goroutine, if any, owns the reader.
const (
	readerRunning uint32 = iota // a goroutine runs the handler or steps
	readerParked                // no goroutine: the socket is watched for input (park_linux.go)
)

// Parking policy. A connection whose last wait for input was short is busy: it waits up to linger in a
// socket read, as a Serve loop would, before parking, so a stream of packets costs no park and resume
// each; one whose last wait was long (an idle client's ping) parks as soon as its input is handled.
const linger = 100 * time.Millisecond

// Continue hands the rest of the session to the connection core, which calls s.Step for each packet and
// may park the connection between them; the handler's Serve returns after calling it. Without it the
// connection is flushed and closed when Serve returns.
func (c *Conn) Continue(s Stepper) { c.step = s }

// Buffered returns the number of input bytes the connection's reader holds that the front-end has not
// read (for a WebSocket, socket bytes: frame headers included).
func (c *Conn) Buffered() int {
	if cr := c.inbuf(); cr != nil {
		return cr.w - cr.r
	}
	return 0
}

// inbuf returns the connReader that reads the socket, nil when there is none (tests' handlers may wrap).
func (c *Conn) inbuf() *connReader {
	switch r := c.r.(type) {
	case *connReader:
		return r
	case *wsConn:
		return r.src
	}
	return nil
}

// pending reports whether the session has input to handle without waiting: bytes buffered here or in the
// front-end's decoder, or a read error not yet returned.
func (c *Conn) pending() bool {
	cr := c.inbuf()
	return cr == nil || cr.r < cr.w || cr.err != nil || cr.released || c.step.Buffered()
}

// run steps the session until it ends (false) or the connection parks (true: the goroutine must return
// without touching the connection, which another goroutine may already be running). ready says input
// (or the end of it) is waiting in the socket: the first Step reads it at once.
func (c *Conn) run(ready bool) (parked bool) {
	ended := false
	defer func() {
		if !ended && !parked {
			// Step panicked: the session still ends (releasing what it holds) before the panic goes on
			// to the caller, which logs it and closes the connection.
			ended = true
			c.step.End(errPanic)
		}
	}()
	for {
		if ready {
			// Read what woke the connection now, rather than park again to learn it is there; Step then
			// finds it buffered (STOMP consumes heart-beats that way without waiting in a read).
			ready = false
			if cr := c.inbuf(); cr != nil && cr.r == cr.w && cr.err == nil && !cr.released {
				cr.fill()
			}
		}
		if !c.pending() && c.canPark() {
			if c.rdl != 0 && time.Since(clockStart) >= c.rdl {
				// Resumed by the deadline wheel: Step's next read fails as the socket's would, even if
				// the front-end moves the deadline before reading (STOMP does, per read).
				c.inbuf().err = os.ErrDeadlineExceeded
			} else if c.idle() {
				return true
			}
		}
		if err := c.step.Step(); err != nil {
			ended = true
			c.step.End(err)
			return false
		}
	}
}

// idle waits for input on a connection that can park: in a socket read for up to linger when it is busy,
// then by parking. It reports true when the connection parked.
func (c *Conn) idle() bool {
	c.Flush() // what the session answered (CommitDeferred) goes out before it waits
	start := time.Since(clockStart)
	if c.busy && c.lingerRead() {
		c.busy = time.Since(clockStart)-start < linger
		return false
	}
	if !c.park() {
		return false // Step blocks in its read instead
	}
	return true
}

// lingerRead reads into the connection's buffer, waiting at most linger (and never past the handler's
// read deadline), and reports whether there is something for Step: bytes, or an error other than the
// linger's own timeout.
func (c *Conn) lingerRead() bool {
	until := time.Since(clockStart) + linger
	if c.rdl != 0 && c.rdl <= until {
		return false // the keep-alive runs out first: park, the deadline wheel resumes the reader
	}
	cr := c.inbuf()
	if c.nc.SetReadDeadline(clockStart.Add(until)) != nil {
		return true // Step's read meets the same trouble
	}
	cr.fill()
	_ = c.nc.SetReadDeadline(c.readDeadline())
	if cr.r == cr.w && cr.err != nil && isTimeout(cr.err) {
		cr.err = nil
		return false
	}
	return true
}

// readDeadline returns the deadline the handler last set.
func (c *Conn) readDeadline() time.Time {
	if c.rdl == 0 {
		return time.Time{}
	}
	return clockStart.Add(c.rdl)
}

// resumed records, on the goroutine resuming a parked connection, how long the wait was.
func (c *Conn) resumed() {
	c.busy = time.Since(clockStart)-c.parkedAt < linger
}

// wake resumes a parked connection on a new goroutine; it does nothing when the reader is running (or
// another wake won). ready: the socket has input, or is closed (see run).
func (c *Conn) wake(ready bool) {
	if c.state.CompareAndSwap(readerParked, readerRunning) {
		go c.srv.resume(c, ready)
	}
}

// resume runs a parked connection's session again, on a goroutine of its own.
func (s *Server) resume(c *Conn, ready bool) {
	parked := false
	defer func() {
		if !parked {
			s.served(c.l, c.nc, c, false, recover())
		}
	}()
	c.unwatchDeadline()
	c.resumed()
	if parked = c.run(ready); !parked {
		s.handlerDone(c)
	}
}

// parkState is the part of a Conn used while it parks; it is written by the reader before the state
// becomes readerParked, and by the goroutine that wins the wake after.
type parkState struct {
	step Stepper
	// rdl is the read deadline the handler set, since clockStart (0: none), kept while parked by the
	// Server's deadline wheel.
	rdl time.Duration
	// parkedAt is when the connection last parked, since clockStart.
	parkedAt time.Duration
	busy     bool          // see linger
	state    atomic.Uint32 // readerRunning or readerParked
	wheel    wheelLink     // in the deadline wheel while parked with a deadline (wheel.go)
	watch    watchState    // the readiness registration (park_linux.go)
}

// deadlineWake is the deadline wheel's function: a parked connection's keep-alive still expires, its
// Step reading the deadline's error. An entry left from an earlier park (the parking goroutine may insert
// it after the connection was already woken and parked again) wakes the connection early: it finds its
// deadline not passed and parks again, which moves its entry.
func (c *Conn) deadlineWake() {
	if c.state.Load() == readerParked {
		c.wake(false) // Step meets the deadline, or the connection parks again
	}
}

// unwatchDeadline takes a resumed connection out of the deadline wheel. rdl is the deadline it parked
// with: the goroutine that won the wake sees what the parking one wrote.
func (c *Conn) unwatchDeadline() {
	if c.rdl != 0 {
		if p := c.srv.poll.p; p != nil {
			p.wheel.remove(c)
		}
	}
}

// Apart runs f on a goroutine of its own and waits for it, so f is still sequential with the caller. The
// connection's goroutine runs its deep one-off work this way (the TLS handshake, CONNECT handling:
// authentication, session takeover, logging), which needs 8 KiB of stack and more: on a connection that
// keeps its goroutine while idle (TLS cannot park) that stack would outlive the work, since the runtime
// shrinks a parked goroutine's stack only by halves, and not below 4 KiB once 224 bytes are in use. A
// panic is re-raised on the caller, with the helper's stack in its value, for the connection core to log
// and recover.
func Apart(f func()) {
	var panicked any
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				panicked = fmt.Sprintf("%v\n%s", r, debug.Stack())
			}
		}()
		f()
	}()
	<-done
	if panicked != nil {
		panic(panicked)
	}
}
