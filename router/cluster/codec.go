package cluster

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/lyremq/lyre/router"
)

// The envelope is the NATS message body: a header of the router.Message fields that cross nodes, then
// the payload. Binary rather than NATS headers because application headers are ordered and may repeat
// (MQTT 5 user properties), which a header map does not keep, and because a length-prefixed layout
// needs no escaping of names or values.
//
//	version   byte (envelopeV1)
//	flags     byte (flag* below)
//	qos       byte
//	priority  byte
//	origin    uvarint (the sending link's incarnation id)
//	seq       uvarint (per origin, increasing: drops the copies overlapping subscriptions bring)
//	id        uvarint (the message's ID in the origin's router: with origin, names it cluster-wide)
//	ttl       uvarint milliseconds, present with flagExpires
//	content type, sender id, group: strings
//	reply-to  byte kind, uvarint count, strings; present with flagReplyTo
//	correlation data: bytes
//	headers   uvarint count, then name and value strings
//	payload   the rest
//
// A string or bytes field is a uvarint length then the bytes.
const envelopeV1 = 1

const (
	flagRetain = 1 << iota
	flagPersistent
	flagUTF8
	flagExpires
	flagReplyTo
	flagsKnown = flagRetain | flagPersistent | flagUTF8 | flagExpires | flagReplyTo
)

var errBadEnvelope = errors.New("cluster: malformed envelope")

// envelope is what decode returns besides the message.
type envelope struct {
	origin, seq, id uint64
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encode appends m's envelope to dst. now is the time expiry is measured from: the receiver adds the
// remaining lifetime to its own clock, so the nodes' clocks need not agree. ok is false for a message
// already expired, which is not worth sending.
func encode(dst []byte, m *router.Message, origin, seq uint64, now time.Time) (b []byte, ok bool) {
	var flags byte
	if m.Retain {
		flags |= flagRetain
	}
	if m.Persistent {
		flags |= flagPersistent
	}
	if m.UTF8 {
		flags |= flagUTF8
	}
	var ttl int64
	if m.Expires != 0 {
		if ttl = m.Expires - now.UnixMilli(); ttl <= 0 {
			return dst, false
		}
		flags |= flagExpires
	}
	if m.ReplyTo.Path != nil {
		flags |= flagReplyTo
	}
	b = append(dst, envelopeV1, flags, m.QoS, m.Priority)
	b = binary.AppendUvarint(b, origin)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, m.ID)
	if flags&flagExpires != 0 {
		b = binary.AppendUvarint(b, uint64(ttl))
	}
	b = appendString(b, m.ContentType)
	b = appendString(b, m.SenderID)
	b = appendString(b, m.Group)
	if flags&flagReplyTo != 0 {
		b = append(b, byte(m.ReplyTo.Kind))
		b = binary.AppendUvarint(b, uint64(len(m.ReplyTo.Path)))
		for _, s := range m.ReplyTo.Path {
			b = appendString(b, s)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.CorrelationData)))
	b = append(b, m.CorrelationData...)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = appendString(b, h.Name)
		b = appendString(b, h.Value)
	}
	return append(b, m.Body...), true
}

// reader consumes an envelope; every read checks what is left, so garbage fails rather than panics,
// and counts are checked against the bytes left before anything is allocated for them.
type reader struct {
	b   []byte
	err bool
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.err = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err || n > uint64(len(r.b)) {
		r.err = true
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

func (r *reader) string() string { return string(r.bytes()) }

// count reads an element count whose elements take at least min bytes each.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if r.err || n > uint64(len(r.b)/min) {
		r.err = true
		return 0
	}
	return int(n)
}

// decode parses an envelope into a Topic message on path. Byte slices in the result alias b (the NATS
// message's own buffer, not reused by the client).
func decode(b []byte, path []string, now time.Time) (*router.Message, envelope, error) {
	r := reader{b: b}
	var env envelope
	if r.byte() != envelopeV1 {
		return nil, env, errBadEnvelope
	}
	flags := r.byte()
	m := &router.Message{Dest: router.Destination{Kind: router.Topic, Path: path}}
	m.QoS = r.byte()
	m.Priority = r.byte()
	if r.err || flags&^flagsKnown != 0 || m.QoS > 2 {
		return nil, env, errBadEnvelope
	}
	m.Retain = flags&flagRetain != 0
	m.Persistent = flags&flagPersistent != 0
	m.UTF8 = flags&flagUTF8 != 0
	env.origin = r.uvarint()
	env.seq = r.uvarint()
	env.id = r.uvarint()
	if flags&flagExpires != 0 {
		ttl := r.uvarint()
		if ttl == 0 || ttl > 1<<40 { // about 35 years: beyond it the sender's clock or encoder is broken
			return nil, env, errBadEnvelope
		}
		m.Expires = now.UnixMilli() + int64(ttl)
	}
	m.ContentType = r.string()
	m.SenderID = r.string()
	m.Group = r.string()
	if flags&flagReplyTo != 0 {
		m.ReplyTo.Kind = router.Kind(r.byte())
		n := r.count(1)
		m.ReplyTo.Path = make([]string, 0, n)
		for range n {
			m.ReplyTo.Path = append(m.ReplyTo.Path, r.string())
		}
		if m.ReplyTo.Kind > router.TempTopic {
			return nil, env, errBadEnvelope
		}
	}
	if cd := r.bytes(); len(cd) > 0 {
		m.CorrelationData = cd
	}
	if n := r.count(2); n > 0 {
		m.Headers = make([]router.Header, 0, n)
		for range n {
			name := r.string()
			m.Headers = append(m.Headers, router.Header{Name: name, Value: r.string()})
		}
	}
	if r.err {
		return nil, env, errBadEnvelope
	}
	m.Body = r.b
	return m, env, nil
}
