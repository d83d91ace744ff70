package mqtt

// The broker's answers to bad or limit-breaking MQTT 5 input, over a real socket with raw bytes: each
// case names the OASIS MQTT 5.0 statement (or section, for rules without a number) it checks, the exact
// reason code and packet the broker answers with, whether the connection is closed, and that the broker
// keeps serving other clients afterwards.

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
)

// v5Dial connects a raw client speaking MQTT 5 without sending anything.
func v5Dial(t *testing.T, addr string) *raw {
	t.Helper()
	r := dialRaw(t, addr)
	r.version = packet.Version5
	r.rd.SetVersion(packet.Version5)
	return r
}

// v5Connect sends an MQTT 5 CONNECT with client id and props (clean start) and returns the CONNACK.
func (r *raw) v5Connect(id string, props *packet.Properties) *packet.ConnackPacket {
	r.t.Helper()
	return r.connectWith(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version5,
		ClientID: id, CleanSession: true, KeepAlive: 60, Properties: props})
}

// v5Client is a raw MQTT 5 client the broker accepted.
func v5Client(t *testing.T, addr, id string, props *packet.Properties) *raw {
	t.Helper()
	r := v5Dial(t, addr)
	if ca := r.v5Connect(id, props); ca.ReturnCode != packet.ReasonSuccess {
		t.Fatalf("CONNACK %#x for %q, want 0x00", ca.ReturnCode, id)
	}
	return r
}

// expectDisconnect requires the server's DISCONNECT with reason code rc, carrying a reason string (a
// DISCONNECT may, whatever Request Problem Information says [MQTT-3.1.2-29]), then the connection closed
// [MQTT-4.13.1-1].
func (r *raw) expectDisconnect(rc byte) {
	r.t.Helper()
	p := r.next()
	d, ok := p.(*packet.DisconnectPacket)
	if !ok {
		r.t.Fatalf("got %s %+v, want DISCONNECT %#x", p.Type(), p, rc)
	}
	if d.ReasonCode != rc {
		r.t.Fatalf("DISCONNECT %#x (%s), want %#x", d.ReasonCode, reasonText(d.Properties), rc)
	}
	if d.Properties == nil || d.Properties.ReasonString == "" {
		r.t.Errorf("DISCONNECT %#x without a reason string", rc)
	}
	r.expectClosed()
}

func reasonText(p *packet.Properties) string {
	if p == nil {
		return ""
	}
	return p.ReasonString
}

// ping requires the connection to be open and served: PINGREQ gets PINGRESP.
func (r *raw) ping() {
	r.t.Helper()
	r.send(&packet.PingreqPacket{})
	if p := r.next(); p.Type() != packet.Pingresp {
		r.t.Fatalf("got %s, want PINGRESP", p.Type())
	}
}

// stillServes checks that the broker serves a new MQTT 5 client end to end after a refusal: it subscribes,
// publishes at QoS 1 and receives its message.
func stillServes(t *testing.T, addr string) {
	t.Helper()
	r := v5Client(t, addr, "after", nil)
	if rc := r.subscribe(1, 1, "after/t"); len(rc) != 1 || rc[0] != 1 {
		t.Fatalf("SUBACK %v, want [1]", rc)
	}
	r.send(&packet.PublishPacket{Topic: "after/t", QoS: 1, PacketID: 2, Payload: []byte("ok")})
	var gotAck, gotMsg bool
	for !gotAck || !gotMsg {
		switch p := r.next().(type) {
		case *packet.PubackPacket:
			if p.PacketID != 2 || p.ReasonCode != packet.ReasonSuccess {
				t.Fatalf("PUBACK %+v, want id 2 code 0", p)
			}
			gotAck = true
		case *packet.PublishPacket:
			if string(p.Payload) != "ok" {
				t.Fatalf("PUBLISH %+v", p)
			}
			r.send(&packet.PubackPacket{PacketID: p.PacketID})
			gotMsg = true
		default:
			t.Fatalf("got %s, want PUBACK or PUBLISH", p.Type())
		}
	}
	r.send(&packet.DisconnectPacket{})
	r.expectClosed()
}

// Builders of MQTT 5 packets the codec would not produce.

func appendVarint(b []byte, v int) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

func appendStr(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// frame is a packet of first byte first around body.
func frame(first byte, body []byte) []byte {
	return append(appendVarint([]byte{first}, len(body)), body...)
}

// rawPublish is an MQTT 5 PUBLISH of topic with property bytes props (their length prefixed here) and
// payload; QoS 1 and 2 get packet id 1.
func rawPublish(qos byte, topic string, props []byte, payload string) []byte {
	b := appendStr(nil, topic)
	if qos > 0 {
		b = append(b, 0, 1)
	}
	b = append(appendVarint(b, len(props)), props...)
	return frame(0x30|qos<<1, append(b, payload...))
}

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
func u8(v byte) *byte      { return &v }

func pub5(topic string, qos byte, id uint16, props *packet.Properties, payload string) []byte {
	return packet.Append(nil, &packet.PublishPacket{Topic: topic, QoS: qos, PacketID: id, Properties: props,
		Payload: []byte(payload)}, packet.Version5)
}

// TestV5ErrDisconnect: input after CONNACK that ends the connection with the server's DISCONNECT.
func TestV5ErrDisconnect(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*conf.Connector)
		// send is what the client sends after CONNACK; before returns for replies it expects first.
		send   [][]byte
		before []packet.Type
		rc     byte
	}{
		{name: "MQTT-3.3.2-8 topic alias 0", rc: packet.ReasonTopicAliasInvalid,
			send: [][]byte{pub5("a", 0, 0, &packet.Properties{TopicAlias: u16(0)}, "x")}},
		{name: "MQTT-3.3.2-9 topic alias above the Topic Alias Maximum", rc: packet.ReasonTopicAliasInvalid,
			mod:  func(c *conf.Connector) { c.MQTT.TopicAliasMaximum, c.MQTT.ResponseTopicPrefix = 2, "reply/" },
			send: [][]byte{pub5("a", 0, 0, &packet.Properties{TopicAlias: u16(3)}, "x")}},
		{name: "MQTT-3.3.2-9 topic alias with aliases disabled (maximum 0)", rc: packet.ReasonTopicAliasInvalid,
			mod:  func(c *conf.Connector) { c.MQTT.TopicAliasMaximum, c.MQTT.ResponseTopicPrefix = 0, "reply/" },
			send: [][]byte{pub5("a", 0, 0, &packet.Properties{TopicAlias: u16(1)}, "x")}},
		{name: "3.3.4 empty topic with an alias never set", rc: packet.ReasonProtocolError,
			send: [][]byte{pub5("", 0, 0, &packet.Properties{TopicAlias: u16(5)}, "x")}},
		{name: "3.3.2.1 empty topic without alias", rc: packet.ReasonProtocolError,
			send: [][]byte{rawPublish(0, "", nil, "x")}},
		{name: "MQTT-3.2.2-15 packet above the Maximum Packet Size", rc: packet.ReasonPacketTooLarge,
			mod:  func(c *conf.Connector) { c.MQTT.MaxMessageLength = 256 },
			send: [][]byte{pub5("big", 0, 0, nil, strings.Repeat("x", 300))}},
		{name: "MQTT-3.3.4-7 Receive Maximum exceeded (QoS 2 awaiting PUBREL)", rc: packet.ReasonReceiveMaximumExceeded,
			mod: func(c *conf.Connector) { c.MQTT.ReceiveMaximum = 2 },
			send: [][]byte{pub5("rm", 2, 1, nil, "1"), pub5("rm", 2, 2, nil, "2"),
				pub5("rm", 2, 3, nil, "3")},
			before: []packet.Type{packet.Pubrec, packet.Pubrec}},
		{name: "3.3.2.3.2 payload format 1 with invalid UTF-8 at QoS 0", rc: packet.ReasonPayloadFormatInvalid,
			send: [][]byte{pub5("pf", 0, 0, &packet.Properties{PayloadFormatIndicator: u8(1)}, "\xff\xfe")}},
		{name: "3.3.2.3.2 payload format indicator twice", rc: packet.ReasonProtocolError,
			send: [][]byte{rawPublish(0, "t", []byte{0x01, 0x00, 0x01, 0x00}, "x")}},
		{name: "2.2.2.2 property not valid in PUBLISH (session expiry)", rc: packet.ReasonMalformedPacket,
			send: [][]byte{rawPublish(0, "t", []byte{0x11, 0, 0, 0, 1}, "x")}},
		{name: "2.2.2.2 unknown property identifier", rc: packet.ReasonMalformedPacket,
			send: [][]byte{rawPublish(0, "t", []byte{0x7F, 0}, "x")}},
		{name: "1.5.5 property length varint of five bytes", rc: packet.ReasonMalformedPacket,
			send: [][]byte{frame(0x30, append(appendStr(nil, "t"), 0xFF, 0xFF, 0xFF, 0xFF, 0x01))}},
		{name: "MQTT-1.5.5-1 remaining length not in its shortest form", rc: packet.ReasonMalformedPacket,
			send: [][]byte{{0xC0, 0x80, 0x00}}},
		{name: "2.2.2.2 property length beyond the packet", rc: packet.ReasonMalformedPacket,
			send: [][]byte{frame(0x30, append(appendStr(nil, "t"), 0x10, 0x01, 0x00))}},
		{name: "MQTT-3.3.1-4 PUBLISH QoS 3", rc: packet.ReasonMalformedPacket,
			send: [][]byte{{0x36, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 0x00}}},
		{name: "MQTT-3.3.2-14 response topic with a wildcard", rc: packet.ReasonProtocolError,
			send: [][]byte{pub5("t", 0, 0, &packet.Properties{ResponseTopic: "r/#"}, "x")}},
		{name: "MQTT-3.3.4-6 PUBLISH from a client with a subscription identifier", rc: packet.ReasonProtocolError,
			send: [][]byte{pub5("t", 0, 0, &packet.Properties{SubscriptionIdentifiers: []uint32{7}}, "x")}},
		{name: "MQTT-3.1.0-2 second CONNECT", rc: packet.ReasonProtocolError,
			send: [][]byte{packet.Append(nil, &packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version5,
				ClientID: "twice", CleanSession: true}, packet.Version5)}},
		{name: "3.8.3.1 SUBSCRIBE maximum QoS 3", rc: packet.ReasonProtocolError,
			send: [][]byte{frame(0x82, append(appendStr([]byte{0, 1, 0}, "s"), 0x03))}},
		{name: "MQTT-3.8.3-4 no local on a shared subscription", rc: packet.ReasonProtocolError,
			send: [][]byte{packet.Append(nil, &packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{
				{Filter: "$share/g/s", NoLocal: true}}}, packet.Version5)}},
		{name: "3.8.2.1.2 subscription identifier 0", rc: packet.ReasonProtocolError,
			send: [][]byte{packet.Append(nil, &packet.SubscribePacket{PacketID: 1, Properties: &packet.Properties{
				SubscriptionIdentifiers: []uint32{0}}, Subscriptions: []packet.Subscription{{Filter: "s"}}}, packet.Version5)}},
		{name: "3.8.2.1.2 two subscription identifiers", rc: packet.ReasonProtocolError,
			send: [][]byte{packet.Append(nil, &packet.SubscribePacket{PacketID: 1, Properties: &packet.Properties{
				SubscriptionIdentifiers: []uint32{1, 2}}, Subscriptions: []packet.Subscription{{Filter: "s"}}}, packet.Version5)}},
		{name: "MQTT-3.14.2-2 DISCONNECT sets a session expiry on a session without one", rc: packet.ReasonProtocolError,
			send: [][]byte{packet.Append(nil, &packet.DisconnectPacket{Properties: &packet.Properties{
				SessionExpiryInterval: u32(60)}}, packet.Version5)}},
		{name: "MQTT-2.2.2-2 PUBREL with reserved flags 0", rc: packet.ReasonMalformedPacket,
			send: [][]byte{{0x60, 0x02, 0x00, 0x01}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, tc.mod)
			r := v5Client(t, b.addr, "bad", nil)
			for _, s := range tc.send {
				r.sendBytes(s)
			}
			for _, want := range tc.before {
				if p := r.next(); p.Type() != want {
					t.Fatalf("got %s %+v, want %s first", p.Type(), p, want)
				}
			}
			r.expectDisconnect(tc.rc)
			stillServes(t, b.addr)
		})
	}
}
