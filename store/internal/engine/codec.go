package engine

import (
	"encoding/binary"
	"fmt"

	"github.com/lyremq/lyre/store"
)

// Key prefixes; the package doc of store documents the layout.
const (
	pVersion   = 'v'
	pMessage   = 'm'
	pRefcount  = 'c'
	pQueue     = 'q'
	pDurable   = 'd'
	pSession   = 's'
	pEntry     = 'e'
	pInflight  = 'i'
	pInbound   = 'p'
	pRetained  = 'r'
	pExpiry    = 'x'
	keyVersion = "v"
)

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func keyMessage(id uint64) []byte  { return appendU64([]byte{pMessage}, id) }
func keyRefcount(id uint64) []byte { return appendU64([]byte{pRefcount}, id) }
func keyQueue(name string) []byte  { return appendStr([]byte{pQueue}, name) }
func keyDurable(id string) []byte  { return appendStr([]byte{pDurable}, id) }
func keySession(cid string) []byte { return appendStr([]byte{pSession}, cid) }
func keyRetained(t string) []byte  { return appendStr([]byte{pRetained}, t) }

func prefixList(l store.List, owner string) []byte {
	return appendStr([]byte{pEntry, byte(l)}, owner)
}

func keyEntry(l store.List, owner string, seq uint64) []byte {
	return appendU64(prefixList(l, owner), seq)
}

func keyInflight(cid string, pid uint16) []byte {
	return binary.BigEndian.AppendUint16(appendStr([]byte{pInflight}, cid), pid)
}

func keyInbound(cid string, pid uint16) []byte {
	return binary.BigEndian.AppendUint16(appendStr([]byte{pInbound}, cid), pid)
}

func keyExpiry(expires int64, entryKey []byte) []byte {
	return append(appendU64([]byte{pExpiry}, uint64(expires)), entryKey...)
}

// dec reads the encodings below; the first error sticks and later reads return zero values.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = store.ErrCorrupt
	}
	d.b = nil
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *dec) fixed(n int) []byte {
	if len(d.b) < n {
		d.fail()
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	return string(d.fixed(int(n)))
}

func (d *dec) u64() uint64 {
	p := d.fixed(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *dec) end(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = store.ErrCorrupt
	}
	if d.err != nil {
		return fmt.Errorf("%w: %s", d.err, what)
	}
	return nil
}

const (
	flagPersistent = 1 << 0
	flagRetain     = 1 << 1
	// flagGroup marks a message with a group, written as str(group) between the headers and the body.
	// Records written before groups were stored lack the flag and decode with no group.
	flagGroup = 1 << 2
	// flagProps marks a message with MQTT 5 properties (reply-to, correlation data, UTF-8 payload),
	// written after the group as a properties section: byte(prop bits), then the value of each bit set, in
	// bit order. Records written before the section existed lack the flag and decode with none.
	flagProps = 1 << 3
)

// Bits of the properties section. A bit this build does not know makes the record corrupt, so a record
// from a later build is refused rather than misread.
const (
	propReplyTo     = 1 << 0 // byte(kind) uvarint(n) n×str(segment)
	propCorrelation = 1 << 1 // str(data)
	propUTF8        = 1 << 2 // no value
	propKnown       = propReplyTo | propCorrelation | propUTF8
)

// props returns the properties-section bits of m; 0 = no section.
func props(m *store.Message) byte {
	var p byte
	if len(m.ReplyToPath) > 0 {
		p |= propReplyTo
	}
	if len(m.CorrelationData) > 0 {
		p |= propCorrelation
	}
	if m.UTF8 {
		p |= propUTF8
	}
	return p
}

func encodeMessage(m *store.Message) []byte {
	n := 32 + len(m.Origin) + len(m.ContentType) + len(m.Group) + len(m.Body)
	for _, s := range m.DestPath {
		n += len(s) + 2
	}
	p := props(m)
	if p != 0 {
		n += 16 + len(m.CorrelationData)
		for _, s := range m.ReplyToPath {
			n += len(s) + 2
		}
	}
	for _, h := range m.Headers {
		n += len(h.Name) + len(h.Value) + 4
	}
	b := make([]byte, 0, n)
	var flags byte
	if m.Persistent {
		flags |= flagPersistent
	}
	if m.Retain {
		flags |= flagRetain
	}
	if m.Group != "" {
		flags |= flagGroup
	}
	if p != 0 {
		flags |= flagProps
	}
	b = append(b, flags, m.QoS, m.Priority, m.DestKind)
	b = binary.AppendVarint(b, m.Expires)
	b = binary.AppendUvarint(b, uint64(len(m.DestPath)))
	for _, s := range m.DestPath {
		b = appendStr(b, s)
	}
	b = appendStr(b, m.Origin)
	b = appendStr(b, m.ContentType)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = appendStr(appendStr(b, h.Name), h.Value)
	}
	if m.Group != "" {
		b = appendStr(b, m.Group)
	}
	if p != 0 {
		b = append(b, p)
		if p&propReplyTo != 0 {
			b = append(b, m.ReplyToKind)
			b = binary.AppendUvarint(b, uint64(len(m.ReplyToPath)))
			for _, s := range m.ReplyToPath {
				b = appendStr(b, s)
			}
		}
		if p&propCorrelation != 0 {
			b = binary.AppendUvarint(b, uint64(len(m.CorrelationData)))
			b = append(b, m.CorrelationData...)
		}
	}
	return append(b, m.Body...)
}

// decodeMessage decodes v, which it may keep (the body aliases it).
func decodeMessage(id uint64, v []byte) (*store.Message, error) {
	d := dec{b: v}
	m := &store.Message{ID: id}
	flags := d.byte()
	m.Persistent = flags&flagPersistent != 0
	m.Retain = flags&flagRetain != 0
	m.QoS = d.byte()
	m.Priority = d.byte()
	m.DestKind = d.byte()
	m.Expires = d.varint()
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) {
		m.DestPath = make([]string, n)
		for i := range m.DestPath {
			m.DestPath[i] = d.str()
		}
	} else if n > 0 {
		d.fail()
	}
	m.Origin = d.str()
	m.ContentType = d.str()
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) {
		m.Headers = make([]store.Header, n)
		for i := range m.Headers {
			m.Headers[i] = store.Header{Name: d.str(), Value: d.str()}
		}
	} else if n > 0 {
		d.fail()
	}
	if flags&flagGroup != 0 {
		m.Group = d.str()
	}
	if flags&flagProps != 0 {
		d.props(m)
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: message %d", d.err, id)
	}
	if len(d.b) > 0 {
		m.Body = d.b
	}
	return m, nil
}

// props decodes a message's properties section into m.
func (d *dec) props(m *store.Message) {
	p := d.byte()
	if p == 0 || p&^propKnown != 0 {
		d.fail() // the flag promised a section; unknown bits are a later format's
		return
	}
	if p&propReplyTo != 0 {
		m.ReplyToKind = d.byte()
		if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) {
			m.ReplyToPath = make([]string, n)
			for i := range m.ReplyToPath {
				m.ReplyToPath[i] = d.str()
			}
		} else {
			d.fail() // written only with a path
		}
	}
	if p&propCorrelation != 0 {
		n := d.uvarint()
		if n == 0 || n > uint64(len(d.b)) {
			d.fail()
			return
		}
		m.CorrelationData = d.fixed(int(n))
	}
	m.UTF8 = p&propUTF8 != 0
}

// entryVal is a list entry's value; Expires is a copy of the message's, for the expiry index.
type entryVal struct {
	MsgID        uint64
	Redeliveries uint32
	Expires      int64
}

func encodeEntry(e entryVal) []byte {
	b := make([]byte, 0, 24)
	b = binary.AppendUvarint(b, e.MsgID)
	b = binary.AppendUvarint(b, uint64(e.Redeliveries))
	return binary.AppendVarint(b, e.Expires)
}

func decodeEntry(v []byte) (entryVal, error) {
	d := dec{b: v}
	e := entryVal{MsgID: d.uvarint(), Redeliveries: uint32(d.uvarint()), Expires: d.varint()}
	return e, d.end("entry")
}

// parseEntryKey splits an entry key into its reference.
func parseEntryKey(k []byte) (store.Ref, error) {
	if len(k) < 2 || k[0] != pEntry {
		return store.Ref{}, fmt.Errorf("%w: entry key", store.ErrCorrupt)
	}
	d := dec{b: k[2:]}
	r := store.Ref{List: store.List(k[1]), Owner: d.str(), Seq: d.u64()}
	return r, d.end("entry key")
}

// parseOwnerKey reads the length-prefixed owner after a prefix of n bytes and returns it with the rest.
func parseOwnerKey(k []byte, n int) (string, []byte, error) {
	if len(k) < n {
		return "", nil, fmt.Errorf("%w: key", store.ErrCorrupt)
	}
	d := dec{b: k[n:]}
	s := d.str()
	if d.err != nil {
		return "", nil, fmt.Errorf("%w: key", d.err)
	}
	return s, d.b, nil
}

func encodeUvarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func decodeUvarint(v []byte, what string) (uint64, error) {
	d := dec{b: v}
	n := d.uvarint()
	return n, d.end(what)
}

func encodeDurable(s store.DurableSub) []byte {
	b := appendStr(appendStr(appendStr(nil, s.Filter), s.Selector), s.Owner)
	return append(b, s.QoS, s.Flags)
}

func decodeDurable(id string, v []byte) (store.DurableSub, error) {
	d := dec{b: v}
	s := store.DurableSub{ID: id, Filter: d.str(), Selector: d.str(), Owner: d.str(), QoS: d.byte(), Flags: d.byte()}
	return s, d.end("durable subscription")
}

func encodeSession(s store.Session) []byte {
	b := []byte{s.ProtocolVersion}
	b = binary.AppendUvarint(b, uint64(s.ExpiryInterval))
	b = binary.AppendVarint(b, s.DisconnectedAt)
	b = appendStr(b, s.Owner)
	b = binary.AppendUvarint(b, uint64(len(s.Subscriptions)))
	for _, sub := range s.Subscriptions {
		b = appendStr(appendStr(appendStr(b, sub.Name), sub.Filter), sub.Share)
		b = append(b, sub.QoS, sub.Options)
		b = binary.AppendUvarint(b, uint64(sub.Identifier))
		durable := byte(0)
		if sub.Durable {
			durable = 1
		}
		b = append(b, durable)
	}
	return b
}

func decodeSession(cid string, v []byte) (store.Session, error) {
	d := dec{b: v}
	s := store.Session{ClientID: cid, ProtocolVersion: d.byte(), ExpiryInterval: uint32(d.uvarint()),
		DisconnectedAt: d.varint(), Owner: d.str()}
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) {
		s.Subscriptions = make([]store.Subscription, n)
		for i := range s.Subscriptions {
			sub := store.Subscription{Name: d.str(), Filter: d.str(), Share: d.str(), QoS: d.byte(), Options: d.byte(),
				Identifier: uint32(d.uvarint())}
			switch d.byte() {
			case 0:
			case 1:
				sub.Durable = true
			default:
				d.fail()
			}
			s.Subscriptions[i] = sub
		}
	} else if n > 0 {
		d.fail()
	}
	return s, d.end("session")
}

// encodeQueue is a queue record's value: its kind, then uvarint(delivered mark) when set.
func encodeQueue(q store.Queue) []byte {
	b := []byte{q.Kind}
	if q.Delivered > 0 {
		b = binary.AppendUvarint(b, q.Delivered)
	}
	return b
}

func decodeQueue(name string, v []byte) (store.Queue, error) {
	d := dec{b: v}
	q := store.Queue{Name: name, Kind: d.byte()}
	if d.err == nil && len(d.b) > 0 {
		q.Delivered = d.uvarint() // absent in records written before the mark was stored
	}
	return q, d.end("queue")
}

// encodeInflight is an in-flight record's value: state, QoS and the entry it delivers (its packet id
// and client id are the key).
func encodeInflight(f store.Inflight) []byte {
	b := appendStr([]byte{byte(f.State), f.QoS, byte(f.Ref.List)}, f.Ref.Owner)
	return binary.AppendUvarint(b, f.Ref.Seq)
}

func decodeInflight(cid string, pid uint16, v []byte) (store.Inflight, error) {
	d := dec{b: v}
	f := store.Inflight{ClientID: cid, PacketID: pid, State: store.InflightState(d.byte()), QoS: d.byte()}
	f.Ref = store.Ref{List: store.List(d.byte()), Owner: d.str(), Seq: d.uvarint()}
	return f, d.end("inflight")
}
