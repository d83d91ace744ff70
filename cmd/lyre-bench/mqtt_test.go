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
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lyremq/lyre/protocol/prototest"
)

func TestEncodeGolden(t *testing.T) {
	payload16 := make([]byte, 16)
	for _, c := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"connect clean session", appendConnect(nil, mqttConnectOptions{clientID: "c1", keepAlive: 30 * time.Second}),
			[]byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, 2, 'c', '1'}},
		{"connect keeping the session", appendConnect(nil, mqttConnectOptions{clientID: "c1", keepAlive: 30 * time.Second, keepSession: true}),
			[]byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 30, 0, 2, 'c', '1'}},
		{"connect with user and password", appendConnect(nil, mqttConnectOptions{clientID: "c", user: "u", pass: "pw", keepAlive: 300 * time.Second}),
			[]byte{0x10, 20, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xc2, 0x01, 0x2c, 0, 1, 'c', 0, 1, 'u', 0, 2, 'p', 'w'}},
		// [MQTT-3.1.2-22]: no password flag without the user name flag, so a lone -pass is left out.
		{"connect password without user", appendConnect(nil, mqttConnectOptions{clientID: "c", pass: "pw"}),
			[]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 1, 'c'}},
		// MQTT 5: level 5 and an empty property list after the keep-alive, the packet id, the identifier.
		{"connect v5", appendConnect(nil, mqttConnectOptions{clientID: "c1", keepAlive: 30 * time.Second, v5: true}),
			[]byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, 2, 'c', '1'}},
		{"subscribe v5", appendSubscribe(nil, 1, "a/b", 1, true), []byte{0x82, 9, 0, 1, 0, 0, 3, 'a', '/', 'b', 1}},
		{"publish qos 1 header v5", appendPublishHeader(nil, "t", 1, 16, true), []byte{0x32, 22, 0, 1, 't'}},
		// [MQTT-3.8.1-1]: SUBSCRIBE fixed header flags are 0010.
		{"subscribe", appendSubscribe(nil, 1, "a/b", 1, false),
			[]byte{0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 1}},
		{"publish qos 0", append(appendPublishHeader(nil, "t", 0, 16, false), payload16...),
			append([]byte{0x30, 19, 0, 1, 't'}, payload16...)},
		{"publish qos 1 header", appendPublishHeader(nil, "t", 1, 16, false), []byte{0x32, 21, 0, 1, 't'}},
		{"publish qos 2 header", appendPublishHeader(nil, "t", 2, 16, false), []byte{0x34, 21, 0, 1, 't'}},
		{"publish two-byte remaining length", appendPublishHeader(nil, "t", 0, 200, false), []byte{0x30, 0xcb, 0x01, 0, 1, 't'}},
		{"puback", appendAck(nil, mqttPUBACK, 0x1234), []byte{0x40, 2, 0x12, 0x34}},
		{"pubrec", appendAck(nil, mqttPUBREC, 7), []byte{0x50, 2, 0, 7}},
		// [MQTT-3.6.1-1]: PUBREL fixed header flags are 0010.
		{"pubrel", appendAck(nil, mqttPUBREL, 7), []byte{0x62, 2, 0, 7}},
		{"pubcomp", appendAck(nil, mqttPUBCOMP, 0xffff), []byte{0x70, 2, 0xff, 0xff}},
		{"pingreq", mqttPingreq, []byte{0xc0, 0}},
		{"disconnect", mqttDisconnect, []byte{0xe0, 0}},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s:\n got % x\nwant % x", c.name, c.got, c.want)
		}
	}
}

// TestVarint uses the boundary values of the table in MQTT 3.1.1 section 2.2.3.
func TestVarint(t *testing.T) {
	for _, c := range []struct {
		n   int
		raw []byte
	}{
		{0, []byte{0x00}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{2097151, []byte{0xff, 0xff, 0x7f}},
		{2097152, []byte{0x80, 0x80, 0x80, 0x01}},
		{mqttMaxRemaining, []byte{0xff, 0xff, 0xff, 0x7f}},
	} {
		if got := appendVarint(nil, c.n); !bytes.Equal(got, c.raw) {
			t.Errorf("appendVarint(%d) = % x, want % x", c.n, got, c.raw)
		}
		n, used, err := decodeVarint(append(c.raw, 0x55))
		if err != nil || n != c.n || used != len(c.raw) {
			t.Errorf("decodeVarint(% x) = %d, %d, %v", c.raw, n, used, err)
		}
		if _, used, err := decodeVarint(c.raw[:len(c.raw)-1]); used != 0 || err != nil {
			t.Errorf("decodeVarint of truncated % x: used %d, err %v; want need-more", c.raw, used, err)
		}
	}
	if _, _, err := decodeVarint([]byte{0xff, 0xff, 0xff, 0xff, 0x01}); !errors.Is(err, errMalformed) {
		t.Errorf("five-byte remaining length: err = %v, want errMalformed", err)
	}
}

type wantPacket struct {
	hdr  byte
	body []byte
}

// goldenStream is what a broker sends a subscriber: CONNACK, SUBACK, a QoS 1 PUBLISH, PUBREL, PINGRESP,
// and a PUBLISH larger than the reader's initial buffer.
func goldenStream() ([]byte, []wantPacket) {
	big := bytes.Repeat([]byte{0xab}, 300)
	want := []wantPacket{
		{0x20, []byte{0, 0}},
		{0x90, []byte{0, 1, 1}},
		{0x32, []byte{0, 3, 'a', '/', 'b', 0x12, 0x34, 'h', 'i'}},
		{0x62, []byte{0, 9}},
		{0xd0, []byte{}},
		{0x30, append([]byte{0, 1, 'x'}, big...)},
	}
	var raw []byte
	for _, p := range want {
		raw = append(raw, p.hdr)
		raw = appendVarint(raw, len(p.body))
		raw = append(raw, p.body...)
	}
	return raw, want
}

func TestPacketReader(t *testing.T) {
	raw, want := goldenStream()
	for _, c := range []struct {
		name string
		rd   func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data with EOF", iotest.DataErrReader},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A tiny initial buffer exercises compaction and growth.
			pr := newPacketReader(c.rd(bytes.NewReader(raw)), 8, 1024)
			for i, w := range want {
				hdr, body, err := pr.next()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if hdr != w.hdr || !bytes.Equal(body, w.body) {
					t.Fatalf("packet %d: got %#x % x, want %#x % x", i, hdr, body, w.hdr, w.body)
				}
			}
			if _, _, err := pr.next(); err != io.EOF {
				t.Fatalf("after the stream: err = %v, want io.EOF", err)
			}
		})
	}
}

func TestPacketReaderLimit(t *testing.T) {
	raw := append([]byte{0x30, 100}, make([]byte, 100)...)
	pr := newPacketReader(bytes.NewReader(raw), 16, 64)
	if _, _, err := pr.next(); !errors.Is(err, errPacketTooLarge) {
		t.Fatalf("err = %v, want errPacketTooLarge", err)
	}
}

// timeoutReader fails with a timeout before every chunk, as a read deadline does between arrivals.
type timeoutReader struct {
	chunks [][]byte
	armed  bool
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (r *timeoutReader) Read(b []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	if r.armed = !r.armed; r.armed {
		return 0, timeoutErr{}
	}
	n := copy(b, r.chunks[0])
	if r.chunks[0] = r.chunks[0][n:]; len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

// The subscriber's keep-alive relies on read deadlines: a timeout in the middle of a packet must lose nothing.
func TestPacketReaderResumesAfterTimeout(t *testing.T) {
	raw, want := goldenStream()
	var chunks [][]byte
	for i := 0; i < len(raw); i += 3 {
		chunks = append(chunks, raw[i:min(i+3, len(raw))])
	}
	pr := newPacketReader(&timeoutReader{chunks: chunks}, 8, 1024)
	timeouts := 0
	for i := 0; i < len(want); {
		hdr, body, err := pr.next()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			timeouts++
			continue
		}
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if hdr != want[i].hdr || !bytes.Equal(body, want[i].body) {
			t.Fatalf("packet %d: got %#x % x, want %#x % x", i, hdr, body, want[i].hdr, want[i].body)
		}
		i++
	}
	if timeouts < len(chunks)-1 {
		t.Fatalf("saw %d timeouts for %d chunks", timeouts, len(chunks))
	}
}

func TestParsePublish(t *testing.T) {
	topic, id, payload, err := parsePublish(0x32, []byte{0, 3, 'a', '/', 'b', 0x12, 0x34, 'h', 'i'}, false)
	if err != nil || string(topic) != "a/b" || id != 0x1234 || string(payload) != "hi" {
		t.Fatalf("qos 1: %q %#x %q %v", topic, id, payload, err)
	}
	topic, id, payload, err = parsePublish(0x31, []byte{0, 1, 't', 0x12, 0x34}, false) // retain flag, QoS 0: no identifier
	if err != nil || string(topic) != "t" || id != 0 || !bytes.Equal(payload, []byte{0x12, 0x34}) {
		t.Fatalf("qos 0: %q %#x %q %v", topic, id, payload, err)
	}
	for _, c := range []struct {
		name string
		hdr  byte
		body []byte
	}{
		{"qos 3 [MQTT-3.3.1-4]", 0x36, []byte{0, 1, 't', 0, 1}},
		{"no topic length", 0x30, []byte{0}},
		{"topic overruns packet", 0x30, []byte{0, 5, 'a'}},
		{"qos 1 without identifier", 0x32, []byte{0, 1, 't', 0}},
	} {
		if _, _, _, err := parsePublish(c.hdr, c.body, false); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err = %v, want errMalformed", c.name, err)
		}
	}
}

func TestParseAcks(t *testing.T) {
	if err := parseConnack([]byte{0, 0}, false); err != nil {
		t.Errorf("CONNACK accepted: %v", err)
	}
	if err := parseConnack([]byte{0, 5}, false); !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "not authorized") {
		t.Errorf("CONNACK 5: err = %v", err)
	}
	if err := parseConnack([]byte{0, 9}, false); !errors.Is(err, errRefused) {
		t.Errorf("CONNACK 9: err = %v", err)
	}
	if err := parseConnack([]byte{0}, false); !errors.Is(err, errMalformed) {
		t.Errorf("short CONNACK: err = %v", err)
	}
	// MQTT 5: properties after the reason code, after the SUBACK packet id, after a PUBLISH identifier.
	if err := parseConnack([]byte{0, 0, 3, 0x21, 0, 10}, true); err != nil {
		t.Errorf("v5 CONNACK accepted: %v", err)
	}
	if err := parseConnack([]byte{0, 0x87, 0}, true); !errors.Is(err, errRefused) {
		t.Errorf("v5 CONNACK 0x87: err = %v", err)
	}
	if id, granted, err := parseSuback([]byte{0, 2, 2, 0x1F, 0, 1}, true); err != nil || id != 2 || granted != 1 {
		t.Errorf("v5 SUBACK: %d %#x %v", id, granted, err)
	}
	if _, _, err := parseSuback([]byte{0, 2, 9, 1}, true); !errors.Is(err, errMalformed) {
		t.Errorf("v5 SUBACK with overrunning properties: err = %v", err)
	}
	if topic, id, payload, err := parsePublish(0x32, []byte{0, 1, 't', 0, 7, 2, 0x23, 0, 'h', 'i'}, true); err != nil || string(topic) != "t" || id != 7 || string(payload) != "hi" {
		t.Errorf("v5 PUBLISH: %q %d %q %v", topic, id, payload, err)
	}
	if id, granted, err := parseSuback([]byte{0, 1, 0x80}, false); err != nil || id != 1 || granted != 0x80 {
		t.Errorf("SUBACK: %d %#x %v", id, granted, err)
	}
	if _, _, err := parseSuback([]byte{0, 1}, false); !errors.Is(err, errMalformed) {
		t.Errorf("short SUBACK: err = %v", err)
	}
	if id, err := parseAckID([]byte{0xab, 0xcd}); err != nil || id != 0xabcd {
		t.Errorf("PUBACK: %#x %v", id, err)
	}
}

// fakeListener accepts one connection, reads whatever comes and answers with reply.
func fakeListener(t *testing.T, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		pr := newPacketReader(c, 256, 1024)
		if _, _, err := pr.next(); err != nil {
			return
		}
		c.Write(reply)
		io.Copy(io.Discard, c)
	}()
	return ln.Addr().String()
}

func TestDialRefused(t *testing.T) {
	addr := fakeListener(t, []byte{0x20, 2, 0, 5})
	_, err := dialMQTT(context.Background(), &mqttOptions{addr: addr, timeout: 2 * time.Second, maxPacket: 1024}, "c", 64, 64)
	if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("err = %v, want a refusal naming 'not authorized'", err)
	}
}

func TestDialWrongFirstPacket(t *testing.T) {
	addr := fakeListener(t, []byte{0x90, 3, 0, 1, 0}) // SUBACK instead of CONNACK
	_, err := dialMQTT(context.Background(), &mqttOptions{addr: addr, timeout: 2 * time.Second, maxPacket: 1024}, "c", 64, 64)
	if !errors.Is(err, errUnexpected) {
		t.Fatalf("err = %v, want errUnexpected", err)
	}
}

func TestDialTimeout(t *testing.T) {
	addr := fakeListener(t, nil) // never answers CONNECT
	start := time.Now()
	_, err := dialMQTT(context.Background(), &mqttOptions{addr: addr, timeout: 200 * time.Millisecond, maxPacket: 1024}, "c", 64, 64)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

func TestObserve(t *testing.T) {
	st := &subStats{next: make([]uint64, 2)}
	now := time.Now().UnixNano()
	msg := func(sent int64, pub, seq uint64) []byte {
		p := make([]byte, 64)
		putHeader(p, sent, pub, seq)
		return p
	}
	st.observe(msg(now-int64(time.Millisecond), 0, 0), now)
	st.observe(msg(now, 0, 1), now)
	st.observe(msg(now, 1, 5), now) // a gap: 0..4 from publisher 1 missing
	st.observe(msg(now, 0, 1), now) // duplicate
	st.observe(msg(now, 2, 0), now) // no such publisher
	st.observe(make([]byte, 8), now)
	if got := st.received.Load(); got != 4 {
		t.Errorf("received = %d, want 4", got)
	}
	if st.outOfOrder != 1 || st.foreign != 2 || st.bytes != 4*64 {
		t.Errorf("outOfOrder %d foreign %d bytes %d", st.outOfOrder, st.foreign, st.bytes)
	}
	if st.next[0] != 2 || st.next[1] != 6 {
		t.Errorf("next = %v", st.next)
	}
	if st.lat.max != uint64(time.Millisecond) || st.lat.n != 4 {
		t.Errorf("latency max %d n %d", st.lat.max, st.lat.n)
	}
	p := msg(now, 1, 6)
	if n := testing.AllocsPerRun(1000, func() { st.observe(p, now) }); n != 0 {
		t.Errorf("observe allocates %v times per message", n)
	}
}

func putHeader(p []byte, sent int64, pub, seq uint64) {
	binary.BigEndian.PutUint64(p, uint64(sent))
	binary.BigEndian.PutUint64(p[8:], pub<<seqBits|seq)
}

func TestReadRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	rss, err := readRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("readRSS(self) = %d, %v", rss, err)
	}
	if _, err := readRSS(-1); err == nil {
		t.Fatalf("readRSS(-1) succeeded")
	}
}

// ackBroker is a minimal in-test peer for allocation tests: it accepts connections, answers CONNECT,
// SUBSCRIBE, PUBLISH (QoS 1/2), PUBREL and PINGREQ, and after a SUBACK sends blast QoS 1 PUBLISHes built
// by the client's own encoder. It allocates nothing per packet itself.
func ackBroker(t *testing.T, blast int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 16)
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go serveAcks(c, blast)
		}
	}()
	return ln.Addr().String()
}

func serveAcks(c net.Conn, blast int) {
	defer c.Close()
	pr := newPacketReader(c, 64<<10, 1<<20)
	bw := bufio.NewWriterSize(c, 16<<10)
	pr.beforeRead = bw.Flush
	var ack [5]byte
	for {
		hdr, body, err := pr.next()
		if err != nil {
			return
		}
		switch hdr >> 4 {
		case mqttCONNECT:
			bw.Write([]byte{mqttCONNACK << 4, 2, 0, 0})
		case mqttSUBSCRIBE:
			bw.Write(append(ack[:0], mqttSUBACK<<4, 3, body[0], body[1], body[len(body)-1]))
			if blast > 0 {
				bw.Flush()
				pkt := appendPublishHeader(nil, "t", 1, 64, false)
				pkt = append(pkt, make([]byte, 2+64)...) // identifier and payload, rewritten per message
				for i := range blast {
					binary.BigEndian.PutUint16(pkt[len(pkt)-66:], uint16(i)|1)
					putHeader(pkt[len(pkt)-64:], time.Now().UnixNano(), 0, uint64(i))
					bw.Write(pkt)
				}
			}
		case mqttPUBLISH:
			_, id, _, err := parsePublish(hdr, body, false)
			if err != nil {
				return
			}
			switch hdr >> 1 & 3 {
			case 1:
				bw.Write(appendAck(ack[:0], mqttPUBACK, id))
			case 2:
				bw.Write(appendAck(ack[:0], mqttPUBREC, id))
			}
		case mqttPUBREL:
			id, _ := parseAckID(body)
			bw.Write(appendAck(ack[:0], mqttPUBCOMP, id))
		case mqttPINGREQ:
			bw.Write([]byte{mqttPINGRESP << 4, 0})
		}
	}
}

// allocSlack is how many more allocations 20,000 more messages may cost in the allocation tests. The
// count is the whole process's (the fake peer, timers, the race detector's and the scheduler's own), which
// grows with the run's wall time on a loaded machine: a few hundred. One allocation per message would be
// 20,000, and one per ten 2,000.
const allocSlack = 1000

func mallocs(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.Mallocs - a.Mallocs
}

// The publishing path must not allocate per message (the tool has to outrun brokers on 2 shared cores).
func TestPublisherDoesNotAllocatePerMessage(t *testing.T) {
	addr := ackBroker(t, 0)
	d := &mqttDriver{opt: mqttOptions{addr: addr, timeout: 5 * time.Second, keepAlive: 30 * time.Second, maxPacket: 1 << 20}}
	for qos := byte(0); qos <= 2; qos++ {
		publish := func(count uint64) uint64 {
			spec := &pubSpec{topic: "t", qos: qos, size: 64, count: count, inflight: 32, drain: 5 * time.Second, ctl: newControl()}
			var st pubStats
			cl, err := d.dialPublisher(context.Background(), "p", spec, &st)
			if err != nil {
				t.Fatal(err)
			}
			n := mallocs(func() {
				if err := cl.run(); err != nil {
					t.Fatal(err)
				}
			})
			if st.sent.Load() != count || (qos > 0 && st.acked.Load() != count) || st.unexpected.Load() != 0 {
				t.Fatalf("qos %d: sent %d acked %d unexpected %d of %d", qos, st.sent.Load(), st.acked.Load(), st.unexpected.Load(), count)
			}
			return n
		}
		small, large := publish(1000), publish(21000)
		if large > small && large-small > allocSlack {
			t.Errorf("qos %d: 20000 more messages cost %d more allocations", qos, large-small)
		}
	}
}

func TestSubscriberDoesNotAllocatePerMessage(t *testing.T) {
	d := &mqttDriver{opt: mqttOptions{timeout: 5 * time.Second, keepAlive: 30 * time.Second, maxPacket: 1 << 20}}
	receive := func(n int) uint64 {
		d.opt.addr = ackBroker(t, n)
		st := &subStats{next: make([]uint64, 1)}
		cl, err := d.dialSubscriber(context.Background(), "s", &subSpec{filter: "t", qos: 1}, st)
		if err != nil {
			t.Fatal(err)
		}
		type outcome struct {
			allocs uint64
			err    error
		}
		done := make(chan outcome, 1)
		go func() {
			var o outcome
			o.allocs = mallocs(func() { o.err = cl.run() })
			done <- o
		}()
		prototest.WaitForErr(t, 10*time.Second, func() error {
			if got := st.received.Load(); got < uint64(n) {
				return fmt.Errorf("received %d of %d", got, n)
			}
			return nil
		})
		cl.stop()
		o := <-done
		if o.err != nil {
			t.Fatal(o.err)
		}
		if st.outOfOrder != 0 || st.foreign != 0 || st.lat.n != uint64(n) {
			t.Fatalf("out of order %d foreign %d latencies %d", st.outOfOrder, st.foreign, st.lat.n)
		}
		return o.allocs
	}
	small, large := receive(1000), receive(21000)
	if large > small && large-small > allocSlack {
		t.Errorf("20000 more deliveries cost %d more allocations", large-small)
	}
}
