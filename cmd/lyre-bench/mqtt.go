package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MQTT control packet types: the high nibble of the fixed header [MQTT 2.2.1].
const (
	mqttCONNECT    = 1
	mqttCONNACK    = 2
	mqttPUBLISH    = 3
	mqttPUBACK     = 4
	mqttPUBREC     = 5
	mqttPUBREL     = 6
	mqttPUBCOMP    = 7
	mqttSUBSCRIBE  = 8
	mqttSUBACK     = 9
	mqttPINGREQ    = 12
	mqttPINGRESP   = 13
	mqttDISCONNECT = 14
)

// mqttMaxRemaining is the largest remaining length four varint bytes can carry [MQTT 2.2.3].
const mqttMaxRemaining = 268435455

// Read coalescing thresholds for subscribers; see subSpec.coalesce.
const (
	coalesceBelow  = 8 << 10
	coalesceWithin = 100 * time.Microsecond
)

// maxBatchDelay bounds how long a published message may wait in the write buffer before it is flushed, so that
// batching at full speed does not show up as latency.
const maxBatchDelay = time.Millisecond

var (
	errMalformed      = errors.New("lyre-bench: malformed packet")
	errPacketTooLarge = errors.New("lyre-bench: packet too large")
	errUnexpected     = errors.New("lyre-bench: unexpected packet")
	errRefused        = errors.New("lyre-bench: connection refused")
	errSubRefused     = errors.New("lyre-bench: subscription refused")
	errStalled        = errors.New("lyre-bench: acknowledgements stalled")
)

var (
	mqttPingreq    = []byte{mqttPINGREQ << 4, 0}
	mqttDisconnect = []byte{mqttDISCONNECT << 4, 0}
)

// connackReasons names the CONNACK return codes of MQTT 3.1.1 [MQTT 3.2.2.3].
var connackReasons = [...]string{
	1: "unacceptable protocol version",
	2: "identifier rejected",
	3: "server unavailable",
	4: "bad user name or password",
	5: "not authorized",
}

// appendVarint appends n as an MQTT variable byte integer [MQTT 2.2.3].
func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

// decodeVarint reads a variable byte integer from the start of b. It returns used == 0 when b ends before the
// integer does, and errMalformed when a fifth byte would be needed.
func decodeVarint(b []byte) (n, used int, err error) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, nil
		}
		n |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// mqttConnectOptions are the fields of a CONNECT packet the bench sets.
type mqttConnectOptions struct {
	clientID  string
	user      string
	pass      string
	keepAlive time.Duration
}

// appendConnect appends an MQTT 3.1.1 CONNECT with a clean session [MQTT 3.1].
func appendConnect(dst []byte, o mqttConnectOptions) []byte {
	flags := byte(0x02) // clean session
	rl := 10 + 2 + len(o.clientID)
	if o.user != "" {
		flags |= 0x80
		rl += 2 + len(o.user)
		// A password without a user name is a protocol violation in 3.1.1 [MQTT-3.1.2-22].
		if o.pass != "" {
			flags |= 0x40
			rl += 2 + len(o.pass)
		}
	}
	dst = append(dst, mqttCONNECT<<4)
	dst = appendVarint(dst, rl)
	dst = appendString(dst, "MQTT")
	dst = append(dst, 4, flags) // protocol level 4 = 3.1.1
	dst = binary.BigEndian.AppendUint16(dst, uint16(o.keepAlive/time.Second))
	dst = appendString(dst, o.clientID)
	if o.user != "" {
		dst = appendString(dst, o.user)
		if o.pass != "" {
			dst = appendString(dst, o.pass)
		}
	}
	return dst
}

// appendSubscribe appends a SUBSCRIBE for one filter; its fixed header flags must be 0010 [MQTT-3.8.1-1].
func appendSubscribe(dst []byte, id uint16, filter string, qos byte) []byte {
	dst = append(dst, mqttSUBSCRIBE<<4|0x02)
	dst = appendVarint(dst, 2+2+len(filter)+1)
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = appendString(dst, filter)
	return append(dst, qos)
}

// appendPublishHeader appends a PUBLISH's fixed header and topic name. For QoS > 0 the caller writes the
// two-byte packet identifier next, then the payload of payloadLen bytes.
func appendPublishHeader(dst []byte, topic string, qos byte, payloadLen int) []byte {
	rl := 2 + len(topic) + payloadLen
	if qos > 0 {
		rl += 2
	}
	dst = append(dst, mqttPUBLISH<<4|qos<<1)
	dst = appendVarint(dst, rl)
	return appendString(dst, topic)
}

// appendAck appends PUBACK, PUBREC, PUBREL or PUBCOMP; PUBREL's fixed header flags are 0010 [MQTT-3.6.1-1].
func appendAck(dst []byte, typ byte, id uint16) []byte {
	h := typ << 4
	if typ == mqttPUBREL {
		h |= 0x02
	}
	return append(dst, h, 2, byte(id>>8), byte(id))
}

// parsePublish splits a PUBLISH body; the slices alias body.
func parsePublish(hdr byte, body []byte) (topic []byte, id uint16, payload []byte, err error) {
	qos := hdr >> 1 & 3
	if qos == 3 {
		return nil, 0, nil, fmt.Errorf("%w: PUBLISH with QoS 3", errMalformed) // [MQTT-3.3.1-4]
	}
	if len(body) < 2 {
		return nil, 0, nil, fmt.Errorf("%w: PUBLISH too short", errMalformed)
	}
	n := int(binary.BigEndian.Uint16(body))
	rest := body[2:]
	if n > len(rest) {
		return nil, 0, nil, fmt.Errorf("%w: PUBLISH topic overruns packet", errMalformed)
	}
	topic, rest = rest[:n], rest[n:]
	if qos > 0 {
		if len(rest) < 2 {
			return nil, 0, nil, fmt.Errorf("%w: PUBLISH without packet identifier", errMalformed)
		}
		id, rest = binary.BigEndian.Uint16(rest), rest[2:]
	}
	return topic, id, rest, nil
}

// parseAckID reads the packet identifier of PUBACK, PUBREC, PUBREL or PUBCOMP.
func parseAckID(body []byte) (uint16, error) {
	if len(body) < 2 {
		return 0, fmt.Errorf("%w: acknowledgement too short", errMalformed)
	}
	return binary.BigEndian.Uint16(body), nil
}

// parseConnack returns the CONNACK return code, or an error naming the refusal.
func parseConnack(body []byte) error {
	if len(body) != 2 {
		return fmt.Errorf("%w: CONNACK of %d bytes", errMalformed, len(body))
	}
	if rc := body[1]; rc != 0 {
		reason := "unknown reason"
		if int(rc) < len(connackReasons) {
			reason = connackReasons[rc]
		}
		return fmt.Errorf("%w: CONNACK %d (%s)", errRefused, rc, reason)
	}
	return nil
}

// parseSuback returns the packet identifier and the first granted QoS of a SUBACK.
func parseSuback(body []byte) (id uint16, granted byte, err error) {
	if len(body) < 3 {
		return 0, 0, fmt.Errorf("%w: SUBACK too short", errMalformed)
	}
	return binary.BigEndian.Uint16(body), body[2], nil
}

// packetReader cuts whole MQTT packets out of a stream. Packets are parsed in place and stay valid until the
// next call. A read error (a deadline, typically) loses nothing: bytes already read stay buffered, so next
// can be called again. The buffer grows to fit the largest packet seen, up to max.
type packetReader struct {
	rd       io.Reader
	buf      []byte
	r        int
	w        int
	max      int
	err      error // from a Read that also returned data; reported once that data is used up
	lastRead int   // bytes returned by the latest Read
	// beforeRead, when set, runs before every Read that may block: the subscriber flushes its
	// acknowledgements there, so a batch of PUBLISHes costs one write.
	beforeRead func() error
}

func newPacketReader(rd io.Reader, size, max int) *packetReader {
	return &packetReader{rd: rd, buf: make([]byte, size), max: max}
}

// next returns the next packet's first header byte and its body.
func (p *packetReader) next() (hdr byte, body []byte, err error) {
	for {
		need := 2
		if avail := p.w - p.r; avail >= 2 {
			rl, n, err := decodeVarint(p.buf[p.r+1 : p.w])
			if err != nil {
				return 0, nil, err
			}
			if n == 0 {
				need = avail + 1
			} else {
				total := 1 + n + rl
				if total > p.max {
					return 0, nil, fmt.Errorf("%w: %d bytes, limit %d", errPacketTooLarge, total, p.max)
				}
				if avail >= total {
					hdr, body = p.buf[p.r], p.buf[p.r+1+n:p.r+total]
					p.r += total
					return hdr, body, nil
				}
				need = total
			}
		}
		if err := p.fill(need); err != nil {
			return 0, nil, err
		}
	}
}

// fill makes room for need bytes from p.r on and reads once.
func (p *packetReader) fill(need int) error {
	if p.err != nil {
		err := p.err
		p.err = nil
		return err
	}
	if p.r == p.w {
		p.r, p.w = 0, 0
	}
	if p.r+need > len(p.buf) {
		if need > len(p.buf) {
			nb := make([]byte, max(need, min(2*len(p.buf), p.max)))
			copy(nb, p.buf[p.r:p.w])
			p.buf = nb
		} else {
			copy(p.buf, p.buf[p.r:p.w])
		}
		p.w -= p.r
		p.r = 0
	}
	if p.beforeRead != nil {
		if err := p.beforeRead(); err != nil {
			return err
		}
	}
	n, err := p.rd.Read(p.buf[p.w:])
	p.w += n
	p.lastRead = n
	if err != nil && n > 0 {
		p.err = err
		return nil
	}
	return err
}

// mqttOptions configure every connection of a run.
type mqttOptions struct {
	addr      string
	user      string
	pass      string
	keepAlive time.Duration
	timeout   time.Duration // dial plus CONNECT/CONNACK and SUBSCRIBE/SUBACK
	maxPacket int
}

// mqttConn is one connection. Its reader and writer are used by one goroutine each at most.
type mqttConn struct {
	nc        net.Conn
	pr        *packetReader
	bw        *bufio.Writer
	opt       *mqttOptions
	closeOnce sync.Once
}

// dialMQTT connects and completes the CONNECT/CONNACK exchange.
func dialMQTT(ctx context.Context, o *mqttOptions, clientID string, rbuf, wbuf int) (*mqttConn, error) {
	d := net.Dialer{Timeout: o.timeout}
	nc, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	c := &mqttConn{nc: nc, pr: newPacketReader(nc, rbuf, o.maxPacket), bw: bufio.NewWriterSize(nc, wbuf), opt: o}
	if err := c.handshake(clientID); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s as %s: %w", o.addr, clientID, err)
	}
	return c, nil
}

func (c *mqttConn) handshake(clientID string) error {
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	pkt := appendConnect(nil, mqttConnectOptions{clientID: clientID, user: c.opt.user, pass: c.opt.pass, keepAlive: c.opt.keepAlive})
	if _, err := c.nc.Write(pkt); err != nil {
		return err
	}
	hdr, body, err := c.pr.next()
	if err != nil {
		return err
	}
	if hdr>>4 != mqttCONNACK {
		return fmt.Errorf("%w: type %d instead of CONNACK", errUnexpected, hdr>>4)
	}
	if err := parseConnack(body); err != nil {
		return err
	}
	return c.nc.SetDeadline(time.Time{})
}

// subscribe sends one SUBSCRIBE and waits for its SUBACK, returning the granted QoS.
func (c *mqttConn) subscribe(filter string, qos byte) (byte, error) {
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	if _, err := c.nc.Write(appendSubscribe(nil, 1, filter, qos)); err != nil {
		return 0, err
	}
	hdr, body, err := c.pr.next()
	if err != nil {
		return 0, err
	}
	if hdr>>4 != mqttSUBACK {
		return 0, fmt.Errorf("%w: type %d instead of SUBACK", errUnexpected, hdr>>4)
	}
	id, granted, err := parseSuback(body)
	if err != nil {
		return 0, err
	}
	if id != 1 {
		return 0, fmt.Errorf("%w: SUBACK for packet %d, sent 1", errUnexpected, id)
	}
	if granted > 2 {
		return 0, fmt.Errorf("%w: %q (SUBACK code 0x%02x)", errSubRefused, filter, granted)
	}
	return granted, c.nc.SetDeadline(time.Time{})
}

func (c *mqttConn) close() error {
	var err error
	c.closeOnce.Do(func() { err = c.nc.Close() })
	return err
}

// mqttDriver is the MQTT side of the bench.
type mqttDriver struct {
	opt mqttOptions
}

func (d *mqttDriver) topic(parts ...string) string { return strings.Join(parts, "/") }

func (d *mqttDriver) dialPublisher(ctx context.Context, clientID string, spec *pubSpec, st *pubStats) (client, error) {
	c, err := dialMQTT(ctx, &d.opt, clientID, 4<<10, 64<<10)
	if err != nil {
		return nil, err
	}
	p := &mqttPublisher{c: c, spec: spec, st: st, readerDone: make(chan struct{})}
	if spec.qos > 0 {
		p.tokens = make(chan uint16, spec.inflight)
		for id := 1; id <= spec.inflight; id++ {
			p.tokens <- uint16(id)
		}
		p.state = make([]atomic.Uint32, spec.inflight+1)
		p.rel = make(chan uint16, spec.inflight)
		p.stash = make([]uint16, 0, spec.inflight)
	}
	return p, nil
}

func (d *mqttDriver) dialSubscriber(ctx context.Context, clientID string, spec *subSpec, st *subStats) (client, error) {
	c, err := dialMQTT(ctx, &d.opt, clientID, 64<<10, 16<<10)
	if err != nil {
		return nil, err
	}
	granted, err := c.subscribe(spec.filter, spec.qos)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe %s: %w", clientID, err)
	}
	st.granted = int(granted)
	s := &mqttSubscriber{c: c, st: st}
	c.pr.beforeRead = c.pr.subscriberHook(c.bw, spec.coalesce)
	return s, nil
}

// subscriberHook is a subscriber's beforeRead: it flushes the acknowledgements written since the last
// read, and with coalesce > 0 it batches reads. A small read right after another means the broker is
// writing packet by packet (mosquitto does): waiting lets the next read take a batch, instead of burning
// the CPU the broker shares with us on a read per packet or two.
func (p *packetReader) subscriberHook(bw *bufio.Writer, coalesce time.Duration) func() error {
	var lastAt time.Time
	return func() error {
		if bw.Buffered() > 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if coalesce > 0 {
			now := time.Now()
			if p.lastRead < coalesceBelow && now.Sub(lastAt) < coalesceWithin {
				time.Sleep(coalesce)
				now = time.Now()
			}
			lastAt = now
		}
		return nil
	}
}

func (d *mqttDriver) dialIdle(ctx context.Context, clientID string) (idleConn, error) {
	c, err := dialMQTT(ctx, &d.opt, clientID, 64, 64)
	if err != nil {
		return nil, err
	}
	return &mqttIdle{c: c}, nil
}

// In-flight states of a publisher's packet identifier.
const (
	idFree     = 0
	idSent     = 1 // PUBLISH written, waiting for PUBACK (QoS 1) or PUBREC (QoS 2)
	idReleased = 2 // QoS 2: PUBREC received, PUBREL queued, waiting for PUBCOMP
)

// mqttPublisher sends spec.count messages (or until spec.stop) on one connection. For QoS > 0 the window of
// in-flight messages is a channel holding the free packet identifiers: the writer takes one per PUBLISH and
// the reader gives it back on PUBACK/PUBCOMP, so identifiers are never reused while in flight.
type mqttPublisher struct {
	c          *mqttConn
	spec       *pubSpec
	st         *pubStats
	tokens     chan uint16     // free packet identifiers, capacity spec.inflight
	rel        chan uint16     // QoS 2: identifiers whose PUBREL the writer must send; at most spec.inflight
	state      []atomic.Uint32 // per identifier: idFree, idSent or idReleased
	stash      []uint16        // free identifiers the writer has taken off tokens, capacity spec.inflight
	readerDone chan struct{}
	readerErr  error // set before readerDone closes
	closing    atomic.Bool
	ack        [4]byte // scratch for PUBREL, owned by the writer
}

func (p *mqttPublisher) run() error {
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

func (p *mqttPublisher) stop() { p.c.close() }

func (p *mqttPublisher) writeLoop() error {
	s, bw := p.spec, p.c.bw
	payload := make([]byte, s.size)
	prefix := appendPublishHeader(nil, s.topic, s.qos, s.size)
	tag := uint64(s.index) << seqBits
	var period float64
	if s.rate > 0 {
		period = float64(time.Second) / s.rate
	}
	start := time.Now()
	batchStart, lastWrite := start, start
	for seq := uint64(0); s.count == 0 || seq < s.count; seq++ {
		if s.ctl.stop.Load() {
			break
		}
		var id uint16
		if s.qos > 0 {
			var err error
			if id, err = p.take(); errors.Is(err, errStopped) {
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
		if s.qos > 0 {
			bw.WriteByte(byte(id >> 8))
			bw.WriteByte(byte(id))
		}
		if _, err := bw.Write(payload); err != nil {
			return err
		}
		p.st.sent.Add(1)
		if period > 0 {
			// Ahead of schedule: send now and sleep. Behind it (a rate the broker cannot take):
			// keep writing in batches, as at full speed, until caught up.
			due := start.Add(time.Duration(float64(seq+1) * period))
			if time.Until(due) > 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
				lastWrite = time.Now()
				if err := p.sleepUntil(due, &lastWrite); err != nil {
					return err
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

// sleepUntil waits for the next message's due time in short steps, so that the end of the run is noticed
// promptly and the keep-alive is honoured when the rate is very low.
func (p *mqttPublisher) sleepUntil(due time.Time, lastWrite *time.Time) error {
	for {
		wait := time.Until(due)
		if wait <= 0 || p.spec.ctl.stop.Load() {
			return nil
		}
		time.Sleep(min(wait, 100*time.Millisecond))
		if ka := p.c.opt.keepAlive; ka > 0 && time.Since(*lastWrite) >= ka/2 {
			if _, err := p.c.bw.Write(mqttPingreq); err != nil {
				return err
			}
			if err := p.c.bw.Flush(); err != nil {
				return err
			}
			*lastWrite = time.Now()
		}
	}
}

// take returns a free packet identifier. When the window is full it flushes, then waits until a quarter of
// the window is free again: brokers acknowledge one PUBLISH per write, and resuming on every single
// acknowledgement would cost a write system call per message. While it waits it sends the PUBRELs the
// reader asks for, since QoS 2 identifiers only come back after PUBCOMP.
func (p *mqttPublisher) take() (uint16, error) {
	if p.spec.qos == 2 {
		p.queueRels()
	}
	if n := len(p.stash); n > 0 {
		id := p.stash[n-1]
		p.stash = p.stash[:n-1]
		p.state[id].Store(idSent)
		return id, nil
	}
	select {
	case id := <-p.tokens:
		p.state[id].Store(idSent)
		return id, nil
	default:
	}
	if err := p.c.bw.Flush(); err != nil {
		return 0, err
	}
	for need := max(1, cap(p.tokens)/4); len(p.stash) < need; {
		select {
		case id := <-p.tokens:
			p.stash = append(p.stash, id)
		case id := <-p.rel:
			p.c.bw.Write(appendAck(p.ack[:0], mqttPUBREL, id))
			p.queueRels()
			if err := p.c.bw.Flush(); err != nil {
				return 0, err
			}
		case <-p.readerDone:
			return 0, p.readerErrOr(io.ErrUnexpectedEOF)
		case <-p.spec.ctl.stopCh:
			return 0, errStopped
		}
	}
	return p.take()
}

// queueRels writes, without flushing, the PUBRELs the reader has asked for so far.
func (p *mqttPublisher) queueRels() {
	for {
		select {
		case id := <-p.rel:
			p.c.bw.Write(appendAck(p.ack[:0], mqttPUBREL, id))
		default:
			return
		}
	}
}

// finish waits (up to spec.drain) for every in-flight message to be acknowledged, then disconnects.
func (p *mqttPublisher) finish() error {
	if p.spec.qos > 0 {
		timer := time.NewTimer(p.spec.drain)
		defer timer.Stop()
		for got := len(p.stash); got < cap(p.tokens); {
			select {
			case <-p.tokens:
				got++
			case id := <-p.rel:
				p.c.bw.Write(appendAck(p.ack[:0], mqttPUBREL, id))
				p.queueRels()
				if err := p.c.bw.Flush(); err != nil {
					return err
				}
			case <-p.readerDone:
				return p.readerErrOr(io.ErrUnexpectedEOF)
			case <-timer.C:
				return fmt.Errorf("%w: %d of %d in flight after %v", errStalled, cap(p.tokens)-got, cap(p.tokens), p.spec.drain)
			case <-p.spec.ctl.interruptCh:
				return errStopped
			}
		}
	}
	p.c.bw.Write(mqttDisconnect)
	return p.c.bw.Flush()
}

func (p *mqttPublisher) readerErrOr(def error) error {
	<-p.readerDone
	if p.readerErr != nil {
		return p.readerErr
	}
	return def
}

// readLoop handles the broker's acknowledgements. Unknown or repeated ones are counted, not trusted, so a
// confused broker cannot overfill the identifier channels.
func (p *mqttPublisher) readLoop() {
	defer close(p.readerDone)
	for {
		hdr, body, err := p.c.pr.next()
		if err != nil {
			if !p.closing.Load() {
				p.readerErr = err
			}
			return
		}
		switch typ := hdr >> 4; typ {
		case mqttPUBACK, mqttPUBREC, mqttPUBCOMP:
			id, err := parseAckID(body)
			if err != nil {
				p.readerErr = err
				return
			}
			if p.state == nil || id == 0 || int(id) >= len(p.state) {
				p.st.unexpected.Add(1)
				continue
			}
			switch {
			case typ == mqttPUBACK && p.spec.qos == 1 && p.state[id].CompareAndSwap(idSent, idFree):
				p.st.acked.Add(1)
				p.tokens <- id
			case typ == mqttPUBREC && p.spec.qos == 2 && p.state[id].CompareAndSwap(idSent, idReleased):
				p.rel <- id
			case typ == mqttPUBCOMP && p.spec.qos == 2 && p.state[id].CompareAndSwap(idReleased, idFree):
				p.st.acked.Add(1)
				p.tokens <- id
			default:
				p.st.unexpected.Add(1)
			}
		case mqttPINGRESP:
		default:
			p.readerErr = fmt.Errorf("%w: type %d on a publishing connection", errUnexpected, typ)
			return
		}
	}
}

// mqttSubscriber reads deliveries and acknowledges them; acknowledgements are batched by the packet
// reader's beforeRead hook. It is the only goroutine using its connection.
type mqttSubscriber struct {
	c        *mqttConn
	st       *subStats
	stopping atomic.Bool
	running  atomic.Bool
}

func (s *mqttSubscriber) run() error {
	s.running.Store(true)
	c := s.c
	var ping time.Duration
	if c.opt.keepAlive > 0 {
		ping = c.opt.keepAlive / 2
	}
	s.extendDeadline(ping)
	var ack [4]byte
	for {
		hdr, body, err := c.pr.next()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				if s.stopping.Load() {
					return nil
				}
				return err
			}
			if s.stopping.Load() {
				c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
				c.bw.Write(mqttDisconnect)
				c.bw.Flush()
				c.close()
				return nil
			}
			// The deadline is the keep-alive timer: nothing we send otherwise (QoS 0) resets the
			// broker's, so ping every half keep-alive whatever the traffic.
			c.bw.Write(mqttPingreq)
			s.extendDeadline(ping)
			continue
		}
		switch typ := hdr >> 4; typ {
		case mqttPUBLISH:
			_, id, payload, err := parsePublish(hdr, body)
			if err != nil {
				return err
			}
			s.st.observe(payload, time.Now().UnixNano())
			switch hdr >> 1 & 3 {
			case 1:
				c.bw.Write(appendAck(ack[:0], mqttPUBACK, id))
			case 2:
				c.bw.Write(appendAck(ack[:0], mqttPUBREC, id))
			}
		case mqttPUBREL:
			id, err := parseAckID(body)
			if err != nil {
				return err
			}
			c.bw.Write(appendAck(ack[:0], mqttPUBCOMP, id))
		case mqttPINGRESP:
		default:
			return fmt.Errorf("%w: type %d on a subscribing connection", errUnexpected, typ)
		}
	}
}

// extendDeadline sets the next keep-alive deadline; see stop for why it rechecks stopping afterwards.
func (s *mqttSubscriber) extendDeadline(ping time.Duration) {
	if ping > 0 {
		s.c.nc.SetReadDeadline(time.Now().Add(ping))
	} else {
		s.c.nc.SetReadDeadline(time.Time{})
	}
	if s.stopping.Load() {
		s.c.nc.SetReadDeadline(time.Now())
	}
}

// stop asks run to disconnect cleanly: the past read deadline wakes the reader. Either the reader sees
// stopping after setting its own deadline, or this deadline is set after the reader's; both end the read.
// The write deadline frees a reader stuck flushing acknowledgements to a broker that no longer reads. If
// run starts after a close here, its first read fails and, stopping being set, it returns nil.
func (s *mqttSubscriber) stop() {
	s.stopping.Store(true)
	if !s.running.Load() {
		s.c.close() // never started (another connection failed): nobody else will close it
		return
	}
	s.c.nc.SetWriteDeadline(time.Now().Add(s.c.opt.timeout))
	s.c.nc.SetReadDeadline(time.Now())
}

// mqttIdle is an idle connection kept alive by pings sent in sweeps over all connections.
type mqttIdle struct {
	c *mqttConn
}

func (m *mqttIdle) sendPing(deadline time.Time) error {
	m.c.nc.SetWriteDeadline(deadline)
	_, err := m.c.nc.Write(mqttPingreq)
	return err
}

func (m *mqttIdle) awaitPong(deadline time.Time) error {
	m.c.nc.SetReadDeadline(deadline)
	hdr, _, err := m.c.pr.next()
	if err != nil {
		return err
	}
	if hdr>>4 != mqttPINGRESP {
		return fmt.Errorf("%w: type %d instead of PINGRESP", errUnexpected, hdr>>4)
	}
	return nil
}

func (m *mqttIdle) close() error {
	m.c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	m.c.nc.Write(mqttDisconnect)
	return m.c.close()
}

// dialStalled opens c.stalled MQTT subscribers to the run's topics (round-robin over the subscribers'
// topics) that never read after their SUBACK, with a small socket receive buffer: the broker sees them
// as subscribers that stopped reading, and the run shows what they cost everyone else.
func dialStalled(ctx context.Context, c *config, id string, topic func(i int) string) ([]*mqttConn, error) {
	if c.stalled == 0 {
		return nil, nil
	}
	if c.proto != "mqtt" {
		return nil, fmt.Errorf("%w: -stalled needs -proto mqtt", errUsage)
	}
	d := newDriver(c).(*mqttDriver)
	conns := make([]*mqttConn, 0, c.stalled)
	for i := 0; i < c.stalled; i++ {
		mc, err := dialMQTT(ctx, &d.opt, fmt.Sprintf("lb-%s-stalled%d", id, i), 4<<10, 4<<10)
		if err == nil {
			if tc, ok := mc.nc.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4 << 10)
			}
			_, err = mc.subscribe(topic(i%max(c.subs, 1)), byte(c.qos))
			if err != nil {
				mc.close()
			}
		}
		if err != nil {
			for _, s := range conns {
				s.close()
			}
			return nil, fmt.Errorf("stalled subscriber: %w", err)
		}
		conns = append(conns, mc)
	}
	return conns, nil
}
