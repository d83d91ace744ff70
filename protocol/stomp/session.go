package stomp

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
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
	principal virtualhost.Principal
	clientID  string            // fills "%c" in access rules
	slot      *virtualhost.Host // the host whose connection slot this session holds, if any

	// Reader goroutine only.
	subs      map[string]*subscription
	txs       map[string]*transaction
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
}

// transaction buffers the SEND, ACK and NACK frames of one BEGIN..COMMIT.
type transaction struct {
	frames []*frame.Frame
	bytes  int64
}

var eol = []byte{'\n'}

// run reads and handles frames until the connection ends.
func (s *session) run() {
	defer s.cleanup()
	// The sniffer has seen only the first line of CONNECT; the rest must follow promptly.
	timeout := s.c.Connector().DetectTimeout
	if timeout <= 0 {
		timeout = conf.DefaultDetectTimeout
	}
	_ = s.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		s.rd.Wait()
		f, err := s.rd.Read()
		if err != nil {
			s.readFailed(err)
			return
		}
		if err := s.handle(f); err != nil {
			if !errors.Is(err, ErrDisconnect) {
				s.fail(err, f)
			}
			return
		}
		s.c.Pace() // subscribers over their windows hold this producer back (protocol.Pace)
	}
}

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

// connect negotiates the version, picks the virtual host, authenticates and answers CONNECTED
// (STOMP 1.2 "Connecting", "Protocol Negotiation", "Heart-beating").
func (s *session) connect(f *frame.Frame) error {
	v, ok := negotiateVersion(f.Header)
	if !ok {
		e := protoErr("unsupported protocol version", "this server supports STOMP 1.0, 1.1 and 1.2; the client accepts %q",
			f.Header.Get(frame.AcceptVersion))
		e.hdrs = []string{frame.Version, "1.0,1.1,1.2"}
		return e
	}
	var host *virtualhost.Host
	if name, ok := f.Header.Contains(frame.Host); ok && name != "" {
		host = s.h.hosts.Lookup(name)
		if host == nil {
			return protoErr("unknown virtual host", "no virtual host is named %q", name)
		}
	} else {
		host = s.h.hosts.Default()
		if host == nil {
			return protoErr("unknown virtual host", "the server has no virtual host")
		}
	}
	login, hasLogin := f.Header.Contains(frame.Login)
	s.clientID = f.Header.Get(clientIDHeader)
	if s.clientID == "" {
		s.clientID = s.id
	}
	p, err := s.login(host, login, []byte(f.Header.Get(frame.Passcode)), hasLogin, s.clientID)
	if err != nil {
		return err
	}
	var out, in time.Duration
	if v >= v11 {
		if hb, ok := f.Header.Contains(frame.HeartBeat); ok {
			cx, cy, err := frame.ParseHeartBeat(hb)
			if err != nil {
				return protoErr("invalid heart-beat", "heart-beat must be two integers \"cx,cy\", got %q", hb)
			}
			out = negotiateInterval(s.h.HeartBeatSend, cy)
			in = negotiateInterval(cx, s.h.HeartBeatReceive)
		}
	}

	s.version, s.connected = v, true
	s.rd.Version = v
	s.host, s.rt, s.principal = host, host.Router, p
	s.subs = make(map[string]*subscription)

	b, ok := s.c.Begin()
	if !ok {
		return ErrOutboundFull
	}
	b = appendCommand(b, frame.CONNECTED)
	b = appendHeader(b, 0, frame.Version, versionString(v))
	b = appendHeader(b, 0, frame.Server, ServerName)
	b = appendHeader(b, 0, frame.Session, s.id)
	if v >= v11 {
		b = append(b, "heart-beat:"...)
		b = strconv.AppendUint(b, uint64(s.h.HeartBeatSend/time.Millisecond), 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(s.h.HeartBeatReceive/time.Millisecond), 10)
		b = append(b, '\n')
	}
	s.c.Commit(appendBody(b, nil))

	s.c.OnDrain(s.drained)
	s.c.OnShutdown(s.shutdown)
	if in > 0 {
		// STOMP 1.2 "Heart-beating": allow for timing inaccuracies with a 50% margin.
		s.dr.every = in + in/2
	} else {
		_ = s.c.SetReadDeadline(time.Time{})
	}
	if out > 0 {
		s.mu.Lock()
		s.beatEvery = out
		s.beat = time.AfterFunc(out, s.heartBeat)
		s.mu.Unlock()
	}
	if s.h.log.Core().Enabled(zap.DebugLevel) {
		s.c.Log().Debug("stomp connected", zap.String("vhost", host.Name), zap.String("user", p.User), zap.String("version", versionString(v)),
			zap.Duration("heart_beat_out", out), zap.Duration("heart_beat_in", in))
	}
	return nil
}

// negotiateVersion picks the highest version both sides support; no accept-version header means 1.0.
func negotiateVersion(h *frame.Header) (int, bool) {
	list, ok := h.Contains(frame.AcceptVersion)
	if !ok {
		return v10, true
	}
	best := 0
	for _, v := range strings.Split(list, ",") {
		switch strings.TrimSpace(v) {
		case "1.0":
			best = max(best, v10)
		case "1.1":
			best = max(best, v11)
		case "1.2":
			best = max(best, v12)
		}
	}
	return best, best != 0
}

// negotiateInterval combines what one side can do with what the other wants (STOMP 1.2 "Heart-beating"):
// 0 if either is 0, else the larger.
func negotiateInterval(can, want time.Duration) time.Duration {
	if can == 0 || want == 0 {
		return 0
	}
	return max(can, want)
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
		delete(s.subs, id)
	}
	s.bmu.Lock()
	s.backlog = nil
	s.bmu.Unlock()
	if s.tempOwner {
		s.h.temps.Delete(s.id)
	}
	s.deleteTemps()
	s.txs = nil
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
		_ = d.c.SetReadDeadline(time.Now().Add(d.every))
	}
	return d.r.Read(p)
}

// ReadByte lets the frame Reader wait for the next frame inside the connection's buffered reader rather
// than in a buffer of its own.
func (d *deadlineReader) ReadByte() (byte, error) {
	if d.every > 0 {
		_ = d.c.SetReadDeadline(time.Now().Add(d.every))
	}
	if br, ok := d.r.(io.ByteReader); ok {
		return br.ReadByte()
	}
	var b [1]byte
	_, err := io.ReadFull(d.r, b[:])
	return b[0], err
}

// send publishes a SEND frame to each destination it names (STOMP 1.2 "SEND"). A persistent message or
// one whose sender wants a receipt is QoS 1.
func (s *session) send(f *frame.Frame) error {
	dest, ok := f.Header.Contains(frame.Destination)
	if !ok || dest == "" {
		return protoErr("missing destination", "SEND requires a destination header")
	}
	if max := s.host.MaxMessageLength; max > 0 && int64(len(f.Body)) > max {
		return protoErr("message too large", "virtual host %q accepts bodies of at most %d bytes (max_message_length)", s.host.Name, max)
	}
	var one [1]string
	var oneDest [1]router.Destination
	names, dests := one[:], oneDest[:]
	if sep := s.cfg.DestinationSeparator; sep != "" && strings.Contains(dest, sep) {
		names = s.g.SplitComposite(dest)
		dests = make([]router.Destination, len(names))
	} else {
		one[0] = dest
	}
	for i, name := range names {
		d, err := s.g.ParseName(name)
		if err != nil {
			return &frameError{msg: "invalid destination", detail: err.Error(), cause: err}
		}
		if d.Kind == router.DurableSub {
			return protoErr("invalid destination", "%q names a durable subscription; send to its topic", name)
		}
		if d, err = s.tempName(name, d); err != nil {
			return err
		}
		if err := s.maySend(name, d); err != nil {
			return err
		}
		dests[i] = d
	}
	persistent := f.Header.Get("persistent") == "true"
	_, receipt := f.Header.Contains(frame.Receipt)
	var qos uint8
	if persistent || receipt {
		qos = 1
	}
	var retain bool
	body := f.Body
	switch r := f.Header.Get("retain"); r {
	case "":
	case "set":
		retain = true
	case "remove":
		retain, body = true, nil
	default:
		return protoErr("invalid retain header", "retain must be set or remove, got %q", r)
	}
	var expires int64
	if e, ok := f.Header.Contains("expires"); ok && e != "" && e != "0" {
		n, err := strconv.ParseInt(e, 10, 64)
		if err != nil || n < 0 {
			return protoErr("invalid expires header", "expires must be Unix milliseconds, got %q", e)
		}
		expires = n
	}
	if t, ok := f.Header.Contains("ttl"); ok && t != "" {
		// Apollo: time to live in milliseconds from now; with expires too, the earlier wins.
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n <= 0 {
			return protoErr("invalid ttl header", "ttl must be a positive number of milliseconds, got %q", t)
		}
		if e := time.Now().UnixMilli() + n; expires == 0 || e < expires {
			expires = e
		}
	}
	var priority uint8
	if p, ok := f.Header.Contains("priority"); ok && p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return protoErr("invalid priority header", "priority must be an integer from 0 to 9, got %q", p)
		}
		priority = uint8(min(n, router.MaxPriority))
	}
	group := f.Header.Get("message_group")
	if group == "" {
		group = f.Header.Get("JMSXGroupID")
	}
	hdrs := s.appHeaders(f)
	for i, d := range dests {
		origin := names[i]
		if isTemp(d.Kind) {
			origin = "" // the name as written is local to this session; others see the global rendering
		}
		m := &router.Message{
			Dest:        d,
			Body:        body,
			QoS:         qos,
			Persistent:  persistent,
			Retain:      retain,
			Expires:     expires,
			Priority:    priority,
			Group:       group,
			ContentType: f.Header.Get(frame.ContentType),
			Headers:     hdrs,
			Origin:      origin,
			OriginGram:  s.g,
			Publisher:   s.c,
		}
		if receipt {
			if tr := s.tracker(); tr != nil {
				m.Tracker = tr // the receipt waits for the message's writes (receipts.go)
			}
		}
		if err := s.publish(m); err != nil {
			return &frameError{msg: "send failed", detail: names[i] + ": " + err.Error(), cause: err}
		}
	}
	return nil
}

// publish routes m. A full queue whose policy is block (the default) blocks this producer (DESIGN.md §5):
// the reader goroutine stops reading its socket, so TCP pushes back on the client, and waits for room
// (router.WaitRoom) for up to Handler.QueueFullWait before the SEND fails. Under drop_head and drop_tail
// the router makes room or drops the message itself, and the SEND succeeds.
func (s *session) publish(m *router.Message) error {
	res := s.rt.Publish(m)
	if res.Pressure != nil {
		s.c.HoldFor(res.Pressure) // a full durable subscription with a consumer draining it
	}
	if !errors.Is(res.Err, router.ErrQueueFull) || s.h.QueueFullWait <= 0 {
		return res.Err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.h.QueueFullWait)
	defer cancel()
	go func() {
		select {
		case <-s.c.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		if err := s.rt.WaitRoom(ctx, m); err != nil {
			return res.Err
		}
		if res = s.rt.Publish(m); !errors.Is(res.Err, router.ErrQueueFull) {
			return res.Err
		}
	}
}

// appHeaders collects the SEND headers that travel with the message: everything the broker does not
// interpret, plus the configured stamps.
func (s *session) appHeaders(f *frame.Frame) []router.Header {
	var hdrs []router.Header
	for i := 0; i < f.Header.Len(); i++ {
		k, v := f.Header.GetAt(i)
		// The stamp headers are the broker's word: a client's own value would forge them.
		if reservedHeader(k) || k == "retain" || k == s.cfg.AddUserHeader || k == s.cfg.AddTimestampHeader ||
			k == s.cfg.AddRedeliveriesHeader {
			continue
		}
		if k == "reply-to" {
			v = s.replyTo(v)
		}
		hdrs = append(hdrs, router.Header{Name: k, Value: v})
	}
	if n := s.cfg.AddUserHeader; n != "" {
		hdrs = append(hdrs, router.Header{Name: n, Value: s.principal.User})
	}
	if n := s.cfg.AddTimestampHeader; n != "" {
		hdrs = append(hdrs, router.Header{Name: n, Value: strconv.FormatInt(time.Now().UnixMilli(), 10)})
	}
	return hdrs
}

// reservedHeader reports headers the broker sets itself on MESSAGE frames or interprets on SEND.
func reservedHeader(k string) bool {
	switch k {
	case frame.Destination, frame.ContentLength, frame.ContentType, frame.Receipt, frame.Transaction,
		frame.MessageId, frame.Subscription, frame.Ack, "persistent", "expires", "redelivered":
		return true
	}
	return false
}

// begin starts a transaction (STOMP 1.2 "BEGIN").
func (s *session) begin(f *frame.Frame) error {
	tx, ok := f.Header.Contains(frame.Transaction)
	if !ok || tx == "" {
		return protoErr("missing transaction", "BEGIN requires a transaction header")
	}
	if _, dup := s.txs[tx]; dup {
		return protoErr("duplicate transaction", "transaction %q is already open", tx)
	}
	if len(s.txs) >= MaxTransactions {
		return protoErr("too many transactions", "a session may have at most %d open transactions", MaxTransactions)
	}
	if s.txs == nil {
		s.txs = make(map[string]*transaction)
	}
	s.txs[tx] = &transaction{}
	return nil
}

// buffer adds a SEND, ACK or NACK to an open transaction.
func (s *session) buffer(tx string, f *frame.Frame) error {
	t := s.txs[tx]
	if t == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	if len(t.frames) >= MaxTransactionFrames {
		return protoErr("transaction too large", "a transaction may hold at most %d frames", MaxTransactionFrames)
	}
	if t.bytes+int64(len(f.Body)) > s.cfg.MaxMessageLength {
		return protoErr("transaction too large", "the bodies in a transaction may total at most %d bytes", s.cfg.MaxMessageLength)
	}
	t.bytes += int64(len(f.Body))
	t.frames = append(t.frames, f)
	return nil
}

// commit runs a transaction's frames in order (STOMP 1.2 "COMMIT").
func (s *session) commit(f *frame.Frame) error {
	tx := f.Header.Get(frame.Transaction)
	t := s.txs[tx]
	if t == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	delete(s.txs, tx)
	for _, bf := range t.frames {
		if err := s.exec(bf); err != nil {
			return err
		}
	}
	return nil
}

// abort discards a transaction (STOMP 1.2 "ABORT"): its messages are not sent and its acknowledgements
// are not applied.
func (s *session) abort(f *frame.Frame) error {
	tx := f.Header.Get(frame.Transaction)
	if s.txs[tx] == nil {
		return protoErr("unknown transaction", "transaction %q is not open", tx)
	}
	delete(s.txs, tx)
	return nil
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
