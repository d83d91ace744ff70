package stomp

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
)

// TestProtocolNegotiation covers STOMP 1.2 "Protocol Negotiation": the highest common version wins, no
// accept-version means 1.0, no common version is an ERROR carrying the server's versions.
func TestProtocolNegotiation(t *testing.T) {
	b := startBroker(t, nil)
	for _, tc := range []struct{ accept, want string }{
		{"accept-version:1.0,1.1,1.2", "1.2"},
		{"accept-version:1.1,1.0", "1.1"},
		{"accept-version:1.0", "1.0"},
		{"accept-version:1.1,2.0", "1.1"},
		{"accept-version:1.0, 1.2 ", "1.2"},
		{"accept-version:2.0,,1.1", "1.1"},
		{"", "1.0"},
	} {
		t.Run(tc.want+"/"+tc.accept, func(t *testing.T) {
			r := b.raw(t)
			var hdrs []string
			if tc.accept != "" {
				hdrs = append(hdrs, tc.accept)
			}
			f := r.connect(hdrs...)
			if f.Command != frame.CONNECTED {
				t.Fatalf("got %s %v", f.Command, f.Header)
			}
			if v := f.Header.Get(frame.Version); v != tc.want {
				t.Errorf("version %q, want %q", v, tc.want)
			}
			if s := f.Header.Get(frame.Server); s != "lyre/0.1.0" {
				t.Errorf("server %q", s)
			}
			if id := f.Header.Get(frame.Session); !isSessionKey(id) {
				t.Errorf("session header %q is not a session id", id)
			}
			if _, ok := f.Header.Contains(frame.HeartBeat); ok != (tc.want != "1.0") {
				t.Errorf("heart-beat header present=%v for %s", ok, tc.want)
			}
		})
	}
	t.Run("no common version", func(t *testing.T) {
		r := b.raw(t)
		r.send("CONNECT\naccept-version:2.0,3.1\n\n\x00")
		f := r.expectError("unsupported protocol version")
		if v := f.Header.Get(frame.Version); v != "1.0,1.1,1.2" {
			t.Errorf("ERROR version header %q", v)
		}
	})
}

// TestConnecting_GoStompClient connects go-stomp's client at each version.
func TestConnecting_GoStompClient(t *testing.T) {
	b := startBroker(t, nil)
	for _, v := range []stomp.Version{stomp.V10, stomp.V11, stomp.V12} {
		c := b.dial(t, stomp.ConnOpt.AcceptVersion(v))
		if c.Version() != v {
			t.Errorf("negotiated %s, want %s", c.Version(), v)
		}
		if c.Server() != ServerName {
			t.Errorf("server %q", c.Server())
		}
	}
}

// TestConnecting_VirtualHosts checks the CONNECT host header: an alias finds its host, no header means
// the default host, an unknown host is an ERROR answered as a refused login (no host enumeration).
func TestConnecting_VirtualHosts(t *testing.T) {
	b := startBroker(t, nil)
	if f := b.raw(t).connect("accept-version:1.2", "host:LOCALHOST"); f.Command != frame.CONNECTED {
		t.Fatalf("alias: got %s", f.Command)
	}
	if f := b.raw(t).connect("accept-version:1.2"); f.Command != frame.CONNECTED {
		t.Fatalf("no host header: got %s", f.Command)
	}
	r := b.raw(t)
	r.send("CONNECT\naccept-version:1.2\nhost:nowhere\n\n\x00")
	r.expectError("access refused")

	// Hosts are isolated: a message sent on "other" does not reach a subscriber on "default".
	def := b.dial(t)
	sub := subscribe(t, def, "/topic/iso", stomp.AckAuto)
	oth := b.dial(t, stomp.ConnOpt.Host("other"))
	if err := oth.Send("/topic/iso", "", []byte("x"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	expectNone(t, sub, 100*time.Millisecond)
}

// TestConnecting_AccessRefused: a host without anonymous access refuses a client without credentials.
func TestConnecting_AccessRefused(t *testing.T) {
	b := startBroker(t, nil)
	c := b.host.Config()
	c.Anonymous = false
	if err := b.host.Update(c); err != nil {
		t.Fatal(err)
	}
	r := b.raw(t)
	r.send("CONNECT\naccept-version:1.2\nhost:default\n\n\x00")
	r.expectError("access refused")
}

// TestSEND_SUBSCRIBE_TopicWildcards covers STOMP 1.2 "SEND" and "SUBSCRIBE" on topics, with Lyre's
// wildcard and regex segments and composite destinations.
func TestSEND_SUBSCRIBE_TopicWildcards(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial(t, stomp.ConnOpt.AcceptVersion(stomp.V12))
	subs := map[string]*stomp.Subscription{}
	for _, d := range []string{"/topic/sensors.*.temp", "/topic/sensors.**", "/topic/{k[0-9]+}.x", "/topic/sensors.k1.temp", "/topic/other"} {
		s := subscribe(t, c, d, stomp.AckAuto)
		subs[d] = s
	}
	pub := b.dial(t)
	if err := pub.Send("/topic/sensors.k1.temp", "text/plain", []byte("21.5"), stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("unit", "celsius")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/topic/sensors.*.temp", "/topic/sensors.**", "/topic/sensors.k1.temp"} {
		m := recv(t, subs[d])
		if string(m.Body) != "21.5" || m.Destination != "/topic/sensors.k1.temp" || m.ContentType != "text/plain" {
			t.Errorf("%s: got %q at %q (%q)", d, m.Body, m.Destination, m.ContentType)
		}
		if u := m.Header.Get("unit"); u != "celsius" {
			t.Errorf("%s: unit header %q", d, u)
		}
		if m.Header.Get(frame.MessageId) == "" || m.Header.Get(frame.Subscription) != subs[d].Id() {
			t.Errorf("%s: headers %v", d, m.Header)
		}
		if m.Header.Get(frame.ContentLength) != "4" {
			t.Errorf("%s: content-length %q", d, m.Header.Get(frame.ContentLength))
		}
	}
	// Composite destination: one SEND reaches two topics.
	if err := pub.Send("/topic/k42.x,/topic/other", "", []byte("both"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, subs["/topic/{k[0-9]+}.x"]); string(m.Body) != "both" || m.Destination != "/topic/k42.x" {
		t.Errorf("regex: got %q at %q", m.Body, m.Destination)
	}
	if m := recv(t, subs["/topic/other"]); string(m.Body) != "both" {
		t.Errorf("composite: got %q", m.Body)
	}
	expectNone(t, subs["/topic/sensors.k1.temp"], 50*time.Millisecond)
}

// TestSUBSCRIBE_QueueRoundRobin: each queue message goes to one consumer, round-robin.
func TestSUBSCRIBE_QueueRoundRobin(t *testing.T) {
	b := startBroker(t, nil)
	c1, c2 := b.dial(t), b.dial(t)
	s1 := subscribe(t, c1, "/queue/work", stomp.AckAuto)
	s2 := subscribe(t, c2, "/queue/work", stomp.AckAuto)
	pub := b.dial(t)
	for i := range 6 {
		if err := pub.Send("/queue/work", "", []byte(fmt.Sprint(i)), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for range 3 {
		got[string(recv(t, s1).Body)] = 1
		got[string(recv(t, s2).Body)] = 2
	}
	if len(got) != 6 {
		t.Fatalf("got %v, want 6 distinct messages", got)
	}
	expectNone(t, s1, 50*time.Millisecond)
	if n := b.host.Router.QueueDepth([]string{"work"}); n != 0 {
		t.Errorf("queue depth %d after auto-ack delivery", n)
	}
}

// TestACK_ClientIndividualRedelivery covers STOMP 1.2 "ACK"/"NACK" in client-individual mode: an acked
// message is gone, an unacked one is redelivered (redelivered:true) when its consumer goes away, a
// NACKed one is redelivered at once.
func TestACK_ClientIndividualRedelivery(t *testing.T) {
	b := startBroker(t, nil)
	pub := b.dial(t)
	for _, body := range []string{"a", "b", "c"} {
		if err := pub.Send("/queue/jobs", "", []byte(body), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	c1, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.Host("default"), stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	s1 := subscribe(t, c1, "/queue/jobs", stomp.AckClientIndividual)
	ma, mb, mc := recv(t, s1), recv(t, s1), recv(t, s1)
	if string(ma.Body)+string(mb.Body)+string(mc.Body) != "abc" {
		t.Fatalf("got %q %q %q", ma.Body, mb.Body, mc.Body)
	}
	if ma.Header.Get(frame.Ack) == "" {
		t.Fatalf("1.2 MESSAGE without ack header: %v", ma.Header)
	}
	// ACK b only (individual), with a receipt so the ack is settled before we go on.
	if err := c1.Ack(mb); err != nil {
		t.Fatal(err)
	}
	if err := c1.Nack(mc); err != nil {
		t.Fatal(err)
	}
	m := recv(t, s1)
	if string(m.Body) != "c" || m.Header.Get("redelivered") != "true" {
		t.Fatalf("after NACK got %q redelivered=%q", m.Body, m.Header.Get("redelivered"))
	}
	// Disconnect without acking a and c: both go back to the queue for the next consumer.
	if err := c1.Disconnect(); err != nil {
		t.Fatal(err)
	}
	c2 := b.dial(t)
	s2 := subscribe(t, c2, "/queue/jobs", stomp.AckClientIndividual)
	r1, r2 := recv(t, s2), recv(t, s2)
	if string(r1.Body) != "a" || string(r2.Body) != "c" {
		t.Fatalf("redelivered %q %q, want a c", r1.Body, r2.Body)
	}
	if r1.Header.Get("redelivered") != "true" {
		t.Errorf("redelivered header missing: %v", r1.Header)
	}
	expectNone(t, s2, 50*time.Millisecond)
	if err := c2.Ack(r1); err != nil {
		t.Fatal(err)
	}
	if err := c2.Ack(r2); err != nil {
		t.Fatal(err)
	}
	prototest.WaitFor(t, 2*time.Second, func() bool {
		return b.host.Router.Stats().Queues == 0 || b.host.Router.QueueDepth([]string{"jobs"}) == 0
	})
}

// TestACK_ClientCumulative: in client mode one ACK covers every earlier message of the subscription
// (STOMP 1.2 "SUBSCRIBE ack Header").
func TestACK_ClientCumulative(t *testing.T) {
	b := startBroker(t, nil)
	pub := b.dial(t)
	for i := range 3 {
		if err := pub.Send("/queue/cum", "", []byte(fmt.Sprint(i)), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	c1, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.Host("default"), stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	s1 := subscribe(t, c1, "/queue/cum", stomp.AckClient)
	recv(t, s1)
	m1 := recv(t, s1)
	recv(t, s1)
	if err := c1.Ack(m1); err != nil { // settles 0 and 1
		t.Fatal(err)
	}
	if err := c1.Disconnect(); err != nil {
		t.Fatal(err)
	}
	c2 := b.dial(t)
	s2 := subscribe(t, c2, "/queue/cum", stomp.AckAuto)
	if m := recv(t, s2); string(m.Body) != "2" {
		t.Fatalf("redelivered %q, want only 2", m.Body)
	}
	expectNone(t, s2, 50*time.Millisecond)
}

// TestACK_Version11 acknowledges by message-id and subscription (STOMP 1.1 "ACK").
func TestACK_Version11(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	if f := r.connect("accept-version:1.1", "host:default"); f.Header.Get(frame.Version) != "1.1" {
		t.Fatalf("connected %v", f.Header)
	}
	r.send("SUBSCRIBE\nid:s1\ndestination:/queue/v11\nack:client-individual\nreceipt:r1\n\n\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s", f.Command)
	}
	r.send("SEND\ndestination:/queue/v11\n\nhello\x00")
	m := r.read()
	if m.Command != frame.MESSAGE || string(m.Body) != "hello" {
		t.Fatalf("got %s %q", m.Command, m.Body)
	}
	if _, ok := m.Header.Contains(frame.Ack); ok {
		t.Errorf("1.1 MESSAGE carries an ack header")
	}
	r.send("ACK\nsubscription:s1\nmessage-id:" + m.Header.Get(frame.MessageId) + "\nreceipt:r2\n\n\x00")
	if f := r.read(); f.Command != frame.RECEIPT || f.Header.Get(frame.ReceiptId) != "r2" {
		t.Fatalf("got %s %v", f.Command, f.Header)
	}
	r.send("UNSUBSCRIBE\nid:s1\n\n\x00DISCONNECT\nreceipt:bye\n\n\x00")
	if f := r.read(); f.Header.Get(frame.ReceiptId) != "bye" {
		t.Fatalf("got %s %v", f.Command, f.Header)
	}
	r.expectClosed(testDieDelay)
	if n := b.host.Router.QueueDepth([]string{"v11"}); n != 0 {
		t.Errorf("acked message back in the queue: depth %d", n)
	}
}

// TestRECEIPT covers STOMP 1.2 "Header receipt": every client frame that asks gets a RECEIPT.
func TestRECEIPT(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	frames := []string{
		"SUBSCRIBE\nid:0\ndestination:/topic/r\nreceipt:1\n\n\x00",
		"SEND\ndestination:/topic/nobody\nreceipt:2\n\nx\x00",
		"BEGIN\ntransaction:t\nreceipt:3\n\n\x00",
		"ABORT\ntransaction:t\nreceipt:4\n\n\x00",
		"UNSUBSCRIBE\nid:0\nreceipt:5\n\n\x00",
	}
	for i, f := range frames {
		r.send(f)
		got := r.read()
		if got.Command != frame.RECEIPT || got.Header.Get(frame.ReceiptId) != fmt.Sprint(i+1) {
			t.Fatalf("frame %d: got %s %v", i+1, got.Command, got.Header)
		}
	}
}

// TestDISCONNECT: RECEIPT, then the server closes (STOMP 1.2 "Connection Lingering").
func TestDISCONNECT(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("DISCONNECT\nreceipt:77\n\n\x00")
	f := r.read()
	if f.Command != frame.RECEIPT || f.Header.Get(frame.ReceiptId) != "77" {
		t.Fatalf("got %s %v", f.Command, f.Header)
	}
	r.expectClosed(testDieDelay)

	// go-stomp's Disconnect waits for that receipt.
	if err := b.dial(t).Disconnect(); err != nil {
		t.Fatalf("go-stomp Disconnect: %v", err)
	}
}

// TestBEGIN_COMMIT_ABORT covers STOMP 1.2 "BEGIN", "COMMIT" and "ABORT": sends in a transaction are
// delivered at COMMIT only, and not at all after ABORT.
func TestBEGIN_COMMIT_ABORT(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial(t)
	sub := subscribe(t, c, "/topic/tx", stomp.AckAuto)
	pub := b.dial(t)
	tx, err := pub.BeginWithError()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Send("/topic/tx", "", []byte("in-tx"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	expectNone(t, sub, 50*time.Millisecond)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); string(m.Body) != "in-tx" {
		t.Fatalf("got %q", m.Body)
	}
	tx, err = pub.BeginWithError()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Send("/topic/tx", "", []byte("aborted"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if err := tx.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Send("/topic/tx", "", []byte("after"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); string(m.Body) != "after" {
		t.Fatalf("got %q, want the aborted message dropped", m.Body)
	}
}

// TestRetain: retain:set keeps the last message for new subscribers; retain:remove clears it.
func TestRetain(t *testing.T) {
	b := startBroker(t, nil)
	pub := b.dial(t)
	if err := pub.Send("/topic/status.a", "", []byte("up"), stomp.SendOpt.Receipt, stomp.SendOpt.Header("retain", "set")); err != nil {
		t.Fatal(err)
	}
	c := b.dial(t)
	sub := subscribe(t, c, "/topic/status.*", stomp.AckAuto)
	if m := recv(t, sub); string(m.Body) != "up" || m.Destination != "/topic/status.a" {
		t.Fatalf("retained: got %q at %q", m.Body, m.Destination)
	}
	if err := pub.Send("/topic/status.a", "", nil, stomp.SendOpt.Receipt, stomp.SendOpt.Header("retain", "remove")); err != nil {
		t.Fatal(err)
	}
	recv(t, sub) // the clearing message itself is delivered to current subscribers
	sub2 := subscribe(t, c, "/topic/status.a", stomp.AckAuto)
	expectNone(t, sub2, 50*time.Millisecond)
}

// TestCrossProtocolDelivery: a message published under MQTT names reaches STOMP subscribers under the
// STOMP name, body only (DESIGN.md §4).
func TestCrossProtocolDelivery(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial(t)
	sub := subscribe(t, c, "/topic/sensors.*.temp", stomp.AckAuto)
	mg, err := router.NewGrammar(router.MQTTGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	d, err := mg.ParseName("sensors/k1.b/temp")
	if err != nil {
		t.Fatal(err)
	}
	res := b.host.Router.Publish(&router.Message{Dest: d, Body: []byte("7"), Origin: "sensors/k1.b/temp", OriginGram: mg,
		Headers: []router.Header{{Name: "note", Value: "a:b"}}})
	if res.Err != nil || res.Delivered != 1 {
		t.Fatalf("publish: %+v", res)
	}
	m := recv(t, sub)
	if string(m.Body) != "7" || m.Destination != "/topic/sensors.k1%2Eb.temp" {
		t.Fatalf("got %q at %q", m.Body, m.Destination)
	}
	if m.Header.Get("note") != "a:b" {
		t.Errorf("user property header %q", m.Header.Get("note"))
	}
}

// TestERROR_ProtocolErrors covers STOMP 1.2 "ERROR": each protocol error gets an ERROR frame with a
// message header and an explaining body, then the connection closes within die_delay.
func TestERROR_ProtocolErrors(t *testing.T) {
	b := startBroker(t, nil)
	for _, tc := range []struct {
		name, frames, want string
		connect            bool
	}{
		{name: "SEND before CONNECT", frames: "SEND\ndestination:/topic/a\n\nx\x00", want: "not connected"},
		{name: "unknown command", frames: "HELLO\n\n\x00", want: "unknown command", connect: true},
		{name: "malformed header line", frames: "SEND\ndestination /topic/a\n\nx\x00", want: "malformed frame", connect: true},
		{name: "undefined escape", frames: "SEND\ndestination:/topic/\\ta\n\nx\x00", want: "malformed frame", connect: true},
		{name: "missing NUL at EOF", frames: "SEND\ndestination:/topic/a\n\nunterminated", want: "malformed frame", connect: true},
		{name: "content-length body without NUL", frames: "SEND\ndestination:/topic/a\ncontent-length:1\n\nxy\x00", want: "malformed frame", connect: true},
		{name: "oversized body via content-length", frames: "SEND\ndestination:/topic/a\ncontent-length:2000000\n\n", want: "frame too large", connect: true},
		{name: "oversized body without content-length", frames: "SEND\ndestination:/topic/a\n\n" + strings.Repeat("x", 1<<20+10), want: "frame too large", connect: true},
		{name: "too many headers", frames: "SEND\ndestination:/topic/a\n" + strings.Repeat("h:v\n", 60) + "\nx\x00", want: "too many headers", connect: true},
		{name: "header too long", frames: "SEND\ndestination:/topic/" + strings.Repeat("a", 2000) + "\n\nx\x00", want: "header too long", connect: true},
		{name: "SEND without destination", frames: "SEND\n\nx\x00", want: "missing destination", connect: true},
		{name: "SEND to invalid destination", frames: "SEND\ndestination:nowhere\n\nx\x00", want: "invalid destination", connect: true},
		{name: "SUBSCRIBE without id", frames: "SUBSCRIBE\ndestination:/topic/a\n\n\x00", want: "missing id", connect: true},
		{name: "SUBSCRIBE duplicate id", frames: "SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\x00SUBSCRIBE\nid:1\ndestination:/topic/b\n\n\x00", want: "duplicate subscription", connect: true},
		{name: "SUBSCRIBE bad ack mode", frames: "SUBSCRIBE\nid:1\ndestination:/topic/a\nack:sometimes\n\n\x00", want: "invalid ack mode", connect: true},
		{name: "SUBSCRIBE wildcard queue", frames: "SUBSCRIBE\nid:1\ndestination:/queue/a.*\n\n\x00", want: "subscribe failed", connect: true},
		{name: "UNSUBSCRIBE unknown", frames: "UNSUBSCRIBE\nid:9\n\n\x00", want: "unknown subscription", connect: true},
		{name: "ACK unknown id", frames: "ACK\nid:12345\n\n\x00", want: "unknown ack id", connect: true},
		{name: "COMMIT unknown transaction", frames: "COMMIT\ntransaction:t9\n\n\x00", want: "unknown transaction", connect: true},
		{name: "second CONNECT", frames: "CONNECT\naccept-version:1.2\n\n\x00", want: "already connected", connect: true},
		{name: "server frame from client", frames: "MESSAGE\n\n\x00", want: "unexpected frame", connect: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.raw(t)
			if tc.connect {
				if f := r.connect("accept-version:1.2", "host:default"); f.Command != frame.CONNECTED {
					t.Fatalf("connect: %s", f.Command)
				}
			}
			r.send(tc.frames)
			if tc.name == "missing NUL at EOF" {
				_ = r.nc.(interface{ CloseWrite() error }).CloseWrite()
			}
			f := r.expectError(tc.want)
			if len(f.Body) == 0 {
				t.Errorf("ERROR without an explaining body")
			}
		})
	}
}

// TestERROR_ReceiptID: an ERROR caused by a frame with a receipt header carries receipt-id
// (STOMP 1.2 "ERROR").
func TestERROR_ReceiptID(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SEND\nreceipt:r7\n\nx\x00")
	if f := r.expectError("missing destination"); f.Header.Get(frame.ReceiptId) != "r7" {
		t.Errorf("receipt-id %q", f.Header.Get(frame.ReceiptId))
	}
}

// TestHeartBeating covers STOMP 1.2 "Heart-beating": the server sends EOLs at the negotiated interval
// and closes a client silent for longer than 1.5 times its interval.
func TestHeartBeating(t *testing.T) {
	b := startBroker(t, func(_ *conf.Connector, h *Handler) {
		h.HeartBeatSend, h.HeartBeatReceive = 20*time.Millisecond, 100*time.Millisecond
	})
	t.Run("server sends", func(t *testing.T) {
		r := b.raw(t)
		f := r.connect("accept-version:1.2", "host:default", "heart-beat:0,30")
		if hb := f.Header.Get(frame.HeartBeat); hb != "20,100" {
			t.Fatalf("CONNECTED heart-beat %q", hb)
		}
		_ = r.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1)
		for i := range 3 {
			if _, err := r.nc.Read(buf); err != nil || buf[0] != '\n' {
				t.Fatalf("beat %d: %q %v", i, buf, err)
			}
		}
	})
	t.Run("silent client closed", func(t *testing.T) {
		r := b.raw(t)
		r.connect("accept-version:1.2", "host:default", "heart-beat:50,0")
		start := time.Now()
		r.expectClosed(time.Second)
		// Negotiated max(50, 100) = 100ms, plus 50%.
		if el := time.Since(start); el < 140*time.Millisecond {
			t.Fatalf("closed after %s, before 1.5 x 100ms", el)
		}
	})
	t.Run("beating client kept", func(t *testing.T) {
		r := b.raw(t)
		r.connect("accept-version:1.2", "host:default", "heart-beat:50,0")
		for range 8 {
			time.Sleep(40 * time.Millisecond)
			r.send("\n")
		}
		r.send("SEND\ndestination:/topic/hb\nreceipt:alive\n\n\x00")
		if f := r.read(); f.Command != frame.RECEIPT {
			t.Fatalf("got %s", f.Command)
		}
	})
}

// TestShutdown: on broker shutdown a connected client gets an ERROR frame, then the close.
func TestShutdown(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- b.srv.Shutdown(ctx)
	}()
	r.expectError("server shutting down")
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestVersion10_Headers: 1.0 does not escape header values (STOMP 1.2 "Value Encoding" applies from 1.1).
func TestVersion10_Headers(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("host:default")
	r.send("SUBSCRIBE\ndestination:/topic/v10\n\n\x00SEND\ndestination:/topic/v10\nnote:a\\nb\n\nx\x00")
	m := r.read()
	if m.Command != frame.MESSAGE || m.Header.Get(frame.Subscription) != "/topic/v10" {
		t.Fatalf("got %s %v", m.Command, m.Header)
	}
	// go-stomp's reader unescapes as 1.2 does, so the raw "\n" arrives as a newline here: it was sent raw.
	if n := m.Header.Get("note"); n != "a\nb" {
		t.Errorf("note %q", n)
	}
}

// TestStampHeaders: the connector's add_user_header, add_timestamp_header and add_redeliveries_header
// stamp messages; a client cannot forge the user header.
func TestStampHeaders(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector, _ *Handler) {
		c.STOMP.AddUserHeader = "JMSXUserID"
		c.STOMP.AddTimestampHeader = "timestamp"
		c.STOMP.AddRedeliveriesHeader = "redeliveries"
	})
	c := b.dial(t)
	sub := subscribe(t, c, "/queue/stamped", stomp.AckClientIndividual)
	pub := b.dial(t, stomp.ConnOpt.Login("alice", "pw"))
	before := time.Now().UnixMilli()
	if err := pub.Send("/queue/stamped", "", []byte("x"), stomp.SendOpt.Receipt, stomp.SendOpt.Header("JMSXUserID", "mallory")); err != nil {
		t.Fatal(err)
	}
	m := recv(t, sub)
	if got := m.Header.GetAll("JMSXUserID"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("user header %q, want only alice", got)
	}
	ts, err := strconv.ParseInt(m.Header.Get("timestamp"), 10, 64)
	if err != nil || ts < before || ts > time.Now().UnixMilli() {
		t.Errorf("timestamp header %q", m.Header.Get("timestamp"))
	}
	if r := m.Header.Get("redeliveries"); r != "0" {
		t.Errorf("redeliveries %q, want 0", r)
	}
	if err := c.Nack(m); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); m.Header.Get("redeliveries") != "1" {
		t.Errorf("after NACK redeliveries %q, want 1", m.Header.Get("redeliveries"))
	}
}

// TestTemporaryDestinations: temp queues are private to their connection; a reply-to naming one is
// rewritten to a global name others can send to, not subscribe to; it dies with its connection.
func TestTemporaryDestinations(t *testing.T) {
	b := startBroker(t, nil)
	req, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.Host("default"), stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	replies := subscribe(t, req, "/temp-queue/replies", stomp.AckAuto)
	resp := b.dial(t)
	requests := subscribe(t, resp, "/queue/requests", stomp.AckAuto)

	// Another connection's /temp-queue/replies is its own, distinct queue.
	other := b.dial(t)
	if err := other.Send("/temp-queue/replies", "", []byte("not for req"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	expectNone(t, replies, 50*time.Millisecond)

	if err := req.Send("/queue/requests", "", []byte("ping"), stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("reply-to", "/temp-queue/replies")); err != nil {
		t.Fatal(err)
	}
	m := recv(t, requests)
	replyTo := m.Header.Get("reply-to")
	if want := "/temp-queue/" + req.Session() + ".replies"; replyTo != want {
		t.Fatalf("reply-to %q, want %q", replyTo, want)
	}
	if err := resp.Send(replyTo, "", []byte("pong"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, replies); string(r.Body) != "pong" || r.Destination != "/temp-queue/replies" {
		t.Fatalf("reply %q at %q", r.Body, r.Destination)
	}

	raw := b.raw(t)
	raw.connect("accept-version:1.2", "host:default")
	raw.send("SUBSCRIBE\nid:1\ndestination:" + replyTo + "\n\n\x00")
	raw.expectError("invalid destination")

	if err := req.Disconnect(); err != nil {
		t.Fatal(err)
	}
	raw = b.raw(t)
	raw.connect("accept-version:1.2", "host:default")
	prototest.WaitFor(t, 2*time.Second, func() bool { return !b.h.tempLive(req.Session()) })
	raw.send("SEND\ndestination:" + replyTo + "\n\nlate\x00")
	raw.expectError("invalid destination")
}

// TestVersion10_UnsubscribeByDestination: a 1.0 UNSUBSCRIBE may name the destination instead of the id.
func TestVersion10_UnsubscribeByDestination(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("host:default")
	r.send("SUBSCRIBE\nid:s\ndestination:/topic/u10\n\n\x00UNSUBSCRIBE\ndestination:/topic/u10\nreceipt:u\n\n\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s %v %q", f.Command, f.Header, f.Body)
	}
	if n := b.host.Router.Stats().Subscriptions; n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
}

// TestSUBSCRIBE_PrefetchCredit: a client-individual consumer holds at most prefetch-count unacknowledged
// messages; each ACK lets one more through.
func TestSUBSCRIBE_PrefetchCredit(t *testing.T) {
	for _, header := range []string{"prefetch-count", "activemq.prefetchSize"} {
		t.Run(header, func(t *testing.T) { testPrefetchCredit(t, header) })
	}
}

func testPrefetchCredit(t *testing.T, header string) {
	b := startBroker(t, nil)
	pub := b.dial(t)
	for i := range 5 {
		if err := pub.Send("/queue/credit", "", []byte(fmt.Sprint(i)), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	c := b.dial(t)
	sub := subscribe(t, c, "/queue/credit", stomp.AckClientIndividual, stomp.SubscribeOpt.Header(header, "2"))
	m0, m1 := recv(t, sub), recv(t, sub)
	expectNone(t, sub, 50*time.Millisecond)
	if err := c.Ack(m1); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); string(m.Body) != "2" {
		t.Fatalf("after one ACK got %q, want 2", m.Body)
	}
	expectNone(t, sub, 50*time.Millisecond)
	_ = m0
}

// TestSUBSCRIBE_Composite: one SUBSCRIBE naming several destinations receives from each under one id.
func TestSUBSCRIBE_Composite(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial(t)
	sub := subscribe(t, c, "/topic/c1,/queue/c2", stomp.AckAuto)
	pub := b.dial(t)
	for _, d := range []string{"/topic/c1", "/queue/c2"} {
		if err := pub.Send(d, "", []byte(d), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	for range 2 {
		m := recv(t, sub)
		if m.Destination != string(m.Body) || m.Subscription.Id() != sub.Id() {
			t.Fatalf("message %q at %q", m.Body, m.Destination)
		}
		got[m.Destination] = true
	}
	if len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	unsubscribe(t, sub)
	prototest.WaitFor(t, 2*time.Second, func() bool { return b.host.Router.Stats().Subscriptions == 0 })
}

// TestNACK_ClientCumulative: in client mode a NACK returns every earlier unacknowledged message too.
func TestNACK_ClientCumulative(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:n\ndestination:/queue/nack\nack:client\n\n\x00" +
		"SEND\ndestination:/queue/nack\n\na\x00SEND\ndestination:/queue/nack\n\nb\x00")
	var acks []string
	for _, want := range []string{"a", "b"} {
		m := r.read()
		if string(m.Body) != want {
			t.Fatalf("got %q, want %q", m.Body, want)
		}
		acks = append(acks, m.Header.Get(frame.Ack))
	}
	r.send("NACK\nid:" + acks[1] + "\n\n\x00")
	for _, want := range []string{"a", "b"} {
		m := r.read()
		if string(m.Body) != want || m.Header.Get("redelivered") != "true" {
			t.Fatalf("redelivery: got %q %v, want %q redelivered", m.Body, m.Header, want)
		}
	}
}

// TestMESSAGE_HeaderEscaping: STOMP 1.2 "Value Encoding" on MESSAGE frames: colon, LF, CR and backslash in
// a header are escaped, so the client reads back the original value.
func TestMESSAGE_HeaderEscaping(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial(t)
	sub := subscribe(t, c, "/topic/esc", stomp.AckAuto)
	pub := b.dial(t)
	const v = "a:b\nc\rd\\e"
	if err := pub.Send("/topic/esc", "", nil, stomp.SendOpt.Receipt, stomp.SendOpt.Header("weird", v)); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); m.Header.Get("weird") != v {
		t.Fatalf("header %q, want %q", m.Header.Get("weird"), v)
	}
}

// TestHeartBeating_OnlyWhenIdle: the server's heart-beats fill silence only; a connection receiving
// messages more often than the interval gets no EOLs between them (STOMP 1.2 "Heart-beating").
func TestHeartBeating_OnlyWhenIdle(t *testing.T) {
	b := startBroker(t, func(_ *conf.Connector, h *Handler) { h.HeartBeatSend = 60 * time.Millisecond })
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default", "heart-beat:0,60")
	r.send("SUBSCRIBE\nid:1\ndestination:/topic/busy\nreceipt:s\n\n\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s", f.Command)
	}
	g := stompGrammar(t)
	d, _ := g.ParseName("/topic/busy")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				b.host.Router.Publish(&router.Message{Dest: d, Body: []byte("x")})
			}
		}
	}()
	var raw []byte
	buf := make([]byte, 4096)
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		_ = r.nc.SetReadDeadline(deadline)
		n, err := r.nc.Read(buf)
		raw = append(raw, buf[:n]...)
		if err != nil {
			break
		}
	}
	close(stop)
	<-done
	if bytes.Count(raw, []byte("MESSAGE")) < 10 {
		t.Fatalf("only %d messages", bytes.Count(raw, []byte("MESSAGE")))
	}
	if bytes.Contains(raw, []byte("\x00\n")) {
		t.Fatalf("heart-beat EOL between frames of a busy connection: %q", raw)
	}
}
