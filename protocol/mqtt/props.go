package mqtt

// MQTT 5 PUBLISH properties: topic aliases both ways, and the message properties the router carries
// (expiry, payload format, content type, response topic, correlation data, user properties).

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
)

// inboundV5 checks an MQTT 5 PUBLISH's properties that concern the connection rather than the message,
// and resolves its topic alias into p.Topic [MQTT-3.3.2-12].
func (cl *client) inboundV5(p *packet.PublishPacket) error {
	pp := p.Properties
	if pp == nil {
		return nil
	}
	if len(pp.SubscriptionIdentifiers) > 0 {
		return errSubIDInPublish
	}
	if pp.TopicAlias == nil {
		return nil
	}
	a := int(*pp.TopicAlias)
	if a == 0 || a > cl.lim.TopicAliasMaximum {
		// [MQTT-3.3.2-8] [MQTT-3.3.2-9]
		return fmt.Errorf("%w: %d, the maximum is %d", errTopicAlias, a, cl.lim.TopicAliasMaximum)
	}
	v := cl.v5
	if p.Topic != "" {
		if a > len(v.aliasesIn) {
			v.aliasesIn = append(v.aliasesIn, make([]string, a-len(v.aliasesIn))...)
		}
		v.aliasesIn[a-1] = p.Topic
		return nil
	}
	if a > len(v.aliasesIn) || v.aliasesIn[a-1] == "" {
		return fmt.Errorf("%w: %d", errUnknownAlias, a)
	}
	p.Topic = v.aliasesIn[a-1]
	return nil
}

// messageProps copies an MQTT 5 PUBLISH's message properties into m, which the router carries to every
// subscriber, whatever its protocol. It returns the reason code of a property the broker refuses.
func (cl *client) messageProps(m *router.Message, pp *packet.Properties) (byte, error) {
	if pp.PayloadFormatIndicator != nil && *pp.PayloadFormatIndicator == 1 {
		if !utf8.Valid(m.Body) {
			return packet.ReasonPayloadFormatInvalid, errPayloadFormat // [MQTT-3.3.2-4] may be checked
		}
		m.UTF8 = true
	}
	if pp.MessageExpiryInterval != nil {
		m.Expires = time.Now().Add(time.Duration(*pp.MessageExpiryInterval) * time.Second).UnixMilli()
	}
	m.ContentType = pp.ContentType
	if pp.ResponseTopic != "" {
		d, err := cl.g.ParseName(pp.ResponseTopic) // a topic name: no wildcards [MQTT-3.3.2-14]
		if err != nil {
			return packet.ReasonTopicNameInvalid, fmt.Errorf("%w: %w", errResponseTopic, err)
		}
		m.ReplyTo = d
	}
	m.CorrelationData = pp.CorrelationData
	if n := len(pp.UserProperties); n > 0 {
		m.Headers = make([]router.Header, n)
		for i, u := range pp.UserProperties {
			m.Headers[i] = router.Header{Name: u.Key, Value: u.Value}
		}
	}
	return 0, nil
}

// sessV5 is what sending to an MQTT 5 client needs, for one connection; nil for MQTT 3.1 and 3.1.1.
// Guarded by session.mu.
type sessV5 struct {
	maxPacket uint32 // the client's Maximum Packet Size; 0 = none
	aliasMax  uint16 // aliases the broker may assign (the client's maximum, capped by the connector)
	aliases   map[string]uint16
	// Scratch for encoding one PUBLISH without allocating: its properties, and what they point to.
	props  packet.Properties
	ups    []packet.UserProperty
	ids    [1]uint32
	expiry uint32
	alias  uint16
	utf8   byte
	reply  []byte // the response topic rendered for this client
}

// publishTopic is what the PUBLISH of topic carries: the topic and, when the client accepts aliases, an
// alias (an alias alone once the client knows it). commit records a new alias once the packet is sent.
func (v *sessV5) publishTopic(topic string) (text string, alias uint16, commit bool) {
	if v.aliasMax == 0 {
		return topic, 0, false
	}
	if a, ok := v.aliases[topic]; ok {
		return "", a, false
	}
	if len(v.aliases) >= int(v.aliasMax) {
		return topic, 0, false // every alias is taken: topics beyond the first ones go out in full
	}
	return topic, uint16(len(v.aliases) + 1), true
}

// Why a message is not sent to a client (skipLocked).
const (
	skipExpired       = "expired or larger than the client's maximum packet size"
	skipUnrepresented = "a topic name MQTT cannot represent (a level holding the separator, a wildcard, NUL or invalid UTF-8)"
)

// appendPublishLocked appends it as a PUBLISH under packet id (0 for QoS 0) to b. skip says why, b
// unchanged, when the message must not go to this client: it expired [MQTT-3.3.2-5], the packet would
// exceed the client's Maximum Packet Size [MQTT-3.1.2-24], or MQTT cannot name its topic (represents).
// resend keeps an expired message (its packet id is already the client's).
func (s *session) appendPublishLocked(b []byte, it *outItem, id uint16, resend bool) (out []byte, skip string) {
	m := it.msg
	if m.OriginGram != s.g && !represents(s.g, m.Dest) {
		return b, skipUnrepresented
	}
	retain := it.retained || (it.entry != nil && it.entry.rap && m.Retain) // [MQTT-3.3.1-12] [MQTT-3.3.1-13]
	p := packet.PublishPacket{Dup: it.dup, QoS: it.qos, Retain: retain, Topic: s.topicLocked(m), PacketID: id, Payload: m.Body}
	v := s.v5
	if v == nil {
		if !resend && m.Expires != 0 && m.Expires <= time.Now().UnixMilli() {
			return b, skipExpired
		}
		return packet.AppendPublish(b, &p, s.version), ""
	}
	pr, live := s.publishPropsLocked(v, it, resend)
	if !live {
		return b, skipExpired
	}
	topic := p.Topic
	var commit bool
	p.Topic, v.alias, commit = v.publishTopic(topic)
	if v.alias != 0 {
		pr.TopicAlias = &v.alias // a field, not a local: pr would move a local to the heap
	}
	if pr.MessageExpiryInterval != nil || pr.PayloadFormatIndicator != nil || pr.ContentType != "" ||
		pr.ResponseTopic != "" || pr.CorrelationData != nil || pr.UserProperties != nil ||
		pr.SubscriptionIdentifiers != nil || pr.TopicAlias != nil {
		p.Properties = pr // else none: an empty property list, without sizing an empty struct
	}
	if v.maxPacket > 0 && packet.PublishSize(&p, s.version) > int(v.maxPacket) {
		return b, skipExpired
	}
	out = packet.AppendPublish(b, &p, s.version)
	if commit {
		if v.aliases == nil {
			v.aliases = make(map[string]uint16)
		}
		v.aliases[strings.Clone(topic)] = v.alias // topic may alias the session's scratch
	}
	if len(v.ups) > 64 {
		v.ups = nil // a message with many properties does not pin its scratch
	}
	return out, ""
}

// publishPropsLocked fills v's property scratch with the message properties of it's PUBLISH (all but
// the topic alias). live is false when the message expired [MQTT-3.3.2-5] and must not be sent; resend
// keeps it (its packet id is already the client's).
func (s *session) publishPropsLocked(v *sessV5, it *outItem, resend bool) (pr *packet.Properties, live bool) {
	m := it.msg
	pr = &v.props
	// Only the fields set below are ever set: resetting them is cheaper than clearing the whole struct,
	// per message.
	pr.MessageExpiryInterval, pr.PayloadFormatIndicator, pr.ContentType, pr.ResponseTopic = nil, nil, "", ""
	pr.CorrelationData, pr.UserProperties, pr.SubscriptionIdentifiers, pr.TopicAlias = nil, nil, nil, nil
	if m.Expires != 0 {
		left := (m.Expires - time.Now().UnixMilli() + 999) / 1000 // what is left, rounded up [MQTT-3.3.2-6]
		if left <= 0 && !resend {
			return pr, false
		}
		v.expiry = uint32(max(left, 1))
		pr.MessageExpiryInterval = &v.expiry
	}
	if m.UTF8 {
		v.utf8 = 1
		pr.PayloadFormatIndicator = &v.utf8
	}
	pr.ContentType = m.ContentType
	if m.ReplyTo.Path != nil && represents(s.g, m.ReplyTo) { // else no response topic rather than a wrong one
		v.reply = s.g.AppendRender(v.reply[:0], m.ReplyTo)
		pr.ResponseTopic = unsafe.String(unsafe.SliceData(v.reply), len(v.reply)) // encoded before reuse
	}
	pr.CorrelationData = m.CorrelationData
	if len(m.Headers) > 0 {
		v.ups = v.ups[:0]
		for _, h := range m.Headers {
			v.ups = append(v.ups, packet.UserProperty{Key: h.Name, Value: h.Value})
		}
		pr.UserProperties = v.ups
	}
	switch {
	case it.ids != nil:
		pr.SubscriptionIdentifiers = it.ids // [MQTT-3.3.4-4]: every matching subscription's
	case it.entry != nil && it.entry.subID != 0:
		v.ids[0] = it.entry.subID
		pr.SubscriptionIdentifiers = v.ids[:]
	}
	return pr, true
}

// represents reports whether MQTT grammar g names d as what it is: g renders it as a name that parses
// back to d (router.Grammar.Represents: a STOMP segment "alice/temp" would read as two levels), and that
// name is a topic name MQTT allows, UTF-8 without U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2] of at most 65535
// bytes [MQTT-1.5.4-1]. A message published over MQTT with the same grammar always is; others are checked
// per subscriber, which costs a scan of the name.
func represents(g *router.Grammar, d router.Destination) bool {
	if !g.Represents(d) {
		return false
	}
	c := g.Config()
	n := len(c.TopicPrefix)
	if d.Kind == router.Queue {
		n = len(c.QueuePrefix)
	}
	for i, seg := range d.Path {
		if strings.IndexByte(seg, 0) >= 0 || !utf8.ValidString(seg) {
			return false
		}
		if i > 0 {
			n += len(c.PathSeparator)
		}
		n += len(seg)
	}
	return n <= 65535
}
