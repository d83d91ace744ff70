package stomp

import (
	"bytes"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/router"
)

// captureSink records the messages of a router subscription, to see what a SEND made of its headers.
type captureSink struct {
	mu   sync.Mutex
	msgs []*router.Message
}

func (c *captureSink) Deliver(d router.Delivery) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, d.Msg)
	return true
}

// capture subscribes a captureSink to the STOMP topic filter name on b's default host.
func capture(t *testing.T, b *broker, name string) *captureSink {
	t.Helper()
	f, err := stompGrammar(t).ParseFilter(name)
	if err != nil {
		t.Fatal(err)
	}
	cs := &captureSink{}
	rs := &router.Subscription{Filter: f, Sink: cs}
	if err := b.host.Router.Subscribe(rs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.host.Router.Unsubscribe(rs) })
	return cs
}

// last returns the last message captured; SENDs in these tests ask for a receipt, so it has arrived.
func (c *captureSink) last(t *testing.T) *router.Message {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.msgs) == 0 {
		t.Fatal("the router delivered nothing")
	}
	return c.msgs[len(c.msgs)-1]
}

// headerOnce asserts m has header name exactly once, with value want.
func headerOnce(t *testing.T, m *stomp.Message, name, want string) {
	t.Helper()
	if got := m.Header.GetAll(name); len(got) != 1 || got[0] != want {
		t.Fatalf("header %s: %q, want one %q (all headers %v)", name, got, want, m.Header)
	}
}

func noHeader(t *testing.T, m *stomp.Message, name string) {
	t.Helper()
	if got, ok := m.Header.Contains(name); ok {
		t.Fatalf("header %s: %q, want none (all headers %v)", name, got, m.Header)
	}
}

// TestProperties_SendReachesSubscriber: reply-to, correlation-id, content-type, expires and application
// headers of a SEND reach a STOMP subscriber as they were written, each once; in the router reply-to and
// correlation-id are the message's ReplyTo and CorrelationData, not headers.
func TestProperties_SendReachesSubscriber(t *testing.T) {
	b := startBroker(t, nil)
	cs := capture(t, b, "/topic/rpc.*")
	sub := subscribe(t, b.dial(t), "/topic/rpc.*", stomp.AckAuto)
	pub := b.dial(t)
	expires := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	err := pub.Send("/topic/rpc.orders", "application/json", []byte(`{"q":1}`), stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("reply-to", "/queue/answers.eu"), stomp.SendOpt.Header("correlation-id", "req-1 ü:x"),
		stomp.SendOpt.Header("expires", expires), stomp.SendOpt.Header("app", "x"), stomp.SendOpt.Header("trace", "t1"))
	if err != nil {
		t.Fatal(err)
	}
	m := recv(t, sub)
	headerOnce(t, m, "reply-to", "/queue/answers.eu")
	headerOnce(t, m, "correlation-id", "req-1 ü:x")
	headerOnce(t, m, frame.ContentType, "application/json")
	headerOnce(t, m, "expires", expires)
	headerOnce(t, m, "app", "x")
	headerOnce(t, m, "trace", "t1")
	if string(m.Body) != `{"q":1}` {
		t.Fatalf("body %q", m.Body)
	}

	rm := cs.last(t)
	if rm.ReplyTo.Kind != router.Queue || !slices.Equal(rm.ReplyTo.Path, []string{"answers", "eu"}) {
		t.Fatalf("router ReplyTo %+v", rm.ReplyTo)
	}
	if string(rm.CorrelationData) != "req-1 ü:x" || rm.ContentType != "application/json" || rm.UTF8 {
		t.Fatalf("router message %+v", rm)
	}
	if want := []router.Header{{Name: "app", Value: "x"}, {Name: "trace", Value: "t1"}}; !slices.Equal(rm.Headers, want) {
		t.Fatalf("router headers %v, want %v (no reply-to, correlation-id, content-type or expires)", rm.Headers, want)
	}
}

// TestProperties_UnparsableReplyTo: a reply-to that is not one destination of the connector's grammar
// passes through as a plain header, as written; so does an empty correlation-id.
func TestProperties_UnparsableReplyTo(t *testing.T) {
	b := startBroker(t, nil)
	cs := capture(t, b, "/topic/rpc")
	sub := subscribe(t, b.dial(t), "/topic/rpc", stomp.AckAuto)
	pub := b.dial(t)
	for _, replyTo := range []string{
		"mailbox 7",               // no prefix: STOMP names need one
		"/topic/a.*",              // a wildcard is no name
		"/queue/a,/queue/b",       // several destinations
		"/queue/50%",              // a bad escape
		"",                        // empty
		"http://example.com/back", // someone else's idea of an address
	} {
		if err := pub.Send("/topic/rpc", "", []byte("x"), stomp.SendOpt.Receipt,
			stomp.SendOpt.Header("reply-to", replyTo), stomp.SendOpt.Header("correlation-id", "")); err != nil {
			t.Fatal(err)
		}
		m := recv(t, sub)
		headerOnce(t, m, "reply-to", replyTo)
		headerOnce(t, m, "correlation-id", "")
		rm := cs.last(t)
		if rm.ReplyTo.Path != nil || rm.CorrelationData != nil {
			t.Fatalf("reply-to %q: router message %+v", replyTo, rm)
		}
		want := []router.Header{{Name: "reply-to", Value: replyTo}, {Name: "correlation-id", Value: ""}}
		if !slices.Equal(rm.Headers, want) {
			t.Fatalf("reply-to %q: router headers %v, want %v", replyTo, rm.Headers, want)
		}
	}
}

// TestProperties_RepeatedHeaders: the first reply-to and correlation-id of a SEND count (STOMP 1.2
// "Repeated Header Entries"); the subscriber gets one of each.
func TestProperties_RepeatedHeaders(t *testing.T) {
	b := startBroker(t, nil)
	sub := subscribe(t, b.dial(t), "/topic/rpc", stomp.AckAuto)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SEND\ndestination:/topic/rpc\nreply-to:/queue/first\nreply-to:/queue/second\ncorrelation-id:c1\n" +
		"correlation-id:c2\nreceipt:1\n\nx\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s %v", f.Command, f.Header)
	}
	m := recv(t, sub)
	headerOnce(t, m, "reply-to", "/queue/first")
	headerOnce(t, m, "correlation-id", "c1")
}

// mqttGrammar is the MQTT front-end's default grammar, standing in for an MQTT publisher.
func mqttGrammar(t testing.TB) *router.Grammar {
	g, err := router.NewGrammar(router.MQTTGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestProperties_FromMQTTPublisher: a message published into the router as the MQTT front-end does (MQTT
// grammar, response topic a/b, correlation data, user properties) reaches a STOMP subscriber with
// reply-to in STOMP's grammar, correlation-id and the user properties as headers. A user property named
// like a property the message carries is not rendered a second time.
func TestProperties_FromMQTTPublisher(t *testing.T) {
	b := startBroker(t, nil)
	sub := subscribe(t, b.dial(t), "/topic/sensors.**", stomp.AckAuto)
	mg := mqttGrammar(t)
	dest, err := mg.ParseName("sensors/k1")
	if err != nil {
		t.Fatal(err)
	}
	replyTo, err := mg.ParseName("a/b")
	if err != nil {
		t.Fatal(err)
	}
	publish := func(m *router.Message) *stomp.Message {
		t.Helper()
		m.Dest, m.Origin, m.OriginGram = dest, "sensors/k1", mg
		if res := b.host.Router.Publish(m); res.Err != nil {
			t.Fatal(res.Err)
		}
		return recv(t, sub)
	}

	m := publish(&router.Message{Body: []byte("21.5"), ContentType: "text/plain", UTF8: true, ReplyTo: replyTo,
		CorrelationData: []byte("corr-1"),
		Headers: []router.Header{{Name: "unit", Value: "C"}, {Name: "reply-to", Value: "user property"},
			{Name: "correlation-id", Value: "user property"}, {Name: "unit", Value: "K"}}})
	if m.Destination != "/topic/sensors.k1" {
		t.Fatalf("destination %q", m.Destination)
	}
	headerOnce(t, m, "reply-to", "/topic/a.b")
	headerOnce(t, m, "correlation-id", "corr-1")
	headerOnce(t, m, frame.ContentType, "text/plain")
	if got := m.Header.GetAll("unit"); !slices.Equal(got, []string{"C", "K"}) {
		t.Fatalf("unit headers %q", got)
	}

	// Correlation data that is not UTF-8 has no STOMP header: it is left out, and a user property of
	// that name is what the subscriber sees (there is nothing to duplicate).
	m = publish(&router.Message{Body: []byte("x"), ReplyTo: replyTo, CorrelationData: []byte{0xff, 0xfe, 0}})
	headerOnce(t, m, "reply-to", "/topic/a.b")
	noHeader(t, m, "correlation-id")
	m = publish(&router.Message{Body: []byte("x"), CorrelationData: []byte{'a', 0xc3},
		Headers: []router.Header{{Name: "correlation-id", Value: "text"}}})
	headerOnce(t, m, "correlation-id", "text")
	noHeader(t, m, "reply-to")

	// A segment holding STOMP's separator is escaped (DESIGN.md §3); colons and backslashes are escaped
	// as any 1.2 header value.
	v12, err := mg.ParseName("v1.2/x:y\\z")
	if err != nil {
		t.Fatal(err)
	}
	m = publish(&router.Message{Body: []byte("x"), ReplyTo: v12})
	headerOnce(t, m, "reply-to", "/topic/v1%2E2.x:y\\z")
	if back, err := stompGrammar(t).ParseName(m.Header.Get("reply-to")); err != nil || !slices.Equal(back.Path, v12.Path) {
		t.Fatalf("reply-to %q parses back as %+v, %v", m.Header.Get("reply-to"), back, err)
	}
}

// TestProperties_RequestReply: a requester asks over STOMP with reply-to and correlation-id; the service
// answers to the reply-to it received, echoing the correlation-id, and the requester matches the answer.
func TestProperties_RequestReply(t *testing.T) {
	b := startBroker(t, nil)
	svc := b.dial(t)
	requests := subscribe(t, svc, "/queue/svc", stomp.AckAuto)
	req := b.dial(t)
	answers := subscribe(t, req, "/queue/answers.req", stomp.AckAuto)
	send(t, req, "/queue/svc", "ping", "reply-to", "/queue/answers.req", "correlation-id", "42")
	q := recv(t, requests)
	send(t, svc, q.Header.Get("reply-to"), "pong", "correlation-id", q.Header.Get("correlation-id"))
	a := recv(t, answers)
	if string(a.Body) != "pong" || a.Header.Get("correlation-id") != "42" {
		t.Fatalf("answer %q %v", a.Body, a.Header)
	}
}

// TestProperties_SurviveRestart: a persistent queue message keeps reply-to, correlation-id, content-type,
// expires and its headers across a restart of a badger store.
func TestProperties_SurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b, stop := startBadgerBroker(t, dir)
	pub := b.dial(t)
	expires := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	if err := pub.Send("/queue/work", "text/csv", []byte("a,b"), stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Header("reply-to", "/topic/done.work"),
		stomp.SendOpt.Header("correlation-id", "job-9"), stomp.SendOpt.Header("expires", expires),
		stomp.SendOpt.Header("app", "x")); err != nil {
		t.Fatal(err)
	}
	_ = pub.Disconnect()
	stop()

	b, _ = startBadgerBroker(t, dir)
	m := recv(t, subscribe(t, b.dial(t), "/queue/work", stomp.AckAuto))
	headerOnce(t, m, "reply-to", "/topic/done.work")
	headerOnce(t, m, "correlation-id", "job-9")
	headerOnce(t, m, frame.ContentType, "text/csv")
	headerOnce(t, m, "expires", expires)
	headerOnce(t, m, "app", "x")
	if !bytes.Equal(m.Body, []byte("a,b")) {
		t.Fatalf("body %q", m.Body)
	}
}

// TestDeliverProperties_NoAllocs: rendering reply-to and correlation-id costs a delivery no allocation.
func TestDeliverProperties_NoAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are noisy under -short CI runs")
	}
	sink, d, stop := deliverFixture(t)
	defer stop()
	m := *d.Msg
	m.ReplyTo = router.Destination{Kind: router.Topic, Path: []string{"replies", "v1.2", "client-7"}}
	m.CorrelationData = []byte("0b6f1c1e-5f0e-4a43-9d2b-3d8b8b1f9e51")
	d.Msg = &m
	if n := testing.AllocsPerRun(1000, func() { sink.Deliver(d) }); n != 0 {
		t.Fatalf("%v allocations per Deliver", n)
	}
}

// BenchmarkAppendMessage measures encoding one MESSAGE frame without the socket, for a message without
// properties and one with reply-to and correlation data.
func BenchmarkAppendMessage(b *testing.B) {
	sink, d, stop := deliverFixture(b)
	defer stop()
	sub := sink.(*subscription)
	props := *d.Msg
	props.ReplyTo = router.Destination{Kind: router.Topic, Path: []string{"replies", "client-7"}}
	props.CorrelationData = []byte("0b6f1c1e-5f0e-4a43-9d2b-3d8b8b1f9e51")
	for _, bc := range []struct {
		name string
		m    *router.Message
	}{{"plain", d.Msg}, {"props", &props}} {
		b.Run(bc.name, func(b *testing.B) {
			d := d
			d.Msg = bc.m
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for range b.N {
				buf = sub.appendMessage(buf[:0], d, 0)
			}
		})
	}
}

// BenchmarkParseSend measures what a SEND's headers make of its message, without the socket and the
// router: a SEND without properties and one with reply-to and correlation-id.
func BenchmarkParseSend(b *testing.B) {
	sink, _, stop := deliverFixture(b)
	defer stop()
	s := sink.(*subscription).s
	dest, _ := s.g.ParseName("/queue/bench")
	for _, bc := range []struct {
		name string
		f    *frame.Frame
	}{
		{"plain", frame.New(frame.SEND, frame.Destination, "/queue/bench", frame.ContentType, "text/plain",
			frame.ContentLength, "64", "app", "x")},
		{"props", frame.New(frame.SEND, frame.Destination, "/queue/bench", frame.ContentType, "text/plain",
			frame.ContentLength, "64", "app", "x", "reply-to", "/queue/replies.client-7", "correlation-id", "req-1")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				h, err := s.parseSendHeaders(bc.f)
				if err != nil {
					b.Fatal(err)
				}
				_ = s.newMessage(bc.f, &h, "/queue/bench", dest)
			}
		})
	}
}
