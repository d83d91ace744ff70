package mqtt

// End-to-end tests of MQTT 5 against a third-party client (github.com/eclipse/paho.golang) over real
// sockets. Each test names the OASIS MQTT 5.0 normative statements it checks. Protocol errors from raw
// bytes are tested elsewhere; these tests are what a well-behaved client sees.

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

// TestV5ConnackProperties_MQTT_3_2_2: the CONNACK a paho client sees announces the connector's limits
// and what the broker supports; an empty client id gets one assigned [MQTT-3.2.2-16]; a keep-alive over
// the connector's maximum is answered with Server Keep Alive [MQTT-3.2.2-21]; Response Information only
// when asked for [MQTT-3.1.2-28].
func TestV5ConnackProperties_MQTT_3_2_2(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) {
		c.MQTT.ReceiveMaximum = 100
		c.MQTT.TopicAliasMaximum = 8
		c.MQTT.ResponseTopicPrefix = "resp/"
		c.MQTT.MaxMessageLength = 1 << 20
		c.MQTT.MaxKeepAlive = 10 * time.Second
	})
	cp := connectV5("")
	cp.KeepAlive = 60
	c1 := dialV5(t, b.addr, cp)
	p := c1.ca.Properties
	switch {
	case c1.ca.ReasonCode != 0 || c1.ca.SessionPresent:
		t.Fatalf("CONNACK %+v", c1.ca)
	case p.ReceiveMaximum == nil || *p.ReceiveMaximum != 100:
		t.Errorf("Receive Maximum %v, want 100", p.ReceiveMaximum)
	case p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != 8:
		t.Errorf("Topic Alias Maximum %v, want 8", p.TopicAliasMaximum)
	case p.MaximumPacketSize == nil || *p.MaximumPacketSize != 1<<20:
		t.Errorf("Maximum Packet Size %v, want %d", p.MaximumPacketSize, 1<<20)
	case p.MaximumQoS != nil:
		t.Errorf("Maximum QoS %d present, but every QoS is supported [MQTT-3.2.2-9]", *p.MaximumQoS)
	case !p.RetainAvailable || !p.WildcardSubAvailable || !p.SharedSubAvailable || !p.SubIDAvailable:
		t.Errorf("availability: retain %v wildcard %v shared %v subscription id %v, want all true",
			p.RetainAvailable, p.WildcardSubAvailable, p.SharedSubAvailable, p.SubIDAvailable)
	case p.ServerKeepAlive == nil || *p.ServerKeepAlive != 10:
		t.Errorf("Server Keep Alive %v, want 10 [MQTT-3.2.2-21]", p.ServerKeepAlive)
	case p.ResponseInfo != "":
		t.Errorf("Response Information %q without a request [MQTT-3.1.2-28]", p.ResponseInfo)
	}
	id := p.AssignedClientID
	if id == "" || c1.c.ClientID() != id {
		t.Fatalf("assigned client id %q (client uses %q) [MQTT-3.2.2-16]", id, c1.c.ClientID())
	}
	c2 := dialV5(t, b.addr, connectV5(""))
	if id2 := c2.ca.Properties.AssignedClientID; id2 == "" || id2 == id {
		t.Errorf("second assigned id %q, first %q: want distinct ids", id2, id)
	}
	// The assigned id is the session's: the client works under it.
	c1.sub("cid/x", 1)
	c2.pub("cid/x", "hello", 1)
	if got := c1.waitN(1); string(got[0].p.Payload) != "hello" {
		t.Fatalf("got %q", got[0].p.Payload)
	}

	// A keep-alive within the maximum is not answered; Response Information when requested.
	cp = withProps(connectV5("rr"), &paho5.ConnectProperties{RequestResponseInfo: true, RequestProblemInfo: true})
	cp.KeepAlive = 5
	c3 := dialV5(t, b.addr, cp)
	if p := c3.ca.Properties; p.ServerKeepAlive != nil || p.ResponseInfo != "resp/rr" || p.AssignedClientID != "" {
		t.Errorf("keep alive %v, response information %q, assigned id %q: want none, resp/rr, none",
			p.ServerKeepAlive, p.ResponseInfo, p.AssignedClientID)
	}
}

// TestV5PublishPropertiesForwarded_MQTT_3_3_2: the message properties of a PUBLISH reach a v5
// subscriber unchanged: Payload Format Indicator [MQTT-3.3.2-4], Content Type [MQTT-3.3.2-20],
// Response Topic [MQTT-3.3.2-15], Correlation Data [MQTT-3.3.2-16], User Properties in their order, with
// repeated names [MQTT-3.3.2-17] [MQTT-3.3.2-18]; Message Expiry Interval as what is left
// [MQTT-3.3.2-6].
func TestV5PublishPropertiesForwarded_MQTT_3_3_2(t *testing.T) {
	b := startBroker(t, nil)
	sub := dialV5(t, b.addr, connectV5("sub"))
	sub.sub("props/#", 1)
	pub := dialV5(t, b.addr, connectV5("pub"))
	users := paho5.UserProperties{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}, {Key: "", Value: ""}}
	r := pub.publish(&paho5.Publish{Topic: "props/x", QoS: 1, Payload: []byte("héllo"), Properties: &paho5.PublishProperties{
		PayloadFormat:   ptr(byte(1)),
		MessageExpiry:   ptr(uint32(60)),
		ContentType:     "text/plain; charset=utf-8",
		ResponseTopic:   "reply/pub/1",
		CorrelationData: []byte{0, 1, 2, 0xff},
		User:            users,
	}})
	if r.ReasonCode != 0 {
		t.Fatalf("PUBACK reason %#x", r.ReasonCode)
	}
	// Without properties, none are made up.
	pub.pub("props/y", "plain", 1)
	got := sub.waitN(2)
	p := got[0].p
	pp := p.Properties
	switch {
	case got[0].topic != "props/x" || string(p.Payload) != "héllo" || p.QoS != 1:
		t.Fatalf("got %q %q QoS %d", got[0].topic, p.Payload, p.QoS)
	case pp.PayloadFormat == nil || *pp.PayloadFormat != 1:
		t.Errorf("payload format %v, want 1", pp.PayloadFormat)
	case pp.ContentType != "text/plain; charset=utf-8":
		t.Errorf("content type %q", pp.ContentType)
	case pp.ResponseTopic != "reply/pub/1":
		t.Errorf("response topic %q", pp.ResponseTopic)
	case string(pp.CorrelationData) != "\x00\x01\x02\xff":
		t.Errorf("correlation data %x", pp.CorrelationData)
	case !slices.Equal(pp.User, users):
		t.Errorf("user properties %v, want %v in that order", pp.User, users)
	case pp.MessageExpiry == nil || *pp.MessageExpiry > 60 || *pp.MessageExpiry < 55:
		t.Errorf("message expiry %v, want what is left of 60", pp.MessageExpiry)
	case pp.SubscriptionIdentifier != nil:
		t.Errorf("subscription identifier %d without one subscribed", *pp.SubscriptionIdentifier)
	}
	q := got[1].p.Properties
	if q.PayloadFormat != nil || q.MessageExpiry != nil || q.ContentType != "" || q.ResponseTopic != "" ||
		q.CorrelationData != nil || len(q.User) != 0 {
		t.Errorf("a message without properties got %+v", q)
	}
}

// TestV5MessageExpiryRetained_MQTT_3_3_2_5_6: a retained message is sent with what is left of its expiry
// interval [MQTT-3.3.2-6], and not at all once it expired [MQTT-3.3.2-5].
func TestV5MessageExpiryRetained_MQTT_3_3_2_5_6(t *testing.T) {
	b := startBroker(t, nil)
	pub := dialV5(t, b.addr, connectV5("pub"))
	start := time.Now()
	pub.publish(&paho5.Publish{Topic: "exp/r", QoS: 1, Retain: true, Payload: []byte("short"),
		Properties: &paho5.PublishProperties{MessageExpiry: ptr(uint32(2))}})
	pub.publish(&paho5.Publish{Topic: "exp/keep", QoS: 1, Retain: true, Payload: []byte("long"),
		Properties: &paho5.PublishProperties{MessageExpiry: ptr(uint32(3600))}})

	// The expiry interval is whole seconds: time passing is what this test waits for.
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
	s1 := dialV5(t, b.addr, connectV5("s1"))
	s1.sub("exp/r", 1)
	got := s1.waitN(1)
	if e := got[0].p.Properties.MessageExpiry; e == nil || *e != 1 {
		t.Fatalf("after 1.1 s of 2 s, expiry %v, want 1 left", e)
	}

	time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
	s2 := dialV5(t, b.addr, connectV5("s2"))
	s2.sub("exp/#", 1)
	got = s2.waitN(1)
	if len(got) != 1 || got[0].topic != "exp/keep" {
		t.Fatalf("got %d retained, first %q: want only exp/keep", len(got), got[0].topic)
	}
	// A marker published now arrives after anything the SUBSCRIBE sent: the expired message is not
	// behind it.
	pub.pub("exp/marker", "m", 1)
	if got := s2.waitN(2); len(got) != 2 || got[1].topic != "exp/marker" {
		t.Fatalf("got %v, want exp/keep then exp/marker", s2.payloads())
	}
}

// TestV5MessageExpiryQueued_MQTT_3_3_2_5: a message that expires while it waits for the subscriber's
// window is not sent [MQTT-3.3.2-5]; the one behind it is.
func TestV5MessageExpiryQueued_MQTT_3_3_2_5(t *testing.T) {
	b := startBroker(t, nil)
	r, _ := dialRaw5(t, b.addr, "slow", &packet.Properties{ReceiveMaximum: ptr(uint16(1))})
	r.subscribe5(1, 0, packet.Subscription{Filter: "qx", QoS: 1})
	pub := dialV5(t, b.addr, connectV5("pub"))
	pub.pub("qx", "first", 1)
	start := time.Now()
	pub.publish(&paho5.Publish{Topic: "qx", QoS: 1, Payload: []byte("expires"),
		Properties: &paho5.PublishProperties{MessageExpiry: ptr(uint32(1))}})
	pub.pub("qx", "last", 1)
	p := r.nextPublish()
	if string(p.Payload) != "first" {
		t.Fatalf("got %q", p.Payload)
	}
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond))) // the interval is whole seconds
	r.send(&packet.PubackPacket{PacketID: p.PacketID})
	if p := r.nextPublish(); string(p.Payload) != "last" {
		t.Fatalf("after the expiry got %q, want last", p.Payload)
	}
}

// TestV5MessageExpiryOffline_MQTT_3_3_2_5: a message kept for a session while its client is away is
// not sent once it expired [MQTT-3.3.2-5]; one that has not expired is, with what is left of its
// interval [MQTT-3.3.2-6].
func TestV5MessageExpiryOffline_MQTT_3_3_2_5(t *testing.T) {
	b := startBroker(t, nil)
	cp := func() *paho5.Connect {
		return withProps(&paho5.Connect{ClientID: "away"}, &paho5.ConnectProperties{SessionExpiryInterval: ptr(uint32(300))})
	}
	c := dialV5(t, b.addr, cp())
	c.sub("off/#", 1)
	c.disconnect()
	prototest.WaitFor(t, waitTime, func() bool { kept, online := sessionState(b, "away"); return kept && !online })
	pub := dialV5(t, b.addr, connectV5("pub"))
	start := time.Now()
	pub.publish(&paho5.Publish{Topic: "off/a", QoS: 1, Payload: []byte("expires"),
		Properties: &paho5.PublishProperties{MessageExpiry: ptr(uint32(1))}})
	pub.publish(&paho5.Publish{Topic: "off/a", QoS: 1, Payload: []byte("stays"),
		Properties: &paho5.PublishProperties{MessageExpiry: ptr(uint32(60))}})
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond))) // the interval is whole seconds
	c = dialV5(t, b.addr, cp())
	if !c.ca.SessionPresent {
		t.Fatal("session not kept")
	}
	pub.pub("off/a", "marker", 1)
	c.waitN(2)
	if got := c.payloads(); !slices.Equal(got, []string{"stays", "marker"}) {
		t.Fatalf("got %q, want the unexpired message and the marker", got)
	}
	if e := c.all()[0].p.Properties.MessageExpiry; e == nil || *e > 59 || *e < 55 {
		t.Errorf("expiry %v, want what is left of 60 after more than a second", e)
	}
}

// TestV5TopicAliasInbound_MQTT_3_3_2_12: topic aliases a paho publisher sets are resolved by the broker
// [MQTT-3.3.2-12], and may be set again to another topic.
func TestV5TopicAliasInbound_MQTT_3_3_2_12(t *testing.T) {
	b := startBroker(t, nil)
	sub := dialV5(t, b.addr, connectV5("sub"))
	sub.sub("ia/#", 1)
	pub := dialV5(t, b.addr, connectV5("pub"))
	if m := pub.ca.Properties.TopicAliasMaximum; m == nil || *m == 0 {
		t.Fatalf("Topic Alias Maximum %v", m)
	}
	send := func(topic string, alias uint16, payload string) {
		t.Helper()
		pub.publish(&paho5.Publish{Topic: topic, QoS: 1, Payload: []byte(payload),
			Properties: &paho5.PublishProperties{TopicAlias: ptr(alias)}})
	}
	send("ia/x", 1, "1")
	send("", 1, "2")
	send("ia/y", 2, "3")
	send("ia/z", 1, "4") // alias 1 now stands for ia/z
	send("", 1, "5")
	send("", 2, "6")
	want := []string{"ia/x 1", "ia/x 2", "ia/y 3", "ia/z 4", "ia/z 5", "ia/y 6"}
	var have []string
	for _, g := range sub.waitN(len(want)) {
		have = append(have, g.topic+" "+string(g.p.Payload))
	}
	if !slices.Equal(have, want) {
		t.Fatalf("got %v, want %v", have, want)
	}
}

// TestV5TopicAliasOutbound_MQTT_3_3_2_12: the broker assigns topic aliases to a subscriber, no more than
// its Topic Alias Maximum [MQTT-3.3.2-9] [MQTT-3.2.2-17] nor the connector's; a topic it has an alias
// for goes out with the alias alone, and paho resolves it [MQTT-3.3.2-12].
func TestV5TopicAliasOutbound_MQTT_3_3_2_12(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) {
		c.MQTT.TopicAliasMaximum = 2
		c.MQTT.ResponseTopicPrefix = "reply/"
	})
	// Paho's router resolves aliases to route a message to the handler of its topic.
	var routed [3]atomic.Int32
	rt := paho5.NewStandardRouter()
	for i := range routed {
		rt.RegisterHandler(fmt.Sprintf("ta/%d", i+1), func(*paho5.Publish) { routed[i].Add(1) })
	}
	one := dialV5(t, b.addr, withProps(connectV5("one"), &paho5.ConnectProperties{TopicAliasMaximum: ptr(uint16(1))}),
		func(c *paho5.ClientConfig) { c.Router = rt })
	ten := dialV5(t, b.addr, withProps(connectV5("ten"), &paho5.ConnectProperties{TopicAliasMaximum: ptr(uint16(10))}))
	none := dialV5(t, b.addr, connectV5("none"))
	for _, c := range []*v5client{one, ten, none} {
		c.sub("ta/+", 1)
	}
	pub := dialV5(t, b.addr, connectV5("pub"))
	topics := []string{"ta/1", "ta/2", "ta/3", "ta/1", "ta/2", "ta/3", "ta/1"}
	for i, tp := range topics {
		pub.pub(tp, fmt.Sprint(i), 1)
	}
	// wire describes what a packet carried: "topic" / "topic+alias" / "+alias".
	check := func(name string, c *v5client, want []string) {
		t.Helper()
		got := c.waitN(len(topics))
		var wire []string
		for i, g := range got {
			if g.topic != topics[i] || string(g.p.Payload) != fmt.Sprint(i) {
				t.Errorf("%s: message %d resolved to %q %q, want %q", name, i, g.topic, g.p.Payload, topics[i])
			}
			w := g.p.Topic
			if a := g.p.Properties.TopicAlias; a != nil {
				w += fmt.Sprintf("+%d", *a)
			}
			wire = append(wire, w)
		}
		if !slices.Equal(wire, want) {
			t.Errorf("%s: on the wire %v, want %v", name, wire, want)
		}
		if len(c.badTA) > 0 {
			t.Errorf("%s: aliases %v sent alone before they were set", name, c.badTA)
		}
	}
	check("max 1", one, []string{"ta/1+1", "ta/2", "ta/3", "+1", "ta/2", "ta/3", "+1"})
	check("max 10, connector 2", ten, []string{"ta/1+1", "ta/2+2", "ta/3", "+1", "+2", "ta/3", "+1"})
	check("no aliases", none, topics)
	for i, want := range []int32{3, 2, 2} {
		if n := routed[i].Load(); n != want {
			t.Errorf("paho routed %d messages to ta/%d, want %d", n, i+1, want)
		}
	}
}

// TestV5NoLocal_MQTT_3_8_3_3: a subscription with No Local does not get the messages its own connection
// publishes [MQTT-3.8.3-3], on a session that ends with the connection and on one that outlives it;
// other clients' messages still arrive, and another subscriber still gets its messages.
func TestV5NoLocal_MQTT_3_8_3_3(t *testing.T) {
	for _, expiry := range []uint32{0, 300} {
		t.Run(fmt.Sprintf("expiry=%d", expiry), func(t *testing.T) {
			b := startBroker(t, nil)
			me := dialV5(t, b.addr, withProps(connectV5("me"), &paho5.ConnectProperties{SessionExpiryInterval: ptr(expiry)}))
			me.subscribe(&paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "nl/#", QoS: 1, NoLocal: true}}})
			other := dialV5(t, b.addr, connectV5("other"))
			other.sub("nl/#", 1)
			me.pub("nl/x", "mine", 1)
			other.pub("nl/x", "theirs", 1)
			me.pub("nl/x", "mine again", 1)
			other.pub("nl/x", "theirs again", 1)
			if got := me.waitN(2); !slices.Equal(me.payloads(), []string{"theirs", "theirs again"}) {
				t.Fatalf("no-local subscriber got %v (%d)", me.payloads(), len(got))
			}
			other.waitN(4)
			if want := []string{"mine", "theirs", "mine again", "theirs again"}; !slices.Equal(other.payloads(), want) {
				t.Fatalf("other got %v, want %v", other.payloads(), want)
			}
		})
	}
}

// TestV5RetainAsPublished_MQTT_3_3_1_12_13: a message forwarded to a subscription with Retain As
// Published keeps its RETAIN flag [MQTT-3.3.1-13]; without it the flag is cleared [MQTT-3.3.1-12].
// Retained messages sent because of the SUBSCRIBE have it set either way. Both for a session that ends
// with its connection and for one that outlives it (its subscriptions are durable).
func TestV5RetainAsPublished_MQTT_3_3_1_12_13(t *testing.T) {
	for _, expiry := range []uint32{0, 300} {
		t.Run(fmt.Sprintf("expiry=%d", expiry), func(t *testing.T) {
			b := startBroker(t, nil)
			pub := dialV5(t, b.addr, connectV5("pub"))
			pub.publish(&paho5.Publish{Topic: "rap/x", QoS: 1, Retain: true, Payload: []byte("stored")})
			props := &paho5.ConnectProperties{SessionExpiryInterval: ptr(expiry)}
			rap := dialV5(t, b.addr, withProps(connectV5("rap"), props))
			rap.subscribe(&paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "rap/#", QoS: 1, RetainAsPublished: true}}})
			plain := dialV5(t, b.addr, withProps(connectV5("plain"), props))
			plain.sub("rap/#", 1)
			pub.publish(&paho5.Publish{Topic: "rap/x", QoS: 1, Retain: true, Payload: []byte("live retained")})
			pub.pub("rap/x", "live", 1)
			for _, c := range []struct {
				name string
				cl   *v5client
				want []bool
			}{{"retain as published", rap, []bool{true, true, false}}, {"plain", plain, []bool{true, false, false}}} {
				got := c.cl.waitN(3)
				var flags []bool
				for _, g := range got {
					flags = append(flags, g.p.Retain)
				}
				if !slices.Equal(c.cl.payloads(), []string{"stored", "live retained", "live"}) || !slices.Equal(flags, c.want) {
					t.Errorf("%s: got %v with RETAIN %v, want RETAIN %v", c.name, c.cl.payloads(), flags, c.want)
				}
			}
		})
	}
}

// TestV5RetainHandling_MQTT_3_3_1_9_10_11: Retain Handling 0 sends the retained messages at every
// SUBSCRIBE [MQTT-3.3.1-9], 1 only when the subscription is new [MQTT-3.3.1-10], 2 never
// [MQTT-3.3.1-11].
func TestV5RetainHandling_MQTT_3_3_1_9_10_11(t *testing.T) {
	b := startBroker(t, nil)
	pub := dialV5(t, b.addr, connectV5("pub"))
	pub.publish(&paho5.Publish{Topic: "rh/x", QoS: 1, Retain: true, Payload: []byte("kept")})
	for rh, want := range [][]string{
		{"kept", "kept", "live"},
		{"kept", "live"},
		{"live"},
	} {
		t.Run(fmt.Sprintf("rh=%d", rh), func(t *testing.T) {
			c := dialV5(t, b.addr, connectV5(fmt.Sprintf("rh%d", rh)))
			s := &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "rh/#", QoS: 1, RetainHandling: byte(rh)}}}
			c.subscribe(s)
			c.subscribe(s) // the subscription exists now
			// Published after both SUBACKs: anything the SUBSCRIBEs sent arrived before it.
			pub.pub("rh/x", "live", 1)
			c.waitN(len(want))
			if got := c.payloads(); !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			c.disconnect()
		})
	}
}

// TestV5SubscriptionIdentifier_MQTT_3_3_4_3: a message delivered for a subscription made with a
// Subscription Identifier carries it, also a retained message sent because of the SUBSCRIBE; one made
// without carries none. A SUBSCRIBE that replaces a subscription replaces its identifier.
func TestV5SubscriptionIdentifier_MQTT_3_3_4_3(t *testing.T) {
	b := startBroker(t, nil)
	pub := dialV5(t, b.addr, connectV5("pub"))
	pub.publish(&paho5.Publish{Topic: "si/r", QoS: 1, Retain: true, Payload: []byte("retained")})
	c := dialV5(t, b.addr, connectV5("c"))
	c.subscribe(&paho5.Subscribe{Properties: &paho5.SubscribeProperties{SubscriptionIdentifier: ptr(7)},
		Subscriptions: []paho5.SubscribeOptions{{Topic: "si/#", QoS: 1}}})
	c.subscribe(&paho5.Subscribe{Properties: &paho5.SubscribeProperties{SubscriptionIdentifier: ptr(268435455)},
		Subscriptions: []paho5.SubscribeOptions{{Topic: "max/+", QoS: 0}}})
	c.sub("none", 1)
	pub.pub("si/a", "a", 1)
	pub.pub("max/b", "b", 0)
	pub.pub("none", "c", 1)
	// Replaced without an identifier: none any more.
	c.subscribe(&paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "si/#", QoS: 1, RetainHandling: 2}}})
	pub.pub("si/a", "d", 1)
	want := []struct {
		payload string
		id      int
	}{{"retained", 7}, {"a", 7}, {"b", 268435455}, {"c", 0}, {"d", 0}}
	got := c.waitN(len(want))
	for i, w := range want {
		id := 0
		if p := got[i].p.Properties.SubscriptionIdentifier; p != nil {
			id = *p
		}
		if string(got[i].p.Payload) != w.payload || id != w.id {
			t.Errorf("message %d: %q with id %d, want %q with %d", i, got[i].p.Payload, id, w.payload, w.id)
		}
	}
}

// TestV5OverlappingSubscriptionIdentifiers_MQTT_3_3_4_4_5: a message matching several subscriptions of
// one client carries the identifiers of all of them when one copy is sent [MQTT-3.3.4-3]
// [MQTT-3.3.4-4], and each copy its own subscription's when several are sent [MQTT-3.3.4-5]. Paho keeps
// one identifier per PUBLISH, so a byte-level client reads them.
func TestV5OverlappingSubscriptionIdentifiers_MQTT_3_3_4_4_5(t *testing.T) {
	for _, expiry := range []uint32{0, 300} {
		t.Run(fmt.Sprintf("expiry=%d", expiry), func(t *testing.T) {
			b := startBroker(t, nil)
			r, _ := dialRaw5(t, b.addr, "ov", &packet.Properties{SessionExpiryInterval: ptr(expiry)})
			r.subscribe5(1, 11, packet.Subscription{Filter: "ov/#", QoS: 1})
			r.subscribe5(2, 22, packet.Subscription{Filter: "ov/+/c", QoS: 1})
			r.subscribe5(3, 0, packet.Subscription{Filter: "+/b/c", QoS: 1}) // no identifier
			r.subscribe5(4, 44, packet.Subscription{Filter: "other", QoS: 1})
			pub := dialV5(t, b.addr, connectV5("pub"))
			pub.pub("ov/b/c", "x", 1)
			var ids [][]uint32
			for {
				p := r.nextPublish()
				if string(p.Payload) == "end" {
					break
				}
				if p.QoS > 0 {
					r.send(&packet.PubackPacket{PacketID: p.PacketID})
				}
				var got []uint32
				if p.Properties != nil {
					got = slices.Sorted(slices.Values(p.Properties.SubscriptionIdentifiers))
				}
				ids = append(ids, got)
				if len(ids) == 1 {
					pub.pub("ov/b/c", "end", 0) // after every copy of the first
				}
			}
			if expiry == 0 {
				// One copy [MQTT-3.3.5-1] with every identifier.
				if len(ids) != 1 || !slices.Equal(ids[0], []uint32{11, 22}) {
					t.Fatalf("got copies with identifiers %v, want one with [11 22]", ids)
				}
				return
			}
			// One copy per subscription, each with its own identifier (the third has none).
			slices.SortFunc(ids, func(a, b []uint32) int { return slices.Compare(a, b) })
			if fmt.Sprint(ids) != "[[] [11] [22]]" {
				t.Fatalf("got copies with identifiers %v, want [] [11] [22]", ids)
			}
		})
	}
}

// TestV5ReceiveMaximum_MQTT_3_3_4_9: the broker never has more QoS 1 and 2 PUBLISH packets
// unacknowledged towards a client than the client's Receive Maximum [MQTT-3.3.4-9]; each
// acknowledgement lets exactly one more go.
func TestV5ReceiveMaximum_MQTT_3_3_4_9(t *testing.T) {
	b := startBroker(t, nil)
	r, _ := dialRaw5(t, b.addr, "rm", &packet.Properties{ReceiveMaximum: ptr(uint16(3))})
	r.subscribe5(1, 0, packet.Subscription{Filter: "rm/#", QoS: 2})
	pub := dialV5(t, b.addr, connectV5("pub"))
	const n = 10
	for i := range n {
		pub.pub("rm/x", fmt.Sprint(i), byte(1+i%2))
	}
	var inflight []*packet.PublishPacket
	next := 0
	read := func(k int) {
		t.Helper()
		for range k {
			p := r.nextPublish()
			if string(p.Payload) != fmt.Sprint(next) {
				t.Fatalf("got %q, want %d", p.Payload, next)
			}
			next++
			inflight = append(inflight, p)
		}
		// Every message is queued for the client already (the publisher had its acknowledgements): a
		// PUBLISH beyond the window would be on the wire by now.
		r.noPacket(200 * time.Millisecond)
	}
	read(3)
	for next < n {
		p := inflight[0]
		inflight = inflight[1:]
		if p.QoS == 1 {
			r.send(&packet.PubackPacket{PacketID: p.PacketID})
		} else {
			// QoS 2 frees its slot at PUBCOMP, not at PUBREC [MQTT-3.3.4-9].
			r.send(&packet.PubrecPacket{PacketID: p.PacketID})
			if rel, ok := r.next().(*packet.PubrelPacket); !ok || rel.PacketID != p.PacketID {
				t.Fatalf("want PUBREL %d, got %#v", p.PacketID, rel)
			}
			r.noPacket(100 * time.Millisecond)
			r.send(&packet.PubcompPacket{PacketID: p.PacketID})
		}
		read(min(1, n-next))
	}
}

// TestV5ReceiveMaximumQoS0NotDelayed_MQTT_3_3_4_10: QoS 0 messages still go out while the client's
// Receive Maximum of QoS 1 messages is unacknowledged [MQTT-3.3.4-10].
func TestV5ReceiveMaximumQoS0NotDelayed_MQTT_3_3_4_10(t *testing.T) {
	b := startBroker(t, nil)
	r, _ := dialRaw5(t, b.addr, "rm0", &packet.Properties{ReceiveMaximum: ptr(uint16(1))})
	r.subscribe5(1, 0, packet.Subscription{Filter: "rm0/#", QoS: 1})
	pub := dialV5(t, b.addr, connectV5("pub"))
	pub.pub("rm0/a", "q1 first", 1)
	pub.pub("rm0/a", "q1 waits", 1)
	pub.pub("rm0/b", "q0", 0)
	var got []string
	for range 2 {
		got = append(got, string(r.nextPublish().Payload))
	}
	if !slices.Equal(got, []string{"q1 first", "q0"}) {
		t.Fatalf("with the window full got %q, want the QoS 0 message after the first", got)
	}
}

// TestV5MaximumPacketSize_MQTT_3_1_2_25: a message too large for a client's Maximum Packet Size is not
// sent to it [MQTT-3.1.2-24], and its session goes on as if it had been [MQTT-3.1.2-25]; a client
// without the limit gets it.
func TestV5MaximumPacketSize_MQTT_3_1_2_25(t *testing.T) {
	b := startBroker(t, nil)
	small := dialV5(t, b.addr, withProps(connectV5("small"), &paho5.ConnectProperties{MaximumPacketSize: ptr(uint32(100))}))
	big := dialV5(t, b.addr, connectV5("big"))
	for _, c := range []*v5client{small, big} {
		c.sub("mp/#", 1)
	}
	pub := dialV5(t, b.addr, connectV5("pub"))
	large := strings.Repeat("x", 200)
	pub.pub("mp/a", large, 1)
	pub.pub("mp/a", "small 1", 0)
	pub.publish(&paho5.Publish{Topic: "mp/a", QoS: 1, Payload: []byte(strings.Repeat("y", 60)),
		Properties: &paho5.PublishProperties{User: paho5.UserProperties{{Key: "k", Value: strings.Repeat("v", 40)}}}})
	pub.pub("mp/a", "small 2", 1)
	big.waitN(4)
	small.waitN(2)
	if got := small.payloads(); !slices.Equal(got, []string{"small 1", "small 2"}) {
		t.Fatalf("limited client got %q, want only the small ones", got)
	}
	if got := big.payloads(); len(got) != 4 || got[0] != large {
		t.Fatalf("unlimited client got %d messages", len(got))
	}
}

// TestV5SessionPresent_MQTT_3_2_2_2_3: a session with an expiry interval outlives its connection: Clean
// Start 0 resumes it with Session Present 1 [MQTT-3.1.2-5] [MQTT-3.2.2-2] and what was published meanwhile;
// Clean Start 1 discards it, with Session Present 0 [MQTT-3.1.2-4] [MQTT-3.2.2-3]. With expiry 0 nothing
// is kept [MQTT-3.1.2-23].
func TestV5SessionPresent_MQTT_3_2_2_2_3(t *testing.T) {
	b := startBroker(t, nil)
	pub := dialV5(t, b.addr, connectV5("pub"))
	connect := func(clean bool, expiry uint32) *v5client {
		t.Helper()
		cp := withProps(&paho5.Connect{ClientID: "sp", CleanStart: clean}, &paho5.ConnectProperties{SessionExpiryInterval: ptr(expiry)})
		return dialV5(t, b.addr, cp)
	}
	c := connect(true, 300)
	if c.ca.SessionPresent {
		t.Fatal("session present on the first connection")
	}
	c.sub("sp/#", 1)
	c.disconnect()
	prototest.WaitFor(t, waitTime, func() bool { kept, online := sessionState(b, "sp"); return kept && !online })
	pub.pub("sp/a", "while away", 1)

	c = connect(false, 300)
	if !c.ca.SessionPresent {
		t.Fatal("Session Present 0 for a session kept 300 s [MQTT-3.2.2-2]")
	}
	if got := c.waitN(1); string(got[0].p.Payload) != "while away" {
		t.Fatalf("got %q", got[0].p.Payload)
	}
	c.disconnect()

	c = connect(true, 0)
	if c.ca.SessionPresent {
		t.Fatal("Session Present 1 after Clean Start 1 [MQTT-3.2.2-3]")
	}
	pub.pub("sp/a", "after clean start", 1)
	c.sub("marker", 1)
	pub.pub("marker", "m", 1)
	if got := c.waitN(1); string(got[0].p.Payload) != "m" {
		t.Fatalf("the discarded session's subscription delivered %q", got[0].p.Payload)
	}
	c.disconnect()

	prototest.WaitFor(t, waitTime, func() bool { kept, _ := sessionState(b, "sp"); return !kept })
	c = connect(false, 0)
	if c.ca.SessionPresent {
		t.Fatal("Session Present 1 for a session of expiry 0 [MQTT-3.1.2-23]")
	}
}

// sessionState reports whether client id has a session on b's default host, and whether a connection
// is attached to it.
func sessionState(b *broker, id string) (kept, online bool) {
	r := b.h.registry(b.host)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[id]
	return s != nil, s != nil && s.att != nil
}

// TestV5AndV311Interoperate: an MQTT 3.1.1 subscriber gets the plain payload of an MQTT 5 PUBLISH with
// properties (it has no way to carry them), and an MQTT 5 subscriber gets an MQTT 3.1.1 PUBLISH, with no
// properties made up.
func TestV5AndV311Interoperate(t *testing.T) {
	b := startBroker(t, nil)
	old := pahoClient(t, b.addr, "old", nil)
	in := subscribe(t, old, "mix/#", 1)
	v5 := dialV5(t, b.addr, connectV5("new"))
	v5.sub("mix/#", 1)
	v5.publish(&paho5.Publish{Topic: "mix/5", QoS: 1, Payload: []byte("from v5"), Properties: &paho5.PublishProperties{
		ContentType: "text/plain", ResponseTopic: "mix/reply", CorrelationData: []byte("id"),
		PayloadFormat: ptr(byte(1)), MessageExpiry: ptr(uint32(60)),
		User: paho5.UserProperties{{Key: "k", Value: "v"}},
	}})
	waitToken(t, old.Publish("mix/3", 1, false, "from 3.1.1"))
	msgs := in.waitN(t, 2)
	if msgs[0] != (got{topic: "mix/5", payload: "from v5", qos: 1}) || msgs[1].payload != "from 3.1.1" {
		t.Fatalf("3.1.1 subscriber got %+v", msgs)
	}
	g := v5.waitN(2)
	p := g[1].p
	if g[1].topic != "mix/3" || string(p.Payload) != "from 3.1.1" || p.QoS != 1 {
		t.Fatalf("v5 subscriber got %q %q QoS %d", g[1].topic, p.Payload, p.QoS)
	}
	if q := p.Properties; q.ContentType != "" || q.ResponseTopic != "" || q.CorrelationData != nil ||
		q.PayloadFormat != nil || q.MessageExpiry != nil || len(q.User) != 0 {
		t.Fatalf("a 3.1.1 message reached the v5 subscriber with properties %+v", q)
	}
}
