package mqtt

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// TestMQTT_3_8_4_6_DeliveredQoSIsMinimum publishes at every QoS to subscribers at every QoS: each gets
// the message at min(published, granted) [MQTT-3.8.4-6].
func TestMQTT_3_8_4_6_DeliveredQoSIsMinimum(t *testing.T) {
	b := startBroker(t, nil)
	pub := pahoClient(t, b.addr, "pub", nil)
	for sq := byte(0); sq <= 2; sq++ {
		sub := pahoClient(t, b.addr, "sub"+strconv.Itoa(int(sq)), nil)
		in := subscribe(t, sub, fmt.Sprintf("qos/%d/+", sq), sq)
		for pq := byte(0); pq <= 2; pq++ {
			waitToken(t, pub.Publish(fmt.Sprintf("qos/%d/%d", sq, pq), pq, false, fmt.Sprintf("p%d", pq)))
		}
		msgs := in.waitN(t, 3)
		slices.SortFunc(msgs, func(a, b got) int { return int(a.payload[1]) - int(b.payload[1]) })
		for pq, m := range msgs {
			if want := min(byte(pq), sq); m.qos != want || m.retained || m.dup {
				t.Errorf("published QoS %d, subscribed QoS %d: got %+v, want QoS %d", pq, sq, m, want)
			}
		}
	}
}

// TestMQTT_3_3_4_1_PubackAfterRouting: a QoS 1 PUBLISH is acknowledged, and the message is already
// routed when the PUBACK arrives.
func TestMQTT_3_3_4_1_PubackAfterRouting(t *testing.T) {
	b := startBroker(t, nil)
	sub := dialRaw(t, b.addr)
	sub.connect("sub", true)
	sub.subscribe(1, 1, "x")
	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	pub.publish("x", "one", 1, false, 42)
	p := sub.nextPublish()
	if p.Topic != "x" || string(p.Payload) != "one" || p.QoS != 1 || p.PacketID == 0 || p.Dup || p.Retain {
		t.Fatalf("got %+v", p)
	}
	sub.send(&packet.PubackPacket{PacketID: p.PacketID})
}

// TestMQTT_4_3_3_QoS2ExactlyOnceInbound: a QoS 2 PUBLISH resent with DUP before PUBREL is not routed
// again [MQTT-4.3.3-2]; the flow ends with PUBCOMP.
func TestMQTT_4_3_3_QoS2ExactlyOnceInbound(t *testing.T) {
	b := startBroker(t, nil)
	sub := pahoClient(t, b.addr, "sub", nil)
	in := subscribe(t, sub, "once", 2)

	r := dialRaw(t, b.addr)
	r.connect("pub2", true)
	r.send(&packet.PublishPacket{Topic: "once", Payload: []byte("1"), QoS: 2, PacketID: 7})
	if p, ok := r.next().(*packet.PubrecPacket); !ok || p.PacketID != 7 {
		t.Fatalf("want PUBREC 7, got %#v", p)
	}
	r.send(&packet.PublishPacket{Topic: "once", Payload: []byte("1"), QoS: 2, PacketID: 7, Dup: true})
	if p, ok := r.next().(*packet.PubrecPacket); !ok || p.PacketID != 7 {
		t.Fatalf("want PUBREC 7 again, got %#v", p)
	}
	r.send(&packet.PubrelPacket{PacketID: 7})
	if p, ok := r.next().(*packet.PubcompPacket); !ok || p.PacketID != 7 {
		t.Fatalf("want PUBCOMP 7, got %#v", p)
	}
	// The id is free again: a new message with it is routed.
	r.send(&packet.PublishPacket{Topic: "once", Payload: []byte("2"), QoS: 2, PacketID: 7})
	r.next()
	r.send(&packet.PubrelPacket{PacketID: 7})
	r.next()
	in.waitN(t, 2)
	time.Sleep(50 * time.Millisecond) // room for a wrong third copy
	if msgs := in.all(); len(msgs) != 2 || msgs[0].payload != "1" || msgs[1].payload != "2" || msgs[0].qos != 2 {
		t.Fatalf("got %+v, want 1 then 2 at QoS 2", msgs)
	}
}

// TestMQTT_4_3_3_QoS2Outbound walks the server-side sender flow PUBLISH → PUBREC → PUBREL → PUBCOMP.
func TestMQTT_4_3_3_QoS2Outbound(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.connect("q2", true)
	r.subscribe(1, 2, "q2/t")
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("q2/t", 2, false, "x"))
	p := r.nextPublish()
	if p.QoS != 2 || p.PacketID == 0 {
		t.Fatalf("got %+v", p)
	}
	r.send(&packet.PubrecPacket{PacketID: p.PacketID})
	if rel, ok := r.next().(*packet.PubrelPacket); !ok || rel.PacketID != p.PacketID {
		t.Fatalf("want PUBREL %d, got %#v", p.PacketID, rel)
	}
	r.send(&packet.PubcompPacket{PacketID: p.PacketID})
	// The window is free: a PINGREQ round trip shows the connection healthy.
	r.send(&packet.PingreqPacket{})
	if _, ok := r.next().(*packet.PingrespPacket); !ok {
		t.Fatal("want PINGRESP")
	}
}

// TestMQTT_3_8_4_5_SubackReturnCodePerFilter: one code per filter, in order, 0x80 for a bad one.
func TestMQTT_3_8_4_5_SubackReturnCodePerFilter(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.connect("s", true)
	r.send(&packet.SubscribePacket{PacketID: 3, Subscriptions: []packet.Subscription{
		{Filter: "a/+", QoS: 1}, {Filter: "a/#/b", QoS: 1}, {Filter: "a/b#", QoS: 0},
		{Filter: "$share//x", QoS: 0}, {Filter: "$share/g/x/#", QoS: 2}, {Filter: "c", QoS: 2},
	}})
	sa, ok := r.next().(*packet.SubackPacket)
	if !ok || sa.PacketID != 3 {
		t.Fatalf("want SUBACK 3, got %#v", sa)
	}
	if want := []byte{1, 0x80, 0x80, 0x80, 2, 2}; !slices.Equal(sa.ReturnCodes, want) {
		t.Fatalf("codes %x, want %x", sa.ReturnCodes, want)
	}
}

// TestMQTT_3_3_1_RetainedSetDeliverAndClear: a retained message goes to later subscribers with the
// RETAIN flag [MQTT-3.3.1-8], live copies go without it [MQTT-3.3.1-9], and an empty retained payload
// clears it [MQTT-3.3.1-10].
func TestMQTT_3_3_1_RetainedSetDeliverAndClear(t *testing.T) {
	b := startBroker(t, nil)
	live := dialRaw(t, b.addr)
	live.connect("live", true)
	live.subscribe(1, 1, "r/+")

	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	pub.publish("r/1", "v1", 1, true, 1)
	if p := live.nextPublish(); p.Retain || string(p.Payload) != "v1" {
		t.Fatalf("live copy: %+v, want RETAIN 0 [MQTT-3.3.1-9]", p)
	}

	late := dialRaw(t, b.addr)
	late.connect("late", true)
	late.subscribe(1, 1, "r/#")
	if p := late.nextPublish(); !p.Retain || string(p.Payload) != "v1" || p.Topic != "r/1" || p.QoS != 1 {
		t.Fatalf("retained copy: %+v, want RETAIN 1 [MQTT-3.3.1-8]", p)
	}

	pub.publish("r/1", "", 1, true, 2) // clears
	late2 := dialRaw(t, b.addr)
	late2.connect("late2", true)
	late2.subscribe(1, 1, "r/#")
	if p := late2.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("after clearing got %#v, want nothing [MQTT-3.3.1-10]", p)
	}
}

// TestMQTT_3_3_1_6_ThousandRetainedToWildcard: every retained message reaches a '#' subscriber.
func TestMQTT_3_3_1_6_ThousandRetainedToWildcard(t *testing.T) {
	b := startBroker(t, nil)
	pub := dialRaw(t, b.addr)
	pub.connect("pub", true)
	const n = 1000
	for i := range n {
		// Half at QoS 1, pipelined: their PUBACKs are read below.
		pub.send(&packet.PublishPacket{Topic: fmt.Sprintf("ret/%d", i), Payload: []byte("v"), Retain: true,
			QoS: byte(i % 2), PacketID: uint16(i % 2 * (i + 1))})
	}
	for range n / 2 {
		if _, ok := pub.next().(*packet.PubackPacket); !ok {
			t.Fatal("want PUBACK")
		}
	}
	for _, qos := range []byte{0, 1} {
		r := dialRaw(t, b.addr)
		r.connect("all"+strconv.Itoa(int(qos)), true)
		r.subscribe(1, qos, "#")
		seen := make(map[string]bool)
		for len(seen) < n {
			p := r.nextPublish()
			if !p.Retain {
				t.Fatalf("got %+v without RETAIN", p)
			}
			if p.QoS == 1 {
				r.send(&packet.PubackPacket{PacketID: p.PacketID})
			}
			seen[p.Topic] = true
		}
	}
}

// TestMQTT_3_10_4_UnsubscribeStopsDelivery: after UNSUBACK nothing more arrives.
func TestMQTT_3_10_4_UnsubscribeStopsDelivery(t *testing.T) {
	b := startBroker(t, nil)
	sub := pahoClient(t, b.addr, "sub", nil)
	in := subscribe(t, sub, "u/#", 1)
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("u/1", 1, false, "before"))
	in.waitN(t, 1)
	waitToken(t, sub.Unsubscribe("u/#"))
	waitToken(t, pub.Publish("u/1", 1, false, "after"))
	time.Sleep(100 * time.Millisecond)
	if msgs := in.all(); len(msgs) != 1 {
		t.Fatalf("got %+v after unsubscribe", msgs)
	}
	// An UNSUBSCRIBE for a filter never subscribed is still acknowledged [MQTT-3.10.4-5].
	r := dialRaw(t, b.addr)
	r.connect("u", true)
	r.send(&packet.UnsubscribePacket{PacketID: 9, Filters: []string{"never"}})
	if ua, ok := r.next().(*packet.UnsubackPacket); !ok || ua.PacketID != 9 {
		t.Fatalf("want UNSUBACK 9, got %#v", ua)
	}
}

// TestMQTT_4_8_0_1_MalformedPacketClosesConnection covers broken packets after CONNECT.
func TestMQTT_4_8_0_1_MalformedPacketClosesConnection(t *testing.T) {
	cases := map[string][]byte{
		"subscribe reserved flags":  {0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}, // [MQTT-3.8.1-1]
		"subscribe qos 3":           {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03}, // [MQTT-3.8.3-4]
		"publish qos 3":             {0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01},
		"remaining length too long": {0x30, 0xff, 0xff, 0xff, 0xff, 0x01},
		"publish wildcard topic":    {0x30, 0x04, 0x00, 0x02, 'a', '+'}, // [MQTT-3.3.2-2]
		"server packet from client": {0x20, 0x02, 0x00, 0x00},           // CONNACK
	}
	b := startBroker(t, nil)
	for name, bytes := range cases {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, b.addr)
			r.connect("m", true)
			r.sendBytes(bytes)
			r.expectClosed()
		})
	}
}

// TestOversizedPublishClosesConnection: a PUBLISH over max_message_length closes the connection and is
// not routed.
func TestOversizedPublishClosesConnection(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.MaxMessageLength = 1024 })
	sub := dialRaw(t, b.addr)
	sub.connect("sub", true)
	sub.subscribe(1, 0, "big")
	r := dialRaw(t, b.addr)
	r.connect("big", true)
	r.send(&packet.PublishPacket{Topic: "big", Payload: make([]byte, 2000)})
	r.expectClosed()
	if p := sub.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("oversized message routed: %#v", p)
	}
	// Just under the limit passes.
	r = dialRaw(t, b.addr)
	r.connect("small", true)
	r.send(&packet.PublishPacket{Topic: "big", Payload: make([]byte, 1000)})
	if p := sub.nextPublish(); len(p.Payload) != 1000 {
		t.Fatalf("got %d bytes", len(p.Payload))
	}
}

// TestQueuePrefixRoundRobin: topics under queue_prefix are queues; two consumers share the messages.
func TestQueuePrefixRoundRobin(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.QueuePrefix = "queue/" })
	c1 := pahoClient(t, b.addr, "w1", nil)
	c2 := pahoClient(t, b.addr, "w2", nil)
	in1 := subscribe(t, c1, "queue/jobs", 1)
	in2 := subscribe(t, c2, "queue/jobs", 1)
	// A topic subscriber with a matching wildcard sees nothing: queues are a separate namespace.
	tsub := pahoClient(t, b.addr, "topic", nil)
	tin := subscribe(t, tsub, "#", 0)

	pub := pahoClient(t, b.addr, "pub", nil)
	const n = 10
	for i := range n {
		waitToken(t, pub.Publish("queue/jobs", 1, false, strconv.Itoa(i)))
	}
	deadline := time.Now().Add(waitTime)
	for in1.len()+in2.len() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if in1.len() != n/2 || in2.len() != n/2 {
		t.Fatalf("consumer 1 got %d, consumer 2 got %d, want %d each", in1.len(), in2.len(), n/2)
	}
	for _, m := range append(in1.all(), in2.all()...) {
		if m.topic != "queue/jobs" || m.qos != 1 {
			t.Fatalf("got %+v", m)
		}
	}
	if tin.len() != 0 {
		t.Fatalf("topic subscriber got queue messages: %+v", tin.all())
	}
}

// TestQueueUnackedRedeliveredToOtherConsumer: a QoS 1 queue message not acknowledged by a consumer that
// goes away is redelivered to another, marked DUP.
func TestQueueUnackedRedeliveredToOtherConsumer(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.QueuePrefix = "queue/" })
	r := dialRaw(t, b.addr)
	r.connect("lazy", true)
	r.subscribe(1, 1, "queue/q")
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("queue/q", 1, false, "job"))
	if p := r.nextPublish(); string(p.Payload) != "job" {
		t.Fatalf("got %+v", p)
	}
	_ = r.nc.Close() // no PUBACK

	c := pahoClient(t, b.addr, "worker", nil)
	in := subscribe(t, c, "queue/q", 1)
	if m := in.waitN(t, 1)[0]; m.payload != "job" || !m.dup {
		t.Fatalf("redelivery: %+v, want job with DUP", m)
	}
}

// TestQueueQoS0ConsumerAutoAck: a QoS 0 queue subscriber gets every message once.
func TestQueueQoS0ConsumerAutoAck(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.QueuePrefix = "queue/" })
	pub := pahoClient(t, b.addr, "pub", nil)
	for i := range 5 {
		waitToken(t, pub.Publish("queue/auto", 1, false, strconv.Itoa(i)))
	}
	c := pahoClient(t, b.addr, "w", nil)
	in := subscribe(t, c, "queue/auto", 0)
	msgs := in.waitN(t, 5)
	for i, m := range msgs {
		if m.payload != strconv.Itoa(i) || m.qos != 0 {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	if d := b.host.Router.QueueDepth([]string{"auto"}); d != 0 {
		t.Fatalf("queue depth %d after delivery", d)
	}
}

// TestMQTT_4_7_2_1_DollarTopicsNotMatchedByLeadingWildcard.
func TestMQTT_4_7_2_1_DollarTopicsNotMatchedByLeadingWildcard(t *testing.T) {
	b := startBroker(t, nil)
	all := pahoClient(t, b.addr, "all", nil)
	inAll := subscribe(t, all, "#", 0)
	sys := pahoClient(t, b.addr, "sys", nil)
	inSys := subscribe(t, sys, "$SYS/#", 0)
	pub := pahoClient(t, b.addr, "pub", nil)
	// Only the broker publishes under $SYS (clients are refused there, §4.7.2): as management does.
	b.host.Router.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"$SYS", "x"}},
		Body: []byte("s"), Internal: true})
	waitToken(t, pub.Publish("plain", 0, false, "p"))
	inSys.waitN(t, 1)
	inAll.waitN(t, 1)
	time.Sleep(50 * time.Millisecond) // room for a wrong $SYS copy
	if msgs := inAll.all(); len(msgs) != 1 || msgs[0].topic != "plain" {
		t.Fatalf("'#' got %+v", msgs)
	}
}

// TestOverlappingSubscriptionsDeliverOneCopy: two matching filters of one session give one copy at the
// highest granted QoS.
func TestOverlappingSubscriptionsDeliverOneCopy(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.connect("o", true)
	r.subscribe(1, 0, "o/#")
	r.subscribe(2, 2, "o/+")
	r.subscribe(3, 1, "o/x")
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("o/x", 2, false, "one"))
	waitToken(t, pub.Publish("o/y/z", 2, false, "two"))
	p := r.nextPublish()
	if string(p.Payload) != "one" || p.QoS != 2 {
		t.Fatalf("got %+v, want one at QoS 2", p)
	}
	r.send(&packet.PubrecPacket{PacketID: p.PacketID})
	// PUBREL and the second message, in either order.
	var rel, two int
	for range 2 {
		switch p := r.next().(type) {
		case *packet.PubrelPacket:
			rel++
		case *packet.PublishPacket:
			if string(p.Payload) != "two" || p.QoS != 0 {
				t.Fatalf("got %+v, want two at QoS 0", p)
			}
			two++
		}
	}
	if rel != 1 || two != 1 {
		t.Fatalf("got %d PUBREL and %d PUBLISH, want one each", rel, two)
	}
	if extra := r.nextWithin(100 * time.Millisecond); extra != nil {
		t.Fatalf("extra copy %#v", extra)
	}
}

// TestSharedSubscriptionSplitsMessages: members of $share/g/filter receive each message once between
// them.
func TestSharedSubscriptionSplitsMessages(t *testing.T) {
	b := startBroker(t, nil)
	c1 := pahoClient(t, b.addr, "m1", nil)
	c2 := pahoClient(t, b.addr, "m2", nil)
	in1 := subscribe(t, c1, "$share/g/jobs/+", 1)
	in2 := subscribe(t, c2, "$share/g/jobs/+", 1)
	pub := pahoClient(t, b.addr, "pub", nil)
	const n = 10
	for i := range n {
		waitToken(t, pub.Publish("jobs/"+strconv.Itoa(i), 1, false, "x"))
	}
	deadline := time.Now().Add(waitTime)
	for in1.len()+in2.len() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if in1.len()+in2.len() != n || in1.len() == 0 || in2.len() == 0 {
		t.Fatalf("member 1 got %d, member 2 got %d, want %d split between both", in1.len(), in2.len(), n)
	}
}

// TestMQTT_3_8_4_3_ResubscribeReplacesQoS: a second SUBSCRIBE with the same filter replaces the granted
// QoS and sends the retained messages again.
func TestMQTT_3_8_4_3_ResubscribeReplacesQoS(t *testing.T) {
	b := startBroker(t, nil)
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("rs", 1, true, "kept"))
	r := dialRaw(t, b.addr)
	r.connect("rs", true)
	r.subscribe(1, 0, "rs")
	if p := r.nextPublish(); !p.Retain || p.QoS != 0 {
		t.Fatalf("got %+v", p)
	}
	if codes := r.subscribe(2, 1, "rs"); codes[0] != 1 {
		t.Fatalf("codes %x", codes)
	}
	p := r.nextPublish()
	if !p.Retain || p.QoS != 1 {
		t.Fatalf("retained again: %+v, want QoS 1 with RETAIN", p)
	}
	r.send(&packet.PubackPacket{PacketID: p.PacketID})
	waitToken(t, pub.Publish("rs", 1, false, "live"))
	if p := r.nextPublish(); p.QoS != 1 || string(p.Payload) != "live" {
		t.Fatalf("live: %+v", p)
	}
}

// TestCrossGrammarTopicRendering: a message published with another grammar (STOMP's) is rendered with
// the subscriber's.
func TestCrossGrammarTopicRendering(t *testing.T) {
	b := startBroker(t, nil)
	sub := dialRaw(t, b.addr)
	sub.connect("g", true)
	sub.subscribe(1, 0, "a/+/c")
	sg, err := router.NewGrammar(router.STOMPGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	name := "/topic/a.v1%2E2.c"
	d, err := sg.ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	b.host.Router.Publish(&router.Message{Dest: d, Body: []byte("x"), Origin: name, OriginGram: sg})
	if p := sub.nextPublish(); p.Topic != "a/v1.2/c" {
		t.Fatalf("topic %q, want a/v1.2/c", p.Topic)
	}
}

// TestSubackPrecedesMessagesOfNewSubscription: while a publisher floods the topics, no message of a new
// subscription arrives before its SUBACK.
func TestSubackPrecedesMessagesOfNewSubscription(t *testing.T) {
	b := startBroker(t, nil)
	pub := dialRaw(t, b.addr)
	pub.connect("flood", true)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var batch []byte
		for i := range 20 {
			batch = packet.Append(batch, &packet.PublishPacket{Topic: "t/" + strconv.Itoa(i), Payload: []byte("x")}, packet.Version311)
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = pub.nc.SetWriteDeadline(time.Now().Add(waitTime))
			if _, err := pub.nc.Write(batch); err != nil {
				return
			}
		}
	}()
	defer func() {
		close(stop)
		_ = pub.nc.SetWriteDeadline(time.Now()) // unblock a write stuck behind a full socket
		<-done
	}()

	sub := dialRaw(t, b.addr)
	sub.connect("orderly", true)
	for i := range 20 {
		topic := "t/" + strconv.Itoa(i)
		sub.send(&packet.SubscribePacket{PacketID: uint16(i + 1), Subscriptions: []packet.Subscription{{Filter: topic}}})
		for {
			p := sub.next()
			if sa, ok := p.(*packet.SubackPacket); ok && sa.PacketID == uint16(i+1) {
				break
			}
			if pp, ok := p.(*packet.PublishPacket); ok && pp.Topic == topic {
				t.Fatalf("PUBLISH for %s before its SUBACK", topic)
			}
		}
	}
}

// TestConnectorLimitsOnSubscriptionsAndLevels: max_subscriptions refuses extra filters with 0x80,
// max_topic_levels refuses deep filters and closes on deep topic names. (A SUBSCRIBE listing more
// filters than max_subscriptions closes the connection: TestSubscribeDecodingStopsAtLimit.)
func TestConnectorLimitsOnSubscriptionsAndLevels(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.MaxSubscriptions = 2; c.MQTT.MaxTopicLevels = 3 })
	r := dialRaw(t, b.addr)
	r.connect("lim", true)
	if codes := r.subscribe(1, 1, "a"); !slices.Equal(codes, []byte{1}) {
		t.Fatalf("codes %x, want 01", codes)
	}
	if codes := r.subscribe(5, 1, "b", "c"); !slices.Equal(codes, []byte{1, 0x80}) {
		t.Fatalf("codes %x, want 01 80", codes)
	}
	if codes := r.subscribe(2, 1, "a"); codes[0] != 1 {
		t.Fatalf("re-subscribing an existing filter: code %x", codes[0])
	}
	r.send(&packet.UnsubscribePacket{PacketID: 3, Filters: []string{"a", "b"}})
	r.next()
	if codes := r.subscribe(4, 0, "x/y/z", "x/y/z/w"); !slices.Equal(codes, []byte{0, 0x80}) {
		t.Fatalf("codes %x, want 00 80", codes)
	}
	r.send(&packet.PublishPacket{Topic: "x/y/z/w", Payload: []byte("deep")})
	r.expectClosed()
}

// TestQueueFullClosesQoS1PublisherWithoutPuback: a QoS 1 PUBLISH a full queue refuses is not
// acknowledged; the connection is closed so the client sends it again later. QoS 0 is dropped quietly.
func TestQueueFullClosesQoS1PublisherWithoutPuback(t *testing.T) {
	small := virtualhost.New(conf.VirtualHost{Name: "small", Anonymous: true}, router.Options{MaxQueueMessages: 2})
	b := startBroker(t, func(c *conf.Connector) { c.VirtualHost = "small"; c.MQTT.QueuePrefix = "queue/" }, small)
	r := dialRaw(t, b.addr)
	r.connect("producer", true)
	r.publish("queue/full", "1", 1, false, 1)
	r.publish("queue/full", "2", 1, false, 2)
	r.publish("queue/full", "dropped", 0, false, 0) // QoS 0: no answer, connection stays
	r.send(&packet.PublishPacket{Topic: "queue/full", Payload: []byte("3"), QoS: 1, PacketID: 3})
	r.expectClosed()
	if d := small.Router.QueueDepth([]string{"full"}); d != 2 {
		t.Fatalf("queue depth %d, want 2", d)
	}
}
