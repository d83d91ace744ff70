package cluster

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/router"
)

// logged reports whether logs holds an entry with message msg at level lvl.
func logged(logs *observer.ObservedLogs, lvl zapcore.Level, msg string) bool {
	return logs.FilterMessage(msg).FilterLevelExact(lvl).Len() > 0
}

func peersOf(st Status) string { return fmt.Sprint(st.Peers) }

func TestStatusEmbeddedPeers(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	a, err := Start(Config{Name: "st", Node: "a", Listen: "127.0.0.1:0"}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if st := a.Status(); st.Connected || st.Mode != ModeEmbedded || st.Name != "st" || st.Node != "a" || len(st.Peers) != 0 {
		t.Fatalf("a alone: %+v; want not connected, no peers", st)
	}
	changed := a.Changed()
	b, err := Start(Config{Name: "st", Node: "b", Listen: "127.0.0.1:0", Routes: []string{a.RouteAddr().String()}},
		zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a and b connected", func() bool { return a.Status().Connected && b.Status().Connected })
	st := a.Status()
	if len(st.Peers) != 1 || st.Peers[0].Name != "b" || !st.Peers[0].Connected || st.Routes < 1 || st.Disconnects != 0 {
		t.Fatalf("a with b: %+v", st)
	}
	if bs := b.Status(); len(bs.Peers) != 1 || bs.Peers[0].Name != "a" {
		t.Fatalf("b's peers %s, want a", peersOf(bs))
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not signalled when b connected")
	}
	if !logged(logs, zap.InfoLevel, "cluster connected") || !logged(logs, zap.InfoLevel, "cluster peer connected") {
		t.Fatalf("no info lines for the connection: %v", logs.All())
	}

	// b leaves: a is alone again, says so, and remembers b.
	b.Close()
	waitFor(t, "a disconnected", func() bool { return !a.Status().Connected })
	st = a.Status()
	if len(st.Peers) != 1 || st.Peers[0].Connected || st.Disconnects != 1 || st.Routes != 0 {
		t.Fatalf("a after b left: %+v", st)
	}
	if !logged(logs, zap.WarnLevel, "cluster peer lost") ||
		logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("cluster connection lost").Len() != 1 {
		t.Fatalf("want one warning for the lost cluster: %v", logs.All())
	}
	// Closing a itself is no news.
	n := logs.FilterLevelExact(zap.WarnLevel).Len()
	a.Close()
	if m := logs.FilterLevelExact(zap.WarnLevel).Len(); m != n {
		t.Fatalf("closing the link logged %d warnings", m-n)
	}
}

// startNATS starts a standalone NATS server on a loopback port (port 0: any).
func startNATS(t *testing.T, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return ns
}

func TestStatusNATSURL(t *testing.T) {
	ns := startNATS(t, 0)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	port := ns.Addr().(*net.TCPAddr).Port
	core, logs := observer.New(zap.InfoLevel)
	l, err := Start(Config{Name: "st", Node: "x", NATSURL: ns.ClientURL()}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := router.New(router.Options{})
	defer r.Close()
	if _, err := l.Attach("v", r); err != nil {
		t.Fatal(err)
	}
	_, local := subscribe(t, r, lit("k"))
	if st := l.Status(); !st.Connected || st.Mode != ModeNATSURL || st.Server == "" || len(st.Peers) != 0 {
		t.Fatalf("status with NATS up: %+v", st)
	}
	subj := topicSubject(topicPrefix("v"), []string{"k"})
	waitFor(t, "the link's interest on the NATS server", func() bool { return ns.GlobalAccount().Interest(subj) > 0 })

	// NATS goes away: the link says so, local delivery goes on, and what would cross is dropped (not
	// buffered for later).
	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor(t, "disconnected", func() bool { return !l.Status().Connected })
	if st := l.Status(); st.Disconnects != 1 || st.Server != "" {
		t.Fatalf("status with NATS down: %+v", st)
	}
	if logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("cluster connection lost").Len() != 1 {
		t.Fatalf("want one warning: %v", logs.All())
	}
	r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"k"}}, Body: []byte("down")})
	waitFor(t, "local delivery and the drop", func() bool { return len(local.got()) == 1 && l.Stats().Dropped == 1 })

	// NATS is back on the same port: the client reconnects, its subscriptions with it.
	ns = startNATS(t, port)
	waitFor(t, "reconnected", func() bool { return l.Status().Connected })
	if !logged(logs, zap.InfoLevel, "cluster connected") {
		t.Fatalf("no info line for the reconnection: %v", logs.All())
	}
	waitFor(t, "the link's interest again", func() bool { return ns.GlobalAccount().Interest(subj) > 0 })
	nc, err := nats.Connect(ns.ClientURL(), nats.NoEcho())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 4)
	if _, err := nc.ChanSubscribe(subj, msgs); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// In: a message from another "node" reaches the local subscriber.
	env, _ := encode(nil, &router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"k"}}, Body: []byte("in")}, 7, 1, time.Now())
	if err := nc.Publish(subj, env); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message from NATS", func() bool { return len(local.got()) == 2 })
	// Out: a local message reaches NATS; "down" was not kept for it.
	r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"k"}}, Body: []byte("up")})
	select {
	case m := <-msgs:
		got, _, err := decode(m.Data, []string{"k"}, time.Now())
		if err != nil || string(got.Body) != "up" {
			t.Fatalf("NATS got %q (%v), want up", got.Body, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the local message did not reach NATS after the reconnection")
	}
}

// blockSink holds the goroutine delivering to it until release is closed.
type blockSink struct{ release chan struct{} }

func (s blockSink) Deliver(router.Delivery) bool { <-s.release; return true }

// A node whose routers do not keep up: NATS drops what overflows the link's inbound queue, the link
// counts it (Stats.InDropped) and warns, once per slowWarnEvery however many times NATS reports it.
func TestStatusInboundDrops(t *testing.T) {
	a, err := Start(Config{Name: "st", Node: "a", Listen: "127.0.0.1:0"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	core, logs := observer.New(zap.InfoLevel)
	b, err := Start(Config{Name: "st", Node: "b", Listen: "127.0.0.1:0", Routes: []string{a.RouteAddr().String()}}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ra, rb := router.New(router.Options{}), router.New(router.Options{})
	defer ra.Close()
	defer rb.Close()
	for _, x := range []struct {
		l *Link
		r *router.Router
	}{{a, ra}, {b, rb}} {
		if _, err := x.l.Attach("v", x.r); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	if err := rb.Subscribe(&router.Subscription{Filter: lit("k"), Sink: blockSink{release}, QoS: 0}); err != nil {
		t.Fatal(err)
	}
	defer close(release) // before b.Close: its inbound goroutine is held in Deliver
	waitFor(t, "b's interest on a", func() bool { return a.Interest("v", []string{"k"}) > 0 })
	// Past the inbound queue, in steps a's outbound queue takes whole.
	m := &router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"k"}}}
	for sent := uint64(0); b.Stats().InDropped == 0; {
		if sent > 4*inQueue {
			t.Fatalf("%d messages sent, none dropped by b", sent)
		}
		for range 1000 {
			ra.Publish(m)
		}
		sent += 1000
		waitFor(t, "a's sends", func() bool { return a.Stats().Sent == sent })
	}
	waitFor(t, "the warning", func() bool {
		return logs.FilterMessageSnippet("cluster inbound queue full").Len() > 0
	})
	if n := logs.FilterMessageSnippet("cluster inbound queue full").Len(); n != 1 {
		t.Fatalf("%d warnings, want 1 (at most one per %v)", n, slowWarnEvery)
	}
}

// The embedded server closing the link's own client (as it does to a slow consumer) disconnects the
// node from the cluster until the client is back, with its subscriptions.
func TestStatusLinkClientClosed(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	_, rec := subscribe(t, b.r, lit("k"))
	waitFor(t, "connected", func() bool { return a.l.Status().Connected && b.l.Status().Connected })
	waitFor(t, "b's interest on a", func() bool { return a.l.Interest("v", []string{"k"}) > 0 })
	cz, err := b.l.ns.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cid uint64
	for _, c := range cz.Conns {
		if c.Name == "lyre b" {
			cid = c.Cid
		}
	}
	if cid == 0 {
		t.Fatalf("no connection of the link among %d", len(cz.Conns))
	}
	if err := b.l.ns.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's disconnect counted", func() bool { return b.l.Status().Disconnects == 1 })
	waitFor(t, "b connected again", func() bool { return b.l.Status().Connected })
	waitFor(t, "b's interest on a again", func() bool { return a.l.Interest("v", []string{"k"}) > 0 })
	a.r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"k"}}})
	waitFor(t, "the message on b", func() bool { return len(rec.got()) == 1 })
}
