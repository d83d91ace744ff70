package packet

import "encoding/binary"

// Encoding trusts its input: strings and binary fields must be shorter than 64 KiB and the
// packet must fit the 268,435,455-byte remaining length, as they do for anything ReadPacket
// returned. Each function computes the remaining length first, so the fixed header is
// written once, in place, and nothing is copied twice.

// Append appends p encoded for the protocol level version (Version31, Version311 or
// Version5) to dst. CONNECT is encoded for its own ProtocolLevel. Properties and MQTT 5
// reason codes are written only for Version5. A nil p appends nothing.
func Append(dst []byte, p Packet, version byte) []byte {
	switch p := p.(type) {
	case *ConnectPacket:
		return appendConnect(dst, p)
	case *ConnackPacket:
		return appendConnack(dst, p, version)
	case *PublishPacket:
		return AppendPublish(dst, p, version)
	case *PubackPacket:
		return appendAck(dst, Puback, p.PacketID, p.ReasonCode, p.Properties, version)
	case *PubrecPacket:
		return appendAck(dst, Pubrec, p.PacketID, p.ReasonCode, p.Properties, version)
	case *PubrelPacket:
		return appendAck(dst, Pubrel, p.PacketID, p.ReasonCode, p.Properties, version)
	case *PubcompPacket:
		return appendAck(dst, Pubcomp, p.PacketID, p.ReasonCode, p.Properties, version)
	case *SubscribePacket:
		return appendSubscribe(dst, p, version)
	case *SubackPacket:
		return appendSuback(dst, p, version)
	case *UnsubscribePacket:
		return appendUnsubscribe(dst, p, version)
	case *UnsubackPacket:
		return appendUnsuback(dst, p, version)
	case *PingreqPacket:
		return append(dst, byte(Pingreq)<<4, 0)
	case *PingrespPacket:
		return append(dst, byte(Pingresp)<<4, 0)
	case *DisconnectPacket:
		if version != Version5 {
			return append(dst, byte(Disconnect)<<4, 0)
		}
		return appendReasonAndProps(dst, Disconnect, p.ReasonCode, p.Properties)
	case *AuthPacket:
		return appendAuth(dst, p)
	}
	return dst
}

func appendHeader(dst []byte, first byte, remaining int) []byte {
	return appendVarint(append(dst, first), remaining)
}

// propsSize is the size of the property length prefix plus the properties.
func propsSize(p *Properties) int {
	n := p.size()
	return varintLen(n) + n
}

// AppendPublish appends p encoded for version to dst. It allocates nothing when dst has room
// for the packet.
func AppendPublish(dst []byte, p *PublishPacket, version byte) []byte {
	first := byte(Publish)<<4 | (p.QoS&0x03)<<1
	if p.Dup {
		first |= 0x08
	}
	if p.Retain {
		first |= 0x01
	}
	dst = appendHeader(dst, first, publishRemaining(p, version))
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	if version == Version5 {
		dst = appendProperties(dst, p.Properties)
	}
	return append(dst, p.Payload...)
}

// PublishSize returns the number of bytes AppendPublish(dst, p, version) appends: the whole
// packet, fixed header included, which is the size an MQTT 5 client's Maximum Packet Size
// bounds [MQTT-3.1.2-24]. It allocates nothing, so a session can discard a PUBLISH too large
// for its client [MQTT-3.1.2-25] before encoding it.
func PublishSize(p *PublishPacket, version byte) int {
	n := publishRemaining(p, version)
	return 1 + varintLen(n) + n
}

// publishRemaining is the remaining length of p encoded for version.
func publishRemaining(p *PublishPacket, version byte) int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if version == Version5 {
		n += propsSize(p.Properties)
	}
	return n
}

// AppendAck appends the short form of a PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK for
// packetID: success and no properties. It allocates nothing when dst has room. An MQTT 5
// UNSUBACK needs one reason code per filter, so the short form carries none; use Append with
// an *UnsubackPacket instead. Other types append nothing.
func AppendAck(dst []byte, t Type, packetID uint16, version byte) []byte {
	switch t {
	case Puback, Pubrec, Pubcomp:
		dst = append(dst, byte(t)<<4, 2)
	case Pubrel:
		dst = append(dst, byte(t)<<4|0x02, 2)
	case Unsuback:
		if version == Version5 {
			return append(dst, byte(t)<<4, 3, byte(packetID>>8), byte(packetID), 0)
		}
		dst = append(dst, byte(t)<<4, 2)
	default:
		return dst
	}
	return binary.BigEndian.AppendUint16(dst, packetID)
}

// appendAck writes PUBACK, PUBREC, PUBREL or PUBCOMP in the shortest MQTT 5 form that keeps
// the reason code and properties [MQTT-3.4.2.1].
func appendAck(dst []byte, t Type, id uint16, rc byte, props *Properties, version byte) []byte {
	first := byte(t) << 4
	if t == Pubrel {
		first |= 0x02
	}
	ps := props.size()
	switch {
	case version != Version5 || (rc == ReasonSuccess && ps == 0):
		dst = appendHeader(dst, first, 2)
		return binary.BigEndian.AppendUint16(dst, id)
	case ps == 0:
		dst = appendHeader(dst, first, 3)
		return append(binary.BigEndian.AppendUint16(dst, id), rc)
	}
	dst = appendHeader(dst, first, 3+varintLen(ps)+ps)
	dst = append(binary.BigEndian.AppendUint16(dst, id), rc)
	return appendProperties(dst, props)
}

// appendReasonAndProps writes the MQTT 5 DISCONNECT, omitting a success reason code and empty
// properties as the specification allows.
func appendReasonAndProps(dst []byte, t Type, rc byte, props *Properties) []byte {
	ps := props.size()
	switch {
	case rc == ReasonSuccess && ps == 0:
		return appendHeader(dst, byte(t)<<4, 0)
	case ps == 0:
		return append(appendHeader(dst, byte(t)<<4, 1), rc)
	}
	dst = append(appendHeader(dst, byte(t)<<4, 1+varintLen(ps)+ps), rc)
	return appendProperties(dst, props)
}

// appendAuth writes AUTH. Its property length, unlike DISCONNECT's, may be left out only
// together with the reason code (section 3.15.2.1).
func appendAuth(dst []byte, p *AuthPacket) []byte {
	ps := p.Properties.size()
	if p.ReasonCode == ReasonSuccess && ps == 0 {
		return appendHeader(dst, byte(Auth)<<4, 0)
	}
	dst = append(appendHeader(dst, byte(Auth)<<4, 1+varintLen(ps)+ps), p.ReasonCode)
	return appendProperties(dst, p.Properties)
}

func appendConnect(dst []byte, p *ConnectPacket) []byte {
	v5 := p.ProtocolLevel >= Version5
	var flags byte
	if p.CleanSession {
		flags |= 0x02
	}
	n := 2 + len(p.ProtocolName) + 1 + 1 + 2 + 2 + len(p.ClientID)
	if v5 {
		n += propsSize(p.Properties)
	}
	if p.WillFlag {
		flags |= 0x04 | (p.WillQoS&0x03)<<3
		if p.WillRetain {
			flags |= 0x20
		}
		n += 2 + len(p.WillTopic) + 2 + len(p.WillPayload)
		if v5 {
			n += propsSize(p.WillProperties)
		}
	}
	if p.UsernameFlag {
		flags |= 0x80
		n += 2 + len(p.Username)
	}
	if p.PasswordFlag {
		flags |= 0x40
		n += 2 + len(p.Password)
	}
	dst = appendHeader(dst, byte(Connect)<<4, n)
	dst = appendString(dst, p.ProtocolName)
	dst = append(dst, p.ProtocolLevel, flags)
	dst = binary.BigEndian.AppendUint16(dst, p.KeepAlive)
	if v5 {
		dst = appendProperties(dst, p.Properties)
	}
	dst = appendString(dst, p.ClientID)
	if p.WillFlag {
		if v5 {
			dst = appendProperties(dst, p.WillProperties)
		}
		dst = appendString(dst, p.WillTopic)
		dst = appendBinary(dst, p.WillPayload)
	}
	if p.UsernameFlag {
		dst = appendString(dst, p.Username)
	}
	if p.PasswordFlag {
		dst = appendBinary(dst, p.Password)
	}
	return dst
}

func appendConnack(dst []byte, p *ConnackPacket, version byte) []byte {
	var ackFlags byte
	if p.SessionPresent && version != Version31 {
		ackFlags = 0x01
	}
	if version != Version5 {
		return append(dst, byte(Connack)<<4, 2, ackFlags, p.ReturnCode)
	}
	dst = appendHeader(dst, byte(Connack)<<4, 2+propsSize(p.Properties))
	dst = append(dst, ackFlags, p.ReturnCode)
	return appendProperties(dst, p.Properties)
}

func appendSubscribe(dst []byte, p *SubscribePacket, version byte) []byte {
	n := 2
	if version == Version5 {
		n += propsSize(p.Properties)
	}
	for _, s := range p.Subscriptions {
		n += 2 + len(s.Filter) + 1
	}
	dst = appendHeader(dst, byte(Subscribe)<<4|0x02, n)
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	if version == Version5 {
		dst = appendProperties(dst, p.Properties)
	}
	for _, s := range p.Subscriptions {
		opts := s.QoS & 0x03
		if version == Version5 {
			if s.NoLocal {
				opts |= 0x04
			}
			if s.RetainAsPublished {
				opts |= 0x08
			}
			opts |= (s.RetainHandling & 0x03) << 4
		}
		dst = append(appendString(dst, s.Filter), opts)
	}
	return dst
}

func appendSuback(dst []byte, p *SubackPacket, version byte) []byte {
	n := 2 + len(p.ReturnCodes)
	if version == Version5 {
		n += propsSize(p.Properties)
	}
	dst = appendHeader(dst, byte(Suback)<<4, n)
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	if version == Version5 {
		dst = appendProperties(dst, p.Properties)
	}
	return append(dst, p.ReturnCodes...)
}

func appendUnsubscribe(dst []byte, p *UnsubscribePacket, version byte) []byte {
	n := 2
	if version == Version5 {
		n += propsSize(p.Properties)
	}
	for _, f := range p.Filters {
		n += 2 + len(f)
	}
	dst = appendHeader(dst, byte(Unsubscribe)<<4|0x02, n)
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	if version == Version5 {
		dst = appendProperties(dst, p.Properties)
	}
	for _, f := range p.Filters {
		dst = appendString(dst, f)
	}
	return dst
}

func appendUnsuback(dst []byte, p *UnsubackPacket, version byte) []byte {
	if version != Version5 {
		return AppendAck(dst, Unsuback, p.PacketID, version)
	}
	dst = appendHeader(dst, byte(Unsuback)<<4, 2+propsSize(p.Properties)+len(p.ReasonCodes))
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	dst = appendProperties(dst, p.Properties)
	return append(dst, p.ReasonCodes...)
}
