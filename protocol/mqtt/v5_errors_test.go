package mqtt

// The broker's answers to bad or limit-breaking MQTT 5 input, over a real socket with raw bytes: each
// case names the OASIS MQTT 5.0 statement (or section, for rules without a number) it checks, the exact
// reason code and packet the broker answers with, whether the connection is closed, and that the broker
// keeps serving other clients afterwards.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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
		{name: "3.14.2.2.2 DISCONNECT sets a session expiry on a session without one", rc: packet.ReasonProtocolError,
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

// reply is an acknowledgement the broker is expected to send: its type, packet id and reason code (one
// per filter for SUBACK and UNSUBACK).
type reply struct {
	t   packet.Type
	id  uint16
	rcs []byte
}

func ackOf(t packet.Type, id uint16, rc ...byte) reply { return reply{t, id, rc} }

// replyOf returns what p says as a reply, and its properties.
func replyOf(p packet.Packet) (reply, *packet.Properties) {
	switch p := p.(type) {
	case *packet.PubackPacket:
		return ackOf(packet.Puback, p.PacketID, p.ReasonCode), p.Properties
	case *packet.PubrecPacket:
		return ackOf(packet.Pubrec, p.PacketID, p.ReasonCode), p.Properties
	case *packet.PubrelPacket:
		return ackOf(packet.Pubrel, p.PacketID, p.ReasonCode), p.Properties
	case *packet.PubcompPacket:
		return ackOf(packet.Pubcomp, p.PacketID, p.ReasonCode), p.Properties
	case *packet.SubackPacket:
		return ackOf(packet.Suback, p.PacketID, p.ReturnCodes...), p.Properties
	case *packet.UnsubackPacket:
		return ackOf(packet.Unsuback, p.PacketID, p.ReasonCodes...), p.Properties
	}
	return reply{t: p.Type()}, nil
}

// strictHost is an anonymous host that refuses sending and receiving under secret/ and whose queue "full"
// holds one message, refusing more (full_policy block).
func strictHost() *virtualhost.Host {
	return virtualhost.New(conf.VirtualHost{Name: "strict", Anonymous: true,
		AccessRules: []conf.AccessRule{
			{Deny: []string{"*"}, Actions: []string{"send", "receive"}, Kind: "topic", ID: "secret.**"},
			{Allow: []string{"*"}},
		},
		Queues: []conf.QueuePolicy{{Pattern: "full", QuotaMessages: 1, FullPolicy: conf.FullBlock}},
	}, router.Options{})
}

// TestV5ErrAcks: input the broker refuses in its acknowledgement while the connection stays open. With
// Request Problem Information 0 no reason string (nor user property) may come on them [MQTT-3.1.2-29];
// the broker sends none on acknowledgements either way.
func TestV5ErrAcks(t *testing.T) {
	alias := func(a uint16) *packet.Properties { return &packet.Properties{TopicAlias: u16(a)} }
	utf8Flag := &packet.Properties{PayloadFormatIndicator: u8(1)}
	cases := []struct {
		name string
		mod  func(*conf.Connector)
		send [][]byte
		want []reply
	}{
		{name: "3.4.2.1 QoS 1 to a topic nobody subscribes to gets 0x10",
			send: [][]byte{pub5("nobody", 1, 1, nil, "x")},
			want: []reply{ackOf(packet.Puback, 1, packet.ReasonNoMatchingSubscribers)}},
		{name: "3.5.2.1 QoS 2 to a topic nobody subscribes to gets PUBREC 0x10, then PUBCOMP",
			send: [][]byte{pub5("nobody", 2, 1, nil, "x"), packet.Append(nil, &packet.PubrelPacket{PacketID: 1}, packet.Version5)},
			want: []reply{ackOf(packet.Pubrec, 1, packet.ReasonNoMatchingSubscribers), ackOf(packet.Pubcomp, 1, 0)}},
		{name: "MQTT-3.3.5-2 QoS 1 not authorized gets 0x87",
			send: [][]byte{pub5("secret/x", 1, 1, nil, "x")},
			want: []reply{ackOf(packet.Puback, 1, packet.ReasonNotAuthorized)}},
		{name: "MQTT-3.3.5-2 QoS 2 not authorized gets PUBREC 0x87, ending the flow [MQTT-4.3.3-4]",
			send: [][]byte{pub5("secret/x", 2, 1, nil, "x"), packet.Append(nil, &packet.PubrelPacket{PacketID: 1}, packet.Version5)},
			want: []reply{ackOf(packet.Pubrec, 1, packet.ReasonNotAuthorized), ackOf(packet.Pubcomp, 1, packet.ReasonPacketIdentifierNotFound)}},
		{name: "3.3.2.3.2 QoS 1 payload format 1 with invalid UTF-8 gets 0x99",
			send: [][]byte{pub5("pf", 1, 1, utf8Flag, "\xc3\x28")},
			want: []reply{ackOf(packet.Puback, 1, packet.ReasonPayloadFormatInvalid)}},
		{name: "3.3.2.3.2 QoS 1 payload format 1 with valid UTF-8 is taken",
			send: [][]byte{pub5("pf", 1, 1, utf8Flag, "héllo")},
			want: []reply{ackOf(packet.Puback, 1, packet.ReasonNoMatchingSubscribers)}},
		{name: "3.4.2.1 QoS 1 to a full queue gets 0x97",
			mod:  func(c *conf.Connector) { c.MQTT.QueuePrefix = "queue/" },
			send: [][]byte{pub5("queue/full", 1, 1, nil, "1"), pub5("queue/full", 1, 2, nil, "2")},
			want: []reply{ackOf(packet.Puback, 1, 0), ackOf(packet.Puback, 2, packet.ReasonQuotaExceeded)}},
		{name: "3.7.2.1 PUBREL for an unknown packet id gets PUBCOMP 0x92",
			send: [][]byte{packet.Append(nil, &packet.PubrelPacket{PacketID: 9}, packet.Version5)},
			want: []reply{ackOf(packet.Pubcomp, 9, packet.ReasonPacketIdentifierNotFound)}},
		{name: "3.6.2.1 PUBREC for an unknown packet id gets PUBREL 0x92",
			send: [][]byte{packet.Append(nil, &packet.PubrecPacket{PacketID: 9}, packet.Version5)},
			want: []reply{ackOf(packet.Pubrel, 9, packet.ReasonPacketIdentifierNotFound)}},
		{name: "MQTT-3.3.4-7 a completed QoS 2 flow frees its Receive Maximum slot",
			mod: func(c *conf.Connector) { c.MQTT.ReceiveMaximum = 1 },
			send: [][]byte{pub5("rm", 2, 1, nil, "1"), packet.Append(nil, &packet.PubrelPacket{PacketID: 1}, packet.Version5),
				pub5("rm", 2, 2, nil, "2")},
			want: []reply{ackOf(packet.Pubrec, 1, 0x10), ackOf(packet.Pubcomp, 1, 0), ackOf(packet.Pubrec, 2, 0x10)}},
		{name: "MQTT-3.3.4-7 a PUBREC refusing a QoS 2 PUBLISH frees its Receive Maximum slot",
			mod:  func(c *conf.Connector) { c.MQTT.ReceiveMaximum = 1 },
			send: [][]byte{pub5("secret/a", 2, 1, nil, "1"), pub5("rm", 2, 2, nil, "2")},
			want: []reply{ackOf(packet.Pubrec, 1, packet.ReasonNotAuthorized), ackOf(packet.Pubrec, 2, 0x10)}},
		{name: "MQTT-3.3.2-12 topic alias equal to the Topic Alias Maximum is accepted",
			mod:  func(c *conf.Connector) { c.MQTT.TopicAliasMaximum, c.MQTT.ResponseTopicPrefix = 3, "reply/" },
			send: [][]byte{pub5("al", 1, 1, alias(3), "1"), pub5("", 1, 2, alias(3), "2")},
			want: []reply{ackOf(packet.Puback, 1, 0x10), ackOf(packet.Puback, 2, 0x10)}},
		{name: "3.9.3 SUBSCRIBE to an invalid filter gets 0x8F, the valid one is granted",
			send: [][]byte{packet.Append(nil, &packet.SubscribePacket{PacketID: 3, Subscriptions: []packet.Subscription{
				{Filter: "a/#/b", QoS: 1}, {Filter: "ok", QoS: 1}}}, packet.Version5)},
			want: []reply{ackOf(packet.Suback, 3, packet.ReasonTopicFilterInvalid, packet.ReasonGrantedQoS1)}},
		{name: "3.9.3 SUBSCRIBE to an invalid share gets 0x8F",
			send: [][]byte{packet.Append(nil, &packet.SubscribePacket{PacketID: 3, Subscriptions: []packet.Subscription{
				{Filter: "$share/g+/x", QoS: 1}}}, packet.Version5)},
			want: []reply{ackOf(packet.Suback, 3, packet.ReasonTopicFilterInvalid)}},
		{name: "3.9.3 SUBSCRIBE not authorized gets 0x87",
			send: [][]byte{packet.Append(nil, &packet.SubscribePacket{PacketID: 4, Subscriptions: []packet.Subscription{
				{Filter: "secret/#", QoS: 2}}}, packet.Version5)},
			want: []reply{ackOf(packet.Suback, 4, packet.ReasonNotAuthorized)}},
		{name: "MQTT-3.11.3-1 UNSUBSCRIBE of no subscription gets 0x11",
			send: [][]byte{packet.Append(nil, &packet.UnsubscribePacket{PacketID: 5, Filters: []string{"never"}}, packet.Version5)},
			want: []reply{ackOf(packet.Unsuback, 5, packet.ReasonNoSubscriptionExisted)}},
	}
	for _, rpi := range []byte{1, 0} {
		for _, tc := range cases {
			t.Run(tc.name+"/problem_info_"+string('0'+rpi), func(t *testing.T) {
				b := startBroker(t, func(c *conf.Connector) {
					c.VirtualHost = "strict"
					if tc.mod != nil {
						tc.mod(c)
					}
				}, strictHost())
				r := v5Client(t, b.addr, "acks", &packet.Properties{RequestProblemInformation: u8(rpi)})
				for _, s := range tc.send {
					r.sendBytes(s)
				}
				for _, want := range tc.want {
					p := r.next()
					got, props := replyOf(p)
					if got.t != want.t || got.id != want.id || !bytes.Equal(got.rcs, want.rcs) {
						t.Fatalf("got %s id %d codes %#x, want %s id %d codes %#x", got.t, got.id, got.rcs, want.t, want.id, want.rcs)
					}
					if rpi == 0 && props != nil && (props.ReasonString != "" || props.UserProperties != nil) {
						t.Errorf("%s carries %+v with Request Problem Information 0 [MQTT-3.1.2-29]", got.t, props)
					}
				}
				r.ping() // still connected and served
			})
		}
	}
}

// TestV5ErrTopicAliasReuse: an alias set by a PUBLISH with a topic stands for that topic in later
// PUBLISH packets with an empty topic, until a PUBLISH with a topic sets it again (3.3.2.3.4)
// [MQTT-3.3.2-12]; each connection has its own aliases.
func TestV5ErrTopicAliasReuse(t *testing.T) {
	b := startBroker(t, nil)
	sub := v5Client(t, b.addr, "sub", nil) // no Topic Alias Maximum: it gets full topics [MQTT-3.3.2-11]
	if rc := sub.subscribe(1, 0, "al/#"); rc[0] != 0 {
		t.Fatalf("SUBACK %#x", rc)
	}
	pub := v5Client(t, b.addr, "pub", nil)
	alias := &packet.Properties{TopicAlias: u16(1)}
	pub.sendBytes(pub5("al/one", 0, 0, alias, "1"))
	pub.sendBytes(pub5("", 0, 0, alias, "2"))
	pub.sendBytes(pub5("al/two", 0, 0, alias, "3")) // the alias now stands for al/two
	pub.sendBytes(pub5("", 0, 0, alias, "4"))
	want := []string{"al/one 1", "al/one 2", "al/two 3", "al/two 4"}
	for _, w := range want {
		p := sub.nextPublish()
		if got := p.Topic + " " + string(p.Payload); got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
		if p.Properties != nil && p.Properties.TopicAlias != nil {
			t.Fatalf("alias %d sent to a client that allows none [MQTT-3.3.2-11]", *p.Properties.TopicAlias)
		}
	}
	// Another connection has no alias 1.
	other := v5Client(t, b.addr, "other", nil)
	other.sendBytes(pub5("", 0, 0, alias, "5"))
	other.expectDisconnect(packet.ReasonProtocolError)
	pub.ping()
}

// TestV5ErrConnect: CONNECT packets the broker refuses with CONNACK, then closes the connection
// [MQTT-3.2.2-7], with Session Present 0 [MQTT-3.2.2-6] and, as the client asked for problem
// information, a reason string.
func TestV5ErrConnect(t *testing.T) {
	closed := func() *virtualhost.Host { return virtualhost.New(conf.VirtualHost{Name: "closed"}, router.Options{}) }
	v5 := func(cp packet.ConnectPacket) []byte {
		cp.ProtocolName, cp.ProtocolLevel = "MQTT", packet.Version5
		return packet.Append(nil, &cp, packet.Version5)
	}
	cases := []struct {
		name  string
		vhost string // the connector's; "closed" is a host without anonymous access or users
		send  []byte
		v311  bool // the CONNACK is in the MQTT 3.1.1 encoding
		rc    byte
	}{
		{name: "MQTT-3.1.2-2 unsupported protocol level 6", v311: true, rc: packet.ConnRefusedUnacceptableProtocol,
			send: []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x06, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x00}},
		{name: "3.2.2.2 bad user name or password", vhost: "closed", rc: packet.ReasonBadUserNameOrPassword,
			send: v5(packet.ConnectPacket{ClientID: "u", CleanSession: true, UsernameFlag: true, Username: "alice",
				PasswordFlag: true, Password: []byte("x")})},
		{name: "3.2.2.2 not authorized (anonymous on a closed host)", vhost: "closed", rc: packet.ReasonNotAuthorized,
			send: v5(packet.ConnectPacket{ClientID: "anon", CleanSession: true})},
		{name: "3.2.2.2 server unavailable (unknown virtual host)", vhost: "nowhere", rc: packet.ReasonServerUnavailable,
			send: v5(packet.ConnectPacket{ClientID: "lost", CleanSession: true})},
		{name: "3.1.2.11.3 Receive Maximum 0", rc: packet.ReasonProtocolError,
			send: v5(packet.ConnectPacket{ClientID: "rm0", CleanSession: true, Properties: &packet.Properties{ReceiveMaximum: u16(0)}})},
		{name: "3.1.2.11.4 Maximum Packet Size 0", rc: packet.ReasonProtocolError,
			send: v5(packet.ConnectPacket{ClientID: "mp0", CleanSession: true, Properties: &packet.Properties{MaximumPacketSize: u32(0)}})},
		{name: "3.1.2.11 property repeated", rc: packet.ReasonProtocolError,
			send: frame(0x10, append([]byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
				0x0A, 0x11, 0, 0, 0, 0, 0x11, 0, 0, 0, 0}, appendStr(nil, "dup")...))},
		{name: "2.2.2.2 property not valid in CONNECT (topic alias)", rc: packet.ReasonMalformedPacket,
			send: frame(0x10, append([]byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
				0x03, 0x23, 0x00, 0x01}, appendStr(nil, "bad")...))},
		{name: "3.1.2.11.9 authentication data without method", rc: packet.ReasonProtocolError,
			send: frame(0x10, append([]byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
				0x04, 0x16, 0x00, 0x01, 'x'}, appendStr(nil, "ad")...))},
		{name: "MQTT-1.5.4-1 client id not UTF-8", rc: packet.ReasonMalformedPacket,
			send: frame(0x10, []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x02, 0xC3, 0x28})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, func(c *conf.Connector) { c.VirtualHost = tc.vhost }, closed())
			r := dialRaw(t, b.addr)
			if !tc.v311 {
				r.version = packet.Version5
				r.rd.SetVersion(packet.Version5)
			}
			r.sendBytes(tc.send)
			p := r.next()
			ca, ok := p.(*packet.ConnackPacket)
			if !ok {
				t.Fatalf("got %s, want CONNACK %#x", p.Type(), tc.rc)
			}
			if ca.ReturnCode != tc.rc || ca.SessionPresent {
				t.Fatalf("CONNACK %#x (%s) session present %v, want %#x and 0", ca.ReturnCode, reasonText(ca.Properties), ca.SessionPresent, tc.rc)
			}
			if !tc.v311 && reasonText(ca.Properties) == "" {
				t.Errorf("CONNACK %#x without a reason string", tc.rc)
			}
			r.expectClosed()
			if tc.vhost == "" {
				stillServes(t, b.addr)
			}
		})
	}
}

// TestV5ErrConnectNoProblemInfo: a client that asks for no problem information is refused without a
// reason string (the broker's choice: [MQTT-3.1.2-29] would allow one on CONNACK).
func TestV5ErrConnectNoProblemInfo(t *testing.T) {
	closed := virtualhost.New(conf.VirtualHost{Name: "closed"}, router.Options{})
	b := startBroker(t, func(c *conf.Connector) { c.VirtualHost = "closed" }, closed)
	r := v5Dial(t, b.addr)
	ca := r.v5Connect("quiet", &packet.Properties{RequestProblemInformation: u8(0)})
	if ca.ReturnCode != packet.ReasonNotAuthorized || ca.Properties != nil {
		t.Fatalf("CONNACK %#x %+v, want 0x87 without properties", ca.ReturnCode, ca.Properties)
	}
	r.expectClosed()
}

// TestV5ErrConnectLimits: what the broker caps in CONNECT it says in CONNACK, and enforces.
func TestV5ErrConnectLimits(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) {
		c.MQTT.MaxKeepAlive = 10 * time.Second
		c.MQTT.MaxSessionExpiry = time.Minute
	})
	cases := []struct {
		name       string
		keep       uint16
		expiry     *uint32
		wantKeep   *uint16 // Server Keep Alive; nil = absent
		wantExpiry *uint32 // Session Expiry Interval; nil = absent (the client's value stands)
	}{
		{name: "3.2.2.3.14 keep alive above the maximum gets Server Keep Alive", keep: 60, wantKeep: u16(10)},
		{name: "3.2.2.3.14 keep alive 0 (none) gets Server Keep Alive", keep: 0, wantKeep: u16(10)},
		{name: "3.2.2.3.14 keep alive within the maximum stands", keep: 5},
		{name: "3.2.2.3.2 session expiry above the maximum is capped", keep: 5, expiry: u32(3600), wantExpiry: u32(60)},
		{name: "3.2.2.3.2 session expiry 0xFFFFFFFF is capped", keep: 5, expiry: u32(maxExpiry), wantExpiry: u32(60)},
		{name: "3.2.2.3.2 session expiry within the maximum stands", keep: 5, expiry: u32(30)},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := v5Dial(t, b.addr)
			var props *packet.Properties
			if tc.expiry != nil {
				props = &packet.Properties{SessionExpiryInterval: tc.expiry}
			}
			ca := r.connectWith(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version5,
				ClientID: "lim" + string(rune('a'+i)), CleanSession: true, KeepAlive: tc.keep, Properties: props})
			if ca.ReturnCode != 0 || ca.Properties == nil {
				t.Fatalf("CONNACK %#x %+v", ca.ReturnCode, ca.Properties)
			}
			if got := ca.Properties.ServerKeepAlive; (got == nil) != (tc.wantKeep == nil) || (got != nil && *got != *tc.wantKeep) {
				t.Errorf("Server Keep Alive %v, want %v", deref(got), deref(tc.wantKeep))
			}
			if got := ca.Properties.SessionExpiryInterval; (got == nil) != (tc.wantExpiry == nil) || (got != nil && *got != *tc.wantExpiry) {
				t.Errorf("Session Expiry Interval %v, want %v", deref(got), deref(tc.wantExpiry))
			}
			r.send(&packet.DisconnectPacket{})
			r.expectClosed()
		})
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestV5ErrServerKeepAliveEnforced: the keep-alive the broker imposed in CONNACK is the one it enforces:
// 1.5 times it without a packet ends the connection with DISCONNECT 0x8D [MQTT-3.1.2-22].
func TestV5ErrServerKeepAliveEnforced(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.MaxKeepAlive = time.Second })
	r := v5Dial(t, b.addr)
	start := time.Now()
	ca := r.v5Connect("idle", nil) // asks for 60 s
	if ca.Properties == nil || ca.Properties.ServerKeepAlive == nil || *ca.Properties.ServerKeepAlive != 1 {
		t.Fatalf("CONNACK properties %+v, want Server Keep Alive 1", ca.Properties)
	}
	r.expectDisconnect(packet.ReasonKeepAliveTimeout)
	if d := time.Since(start); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %s, want about 1.5s", d)
	}
	stillServes(t, b.addr)
}

// TestV5ErrTakeover: a new connection with the same client id takes the session over; the old one gets
// DISCONNECT 0x8E [MQTT-3.1.4-3] and is closed, the new one is served.
func TestV5ErrTakeover(t *testing.T) {
	b := startBroker(t, nil)
	old := v5Client(t, b.addr, "same", nil)
	if rc := old.subscribe(1, 1, "to/#"); rc[0] != 1 {
		t.Fatalf("SUBACK %#x", rc)
	}
	r := v5Client(t, b.addr, "same", nil)
	old.expectDisconnect(packet.ReasonSessionTakenOver)
	r.ping()
	stillServes(t, b.addr)
}

// TestV5ErrShutdown: broker shutdown tells MQTT 5 clients with DISCONNECT 0x8B, then closes
// (3.14.2.1).
func TestV5ErrShutdown(t *testing.T) {
	b := startBroker(t, nil)
	r := v5Client(t, b.addr, "bye", nil)
	done := make(chan error, 1)
	go func() { done <- b.srv.Shutdown(context.Background()) }()
	r.expectDisconnect(packet.ReasonServerShuttingDown)
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// FuzzV5ErrSession feeds arbitrary bytes to a live MQTT 5 session, after a valid CONNECT, over loopback.
// Whatever they are, the broker must not panic, must end the connection once the client has ended its
// stream (no hang), and must let the session go (a clean start session ends with its connection).
func FuzzV5ErrSession(f *testing.F) {
	v5 := func(ps ...packet.Packet) []byte {
		var b []byte
		for _, p := range ps {
			b = packet.Append(b, p, packet.Version5)
		}
		return b
	}
	f.Add([]byte{})
	f.Add(v5(&packet.PingreqPacket{}))
	f.Add(pub5("f/a", 0, 0, &packet.Properties{TopicAlias: u16(1)}, "x"))
	f.Add(append(pub5("f/a", 1, 1, &packet.Properties{TopicAlias: u16(2)}, "x"), pub5("", 2, 2, &packet.Properties{TopicAlias: u16(2)}, "y")...))
	f.Add(v5(&packet.SubscribePacket{PacketID: 1, Properties: &packet.Properties{SubscriptionIdentifiers: []uint32{3}},
		Subscriptions: []packet.Subscription{{Filter: "f/#", QoS: 2}, {Filter: "$share/g/f/+", QoS: 1}}},
		&packet.PublishPacket{Topic: "f/b", QoS: 2, PacketID: 2, Payload: []byte("z"), Properties: &packet.Properties{
			PayloadFormatIndicator: u8(1), ResponseTopic: "r/1", CorrelationData: []byte{1}, MessageExpiryInterval: u32(5),
			UserProperties: []packet.UserProperty{{Key: "k", Value: "v"}}}},
		&packet.PubrelPacket{PacketID: 2}, &packet.PubrecPacket{PacketID: 1}, &packet.PubackPacket{PacketID: 1},
		&packet.UnsubscribePacket{PacketID: 3, Filters: []string{"f/#", "none"}}))
	f.Add(append(pub5("f/q", 2, 1, nil, "1"), pub5("f/q", 2, 2, nil, "2")...))
	f.Add(rawPublish(0, "t", []byte{0x01, 0x00, 0x01, 0x00}, "x"))
	f.Add(frame(0x30, append(appendStr(nil, "t"), 0xFF, 0xFF, 0xFF, 0xFF, 0x01)))
	f.Add(v5(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version5, ClientID: "again"}))
	f.Add(v5(&packet.DisconnectPacket{ReasonCode: packet.ReasonDisconnectWithWill}))
	f.Add([]byte{0xF0, 0x00})       // AUTH
	f.Add([]byte{0x30, 0xFF, 0x7F}) // a PUBLISH announced, never sent

	host := virtualhost.New(conf.VirtualHost{Name: "default", Anonymous: true}, router.Options{})
	h := NewHandler(virtualhost.NewRegistry(host), zap.NewNop())
	// The server logs a recovered panic at error level; the observer keeps it for the check below.
	core, logs := observer.New(zapcore.ErrorLevel)
	srv := protocol.NewServer(zap.New(core), map[string]protocol.Handler{protocol.MQTT: h})
	c := testConnector(func(c *conf.Connector) {
		c.MQTT.MaxMessageLength = 64 << 10
		c.MQTT.ReceiveMaximum = 4
		c.MQTT.DieDelay = time.Second
		c.MQTT.QueuePrefix = "queue/"
	})
	c.Network, c.Address = "tcp", "127.0.0.1:0"
	if err := srv.Listen(c); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTime)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	addr := srv.Addrs()[c.Name].String()
	connect := v5(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version5, ClientID: "fuzz", CleanSession: true})

	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.DialTimeout("tcp", addr, waitTime)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wrote := make(chan struct{})
		go func() {
			// Errors are expected: the broker may close the connection before it has read everything.
			defer close(wrote)
			_ = nc.SetWriteDeadline(time.Now().Add(waitTime))
			if _, err := nc.Write(append(connect[:len(connect):len(connect)], data...)); err == nil {
				_ = nc.(*net.TCPConn).CloseWrite()
			}
		}()
		_ = nc.SetReadDeadline(time.Now().Add(2 * waitTime))
		_, err = io.Copy(io.Discard, nc)
		<-wrote
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open %s after the client ended its stream", 2*waitTime)
		}
		for _, e := range logs.TakeAll() {
			t.Errorf("broker logged %q: %v", e.Message, e.ContextMap())
		}
		prototest.WaitFor(t, waitTime, func() bool { return h.SessionCount(host) == 0 })
	})
}
