package packet

import (
	"fmt"
	"strings"
)

// decode dispatches on the packet type. The fixed header has been validated by checkFlags.
func decode(d *decoder, t Type, flags, version byte) (Packet, error) {
	switch t {
	case Connect:
		return decodeConnect(d)
	case Connack:
		return decodeConnack(d, version)
	case Publish:
		return decodePublish(d, flags, version)
	case Puback:
		id, rc, props, err := decodeAck(d, version, pubackReasons, "[MQTT-3.4.2-1]")
		if err != nil {
			return nil, err
		}
		if d.reuse != nil {
			d.reuse.puback = PubackPacket{PacketID: id, ReasonCode: rc, Properties: props}
			return &d.reuse.puback, nil
		}
		return &PubackPacket{PacketID: id, ReasonCode: rc, Properties: props}, nil
	case Pubrec:
		id, rc, props, err := decodeAck(d, version, pubackReasons, "[MQTT-3.5.2-1]")
		if err != nil {
			return nil, err
		}
		if d.reuse != nil {
			d.reuse.pubrec = PubrecPacket{PacketID: id, ReasonCode: rc, Properties: props}
			return &d.reuse.pubrec, nil
		}
		return &PubrecPacket{PacketID: id, ReasonCode: rc, Properties: props}, nil
	case Pubrel:
		id, rc, props, err := decodeAck(d, version, pubrelReasons, "[MQTT-3.6.2-1]")
		if err != nil {
			return nil, err
		}
		if d.reuse != nil {
			d.reuse.pubrel = PubrelPacket{PacketID: id, ReasonCode: rc, Properties: props}
			return &d.reuse.pubrel, nil
		}
		return &PubrelPacket{PacketID: id, ReasonCode: rc, Properties: props}, nil
	case Pubcomp:
		id, rc, props, err := decodeAck(d, version, pubrelReasons, "[MQTT-3.7.2-1]")
		if err != nil {
			return nil, err
		}
		if d.reuse != nil {
			d.reuse.pubcomp = PubcompPacket{PacketID: id, ReasonCode: rc, Properties: props}
			return &d.reuse.pubcomp, nil
		}
		return &PubcompPacket{PacketID: id, ReasonCode: rc, Properties: props}, nil
	case Subscribe:
		return decodeSubscribe(d, version)
	case Suback:
		return decodeSuback(d, version)
	case Unsubscribe:
		return decodeUnsubscribe(d, version)
	case Unsuback:
		return decodeUnsuback(d, version)
	case Pingreq:
		return &PingreqPacket{}, nil
	case Pingresp:
		return &PingrespPacket{}, nil
	case Disconnect:
		// MQTT 3.1/3.1.1 DISCONNECT has no variable header: the caller's trailing-bytes check
		// rejects a non-zero remaining length.
		if version != Version5 {
			return &DisconnectPacket{}, nil
		}
		rc, props, err := decodeReasonAndProps(d, disconnectReasons, ctxDisconnect, "[MQTT-3.14.2-1]")
		if err != nil {
			return nil, err
		}
		return &DisconnectPacket{ReasonCode: rc, Properties: props}, nil
	case Auth:
		return decodeAuth(d)
	}
	return nil, fmt.Errorf("%w: packet type %d", ErrMalformed, t)
}

// decodeConnect decodes CONNECT whatever the Reader's version. An unknown protocol name or
// level yields the packet as far as it could be decoded, with ErrUnsupportedVersion.
func decodeConnect(d *decoder) (Packet, error) {
	name, err := d.string()
	if err != nil {
		return nil, fmt.Errorf("%w (protocol name)", err)
	}
	level, err := d.byte()
	if err != nil {
		return nil, err
	}
	p := &ConnectPacket{ProtocolName: name, ProtocolLevel: level}
	supported := (name == "MQTT" && (level == Version311 || level == Version5)) ||
		(name == "MQIsdp" && level == Version31)
	if !supported {
		// [MQTT-3.1.2-1] [MQTT-3.1.2-2]: the caller answers CONNACK 0x01 and closes; the rest
		// of the packet is decoded best effort (3.1.1 layout below level 5, 5.0 layout from
		// level 5 up) so the caller can log who it refused.
		d.strict = level >= Version5
		_ = decodeConnectRest(d, p)
		return p, fmt.Errorf("%w: protocol name %q level %d [MQTT-3.1.2-2]", ErrUnsupportedVersion, name, level)
	}
	d.strict = level == Version5
	if err := decodeConnectRest(d, p); err != nil {
		// The protocol name and level go back with the error: a server answers a malformed MQTT 5
		// CONNECT with a CONNACK reason code in the 5.0 encoding before closing [MQTT-4.13.1-1]
		// (3.2.2.2), which it can do only knowing the level.
		return &ConnectPacket{ProtocolName: name, ProtocolLevel: level}, err
	}
	return p, nil
}

func decodeConnectRest(d *decoder, p *ConnectPacket) error {
	flags, err := d.byte()
	if err != nil {
		return err
	}
	if flags&0x01 != 0 {
		return fmt.Errorf("%w: CONNECT reserved flag set [MQTT-3.1.2-3]", ErrMalformed)
	}
	p.CleanSession = flags&0x02 != 0
	p.WillFlag = flags&0x04 != 0
	p.WillQoS = flags >> 3 & 0x03
	p.WillRetain = flags&0x20 != 0
	p.PasswordFlag = flags&0x40 != 0
	p.UsernameFlag = flags&0x80 != 0
	if !p.WillFlag && p.WillQoS != 0 {
		return fmt.Errorf("%w: will QoS %d without will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]", ErrMalformed, p.WillQoS)
	}
	if !p.WillFlag && p.WillRetain {
		return fmt.Errorf("%w: will retain without will flag [MQTT-3.1.2-11] [MQTT-3.1.2-15]", ErrMalformed)
	}
	if p.WillQoS == 3 {
		return fmt.Errorf("%w: will QoS 3 [MQTT-3.1.2-14]", ErrMalformed)
	}
	v5 := p.ProtocolLevel >= Version5
	if p.PasswordFlag && !p.UsernameFlag && !v5 {
		return fmt.Errorf("%w: password flag without user name flag [MQTT-3.1.2-22]", ErrMalformed)
	}
	if p.KeepAlive, err = d.uint16(); err != nil {
		return err
	}
	if v5 {
		if p.Properties, err = decodeProperties(d, ctxConnect); err != nil {
			return err
		}
	}
	if p.ClientID, err = d.string(); err != nil {
		return fmt.Errorf("%w (client identifier)", err)
	}
	if p.WillFlag {
		if v5 {
			if p.WillProperties, err = decodeProperties(d, ctxWill); err != nil {
				return err
			}
		}
		if p.WillTopic, err = d.string(); err != nil {
			return fmt.Errorf("%w (will topic)", err)
		}
		if err := checkTopicName(p.WillTopic); err != nil {
			return fmt.Errorf("%w (will topic)", err)
		}
		if p.WillPayload, err = d.binary(); err != nil {
			return fmt.Errorf("%w (will payload)", err)
		}
	}
	if p.UsernameFlag {
		if p.Username, err = d.string(); err != nil {
			return fmt.Errorf("%w (user name)", err)
		}
	}
	if p.PasswordFlag {
		if p.Password, err = d.binary(); err != nil {
			return fmt.Errorf("%w (password)", err)
		}
	}
	return nil
}

// checkTopicName enforces the rules for a topic name a message is published to: at least one
// character [MQTT-4.7.3-1] and no wildcard [MQTT-3.3.2-2].
func checkTopicName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty topic name [MQTT-4.7.3-1]", ErrMalformed)
	}
	if hasWildcard(s) {
		return fmt.Errorf("%w: topic name %q contains a wildcard [MQTT-3.3.2-2]", ErrMalformed, s)
	}
	return nil
}

func decodeConnack(d *decoder, version byte) (Packet, error) {
	ackFlags, err := d.byte()
	if err != nil {
		return nil, err
	}
	p := &ConnackPacket{}
	// MQTT 3.1 left this byte unused; 3.1.1 made bit 0 Session Present and the rest reserved.
	if version != Version31 {
		if ackFlags&0xFE != 0 {
			return nil, fmt.Errorf("%w: CONNACK reserved flags set [MQTT-3.2.2-1]", ErrMalformed)
		}
		p.SessionPresent = ackFlags&0x01 != 0
	}
	if p.ReturnCode, err = d.byte(); err != nil {
		return nil, err
	}
	if version != Version5 {
		if p.ReturnCode > ConnRefusedNotAuthorized {
			return nil, fmt.Errorf("%w: reserved CONNACK return code %d", ErrProtocolViolation, p.ReturnCode)
		}
		return p, nil
	}
	if !connackReasons.has(p.ReturnCode) {
		return nil, fmt.Errorf("%w: CONNACK reason code 0x%02X [MQTT-3.2.2-8]", ErrProtocolViolation, p.ReturnCode)
	}
	if p.Properties, err = decodeProperties(d, ctxConnack); err != nil {
		return nil, err
	}
	return p, nil
}

func decodePublish(d *decoder, flags, version byte) (Packet, error) {
	var p *PublishPacket
	if d.reuse != nil {
		p = &d.reuse.publish
		*p = PublishPacket{Dup: flags&0x08 != 0, QoS: flags >> 1 & 0x03, Retain: flags&0x01 != 0}
	} else {
		p = &PublishPacket{Dup: flags&0x08 != 0, QoS: flags >> 1 & 0x03, Retain: flags&0x01 != 0}
	}
	var err error
	if p.Topic, err = d.topicName(); err != nil {
		return nil, fmt.Errorf("%w (topic name)", err)
	}
	if p.QoS > 0 {
		if p.PacketID, err = d.packetID(); err != nil {
			return nil, err
		}
	}
	if version == Version5 {
		if p.Properties, err = decodeProperties(d, ctxPublish); err != nil {
			return nil, err
		}
	}
	if p.Topic == "" {
		// MQTT 5 allows an empty topic name when a Topic Alias stands for it (3.3.2.3.4).
		if version != Version5 {
			return nil, fmt.Errorf("%w: empty topic name [MQTT-4.7.3-1]", ErrMalformed)
		}
		if p.Properties == nil || p.Properties.TopicAlias == nil {
			return nil, fmt.Errorf("%w: empty topic name without a topic alias", ErrProtocolViolation)
		}
	}
	if d.remaining() > 0 {
		// The body was allocated for this packet alone (Reader.readOwned); capping the
		// capacity keeps an append on Payload from writing into anything else.
		p.Payload = d.b[d.i:len(d.b):len(d.b)]
		d.i = len(d.b)
	}
	return p, nil
}

// topicName reads a PUBLISH's topic name: a UTF-8 string without wildcards [MQTT-3.3.2-2]. Under
// Reader.SetReuse the same bytes as the last topic give the last topic's string, already checked.
func (d *decoder) topicName() (string, error) {
	if d.reuse == nil {
		return d.checkTopic(d.string())
	}
	b, err := d.lengthPrefixed()
	if err != nil {
		return "", err
	}
	if last := d.reuse.topic; len(b) == len(last) && string(b) == last {
		return last, nil
	}
	if err := checkUTF8(b); err != nil {
		return "", err
	}
	t, err := d.checkTopic(string(b), nil)
	if err == nil {
		d.reuse.topic = t
	}
	return t, err
}

func (d *decoder) checkTopic(t string, err error) (string, error) {
	if err == nil && hasWildcard(t) {
		return "", fmt.Errorf("%w: topic name %q contains a wildcard [MQTT-3.3.2-2]", ErrMalformed, t)
	}
	return t, err
}

// decodeAck decodes PUBACK, PUBREC, PUBREL and PUBCOMP. In MQTT 5 the reason code and the
// property length may be omitted (remaining length 2: Success; 3: no properties), sections
// 3.4.2.1 and 3.4.2.2.1. rule cites the statement listing the packet's reason codes.
func decodeAck(d *decoder, version byte, reasons reasonSet, rule string) (uint16, byte, *Properties, error) {
	id, err := d.packetID()
	if err != nil || version != Version5 {
		return id, 0, nil, err
	}
	rc, props, err := decodeReasonAndProps(d, reasons, ctxPuback, rule)
	return id, rc, props, err
}

// decodeReasonAndProps reads an optional reason code then optional properties (MQTT 5 acks and
// DISCONNECT, whose property length may be left out after the reason code).
func decodeReasonAndProps(d *decoder, reasons reasonSet, ctx propContext, rule string) (byte, *Properties, error) {
	if d.remaining() == 0 {
		return 0, nil, nil
	}
	rc, _ := d.byte()
	if !reasons.has(rc) {
		return 0, nil, fmt.Errorf("%w: reason code 0x%02X %s", ErrProtocolViolation, rc, rule)
	}
	if d.remaining() == 0 {
		return rc, nil, nil
	}
	props, err := decodeProperties(d, ctx)
	return rc, props, err
}

// decodeAuth decodes AUTH. Unlike DISCONNECT it may leave out its reason code only together
// with the property length (remaining length 0, Success; section 3.15.2.1), and once it has
// properties they must name the Authentication Method (section 3.15.2.2.2).
func decodeAuth(d *decoder) (Packet, error) {
	if d.remaining() == 0 {
		return &AuthPacket{}, nil
	}
	rc, _ := d.byte()
	if !authReasons.has(rc) {
		return nil, fmt.Errorf("%w: reason code 0x%02X [MQTT-3.15.2-1]", ErrProtocolViolation, rc)
	}
	if d.remaining() == 0 {
		return nil, fmt.Errorf("%w: AUTH reason code without a property length", ErrMalformed)
	}
	props, err := decodeProperties(d, ctxAuth)
	if err != nil {
		return nil, err
	}
	if props == nil || props.AuthenticationMethod == "" {
		return nil, fmt.Errorf("%w: AUTH without an authentication method", ErrProtocolViolation)
	}
	return &AuthPacket{ReasonCode: rc, Properties: props}, nil
}

func decodeSubscribe(d *decoder, version byte) (Packet, error) {
	id, err := d.packetID()
	if err != nil {
		return nil, err
	}
	p := &SubscribePacket{PacketID: id}
	if version == Version5 {
		if p.Properties, err = decodeProperties(d, ctxSubscribe); err != nil {
			return nil, err
		}
	}
	for d.remaining() > 0 {
		if err := d.filterLimit(len(p.Subscriptions)); err != nil {
			return nil, err
		}
		var s Subscription
		if s.Filter, err = d.string(); err != nil {
			return nil, fmt.Errorf("%w (topic filter)", err)
		}
		if s.Filter == "" {
			return nil, fmt.Errorf("%w: empty topic filter [MQTT-4.7.3-1]", ErrMalformed)
		}
		opts, err := d.byte()
		if err != nil {
			return nil, err
		}
		s.QoS = opts & 0x03
		if version != Version5 {
			// 3.1.1 makes QoS 3 and reserved bits alike malformed.
			if s.QoS == 3 {
				return nil, fmt.Errorf("%w: requested QoS 3 [MQTT-3-8.3-4]", ErrMalformed)
			}
			if opts&0xFC != 0 {
				return nil, fmt.Errorf("%w: reserved subscription option bits set [MQTT-3-8.3-4]", ErrMalformed)
			}
		} else {
			if opts&0xC0 != 0 {
				return nil, fmt.Errorf("%w: reserved subscription option bits set [MQTT-3.8.3-5]", ErrMalformed)
			}
			if s.QoS == 3 { // 5.0 made it a protocol error (section 3.8.3.1)
				return nil, fmt.Errorf("%w: maximum QoS 3", ErrProtocolViolation)
			}
			s.NoLocal = opts&0x04 != 0
			s.RetainAsPublished = opts&0x08 != 0
			s.RetainHandling = opts >> 4 & 0x03
			if s.RetainHandling == 3 {
				return nil, fmt.Errorf("%w: retain handling 3 (section 3.8.3.1)", ErrProtocolViolation)
			}
			if s.NoLocal && strings.HasPrefix(s.Filter, "$share/") {
				return nil, fmt.Errorf("%w: no local on a shared subscription [MQTT-3.8.3-4]", ErrProtocolViolation)
			}
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	if len(p.Subscriptions) == 0 {
		return nil, fmt.Errorf("%w: SUBSCRIBE without topic filters [MQTT-3.8.3-3] [MQTT-3.8.3-2]", ErrProtocolViolation)
	}
	return p, nil
}

func decodeSuback(d *decoder, version byte) (Packet, error) {
	id, err := d.packetID()
	if err != nil {
		return nil, err
	}
	p := &SubackPacket{PacketID: id}
	reasons := subackReasons311
	if version == Version5 {
		reasons = subackReasons
		if p.Properties, err = decodeProperties(d, ctxSuback); err != nil {
			return nil, err
		}
	}
	if d.remaining() == 0 {
		return nil, fmt.Errorf("%w: SUBACK without return codes", ErrProtocolViolation)
	}
	p.ReturnCodes = append([]byte(nil), d.b[d.i:]...)
	d.i = len(d.b)
	for _, rc := range p.ReturnCodes {
		if !reasons.has(rc) {
			return nil, fmt.Errorf("%w: SUBACK return code 0x%02X [MQTT-3.9.3-2]", ErrProtocolViolation, rc)
		}
	}
	return p, nil
}

func decodeUnsubscribe(d *decoder, version byte) (Packet, error) {
	id, err := d.packetID()
	if err != nil {
		return nil, err
	}
	p := &UnsubscribePacket{PacketID: id}
	if version == Version5 {
		if p.Properties, err = decodeProperties(d, ctxUnsubscribe); err != nil {
			return nil, err
		}
	}
	for d.remaining() > 0 {
		if err := d.filterLimit(len(p.Filters)); err != nil {
			return nil, err
		}
		f, err := d.string()
		if err != nil {
			return nil, fmt.Errorf("%w (topic filter)", err)
		}
		if f == "" {
			return nil, fmt.Errorf("%w: empty topic filter [MQTT-4.7.3-1]", ErrMalformed)
		}
		p.Filters = append(p.Filters, f)
	}
	if len(p.Filters) == 0 {
		return nil, fmt.Errorf("%w: UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]", ErrProtocolViolation)
	}
	return p, nil
}

func decodeUnsuback(d *decoder, version byte) (Packet, error) {
	id, err := d.packetID()
	if err != nil {
		return nil, err
	}
	p := &UnsubackPacket{PacketID: id}
	if version != Version5 {
		return p, nil
	}
	if p.Properties, err = decodeProperties(d, ctxUnsuback); err != nil {
		return nil, err
	}
	if d.remaining() > 0 {
		p.ReasonCodes = append([]byte(nil), d.b[d.i:]...)
		d.i = len(d.b)
	}
	for _, rc := range p.ReasonCodes {
		if !unsubackReasons.has(rc) {
			return nil, fmt.Errorf("%w: UNSUBACK reason code 0x%02X [MQTT-3.11.3-2]", ErrProtocolViolation, rc)
		}
	}
	return p, nil
}
