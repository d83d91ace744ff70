package packet

import (
	"bytes"
	"reflect"
	"testing"
	"testing/iotest"
)

// specCase is one MQTT 5.0 rule the codec enforces, named after its normative statement
// ([MQTT-x.y.z-n]) or, where the rule has no number, its section. rc is the reason code the
// session sends for the error (ReasonFor): 0x81 malformed, 0x82 protocol error; 0 means the
// packet decodes, to want when want is set.
type specCase struct {
	name string
	raw  []byte
	rc   byte
	want Packet
}

// spec5 is written from the text of MQTT 5.0, not from the decoder.
var spec5 = []specCase{
	// ---- 1.5 data representation ----
	{name: "[MQTT-1.5.4-1] ill-formed UTF-8 in a topic name", raw: pkt(0x30, str("a\xc3"), props()), rc: 0x81},
	{name: "[MQTT-1.5.4-1] surrogate U+DFFF in a reason string", raw: pkt(0x40, u16(1), 0x80, props(0x1F, str("\xed\xbf\xbf"))), rc: 0x81},
	{name: "[MQTT-1.5.4-1] overlong encoding in a content type", raw: pkt(0x30, str("t"), props(0x03, str("\xc0\xaf"))), rc: 0x81},
	{name: "[MQTT-1.5.4-2] U+0000 in a topic name", raw: pkt(0x30, str("a\x00b"), props()), rc: 0x81},
	{name: "[MQTT-1.5.4-2] U+0000 in a response topic", raw: pkt(0x30, str("t"), props(0x08, str("r\x00"))), rc: 0x81},
	{name: "[MQTT-1.5.4-2] U+0000 in a client identifier", raw: pkt(0x10, str("MQTT"), 5, 0x02, u16(0), props(), str("\x00")), rc: 0x81},
	{
		name: "[MQTT-1.5.4-3] a BOM is kept, not stripped",
		raw:  pkt(0x30, str("\xef\xbb\xbfa"), props()),
		want: &PublishPacket{Topic: "\ufeffa"},
	},
	{name: "[MQTT-1.5.5-1] remaining length not in its shortest form", raw: cat(0xC0, 0x80, 0x00), rc: 0x81},
	{name: "[MQTT-1.5.5-1] property length not in its shortest form", raw: cat(0x30, 5, str("t"), 0x80, 0x00), rc: 0x81},
	{name: "[MQTT-1.5.5-1] subscription identifier not in its shortest form", raw: pkt(0x30, str("t"), props(0x0B, 0x81, 0x00)), rc: 0x81},
	{name: "section 1.5.5 remaining length of five bytes", raw: cat(0x30, 0x80, 0x80, 0x80, 0x80, 0x01), rc: 0x81},
	{name: "section 1.5.5 property length of five bytes", raw: cat(0x30, 8, str("t"), 0x80, 0x80, 0x80, 0x80, 0x01), rc: 0x81},
	{name: "section 1.5.5 subscription identifier of five bytes", raw: pkt(0x30, str("t"), props(0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F)), rc: 0x81},
	{
		name: "section 1.5.5 largest subscription identifier",
		raw:  pkt(0x82, u16(1), props(0x0B, 0xFF, 0xFF, 0xFF, 0x7F), str("a"), 0),
		want: &SubscribePacket{PacketID: 1, Properties: &Properties{SubscriptionIdentifiers: []uint32{268435455}},
			Subscriptions: []Subscription{{Filter: "a"}}},
	},
	{name: "[MQTT-1.5.7-1] user property name not UTF-8", raw: pkt(0x30, str("t"), props(0x26, str("\xff"), str("v"))), rc: 0x81},
	{name: "[MQTT-1.5.7-1] user property value with U+0000", raw: pkt(0xE0, 0, props(0x26, str("k"), str("\x00"))), rc: 0x81},
	{name: "[MQTT-1.5.7-1] user property without its value", raw: pkt(0x30, str("t"), props(0x26, str("k"))), rc: 0x81},
	{
		name: "[MQTT-1.5.7-1] user properties repeat, keep their order and may be empty",
		raw:  pkt(0xA2, u16(2), props(0x26, str("b"), str("1"), 0x26, str("a"), str(""), 0x26, str("b"), str("1")), str("f")),
		want: &UnsubscribePacket{PacketID: 2, Filters: []string{"f"}, Properties: &Properties{
			UserProperties: []UserProperty{{"b", "1"}, {"a", ""}, {"b", "1"}}}},
	},

	// ---- 2.1 fixed header ----
	{name: "[MQTT-2.1.3-1] PUBACK reserved flags", raw: cat(0x41, 2, u16(1)), rc: 0x81},
	{name: "[MQTT-3.6.1-1] PUBREL flags 0", raw: cat(0x60, 2, u16(1)), rc: 0x81},
	{name: "[MQTT-3.8.1-1] SUBSCRIBE flags 0", raw: pkt(0x80, u16(1), props(), str("a"), 0), rc: 0x81},
	{name: "[MQTT-3.10.1-1] UNSUBSCRIBE flags 3", raw: pkt(0xA3, u16(1), props(), str("a")), rc: 0x81},
	{name: "[MQTT-3.14.1-1] DISCONNECT reserved flags", raw: cat(0xE8, 0), rc: 0x81},
	{name: "[MQTT-3.15.1-1] AUTH reserved flags", raw: cat(0xF1, 0), rc: 0x81},

	// ---- 2.2 variable header, properties ----
	{name: "[MQTT-2.2.1-3] packet identifier 0 in SUBSCRIBE", raw: pkt(0x82, u16(0), props(), str("a"), 0), rc: 0x81},
	{name: "[MQTT-2.2.1-4] packet identifier 0 in a QoS 1 PUBLISH", raw: pkt(0x32, str("t"), u16(0), props()), rc: 0x81},
	{name: "[MQTT-2.2.2-1] property length 0 means no properties", raw: pkt(0x30, str("t"), props(), "p"), want: &PublishPacket{Topic: "t", Payload: []byte("p")}},
	{name: "[MQTT-2.2.2-1] PUBLISH without its property length", raw: pkt(0x30, str("t")), rc: 0x81},
	{name: "[MQTT-2.2.2-1] SUBSCRIBE without its property length", raw: pkt(0x82, u16(1)), rc: 0x81},
	{name: "[MQTT-2.2.2-1] property length beyond the packet", raw: pkt(0x90, u16(1), 9, 0x1F, str("ab")), rc: 0x81},
	{name: "[MQTT-2.2.2-1] property length ending inside a property", raw: pkt(0x30, str("t"), 3, 0x02, u32(1)), rc: 0x81},
	{name: "section 2.2.2.2 Topic Alias in CONNECT is malformed", raw: propPackets["CONNECT"](props(0x23, u16(1))), rc: 0x81},
	{name: "section 2.2.2.2 Will Delay Interval in PUBLISH is malformed", raw: pkt(0x30, str("t"), props(0x18, u32(1))), rc: 0x81},
	{name: "section 2.2.2.2 Server Keep Alive in CONNECT is malformed", raw: propPackets["CONNECT"](props(0x13, u16(1))), rc: 0x81},
	{name: "section 2.2.2.2 Subscription Identifier in UNSUBSCRIBE is malformed", raw: pkt(0xA2, u16(1), props(0x0B, 1), str("a")), rc: 0x81},
	{name: "section 2.2.2.2 Reason String in PUBLISH is malformed", raw: pkt(0x30, str("t"), props(0x1F, str("r"))), rc: 0x81},
	{name: "section 2.2.2.2 unknown property 0x00", raw: pkt(0x30, str("t"), props(0x00, 0)), rc: 0x81},
	{name: "section 2.2.2.2 two-byte property identifier", raw: pkt(0x30, str("t"), props(0x81, 0x01, 0)), rc: 0x81},

	// ---- 3.1 CONNECT ----
	{name: "[MQTT-3.1.2-3] CONNECT reserved flag", raw: pkt(0x10, str("MQTT"), 5, 0x03, u16(0), props(), str("c")), rc: 0x81},
	{name: "[MQTT-3.1.2-9] will flag without will properties", raw: pkt(0x10, str("MQTT"), 5, 0x04, u16(0), props(), str("c")), rc: 0x81},
	{name: "[MQTT-3.1.2-11] will QoS without will flag", raw: pkt(0x10, str("MQTT"), 5, 0x10, u16(0), props(), str("c")), rc: 0x81},
	{name: "[MQTT-3.1.2-12] will QoS 3", raw: pkt(0x10, str("MQTT"), 5, 0x1C, u16(0), props(), str("c"), props(), str("w"), str("p")), rc: 0x81},
	{name: "[MQTT-3.1.2-13] will retain without will flag", raw: pkt(0x10, str("MQTT"), 5, 0x20, u16(0), props(), str("c")), rc: 0x81},
	{
		name: "[MQTT-3.1.2-19] password without user name",
		raw:  pkt(0x10, str("MQTT"), 5, 0x40, u16(0), props(), str("c"), str("pw")),
		want: &ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: 5, ClientID: "c", PasswordFlag: true, Password: []byte("pw")},
	},
	{name: "section 3.1.2.11.3 Receive Maximum 0", raw: propPackets["CONNECT"](props(0x21, u16(0))), rc: 0x82},
	{name: "section 3.1.2.11.4 Maximum Packet Size 0", raw: propPackets["CONNECT"](props(0x27, u32(0))), rc: 0x82},
	{name: "section 3.1.2.11.6 Request Response Information 2", raw: propPackets["CONNECT"](props(0x19, 2)), rc: 0x82},
	{name: "section 3.1.2.11.7 Request Problem Information 2", raw: propPackets["CONNECT"](props(0x17, 2)), rc: 0x82},
	{name: "section 3.1.2.11.10 Authentication Data without Method", raw: propPackets["CONNECT"](props(0x16, str("d"))), rc: 0x82},
	{name: "section 3.1.2.11.10 empty Authentication Data without Method", raw: propPackets["CONNECT"](props(0x16, str(""))), rc: 0x82},
	{name: "section 3.1.2.11.10 Authentication Data with an empty Method", raw: propPackets["CONNECT"](props(0x15, str(""), 0x16, str("d"))), rc: 0x82},
	{
		name: "section 3.1.2.11.5 Topic Alias Maximum 0 is allowed",
		raw:  propPackets["CONNECT"](props(0x22, u16(0))),
		want: &ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, ClientID: "c",
			Properties: &Properties{TopicAliasMaximum: ptr[uint16](0)}},
	},
	{name: "section 3.1.3.2.3 will Payload Format Indicator 2", raw: propPackets["Will"](props(0x01, 2)), rc: 0x82},
	{
		name: "section 3.1.3.2 will properties",
		raw: propPackets["Will"](props(0x01, 1, 0x02, u32(9), 0x03, str("ct"), 0x08, str("r"), 0x09, str("cd"), 0x18, u32(4),
			0x26, str("k"), str("v"))),
		want: &ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, ClientID: "c", WillFlag: true,
			WillTopic: "w", WillPayload: []byte("m"), WillProperties: &Properties{PayloadFormatIndicator: ptr[byte](1),
				MessageExpiryInterval: ptr[uint32](9), ContentType: "ct", ResponseTopic: "r", CorrelationData: []byte("cd"),
				WillDelayInterval: ptr[uint32](4), UserProperties: []UserProperty{{"k", "v"}}}},
	},

	// ---- 3.2 CONNACK ----
	{name: "[MQTT-3.2.2-1] CONNACK reserved acknowledge flags", raw: pkt(0x20, 0x80, 0, props()), rc: 0x81},
	{name: "[MQTT-3.2.2-8] CONNACK reason code 0x04", raw: pkt(0x20, 0, 0x04, props()), rc: 0x82},
	{name: "section 3.2.2.3 CONNACK without its property length", raw: cat(0x20, 2, 0, 0), rc: 0x81},
	{name: "section 3.2.2.3.3 CONNACK Receive Maximum 0", raw: propPackets["CONNACK"](props(0x21, u16(0))), rc: 0x82},
	{name: "section 3.2.2.3.4 Maximum QoS 2", raw: propPackets["CONNACK"](props(0x24, 2)), rc: 0x82},
	{name: "section 3.2.2.3.5 Retain Available 2", raw: propPackets["CONNACK"](props(0x25, 2)), rc: 0x82},
	{name: "section 3.2.2.3.6 CONNACK Maximum Packet Size 0", raw: propPackets["CONNACK"](props(0x27, u32(0))), rc: 0x82},
	{name: "section 3.2.2.3.11 Wildcard Subscription Available 2", raw: propPackets["CONNACK"](props(0x28, 2)), rc: 0x82},
	{name: "section 3.2.2.3.12 Subscription Identifiers Available 2", raw: propPackets["CONNACK"](props(0x29, 2)), rc: 0x82},
	{name: "section 3.2.2.3.13 Shared Subscription Available 2", raw: propPackets["CONNACK"](props(0x2A, 0xFF)), rc: 0x82},

	// ---- 3.3 PUBLISH ----
	{name: "[MQTT-3.3.1-2] DUP at QoS 0", raw: pkt(0x38, str("t"), props()), rc: 0x81},
	{name: "[MQTT-3.3.1-4] QoS 3", raw: pkt(0x36, str("t"), u16(1), props()), rc: 0x81},
	{name: "[MQTT-3.3.2-2] wildcard in a topic name", raw: pkt(0x30, str("a/+"), props()), rc: 0x81},
	{name: "section 3.3.2.1 empty topic name without Topic Alias", raw: pkt(0x30, str(""), props(0x01, 1)), rc: 0x82},
	{
		name: "section 3.3.2.1 empty topic name with Topic Alias",
		raw:  pkt(0x34, str(""), u16(3), props(0x23, u16(7)), "x"),
		want: &PublishPacket{QoS: 2, PacketID: 3, Payload: []byte("x"), Properties: &Properties{TopicAlias: ptr[uint16](7)}},
	},
	{name: "section 3.3.2.3.2 Payload Format Indicator 2", raw: pkt(0x30, str("t"), props(0x01, 2)), rc: 0x82},
	{
		// A Topic Alias of 0 is answered with 0x94 (Topic Alias invalid, section 3.3.4), which
		// the session checks together with the Topic Alias Maximum it announced.
		name: "[MQTT-3.3.2-8] Topic Alias 0 reaches the session",
		raw:  pkt(0x30, str(""), props(0x23, u16(0))),
		want: &PublishPacket{Properties: &Properties{TopicAlias: ptr[uint16](0)}},
	},
	{name: "[MQTT-3.3.2-14] wildcard in a response topic", raw: pkt(0x30, str("t"), props(0x08, str("r/+"))), rc: 0x82},
	{name: "section 3.3.2.3.8 Subscription Identifier 0 in PUBLISH", raw: pkt(0x30, str("t"), props(0x0B, 0)), rc: 0x82},
	{
		name: "section 3.3.4 several Subscription Identifiers, repeats kept",
		raw:  pkt(0x30, str("t"), props(0x0B, 5, 0x0B, 1, 0x0B, 5)),
		want: &PublishPacket{Topic: "t", Properties: &Properties{SubscriptionIdentifiers: []uint32{5, 1, 5}}},
	},

	// ---- 3.4 to 3.7 PUBACK, PUBREC, PUBREL, PUBCOMP ----
	{name: "section 3.4.2.1 PUBACK of remaining length 2 is Success", raw: cat(0x40, 2, u16(9)), want: &PubackPacket{PacketID: 9}},
	{name: "section 3.4.2.2.1 PUBACK of remaining length 3 has no properties", raw: cat(0x40, 3, u16(9), 0x97), want: &PubackPacket{PacketID: 9, ReasonCode: 0x97}},
	{name: "[MQTT-3.4.2-1] PUBACK reason code 0x01", raw: cat(0x40, 3, u16(9), 0x01), rc: 0x82},
	{name: "[MQTT-3.4.2-1] PUBACK reason code 0x92", raw: cat(0x40, 3, u16(9), 0x92), rc: 0x82},
	{name: "[MQTT-3.5.2-1] PUBREC reason code 0x92", raw: cat(0x50, 3, u16(9), 0x92), rc: 0x82},
	{name: "[MQTT-3.6.2-1] PUBREL reason code 0x10", raw: cat(0x62, 3, u16(9), 0x10), rc: 0x82},
	{name: "[MQTT-3.7.2-1] PUBCOMP reason code 0x80", raw: cat(0x70, 3, u16(9), 0x80), rc: 0x82},
	{name: "section 3.4.2.2.1 PUBACK property length cut short", raw: cat(0x40, 4, u16(9), 0x00, 0x05), rc: 0x81},

	// ---- 3.8 to 3.11 SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK ----
	{name: "[MQTT-3.8.3-1] topic filter not UTF-8", raw: pkt(0x82, u16(1), props(), str("\xfe"), 0), rc: 0x81},
	{name: "[MQTT-3.8.3-2] SUBSCRIBE without topic filters", raw: pkt(0x82, u16(1), props()), rc: 0x82},
	{name: "[MQTT-3.8.3-4] No Local on a shared subscription", raw: pkt(0x82, u16(1), props(), str("$share/g/t"), 0x05), rc: 0x82},
	{name: "[MQTT-3.8.3-5] reserved subscription option bit 6", raw: pkt(0x82, u16(1), props(), str("a"), 0x40), rc: 0x81},
	{name: "[MQTT-3.8.3-5] reserved subscription option bit 7", raw: pkt(0x82, u16(1), props(), str("a"), 0x81), rc: 0x81},
	{name: "section 3.8.3.1 Maximum QoS 3", raw: pkt(0x82, u16(1), props(), str("a"), 0x03), rc: 0x82},
	{name: "section 3.8.3.1 Retain Handling 3", raw: pkt(0x82, u16(1), props(), str("a"), 0x30), rc: 0x82},
	{name: "section 3.8.2.1.2 Subscription Identifier 0 in SUBSCRIBE", raw: pkt(0x82, u16(1), props(0x0B, 0), str("a"), 0), rc: 0x82},
	{name: "section 3.8.2.1.2 two Subscription Identifiers in SUBSCRIBE", raw: pkt(0x82, u16(1), props(0x0B, 1, 0x0B, 1), str("a"), 0), rc: 0x82},
	{
		name: "section 3.8.3.1 every option",
		raw:  pkt(0x82, u16(4), props(0x0B, 0x80, 0x01), str("a/#"), 0x2E, str("b"), 0x11),
		want: &SubscribePacket{PacketID: 4, Properties: &Properties{SubscriptionIdentifiers: []uint32{128}},
			Subscriptions: []Subscription{{Filter: "a/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "b", QoS: 1, RetainHandling: 1}}},
	},
	{name: "[MQTT-3.9.3-2] SUBACK reason code 0x03", raw: pkt(0x90, u16(1), props(), 0x00, 0x03), rc: 0x82},
	{name: "[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters", raw: pkt(0xA2, u16(1), props()), rc: 0x82},
	{name: "[MQTT-3.11.3-2] UNSUBACK reason code 0x01", raw: pkt(0xB0, u16(1), props(), 0x01), rc: 0x82},

	// ---- 3.14 DISCONNECT ----
	{name: "section 3.14.2.1 DISCONNECT of remaining length 0 is Normal disconnection", raw: cat(0xE0, 0), want: &DisconnectPacket{}},
	{name: "section 3.14.2.2.1 DISCONNECT of remaining length 1 has no properties", raw: cat(0xE0, 1, 0x8E), want: &DisconnectPacket{ReasonCode: 0x8E}},
	{name: "[MQTT-3.14.2-1] DISCONNECT reason code 0x05", raw: cat(0xE0, 1, 0x05), rc: 0x82},
	{name: "[MQTT-3.14.2-1] DISCONNECT reason code 0x84 (CONNACK only)", raw: cat(0xE0, 1, 0x84), rc: 0x82},
	{
		name: "section 3.14.2.2 DISCONNECT properties",
		raw:  pkt(0xE0, 0x04, props(0x11, u32(60), 0x1F, str("bye"), 0x26, str("k"), str("v"))),
		want: &DisconnectPacket{ReasonCode: 0x04, Properties: &Properties{SessionExpiryInterval: ptr[uint32](60),
			ReasonString: "bye", UserProperties: []UserProperty{{"k", "v"}}}},
	},

	// ---- 3.15 AUTH ----
	{name: "section 3.15.2.1 AUTH of remaining length 0 is Success", raw: cat(0xF0, 0), want: &AuthPacket{}},
	{name: "[MQTT-3.15.2-1] AUTH reason code 0x87", raw: pkt(0xF0, 0x87, props(0x15, str("m"))), rc: 0x82},
	{name: "section 3.15.2.1 AUTH reason code without a property length", raw: cat(0xF0, 1, 0x18), rc: 0x81},
	{name: "section 3.15.2.2.2 AUTH without Authentication Method", raw: pkt(0xF0, 0x18, props()), rc: 0x82},
	{name: "section 3.15.2.2.2 AUTH with only a Reason String", raw: pkt(0xF0, 0x00, props(0x1F, str("r"))), rc: 0x82},
	{name: "section 3.15.2.2.2 AUTH Authentication Method twice", raw: pkt(0xF0, 0x19, props(0x15, str("m"), 0x15, str("m"))), rc: 0x82},
	{
		name: "section 3.15.2.2 AUTH continue",
		raw:  pkt(0xF0, 0x18, props(0x15, str("SCRAM-SHA-1"), 0x16, str("\x00\x01"), 0x1F, str("step"), 0x26, str("k"), str("v"))),
		want: &AuthPacket{ReasonCode: 0x18, Properties: &Properties{AuthenticationMethod: "SCRAM-SHA-1",
			AuthenticationData: []byte{0, 1}, ReasonString: "step", UserProperties: []UserProperty{{"k", "v"}}}},
	},
}

func TestMQTT5Normative(t *testing.T) {
	for _, c := range spec5 {
		t.Run(c.name, func(t *testing.T) {
			// Byte at a time too: the rules must not depend on how the bytes arrive.
			for _, src := range []func() *Reader{
				func() *Reader { return NewReader(bytes.NewReader(c.raw), 0) },
				func() *Reader { return NewReader(iotest.OneByteReader(bytes.NewReader(c.raw)), 0) },
			} {
				r := src()
				r.SetVersion(Version5)
				p, err := r.ReadPacket()
				if c.rc != 0 {
					if got := ReasonFor(err); got != c.rc {
						t.Fatalf("ReasonFor(%v) = 0x%02X, want 0x%02X", err, got, c.rc)
					}
					if p != nil && !connectStub(p) {
						t.Fatalf("packet %#v returned with error %v", p, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c.want != nil && !reflect.DeepEqual(p, c.want) {
					t.Fatalf("decoded\n got  %#v\n want %#v", p, c.want)
				}
				// Whatever decodes encodes back to something that decodes the same.
				r2 := NewReader(bytes.NewReader(Append(nil, p, Version5)), 0)
				r2.SetVersion(Version5)
				if p2, err := r2.ReadPacket(); err != nil || !reflect.DeepEqual(p, p2) {
					t.Fatalf("round trip: %#v, %v; want %#v", p2, err, p)
				}
			}
		})
	}
}
