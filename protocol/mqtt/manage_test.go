package mqtt

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// connOf returns the live connection of client id on srv, failing when there is none.
func connOf(t *testing.T, srv *protocol.Server, id string) protocol.ConnInfo {
	t.Helper()
	for _, ci := range srv.Connections() {
		if ci.Session.ClientID == id {
			return ci
		}
	}
	t.Fatalf("no connection of client %q in %+v", id, srv.Connections())
	return protocol.ConnInfo{}
}

// sessionOf returns client id's entry of h.Sessions("default"), failing when there is none.
func sessionOf(t *testing.T, h *Handler, id string) management.SessionInfo {
	t.Helper()
	for _, si := range h.Sessions("default") {
		if si.ClientID == id {
			return si
		}
	}
	t.Fatalf("no session %q in %+v", id, h.Sessions("default"))
	return management.SessionInfo{}
}

// unsubscribe sends UNSUBSCRIBE and waits for its UNSUBACK.
func (r *raw) unsubscribe(id uint16, filters ...string) {
	r.t.Helper()
	r.send(&packet.UnsubscribePacket{PacketID: id, Filters: filters})
	if p, ok := r.next().(*packet.UnsubackPacket); !ok || p.PacketID != id {
		r.t.Fatalf("raw: want UNSUBACK %d, got %#v", id, p)
	}
}

// Describe runs on management's goroutines while the reader changes the subscriptions: the race
// detector checks it reads them safely; what it finally says is the client's own view (filters as
// written, $share included, sorted), with its host, user, client id, level and persistence.
func TestDescribeDuringSubscribeChurn(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	ca := r.connectWith(&packet.ConnectPacket{ClientID: "churn", CleanSession: false, KeepAlive: 60,
		UsernameFlag: true, Username: "alice"})
	if ca.ReturnCode != 0 {
		t.Fatalf("CONNACK %#x", ca.ReturnCode)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	described := 0
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, ci := range b.srv.Connections() {
				_ = slices.Clone(ci.Session.Subscriptions)
			}
			for _, si := range b.h.Sessions("default") {
				_ = slices.Clone(si.Subscriptions)
			}
			described++
			time.Sleep(50 * time.Microsecond)
		}
	}()
	var id uint16
	for i := range 100 {
		id += 2
		r.subscribe(id, 1, "a/+", "$share/g/b/#", "q/"+string(rune('a'+i%26)))
		r.unsubscribe(id+1, "a/+", "q/"+string(rune('a'+i%26)))
	}
	r.subscribe(id+2, 1, "z/#")
	close(stop)
	<-done
	if described == 0 {
		t.Fatal("Describe never ran during the churn")
	}
	got := connOf(t, b.srv, "churn").Session
	want := protocol.SessionInfo{VirtualHost: "default", User: "alice", ClientID: "churn", Version: "3.1.1",
		Persistent: true, Subscriptions: []string{"$share/g/b/#", "z/#"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Describe = %+v, want %+v", got, want)
	}
}

// An MQTT 5 client with clean start and a session expiry has a persistent session; without an expiry its
// session ends with the connection.
func TestDescribeMQTT5(t *testing.T) {
	b := startBroker(t, nil)
	r, _ := dialRaw5(t, b.addr, "v5", &packet.Properties{SessionExpiryInterval: ptr(uint32(60))})
	r.subscribe5(1, 0, packet.Subscription{Filter: "x/+", QoS: 1})
	got := connOf(t, b.srv, "v5").Session
	if got.Version != "5" || !got.Persistent || !slices.Equal(got.Subscriptions, []string{"x/+"}) || got.User != "" {
		t.Fatalf("Describe = %+v, want a persistent anonymous MQTT 5 session subscribed to x/+", got)
	}
	dialRaw5(t, b.addr, "v5clean", nil)
	if got := connOf(t, b.srv, "v5clean").Session; got.Persistent || len(got.Subscriptions) != 0 {
		t.Fatalf("Describe = %+v, want a clean session without subscriptions", got)
	}
}

// Messages are counted once each: in for every PUBLISH taken for routing (a QoS 2 PUBLISH sent again
// before PUBREL is not counted again, one the client may not send is not counted), out for every PUBLISH
// queued to the client, retained messages and resends after a reconnect included. ConnectorStats adds
// up live and ended connections.
func TestMessageCounts(t *testing.T) {
	b := startBroker(t, nil)
	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	pub.publish("c/r", "retained", 1, true, 1)

	sub := dialRaw(t, b.addr)
	sub.connect("sub", true)
	sub.subscribe(1, 2, "c/#")
	if p := sub.nextPublish(); !p.Retain || string(p.Payload) != "retained" {
		t.Fatalf("got %+v, want the retained message", p)
	}

	pub.publish("c/0", "zero", 0, false, 0)
	pub.publish("c/1", "one", 1, false, 2)
	// QoS 2, sent twice before PUBREL: routed once [MQTT-4.3.3-2], counted once.
	pub.send(&packet.PublishPacket{Topic: "c/2", Payload: []byte("two"), QoS: 2, PacketID: 3})
	pub.next() // PUBREC
	pub.send(&packet.PublishPacket{Topic: "c/2", Payload: []byte("two"), QoS: 2, PacketID: 3, Dup: true})
	pub.next() // PUBREC
	pub.send(&packet.PubrelPacket{PacketID: 3})
	pub.next()                                   // PUBCOMP
	pub.publish("nobody/here", "x", 1, false, 4) // no subscriber: still a message received
	for _, want := range []string{"zero", "one", "two"} {
		p := sub.nextPublish()
		if string(p.Payload) != want {
			t.Fatalf("got %q, want %q", p.Payload, want)
		}
		switch p.QoS {
		case 1:
			sub.send(&packet.PubackPacket{PacketID: p.PacketID})
		case 2:
			sub.send(&packet.PubrecPacket{PacketID: p.PacketID})
			sub.next() // PUBREL
			sub.send(&packet.PubcompPacket{PacketID: p.PacketID})
		}
	}
	if tr := connOf(t, b.srv, "pub").Traffic; tr.MessagesIn != 5 || tr.MessagesOut != 0 {
		t.Errorf("publisher traffic %+v, want 5 in, 0 out", tr)
	}
	if tr := connOf(t, b.srv, "sub").Traffic; tr.MessagesIn != 0 || tr.MessagesOut != 4 {
		t.Errorf("subscriber traffic %+v, want 0 in, 4 out (retained, QoS 0, 1, 2)", tr)
	}

	// A resend after a reconnect is one more message out, on the new connection.
	re := dialRaw(t, b.addr)
	re.connect("re", false)
	re.subscribe(1, 1, "re/x")
	pub.publish("re/x", "again", 1, false, 5)
	first := re.nextPublish()
	_ = re.nc.Close() // no PUBACK
	prototest.WaitFor(t, waitTime, func() bool { return sessionOf(t, b.h, "re").Online == false })
	re = dialRaw(t, b.addr)
	re.connect("re", false)
	if p := re.nextPublish(); !p.Dup || p.PacketID != first.PacketID {
		t.Fatalf("resent %+v, want a DUP of %+v", p, first)
	}
	if tr := connOf(t, b.srv, "re").Traffic; tr.MessagesOut != 1 {
		t.Errorf("resumed connection traffic %+v, want 1 out (the resend)", tr)
	}

	// A PUBLISH the client may not send is not counted: it is not routed.
	locked := virtualhost.New(conf.VirtualHost{Name: "locked", Anonymous: true, AccessRules: []conf.AccessRule{
		{Deny: []string{"*"}, Actions: []string{"send"}, Kind: "topic"},
		{Allow: []string{"*"}},
	}}, router.Options{})
	lb := startBroker(t, func(c *conf.Connector) { c.VirtualHost = "locked" }, locked)
	deny := dialRaw(t, lb.addr)
	deny.connect("deny", true)
	deny.publish("t", "refused", 1, false, 1) // 3.1.1 acknowledges what it does not route [MQTT-3.3.5-2]
	if tr := connOf(t, lb.srv, "deny").Traffic; tr.MessagesIn != 0 {
		t.Errorf("refused publisher traffic %+v, want 0 in", tr)
	}

	var total protocol.Traffic
	for _, pt := range b.srv.ConnectorStats()[0].Traffic {
		total.MessagesIn += pt.MessagesIn
		total.MessagesOut += pt.MessagesOut
	}
	if total.MessagesIn != 6 || total.MessagesOut != 6 {
		t.Errorf("connector traffic %+v, want 6 in and 7 out (the ended connection's resend included)", total)
	}
}

// A subscriber that does not read has QoS 0 messages dropped when its outbound queue is full (under
// slow_consumer_policy queue): each is counted on its connection (Traffic.Dropped), the same count the
// session logs, and every message is either queued to it or dropped. ConnectorStats keeps the drops
// after the connection ends.
func TestSlowSubscriberDropsCounted(t *testing.T) {
	host := virtualhost.New(conf.VirtualHost{Name: "default", Anonymous: true}, router.Options{TopicPolicies: allTopics(t, router.SlowQueue)})
	h := NewHandler(virtualhost.NewRegistry(host), zaptest.NewLogger(t))
	srv := protocol.NewServer(zaptest.NewLogger(t), map[string]protocol.Handler{protocol.MQTT: h})
	srv.MaxPending = 16 << 10
	srv.WriteTimeout = time.Minute
	if err := srv.Listen(conf.Connector{Name: "slow", Network: "tcp", Address: "127.0.0.1:0", Protocol: protocol.MQTT,
		MQTT: conf.MQTT{Grammar: conf.MQTTGrammarDefaults}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	addr := srv.Addrs()["slow"].String()
	sub := dialRaw(t, addr)
	_ = sub.nc.(*net.TCPConn).SetReadBuffer(4 << 10)
	sub.connect("slow", true)
	sub.subscribe(1, 0, "flood/#")
	pub := dialRaw(t, addr)
	pub.connect("fast", true)
	body := make([]byte, 4<<10)
	const n = 2000 // 8 MiB: more than socket buffers and the 16 KiB outbound limit hold
	for range n {
		pub.send(&packet.PublishPacket{Topic: "flood/0", Payload: body})
	}
	pub.publish("other", "barrier", 1, false, 1) // handled after every QoS 0 PUBLISH before it

	tr := connOf(t, srv, "slow").Traffic
	s := h.registry(host).sessions["slow"]
	s.mu.Lock()
	logged := s.dropped
	s.mu.Unlock()
	if tr.Dropped == 0 || tr.Dropped != logged || tr.MessagesOut+tr.Dropped != n {
		t.Fatalf("subscriber traffic %+v, session dropped %d: want drops, the same count, and out + dropped = %d", tr, logged, n)
	}
	if pt := connOf(t, srv, "fast").Traffic; pt.Dropped != 0 || pt.MessagesIn != n+1 {
		t.Fatalf("publisher traffic %+v, want %d in and no drop", pt, n+1)
	}
	_ = sub.nc.Close()
	prototest.WaitFor(t, waitTime, func() bool { return len(srv.Connections()) == 1 })
	var dropped uint64
	for _, pt := range srv.ConnectorStats()[0].Traffic {
		dropped += pt.Dropped
	}
	if dropped != tr.Dropped {
		t.Fatalf("connector drops %d after the subscriber left, want %d", dropped, tr.Dropped)
	}
}

// A shared subscription's member that refuses a QoS 0 message does not count it dropped: the group
// offers it to another member, and the router counts it if none takes it.
func TestSharedRefusalNotCountedDropped(t *testing.T) {
	out := &discardSender{full: true}
	s, sub, g := benchSession(t, "t", 0, out)
	sub.Share = "g"
	if s.Deliver(router.Delivery{Msg: benchMessage(t, g, "t", 0), Sub: sub}) {
		t.Fatal("QoS 0 accepted with a full outbound queue")
	}
	if out.dropped != 0 || s.dropped != 0 {
		t.Fatalf("dropped %d on the connection, %d in the session; want 0", out.dropped, s.dropped)
	}
}

// Sessions lists a host's sessions, online and offline: persistence, subscriptions as written, the
// backlog kept in durable subscriptions while the client is away (QoS 0 is not kept), in-flight
// deliveries, and when an offline MQTT 5 session expires.
func TestSessionsListing(t *testing.T) {
	b := startBroker(t, nil)
	clean := dialRaw(t, b.addr)
	clean.connect("clean", true)
	clean.subscribe(1, 0, "a/b")

	online := dialRaw(t, b.addr)
	online.connect("online", false)
	online.subscribe(1, 1, "p/#", "$share/g/s/+")

	off := dialRaw(t, b.addr)
	off.connect("offline", false)
	off.subscribe(1, 1, "o/+")
	off.send(&packet.DisconnectPacket{})
	off.expectClosed()

	v5, _ := dialRaw5(t, b.addr, "expiring", &packet.Properties{SessionExpiryInterval: ptr(uint32(3600))})
	v5.subscribe5(1, 0, packet.Subscription{Filter: "e", QoS: 1})
	v5.send(&packet.DisconnectPacket{})
	v5.expectClosed()
	left := time.Now()

	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	for i := range 3 {
		pub.publish("o/1", "kept", 1, false, uint16(i+1))
	}
	pub.publish("o/1", "not kept", 0, false, 0)
	pub.publish("p/1", "in flight", 1, false, 10)
	if p := online.nextPublish(); string(p.Payload) != "in flight" {
		t.Fatalf("got %+v", p)
	} // not acknowledged

	prototest.WaitForErr(t, waitTime, func() error {
		if si := sessionOf(t, b.h, "offline"); si.Backlog != 3 {
			return errors.New("offline backlog not 3 yet")
		}
		return nil
	})
	list := b.h.Sessions("default")
	ids := make([]string, len(list))
	for i, si := range list {
		ids[i] = si.ClientID
	}
	if want := []string{"clean", "expiring", "offline", "online", "pub"}; !slices.Equal(ids, want) {
		t.Fatalf("sessions %v, want %v", ids, want)
	}
	exp := sessionOf(t, b.h, "expiring")
	if exp.Online || !exp.Persistent || exp.ExpiresAt.Before(left.Add(3599*time.Second)) || exp.ExpiresAt.After(time.Now().Add(3600*time.Second)) {
		t.Errorf("expiring session %+v, want offline, expiring an hour after it left", exp)
	}
	exp.ExpiresAt = time.Time{}
	for _, want := range []management.SessionInfo{
		{ClientID: "clean", Online: true, Subscriptions: []string{"a/b"}},
		{ClientID: "online", Online: true, Persistent: true, Subscriptions: []string{"$share/g/s/+", "p/#"}, Inflight: 1},
		{ClientID: "offline", Persistent: true, Subscriptions: []string{"o/+"}, Backlog: 3},
		{ClientID: "expiring", Persistent: true, Subscriptions: []string{"e"}},
	} {
		got := sessionOf(t, b.h, want.ClientID)
		if want.ClientID == "expiring" {
			got = exp
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("session %+v, want %+v", got, want)
		}
	}
	if b.h.Sessions("nohost") != nil {
		t.Error("sessions of an unknown host")
	}
}

// DeleteSession refuses an online session and an unknown one, and ends an offline one as its expiry
// would: its durable subscriptions and their backlog, its store records; a restart does not bring it
// back, while another offline session keeps its backlog.
func TestDeleteSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := startDurable(t, dir)
	for _, id := range []string{"gone", "kept", "online"} {
		r := dialRaw(t, b.addr)
		r.connect(id, false)
		r.subscribe(1, 1, "d/#")
		if id == "online" {
			continue
		}
		r.send(&packet.DisconnectPacket{})
		r.expectClosed()
	}
	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	for i := range 5 {
		pub.publish("d/x", "m", 1, false, uint16(i+1))
	}
	if si := sessionOf(t, b.h, "gone"); si.Backlog != 5 || si.Online {
		t.Fatalf("session %+v, want offline with 5 waiting", si)
	}

	for _, c := range []struct {
		host, id string
		want     error
	}{
		{"default", "online", management.ErrSessionOnline},
		{"default", "nobody", management.ErrNoSession},
		{"nohost", "gone", management.ErrNoSession},
		{"default", "gone", nil},
		{"default", "gone", management.ErrNoSession},
	} {
		if err := b.h.DeleteSession(c.host, c.id); !errors.Is(err, c.want) {
			t.Fatalf("DeleteSession(%q, %q) = %v, want %v", c.host, c.id, err, c.want)
		}
	}
	for _, si := range b.h.Sessions("default") {
		if si.ClientID == "gone" {
			t.Fatalf("deleted session still listed: %+v", si)
		}
	}
	if ds := b.host.Router.Durables([]string{dsubPrefix, "gone"}); len(ds) != 0 {
		t.Fatalf("durable subscriptions left: %+v", ds)
	}
	if q, f, in := sessionEntries(t, b.st, "gone"); q+f+in != 0 {
		t.Fatalf("store still holds %d queued, %d in flight, %d inbound for the deleted session", q, f, in)
	}

	b.stop()
	b = startDurable(t, dir)
	if c := b.host.Recovered(); c.Sessions != 2 || c.DurableSubs != 2 {
		t.Fatalf("recovered %+v, want two sessions (kept, online) and their two durable subscriptions", c)
	}
	if si := sessionOf(t, b.h, "kept"); si.Backlog != 5 {
		t.Fatalf("kept session after restart %+v, want 5 waiting", si)
	}
	r := dialRaw(t, b.addr)
	if ca := r.connect("gone", false); ca.SessionPresent {
		t.Fatal("the deleted session came back after a restart")
	}
}

// A client reconnecting while its offline session is deleted either resumes it (the deletion is then
// refused) or waits for the deletion and starts afresh, and the subscription it makes then is its own:
// the deletion never destroys it.
func TestDeleteSessionRacesReconnect(t *testing.T) {
	b := startBroker(t, nil)
	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	for i := range 10 {
		r := dialRaw(t, b.addr)
		r.connect("racer", false)
		r.subscribe(1, 1, "old")
		r.send(&packet.DisconnectPacket{})
		r.expectClosed()
		prototest.WaitFor(t, waitTime, func() bool { return !sessionOf(t, b.h, "racer").Online })

		res := make(chan error, 1)
		go func() { res <- b.h.DeleteSession("default", "racer") }()
		r = dialRaw(t, b.addr)
		ca := r.connect("racer", false)
		err := <-res
		switch {
		case err == nil && ca.SessionPresent:
			t.Fatalf("round %d: the session was deleted and resumed", i)
		case err != nil && !errors.Is(err, management.ErrSessionOnline):
			t.Fatalf("round %d: DeleteSession = %v", i, err)
		case err != nil && !ca.SessionPresent:
			t.Fatalf("round %d: the deletion was refused but the session is gone", i)
		}
		r.subscribe(2, 1, "new")
		pub.publish("new", "hello", 1, false, uint16(i+1))
		p := r.nextPublish()
		if string(p.Payload) != "hello" {
			t.Fatalf("round %d: got %+v", i, p)
		}
		r.send(&packet.PubackPacket{PacketID: p.PacketID})
		r.send(&packet.DisconnectPacket{})
		r.expectClosed()
		prototest.WaitFor(t, waitTime, func() bool { return !sessionOf(t, b.h, "racer").Online })
		if err := b.h.DeleteSession("default", "racer"); err != nil {
			t.Fatalf("round %d: clean-up: %v", i, err)
		}
	}
}
