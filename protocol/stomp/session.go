package stomp

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// session is the state of one STOMP connection.
type session struct {
	h   *Handler
	c   *protocol.Conn
	cfg *conf.STOMP // the connector's, defaults applied; shared, read-only (protocol.Settings)
	g   *router.Grammar
	id  string
	dr  deadlineReader
	rd  Reader

	// Set by CONNECT on the reader goroutine before any subscription exists, read-only afterwards, so
	// deliveries may read them without a lock.
	version   int
	connected bool
	host      *virtualhost.Host
	rt        *router.Router
	principal virtualhost.Principal // the reader changes it under mu after a reload (adoptPrincipal)
	user      string                // principal.User at CONNECT, for Describe
	clientID  string                // fills "%c" in access rules
	slot      *virtualhost.Host     // the host whose connection slot this session holds, if any

	// Reader goroutine only; subs is changed under mu too, so Describe and a reload's re-check may read
	// it under mu.
	subs      map[string]*subscription
	routes    int // the routes of subs, bounded by max_subscriptions
	txs       map[string]*transaction
	txFrames  int                           // frames buffered in txs, bounded by max_transaction_frames
	txBytes   int64                         // their frameSize, bounded by max_transaction_bytes
	tempOwner bool                          // registered in Handler.temps
	temps     map[string]router.Destination // its temporary queues by key, deleted at the end

	mu        sync.Mutex
	ackSeq    uint64             // last ack number issued to a delivery
	cons      protocol.Consumers // open queue consumers, resumed on drain
	beat      *time.Timer        // server heart-beat; nil when none was negotiated or once stopped
	beatEvery time.Duration
	sent      atomic.Bool // a frame was queued since the last heart-beat tick

	// bmu guards backlog, the retained messages of new subscriptions waiting for room in the outbound
	// queue; it is held while they are delivered, so it comes before the outbound lock.
	bmu     sync.Mutex
	backlog []retainedItem

	// frameTr is the tracker of the frame being handled, on a durable host (reader goroutine); acks
	// orders the receipts behind their writes, made by the first receipt (receipts.go). Atomic: the
	// writer's OnDrain hook flushes it.
	frameTr *virtualhost.Tracker
	acks    atomic.Pointer[protocol.AckQueue[string]]
	// adopt is a principal a reload's re-check posted (the user's groups changed), taken by the reader
	// before its next frame (recheck.go).
	adopt atomic.Pointer[virtualhost.Principal]
}

var eol = []byte{'\n'}

// errEnded ends the stepping of a session whose connection is already closing (readFailed, fail).
var errEnded = errors.New("stomp: session ended")

// start arms the deadline for the rest of CONNECT: the sniffer has seen only its first line, the rest must
// follow promptly.
func (s *session) start() {
	timeout := s.c.Connector().DetectTimeout
	if timeout <= 0 {
		timeout = conf.DefaultDetectTimeout
	}
	_ = s.c.SetReadDeadline(time.Now().Add(timeout))
}

// Step reads and handles one frame (protocol.Stepper). Heart-beats already buffered are consumed first;
// when nothing else is, Step returns for the connection to wait (park) until more arrives.
func (s *session) Step() error {
	if (s.rd.Buffered() || s.c.Buffered() > 0) && s.rd.SkipHeartBeats(s.c.Buffered) {
		return nil
	}
	s.rd.Wait()
	f, err := s.rd.Read()
	if err != nil {
		s.readFailed(err)
		return errEnded
	}
	if s.adopt.Load() != nil {
		s.adoptPrincipal() // a reload changed the user's groups
	}
	if err := s.handle(f); err != nil {
		if !errors.Is(err, ErrDisconnect) {
			s.fail(err, f)
		}
		return err
	}
	s.c.Pace() // subscribers over their windows hold this producer back (protocol.Pace)
	if s.dr.every > 0 && !s.rd.Buffered() && s.c.Buffered() == 0 {
		// The connection may park before the next read, which would push the deadline: the client's
		// heart-beat is due from now.
		s.c.ArmReadDeadline(s.dr.every)
	}
	return nil
}

// Buffered implements protocol.Stepper: bytes of the next frames read with the last one.
func (s *session) Buffered() bool { return s.rd.Buffered() }

// End implements protocol.Stepper.
func (s *session) End(error) { s.cleanup() }

// readFailed ends the session after a read error: an ERROR frame for a malformed frame, a plain close for
// a dead or vanished peer.
func (s *session) readFailed(err error) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		if s.connected {
			s.c.Close(ErrHeartBeatTimeout)
		} else {
			s.c.Close(ErrConnectTimeout)
		}
	case errors.Is(err, io.EOF):
		// The client may have half-closed after its last frames: let their receipts go out.
		s.c.CloseAfter(err, s.cfg.DieDelay)
	case errors.Is(err, io.ErrUnexpectedEOF), isReaderError(err):
		s.fail(err, nil)
	default:
		s.c.Close(err)
	}
}

func isReaderError(err error) bool {
	for _, e := range [...]error{ErrFrameTooLarge, ErrTooManyHeaders, ErrHeaderTooLong, ErrMalformedHeader,
		ErrBadEscape, ErrBadContentLength, ErrUnknownCommand, ErrMissingNUL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// fail answers a protocol error with an ERROR frame, then closes within die_delay (STOMP 1.2 "ERROR":
// the server must close the connection just after sending it).
func (s *session) fail(err error, f *frame.Frame) {
	msg, detail, hdrs := s.describe(err)
	var receipt string
	var hasReceipt bool
	if f != nil {
		receipt, hasReceipt = f.Header.Contains(frame.Receipt)
	}
	if s.h.log.Core().Enabled(zap.DebugLevel) {
		// Conn.Log builds a child logger on first use; only pay for it when the line is wanted.
		s.c.Log().Debug("stomp protocol error", zap.String("message", msg), zap.String("detail", detail))
	}
	s.sendError(msg, detail, receipt, hasReceipt, hdrs...)
	s.c.CloseAfter(err, s.cfg.DieDelay)
}

// sendError queues an ERROR frame. Before CONNECT (and in 1.0) headers are not escaped, so the message is
// kept on one line.
func (s *session) sendError(msg, detail, receipt string, hasReceipt bool, hdrs ...string) {
	b, ok := s.c.Begin()
	if !ok {
		return
	}
	v := s.version
	if !s.connected {
		v = 0
	}
	b = appendCommand(b, frame.ERROR)
	b = appendHeader(b, v, frame.Message, oneLine(msg))
	if hasReceipt {
		b = appendHeader(b, v, frame.ReceiptId, receipt)
	}
	for i := 0; i+1 < len(hdrs); i += 2 {
		b = appendHeader(b, v, hdrs[i], hdrs[i+1])
	}
	b = appendHeader(b, v, frame.ContentType, "text/plain")
	b = appendHeaderUint(b, frame.ContentLength, uint64(len(detail)))
	b = append(b, '\n')
	b = append(b, detail...)
	b = append(b, 0)
	s.c.Commit(b)
}

// handle runs one client frame.
func (s *session) handle(f *frame.Frame) error {
	if !s.connected {
		if f.Command == frame.CONNECT || f.Command == frame.STOMP {
			return s.connect(f)
		}
		return protoErr("not connected", "the first frame must be CONNECT or STOMP, not %s", f.Command)
	}
	var err error
	switch f.Command {
	case frame.SEND, frame.ACK, frame.NACK:
		if tx, ok := f.Header.Contains(frame.Transaction); ok {
			err = s.buffer(tx, f)
		} else {
			err = s.exec(f)
		}
	case frame.SUBSCRIBE:
		err = s.subscribe(f)
	case frame.UNSUBSCRIBE:
		err = s.unsubscribe(f)
	case frame.BEGIN:
		err = s.begin(f)
	case frame.COMMIT:
		err = s.commit(f)
	case frame.ABORT:
		err = s.abort(f)
	case frame.DISCONNECT:
		return s.disconnect(f)
	case frame.CONNECT, frame.STOMP:
		err = protoErr("already connected", "a session accepts one CONNECT frame")
	default:
		err = protoErr("unexpected frame", "%s is a server frame; clients must not send it", f.Command)
	}
	if err != nil {
		s.frameDone()
		return err
	}
	if id, ok := f.Header.Contains(frame.Receipt); ok {
		return s.receipt(id)
	}
	s.frameDone()
	return nil
}

// exec runs a SEND, ACK or NACK, now or at COMMIT.
func (s *session) exec(f *frame.Frame) error {
	switch f.Command {
	case frame.SEND:
		return s.send(f)
	case frame.ACK:
		return s.ack(f, false)
	default:
		return s.ack(f, true)
	}
}

// heartBeat sends an EOL when nothing is waiting to be written, then re-arms itself. It runs on a timer
// goroutine, so an idle connection costs no goroutine for its heart-beats.
func (s *session) heartBeat() {
	// Only an idle connection needs a beat: any frame queued since the last tick counts as one.
	if !s.sent.Swap(false) && s.c.Pending() == 0 && !s.c.Write(eol) {
		select {
		case <-s.c.Done():
			return
		default:
		}
	}
	s.mu.Lock()
	if s.beat != nil {
		s.beat.Reset(s.beatEvery)
	}
	s.mu.Unlock()
}

// shutdown is the connection's OnShutdown hook: tell the client, then close within die_delay.
func (s *session) shutdown() {
	s.sendError("server shutting down", "the broker is shutting down; reconnect later", "", false)
	s.c.CloseAfter(ErrShutdown, s.cfg.DieDelay)
}

// disconnect answers DISCONNECT: RECEIPT if asked, then close (STOMP 1.2 "DISCONNECT").
func (s *session) disconnect(f *frame.Frame) error {
	if id, ok := f.Header.Contains(frame.Receipt); ok {
		if err := s.receipt(id); err == nil { // after the receipts still waiting for their writes
			s.acks.Load().Wait(s.cfg.DieDelay)
		}
	}
	s.c.CloseAfter(ErrDisconnect, s.cfg.DieDelay)
	return ErrDisconnect
}

// cleanup releases the session's router state: subscriptions end, unacknowledged queue messages go back
// to their queues, open transactions are discarded.
func (s *session) cleanup() {
	s.mu.Lock()
	if s.beat != nil {
		s.beat.Stop()
		s.beat = nil
	}
	s.mu.Unlock()
	for id, sub := range s.subs {
		sub.close()
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
	s.bmu.Lock()
	s.backlog = nil
	s.bmu.Unlock()
	if s.tempOwner {
		s.h.temps.Delete(s.id)
	}
	s.deleteTemps()
	s.txs, s.txFrames, s.txBytes = nil, 0, 0
	if s.slot != nil {
		s.slot.Release()
		s.slot = nil
	}
}

// deadlineReader pushes the read deadline forward before each socket read while the client owes
// heart-beats, so a silent client is detected without a timer.
type deadlineReader struct {
	c     *protocol.Conn
	r     io.Reader
	every time.Duration // 0: no deadline
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.every > 0 {
		d.c.ArmReadDeadline(d.every)
	}
	return d.r.Read(p)
}

// ReadByte lets the frame Reader wait for the next frame inside the connection's buffered reader rather
// than in a buffer of its own.
func (d *deadlineReader) ReadByte() (byte, error) {
	if d.every > 0 {
		d.c.ArmReadDeadline(d.every)
	}
	if br, ok := d.r.(io.ByteReader); ok {
		return br.ReadByte()
	}
	var b [1]byte
	_, err := io.ReadFull(d.r, b[:])
	return b[0], err
}

// drained is the OnDrain hook: held receipts and retained messages go out, and consumers held back by a
// full queue may dispatch again. It runs on the writer goroutine without the outbound lock.
func (s *session) drained() {
	if q := s.acks.Load(); q != nil {
		q.Flush()
	}
	s.bmu.Lock()
	s.pumpBacklogLocked()
	s.bmu.Unlock()
	s.cons.Resume()
}

var _ protocol.Stepper = (*session)(nil)
