package mqtt

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

func TestMQTT_3_1_0_1_FirstPacketMustBeConnect(t *testing.T) {
	b := startBroker(t, nil)
	// A PINGREQ first: the connection is closed without an answer.
	r := dialRaw(t, b.addr)
	r.send(&packet.PingreqPacket{})
	r.expectClosed()

	// A CONNECT whose header passes protocol detection but whose body is broken (reserved flag set).
	r = dialRaw(t, b.addr)
	r.sendBytes([]byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x3c, 0x00, 0x00})
	r.expectClosed()

	// The same CONNECT, well formed, is accepted.
	r = dialRaw(t, b.addr)
	r.sendBytes([]byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00})
	if ca, ok := r.next().(*packet.ConnackPacket); !ok || ca.ReturnCode != 0 {
		t.Fatalf("want CONNACK 0, got %#v", ca)
	}
}

func TestMQTT_3_1_0_2_SecondConnectClosesConnection(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.connect("c1", true)
	r.send(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311, ClientID: "c1", CleanSession: true})
	r.expectClosed()
}

func TestMQTT_3_1_2_2_UnsupportedLevelGetsConnack01(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	// CONNECT "MQTT" level 9: sniffing accepts the name, the handler refuses the level.
	r.sendBytes([]byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x09, 0x02, 0x00, 0x3c, 0x00, 0x00})
	p := r.next()
	if ca, ok := p.(*packet.ConnackPacket); !ok || ca.ReturnCode != connBadVersion || ca.SessionPresent {
		t.Fatalf("want CONNACK 0x01, got %#v", p)
	}
	r.expectClosed()
}

// An MQTT 5 client is accepted, and CONNACK tells it the broker's limits [MQTT-3.2.2-3].
func TestMQTT5ClientAcceptedWithLimits(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.version = packet.Version5
	r.rd.SetVersion(packet.Version5)
	r.send(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version5, ClientID: "v5", CleanSession: true})
	p := r.next()
	ca, ok := p.(*packet.ConnackPacket)
	if !ok || ca.ReturnCode != packet.ReasonSuccess || ca.Properties == nil {
		t.Fatalf("want CONNACK 0x00 with properties, got %#v", p)
	}
	pp := ca.Properties
	if pp.ReceiveMaximum == nil || *pp.ReceiveMaximum != 1024 || pp.TopicAliasMaximum == nil || *pp.TopicAliasMaximum != 64 ||
		pp.MaximumQoS != nil || pp.MaximumPacketSize == nil || *pp.MaximumPacketSize != 100<<20 {
		t.Errorf("CONNACK properties %+v", pp)
	}
}

func TestMQTT_3_1_3_8_EmptyClientIDWithoutCleanSessionRefused(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	ca := r.connectWith(&packet.ConnectPacket{ClientID: "", CleanSession: false})
	if ca.ReturnCode != connIDRejected {
		t.Fatalf("CONNACK code %#x, want 0x02", ca.ReturnCode)
	}
	r.expectClosed()
}

func TestMQTT_3_1_3_6_EmptyClientIDGetsUniqueID(t *testing.T) {
	b := startBroker(t, nil)
	r1, r2 := dialRaw(t, b.addr), dialRaw(t, b.addr)
	r1.connect("", true)
	r2.connect("", true)
	// Both stay connected: the assigned ids differ, so neither took the other over.
	r1.send(&packet.PingreqPacket{})
	r2.send(&packet.PingreqPacket{})
	if _, ok := r1.next().(*packet.PingrespPacket); !ok {
		t.Fatal("first client lost its connection")
	}
	if _, ok := r2.next().(*packet.PingrespPacket); !ok {
		t.Fatal("second client lost its connection")
	}
	if n := b.h.SessionCount(b.host); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
}

func TestMQTT31ClientIDLongerThan23Refused(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.version = packet.Version31
	ca := r.connectWith(&packet.ConnectPacket{ProtocolName: "MQIsdp", ProtocolLevel: packet.Version31,
		ClientID: "abcdefghijklmnopqrstuvwxyz", CleanSession: true})
	if ca.ReturnCode != connIDRejected {
		t.Fatalf("CONNACK code %#x, want 0x02", ca.ReturnCode)
	}
}

func TestMQTT31Connects(t *testing.T) {
	b := startBroker(t, nil)
	c := pahoClient(t, b.addr, "v31", func(o *paho.ClientOptions) { o.SetProtocolVersion(3) })
	in := subscribe(t, c, "a/b", 1)
	waitToken(t, c.Publish("a/b", 1, false, "hi"))
	if m := in.waitN(t, 1)[0]; m.payload != "hi" || m.qos != 1 {
		t.Fatalf("got %+v", m)
	}
}

func TestMQTT_3_2_2_3_AuthenticationCodes(t *testing.T) {
	closed := virtualhost.New(conf.VirtualHost{Name: "closed"}, router.Options{})
	b := startBroker(t, func(c *conf.Connector) { c.VirtualHost = "closed" }, closed)

	r := dialRaw(t, b.addr)
	ca := r.connectWith(&packet.ConnectPacket{ClientID: "u", CleanSession: true, UsernameFlag: true,
		Username: "alice", PasswordFlag: true, Password: []byte("x")})
	if ca.ReturnCode != connBadCredentials {
		t.Fatalf("bad credentials: CONNACK code %#x, want 0x04", ca.ReturnCode)
	}
	r.expectClosed()

	r = dialRaw(t, b.addr)
	if ca := r.connectWith(&packet.ConnectPacket{ClientID: "anon", CleanSession: true}); ca.ReturnCode != connNotAuthorized {
		t.Fatalf("anonymous: CONNACK code %#x, want 0x05", ca.ReturnCode)
	}
	r.expectClosed()
}

func TestUnknownConnectorVirtualHostGetsServerUnavailable(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.VirtualHost = "nowhere" })
	r := dialRaw(t, b.addr)
	if ca := r.connectWith(&packet.ConnectPacket{ClientID: "x", CleanSession: true}); ca.ReturnCode != connServerUnavailable {
		t.Fatalf("CONNACK code %#x, want 0x03", ca.ReturnCode)
	}
}

func TestVirtualHostFromUserName(t *testing.T) {
	other := virtualhost.New(conf.VirtualHost{Name: "tenant-b", HostNames: []string{"b.example"}, Anonymous: true}, router.Options{})
	b := startBroker(t, nil, other)

	def := pahoClient(t, b.addr, "sub-default", nil)
	inDefault := subscribe(t, def, "t", 0)
	bsub := pahoClient(t, b.addr, "sub-b", func(o *paho.ClientOptions) { o.SetUsername("bob@b.example") })
	inB := subscribe(t, bsub, "t", 0)
	// "carol@unknown" names no host: the whole name is the user of the default host.
	pub := pahoClient(t, b.addr, "pub", func(o *paho.ClientOptions) { o.SetUsername("carol@unknown") })
	pubB := pahoClient(t, b.addr, "pub-b", func(o *paho.ClientOptions) { o.SetUsername("dan@tenant-b") })

	waitToken(t, pub.Publish("t", 0, false, "to-default"))
	waitToken(t, pubB.Publish("t", 0, false, "to-b"))
	if m := inDefault.waitN(t, 1); m[0].payload != "to-default" {
		t.Fatalf("default host got %+v", m)
	}
	if m := inB.waitN(t, 1); m[0].payload != "to-b" {
		t.Fatalf("tenant-b got %+v", m)
	}
	time.Sleep(50 * time.Millisecond) // nothing else should arrive
	if inDefault.len() != 1 || inB.len() != 1 {
		t.Fatalf("messages crossed hosts: default %+v, b %+v", inDefault.all(), inB.all())
	}
}

func TestMQTT_3_1_2_24_KeepAliveExpiryClosesAndPublishesWill(t *testing.T) {
	b := startBroker(t, nil)
	watcher := pahoClient(t, b.addr, "watcher", nil)
	wills := subscribe(t, watcher, "wills/#", 1)

	r := dialRaw(t, b.addr)
	start := time.Now()
	ca := r.connectWith(&packet.ConnectPacket{ClientID: "sleepy", CleanSession: true, KeepAlive: 1,
		WillFlag: true, WillTopic: "wills/sleepy", WillPayload: []byte("gone"), WillQoS: 1})
	if ca.ReturnCode != 0 {
		t.Fatalf("CONNACK %#x", ca.ReturnCode)
	}
	r.expectClosed()
	if d := time.Since(start); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %s, want about 1.5s", d)
	}
	if m := wills.waitN(t, 1)[0]; m.topic != "wills/sleepy" || m.payload != "gone" || m.qos != 1 {
		t.Fatalf("will: %+v", m)
	}
}

func TestKeepAliveHonouredWhilePinging(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.connectWith(&packet.ConnectPacket{ClientID: "pinger", CleanSession: true, KeepAlive: 1})
	for range 3 {
		time.Sleep(700 * time.Millisecond)
		r.send(&packet.PingreqPacket{})
		if _, ok := r.next().(*packet.PingrespPacket); !ok {
			t.Fatal("want PINGRESP")
		}
	}
}

func TestShutdownClosesConnections(t *testing.T) {
	b := startBroker(t, nil)
	r := dialRaw(t, b.addr)
	r.connect("s", true)
	done := make(chan error, 1)
	go func() { done <- b.srv.Shutdown(t.Context()) }()
	r.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
