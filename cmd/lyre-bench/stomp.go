package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// STOMP acknowledgement modes of SUBSCRIBE [STOMP 1.2, SUBSCRIBE ack Header].
const (
	ackAuto             = "auto"
	ackClient           = "client"
	ackClientIndividual = "client-individual"
)

// receiptGather bounds how long a producer with a full receipt window, having got one receipt back, waits
// for more before it resumes; see stompPublisher.take.
const receiptGather = 200 * time.Microsecond

// receiptBye is the receipt asked for by DISCONNECT; receipts of SENDs are decimal sequence numbers.
const receiptBye = "bye"

// prefetchHeaders carry the consumer window in every broker's dialect: Apollo and Lyre's credit,
// ActiveMQ's activemq.prefetchSize and RabbitMQ's prefetch-count. Brokers ignore headers they do not know.
var prefetchHeaders = []string{"credit", "prefetch-count", "activemq.prefetchSize"}

var errBrokerError = errors.New("lyre-bench: broker sent ERROR")

// appendEscaped appends a header name or value escaped as STOMP 1.1/1.2 require outside CONNECT and
// CONNECTED [STOMP 1.2, Value Encoding].
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case ':':
			dst = append(dst, '\\', 'c')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func appendHeader(dst []byte, name, value string) []byte {
	dst = appendEscaped(dst, name)
	dst = append(dst, ':')
	dst = appendEscaped(dst, value)
	return append(dst, '\n')
}

// stompConnectOptions are the CONNECT headers the bench sets.
type stompConnectOptions struct {
	host     string
	login    string
	passcode string
}

// appendStompConnect appends a CONNECT offering 1.1 and 1.2 without heart-beats. CONNECT headers are not
// escaped, for compatibility with 1.0 servers [STOMP 1.2, Value Encoding].
func appendStompConnect(dst []byte, o stompConnectOptions) []byte {
	dst = append(dst, "CONNECT\naccept-version:1.1,1.2\nhost:"...)
	dst = append(dst, o.host...)
	dst = append(dst, '\n')
	if o.login != "" {
		dst = append(dst, "login:"...)
		dst = append(dst, o.login...)
		dst = append(dst, "\npasscode:"...)
		dst = append(dst, o.passcode...)
		dst = append(dst, '\n')
	}
	return append(dst, "heart-beat:0,0\n\n\x00"...)
}

// appendStompSubscribe appends a SUBSCRIBE asking for a receipt, so the subscriber knows it is in place
// before publishers start. prefetch > 0 is sent under every name in prefetchHeaders.
func appendStompSubscribe(dst []byte, id, dest, ack string, prefetch int, receipt string) []byte {
	dst = append(dst, "SUBSCRIBE\n"...)
	dst = appendHeader(dst, "id", id)
	dst = appendHeader(dst, "destination", dest)
	dst = appendHeader(dst, "ack", ack)
	if prefetch > 0 {
		for _, h := range prefetchHeaders {
			dst = appendHeader(dst, h, strconv.Itoa(prefetch))
		}
	}
	dst = appendHeader(dst, "receipt", receipt)
	return append(dst, "\n\x00"...)
}

// appendSendPrefix appends the part of a SEND frame that is the same for every message: command,
// destination, content-length (the payload is binary and may hold NULs [STOMP 1.2, Body]) and persistent.
// Per message follow an optional receipt header, the blank line, the payload and the NUL.
func appendSendPrefix(dst []byte, dest string, size int, persistent bool) []byte {
	dst = append(dst, "SEND\n"...)
	dst = appendHeader(dst, "destination", dest)
	dst = append(dst, "content-length:"...)
	dst = strconv.AppendInt(dst, int64(size), 10)
	dst = append(dst, '\n')
	if persistent {
		dst = append(dst, "persistent:true\n"...)
	}
	return dst
}

// appendStompAck appends an ACK for a delivery. In 1.2 it names the MESSAGE's ack header; in 1.0 and 1.1 its
// message-id, and in 1.1 also its subscription [STOMP 1.2, ACK; STOMP 1.1, ACK]. The values are the raw bytes
// of the MESSAGE's headers: escaped there the same way they must be here, so they are echoed unchanged.
func appendStompAck(dst []byte, version string, id, subscription []byte) []byte {
	if version == "1.2" {
		dst = append(dst, "ACK\nid:"...)
		dst = append(dst, id...)
		return append(dst, "\n\n\x00"...)
	}
	dst = append(dst, "ACK\nmessage-id:"...)
	dst = append(dst, id...)
	if version == "1.1" {
		dst = append(dst, "\nsubscription:"...)
		dst = append(dst, subscription...)
	}
	return append(dst, "\n\n\x00"...)
}

// appendStompDisconnect appends a DISCONNECT asking for a receipt: the broker sends it after it has
// processed every earlier frame, which makes for a graceful close [STOMP 1.2, DISCONNECT].
func appendStompDisconnect(dst []byte, receipt string) []byte {
	dst = append(dst, "DISCONNECT\n"...)
	dst = appendHeader(dst, "receipt", receipt)
	return append(dst, "\n\x00"...)
}

// stompFrame is one frame parsed in place. Its slices alias the reader's buffer and stay valid until the
// next call to next. Header names and values are raw, still escaped.
type stompFrame struct {
	command []byte
	headers [][2][]byte
	body    []byte
}

// header returns the first value of the named header: the first occurrence wins [STOMP 1.2, Repeated
// Header Entries].
func (f *stompFrame) header(name string) ([]byte, bool) {
	for _, h := range f.headers {
		if string(h[0]) == name {
			return h[1], true
		}
	}
	return nil, false
}

func (f *stompFrame) is(command string) bool { return string(f.command) == command }

// describe renders an ERROR frame for an error message.
func (f *stompFrame) describe() string {
	msg, _ := f.header("message")
	body := strings.TrimSpace(string(f.body))
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	if body != "" {
		return fmt.Sprintf("%s: %s", msg, body)
	}
	return string(msg)
}

// frameReader cuts whole STOMP frames out of a stream, sharing the MQTT packetReader's buffer management:
// frames are parsed in place, a read error loses nothing, the buffer grows up to max. EOLs between frames
// (heart-beats) are skipped.
type frameReader struct {
	packetReader
	f stompFrame
}

func newFrameReader(rd io.Reader, size, max int) *frameReader {
	return &frameReader{packetReader: packetReader{rd: rd, buf: make([]byte, size), max: max},
		f: stompFrame{headers: make([][2][]byte, 0, 16)}}
}

// next returns the next frame.
func (p *frameReader) next() (*stompFrame, error) {
	for {
		need, err := p.parse()
		if err != nil {
			return nil, err
		}
		if need == 0 {
			return &p.f, nil
		}
		if need > p.max {
			return nil, fmt.Errorf("%w: frame over %d bytes", errPacketTooLarge, p.max)
		}
		if err := p.fill(need); err != nil {
			return nil, err
		}
	}
}

// parse parses the frame at p.r into p.f and consumes it. It returns need > 0, the bytes from p.r it must
// have, when the buffer ends before the frame does.
func (p *frameReader) parse() (need int, err error) {
	for p.r < p.w {
		if c := p.buf[p.r]; c == '\n' {
			p.r++
		} else if c == '\r' {
			if p.r+1 == p.w {
				return 2, nil
			}
			if p.buf[p.r+1] != '\n' {
				return 0, fmt.Errorf("%w: CR without LF between frames", errMalformed)
			}
			p.r += 2
		} else {
			break
		}
	}
	b := p.buf[p.r:p.w]
	line := func(from int) (end, next int) {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return -1, -1
		}
		end = from + i
		if end > from && b[end-1] == '\r' {
			end--
		}
		return end, from + i + 1
	}
	end, pos := line(0)
	if end < 0 {
		return len(b) + 1, nil
	}
	if end == 0 {
		return 0, fmt.Errorf("%w: empty command", errMalformed)
	}
	p.f.command = b[:end]
	p.f.headers = p.f.headers[:0]
	contentLength := -1
	for {
		start := pos
		end, pos = line(start)
		if end < 0 {
			return len(b) + 1, nil
		}
		if end == start {
			break
		}
		h := b[start:end]
		colon := bytes.IndexByte(h, ':')
		if colon < 0 {
			return 0, fmt.Errorf("%w: header line without a colon", errMalformed)
		}
		name, value := h[:colon], h[colon+1:]
		if contentLength < 0 && string(name) == "content-length" {
			if contentLength, err = parseDecimal(value); err != nil {
				return 0, err
			}
		}
		p.f.headers = append(p.f.headers, [2][]byte{name, value})
	}
	var total int
	if contentLength >= 0 {
		total = pos + contentLength + 1
		if total > len(b) {
			return total, nil
		}
		if b[total-1] != 0 {
			return 0, fmt.Errorf("%w: no NUL after content-length bytes of body", errMalformed)
		}
	} else {
		i := bytes.IndexByte(b[pos:], 0)
		if i < 0 {
			return len(b) + 1, nil
		}
		total = pos + i + 1
	}
	p.f.body = b[pos : total-1]
	p.r += total
	return 0, nil
}

// parseDecimal parses a non-negative decimal integer of at most 15 digits without allocating.
func parseDecimal(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 15 {
		return 0, fmt.Errorf("%w: bad number %q", errMalformed, b)
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad number %q", errMalformed, b)
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// stompOptions configure every STOMP connection of a run.
type stompOptions struct {
	addr         string
	host         string // CONNECT host header: the virtual host
	login        string
	passcode     string
	timeout      time.Duration // dial plus CONNECT/CONNECTED and SUBSCRIBE/RECEIPT
	maxFrame     int
	destPrefix   string // "/topic/" or "/queue/" typically; topic parts are joined with "."
	ack          string // subscribers' ack mode
	ackEvery     int    // ack client: one cumulative ACK per this many messages
	prefetch     int    // subscribers' window of unacknowledged messages; 0 = the broker's default
	persistent   bool   // SEND with persistent:true
	receiptEvery int    // SEND asks a receipt every this many messages; 0 = never
}

// stompConn is one connection. Its reader and writer are used by one goroutine each at most.
type stompConn struct {
	nc        net.Conn
	fr        *frameReader
	bw        *bufio.Writer
	opt       *stompOptions
	version   string // negotiated: "1.0", "1.1" or "1.2"
	closeOnce sync.Once
}

// dialSTOMP connects and completes the CONNECT/CONNECTED exchange.
func dialSTOMP(ctx context.Context, o *stompOptions, rbuf, wbuf int) (*stompConn, error) {
	d := net.Dialer{Timeout: o.timeout}
	nc, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	c := &stompConn{nc: nc, fr: newFrameReader(nc, rbuf, o.maxFrame), bw: bufio.NewWriterSize(nc, wbuf), opt: o}
	if err := c.handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s: %w", o.addr, err)
	}
	return c, nil
}

func (c *stompConn) handshake() error {
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	if _, err := c.nc.Write(appendStompConnect(nil, stompConnectOptions{host: c.opt.host, login: c.opt.login, passcode: c.opt.passcode})); err != nil {
		return err
	}
	f, err := c.fr.next()
	if err != nil {
		return err
	}
	switch {
	case f.is("CONNECTED"):
	case f.is("ERROR"):
		return fmt.Errorf("%w: %s", errRefused, f.describe())
	default:
		return fmt.Errorf("%w: %s instead of CONNECTED", errUnexpected, f.command)
	}
	c.version = "1.0" // a CONNECTED without version is a 1.0 server [STOMP 1.1, Protocol Negotiation]
	if v, ok := f.header("version"); ok {
		c.version = string(v)
	}
	if c.version != "1.1" && c.version != "1.2" && c.opt.ack == ackClientIndividual {
		return fmt.Errorf("%w: ack client-individual needs STOMP 1.1, broker speaks %s", errUnexpected, c.version)
	}
	return c.nc.SetDeadline(time.Time{})
}

// subscribe sends a SUBSCRIBE and waits for its RECEIPT.
func (c *stompConn) subscribe(dest string) error {
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	if _, err := c.nc.Write(appendStompSubscribe(nil, "0", dest, c.opt.ack, c.opt.prefetch, "sub-0")); err != nil {
		return err
	}
	for {
		f, err := c.fr.next()
		if err != nil {
			return err
		}
		switch {
		case f.is("RECEIPT"):
			if id, _ := f.header("receipt-id"); string(id) != "sub-0" {
				return fmt.Errorf("%w: RECEIPT for %q, asked for sub-0", errUnexpected, id)
			}
			return c.nc.SetDeadline(time.Time{})
		case f.is("ERROR"):
			return fmt.Errorf("%w: %s: %s", errSubRefused, dest, f.describe())
		case f.is("MESSAGE"):
			// Left over on the destination from before this run: not ours, and not acknowledged.
		default:
			return fmt.Errorf("%w: %s instead of RECEIPT", errUnexpected, f.command)
		}
	}
}

func (c *stompConn) close() error {
	var err error
	c.closeOnce.Do(func() { err = c.nc.Close() })
	return err
}

// stompDriver is the STOMP side of the bench.
type stompDriver struct {
	opt stompOptions
}

func (d *stompDriver) topic(parts ...string) string {
	return d.opt.destPrefix + strings.Join(parts, ".")
}

func (d *stompDriver) dialPublisher(ctx context.Context, _ string, spec *pubSpec, st *pubStats) (client, error) {
	c, err := dialSTOMP(ctx, &d.opt, 4<<10, 64<<10)
	if err != nil {
		return nil, err
	}
	p := &stompPublisher{c: c, spec: spec, st: st, readerDone: make(chan struct{}), bye: make(chan struct{})}
	if d.opt.receiptEvery > 0 {
		p.tokens = make(chan struct{}, spec.inflight)
		for range spec.inflight {
			p.tokens <- struct{}{}
		}
	}
	return p, nil
}

func (d *stompDriver) dialSubscriber(ctx context.Context, _ string, spec *subSpec, st *subStats) (client, error) {
	c, err := dialSTOMP(ctx, &d.opt, 64<<10, 16<<10)
	if err != nil {
		return nil, err
	}
	if err := c.subscribe(spec.filter); err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	st.granted = 2 // no QoS in STOMP: never warn about a downgrade
	s := &stompSubscriber{c: c, st: st, lastAck: make([]byte, 0, 64), lastSub: make([]byte, 0, 16)}
	c.fr.beforeRead = c.fr.subscriberHook(c.bw, spec.coalesce)
	return s, nil
}

func (d *stompDriver) dialIdle(context.Context, string) (idleConn, error) {
	return nil, fmt.Errorf("%w: -mode idle is MQTT only", errUsage)
}

// stompPublisher sends spec.count messages (or until spec.ctl.stop) on one connection. With receipts, every
// opt.receiptEvery-th SEND asks one, and at most spec.inflight receipts are outstanding: the window is a
// channel of tokens the writer takes per receipt and the reader gives back per RECEIPT.
type stompPublisher struct {
	c          *stompConn
	spec       *pubSpec
	st         *pubStats
	tokens     chan struct{} // capacity spec.inflight; nil without receipts
	stashed    int           // tokens the writer has taken off tokens and not used yet
	lastSeq    atomic.Uint64 // sequence number + 1 of the latest SEND asking a receipt
	bye        chan struct{} // closed by the reader on the DISCONNECT receipt
	readerDone chan struct{}
	readerErr  error // set before readerDone closes
	closing    atomic.Bool
	receipt    [32]byte    // scratch for the receipt header, owned by the writer
	gather     *time.Timer // take's wait for further receipts, made once
}

func (p *stompPublisher) run() error {
	go p.readLoop()
	err := p.writeLoop()
	if err == nil {
		err = p.finish()
	}
	p.closing.Store(true)
	p.c.close()
	<-p.readerDone
	if err != nil && p.spec.ctl.interrupted.Load() {
		return nil // connection closed under us by Ctrl-C
	}
	return err
}

func (p *stompPublisher) stop() { p.c.close() }

func (p *stompPublisher) writeLoop() error {
	s, bw, every := p.spec, p.c.bw, uint64(p.c.opt.receiptEvery)
	payload := make([]byte, s.size)
	prefix := appendSendPrefix(nil, s.topic, s.size, p.c.opt.persistent)
	tag := uint64(s.index) << seqBits
	var period float64
	if s.rate > 0 {
		period = float64(time.Second) / s.rate
	}
	start := time.Now()
	batchStart := start
	for seq := uint64(0); s.count == 0 || seq < s.count; seq++ {
		if s.ctl.stop.Load() {
			break
		}
		askReceipt := every > 0 && (seq+1)%every == 0
		if askReceipt {
			if err := p.take(); errors.Is(err, errStopped) {
				break
			} else if err != nil {
				return err
			}
		}
		now := time.Now()
		binary.BigEndian.PutUint64(payload, uint64(now.UnixNano()))
		binary.BigEndian.PutUint64(payload[8:], tag|seq)
		if bw.Buffered() == 0 {
			batchStart = now
		}
		bw.Write(prefix)
		if askReceipt {
			r := append(p.receipt[:0], "receipt:"...)
			r = strconv.AppendUint(r, seq, 10)
			bw.Write(append(r, "\n\n"...))
			p.lastSeq.Store(seq + 1)
		} else {
			bw.WriteByte('\n')
		}
		bw.Write(payload)
		if err := bw.WriteByte(0); err != nil {
			return err
		}
		p.st.sent.Add(1)
		if period > 0 {
			due := start.Add(time.Duration(float64(seq+1) * period))
			if time.Until(due) > 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
				for wait := time.Until(due); wait > 0 && !s.ctl.stop.Load(); wait = time.Until(due) {
					time.Sleep(min(wait, 100*time.Millisecond))
				}
				continue
			}
		}
		if bw.Buffered() > 0 && now.Sub(batchStart) >= maxBatchDelay {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// take takes a receipt token. When the window is full it flushes and waits until a quarter of it is free,
// so that a broker answering receipt by receipt does not cost a write per SEND; but once a receipt is in
// it waits at most receiptGather for the next one. A broker with Nagle's algorithm on (ActiveMQ's default) holds
// its second small RECEIPT until our delayed ACK, tens of milliseconds, and waiting for the whole quarter
// would stall the producer that long every round.
func (p *stompPublisher) take() error {
	if p.stashed > 0 {
		p.stashed--
		return nil
	}
	select {
	case <-p.tokens:
		return nil
	default:
	}
	if err := p.c.bw.Flush(); err != nil {
		return err
	}
	if p.gather == nil {
		p.gather = time.NewTimer(time.Hour)
	}
	defer p.gather.Stop()
	for need := max(1, cap(p.tokens)/4); p.stashed < need; {
		var gathered <-chan time.Time
		if p.stashed > 0 {
			p.gather.Reset(receiptGather)
			gathered = p.gather.C
		}
		select {
		case <-p.tokens:
			p.stashed++
		case <-gathered:
			return p.take()
		case <-p.readerDone:
			return p.readerErrOr(io.ErrUnexpectedEOF)
		case <-p.spec.ctl.stopCh:
			return errStopped
		}
	}
	return p.take()
}

// finish waits (up to spec.drain) for the outstanding receipts, then disconnects, waiting for the
// DISCONNECT's receipt so that every SEND is processed before the connection closes.
func (p *stompPublisher) finish() error {
	timer := time.NewTimer(p.spec.drain)
	defer timer.Stop()
	for got := p.stashed; p.tokens != nil && got < cap(p.tokens); {
		select {
		case <-p.tokens:
			got++
		case <-p.readerDone:
			return p.readerErrOr(io.ErrUnexpectedEOF)
		case <-timer.C:
			return fmt.Errorf("%w: %d of %d receipts outstanding after %v", errStalled, cap(p.tokens)-got, cap(p.tokens), p.spec.drain)
		case <-p.spec.ctl.interruptCh:
			return errStopped
		}
	}
	p.c.bw.Write(appendStompDisconnect(nil, receiptBye))
	if err := p.c.bw.Flush(); err != nil {
		return err
	}
	select {
	case <-p.readerDone:
		select {
		case <-p.bye:
			return nil
		default:
			return p.readerErrOr(io.ErrUnexpectedEOF)
		}
	case <-timer.C:
		return fmt.Errorf("%w: no receipt for DISCONNECT after %v", errStalled, p.spec.drain)
	case <-p.spec.ctl.interruptCh:
		return errStopped
	}
}

func (p *stompPublisher) readerErrOr(def error) error {
	<-p.readerDone
	if p.readerErr != nil {
		return p.readerErr
	}
	return def
}

// readLoop handles RECEIPTs and ERRORs. A receipt confirms its SEND and, since a broker processes a
// connection's frames in order, every SEND before it; acked counts them. Receipts that confirm nothing new
// or would overfill the window are counted as unexpected.
func (p *stompPublisher) readLoop() {
	defer close(p.readerDone)
	var confirmed uint64 // sequence number + 1 of the latest confirmed SEND
	for {
		f, err := p.c.fr.next()
		if err != nil {
			if !p.closing.Load() {
				p.readerErr = err
			}
			return
		}
		switch {
		case f.is("RECEIPT"):
			id, _ := f.header("receipt-id")
			if string(id) == receiptBye {
				close(p.bye) // the last frame: the broker may close the connection now
				return
			}
			seq, err := parseDecimal(id)
			if err != nil || uint64(seq) < confirmed || uint64(seq) >= p.lastSeq.Load() || p.tokens == nil {
				p.st.unexpected.Add(1)
				continue
			}
			select {
			case p.tokens <- struct{}{}:
				p.st.acked.Add(uint64(seq) + 1 - confirmed)
				confirmed = uint64(seq) + 1
			default:
				p.st.unexpected.Add(1)
			}
		case f.is("ERROR"):
			p.readerErr = fmt.Errorf("%w: %s", errBrokerError, f.describe())
			return
		default:
			p.readerErr = fmt.Errorf("%w: %s on a publishing connection", errUnexpected, f.command)
			return
		}
	}
}

// stompSubscriber reads MESSAGEs and acknowledges them as its ack mode asks: nothing for auto, every one
// for client-individual, a cumulative ACK every opt.ackEvery for client. ACKs are batched by the frame
// reader's beforeRead hook. It is the only goroutine using its connection.
type stompSubscriber struct {
	c        *stompConn
	st       *subStats
	stopping atomic.Bool
	running  atomic.Bool
	unacked  int    // ack client: deliveries since the last cumulative ACK
	lastAck  []byte // ack client: the id to acknowledge them with
	lastSub  []byte
	scratch  []byte
}

func (s *stompSubscriber) run() error {
	s.running.Store(true)
	c := s.c
	for {
		f, err := c.fr.next()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				if s.stopping.Load() {
					return nil
				}
				return err
			}
			if s.stopping.Load() {
				s.disconnect()
				return nil
			}
			continue
		}
		switch {
		case f.is("MESSAGE"):
			s.st.observe(f.body, time.Now().UnixNano())
			if err := s.ack(f); err != nil {
				return err
			}
		case f.is("RECEIPT"):
		case f.is("ERROR"):
			return fmt.Errorf("%w: %s", errBrokerError, f.describe())
		default:
			return fmt.Errorf("%w: %s on a subscribing connection", errUnexpected, f.command)
		}
	}
}

// ack writes (without flushing) the acknowledgement a delivery needs.
func (s *stompSubscriber) ack(f *stompFrame) error {
	o := s.c.opt
	if o.ack == ackAuto {
		return nil
	}
	idHeader := "message-id"
	if s.c.version == "1.2" {
		idHeader = "ack"
	}
	id, ok := f.header(idHeader)
	if !ok {
		return fmt.Errorf("%w: MESSAGE without %s header", errMalformed, idHeader)
	}
	sub, _ := f.header("subscription")
	if o.ack == ackClientIndividual {
		s.scratch = appendStompAck(s.scratch[:0], s.c.version, id, sub)
		_, err := s.c.bw.Write(s.scratch)
		return err
	}
	s.lastAck, s.lastSub = append(s.lastAck[:0], id...), append(s.lastSub[:0], sub...)
	if s.unacked++; s.unacked >= o.ackEvery {
		return s.flushCumulative()
	}
	return nil
}

// flushCumulative writes the pending cumulative ACK of ack mode client.
func (s *stompSubscriber) flushCumulative() error {
	if s.unacked == 0 {
		return nil
	}
	s.unacked = 0
	s.scratch = appendStompAck(s.scratch[:0], s.c.version, s.lastAck, s.lastSub)
	_, err := s.c.bw.Write(s.scratch)
	return err
}

// disconnect acknowledges what is pending, so that a queue does not redeliver it to another consumer,
// and disconnects, waiting briefly for the broker to confirm.
func (s *stompSubscriber) disconnect() {
	c := s.c
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	s.flushCumulative()
	c.bw.Write(appendStompDisconnect(nil, receiptBye))
	if c.bw.Flush() == nil {
		for {
			f, err := c.fr.next()
			if err != nil || f.is("ERROR") {
				break
			}
			if id, _ := f.header("receipt-id"); f.is("RECEIPT") && string(id) == receiptBye {
				break
			}
		}
	}
	c.close()
}

// stop asks run to disconnect; see mqttSubscriber.stop for the deadline handshake.
func (s *stompSubscriber) stop() {
	s.stopping.Store(true)
	if !s.running.Load() {
		s.c.close()
		return
	}
	s.c.nc.SetWriteDeadline(time.Now().Add(s.c.opt.timeout))
	s.c.nc.SetReadDeadline(time.Now())
}

// normalizeSTOMP applies the STOMP flags' defaults and checks them.
func (c *config) normalizeSTOMP() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
	}
	switch {
	case c.mode == "queue" && c.proto != "stomp":
		return bad("-mode queue needs -proto stomp")
	case c.mode == "mqtt2stomp" && c.proto != "mqtt":
		return bad("-mode mqtt2stomp publishes with MQTT: leave -proto at mqtt")
	}
	if c.ack == "" {
		c.ack = ackAuto
		if c.mode == "queue" {
			c.ack = ackClientIndividual
		}
	}
	if c.destPrefix == "" {
		c.destPrefix = "/topic/"
		if c.mode == "queue" {
			c.destPrefix = "/queue/"
		}
	}
	if c.login == "" {
		c.login, c.passcode = c.user, orString(c.passcode, c.pass)
	}
	if c.stompAddr == "" || c.mode != "mqtt2stomp" {
		c.stompAddr = c.addr
	}
	if c.vhost == "" {
		if host, _, err := net.SplitHostPort(c.stompAddr); err == nil {
			c.vhost = host
		}
	}
	switch {
	case c.ack != ackAuto && c.ack != ackClient && c.ack != ackClientIndividual:
		return bad("-ack %q: want auto, client or client-individual", c.ack)
	case c.ackEvery < 1:
		return bad("-ack-every must be at least 1")
	case c.prefetch < 0:
		return bad("-prefetch must not be negative")
	case c.receiptEvery < 0:
		return bad("-receipt-every must not be negative")
	case c.mode == "mqtt2stomp" && (c.persistent || c.receiptEvery > 0):
		return bad("-persistent and -receipt-every are for STOMP producers; mqtt2stomp publishes with MQTT (use -qos)")
	}
	return nil
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func newSTOMPDriver(c *config) *stompDriver {
	return &stompDriver{opt: stompOptions{
		addr: c.stompAddr, host: c.vhost, login: c.login, passcode: c.passcode, timeout: c.timeout,
		maxFrame: max(c.size+4096, 1<<20), destPrefix: c.destPrefix, ack: c.ack, ackEvery: c.ackEvery,
		prefetch: c.prefetch, persistent: c.persistent, receiptEvery: c.receiptEvery,
	}}
}
