package stomp

import (
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/protocol/prototest"
)

// TestDurableSubscription: a persistent SUBSCRIBE keeps what arrives while its client is away; a new
// connection re-attaches by SUBSCRIBE with the same id or by /dsub/<id>; UNSUBSCRIBE persistent:true
// destroys it (DESIGN.md §5).
func TestDurableSubscription(t *testing.T) {
	b := startBroker(t, nil)
	pub := b.dial(t)
	send := func(body string) {
		t.Helper()
		if err := pub.Send("/topic/news.sport", "", []byte(body), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	durableOpts := []func(*frame.Frame) error{stomp.SubscribeOpt.Id("d1"), stomp.SubscribeOpt.Header("persistent", "true")}

	c1, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.Host("default"), stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	s1 := subscribe(t, c1, "/topic/news.*", stomp.AckClientIndividual, durableOpts...)
	send("one")
	m := recv(t, s1)
	if string(m.Body) != "one" || m.Destination != "/topic/news.sport" {
		t.Fatalf("got %q at %q", m.Body, m.Destination)
	}
	if err := c1.Ack(m); err != nil {
		t.Fatal(err)
	}
	if err := c1.Disconnect(); err != nil {
		t.Fatal(err)
	}

	send("two") // the client is away
	send("three")
	prototest.WaitFor(t, 2*time.Second, func() bool {
		d, err := stompGrammar(t).ParseName("/dsub/d1")
		return err == nil && b.host.Router.QueueDepthOf(d) == 2
	})

	c2 := b.dial(t)
	s2 := subscribe(t, c2, "/topic/news.*", stomp.AckAuto, durableOpts...)
	for _, want := range []string{"two", "three"} {
		if m := recv(t, s2); string(m.Body) != want || m.Destination != "/topic/news.sport" {
			t.Fatalf("got %q at %q, want %q", m.Body, m.Destination, want)
		}
	}
	unsubscribe(t, s2) // plain UNSUBSCRIBE: the durable subscription stays
	send("four")
	s3 := subscribe(t, c2, "/dsub/d1", stomp.AckAuto)
	if m := recv(t, s3); string(m.Body) != "four" {
		t.Fatalf("via /dsub/: got %q", m.Body)
	}
	unsubscribe(t, s3, stomp.SubscribeOpt.Header("persistent", "true"))
	send("five")

	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:x\ndestination:/dsub/d1\n\n\x00")
	r.expectError("unknown durable subscription")
	if n := b.host.Router.Stats().Queues; n != 0 {
		t.Errorf("%d queues left after destroying the durable subscription", n)
	}
}

// TestDurableSubscription_Errors: a durable SUBSCRIBE needs an id and a single topic.
func TestDurableSubscription_Errors(t *testing.T) {
	b := startBroker(t, nil)
	for _, tc := range []struct{ frame, want string }{
		{"SUBSCRIBE\nid:a\ndestination:/topic/a,/topic/b\npersistent:true\n\n\x00", "invalid durable subscription"},
		{"SUBSCRIBE\nid:a\ndestination:/topic/a\npersistent:true\nselector:x = 1\n\n\x00", "invalid selector"},
		{"SUBSCRIBE\nid:a.*\ndestination:/topic/a\npersistent:true\n\n\x00", "invalid durable subscription"},
		// '$' names are the broker's: an MQTT session's durable subscriptions live under $mqtt.
		{"SUBSCRIBE\nid:$mqtt.dev1.a\ndestination:/topic/a\npersistent:true\n\n\x00", "invalid durable subscription"},
		{"SUBSCRIBE\nid:x\ndestination:/dsub/$mqtt.dev1.a\n\n\x00", "invalid durable subscription"},
	} {
		r := b.raw(t)
		r.connect("accept-version:1.2", "host:default")
		r.send(tc.frame)
		r.expectError(tc.want)
	}
}
