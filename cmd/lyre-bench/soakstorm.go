package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// stormKind is what one connection of a storm does. Even connections behave, odd ones misbehave.
type stormKind int

const (
	goodMQTT     stormKind = iota // MQTT 3.1.1: its own topic, stormMsgs QoS 1 messages there and back
	goodMQTT5                     // the same in MQTT 5
	goodMQTTWS                    // the same over WebSocket (ws://ADDR/mqtt)
	goodSTOMP                     // the same in STOMP: SENDs with receipts, MESSAGEs back
	badSilent                     // TCP connection that never sends a byte
	badSlowloris                  // an MQTT CONNECT written one byte at a time, slower than any timeout
	badGarbage                    // bytes of no protocol, or a CONNECT followed by a malformed packet
	badNoRead                     // QoS 1 subscriber to the traffic's topic that never reads
	badHalfOpen                   // CONNECT with a 2 s keep-alive, then nothing: a peer gone without a FIN
	badReset                      // CONNECT and SUBSCRIBE to the traffic, then a reset (RST), no DISCONNECT
	numStormKinds
	numGood = int(badSilent)
	numBad  = int(numStormKinds) - numGood
)

var stormKindNames = [numStormKinds]string{"mqtt", "mqtt5", "mqtt-ws", "stomp", "silent-tcp", "slowloris",
	"garbage", "never-reads", "half-open", "reset"}

func (k stormKind) String() string { return stormKindNames[k] }

// kindOf is the kind of a storm's i-th connection: half behave, half misbehave, each half spread over its
// kinds.
func kindOf(i int) stormKind {
	if i%2 == 0 {
		return stormKind(i / 2 % numGood)
	}
	return stormKind(numGood + i/2%numBad)
}

const (
	stormMsgs      = 2                      // QoS 1 messages each well-behaved storm client sends itself
	stormDials     = 128                    // connection attempts under way at once
	slowlorisDelay = 500 * time.Millisecond // between the bytes of a slowloris CONNECT
	halfOpenAlive  = 2 * time.Second        // keep-alive of a half-open client: reaped after 1.5 times it
	// reapWait is how long a misbehaving client that waits for the broker to close it (silent, slowloris,
	// garbage, half-open) gives the broker from its connect on, even past the storm's hold: longer than
	// twice Lyre's default detect_timeout.
	reapWait = 15 * time.Second
)

// reaping reports whether connections of kind k must be closed by the broker within reapWait.
func (k stormKind) reaping() bool {
	return k == badSilent || k == badSlowloris || k == badGarbage || k == badHalfOpen
}

// stormTally counts what the connections of one kind did, over every storm.
type stormTally struct {
	opened   atomic.Uint64 // connected (and, where the kind logs in, CONNACKed)
	failed   atomic.Uint64 // could not connect or log in, or broke off before it was done
	sent     atomic.Uint64 // well-behaved: messages the broker acknowledged
	received atomic.Uint64 // well-behaved: of those, received back
	reaped   atomic.Uint64 // misbehaving: closed by the broker before the client gave up
	reapMax  atomic.Int64  // misbehaving: the longest time from connect to the broker's close, ns
}

// storm is the state shared by every connection of the soak's storms.
type storm struct {
	c        *config
	id       string // the run's
	traffic  string // the MQTT topic of the well-behaved traffic
	mqtt     [3]mqttOptions
	stomp    stompOptions
	tally    [numStormKinds]stormTally
	errs     errList // of well-behaved clients
	badErrs  errList // of misbehaving ones
	garbage  []byte
	garbageN atomic.Uint64
}

func newStorm(c *config, id, traffic string) *storm {
	s := &storm{c: c, id: id, traffic: traffic}
	base := mqttOptions{addr: c.addr, user: c.user, pass: c.pass, keepAlive: 30 * time.Second, timeout: c.timeout, maxPacket: 1 << 20}
	s.mqtt[0], s.mqtt[1], s.mqtt[2] = base, base, base
	s.mqtt[1].v5 = true
	wc := *c
	wc.transport = "ws"
	s.mqtt[2].tr = newTransport(&wc, "mqtt")
	s.stomp = newSTOMPDriver(c).opt
	s.stomp.destPrefix, s.stomp.ack = "/topic/", ackAuto
	s.garbage = make([]byte, 256)
	for i := range s.garbage {
		s.garbage[i] = byte(0xff - i%7) // 0xff starts no protocol Lyre, or any broker, detects
	}
	return s
}

// run opens n connections at once (stormDials at a time), lets each do what its kind does until hold
// has passed since the storm began, and closes them all.
func (s *storm) run(ctx context.Context, round, n int, hold time.Duration) {
	end := time.Now().Add(hold)
	sem := make(chan struct{}, stormDials)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k := kindOf(i)
			name := fmt.Sprintf("lb-%s-%d-%d", s.id, round, i)
			if err := s.client(ctx, k, name, end, sem); err != nil && ctx.Err() == nil {
				s.tally[k].failed.Add(1)
				errs := &s.errs
				if int(k) >= numGood {
					errs = &s.badErrs
				}
				errs.add(fmt.Errorf("%s %s: %w", k, name, err))
			}
		})
	}
	wg.Wait()
}

// client runs one storm connection of kind k. sem bounds the connections being opened.
func (s *storm) client(ctx context.Context, k stormKind, name string, end time.Time, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
		}
	}
	defer release()
	switch k {
	case goodMQTT, goodMQTT5, goodMQTTWS:
		return s.goodMQTT(ctx, &s.mqtt[k-goodMQTT], name, end, release)
	case goodSTOMP:
		return s.goodSTOMP(ctx, name, end, release)
	case badSilent, badSlowloris:
		return s.rawBad(ctx, k, release)
	case badGarbage:
		if s.garbageN.Add(1)%2 == 0 {
			return s.rawBad(ctx, k, release)
		}
		return s.badMQTT(ctx, k, name, end, release) // a CONNECT, then garbage
	default:
		return s.badMQTT(ctx, k, name, end, release)
	}
}

// goodMQTT subscribes to a topic of its own, publishes stormMsgs QoS 1 messages to it and expects each
// acknowledged and delivered; then it stays connected until end and disconnects.
func (s *storm) goodMQTT(ctx context.Context, o *mqttOptions, name string, end time.Time, opened func()) error {
	t := &s.tally[kindOfOptions(o)]
	c, err := dialMQTT(ctx, o, name, 2048, 2048)
	opened()
	if err != nil {
		return err
	}
	defer c.close()
	t.opened.Add(1)
	topic := s.c.topic + "/" + s.id + "/storm/" + name
	if _, err := c.subscribe(topic, 1); err != nil {
		return err
	}
	var out []byte
	for id := uint16(2); id < 2+stormMsgs; id++ { // 1 was the SUBSCRIBE's
		out = appendPublishHeader(out, topic, 1, 2, o.v5)
		out = append(out, byte(id>>8), byte(id))
		if o.v5 {
			out = append(out, 0)
		}
		out = append(out, byte(id>>8), byte(id))
	}
	c.nc.SetDeadline(time.Now().Add(s.c.timeout))
	if _, err := c.nc.Write(out); err != nil {
		return err
	}
	if err := s.mqttRoundTrip(c, o.v5, t); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Time{})
	sleepUntil(ctx, end)
	c.nc.SetWriteDeadline(time.Now().Add(s.c.timeout))
	_, err = c.nc.Write(mqttDisconnect)
	return err
}

func kindOfOptions(o *mqttOptions) stormKind {
	switch {
	case o.tr != nil:
		return goodMQTTWS
	case o.v5:
		return goodMQTT5
	}
	return goodMQTT
}

// mqttRoundTrip reads until every message the client published is acknowledged and back, acknowledging
// each delivery.
func (s *storm) mqttRoundTrip(c *mqttConn, v5 bool, t *stormTally) error {
	var acked, got [2 + stormMsgs]bool
	nAcked, nGot := 0, 0
	for nAcked < stormMsgs || nGot < stormMsgs {
		hdr, body, err := c.pr.next()
		if err != nil {
			return fmt.Errorf("%d of %d acknowledged, %d received: %w", nAcked, stormMsgs, nGot, err)
		}
		switch hdr >> 4 {
		case mqttPUBACK:
			id, err := parseAckID(body)
			if err != nil || id < 2 || int(id) >= len(acked) || acked[id] {
				return fmt.Errorf("%w: PUBACK %d", errUnexpected, id)
			}
			acked[id] = true
			nAcked++
			t.sent.Add(1)
		case mqttPUBLISH:
			_, pid, payload, err := parsePublish(hdr, body, v5)
			if err != nil || len(payload) != 2 {
				return fmt.Errorf("%w: PUBLISH %v", errUnexpected, err)
			}
			if _, err := c.nc.Write(appendAck(nil, mqttPUBACK, pid)); err != nil {
				return err
			}
			if seq := int(payload[0])<<8 | int(payload[1]); seq >= 2 && seq < len(got) && !got[seq] {
				got[seq] = true
				nGot++
				t.received.Add(1)
			}
		}
	}
	return nil
}

// goodSTOMP is goodMQTT in STOMP: SUBSCRIBE (with a receipt), stormMsgs SENDs each asking a receipt,
// every MESSAGE back, then DISCONNECT at end.
func (s *storm) goodSTOMP(ctx context.Context, name string, end time.Time, opened func()) error {
	t := &s.tally[goodSTOMP]
	c, err := dialSTOMP(ctx, &s.stomp, 2048, 2048)
	opened()
	if err != nil {
		return err
	}
	defer c.close()
	t.opened.Add(1)
	dest := "/topic/" + s.c.topic + "." + s.id + ".storm." + name
	if err := c.subscribe(dest); err != nil {
		return err
	}
	var out []byte
	for i := range stormMsgs {
		out = appendSendPrefix(out, dest, 1, false)
		out = append(out, "receipt:"...)
		out = strconv.AppendInt(out, int64(i), 10)
		out = append(out, "\n\n"...)
		out = append(out, byte('0'+i), 0)
	}
	c.nc.SetDeadline(time.Now().Add(s.c.timeout))
	if _, err := c.nc.Write(out); err != nil {
		return err
	}
	if err := stompRoundTrip(c, t); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Time{})
	sleepUntil(ctx, end)
	c.nc.SetDeadline(time.Now().Add(s.c.timeout))
	if _, err := c.nc.Write(appendStompDisconnect(nil, receiptBye)); err != nil {
		return err
	}
	if _, err := c.fr.next(); err != nil { // the DISCONNECT's RECEIPT
		return fmt.Errorf("DISCONNECT from %s: no RECEIPT: %w", c.nc.LocalAddr(), err)
	}
	return nil
}

// stompRoundTrip reads until every SEND has its RECEIPT and every message is back.
func stompRoundTrip(c *stompConn, t *stormTally) error {
	var got [stormMsgs]bool
	receipts, nGot := 0, 0
	for receipts < stormMsgs || nGot < stormMsgs {
		f, err := c.fr.next()
		if err != nil {
			return fmt.Errorf("%d of %d receipts, %d received: %w", receipts, stormMsgs, nGot, err)
		}
		switch {
		case f.is("RECEIPT"):
			receipts++
			t.sent.Add(1)
		case f.is("MESSAGE"):
			if len(f.body) != 1 {
				return fmt.Errorf("%w: MESSAGE body %q", errUnexpected, f.body)
			}
			if i := int(f.body[0]) - '0'; i >= 0 && i < stormMsgs && !got[i] {
				got[i] = true
				nGot++
				t.received.Add(1)
			}
		case f.is("ERROR"):
			return fmt.Errorf("%w: %s", errBrokerError, f.describe())
		}
	}
	return nil
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// rawBad opens a TCP connection and sends nothing (badSilent), a CONNECT byte by byte (badSlowloris) or
// bytes of no protocol (badGarbage), and waits reapWait at most for the broker to close it.
func (s *storm) rawBad(ctx context.Context, k stormKind, opened func()) error {
	d := net.Dialer{Timeout: s.c.timeout}
	nc, err := d.DialContext(ctx, "tcp", s.c.addr)
	opened()
	if err != nil {
		return err
	}
	defer nc.Close()
	t := &s.tally[k]
	t.opened.Add(1)
	start := time.Now()
	end := start.Add(reapWait)
	switch k {
	case badGarbage:
		nc.SetWriteDeadline(time.Now().Add(s.c.timeout))
		if _, err := nc.Write(s.garbage); err != nil {
			return nil // closed under the write: reaped below
		}
	case badSlowloris:
		connect := appendConnect(nil, mqttConnectOptions{clientID: "slowloris", keepAlive: 30 * time.Second})
		for _, b := range connect {
			if time.Now().After(end) {
				return nil // not reaped: the broker let it dribble on for reapWait
			}
			if _, err := nc.Write([]byte{b}); err != nil || brokerClosed(nc, time.Now().Add(slowlorisDelay)) {
				t.reap(start)
				return nil
			}
		}
	}
	if brokerClosed(nc, end) {
		t.reap(start)
	}
	return nil
}

// badMQTT logs in over MQTT 3.1.1, then: subscribes to the traffic and never reads (badNoRead), goes
// silent with a short keep-alive (badHalfOpen), or subscribes and resets the connection (badReset).
// Half of the garbage clients come here too, to send a malformed packet after CONNECT.
func (s *storm) badMQTT(ctx context.Context, k stormKind, name string, end time.Time, opened func()) error {
	o := s.mqtt[0]
	if k == badHalfOpen {
		o.keepAlive = halfOpenAlive
	}
	c, err := dialMQTT(ctx, &o, name, 512, 512)
	opened()
	if err != nil {
		return err
	}
	defer c.close()
	t := &s.tally[k]
	t.opened.Add(1)
	start := time.Now()
	if k.reaping() {
		end = start.Add(reapWait)
	}
	switch k {
	case badGarbage:
		c.nc.SetWriteDeadline(time.Now().Add(s.c.timeout))
		if _, err := c.nc.Write(s.garbage); err == nil && !brokerClosed(c.nc, end) {
			return nil
		}
		t.reap(start)
		return nil
	case badHalfOpen:
		if brokerClosed(c.nc, end) {
			t.reap(start)
		}
		return nil
	case badNoRead:
		if tc := tcpConn(c.nc); tc != nil {
			_ = tc.SetReadBuffer(4 << 10)
		}
	}
	if _, err := c.subscribe(s.traffic, 1); err != nil {
		return err
	}
	if k == badReset {
		end = start.Add(time.Until(end) / 2)
		defer func() {
			if tc := tcpConn(c.nc); tc != nil {
				_ = tc.SetLinger(0) // close sends RST
			}
		}()
	}
	sleepUntil(ctx, end)
	return nil
}

// brokerClosed reads from nc until the broker closes it (true) or until (false). What the broker sends
// before closing (a CONNACK refusal, an ERROR frame) is skipped.
func brokerClosed(nc net.Conn, until time.Time) bool {
	nc.SetReadDeadline(until)
	buf := make([]byte, 512)
	for {
		if _, err := nc.Read(buf); err != nil {
			var ne net.Error
			return !errors.As(err, &ne) || !ne.Timeout() // EOF or reset: the broker closed it
		}
	}
}

// reap records that the broker closed a misbehaving connection start ago.
func (t *stormTally) reap(start time.Time) {
	t.reaped.Add(1)
	d := int64(time.Since(start))
	for {
		old := t.reapMax.Load()
		if d <= old || t.reapMax.CompareAndSwap(old, d) {
			return
		}
	}
}
