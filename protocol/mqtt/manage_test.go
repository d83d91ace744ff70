package mqtt

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

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
