package stomp

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
)

const flowBody = 64 << 10

// flood publishes n messages of flowBody bytes to dest through the router, as another front-end would.
func flood(t *testing.T, rt *router.Router, g *router.Grammar, dest string, n int) {
	t.Helper()
	d, err := g.ParseName(dest)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		body := bytes.Repeat([]byte{'x'}, flowBody)
		copy(body, strconv.Itoa(i)+":")
		if res := rt.Publish(&router.Message{Dest: d, Body: body}); res.Err != nil {
			t.Fatalf("publish %d: %v", i, res.Err)
		}
	}
}

func stompGrammar(t *testing.T) *router.Grammar {
	g, err := router.NewGrammar(router.STOMPGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestFlowControl_QueueHeldUntilDrain: a queue consumer that does not read fills its outbound queue; the
// rest stays in the router's queue (nothing is lost or dropped) and flows once the client reads again.
func TestFlowControl_QueueHeldUntilDrain(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:q\ndestination:/queue/flow\nreceipt:s\n\n\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s", f.Command)
	}
	const n = 500 // 32 MiB: more than the 8 MiB outbound limit plus the socket buffers
	flood(t, b.host.Router, stompGrammar(t), "/queue/flow", n)
	prototest.WaitFor(t, 5*time.Second, func() bool { return b.host.Router.QueueDepth([]string{"flow"}) > 0 })
	for i := range n {
		f := r.read()
		if f.Command != frame.MESSAGE || !bytes.HasPrefix(f.Body, []byte(strconv.Itoa(i)+":")) {
			t.Fatalf("message %d: %s %q", i, f.Command, f.Body[:min(len(f.Body), 10)])
		}
	}
	if d := b.host.Router.QueueDepth([]string{"flow"}); d != 0 {
		t.Fatalf("queue depth %d after draining", d)
	}
}

// TestFlowControl_TopicDropsWhenFull: topic messages beyond the outbound limit are dropped and counted,
// and the subscriber stays connected.
func TestFlowControl_TopicDropsWhenFull(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:t\ndestination:/topic/flow\nreceipt:s\n\n\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s", f.Command)
	}
	const n = 500
	flood(t, b.host.Router, stompGrammar(t), "/topic/flow", n)
	dropped := b.h.Dropped()
	if dropped == 0 {
		t.Fatalf("no drop after %d MiB to a client that does not read", n*flowBody>>20)
	}
	got := 0
	r.send("SEND\ndestination:/topic/other\nreceipt:end\n\n\x00")
	for {
		f := r.read()
		if f.Command == frame.RECEIPT {
			break
		}
		got++
	}
	if got+int(dropped) != n {
		t.Fatalf("received %d + dropped %d, want %d", got, dropped, n)
	}
}

// BenchmarkDeliverTopic measures subscription.Deliver of a topic message: encoding a MESSAGE frame into
// the connection's outbound queue. The client drains the socket meanwhile.
func BenchmarkDeliverTopic(b *testing.B) {
	br := startBroker(b, nil)
	nc, err := net.Dial("tcp", br.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	_, _ = io.WriteString(nc, "CONNECT\naccept-version:1.2\nhost:default\n\n\x00SUBSCRIBE\nid:1\ndestination:/topic/bench.*\nreceipt:r\n\n\x00")
	rd := frame.NewReader(nc)
	for {
		f, err := rd.Read()
		if err != nil {
			b.Fatal(err)
		}
		if f != nil && f.Command == frame.RECEIPT {
			break
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, nc)
	}()
	g, _ := router.NewGrammar(router.STOMPGrammarConfig())
	d, _ := g.ParseName("/topic/bench.x")
	m := &router.Message{ID: 1, Dest: d, Body: make([]byte, 128), Origin: "/topic/bench.x",
		Headers: []router.Header{{Name: "app", Value: "bench"}}}
	subs := br.host.Router.MatchDest(d).Subs
	if len(subs) != 1 {
		b.Fatalf("%d subscriptions", len(subs))
	}
	sink := subs[0].Sink
	m.OriginGram = subs[0].Sink.(*subscription).s.g
	dl := router.Delivery{Msg: m, Sub: subs[0]}
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Body)))
	b.ResetTimer()
	dropped := 0
	for range b.N {
		if !sink.Deliver(dl) {
			dropped++
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(dropped)/float64(b.N), "drops/op")
	_ = nc.Close()
	<-done
}

// TestFlowControl_RetainedBacklog: a new subscription gets every retained match even when they do not fit
// in the outbound queue at once: the rest waits and follows as the client reads (no silent cap).
func TestFlowControl_RetainedBacklog(t *testing.T) {
	b := startBroker(t, nil)
	g := stompGrammar(t)
	const n = 500 // ~32 MiB of retained messages
	for i := range n {
		d, err := g.ParseName("/topic/ret." + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if res := b.host.Router.Publish(&router.Message{Dest: d, Body: bytes.Repeat([]byte{'r'}, flowBody), Retain: true}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:r\ndestination:/topic/ret.*\nreceipt:s\n\n\x00")
	seen := map[string]bool{}
	receipts := 0
	for len(seen) < n || receipts == 0 {
		f := r.read()
		switch f.Command {
		case frame.MESSAGE:
			if f.Header.Get(frame.Subscription) != "r" || len(f.Body) != flowBody {
				t.Fatalf("bad message %v", f.Header)
			}
			seen[f.Header.Get(frame.Destination)] = true
		case frame.RECEIPT:
			receipts++
		default:
			t.Fatalf("got %s", f.Command)
		}
	}
	if len(seen) != n || b.h.Dropped() != 0 {
		t.Fatalf("got %d distinct retained messages of %d, %d dropped", len(seen), n, b.h.Dropped())
	}
}
