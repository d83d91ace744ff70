package main

// Whole-broker tests of MQTT 5 sessions: session expiry across restarts and kill -9, will delay, the
// message properties across protocols, persistent subscription options. Each names the OASIS MQTT 5.0
// statement it checks.

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/go-stomp/stomp/v3"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

// [MQTT-3.1.2-23]: a session ends when its Session Expiry Interval has passed since its network
// connection closed, a broker restart in between or not; until then a client reconnecting with Clean
// Start 0 gets it back with Session Present 1 [MQTT-3.2.2-3] and what arrived meanwhile.
func TestMQTT5SessionExpiryAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	b, addr := startDurable(t, dir)
	defer func() { stopBroker(t, b) }()

	// Three sessions subscribed at QoS 1, then gone (a normal DISCONNECT keeps the session):
	// short expires while the broker is down, mid after the restart, long is resumed.
	expiry := map[string]uint32{"short": 1, "mid": 4, "long": 60}
	for _, id := range []string{"short", "mid", "long"} {
		c := dialV5(t, addr, &paho5.Connect{ClientID: id, CleanStart: true,
			Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(expiry[id])}})
		c.sub(0, paho5.SubscribeOptions{Topic: "life/exp/" + id, QoS: 1})
		c.bye(&paho5.Disconnect{})
	}
	left := time.Now()
	pub := dialV5(t, addr, &paho5.Connect{ClientID: "exp-pub", CleanStart: true})
	for _, id := range []string{"short", "mid", "long"} {
		pub.pub(&paho5.Publish{Topic: "life/exp/" + id, QoS: 1, Payload: []byte("for-" + id)})
		if ds := sessionDurables(b, id); len(ds) != 1 {
			t.Fatalf("session %s before the restart: durable subscriptions %v, want 1", id, ds)
		}
	}
	pub.bye(&paho5.Disconnect{})
	stopBroker(t, b)

	time.Sleep(time.Until(left.Add(1200 * time.Millisecond))) // past short's interval, within mid's
	b, addr = startDurable(t, dir)
	if since := time.Since(left); since > 3500*time.Millisecond {
		t.Skipf("the restart took %v: mid's interval passed meanwhile, nothing left to check", since)
	}
	if ds := sessionDurables(b, "short"); len(ds) != 0 {
		t.Errorf("[MQTT-3.1.2-23] session short expired while the broker was down, but its durable subscription is back: %v", ds)
	}
	if ds := sessionDurables(b, "mid"); len(ds) != 1 {
		t.Fatalf("session mid restored within its interval: durable subscriptions %v, want 1", ds)
	}
	// mid expires while the broker runs, counted from its client's departure before the restart.
	prototest.WaitFor(t, 5*time.Second, func() bool { return len(sessionDurables(b, "mid")) == 0 })
	if since := time.Since(left); since < 3900*time.Millisecond {
		t.Errorf("[MQTT-3.1.2-23] session mid (expiry 4 s) ended %v after its client left", since)
	}

	long := dialV5(t, addr, &paho5.Connect{ClientID: "long", Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(60)}})
	if !long.ack.SessionPresent {
		t.Fatal("[MQTT-3.2.2-3] session long reconnected within its interval across a restart: Session Present 0")
	}
	if m := long.next(5 * time.Second); string(m.Payload) != "for-long" {
		t.Fatalf("session long: got %q, want its backlog for-long", m.Payload)
	}
	for _, id := range []string{"short", "mid"} {
		c := dialV5(t, addr, &paho5.Connect{ClientID: id})
		if c.ack.SessionPresent {
			t.Errorf("[MQTT-3.1.2-23] session %s after its interval: Session Present 1", id)
		}
		c.none(300*time.Millisecond, "[MQTT-3.1.2-23] an expired session's backlog")
		c.bye(&paho5.Disconnect{}) // expiry 0: the new session ends here
	}
	long.bye(&paho5.Disconnect{})

	// The store keeps only long's session and durable subscription.
	stopBroker(t, b)
	b, _ = startDurable(t, dir)
	if c := b.Hosts().Default().Recovered(); c.Sessions != 1 || c.DurableSubs != 1 || c.DurableSubEntries != 0 {
		t.Errorf("store after the expiries: %+v, want long's session and durable subscription only", c)
	}
	for _, id := range []string{"short", "mid"} {
		if ds := sessionDurables(b, id); len(ds) != 0 {
			t.Errorf("session %s: durable subscriptions %v left in the store", id, ds)
		}
	}
}

// [MQTT-3.1.2-23] the session state is kept after the connection closes; with 0xFFFFFFFF it does not
// expire (3.1.2.11.2), and what was acknowledged for it survives kill -9 of the broker: every QoS 1
// message PUBACKed while the subscriber was offline is delivered after the restart (a PUBACK says the
// server owns the message [MQTT-4.3.2-4]).
func TestMQTT5SessionNeverExpiresAcrossKill9(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "lyre.hcl")
	writeFile(t, cfgPath, durableConfig(filepath.Join(dir, "store")))
	b := startChild(t, cfgPath)
	t.Cleanup(func() { b.kill() }) // whichever broker runs at the end

	sub := dialV5(t, b.addr, &paho5.Connect{ClientID: "forever", CleanStart: true,
		Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(0xFFFFFFFF)}})
	sub.sub(0, paho5.SubscribeOptions{Topic: "life/forever", QoS: 1})
	sub.bye(&paho5.Disconnect{})

	const n = 500
	pub := dialV5(t, b.addr, &paho5.Connect{ClientID: "forever-pub", CleanStart: true})
	for i := range n {
		pub.pub(&paho5.Publish{Topic: "life/forever", QoS: 1, Payload: fmt.Appendf(nil, "m-%03d", i)})
	}
	b.kill() // right after the last PUBACK
	pub.drop()

	b = startChild(t, cfgPath)
	sub = dialV5(t, b.addr, &paho5.Connect{ClientID: "forever",
		Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(0xFFFFFFFF)}})
	if !sub.ack.SessionPresent {
		t.Fatal("[MQTT-3.1.2-23] session with expiry 0xFFFFFFFF after kill -9: Session Present 0")
	}
	got := make(map[string]bool, n)
	for len(got) < n {
		select {
		case m := <-sub.msgs:
			got[string(m.Payload)] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("after kill -9 the session got %d of the %d acknowledged messages", len(got), n)
		}
	}
	for i := range n {
		if w := fmt.Sprintf("m-%03d", i); !got[w] {
			t.Errorf("%s acknowledged but lost", w)
		}
	}
}

// Session Expiry Interval 0 (or absent) ends the session with the network connection, Clean Start 0 or
// not [MQTT-3.1.2-23]; a DISCONNECT's Session Expiry Interval replaces the one of CONNECT (3.14.2.2.2),
// except that setting a non-zero one on a session that had 0 is a protocol error: the server answers
// DISCONNECT 0x82 (without a Session Expiry Interval of its own [MQTT-3.14.2-2]) and, the DISCONNECT
// being invalid, publishes the will [MQTT-3.1.2-8].
func TestMQTT5SessionExpiryZeroAndDisconnectChange(t *testing.T) {
	dir := t.TempDir()
	b, addr := startDurable(t, dir)
	defer func() { stopBroker(t, b) }()
	pub := dialV5(t, addr, &paho5.Connect{ClientID: "zero-pub", CleanStart: true})
	publish := func(topic, body string) {
		t.Helper()
		pub.pub(&paho5.Publish{Topic: topic, QoS: 1, Payload: []byte(body)})
	}
	gone := func(id string) {
		t.Helper()
		prototest.WaitFor(t, 5*time.Second, func() bool { return len(sessionDurables(b, id)) == 0 })
	}

	t.Run("clean start 0 expiry 0", func(t *testing.T) {
		c := dialV5(t, addr, &paho5.Connect{ClientID: "z1"})
		c.sub(0, paho5.SubscribeOptions{Topic: "life/z1", QoS: 1})
		if ds := sessionDurables(b, "z1"); len(ds) != 0 {
			t.Errorf("a session of expiry 0 has durable subscriptions %v", ds)
		}
		c.bye(&paho5.Disconnect{})
		publish("life/z1", "z1-gone")
		c = dialV5(t, addr, &paho5.Connect{ClientID: "z1"})
		if c.ack.SessionPresent {
			t.Error("[MQTT-3.1.2-23] expiry 0 with clean start 0: Session Present 1 after reconnecting")
		}
		c.none(300*time.Millisecond, "expiry 0: message sent while away")
		c.bye(&paho5.Disconnect{})
	})

	t.Run("persistent session resumed with expiry 0", func(t *testing.T) {
		c := dialV5(t, addr, &paho5.Connect{ClientID: "z2", CleanStart: true, Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(60)}})
		c.sub(0, paho5.SubscribeOptions{Topic: "life/z2", QoS: 1})
		c.bye(&paho5.Disconnect{})
		publish("life/z2", "z2-kept")
		c = dialV5(t, addr, &paho5.Connect{ClientID: "z2"}) // expiry 0 now
		if !c.ack.SessionPresent {
			t.Fatal("[MQTT-3.2.2-3] persistent session: Session Present 0")
		}
		if m := c.next(5 * time.Second); string(m.Payload) != "z2-kept" {
			t.Fatalf("got %q, want z2-kept", m.Payload)
		}
		c.bye(&paho5.Disconnect{})
		gone("z2")
		publish("life/z2", "z2-gone")
		c = dialV5(t, addr, &paho5.Connect{ClientID: "z2", Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(60)}})
		if c.ack.SessionPresent {
			t.Error("[MQTT-3.1.2-23] a session resumed with expiry 0 outlived its connection")
		}
		c.none(300*time.Millisecond, "session ended: message sent while away")
		c.bye(&paho5.Disconnect{Properties: &paho5.DisconnectProperties{SessionExpiryInterval: u32(0)}})
	})

	t.Run("disconnect sets expiry 0", func(t *testing.T) {
		c := dialV5(t, addr, &paho5.Connect{ClientID: "z3", CleanStart: true, Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(60)}})
		c.sub(0, paho5.SubscribeOptions{Topic: "life/z3", QoS: 1})
		c.bye(&paho5.Disconnect{Properties: &paho5.DisconnectProperties{SessionExpiryInterval: u32(0)}})
		gone("z3")
		c = dialV5(t, addr, &paho5.Connect{ClientID: "z3"})
		if c.ack.SessionPresent {
			t.Error("DISCONNECT with Session Expiry Interval 0: the session outlived its connection")
		}
		c.bye(&paho5.Disconnect{})
	})

	t.Run("disconnect lengthens expiry", func(t *testing.T) {
		c := dialV5(t, addr, &paho5.Connect{ClientID: "z4", CleanStart: true, Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(1)}})
		c.sub(0, paho5.SubscribeOptions{Topic: "life/z4", QoS: 1})
		c.bye(&paho5.Disconnect{Properties: &paho5.DisconnectProperties{SessionExpiryInterval: u32(3600)}})
		publish("life/z4", "z4-kept")
		time.Sleep(1500 * time.Millisecond) // past the interval of CONNECT
		c = dialV5(t, addr, &paho5.Connect{ClientID: "z4"})
		if !c.ack.SessionPresent {
			t.Fatal("DISCONNECT set expiry 3600 s, but the session ended after CONNECT's 1 s")
		}
		if m := c.next(5 * time.Second); string(m.Payload) != "z4-kept" {
			t.Fatalf("got %q, want z4-kept", m.Payload)
		}
		c.bye(&paho5.Disconnect{Properties: &paho5.DisconnectProperties{SessionExpiryInterval: u32(0)}})
	})

	t.Run("disconnect sets expiry on a session of 0", func(t *testing.T) {
		watch := dialV5(t, addr, &paho5.Connect{ClientID: "z5-watch", CleanStart: true})
		watch.sub(0, paho5.SubscribeOptions{Topic: "life/z5/will", QoS: 1})
		r, _ := dialRaw5(t, addr, &packet.ConnectPacket{ClientID: "z5", WillFlag: true, WillQoS: 1,
			WillTopic: "life/z5/will", WillPayload: []byte("z5-will")})
		r.send(&packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "life/z5", QoS: 1}}})
		if p, err := r.next(5 * time.Second); err != nil || p.Type() != packet.Suback {
			t.Fatalf("suback: %v %v", err, p)
		}
		r.send(&packet.DisconnectPacket{Properties: &packet.Properties{SessionExpiryInterval: u32(60)}})
		p, err := r.next(5 * time.Second)
		d, ok := p.(*packet.DisconnectPacket)
		if err != nil || !ok || d.ReasonCode != packet.ReasonProtocolError {
			t.Fatalf("DISCONNECT setting an expiry on a session of 0: server answered %v %#v, want DISCONNECT 0x82", err, p)
		}
		if d.Properties != nil && d.Properties.SessionExpiryInterval != nil {
			t.Errorf("[MQTT-3.14.2-2] the server's DISCONNECT carries a Session Expiry Interval")
		}
		if _, err := r.next(5 * time.Second); err == nil {
			t.Error("connection still open after the server's DISCONNECT")
		}
		if m := watch.next(5 * time.Second); string(m.Payload) != "z5-will" {
			t.Errorf("[MQTT-3.1.2-8] invalid DISCONNECT: got %q, want the will", m.Payload)
		}
		publish("life/z5", "z5-gone")
		c := dialV5(t, addr, &paho5.Connect{ClientID: "z5"})
		if c.ack.SessionPresent {
			t.Error("the session of expiry 0 outlived an invalid DISCONNECT")
		}
		c.none(300*time.Millisecond, "session ended: message sent while away")
		c.bye(&paho5.Disconnect{})
	})
	pub.bye(&paho5.Disconnect{})
}

// willConnect is the CONNECT of a client with a QoS 1 will on life/will/<id>, payload id, session
// expiry expiry and will delay delay (seconds).
func willConnect(id string, clean bool, expiry, delay uint32) *paho5.Connect {
	return &paho5.Connect{ClientID: id, CleanStart: clean,
		Properties:     &paho5.ConnectProperties{SessionExpiryInterval: u32(expiry)},
		WillMessage:    &paho5.WillMessage{Topic: "life/will/" + id, QoS: 1, Payload: []byte(id)},
		WillProperties: &paho5.WillProperties{WillDelayInterval: u32(delay)}}
}

// Wills of MQTT 5: published after the Will Delay Interval, or when the session ends if that is sooner
// [MQTT-3.1.2-8]; not published when a connection takes the session within the delay [MQTT-3.1.3-9],
// takeover included [MQTT-3.1.4-3], unless the new connection's Clean Start ends the session (3.1.4);
// DISCONNECT 0x04 publishes it, a normal DISCONNECT discards it [MQTT-3.14.4-3]. The scenarios run side
// by side; each will's arrival is timed from the event that let it go.
func TestMQTT5WillDelay(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	watch := dialV5(t, addr, &paho5.Connect{ClientID: "will-watch", CleanStart: true})
	watch.sub(0, paho5.SubscribeOptions{Topic: "life/will/#", QoS: 1})

	at := make(map[string]time.Time) // when each client's will may go: its connection ended
	// Delay 1 s, session 30 s: after the delay.
	c := dialV5(t, addr, willConnect("delay", true, 30, 1))
	c.drop()
	at["delay"] = time.Now()
	// Delay 1 s, message expiry 1 s: its expiry counts from publication (3.1.3.2.4), so it still goes.
	r, _ := dialRaw5(t, addr, &packet.ConnectPacket{ClientID: "expiring", CleanSession: true, WillFlag: true, WillQoS: 1,
		WillTopic: "life/will/expiring", WillPayload: []byte("expiring"),
		Properties:     &packet.Properties{SessionExpiryInterval: u32(30)},
		WillProperties: &packet.Properties{WillDelayInterval: u32(1), MessageExpiryInterval: u32(1)}})
	r.nc.Close()
	at["expiring"] = time.Now()
	// Delay 30 s, session 1 s: when the session ends.
	c = dialV5(t, addr, willConnect("expiry", true, 1, 30))
	c.drop()
	at["expiry"] = time.Now()
	// Delay 30 s, session 0: the session ends with the connection.
	c = dialV5(t, addr, willConnect("zero", true, 0, 30))
	c.drop()
	at["zero"] = time.Now()
	// Delay 1 s, back within it: never.
	c = dialV5(t, addr, willConnect("back", true, 30, 1))
	c.drop()
	back := dialV5(t, addr, &paho5.Connect{ClientID: "back", Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(30)}})
	if !back.ack.SessionPresent {
		t.Error("reconnect within the will delay: Session Present 0")
	}
	// Delay 1 s, taken over with Clean Start 0: never.
	c = dialV5(t, addr, willConnect("take", true, 30, 1))
	taker := dialV5(t, addr, &paho5.Connect{ClientID: "take", Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(30)}})
	select {
	case d := <-c.gone:
		if d.ReasonCode != packet.ReasonSessionTakenOver {
			t.Errorf("[MQTT-3.1.4-3] taken over: DISCONNECT 0x%02x, want 0x8E", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Error("[MQTT-3.1.4-3] the connection taken over got no DISCONNECT")
	}
	if !taker.ack.SessionPresent {
		t.Error("takeover with clean start 0: Session Present 0")
	}
	// Delay 30 s, taken over with Clean Start 1: the session ends, its will goes.
	took := dialV5(t, addr, willConnect("take-clean", true, 30, 30))
	at["take-clean"] = time.Now()
	dialV5(t, addr, &paho5.Connect{ClientID: "take-clean", CleanStart: true})
	select {
	case <-took.gone:
	case <-time.After(5 * time.Second):
		t.Error("[MQTT-3.1.4-3] the connection taken over (clean start 1) got no DISCONNECT")
	}
	// No delay, DISCONNECT 0x04: at once.
	c = dialV5(t, addr, willConnect("with-will", true, 0, 0))
	c.bye(&paho5.Disconnect{ReasonCode: packet.ReasonDisconnectWithWill})
	at["with-will"] = time.Now()
	// No delay, DISCONNECT 0x00: never.
	c = dialV5(t, addr, willConnect("normal", true, 0, 0))
	c.bye(&paho5.Disconnect{ReasonCode: 0})
	// Delay 1 s, session 30 s, DISCONNECT 0x00: never, even after the delay.
	c = dialV5(t, addr, willConnect("normal-delay", true, 30, 1))
	c.bye(&paho5.Disconnect{ReasonCode: 0})

	// Collect until every delay and expiry above has passed by a margin.
	want := map[string][2]time.Duration{ // earliest, latest
		"delay":      {950 * time.Millisecond, 2500 * time.Millisecond},
		"expiry":     {950 * time.Millisecond, 2500 * time.Millisecond},
		"expiring":   {950 * time.Millisecond, 2500 * time.Millisecond},
		"zero":       {0, time.Second},
		"take-clean": {0, time.Second},
		"with-will":  {0, time.Second},
	}
	got := make(map[string]time.Duration)
	end := time.After(time.Until(at["zero"].Add(2500 * time.Millisecond)))
	for wait := true; wait; {
		select {
		case m := <-watch.msgs:
			id := string(m.Payload)
			if _, dup := got[id]; dup {
				t.Errorf("will of %s published twice", id)
			}
			got[id] = time.Since(at[id])
		case <-end:
			wait = false
		}
	}
	for id, w := range want {
		d, ok := got[id]
		switch {
		case !ok:
			t.Errorf("will of %s not published", id)
		case d < w[0] || d > w[1]:
			t.Errorf("will of %s published %v after its connection ended, want within [%v, %v]", id, d, w[0], w[1])
		}
	}
	for _, id := range []string{"back", "take", "normal", "normal-delay"} {
		if _, ok := got[id]; ok {
			t.Errorf("will of %s published", id)
		}
	}
}

// The will's properties travel with it as a PUBLISH's do (3.1.3.2: Payload Format Indicator, Message
// Expiry Interval, Content Type, Response Topic, Correlation Data, User Properties are sent with the Will
// Message when it is published). The will's client is the packet
// codec: paho.golang v0.23.0 encodes will properties with CONNECT's property set, which leaves out all but
// the will delay and the user properties (packets.Connect.Pack calls WillProperties.Pack(CONNECT)).
func TestMQTT5WillProperties(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	watch := dialV5(t, addr, &paho5.Connect{ClientID: "props-watch", CleanStart: true})
	watch.sub(0, paho5.SubscribeOptions{Topic: "life/will/#", QoS: 1})
	one := byte(1)
	r, _ := dialRaw5(t, addr, &packet.ConnectPacket{ClientID: "props", CleanSession: true, WillFlag: true, WillQoS: 1,
		WillTopic: "life/will/props", WillPayload: []byte("props"),
		WillProperties: &packet.Properties{PayloadFormatIndicator: &one, MessageExpiryInterval: u32(60),
			ContentType: "text/x-will", ResponseTopic: "life/will-reply", CorrelationData: []byte("corr-will"),
			UserProperties: []packet.UserProperty{{Key: "k1", Value: "v1"}, {Key: "k2", Value: "v2"}}}})
	r.send(&packet.DisconnectPacket{ReasonCode: packet.ReasonDisconnectWithWill})
	m := watch.next(5 * time.Second)
	if string(m.Payload) != "props" {
		t.Fatalf("got %q, want the will", m.Payload)
	}
	p := m.Properties
	if p == nil {
		t.Fatal("will delivered without properties")
	}
	if p.ContentType != "text/x-will" {
		t.Errorf("content type %q", p.ContentType)
	}
	if p.ResponseTopic != "life/will-reply" {
		t.Errorf("response topic %q", p.ResponseTopic)
	}
	if string(p.CorrelationData) != "corr-will" {
		t.Errorf("correlation data %q", p.CorrelationData)
	}
	if p.PayloadFormat == nil || *p.PayloadFormat != 1 {
		t.Errorf("payload format indicator %v, want 1", p.PayloadFormat)
	}
	if p.MessageExpiry == nil || *p.MessageExpiry < 55 || *p.MessageExpiry > 60 {
		t.Errorf("message expiry %v, want what is left of 60 s", p.MessageExpiry)
	}
	if v1, _ := userProp(p.User, "k1"); v1 != "v1" {
		t.Errorf("user properties %v", p.User)
	}
	if v2, _ := userProp(p.User, "k2"); v2 != "v2" {
		t.Errorf("user properties %v", p.User)
	}
}

// An MQTT 5 PUBLISH's properties reach a STOMP subscriber as headers (DESIGN §4): content type →
// content-type, user properties → headers of their own, response topic → reply-to in STOMP's grammar,
// correlation data → correlation-id, message expiry → expires (Unix ms). An MQTT 3.1.1 subscriber gets the
// payload alone.
func TestMQTT5PropertiesReachSTOMP(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	sc := stompClient(t, addr)
	ssub, err := sc.Subscribe("/topic/life.props", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	stompBarrier(t, sc)
	old := mqttSubscribe(t, mqttClient(t, addr, "props-311"), "life/props", 1)
	pub := dialV5(t, addr, &paho5.Connect{ClientID: "props-pub", CleanStart: true})
	before := time.Now()
	pub.pub(&paho5.Publish{Topic: "life/props", QoS: 1, Payload: []byte(`{"n":1}`), Properties: &paho5.PublishProperties{
		ContentType: "application/json", ResponseTopic: "life/reply/1", CorrelationData: []byte("corr-1"), MessageExpiry: u32(60),
		User: paho5.UserProperties{{Key: "colour", Value: "blue"}, {Key: "size", Value: "L"}}}})

	m := readStomp(t, ssub)
	if string(m.Body) != `{"n":1}` {
		t.Errorf("STOMP body %q", m.Body)
	}
	for _, h := range [][2]string{{"content-type", "application/json"}, {"reply-to", "/topic/life.reply.1"},
		{"correlation-id", "corr-1"}, {"colour", "blue"}, {"size", "L"}} {
		if got := m.Header.Get(h[0]); got != h[1] {
			t.Errorf("STOMP header %s: %q, want %q", h[0], got, h[1])
		}
	}
	exp, err := strconv.ParseInt(m.Header.Get("expires"), 10, 64)
	if lo, hi := before.Add(59*time.Second).UnixMilli(), time.Now().Add(61*time.Second).UnixMilli(); err != nil || exp < lo || exp > hi {
		t.Errorf("STOMP expires %q, want about now + 60 s", m.Header.Get("expires"))
	}
	select {
	case om := <-old:
		if string(om.Payload()) != `{"n":1}` {
			t.Errorf("MQTT 3.1.1 payload %q, want the body alone", om.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Error("MQTT 3.1.1 subscriber got nothing")
	}
}

// A STOMP SEND's headers reach an MQTT 5 subscriber as properties (DESIGN §4): content-type → content
// type, reply-to → response topic in MQTT's grammar, correlation-id → correlation data, expires → message
// expiry (what is left, [MQTT-3.3.2-6]), other headers → user properties. An MQTT 3.1.1 subscriber gets
// the body alone.
func TestMQTT5PropertiesFromSTOMP(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	sub := dialV5(t, addr, &paho5.Connect{ClientID: "from-stomp", CleanStart: true})
	sub.sub(0, paho5.SubscribeOptions{Topic: "life/from/stomp", QoS: 1})
	old := mqttSubscribe(t, mqttClient(t, addr, "from-stomp-311"), "life/from/stomp", 1)
	sc := stompClient(t, addr)
	expires := time.Now().Add(60 * time.Second).UnixMilli()
	if err := sc.Send("/topic/life.from.stomp", "text/csv", []byte("a,b"), stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("reply-to", "/topic/life.reply.2"), stomp.SendOpt.Header("correlation-id", "corr-2"),
		stomp.SendOpt.Header("expires", strconv.FormatInt(expires, 10)), stomp.SendOpt.Header("colour", "red")); err != nil {
		t.Fatal(err)
	}
	m := sub.next(5 * time.Second)
	if string(m.Payload) != "a,b" {
		t.Errorf("payload %q", m.Payload)
	}
	p := m.Properties
	if p == nil {
		t.Fatal("no properties")
	}
	if p.ContentType != "text/csv" {
		t.Errorf("content type %q", p.ContentType)
	}
	if p.ResponseTopic != "life/reply/2" {
		t.Errorf("response topic %q, want life/reply/2", p.ResponseTopic)
	}
	if string(p.CorrelationData) != "corr-2" {
		t.Errorf("correlation data %q", p.CorrelationData)
	}
	if p.MessageExpiry == nil || *p.MessageExpiry < 55 || *p.MessageExpiry > 60 {
		t.Errorf("message expiry %v, want what is left of 60 s", p.MessageExpiry)
	}
	if v, _ := userProp(p.User, "colour"); v != "red" {
		t.Errorf("user properties %v, want colour=red", p.User)
	}
	for _, k := range []string{"content-type", "reply-to", "correlation-id", "expires", "content-length", "destination", "receipt"} {
		if v, ok := userProp(p.User, k); ok {
			t.Errorf("user property %s=%q: the header is a property or the broker's", k, v)
		}
	}
	select {
	case om := <-old:
		if string(om.Payload()) != "a,b" {
			t.Errorf("MQTT 3.1.1 payload %q, want the body alone", om.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Error("MQTT 3.1.1 subscriber got nothing")
	}
}

// Request/response across protocols (4.10): an MQTT 5 requester names its response topic and
// correlation data; a STOMP service answers to reply-to with the correlation-id; the requester gets the
// response on its response topic with its correlation data.
func TestMQTT5RequestResponseWithSTOMPService(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	sc := stompClient(t, addr)
	svc, err := sc.Subscribe("/topic/life.svc", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	stompBarrier(t, sc)
	req := dialV5(t, addr, &paho5.Connect{ClientID: "requester", CleanStart: true})
	req.sub(0, paho5.SubscribeOptions{Topic: "life/resp/requester", QoS: 1})
	req.pub(&paho5.Publish{Topic: "life/svc", QoS: 1, Payload: []byte("ping"), Properties: &paho5.PublishProperties{
		ResponseTopic: "life/resp/requester", CorrelationData: []byte("req-42")}})

	m := readStomp(t, svc)
	replyTo, corr := m.Header.Get("reply-to"), m.Header.Get("correlation-id")
	if replyTo == "" || corr != "req-42" {
		t.Fatalf("service got reply-to %q, correlation-id %q", replyTo, corr)
	}
	if err := sc.Send(replyTo, "text/plain", []byte("pong"), stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("correlation-id", corr)); err != nil {
		t.Fatal(err)
	}
	r := req.next(5 * time.Second)
	if r.Topic != "life/resp/requester" || string(r.Payload) != "pong" {
		t.Fatalf("response %q on %s", r.Payload, r.Topic)
	}
	if r.Properties == nil || string(r.Properties.CorrelationData) != "req-42" {
		t.Fatalf("response properties %+v, want correlation data req-42", r.Properties)
	}
}

// A persistent session's subscription options survive a broker restart: no local [MQTT-3.8.3-3], retain
// as published [MQTT-3.3.1-13] (without it a forwarded message's retain flag is 0 [MQTT-3.3.1-12]), the
// subscription identifier [MQTT-3.3.4-3]; for what arrived while the session was
// offline (kept in the store, with its properties) and for what arrives after.
func TestMQTT5SubscriptionOptionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b, addr := startDurable(t, dir)
	defer func() { stopBroker(t, b) }()
	connect := &paho5.Connect{ClientID: "opts", CleanStart: true, Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(3600)}}
	c := dialV5(t, addr, connect)
	c.sub(0, paho5.SubscribeOptions{Topic: "life/opt/nl", QoS: 1, NoLocal: true})
	c.sub(0, paho5.SubscribeOptions{Topic: "life/opt/rap", QoS: 1, RetainAsPublished: true})
	c.sub(0, paho5.SubscribeOptions{Topic: "life/opt/plain", QoS: 1})
	c.sub(7, paho5.SubscribeOptions{Topic: "life/opt/id", QoS: 1})
	c.bye(&paho5.Disconnect{})

	other := dialV5(t, addr, &paho5.Connect{ClientID: "opts-other", CleanStart: true})
	other.pub(&paho5.Publish{Topic: "life/opt/rap", QoS: 1, Retain: true, Payload: []byte("rap-offline")})
	other.pub(&paho5.Publish{Topic: "life/opt/id", QoS: 1, Payload: []byte("id-offline"), Properties: &paho5.PublishProperties{
		ContentType: "text/x-offline", CorrelationData: []byte("corr-offline"), User: paho5.UserProperties{{Key: "k", Value: "v"}}}})
	other.bye(&paho5.Disconnect{})
	stopBroker(t, b)

	b, addr = startDurable(t, dir)
	connect.CleanStart = false
	c = dialV5(t, addr, connect)
	if !c.ack.SessionPresent {
		t.Fatal("[MQTT-3.2.2-3] persistent session after a restart: Session Present 0")
	}
	check := func(m *paho5.Publish) {
		t.Helper()
		switch string(m.Payload) {
		case "rap-offline", "rap-live":
			if !m.Retain {
				t.Errorf("[MQTT-3.3.1-13] %s: retain as published, but the retain flag is 0", m.Payload)
			}
		case "plain-live":
			if m.Retain {
				t.Errorf("[MQTT-3.3.1-12] %s: the retain flag of a forwarded message is set without retain as published", m.Payload)
			}
		case "id-offline", "id-live":
			if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != 7 {
				t.Errorf("[MQTT-3.3.4-3] %s: subscription identifier %+v, want 7", m.Payload, m.Properties)
			}
			if string(m.Payload) == "id-offline" {
				if p := m.Properties; p == nil || p.ContentType != "text/x-offline" || string(p.CorrelationData) != "corr-offline" || len(p.User) != 1 {
					t.Errorf("%s: properties after the restart %+v", m.Payload, p)
				}
			}
		case "nl-other":
		default:
			t.Errorf("unexpected %q on %s", m.Payload, m.Topic)
		}
	}
	got := map[string]bool{}
	for range 2 {
		m := c.next(5 * time.Second)
		got[string(m.Payload)] = true
		check(m)
	}
	if !got["rap-offline"] || !got["id-offline"] {
		t.Fatalf("after the restart got %v, want rap-offline and id-offline", got)
	}

	other = dialV5(t, addr, &paho5.Connect{ClientID: "opts-other", CleanStart: true})
	// The session's own message on its no-local subscription is not sent back; another client's is, after
	// it in the subscription's order.
	c.pub(&paho5.Publish{Topic: "life/opt/nl", QoS: 1, Payload: []byte("nl-self")})
	other.pub(&paho5.Publish{Topic: "life/opt/nl", QoS: 1, Payload: []byte("nl-other")})
	if m := c.next(5 * time.Second); string(m.Payload) != "nl-other" {
		t.Fatalf("[MQTT-3.8.3-3] no local after a restart: got %q first, want nl-other", m.Payload)
	}
	for _, p := range []*paho5.Publish{
		{Topic: "life/opt/rap", QoS: 1, Retain: true, Payload: []byte("rap-live")},
		{Topic: "life/opt/plain", QoS: 1, Retain: true, Payload: []byte("plain-live")},
		{Topic: "life/opt/id", QoS: 1, Payload: []byte("id-live")},
	} {
		other.pub(p)
		m := c.next(5 * time.Second)
		if string(m.Payload) != string(p.Payload) {
			t.Fatalf("got %q, want %q", m.Payload, p.Payload)
		}
		check(m)
	}
	c.none(200*time.Millisecond, "nothing more")
}

// The session expiry a session has now is the one a restart honours [MQTT-3.1.2-23]: set to 0xFFFFFFFF
// by a DISCONNECT (3.14.2.2.2), or by the CONNECT that resumed it, after it was opened with 1 s, the
// session outlives a restart that comes after that first second.
func TestMQTT5ExpiryChangeSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b, addr := startDurable(t, dir)
	defer func() { stopBroker(t, b) }()
	open := func(id string) {
		c := dialV5(t, addr, &paho5.Connect{ClientID: id, CleanStart: true, Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(1)}})
		c.sub(0, paho5.SubscribeOptions{Topic: "life/change/" + id, QoS: 1})
		if id == "by-disconnect" {
			c.bye(&paho5.Disconnect{Properties: &paho5.DisconnectProperties{SessionExpiryInterval: u32(0xFFFFFFFF)}})
			return
		}
		c.bye(&paho5.Disconnect{})
		c = dialV5(t, addr, &paho5.Connect{ClientID: id, Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(0xFFFFFFFF)}})
		if !c.ack.SessionPresent {
			t.Fatalf("%s resumed within its interval: Session Present 0", id)
		}
		c.bye(&paho5.Disconnect{})
	}
	open("by-disconnect")
	open("by-connect")
	left := time.Now()
	stopBroker(t, b)
	time.Sleep(time.Until(left.Add(1200 * time.Millisecond)))
	b, addr = startDurable(t, dir)
	time.Sleep(1200 * time.Millisecond) // past 1 s counted from the restart too
	for _, id := range []string{"by-disconnect", "by-connect"} {
		if ds := sessionDurables(b, id); len(ds) != 1 {
			t.Errorf("[MQTT-3.1.2-23] session %s, expiry now 0xFFFFFFFF, after a restart: durable subscriptions %v", id, ds)
			continue
		}
		c := dialV5(t, addr, &paho5.Connect{ClientID: id, Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(0xFFFFFFFF)}})
		if !c.ack.SessionPresent {
			t.Errorf("[MQTT-3.1.2-23] session %s, expiry now 0xFFFFFFFF, after a restart: Session Present 0", id)
		}
		c.bye(&paho5.Disconnect{})
	}
}
