package mqtt

import (
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
)

func willConnect(id string) *packet.ConnectPacket {
	return &packet.ConnectPacket{ClientID: id, CleanSession: true, KeepAlive: 60, WillFlag: true,
		WillTopic: "will/" + id, WillPayload: []byte(id + " died"), WillQoS: 1, WillRetain: true}
}

// TestMQTT_3_1_2_8_WillOnNetworkFailure: a connection that ends without DISCONNECT publishes its will,
// with its QoS and retain flag honoured.
func TestMQTT_3_1_2_8_WillOnNetworkFailure(t *testing.T) {
	b := startBroker(t, nil)
	watcher := pahoClient(t, b.addr, "watcher", nil)
	in := subscribe(t, watcher, "will/#", 1)

	r := dialRaw(t, b.addr)
	r.connectWith(willConnect("killed"))
	_ = r.nc.Close() // killed: no DISCONNECT
	if m := in.waitN(t, 1)[0]; m.topic != "will/killed" || m.payload != "killed died" || m.qos != 1 {
		t.Fatalf("will: %+v", m)
	}
	// Will retain honoured: a later subscriber gets it as retained.
	late := pahoClient(t, b.addr, "late", nil)
	lin := subscribe(t, late, "will/killed", 1)
	if m := lin.waitN(t, 1)[0]; !m.retained || m.payload != "killed died" {
		t.Fatalf("retained will: %+v", m)
	}
}

// TestMQTT_3_14_4_3_NoWillAfterDisconnect.
func TestMQTT_3_14_4_3_NoWillAfterDisconnect(t *testing.T) {
	b := startBroker(t, nil)
	watcher := pahoClient(t, b.addr, "watcher", nil)
	in := subscribe(t, watcher, "will/#", 1)

	r := dialRaw(t, b.addr)
	r.connectWith(willConnect("polite"))
	r.send(&packet.DisconnectPacket{})
	r.expectClosed()
	// A marker published after shows ordering: the will would have arrived before it.
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("will/marker", 1, false, "m"))
	if msgs := in.waitN(t, 1); len(msgs) != 1 || msgs[0].topic != "will/marker" {
		t.Fatalf("got %+v, want only the marker", msgs)
	}
}

// TestWillOnProtocolError: a protocol violation closes the connection and publishes the will.
func TestWillOnProtocolError(t *testing.T) {
	b := startBroker(t, nil)
	watcher := pahoClient(t, b.addr, "watcher", nil)
	in := subscribe(t, watcher, "will/#", 1)
	r := dialRaw(t, b.addr)
	r.connectWith(willConnect("bad"))
	r.send(&packet.PublishPacket{Topic: "a/#", Payload: []byte("x")}) // wildcard in a topic name
	r.expectClosed()
	if m := in.waitN(t, 1)[0]; m.topic != "will/bad" {
		t.Fatalf("will: %+v", m)
	}
}

// TestMQTT_3_1_4_2_TakeoverClosesExistingConnection: a second connection with the same client id closes
// the first one.
func TestMQTT_3_1_4_2_TakeoverClosesExistingConnection(t *testing.T) {
	b := startBroker(t, nil)
	first := dialRaw(t, b.addr)
	first.connect("twin", true)
	first.subscribe(1, 0, "first/only")

	second := dialRaw(t, b.addr)
	if ca := second.connect("twin", true); ca.SessionPresent {
		t.Fatal("clean session takeover reported a present session")
	}
	first.expectClosed()
	// The clean session was discarded: the first connection's subscription is gone.
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("first/only", 0, false, "x"))
	if p := second.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("second connection got %#v", p)
	}
	second.send(&packet.PingreqPacket{})
	if _, ok := second.next().(*packet.PingrespPacket); !ok {
		t.Fatal("second connection not working")
	}
	if n := b.h.SessionCount(b.host); n != 2 { // twin and pub
		t.Fatalf("%d sessions, want 2", n)
	}
}

// TestMQTT_3_2_2_2_SessionResumeKeepsSubscriptionsAndMessages: with clean session off the session
// survives the connection: CONNACK says session present, subscriptions stay, QoS ≥ 1 messages published
// meanwhile arrive on reconnect; QoS 0 ones are not kept.
func TestMQTT_3_2_2_2_SessionResumeKeepsSubscriptionsAndMessages(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	if ca := r.connect("durable", false); ca.SessionPresent {
		t.Fatal("new session reported present")
	}
	r.subscribe(1, 2, "d/#")
	r.send(&packet.DisconnectPacket{})
	r.expectClosed()

	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("d/0", 0, false, "q0"))
	for i := 1; i <= 3; i++ {
		waitToken(t, pub.Publish("d/"+strconv.Itoa(i), byte(1+i%2), false, "m"+strconv.Itoa(i)))
	}

	r = dialRaw(t, b.addr)
	if ca := r.connect("durable", false); !ca.SessionPresent {
		t.Fatal("resumed session not reported present [MQTT-3.2.2-2]")
	}
	var q2 []uint16
	for i := 1; i <= 3; i++ {
		p := r.nextPublish()
		if string(p.Payload) != "m"+strconv.Itoa(i) || p.QoS != byte(1+i%2) {
			t.Fatalf("message %d: %+v", i, p)
		}
		if p.QoS == 1 {
			r.send(&packet.PubackPacket{PacketID: p.PacketID})
		} else {
			r.send(&packet.PubrecPacket{PacketID: p.PacketID})
			q2 = append(q2, p.PacketID)
		}
	}
	for _, id := range q2 {
		if rel, ok := r.next().(*packet.PubrelPacket); !ok || rel.PacketID != id {
			t.Fatalf("want PUBREL %d, got %#v", id, rel)
		}
		r.send(&packet.PubcompPacket{PacketID: id})
	}
	if p := r.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("unexpected %#v (QoS 0 messages are not kept offline)", p)
	}
	// The subscription is still there.
	waitToken(t, pub.Publish("d/live", 1, false, "live"))
	if p := r.nextPublish(); string(p.Payload) != "live" {
		t.Fatalf("live: %+v", p)
	}

	// Clean session on discards it [MQTT-3.1.2-6].
	r.send(&packet.DisconnectPacket{})
	r.expectClosed()
	r = dialRaw(t, b.addr)
	if ca := r.connect("durable", true); ca.SessionPresent {
		t.Fatal("clean session reported present [MQTT-3.2.2-1]")
	}
	waitToken(t, pub.Publish("d/x", 1, false, "gone"))
	if p := r.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("discarded session still subscribed: %#v", p)
	}
}

// TestMQTT_4_4_0_1_ResendUnackedWithDup: on resume, unacknowledged PUBLISH packets are sent again with
// DUP and the same packet id, and PUBRELs awaiting PUBCOMP are sent again.
func TestMQTT_4_4_0_1_ResendUnackedWithDup(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.connect("resend", false)
	r.subscribe(1, 2, "rs/+")
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("rs/1", 1, false, "a"))
	waitToken(t, pub.Publish("rs/2", 2, false, "b"))
	p1, p2 := r.nextPublish(), r.nextPublish()
	r.send(&packet.PubrecPacket{PacketID: p2.PacketID})
	if rel, ok := r.next().(*packet.PubrelPacket); !ok || rel.PacketID != p2.PacketID {
		t.Fatalf("want PUBREL, got %#v", rel)
	}
	_ = r.nc.Close() // neither PUBACK nor PUBCOMP

	r2 := dialRaw(t, b.addr)
	r2.connect("resend", false)
	p := r2.nextPublish()
	if !p.Dup || p.PacketID != p1.PacketID || string(p.Payload) != "a" || p.QoS != 1 {
		t.Fatalf("resent %+v, want DUP copy of %+v", p, p1)
	}
	rel, ok := r2.next().(*packet.PubrelPacket)
	if !ok || rel.PacketID != p2.PacketID {
		t.Fatalf("want PUBREL %d again, got %#v", p2.PacketID, rel)
	}
	r2.send(&packet.PubackPacket{PacketID: p.PacketID})
	r2.send(&packet.PubcompPacket{PacketID: p2.PacketID})
	if extra := r2.nextWithin(100 * time.Millisecond); extra != nil {
		t.Fatalf("unexpected %#v", extra)
	}
}

// TestTakeoverResumesPersistentSession: a takeover with clean session off keeps the session, and the
// old connection's will is published.
func TestTakeoverResumesPersistentSession(t *testing.T) {
	b := startBroker(t, nil)
	watcher := pahoClient(t, b.addr, "watcher", nil)
	wills := subscribe(t, watcher, "will/#", 0)

	first := dialRaw(t, b.addr)
	cp := willConnect("phone")
	cp.CleanSession = false
	first.connectWith(cp)
	first.subscribe(1, 1, "inbox")

	second := dialRaw(t, b.addr)
	if ca := second.connect("phone", false); !ca.SessionPresent {
		t.Fatal("takeover lost the session")
	}
	first.expectClosed()
	wills.waitN(t, 1)
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("inbox", 1, false, "hello"))
	if p := second.nextPublish(); string(p.Payload) != "hello" {
		t.Fatalf("got %+v", p)
	}
}

// TestOfflineSessionBoundByItsQuota: an offline session keeps what its durable subscriptions' quota
// allows (the queue defaults, or a policy for $mqtt durable subscriptions), far more than
// max_queued_messages, which bounds only what waits for a connected client's window. At the quota the
// policy decides: the default drops the newest, drop_head the oldest; every drop is counted.
func TestOfflineSessionBoundByItsQuota(t *testing.T) {
	mqttDsubs := router.Filter{Kind: router.DurableSub, Segs: []router.Seg{{Text: dsubPrefix}, {Kind: router.SegMany}}}
	for _, tc := range []struct {
		full router.FullPolicy
		want []int
	}{
		{router.FullBlock, []int{0, 1, 2, 3, 4}},
		{router.FullDropHead, []int{3, 4, 5, 6, 7}},
	} {
		ro := router.Options{QueuePolicies: []router.QueuePolicy{{Filter: mqttDsubs, MaxMessages: 5, Full: tc.full}}}
		b := startBrokerRouter(t, zaptest.NewLogger(t), ro, func(c *conf.Connector) { c.MQTT.MaxQueuedMessages = 2 })
		r := dialRaw(t, b.addr)
		r.connect("small", false)
		r.subscribe(1, 1, "s")
		r.send(&packet.DisconnectPacket{})
		r.expectClosed()
		pub := pahoClient(t, b.addr, "pub", nil)
		for i := range 8 {
			waitToken(t, pub.Publish("s", 1, false, strconv.Itoa(i)))
		}
		if d := b.host.Router.Stats().Dropped; d != 3 {
			t.Errorf("%v: %d dropped, want 3", tc.full, d)
		}
		r = dialRaw(t, b.addr)
		r.connect("small", false)
		for _, i := range tc.want {
			p := r.nextPublish()
			if string(p.Payload) != strconv.Itoa(i) {
				t.Fatalf("%v: got %q, want %d", tc.full, p.Payload, i)
			}
			r.send(&packet.PubackPacket{PacketID: p.PacketID})
		}
		if p := r.nextWithin(100 * time.Millisecond); p != nil {
			t.Fatalf("%v: unexpected %s", tc.full, p.Type())
		}
	}
}

// TestInflightWindowBoundsUnacked: at most max_inflight QoS 1 messages are unacknowledged; the rest wait
// and follow as acknowledgements arrive, in order.
func TestInflightWindowBoundsUnacked(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.MaxInflight = 2 })
	r := dialRaw(t, b.addr)
	r.connect("win", true)
	r.subscribe(1, 1, "w")
	pub := pahoClient(t, b.addr, "pub", nil)
	for i := range 5 {
		waitToken(t, pub.Publish("w", 1, false, strconv.Itoa(i)))
	}
	a, c := r.nextPublish(), r.nextPublish()
	if p := r.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("third message %#v sent with a window of 2", p)
	}
	next := 2
	for _, p := range []*packet.PublishPacket{a, c} {
		r.send(&packet.PubackPacket{PacketID: p.PacketID})
	}
	for next < 5 {
		p := r.nextPublish()
		if string(p.Payload) != strconv.Itoa(next) {
			t.Fatalf("got %q, want %d", p.Payload, next)
		}
		next++
		r.send(&packet.PubackPacket{PacketID: p.PacketID})
	}
}

// TestPahoPersistentSessionRoundTrip: paho with clean session off gets what was published while away.
func TestPahoPersistentSessionRoundTrip(t *testing.T) {
	b := startBroker(t, nil)
	in := &inbox{}
	opts := func(o *paho.ClientOptions) {
		o.SetCleanSession(false).SetDefaultPublishHandler(in.handler)
	}
	c := pahoClient(t, b.addr, "paho-durable", opts)
	waitToken(t, c.Subscribe("pd/#", 1, nil))
	c.Disconnect(50)
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("pd/1", 1, false, "while away"))
	pahoClient(t, b.addr, "paho-durable", opts)
	if m := in.waitN(t, 1)[0]; m.payload != "while away" {
		t.Fatalf("got %+v", m)
	}
	prototest.WaitFor(t, waitTime, func() bool { return b.h.SessionCount(b.host) == 2 })
}

// TestPersistentSessionQueueConsumerResumes: a persistent session's queue subscription consumes again
// after reconnecting, including what was enqueued while it was away.
func TestPersistentSessionQueueConsumerResumes(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.QueuePrefix = "queue/" })
	r := dialRaw(t, b.addr)
	r.connect("worker", false)
	r.subscribe(1, 1, "queue/work")
	r.send(&packet.DisconnectPacket{})
	r.expectClosed()

	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("queue/work", 1, false, "job"))

	r = dialRaw(t, b.addr)
	if ca := r.connect("worker", false); !ca.SessionPresent {
		t.Fatal("session lost")
	}
	p := r.nextPublish()
	if string(p.Payload) != "job" || p.QoS != 1 || p.Topic != "queue/work" {
		t.Fatalf("got %+v", p)
	}
	r.send(&packet.PubackPacket{PacketID: p.PacketID})
	prototest.WaitFor(t, waitTime, func() bool { return b.host.Router.QueueDepth([]string{"work"}) == 0 })
}
