package packet

import (
	"encoding/binary"
	"fmt"
)

// Property identifiers of MQTT 5.0, section 2.2.2.2.
const (
	PropPayloadFormatIndicator          byte = 0x01
	PropMessageExpiryInterval           byte = 0x02
	PropContentType                     byte = 0x03
	PropResponseTopic                   byte = 0x08
	PropCorrelationData                 byte = 0x09
	PropSubscriptionIdentifier          byte = 0x0B
	PropSessionExpiryInterval           byte = 0x11
	PropAssignedClientIdentifier        byte = 0x12
	PropServerKeepAlive                 byte = 0x13
	PropAuthenticationMethod            byte = 0x15
	PropAuthenticationData              byte = 0x16
	PropRequestProblemInformation       byte = 0x17
	PropWillDelayInterval               byte = 0x18
	PropRequestResponseInformation      byte = 0x19
	PropResponseInformation             byte = 0x1A
	PropServerReference                 byte = 0x1C
	PropReasonString                    byte = 0x1F
	PropReceiveMaximum                  byte = 0x21
	PropTopicAliasMaximum               byte = 0x22
	PropTopicAlias                      byte = 0x23
	PropMaximumQoS                      byte = 0x24
	PropRetainAvailable                 byte = 0x25
	PropUserProperty                    byte = 0x26
	PropMaximumPacketSize               byte = 0x27
	PropWildcardSubscriptionAvailable   byte = 0x28
	PropSubscriptionIdentifierAvailable byte = 0x29
	PropSharedSubscriptionAvailable     byte = 0x2A
)

// Properties holds the MQTT 5 properties of one packet (or of a CONNECT's will).
//
// Presence is part of the value: a nil pointer, an empty string or a nil slice means the
// property is absent, and only present properties are encoded. Decoding yields a nil
// *Properties when a packet carries none, and empty strings/binary data decode as absent, so
// decode(encode(p)) == p. Properties are read and written only at protocol level 5.
type Properties struct {
	PayloadFormatIndicator          *byte          // 0x01 PUBLISH, will
	MessageExpiryInterval           *uint32        // 0x02 PUBLISH, will
	ContentType                     string         // 0x03 PUBLISH, will
	ResponseTopic                   string         // 0x08 PUBLISH, will
	CorrelationData                 []byte         // 0x09 PUBLISH, will
	SubscriptionIdentifiers         []uint32       // 0x0B PUBLISH (several), SUBSCRIBE (one)
	SessionExpiryInterval           *uint32        // 0x11 CONNECT, CONNACK, DISCONNECT
	AssignedClientIdentifier        string         // 0x12 CONNACK
	ServerKeepAlive                 *uint16        // 0x13 CONNACK
	AuthenticationMethod            string         // 0x15 CONNECT, CONNACK, AUTH
	AuthenticationData              []byte         // 0x16 CONNECT, CONNACK, AUTH
	RequestProblemInformation       *byte          // 0x17 CONNECT
	WillDelayInterval               *uint32        // 0x18 will
	RequestResponseInformation      *byte          // 0x19 CONNECT
	ResponseInformation             string         // 0x1A CONNACK
	ServerReference                 string         // 0x1C CONNACK, DISCONNECT
	ReasonString                    string         // 0x1F acks, DISCONNECT, AUTH
	ReceiveMaximum                  *uint16        // 0x21 CONNECT, CONNACK
	TopicAliasMaximum               *uint16        // 0x22 CONNECT, CONNACK
	TopicAlias                      *uint16        // 0x23 PUBLISH; 0 decodes, the session refuses it (0x94)
	MaximumQoS                      *byte          // 0x24 CONNACK
	RetainAvailable                 *byte          // 0x25 CONNACK
	UserProperties                  []UserProperty // 0x26 everywhere, repeatable, order kept
	MaximumPacketSize               *uint32        // 0x27 CONNECT, CONNACK
	WildcardSubscriptionAvailable   *byte          // 0x28 CONNACK
	SubscriptionIdentifierAvailable *byte          // 0x29 CONNACK
	SharedSubscriptionAvailable     *byte          // 0x2A CONNACK
}

// UserProperty is one MQTT 5 User Property name/value pair.
type UserProperty struct {
	Key, Value string
}

// propContext names where a property set appears; it selects the identifiers allowed there.
type propContext uint16

const (
	ctxConnect propContext = 1 << iota
	ctxConnack
	ctxPublish
	ctxWill
	ctxPuback // PUBACK, PUBREC, PUBREL, PUBCOMP
	ctxSubscribe
	ctxSuback
	ctxUnsubscribe
	ctxUnsuback
	ctxDisconnect
	ctxAuth
)

const ctxAll = ctxConnect | ctxConnack | ctxPublish | ctxWill | ctxPuback | ctxSubscribe | ctxSuback |
	ctxUnsubscribe | ctxUnsuback | ctxDisconnect | ctxAuth

// propAllowed is table 2.2.2.2: which packets may carry each property. An identifier that is
// not valid for its packet type makes the packet malformed (0x81), as section 2.2.2.2 says;
// only a repeated property is a protocol error (0x82).
var propAllowed = [256]propContext{
	PropPayloadFormatIndicator:          ctxPublish | ctxWill,
	PropMessageExpiryInterval:           ctxPublish | ctxWill,
	PropContentType:                     ctxPublish | ctxWill,
	PropResponseTopic:                   ctxPublish | ctxWill,
	PropCorrelationData:                 ctxPublish | ctxWill,
	PropSubscriptionIdentifier:          ctxPublish | ctxSubscribe,
	PropSessionExpiryInterval:           ctxConnect | ctxConnack | ctxDisconnect,
	PropAssignedClientIdentifier:        ctxConnack,
	PropServerKeepAlive:                 ctxConnack,
	PropAuthenticationMethod:            ctxConnect | ctxConnack | ctxAuth,
	PropAuthenticationData:              ctxConnect | ctxConnack | ctxAuth,
	PropRequestProblemInformation:       ctxConnect,
	PropWillDelayInterval:               ctxWill,
	PropRequestResponseInformation:      ctxConnect,
	PropResponseInformation:             ctxConnack,
	PropServerReference:                 ctxConnack | ctxDisconnect,
	PropReasonString:                    ctxConnack | ctxPuback | ctxSuback | ctxUnsuback | ctxDisconnect | ctxAuth,
	PropReceiveMaximum:                  ctxConnect | ctxConnack,
	PropTopicAliasMaximum:               ctxConnect | ctxConnack,
	PropTopicAlias:                      ctxPublish,
	PropMaximumQoS:                      ctxConnack,
	PropRetainAvailable:                 ctxConnack,
	PropUserProperty:                    ctxAll,
	PropMaximumPacketSize:               ctxConnect | ctxConnack,
	PropWildcardSubscriptionAvailable:   ctxConnack,
	PropSubscriptionIdentifierAvailable: ctxConnack,
	PropSharedSubscriptionAvailable:     ctxConnack,
}

// maxVarint is the largest Variable Byte Integer (four bytes).
const maxVarint = 268_435_455

// decodeProperties reads a property length and the properties it covers from d. It returns
// nil when the packet carries no (non-empty) property.
func decodeProperties(d *decoder, ctx propContext) (*Properties, error) {
	n, err := d.varint()
	if err != nil {
		return nil, fmt.Errorf("%w: property length", err)
	}
	if n > len(d.b)-d.i {
		return nil, fmt.Errorf("%w: property length %d exceeds the remaining length", ErrMalformed, n)
	}
	if n == 0 {
		return nil, nil
	}
	sub := decoder{b: d.b[:d.i+n], i: d.i, strict: d.strict}
	d.i += n
	p := new(Properties)
	var seen [256 / 64]uint64
	for sub.i < len(sub.b) {
		id, err := sub.byte()
		if err != nil {
			return nil, err
		}
		if propAllowed[id] == 0 {
			return nil, fmt.Errorf("%w: unknown property identifier 0x%02X", ErrMalformed, id)
		}
		if propAllowed[id]&ctx == 0 {
			return nil, fmt.Errorf("%w: property 0x%02X not valid in this packet (section 2.2.2.2)", ErrMalformed, id)
		}
		repeatable := id == PropUserProperty || (id == PropSubscriptionIdentifier && ctx == ctxPublish)
		if seen[id/64]&(1<<(id%64)) != 0 && !repeatable {
			return nil, fmt.Errorf("%w: property 0x%02X included more than once", ErrProtocolViolation, id)
		}
		seen[id/64] |= 1 << (id % 64)
		if err := p.decodeOne(&sub, id); err != nil {
			return nil, fmt.Errorf("%w (property 0x%02X)", err, id)
		}
	}
	// Presence on the wire, not the decoded value, decides: empty data is still data. An empty
	// method names no method, and decodes as absent, so it counts as absent here too.
	if seen[PropAuthenticationData/64]&(1<<(PropAuthenticationData%64)) != 0 && p.AuthenticationMethod == "" {
		return nil, fmt.Errorf("%w: authentication data without authentication method", ErrProtocolViolation)
	}
	if p.isZero() {
		return nil, nil
	}
	return p, nil
}

func (p *Properties) decodeOne(d *decoder, id byte) error {
	switch id {
	case PropPayloadFormatIndicator:
		return d.flagProp(&p.PayloadFormatIndicator)
	case PropMessageExpiryInterval:
		return d.uint32Prop(&p.MessageExpiryInterval)
	case PropContentType:
		return d.stringProp(&p.ContentType)
	case PropResponseTopic:
		if err := d.stringProp(&p.ResponseTopic); err != nil {
			return err
		}
		if hasWildcard(p.ResponseTopic) { // [MQTT-3.3.2-14]
			return fmt.Errorf("%w: response topic with wildcard", ErrProtocolViolation)
		}
		return nil
	case PropCorrelationData:
		return d.binaryProp(&p.CorrelationData)
	case PropSubscriptionIdentifier:
		v, err := d.varint()
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("%w: subscription identifier 0", ErrProtocolViolation)
		}
		p.SubscriptionIdentifiers = append(p.SubscriptionIdentifiers, uint32(v))
		return nil
	case PropSessionExpiryInterval:
		return d.uint32Prop(&p.SessionExpiryInterval)
	case PropAssignedClientIdentifier:
		return d.stringProp(&p.AssignedClientIdentifier)
	case PropServerKeepAlive:
		return d.uint16Prop(&p.ServerKeepAlive, true)
	case PropAuthenticationMethod:
		return d.stringProp(&p.AuthenticationMethod)
	case PropAuthenticationData:
		return d.binaryProp(&p.AuthenticationData)
	case PropRequestProblemInformation:
		return d.flagProp(&p.RequestProblemInformation)
	case PropWillDelayInterval:
		return d.uint32Prop(&p.WillDelayInterval)
	case PropRequestResponseInformation:
		return d.flagProp(&p.RequestResponseInformation)
	case PropResponseInformation:
		return d.stringProp(&p.ResponseInformation)
	case PropServerReference:
		return d.stringProp(&p.ServerReference)
	case PropReasonString:
		return d.stringProp(&p.ReasonString)
	case PropReceiveMaximum:
		return d.uint16Prop(&p.ReceiveMaximum, false)
	case PropTopicAliasMaximum:
		return d.uint16Prop(&p.TopicAliasMaximum, true)
	case PropTopicAlias:
		// 0 decodes: a Topic Alias of 0 is a protocol error answered with 0x94 (Topic Alias
		// invalid), not 0x82 (section 3.3.4), and the session checks it together with the
		// Topic Alias Maximum it announced, which the codec does not know.
		return d.uint16Prop(&p.TopicAlias, true)
	case PropMaximumQoS:
		return d.flagProp(&p.MaximumQoS)
	case PropRetainAvailable:
		return d.flagProp(&p.RetainAvailable)
	case PropUserProperty:
		k, err := d.string()
		if err != nil {
			return err
		}
		v, err := d.string()
		if err != nil {
			return err
		}
		p.UserProperties = append(p.UserProperties, UserProperty{Key: k, Value: v})
		return nil
	case PropMaximumPacketSize:
		if err := d.uint32Prop(&p.MaximumPacketSize); err != nil {
			return err
		}
		if *p.MaximumPacketSize == 0 {
			return fmt.Errorf("%w: maximum packet size 0", ErrProtocolViolation)
		}
		return nil
	case PropWildcardSubscriptionAvailable:
		return d.flagProp(&p.WildcardSubscriptionAvailable)
	case PropSubscriptionIdentifierAvailable:
		return d.flagProp(&p.SubscriptionIdentifierAvailable)
	case PropSharedSubscriptionAvailable:
		return d.flagProp(&p.SharedSubscriptionAvailable)
	}
	return fmt.Errorf("%w: unknown property identifier", ErrMalformed)
}

// flagProp reads a one-byte property whose only legal values are 0 and 1.
func (d *decoder) flagProp(dst **byte) error {
	b, err := d.byte()
	if err != nil {
		return err
	}
	if b > 1 {
		return fmt.Errorf("%w: value %d, want 0 or 1", ErrProtocolViolation, b)
	}
	*dst = &b
	return nil
}

func (d *decoder) uint16Prop(dst **uint16, zeroOK bool) error {
	v, err := d.uint16()
	if err != nil {
		return err
	}
	if v == 0 && !zeroOK {
		return fmt.Errorf("%w: value 0", ErrProtocolViolation)
	}
	*dst = &v
	return nil
}

func (d *decoder) uint32Prop(dst **uint32) error {
	v, err := d.uint32()
	if err != nil {
		return err
	}
	*dst = &v
	return nil
}

func (d *decoder) stringProp(dst *string) error {
	s, err := d.string()
	*dst = s
	return err
}

func (d *decoder) binaryProp(dst *[]byte) error {
	b, err := d.binary()
	*dst = b
	return err
}

func (p *Properties) isZero() bool {
	return p.PayloadFormatIndicator == nil && p.MessageExpiryInterval == nil && p.ContentType == "" &&
		p.ResponseTopic == "" && p.CorrelationData == nil && p.SubscriptionIdentifiers == nil &&
		p.SessionExpiryInterval == nil && p.AssignedClientIdentifier == "" && p.ServerKeepAlive == nil &&
		p.AuthenticationMethod == "" && p.AuthenticationData == nil && p.RequestProblemInformation == nil &&
		p.WillDelayInterval == nil && p.RequestResponseInformation == nil && p.ResponseInformation == "" &&
		p.ServerReference == "" && p.ReasonString == "" && p.ReceiveMaximum == nil &&
		p.TopicAliasMaximum == nil && p.TopicAlias == nil && p.MaximumQoS == nil &&
		p.RetainAvailable == nil && p.UserProperties == nil && p.MaximumPacketSize == nil &&
		p.WildcardSubscriptionAvailable == nil && p.SubscriptionIdentifierAvailable == nil &&
		p.SharedSubscriptionAvailable == nil
}

// size returns the encoded length of the properties, without the property length prefix.
func (p *Properties) size() int {
	if p == nil {
		return 0
	}
	n := 0
	n += sizeOpt8(p.PayloadFormatIndicator) + sizeOpt32(p.MessageExpiryInterval)
	n += sizeStr(p.ContentType) + sizeStr(p.ResponseTopic) + sizeBin(p.CorrelationData)
	for _, v := range p.SubscriptionIdentifiers {
		n += 1 + varintLen(int(v))
	}
	n += sizeOpt32(p.SessionExpiryInterval) + sizeStr(p.AssignedClientIdentifier) + sizeOpt16(p.ServerKeepAlive)
	n += sizeStr(p.AuthenticationMethod) + sizeBin(p.AuthenticationData) + sizeOpt8(p.RequestProblemInformation)
	n += sizeOpt32(p.WillDelayInterval) + sizeOpt8(p.RequestResponseInformation)
	n += sizeStr(p.ResponseInformation) + sizeStr(p.ServerReference) + sizeStr(p.ReasonString)
	n += sizeOpt16(p.ReceiveMaximum) + sizeOpt16(p.TopicAliasMaximum) + sizeOpt16(p.TopicAlias)
	n += sizeOpt8(p.MaximumQoS) + sizeOpt8(p.RetainAvailable)
	for _, u := range p.UserProperties {
		n += 1 + 2 + len(u.Key) + 2 + len(u.Value)
	}
	n += sizeOpt32(p.MaximumPacketSize) + sizeOpt8(p.WildcardSubscriptionAvailable)
	n += sizeOpt8(p.SubscriptionIdentifierAvailable) + sizeOpt8(p.SharedSubscriptionAvailable)
	return n
}

func sizeOpt8(v *byte) int {
	if v == nil {
		return 0
	}
	return 2
}

func sizeOpt16(v *uint16) int {
	if v == nil {
		return 0
	}
	return 3
}

func sizeOpt32(v *uint32) int {
	if v == nil {
		return 0
	}
	return 5
}

func sizeStr(s string) int {
	if s == "" {
		return 0
	}
	return 3 + len(s)
}

func sizeBin(b []byte) int {
	if b == nil {
		return 0
	}
	return 3 + len(b)
}

// appendProperties appends the property length and the properties, in identifier order.
func appendProperties(dst []byte, p *Properties) []byte {
	dst = appendVarint(dst, p.size())
	if p == nil {
		return dst
	}
	dst = appendOpt8(dst, PropPayloadFormatIndicator, p.PayloadFormatIndicator)
	dst = appendOpt32(dst, PropMessageExpiryInterval, p.MessageExpiryInterval)
	dst = appendStrProp(dst, PropContentType, p.ContentType)
	dst = appendStrProp(dst, PropResponseTopic, p.ResponseTopic)
	dst = appendBinProp(dst, PropCorrelationData, p.CorrelationData)
	for _, v := range p.SubscriptionIdentifiers {
		dst = appendVarint(append(dst, PropSubscriptionIdentifier), int(v))
	}
	dst = appendOpt32(dst, PropSessionExpiryInterval, p.SessionExpiryInterval)
	dst = appendStrProp(dst, PropAssignedClientIdentifier, p.AssignedClientIdentifier)
	dst = appendOpt16(dst, PropServerKeepAlive, p.ServerKeepAlive)
	dst = appendStrProp(dst, PropAuthenticationMethod, p.AuthenticationMethod)
	dst = appendBinProp(dst, PropAuthenticationData, p.AuthenticationData)
	dst = appendOpt8(dst, PropRequestProblemInformation, p.RequestProblemInformation)
	dst = appendOpt32(dst, PropWillDelayInterval, p.WillDelayInterval)
	dst = appendOpt8(dst, PropRequestResponseInformation, p.RequestResponseInformation)
	dst = appendStrProp(dst, PropResponseInformation, p.ResponseInformation)
	dst = appendStrProp(dst, PropServerReference, p.ServerReference)
	dst = appendStrProp(dst, PropReasonString, p.ReasonString)
	dst = appendOpt16(dst, PropReceiveMaximum, p.ReceiveMaximum)
	dst = appendOpt16(dst, PropTopicAliasMaximum, p.TopicAliasMaximum)
	dst = appendOpt16(dst, PropTopicAlias, p.TopicAlias)
	dst = appendOpt8(dst, PropMaximumQoS, p.MaximumQoS)
	dst = appendOpt8(dst, PropRetainAvailable, p.RetainAvailable)
	for _, u := range p.UserProperties {
		dst = appendString(append(dst, PropUserProperty), u.Key)
		dst = appendString(dst, u.Value)
	}
	dst = appendOpt32(dst, PropMaximumPacketSize, p.MaximumPacketSize)
	dst = appendOpt8(dst, PropWildcardSubscriptionAvailable, p.WildcardSubscriptionAvailable)
	dst = appendOpt8(dst, PropSubscriptionIdentifierAvailable, p.SubscriptionIdentifierAvailable)
	dst = appendOpt8(dst, PropSharedSubscriptionAvailable, p.SharedSubscriptionAvailable)
	return dst
}

func appendOpt8(dst []byte, id byte, v *byte) []byte {
	if v == nil {
		return dst
	}
	return append(dst, id, *v)
}

func appendOpt16(dst []byte, id byte, v *uint16) []byte {
	if v == nil {
		return dst
	}
	return binary.BigEndian.AppendUint16(append(dst, id), *v)
}

func appendOpt32(dst []byte, id byte, v *uint32) []byte {
	if v == nil {
		return dst
	}
	return binary.BigEndian.AppendUint32(append(dst, id), *v)
}

func appendStrProp(dst []byte, id byte, s string) []byte {
	if s == "" {
		return dst
	}
	return appendString(append(dst, id), s)
}

func appendBinProp(dst []byte, id byte, b []byte) []byte {
	if b == nil {
		return dst
	}
	return appendBinary(append(dst, id), b)
}
