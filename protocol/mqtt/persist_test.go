package mqtt

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/store/memstore"
	"github.com/lyremq/lyre/virtualhost"
)

// durableBroker is an MQTT server whose default host keeps its store in dir; stop ends it like a
// graceful broker shutdown, so a new one can open the same directory.
type durableBroker struct {
	*broker
	st      store.Store
	stopped bool
}

func startDurable(t *testing.T, dir string) *durableBroker {
	t.Helper()
	return startDurableWith(t, zaptest.NewLogger(t), conf.Store{Directory: dir, Sync: true}, nil)
}

// startDurableWith is startDurable with the store options st, the handler logging to log and mod
// adjusting the connector.
func startDurableWith(t testing.TB, log *zap.Logger, sc conf.Store, mod func(*conf.Connector)) *durableBroker {
	t.Helper()
	st, err := badgerstore.Open(sc.Directory, badgerstore.Options{NoSync: !sc.Sync, FlushDelay: sc.FlushDelay})
	if err != nil {
		t.Fatal(err)
	}
	host, err := virtualhost.Open(conf.VirtualHost{Name: "default", Anonymous: true, Store: &sc}, router.Options{}, virtualhost.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	return serveDurable(t, log, host, st, mod)
}

// serveDurable serves host (durable, with store st) over MQTT after restoring its sessions.
func serveDurable(t testing.TB, log *zap.Logger, host *virtualhost.Host, st store.Store, mod func(*conf.Connector)) *durableBroker {
	t.Helper()
	hosts := virtualhost.NewRegistry(host)
	h := NewHandler(hosts, log)
	c := testConnector(mod)
	h.RestoreAll()
	srv, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.MQTT: h}, c)
	b := &durableBroker{broker: &broker{addr: addrs[0], host: host, hosts: hosts, h: h, srv: srv}, st: st}
	t.Cleanup(b.stop)
	return b
}

func (b *durableBroker) stop() {
	if b.stopped {
		return
	}
	b.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
	b.hosts.Close()
}

// sessionEntries counts what the store holds for client id: the messages its durable subscriptions
// keep (delivered and not acknowledged ones included), in-flight and inbound ids.
func sessionEntries(t *testing.T, st store.Store, id string) (queued, inflight, inbound int) {
	t.Helper()
	_, err := st.Recover(store.Visitor{
		Session: func(s store.SessionState) error {
			if s.Session.ClientID == id {
				inflight, inbound = len(s.Inflight), len(s.Inbound)
			}
			return nil
		},
		DurableSub: func(d store.DurableSub, l store.ListInfo) error {
			if dest, ok := router.ParseKey(d.ID); ok && len(dest.Path) == 3 && dest.Path[0] == dsubPrefix && dest.Path[1] == id {
				queued += l.Count
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return
}

// publish2 sends a QoS 2 PUBLISH and completes the exchange (PUBREC, PUBREL, PUBCOMP).
func (r *raw) publish2(topic, payload string, id uint16) {
	r.t.Helper()
	r.send(&packet.PublishPacket{Topic: topic, Payload: []byte(payload), QoS: 2, PacketID: id})
	if p, ok := r.next().(*packet.PubrecPacket); !ok || p.PacketID != id {
		r.t.Fatalf("want PUBREC %d, got %#v", id, p)
	}
	r.send(&packet.PubrelPacket{PacketID: id})
	if p, ok := r.next().(*packet.PubcompPacket); !ok || p.PacketID != id {
		r.t.Fatalf("want PUBCOMP %d, got %#v", id, p)
	}
}

// A persistent session resumes exactly after a broker restart [MQTT-4.1.0-1]: subscriptions, messages
// queued while offline, outbound QoS 1 and 2 in flight (resent with DUP under their packet ids, or
// PUBREL), and inbound QoS 2 ids awaiting PUBREL (a resent PUBLISH is not routed twice [MQTT-4.3.3-2]).
func TestPersistentSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := startDurable(t, dir)

	sub := dialRaw(t, b.addr)
	sub.connect("sub", false)
	sub.subscribe(1, 2, "t/#")
	sub.subscribe(2, 1, "u")
	sub.send(&packet.DisconnectPacket{})
	sub.expectClosed()

	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	pub.publish("t/1", "p1", 1, false, 1)
	// PUBACK came after the entry was durable: the store holds it now.
	if q, _, _ := sessionEntries(t, b.st, "sub"); q != 1 {
		t.Fatalf("after PUBACK the store holds %d queued entries for the offline session, want 1", q)
	}
	pub.publish2("t/2", "p2", 2)
	pub.publish("u", "p3", 1, false, 3)
	pub.publish("r/1", "kept", 1, true, 4)

	sub = dialRaw(t, b.addr)
	if ca := sub.connect("sub", false); !ca.SessionPresent {
		t.Fatal("session not present")
	}
	// Each subscription keeps its own order; the two subscriptions' messages may interleave.
	var got []*packet.PublishPacket
	var order []string
	for range 3 {
		p := sub.nextPublish()
		got = append(got, p)
		order = append(order, string(p.Payload))
	}
	byPayload := func(s string) *packet.PublishPacket {
		return got[slices.Index(order, s)]
	}
	if !slices.Contains(order, "p1") || !slices.Contains(order, "p2") || !slices.Contains(order, "p3") ||
		slices.Index(order, "p1") > slices.Index(order, "p2") {
		t.Fatalf("queued messages: %q, want p1 before p2 (t/#) and p3 (u)", order)
	}
	p1, p2, p3 := byPayload("p1"), byPayload("p2"), byPayload("p3")
	if p1.QoS != 1 || p2.QoS != 2 || p3.QoS != 1 {
		t.Fatalf("QoS %d %d %d, want 1 2 1", p1.QoS, p2.QoS, p3.QoS)
	}
	sub.send(&packet.PubrecPacket{PacketID: p2.PacketID})
	if p, ok := sub.next().(*packet.PubrelPacket); !ok || p.PacketID != p2.PacketID {
		t.Fatalf("want PUBREL %d, got %#v", p2.PacketID, p)
	}
	sub.send(&packet.PubackPacket{PacketID: p3.PacketID})
	// An inbound QoS 2 message awaiting PUBREL.
	sub.send(&packet.PublishPacket{Topic: "t/in", Payload: []byte("in"), QoS: 2, PacketID: 77})
	var p4 *packet.PublishPacket // its own copy, through "t/#"
	for p4 == nil {
		switch p := sub.next().(type) {
		case *packet.PubrecPacket:
		case *packet.PublishPacket:
			p4 = p
		default:
			t.Fatalf("got %s", p.Type())
		}
	}
	// p1 and p4 kept by "t/#" until acknowledged (p2 left at its PUBREC); in flight: p1 waiting for
	// PUBACK, p2 for PUBCOMP, p4 for PUBREC; inbound id 77.
	waitStore(t, b.st, "sub", 2, 3, 1)
	_ = sub.nc.Close()
	prototest.WaitFor(t, waitTime, func() bool {
		b.h.mu.Lock()
		defer b.h.mu.Unlock()
		r := b.h.registries[b.host]
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.sessions["sub"] != nil && r.sessions["sub"].att == nil
	})
	pub.publish("t/5", "p5", 1, false, 5) // kept for the offline session
	waitStore(t, b.st, "sub", 3, 3, 1)

	b.stop()
	b = startDurable(t, dir)
	if c := b.host.Recovered(); c.Sessions != 1 || c.Retained != 1 {
		t.Fatalf("recovered %+v", c)
	}

	sub = dialRaw(t, b.addr)
	if ca := sub.connect("sub", false); !ca.SessionPresent {
		t.Fatal("session not present after restart")
	}
	// In-flight first, in their original order and under their packet ids, then the queue.
	r1 := sub.nextPublish()
	if !r1.Dup || r1.PacketID != p1.PacketID || string(r1.Payload) != "p1" || r1.QoS != 1 {
		t.Fatalf("resent p1: %+v", r1)
	}
	if p, ok := sub.next().(*packet.PubrelPacket); !ok || p.PacketID != p2.PacketID {
		t.Fatalf("want PUBREL %d resent, got %#v", p2.PacketID, p)
	}
	r4 := sub.nextPublish()
	if !r4.Dup || r4.PacketID != p4.PacketID || string(r4.Payload) != "in" || r4.QoS != 2 {
		t.Fatalf("resent p4: %+v", r4)
	}
	r5 := sub.nextPublish()
	if string(r5.Payload) != "p5" || r5.Dup {
		t.Fatalf("queued p5: %+v", r5)
	}
	sub.send(&packet.PubackPacket{PacketID: r1.PacketID})
	sub.send(&packet.PubcompPacket{PacketID: p2.PacketID})
	sub.send(&packet.PubrecPacket{PacketID: r4.PacketID}) // QoS 2 through "t/#"
	if p, ok := sub.next().(*packet.PubrelPacket); !ok || p.PacketID != r4.PacketID {
		t.Fatalf("want PUBREL %d, got %#v", r4.PacketID, p)
	}
	sub.send(&packet.PubcompPacket{PacketID: r4.PacketID})
	sub.send(&packet.PubackPacket{PacketID: r5.PacketID})
	// The inbound id survived: the resent PUBLISH gets PUBREC and is not routed again.
	sub.send(&packet.PublishPacket{Topic: "t/in", Payload: []byte("in"), QoS: 2, PacketID: 77, Dup: true})
	if p, ok := sub.next().(*packet.PubrecPacket); !ok || p.PacketID != 77 {
		t.Fatalf("want PUBREC 77, got %#v", p)
	}
	sub.send(&packet.PubrelPacket{PacketID: 77})
	if p, ok := sub.next().(*packet.PubcompPacket); !ok || p.PacketID != 77 {
		t.Fatalf("want PUBCOMP 77, got %#v", p)
	}
	// The subscriptions survived too, and the retained message.
	pub = dialRaw(t, b.addr)
	pub.connect("pub", true)
	pub.publish("u", "p6", 1, false, 1)
	if p := sub.nextPublish(); string(p.Payload) != "p6" {
		t.Fatalf("after restart got %q, want p6", p.Payload)
	}
	if p := sub.nextWithin(200 * time.Millisecond); p != nil {
		t.Fatalf("unexpected %s (a second copy of the inbound message?)", p.Type())
	}
	waitStore(t, b.st, "sub", 1, 1, 0) // only p6, not acknowledged
	other := dialRaw(t, b.addr)
	other.connect("other", true)
	other.subscribe(1, 1, "r/#")
	if p := other.nextPublish(); string(p.Payload) != "kept" || !p.Retain {
		t.Fatalf("retained after restart: %+v", p)
	}
}

// waitStore waits until the store holds the given counts for client id.
func waitStore(t *testing.T, st store.Store, id string, queued, inflight, inbound int) {
	t.Helper()
	var q, f, in int
	deadline := time.Now().Add(waitTime)
	for {
		if q, f, in = sessionEntries(t, st, id); q == queued && f == inflight && in == inbound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store for %q: queued %d inflight %d inbound %d, want %d %d %d", id, q, f, in, queued, inflight, inbound)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A clean-session CONNECT discards a stored session [MQTT-3.1.2-6], in the store too.
func TestCleanSessionDiscardsStoredSession(t *testing.T) {
	dir := t.TempDir()
	b := startDurable(t, dir)
	sub := dialRaw(t, b.addr)
	sub.connect("s", false)
	sub.subscribe(1, 1, "a")
	sub.send(&packet.DisconnectPacket{})
	sub.expectClosed()
	b.stop()
	b = startDurable(t, dir)
	sub = dialRaw(t, b.addr)
	if ca := sub.connect("s", true); ca.SessionPresent {
		t.Fatal("clean session reported a present session")
	}
	sub.send(&packet.DisconnectPacket{})
	sub.expectClosed()
	b.stop()
	b = startDurable(t, dir)
	if c := b.host.Recovered(); c.Sessions != 0 || c.DurableSubs != 0 {
		t.Fatalf("discarded session still stored: %+v", c)
	}
}

// PUBACKs leave in the order of the PUBLISH packets even when the writes they wait for differ
// [MQTT-4.6.0-2].
func TestDurablePubackOrder(t *testing.T) {
	b := startDurable(t, t.TempDir())
	sub := dialRaw(t, b.addr)
	sub.connect("sub", false)
	sub.subscribe(1, 1, "kept")
	sub.send(&packet.DisconnectPacket{})
	sub.expectClosed()
	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	const n = 200
	for i := 1; i <= n; i++ {
		topic := "nobody"
		if i%3 == 0 {
			topic = "kept" // waits for a write; the others do not
		}
		pub.send(&packet.PublishPacket{Topic: topic, Payload: []byte("x"), QoS: 1, PacketID: uint16(i)})
	}
	for i := 1; i <= n; i++ {
		if p, ok := pub.next().(*packet.PubackPacket); !ok || p.PacketID != uint16(i) {
			t.Fatalf("PUBACK %d: got %#v", i, p)
		}
	}
	waitStore(t, b.st, "sub", n/3, 0, 0)
}

// A write that fails (disk full, I/O error) is never acknowledged: the publisher's connection closes
// without PUBACK, so it sends the message again later; the broker keeps serving.
func TestStoreWriteFailureWithholdsPuback(t *testing.T) {
	var failing atomic.Bool
	st := memstore.New(memstore.Options{BeforeWrite: func() error {
		if failing.Load() {
			return errors.New("disk full")
		}
		return nil
	}})
	host, err := virtualhost.Open(conf.VirtualHost{Name: "default", Anonymous: true}, router.Options{}, virtualhost.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	b := serveDurable(t, zaptest.NewLogger(t), host, st, nil)
	sub := dialRaw(t, b.addr)
	sub.connect("sub", false)
	sub.subscribe(1, 1, "t")
	sub.send(&packet.DisconnectPacket{})
	sub.expectClosed()

	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	pub.publish("t", "stored", 1, false, 1)
	failing.Store(true)
	pub.send(&packet.PublishPacket{Topic: "t", Payload: []byte("lost"), QoS: 1, PacketID: 2})
	pub.expectClosed() // no PUBACK for 2
	failing.Store(false)

	pub = dialRaw(t, b.addr)
	pub.connect("pub", true)
	pub.publish("t", "again", 1, false, 3)
	sub = dialRaw(t, b.addr)
	sub.connect("sub", false)
	for _, want := range []string{"stored"} {
		if p := sub.nextPublish(); string(p.Payload) != want {
			t.Fatalf("got %q, want %q", p.Payload, want)
		}
	}
	// "lost" may or may not be in memory; the store never acknowledged it. "again" arrives.
	for {
		p := sub.nextPublish()
		if string(p.Payload) == "again" {
			break
		}
	}
}
