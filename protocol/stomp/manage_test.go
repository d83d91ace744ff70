package stomp

import (
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
)

// connOf returns the live connection whose client id is id, failing when there is none.
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

// expect reads the next frame and requires command cmd.
func (r *rawConn) expect(cmd string) *frame.Frame {
	r.t.Helper()
	f := r.read()
	if f.Command != cmd {
		r.t.Fatalf("got %s %v %q, want %s", f.Command, f.Header, f.Body, cmd)
	}
	return f
}

// Describe runs on management's goroutines while the reader subscribes and unsubscribes: the race
// detector checks it reads the subscriptions safely; what it finally says is the client's own view
// (destination and id as SUBSCRIBE wrote them, sorted), with host, user, client id and version. A STOMP
// 1.0 subscription without an id is its destination alone.
func TestDescribeDuringSubscribeChurn(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default", "login:bob", "passcode:x", "client-id:c1")
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
			described++
			time.Sleep(50 * time.Microsecond)
		}
	}()
	for i := range 100 {
		id := strconv.Itoa(i)
		r.send("SUBSCRIBE\nid:" + id + "\ndestination:/topic/a.*\nreceipt:s" + id + "\n\n\x00")
		r.expect(frame.RECEIPT)
		r.send("UNSUBSCRIBE\nid:" + id + "\nreceipt:u" + id + "\n\n\x00")
		r.expect(frame.RECEIPT)
	}
	r.send("SUBSCRIBE\nid:q\ndestination:/queue/q\nack:client\nreceipt:s\n\n\x00")
	r.expect(frame.RECEIPT)
	r.send("SUBSCRIBE\nid:t\ndestination:/topic/x.**\nreceipt:t\n\n\x00")
	r.expect(frame.RECEIPT)
	close(stop)
	<-done
	if described == 0 {
		t.Fatal("Describe never ran during the churn")
	}
	got := connOf(t, b.srv, "c1").Session
	want := protocol.SessionInfo{VirtualHost: "default", User: "bob", ClientID: "c1", Version: "1.2",
		Subscriptions: []string{"/queue/q id:q", "/topic/x.** id:t"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Describe = %+v, want %+v", got, want)
	}

	old := b.raw(t)
	f := old.connect("client-id:c0") // no accept-version: STOMP 1.0
	old.send("SUBSCRIBE\ndestination:/topic/y\n\n\x00SEND\ndestination:/topic/z\nreceipt:r\n\n\x00")
	old.expect(frame.RECEIPT)
	got = connOf(t, b.srv, "c0").Session
	if got.Version != "1.0" || !slices.Equal(got.Subscriptions, []string{"/topic/y"}) || got.ClientID != "c0" {
		t.Fatalf("STOMP 1.0 session %+v (CONNECTED %v), want version 1.0 with /topic/y", got, f.Header)
	}
	// Without a client-id header the client id is the session id.
	anon := b.raw(t)
	f = anon.connect("accept-version:1.2", "host:default")
	if got := connOf(t, b.srv, f.Header.Get(frame.Session)).Session; got.User != "" || got.VirtualHost != "default" {
		t.Fatalf("anonymous session %+v", got)
	}
}

// Messages are counted once each: in for every SEND taken for routing (a composite SEND is one message
// received; a SEND in an aborted transaction is none), out for every MESSAGE frame queued to the client:
// retained, live, and redelivered. ConnectorStats adds them up.
func TestMessageCounts(t *testing.T) {
	b := startBroker(t, nil)
	pub := b.raw(t)
	pub.connect("accept-version:1.2", "host:default", "client-id:pub")
	pub.send("SEND\ndestination:/topic/c.r\nretain:set\nreceipt:1\n\nretained\x00")
	pub.expect(frame.RECEIPT)

	sub := b.raw(t)
	sub.connect("accept-version:1.2", "host:default", "client-id:sub")
	sub.send("SUBSCRIBE\nid:1\ndestination:/topic/c.*\nreceipt:s\n\n\x00")
	if f := sub.expect(frame.MESSAGE); string(f.Body) != "retained" {
		t.Fatalf("got %q, want the retained message", f.Body)
	}
	sub.expect(frame.RECEIPT)

	pub.send("SEND\ndestination:/topic/c.x\n\nx\x00")
	pub.send("SEND\ndestination:/topic/c.y,/topic/c.z\n\nyz\x00")
	pub.send("BEGIN\ntransaction:t1\n\n\x00SEND\ndestination:/topic/c.a\ntransaction:t1\n\naborted\x00ABORT\ntransaction:t1\n\n\x00")
	pub.send("BEGIN\ntransaction:t2\n\n\x00SEND\ndestination:/topic/c.c\ntransaction:t2\n\ncommitted\x00COMMIT\ntransaction:t2\n\n\x00")
	pub.send("SEND\ndestination:/queue/q\nreceipt:2\n\nqueued\x00")
	pub.expect(frame.RECEIPT)
	for _, want := range []string{"x", "yz", "yz", "committed"} {
		if f := sub.expect(frame.MESSAGE); string(f.Body) != want {
			t.Fatalf("got %q, want %q", f.Body, want)
		}
	}
	// A queue message delivered, given back unacknowledged (UNSUBSCRIBE), and delivered again.
	sub.send("SUBSCRIBE\nid:2\ndestination:/queue/q\nack:client\n\n\x00")
	sub.expect(frame.MESSAGE)
	sub.send("UNSUBSCRIBE\nid:2\n\n\x00SUBSCRIBE\nid:3\ndestination:/queue/q\nack:client\n\n\x00")
	if f := sub.expect(frame.MESSAGE); f.Header.Get("redelivered") != "true" {
		t.Fatalf("got %v, want the redelivery", f.Header)
	}

	if tr := connOf(t, b.srv, "pub").Traffic; tr.MessagesIn != 5 || tr.MessagesOut != 0 {
		t.Errorf("producer traffic %+v, want 5 in (retained, x, yz, committed, queued), 0 out", tr)
	}
	if tr := connOf(t, b.srv, "sub").Traffic; tr.MessagesIn != 0 || tr.MessagesOut != 7 {
		t.Errorf("subscriber traffic %+v, want 7 out (retained, x, y, z, committed, queued twice)", tr)
	}
	st := b.srv.ConnectorStats()[0].Traffic
	if len(st) != 1 || st[0].Protocol != protocol.STOMP || st[0].VirtualHost != "default" || st[0].MessagesIn != 5 || st[0].MessagesOut != 7 {
		t.Errorf("connector traffic %+v, want STOMP on default with 5 in and 7 out", st)
	}
}

// A subscriber that does not read has topic messages dropped when its outbound queue is full: each is
// counted on its connection (Traffic.Dropped, as the handler's Dropped), and every message is either
// queued to it or dropped. ConnectorStats keeps the drops after the connection ends.
func TestSlowSubscriberDropsCounted(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	f := r.connect("accept-version:1.2", "host:default")
	id := f.Header.Get(frame.Session)
	r.send("SUBSCRIBE\nid:t\ndestination:/topic/flow\nreceipt:s\n\n\x00")
	r.expect(frame.RECEIPT)
	const n = 500 // 32 MiB: more than the 8 MiB outbound limit plus the socket buffers
	flood(t, b.host.Router, stompGrammar(t), "/topic/flow", n)
	tr := connOf(t, b.srv, id).Traffic
	if tr.Dropped == 0 || tr.Dropped != b.h.Dropped() || tr.MessagesOut+tr.Dropped != n {
		t.Fatalf("subscriber traffic %+v, handler dropped %d: want drops, the same count, and out + dropped = %d", tr, b.h.Dropped(), n)
	}
	_ = r.nc.Close()
	prototest.WaitFor(t, 5*time.Second, func() bool { return len(b.srv.Connections()) == 0 })
	if st := b.srv.ConnectorStats()[0].Traffic; len(st) != 1 || st[0].Dropped != tr.Dropped {
		t.Fatalf("connector traffic %+v after the subscriber left, want %d dropped", st, tr.Dropped)
	}
}
