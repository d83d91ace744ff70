package packet

import (
	"errors"
	"strconv"
)

// Type is the MQTT control packet type, the high nibble of the fixed header's first byte.
type Type byte

// Control packet types. Auth exists only in MQTT 5; in 3.1/3.1.1 type 15 is reserved.
const (
	Connect     Type = 1
	Connack     Type = 2
	Publish     Type = 3
	Puback      Type = 4
	Pubrec      Type = 5
	Pubrel      Type = 6
	Pubcomp     Type = 7
	Subscribe   Type = 8
	Suback      Type = 9
	Unsubscribe Type = 10
	Unsuback    Type = 11
	Pingreq     Type = 12
	Pingresp    Type = 13
	Disconnect  Type = 14
	Auth        Type = 15
)

var typeNames = [...]string{
	Connect: "CONNECT", Connack: "CONNACK", Publish: "PUBLISH", Puback: "PUBACK", Pubrec: "PUBREC",
	Pubrel: "PUBREL", Pubcomp: "PUBCOMP", Subscribe: "SUBSCRIBE", Suback: "SUBACK",
	Unsubscribe: "UNSUBSCRIBE", Unsuback: "UNSUBACK", Pingreq: "PINGREQ", Pingresp: "PINGRESP",
	Disconnect: "DISCONNECT", Auth: "AUTH",
}

// String returns the packet type's name as the specification spells it ("PUBLISH").
func (t Type) String() string {
	if t >= Connect && t <= Auth {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Protocol levels carried in CONNECT.
const (
	Version31  byte = 3 // MQTT 3.1, protocol name "MQIsdp"
	Version311 byte = 4 // MQTT 3.1.1, protocol name "MQTT"
	Version5   byte = 5 // MQTT 5.0, protocol name "MQTT"
)

// Sentinel errors. Decoding errors wrap one of them with context, so test with errors.Is.
var (
	// ErrMalformed: the bytes break the packet grammar. The connection must be closed
	// (in MQTT 5 after DISCONNECT 0x81).
	ErrMalformed = errors.New("packet: malformed packet")
	// ErrPacketTooLarge: the fixed header announces a packet larger than the reader's limit.
	// The body has not been read, so the stream is unusable and the connection must be closed
	// (in MQTT 5 after DISCONNECT 0x95).
	ErrPacketTooLarge = errors.New("packet: packet too large")
	// ErrProtocolViolation: well-formed bytes whose content the specification forbids
	// (MQTT 5 reason 0x82).
	ErrProtocolViolation = errors.New("packet: protocol violation")
	// ErrUnsupportedVersion: a CONNECT with an unknown protocol name or level. ReadPacket
	// returns the decoded *ConnectPacket along with it so the caller can answer CONNACK 0x01
	// [MQTT-3.1.2-2] before closing.
	ErrUnsupportedVersion = errors.New("packet: unsupported protocol version")
	// ErrTooManyFilters: a SUBSCRIBE or UNSUBSCRIBE lists more topic filters than the Reader's limit
	// (SetMaxFilters). Decoding stopped there; the connection should be closed (in MQTT 5 after
	// DISCONNECT 0x97, quota exceeded).
	ErrTooManyFilters = errors.New("packet: too many topic filters")
)

// Packet is one decoded MQTT control packet; it is implemented by the pointer types
// *ConnectPacket, *ConnackPacket and so on.
type Packet interface {
	Type() Type
}

// ConnectPacket is CONNECT. The flags are explicit: encoding writes Username only when
// UsernameFlag is set, the will fields only when WillFlag is set.
type ConnectPacket struct {
	ProtocolName   string
	ProtocolLevel  byte
	CleanSession   bool // Clean Start in MQTT 5
	KeepAlive      uint16
	ClientID       string
	WillFlag       bool
	WillQoS        byte
	WillRetain     bool
	WillTopic      string
	WillPayload    []byte
	UsernameFlag   bool
	Username       string
	PasswordFlag   bool
	Password       []byte
	Properties     *Properties // MQTT 5 only
	WillProperties *Properties // MQTT 5 only
}

// ConnackPacket is CONNACK. ReturnCode is the 3.1.1 return code or the MQTT 5 reason code.
type ConnackPacket struct {
	SessionPresent bool
	ReturnCode     byte
	Properties     *Properties
}

// PublishPacket is PUBLISH. A decoded Payload is owned by the packet: it never aliases the
// reader's buffer, so it may be shared after the next ReadPacket.
type PublishPacket struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      string
	PacketID   uint16 // only when QoS > 0
	Payload    []byte
	Properties *Properties
}

// PubackPacket is PUBACK; ReasonCode and Properties exist on the wire only in MQTT 5.
type PubackPacket struct {
	PacketID   uint16
	ReasonCode byte
	Properties *Properties
}

// PubrecPacket is PUBREC; ReasonCode and Properties exist on the wire only in MQTT 5.
type PubrecPacket struct {
	PacketID   uint16
	ReasonCode byte
	Properties *Properties
}

// PubrelPacket is PUBREL; ReasonCode and Properties exist on the wire only in MQTT 5.
type PubrelPacket struct {
	PacketID   uint16
	ReasonCode byte
	Properties *Properties
}

// PubcompPacket is PUBCOMP; ReasonCode and Properties exist on the wire only in MQTT 5.
type PubcompPacket struct {
	PacketID   uint16
	ReasonCode byte
	Properties *Properties
}

// SubscribePacket is SUBSCRIBE.
type SubscribePacket struct {
	PacketID      uint16
	Subscriptions []Subscription
	Properties    *Properties
}

// Subscription is one topic filter of a SUBSCRIBE with its options. NoLocal,
// RetainAsPublished and RetainHandling exist only in MQTT 5.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// SubackPacket is SUBACK: one return code (MQTT 5: reason code) per subscription.
type SubackPacket struct {
	PacketID    uint16
	ReturnCodes []byte
	Properties  *Properties
}

// UnsubscribePacket is UNSUBSCRIBE.
type UnsubscribePacket struct {
	PacketID   uint16
	Filters    []string
	Properties *Properties
}

// UnsubackPacket is UNSUBACK; ReasonCodes (one per filter) and Properties are MQTT 5 only.
type UnsubackPacket struct {
	PacketID    uint16
	ReasonCodes []byte
	Properties  *Properties
}

// PingreqPacket is PINGREQ.
type PingreqPacket struct{}

// PingrespPacket is PINGRESP.
type PingrespPacket struct{}

// DisconnectPacket is DISCONNECT; ReasonCode and Properties exist on the wire only in MQTT 5.
type DisconnectPacket struct {
	ReasonCode byte
	Properties *Properties
}

// AuthPacket is the MQTT 5 AUTH packet.
type AuthPacket struct {
	ReasonCode byte
	Properties *Properties
}

func (*ConnectPacket) Type() Type     { return Connect }
func (*ConnackPacket) Type() Type     { return Connack }
func (*PublishPacket) Type() Type     { return Publish }
func (*PubackPacket) Type() Type      { return Puback }
func (*PubrecPacket) Type() Type      { return Pubrec }
func (*PubrelPacket) Type() Type      { return Pubrel }
func (*PubcompPacket) Type() Type     { return Pubcomp }
func (*SubscribePacket) Type() Type   { return Subscribe }
func (*SubackPacket) Type() Type      { return Suback }
func (*UnsubscribePacket) Type() Type { return Unsubscribe }
func (*UnsubackPacket) Type() Type    { return Unsuback }
func (*PingreqPacket) Type() Type     { return Pingreq }
func (*PingrespPacket) Type() Type    { return Pingresp }
func (*DisconnectPacket) Type() Type  { return Disconnect }
func (*AuthPacket) Type() Type        { return Auth }
