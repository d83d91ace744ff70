package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol/prototest"
)

func TestStompEncodeGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		got  []byte
		want string
	}{
		{"connect", appendStompConnect(nil, stompConnectOptions{host: "/"}),
			"CONNECT\naccept-version:1.1,1.2\nhost:/\nheart-beat:0,0\n\n\x00"},
		// [STOMP 1.2, Value Encoding]: CONNECT headers are not escaped.
		{"connect with login", appendStompConnect(nil, stompConnectOptions{host: "h", login: "guest", passcode: "a:b"}),
			"CONNECT\naccept-version:1.1,1.2\nhost:h\nlogin:guest\npasscode:a:b\nheart-beat:0,0\n\n\x00"},
		{"connect with heart-beats", appendStompConnect(nil, stompConnectOptions{host: "h", heartBeat: 30 * time.Second}),
			"CONNECT\naccept-version:1.1,1.2\nhost:h\nheart-beat:30000,30000\n\n\x00"},
		{"subscribe", appendStompSubscribe(nil, "0", "/topic/a.b", ackAuto, 0, "sub-0"),
			"SUBSCRIBE\nid:0\ndestination:/topic/a.b\nack:auto\nreceipt:sub-0\n\n\x00"},
		{"subscribe with prefetch in every dialect", appendStompSubscribe(nil, "0", "/queue/q", ackClientIndividual, 250, "r"),
			"SUBSCRIBE\nid:0\ndestination:/queue/q\nack:client-individual\ncredit:250\nprefetch-count:250\nactivemq.prefetchSize:250\nreceipt:r\n\n\x00"},
		// [STOMP 1.2, Value Encoding]: \\ \c \n \r in other frames' headers.
		{"subscribe escaped destination", appendStompSubscribe(nil, "0", "/queue/a:b\\c\nd\re", ackClient, 0, "r"),
			"SUBSCRIBE\nid:0\ndestination:/queue/a\\cb\\\\c\\nd\\re\nack:client\nreceipt:r\n\n\x00"},
		{"send prefix", appendSendPrefix(nil, "/topic/t", 64, false),
			"SEND\ndestination:/topic/t\ncontent-length:64\n"},
		{"send prefix persistent", appendSendPrefix(nil, "/queue/q", 1000, true),
			"SEND\ndestination:/queue/q\ncontent-length:1000\npersistent:true\n"},
		// [STOMP 1.2, ACK]: by the MESSAGE's ack header; [STOMP 1.1, ACK]: message-id and subscription.
		{"ack 1.2", appendStompAck(nil, "1.2", []byte("a\\c7"), []byte("0")), "ACK\nid:a\\c7\n\n\x00"},
		{"ack 1.1", appendStompAck(nil, "1.1", []byte("m-7"), []byte("0")), "ACK\nmessage-id:m-7\nsubscription:0\n\n\x00"},
		{"ack 1.0", appendStompAck(nil, "1.0", []byte("m-7"), []byte("0")), "ACK\nmessage-id:m-7\n\n\x00"},
		{"disconnect", appendStompDisconnect(nil, "bye"), "DISCONNECT\nreceipt:bye\n\n\x00"},
	} {
		if string(c.got) != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, c.got, c.want)
		}
	}
}

type wantFrame struct {
	command string
	headers [][2]string
	body    string
}

// stompGoldenStream is what a broker may send: CONNECTED with CRLF line endings, heart-beat EOLs, a
// MESSAGE whose body holds NULs (framed by content-length), one framed by its NUL, a repeated header, a
// RECEIPT and an ERROR, and a body larger than the reader's initial buffer.
func stompGoldenStream() (string, []wantFrame) {
	big := strings.Repeat("x", 300)
	raw := "CONNECTED\r\nversion:1.2\r\nheart-beat:0,0\r\n\r\n\x00" +
		"\n\r\n\n" +
		"MESSAGE\nsubscription:0\nmessage-id:m\\c1\nack:a1\ncontent-length:5\n\nh\x00i\x00!\x00\n" +
		"MESSAGE\nsubscription:0\nmessage-id:m2\nack:a2\nack:ignored\n\nhello\x00" +
		"RECEIPT\nreceipt-id:77\n\n\x00" +
		"ERROR\nmessage:bad\ncontent-length:4\n\noops\x00" +
		"MESSAGE\ncontent-length:300\n\n" + big + "\x00"
	want := []wantFrame{
		{"CONNECTED", [][2]string{{"version", "1.2"}, {"heart-beat", "0,0"}}, ""},
		{"MESSAGE", [][2]string{{"subscription", "0"}, {"message-id", "m\\c1"}, {"ack", "a1"}, {"content-length", "5"}}, "h\x00i\x00!"},
		{"MESSAGE", [][2]string{{"subscription", "0"}, {"message-id", "m2"}, {"ack", "a2"}, {"ack", "ignored"}}, "hello"},
		{"RECEIPT", [][2]string{{"receipt-id", "77"}}, ""},
		{"ERROR", [][2]string{{"message", "bad"}, {"content-length", "4"}}, "oops"},
		{"MESSAGE", [][2]string{{"content-length", "300"}}, big},
	}
	return raw, want
}

func checkFrame(t *testing.T, i int, f *stompFrame, w wantFrame) {
	t.Helper()
	if string(f.command) != w.command || string(f.body) != w.body || len(f.headers) != len(w.headers) {
		t.Fatalf("frame %d: %s %d headers body %q; want %s %d headers body %q", i, f.command, len(f.headers), f.body, w.command, len(w.headers), w.body)
	}
	for j, h := range w.headers {
		if string(f.headers[j][0]) != h[0] || string(f.headers[j][1]) != h[1] {
			t.Fatalf("frame %d header %d: %q:%q, want %q:%q", i, j, f.headers[j][0], f.headers[j][1], h[0], h[1])
		}
	}
}

func TestFrameReader(t *testing.T) {
	raw, want := stompGoldenStream()
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
			fr := newFrameReader(c.rd(strings.NewReader(raw)), 8, 1024)
			for i, w := range want {
				f, err := fr.next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				checkFrame(t, i, f, w)
			}
			if _, err := fr.next(); err != io.EOF {
				t.Fatalf("after the stream: err = %v, want io.EOF", err)
			}
		})
	}
}

// [STOMP 1.2, Repeated Header Entries]: only the first occurrence counts.
func TestStompFrameHeaderFirstWins(t *testing.T) {
	fr := newFrameReader(strings.NewReader("MESSAGE\nack:a2\nack:ignored\n\n\x00"), 64, 1024)
	f, err := fr.next()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.header("ack"); !ok || string(v) != "a2" {
		t.Fatalf("ack = %q, %v", v, ok)
	}
	if _, ok := f.header("message-id"); ok {
		t.Fatal("found a header that is not there")
	}
}

func TestFrameReaderErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		raw  string
		want error
	}{
		// [STOMP 1.2, Body]: the content-length octets are followed by a NUL.
		{"no NUL after content-length body", "MESSAGE\ncontent-length:2\n\nabc\x00", errMalformed},
		{"header without colon", "MESSAGE\nbogus\n\n\x00", errMalformed},
		{"bad content-length", "MESSAGE\ncontent-length:-1\n\n\x00", errMalformed},
		{"CR without LF", "\rMESSAGE\n\n\x00", errMalformed},
		{"too large", "MESSAGE\ncontent-length:5000\n\n", errPacketTooLarge},
		{"too long without content-length", "MESSAGE\n\n" + strings.Repeat("x", 2000), errPacketTooLarge},
	} {
		fr := newFrameReader(strings.NewReader(c.raw), 16, 1024)
		if _, err := fr.next(); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestFrameReaderResumesAfterTimeout(t *testing.T) {
	raw, want := stompGoldenStream()
	var chunks [][]byte
	for i := 0; i < len(raw); i += 3 {
		chunks = append(chunks, []byte(raw[i:min(i+3, len(raw))]))
	}
	fr := newFrameReader(&timeoutReader{chunks: chunks}, 8, 1024)
	for i := 0; i < len(want); {
		f, err := fr.next()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		checkFrame(t, i, f, want[i])
		i++
	}
}

func TestParseDecimal(t *testing.T) {
	for s, want := range map[string]int{"0": 0, "64": 64, "123456789012345": 123456789012345} {
		if n, err := parseDecimal([]byte(s)); err != nil || n != want {
			t.Errorf("parseDecimal(%q) = %d, %v", s, n, err)
		}
	}
	for _, s := range []string{"", "-1", "1x", " 1", "1234567890123456"} {
		if _, err := parseDecimal([]byte(s)); !errors.Is(err, errMalformed) {
			t.Errorf("parseDecimal(%q): err = %v, want errMalformed", s, err)
		}
	}
}

// stompPeer is a minimal in-test STOMP broker: SEND goes to every subscriber of a /topic/ destination and to
// one subscriber of anything else in turn; SUBSCRIBE, SEND and DISCONNECT get the RECEIPTs they ask for.
// With blast > 0 each SUBSCRIBE is followed by that many MESSAGEs to the new subscriber. It allocates
// nothing per frame, so that the client's allocation tests measure the client.
type stompPeer struct {
	addr    string
	version string // CONNECTED version header; "" = none (a 1.0 server)
	refuse  string // when set, CONNECT gets an ERROR with this message
	blast   int

	mu    sync.Mutex
	subs  map[string][]*peerConn
	turn  int
	acks  atomic.Int64
	sends atomic.Int64
	last  []byte // the latest ACK frame's headers, guarded by mu
}

type peerConn struct {
	mu      sync.Mutex
	nc      net.Conn
	bw      *bufio.Writer
	subID   []byte
	msg     []byte // scratch for MESSAGE frames, guarded by mu
	counter int
}

func newStompPeer(t *testing.T, version string, blast int) *stompPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stompPeer{addr: ln.Addr().String(), version: version, blast: blast, subs: map[string][]*peerConn{}}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, nc)
			connsMu.Unlock()
			wg.Go(func() { p.serve(nc, &wg) })
		}
	})
	return p
}

func (p *stompPeer) serve(nc net.Conn, wg *sync.WaitGroup) {
	defer nc.Close()
	pc := &peerConn{nc: nc, bw: bufio.NewWriterSize(nc, 16<<10), msg: make([]byte, 0, 512)}
	fr := newFrameReader(nc, 64<<10, 1<<20)
	fr.beforeRead = func() error {
		pc.mu.Lock()
		defer pc.mu.Unlock()
		return pc.bw.Flush()
	}
	var out []byte
	reply := func(b []byte) {
		pc.mu.Lock()
		pc.bw.Write(b)
		pc.mu.Unlock()
	}
	receipt := func(f *stompFrame) {
		if r, ok := f.header("receipt"); ok {
			out = append(append(append(out[:0], "RECEIPT\nreceipt-id:"...), r...), "\n\n\x00"...)
			reply(out)
		}
	}
	for {
		f, err := fr.next()
		if err != nil {
			return
		}
		switch {
		case f.is("CONNECT"):
			if p.refuse != "" {
				reply([]byte("ERROR\nmessage:" + p.refuse + "\n\nno entry\x00"))
				pc.mu.Lock()
				pc.bw.Flush()
				pc.mu.Unlock()
				return
			}
			out = append(out[:0], "CONNECTED\n"...)
			if p.version != "" {
				out = append(append(append(out, "version:"...), p.version...), '\n')
			}
			reply(append(out, "\n\x00"...))
		case f.is("SUBSCRIBE"):
			dest, _ := f.header("destination")
			id, _ := f.header("id")
			pc.subID = append([]byte(nil), id...)
			p.mu.Lock()
			p.subs[string(dest)] = append(p.subs[string(dest)], pc)
			p.mu.Unlock()
			receipt(f)
			if p.blast > 0 {
				wg.Go(func() {
					payload := make([]byte, 64)
					for i := range p.blast {
						putHeader(payload, time.Now().UnixNano(), 0, uint64(i))
						pc.deliver("/topic/t", payload)
					}
					pc.mu.Lock()
					pc.bw.Flush()
					pc.mu.Unlock()
				})
			}
		case f.is("SEND"):
			p.sends.Add(1)
			dest, _ := f.header("destination")
			p.mu.Lock()
			subs := p.subs[string(dest)]
			var to []*peerConn
			if bytes.HasPrefix(dest, []byte("/topic/")) {
				to = subs
			} else if len(subs) > 0 {
				p.turn++
				to = subs[p.turn%len(subs) : p.turn%len(subs)+1]
			}
			p.mu.Unlock()
			for _, s := range to {
				s.deliver(string(dest), f.body)
				s.mu.Lock()
				s.bw.Flush()
				s.mu.Unlock()
			}
			receipt(f)
		case f.is("ACK"):
			p.acks.Add(1)
			p.mu.Lock()
			p.last = p.last[:0]
			for _, h := range f.headers {
				p.last = append(append(append(append(p.last, h[0]...), ':'), h[1]...), ' ')
			}
			p.mu.Unlock()
		case f.is("DISCONNECT"):
			receipt(f)
			pc.mu.Lock()
			pc.bw.Flush()
			pc.mu.Unlock()
			return
		}
	}
}

// deliver writes a MESSAGE with numbered message-id and ack headers, without flushing.
func (pc *peerConn) deliver(dest string, body []byte) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.counter++
	b := append(pc.msg[:0], "MESSAGE\nsubscription:"...)
	b = append(b, pc.subID...)
	b = append(b, "\nmessage-id:m-"...)
	b = strconv.AppendInt(b, int64(pc.counter), 10)
	b = append(b, "\nack:a\\c"...) // an escaped colon, which ACK must echo unchanged
	b = strconv.AppendInt(b, int64(pc.counter), 10)
	b = append(b, "\ndestination:"...)
	b = append(b, dest...)
	b = append(b, "\ncontent-length:"...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\n\n"...)
	b = append(b, body...)
	pc.msg = append(b, 0)
	pc.bw.Write(pc.msg)
}

func (p *stompPeer) lastAck() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.last)
}

func testSTOMPOptions(addr string) stompOptions {
	return stompOptions{addr: addr, host: "127.0.0.1", timeout: 5 * time.Second, maxFrame: 1 << 20,
		destPrefix: "/topic/", ack: ackAuto, ackEvery: 1}
}

func TestStompDialRefused(t *testing.T) {
	p := newStompPeer(t, "1.2", 0)
	p.refuse = "access denied"
	opt := testSTOMPOptions(p.addr)
	_, err := dialSTOMP(context.Background(), &opt, 64, 64)
	if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "access denied: no entry") {
		t.Fatalf("err = %v, want a refusal with the ERROR's message and body", err)
	}
}

// [STOMP 1.1, Protocol Negotiation]: a CONNECTED without version is a 1.0 server, which has no
// client-individual mode.
func TestStompDialVersion10(t *testing.T) {
	p := newStompPeer(t, "", 0)
	opt := testSTOMPOptions(p.addr)
	c, err := dialSTOMP(context.Background(), &opt, 64, 64)
	if err != nil {
		t.Fatal(err)
	}
	if c.version != "1.0" {
		t.Errorf("version %q, want 1.0", c.version)
	}
	c.close()
	opt.ack = ackClientIndividual
	if _, err := dialSTOMP(context.Background(), &opt, 64, 64); !errors.Is(err, errUnexpected) {
		t.Fatalf("client-individual on 1.0: err = %v, want errUnexpected", err)
	}
}

// The producing path must not allocate per message, with or without receipts.
func TestStompPublisherDoesNotAllocatePerMessage(t *testing.T) {
	p := newStompPeer(t, "1.2", 0)
	for _, receiptEvery := range []int{0, 1, 7} {
		opt := testSTOMPOptions(p.addr)
		opt.receiptEvery, opt.persistent = receiptEvery, receiptEvery > 0
		d := &stompDriver{opt: opt}
		publish := func(count uint64) uint64 {
			spec := &pubSpec{topic: "/queue/q", size: 64, count: count, inflight: 16, drain: 5 * time.Second, ctl: newControl()}
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
			wantAcked := uint64(0)
			if receiptEvery > 0 {
				wantAcked = count / uint64(receiptEvery) * uint64(receiptEvery)
			}
			if st.sent.Load() != count || st.acked.Load() != wantAcked || st.unexpected.Load() != 0 {
				t.Fatalf("receipt every %d: sent %d acked %d (want %d) unexpected %d of %d",
					receiptEvery, st.sent.Load(), st.acked.Load(), wantAcked, st.unexpected.Load(), count)
			}
			return n
		}
		small, large := publish(1000), publish(21000)
		if large > small && large-small > allocSlack {
			t.Errorf("receipt every %d: 20000 more messages cost %d more allocations", receiptEvery, large-small)
		}
	}
}

func TestStompSubscriberDoesNotAllocatePerMessage(t *testing.T) {
	for _, c := range []struct {
		ack      string
		ackEvery int
		version  string
		wantAck  string // the last ACK's headers for message n
		acks     func(n int) int64
	}{
		{ackAuto, 1, "1.2", "", func(int) int64 { return 0 }},
		// [STOMP 1.2, ACK]: the id header echoes the MESSAGE's ack header, escapes and all.
		{ackClientIndividual, 1, "1.2", "id:a\\c%d ", func(n int) int64 { return int64(n) }},
		// Cumulative ACKs every 100, and the remainder at disconnect.
		{ackClient, 100, "1.2", "id:a\\c%d ", func(n int) int64 { return int64((n + 99) / 100) }},
		// [STOMP 1.1, ACK]: message-id and subscription.
		{ackClientIndividual, 1, "1.1", "message-id:m-%d subscription:0 ", func(n int) int64 { return int64(n) }},
	} {
		t.Run(c.ack+" "+c.version, func(t *testing.T) {
			receive := func(n int) uint64 {
				p := newStompPeer(t, c.version, n)
				opt := testSTOMPOptions(p.addr)
				opt.ack, opt.ackEvery = c.ack, c.ackEvery
				d := &stompDriver{opt: opt}
				st := &subStats{next: make([]uint64, 1)}
				cl, err := d.dialSubscriber(context.Background(), "s", &subSpec{filter: "/topic/t"}, st)
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
				// The DISCONNECT receipt came after every ACK, so the peer has read them all.
				if got, want := p.acks.Load(), c.acks(n); got != want {
					t.Fatalf("peer got %d ACKs, want %d", got, want)
				}
				if c.wantAck != "" {
					if got, want := p.lastAck(), fmt.Sprintf(c.wantAck, n); got != want {
						t.Fatalf("last ACK %q, want %q", got, want)
					}
				}
				return o.allocs
			}
			small, large := receive(1000), receive(21000)
			if large > small && large-small > allocSlack {
				t.Errorf("20000 more deliveries cost %d more allocations", large-small)
			}
		})
	}
}

// bench drives -proto stomp end to end against the peer: topic fan-in, and a queue shared by consumers
// with client-individual and cumulative acks and producers asking receipts.
func TestBenchSTOMPPeer(t *testing.T) {
	p := newStompPeer(t, "1.2", 0)
	for _, c := range []struct {
		name     string
		args     []string
		expected uint64
		acked    uint64
	}{
		{"fanin", []string{"-mode", "fanin", "-pubs", "3", "-count", "300"}, 900, 0},
		{"fanout", []string{"-mode", "fanout", "-subs", "3", "-count", "300"}, 900, 0},
		{"queue client-individual receipts", []string{"-mode", "queue", "-pubs", "2", "-subs", "3", "-count", "300",
			"-receipt-every", "10", "-inflight", "4", "-persistent", "-prefetch", "50"}, 600, 600},
		// Producers only: the queue keeps the messages; receipts confirm all of them.
		{"queue producers only", []string{"-mode", "queue", "-pubs", "2", "-subs", "0", "-count", "300",
			"-receipt-every", "1", "-persistent"}, 0, 600},
		{"queue client cumulative", []string{"-mode", "queue", "-pubs", "2", "-subs", "2", "-count", "300",
			"-ack", "client", "-ack-every", "7"}, 600, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(append([]string{"-proto", "stomp", "-addr", p.addr, "-rate", "5000", "-topic", "test"}, c.args...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			r, err := bench(context.Background(), cfg, nil, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			if r.failed() || r.Interrupted {
				t.Fatalf("errors: %v (interrupted %v)", r.Errors, r.Interrupted)
			}
			if r.Expected != c.expected || r.Received != c.expected || r.Lost != 0 || r.OutOfOrder != 0 || r.Foreign != 0 || r.Acked != c.acked {
				t.Fatalf("expected %d (want %d) received %d lost %d out of order %d foreign %d acked %d (want %d)",
					r.Expected, c.expected, r.Received, r.Lost, r.OutOfOrder, r.Foreign, r.Acked, c.acked)
			}
			if r.Latency.Count != c.expected || (r.RecvRate <= 0) != (c.expected == 0) {
				t.Fatalf("latency %+v rate %v", r.Latency, r.RecvRate)
			}
		})
	}
}

func TestParseFlagsSTOMP(t *testing.T) {
	c, err := parseFlags([]string{"-proto", "stomp", "-mode", "queue", "-addr", "localhost:61613", "-user", "u", "-pass", "p"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.pubs != 4 || c.subs != 4 || c.ack != ackClientIndividual || c.destPrefix != "/queue/" || c.vhost != "localhost" ||
		c.login != "u" || c.passcode != "p" || c.coalesce != 0 {
		t.Errorf("queue defaults: %+v", c)
	}
	c, err = parseFlags([]string{"-proto", "stomp", "-vhost", "/", "-login", "guest", "-passcode", "guest"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ack != ackAuto || c.destPrefix != "/topic/" || c.vhost != "/" || c.login != "guest" || c.coalesce != time.Millisecond {
		t.Errorf("topic defaults: %+v", c)
	}
	if d := newSTOMPDriver(c); d.topic("a", "b") != "/topic/a.b" {
		t.Errorf("topic %q", d.topic("a", "b"))
	}
	c, err = parseFlags([]string{"-mode", "mqtt2stomp"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if pub, sub := newDrivers(c); pub.topic("a", "b") != "a/b" || sub.topic("a", "b") != "/topic/a.b" {
		t.Errorf("mqtt2stomp topics %q -> %q", pub.topic("a", "b"), sub.topic("a", "b"))
	}
	c, err = parseFlags([]string{"-mode", "mqtt2stomp", "-addr", "127.0.0.1:18831", "-stomp-addr", "localhost:61620"}, &bytes.Buffer{})
	if err != nil || c.stompAddr != "localhost:61620" || c.vhost != "localhost" || newSTOMPDriver(c).opt.addr != "localhost:61620" {
		t.Errorf("-stomp-addr: %+v, %v", c, err)
	}
	c, err = parseFlags([]string{"-proto", "stomp", "-mode", "queue", "-subs", "0"}, &bytes.Buffer{})
	if err != nil || c.subs != 0 || !c.producersOnly {
		t.Errorf("queue -subs 0: subs %d, producersOnly %v, %v", c.subs, c.producersOnly, err)
	}
	for _, args := range [][]string{
		{"-mode", "queue"}, // MQTT has no queue mode
		{"-proto", "stomp", "-mode", "fanin", "-subs", "-1"},
		{"-proto", "stomp", "-mode", "mqtt2stomp"},
		{"-mode", "mqtt2stomp", "-persistent"},
		{"-proto", "stomp", "-ack", "none"},
		{"-proto", "stomp", "-ack-every", "0"},
		{"-proto", "stomp", "-prefetch", "-1"},
		{"-proto", "stomp", "-receipt-every", "-1"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}
