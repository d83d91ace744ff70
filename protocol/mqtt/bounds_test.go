package mqtt

import (
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

// Tests of the per-client bounds (issue 13, "Bounded resources per client").

// TestSubscriptionsBoundedPerConnection: with the default max_subscriptions a client holds 1000
// subscriptions; a SUBSCRIBE that would go beyond gets the filters that fit and SUBACK 0x80 for the rest.
func TestSubscriptionsBoundedPerConnection(t *testing.T) {
	b := startBroker(t, nil)
	c := pahoClient(t, b.addr, "many", nil)
	refused := 0
	for _, n := range []int{conf.DefaultMaxSubscriptions - 1, 2} {
		filters := map[string]byte{}
		for i := range n {
			filters["many/"+strconv.Itoa(n)+"/"+strconv.Itoa(i)] = 0
		}
		tok := c.SubscribeMultiple(filters, nil)
		waitToken(t, tok)
		for f, rc := range tok.(*paho.SubscribeToken).Result() {
			if rc == subackFailure {
				refused++
			} else if rc != 0 {
				t.Errorf("%s: SUBACK %#x", f, rc)
			}
		}
	}
	if refused != 1 {
		t.Fatalf("%d filters refused, want 1 (max_subscriptions %d)", refused, conf.DefaultMaxSubscriptions)
	}
	if n := b.host.Router.Stats().Subscriptions; n != conf.DefaultMaxSubscriptions {
		t.Fatalf("router holds %d subscriptions", n)
	}
}

// hugeSubscribe is a SUBSCRIBE of n filters, more than any client may hold.
func hugeSubscribe(n int) *packet.SubscribePacket {
	sp := &packet.SubscribePacket{PacketID: 1, Subscriptions: make([]packet.Subscription, n)}
	for i := range sp.Subscriptions {
		sp.Subscriptions[i] = packet.Subscription{Filter: "x"}
	}
	return sp
}

// TestSubscribeDecodingStopsAtLimit: a SUBSCRIBE with more filters than max_subscriptions is refused
// while it is decoded, before its filters are turned into anything: the connection closes (MQTT 5:
// DISCONNECT 0x97, quota exceeded) and no SUBACK comes back.
func TestSubscribeDecodingStopsAtLimit(t *testing.T) {
	b := startBroker(t, nil)
	t.Run("3.1.1", func(t *testing.T) {
		r := dialRaw(t, b.addr)
		r.connect("huge3", true)
		r.send(hugeSubscribe(100000))
		r.expectClosed()
	})
	t.Run("5", func(t *testing.T) {
		r, _ := dialRaw5(t, b.addr, "huge5", nil)
		r.send(hugeSubscribe(100000))
		p := r.next()
		if d, ok := p.(*packet.DisconnectPacket); !ok || d.ReasonCode != packet.ReasonQuotaExceeded {
			t.Fatalf("got %s, want DISCONNECT 0x97", p.Type())
		}
		r.expectClosed()
	})
	t.Run("unsubscribe", func(t *testing.T) {
		r := dialRaw(t, b.addr)
		r.connect("hugeu", true)
		up := &packet.UnsubscribePacket{PacketID: 2, Filters: make([]string, 100000)}
		for i := range up.Filters {
			up.Filters[i] = "x"
		}
		r.send(up)
		r.expectClosed()
	})
}

// TestSubscriptionsBoundedPerHost: a virtual host's max_subscriptions bounds what all its clients hold
// together (SUBACK 0x80; MQTT 5: 0x97), and max_durable_subscriptions the subscriptions its persistent
// sessions keep.
func TestSubscriptionsBoundedPerHost(t *testing.T) {
	b := startBroker(t, nil)
	hc := b.host.Config()
	hc.MaxSubscriptions, hc.MaxDurableSubscriptions = 3, 1
	if err := b.host.Update(hc); err != nil {
		t.Fatal(err)
	}
	r1 := dialRaw(t, b.addr)
	r1.connect("h1", true)
	if rc := r1.subscribe(1, 0, "h/1", "h/2"); rc[0] != 0 || rc[1] != 0 {
		t.Fatalf("first client: %#x", rc)
	}
	r2 := dialRaw(t, b.addr)
	r2.connect("h2", true)
	if rc := r2.subscribe(1, 0, "h/3", "h/4"); rc[0] != 0 || rc[1] != subackFailure {
		t.Fatalf("second client: %#x, want the second filter refused (max_subscriptions 3)", rc)
	}
	r5, _ := dialRaw5(t, b.addr, "h5", nil)
	r5.send(&packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "h/5"}}})
	if sa, ok := r5.next().(*packet.SubackPacket); !ok || sa.ReturnCodes[0] != packet.ReasonQuotaExceeded {
		t.Fatalf("MQTT 5: %+v, want SUBACK 0x97", sa)
	}
	r1.nc.Close()
	r5.nc.Close()
	// A persistent session's subscriptions are durable subscriptions.
	prototest.WaitFor(t, waitTime, func() bool { return b.host.Router.Stats().Subscriptions == 1 })
	p := dialRaw(t, b.addr)
	p.connect("persistent", false)
	if rc := p.subscribe(1, 1, "d/1", "d/2"); rc[0] != 1 || rc[1] != subackFailure {
		t.Fatalf("persistent session: %#x, want the second refused (max_durable_subscriptions 1)", rc)
	}
}

// TestWillBoundedByHostMessageLength: a will larger than the virtual host's max_message_length is
// refused with its CONNECT (MQTT 5: CONNACK 0x95; 3.1.1 has no code for it: closed without CONNACK),
// as a PUBLISH that large is; it would otherwise be published when the connection drops.
func TestWillBoundedByHostMessageLength(t *testing.T) {
	b := startBroker(t, nil)
	hc := b.host.Config()
	hc.MaxMessageLength = 100
	if err := b.host.Update(hc); err != nil {
		t.Fatal(err)
	}
	watch := dialRaw(t, b.addr)
	watch.connect("watch", true)
	watch.subscribe(1, 0, "will/#")
	connect := func(version byte, id string, payload int) *raw {
		r := dialRaw(t, b.addr)
		r.version = version
		r.rd.SetVersion(version)
		r.send(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: version, ClientID: id, CleanSession: true,
			KeepAlive: 60, WillFlag: true, WillTopic: "will/" + id, WillPayload: make([]byte, payload)})
		return r
	}
	r := connect(packet.Version5, "big5", 101)
	if ca, ok := r.next().(*packet.ConnackPacket); !ok || ca.ReturnCode != packet.ReasonPacketTooLarge {
		t.Fatalf("MQTT 5: %+v, want CONNACK 0x95", ca)
	}
	r.expectClosed()
	connect(packet.Version311, "big3", 101).expectClosed()
	// Within the limit the will is kept, and published when the connection drops.
	ok := connect(packet.Version311, "ok3", 100)
	if ca, isAck := ok.next().(*packet.ConnackPacket); !isAck || ca.ReturnCode != 0 {
		t.Fatalf("a will of 100 bytes: %+v", ca)
	}
	ok.nc.Close()
	if p := watch.nextPublish(); p.Topic != "will/ok3" {
		t.Fatalf("will on %q", p.Topic)
	}
	watch.noPacket(100 * time.Millisecond)
}
