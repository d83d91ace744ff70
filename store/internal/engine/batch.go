package engine

import (
	"bytes"
	"fmt"

	"github.com/lyremq/lyre/store"
)

// base is what a batch knows about a key in the committed state.
type base uint8

const (
	baseUnknown base = iota
	baseAbsent
	basePresent
)

// slot is a key's state inside a batch: the committed base and the pending value.
type slot struct {
	val    []byte
	exists bool
	dirty  bool
	base   base
}

// batch applies ops to an overlay over the committed state, so that a batch's net effect is written at
// once: a key put and deleted again within it, absent before, is never written (flush_delay
// cancellation), and a failure leaves the committed state untouched.
type batch struct {
	r     Reader
	slots map[string]*slot
	refs  map[uint64]int            // message id → reference delta
	msgs  map[uint64]*store.Message // bodies of referenced messages, from the ops
	// removed, when set, collects the entries that conditional deletes (ExpiredBy) removed.
	removed *[]store.Ref
}

func newBatch(r Reader) *batch {
	return &batch{r: r, slots: make(map[string]*slot), refs: make(map[uint64]int),
		msgs: make(map[uint64]*store.Message)}
}

// load returns k's slot, reading the committed value on first use.
func (b *batch) load(k []byte) (*slot, error) {
	if s, ok := b.slots[string(k)]; ok {
		return s, nil
	}
	v, ok, err := b.r.Get(k)
	if err != nil {
		return nil, err
	}
	s := &slot{val: v, exists: ok, base: baseAbsent}
	if ok {
		s.base = basePresent
	}
	b.slots[string(k)] = s
	return s, nil
}

// set writes k. known is the committed base when the caller knows it without a read.
func (b *batch) set(k, v []byte, known base) {
	s, ok := b.slots[string(k)]
	if !ok {
		s = &slot{base: known}
		b.slots[string(k)] = s
	}
	s.val, s.exists, s.dirty = v, true, true
}

func (b *batch) del(k []byte, known base) {
	s, ok := b.slots[string(k)]
	if !ok {
		s = &slot{base: known}
		b.slots[string(k)] = s
	}
	s.val, s.exists, s.dirty = nil, false, true
}

// prefixed returns the keys under prefix that exist now, committed or pending, loading committed ones.
func (b *batch) prefixed(prefix []byte) ([]string, error) {
	err := b.r.Scan(prefix, prefix, false, func(k, v []byte) (bool, error) {
		if _, ok := b.slots[string(k)]; !ok {
			b.slots[string(k)] = &slot{val: bytes.Clone(v), exists: true, base: basePresent}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	var keys []string
	for k, s := range b.slots {
		if s.exists && len(k) >= len(prefix) && k[:len(prefix)] == string(prefix) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (b *batch) ref(m *store.Message) {
	b.refs[m.ID]++
	if _, ok := b.msgs[m.ID]; !ok {
		b.msgs[m.ID] = m
	}
}

func (b *batch) unref(id uint64) {
	if id != 0 {
		b.refs[id]--
	}
}

func (b *batch) apply(op store.Op) error {
	switch o := op.(type) {
	case store.PutQueue:
		b.set(keyQueue(o.Queue.Name), encodeQueue(o.Queue), baseUnknown)
	case store.DeleteQueue:
		b.del(keyQueue(o.Name), baseUnknown)
		return b.deleteList(store.ListQueue, o.Name)
	case store.PutEntry:
		return b.putEntry(o.Entry)
	case store.DeleteEntry:
		deleted, err := b.deleteEntryIf(keyEntry(o.Ref.List, o.Ref.Owner, o.Ref.Seq), o.ExpiredBy)
		if deleted && o.ExpiredBy > 0 && b.removed != nil {
			*b.removed = append(*b.removed, o.Ref)
		}
		return err
	case store.PutDurableSub:
		b.set(keyDurable(o.Sub.ID), encodeDurable(o.Sub), baseUnknown)
	case store.DeleteDurableSub:
		b.del(keyDurable(o.ID), baseUnknown)
		return b.deleteList(store.ListDurableSub, o.ID)
	case store.PutSession:
		b.set(keySession(o.Session.ClientID), encodeSession(o.Session), baseUnknown)
	case store.DeleteSession:
		return b.deleteSession(o.ClientID)
	case store.PutInflight:
		b.set(keyInflight(o.Inflight.ClientID, o.Inflight.PacketID), encodeInflight(o.Inflight), baseUnknown)
	case store.DeleteInflight:
		b.del(keyInflight(o.ClientID, o.PacketID), baseUnknown)
	case store.PutInbound:
		b.set(keyInbound(o.ClientID, o.PacketID), nil, baseUnknown)
	case store.DeleteInbound:
		b.del(keyInbound(o.ClientID, o.PacketID), baseUnknown)
	case store.PutRetained:
		k := keyRetained(o.Retained.Topic)
		if err := b.releaseRetained(k); err != nil {
			return err
		}
		b.ref(o.Retained.Msg)
		b.set(k, encodeUvarint(o.Retained.Msg.ID), baseUnknown)
	case store.DeleteRetained:
		return b.releaseRetained(keyRetained(o.Topic))
	default:
		return store.Validate(op)
	}
	return nil
}

func (b *batch) putEntry(e store.Entry) error {
	k := keyEntry(e.List, e.Owner, e.Seq)
	if err := b.deleteEntry(k); err != nil {
		return err
	}
	s := b.slots[string(k)] // loaded by deleteEntry
	b.ref(e.Msg)
	b.set(k, encodeEntry(entryVal{MsgID: e.Msg.ID, Redeliveries: e.Redeliveries, Expires: e.Msg.Expires}), s.base)
	if e.Msg.Expires > 0 {
		// An index key exists in the committed state only if its entry does.
		xb := baseUnknown
		if s.base == baseAbsent {
			xb = baseAbsent
		}
		b.set(keyExpiry(e.Msg.Expires, k), nil, xb)
	}
	return nil
}

// deleteEntry removes the entry at k, if any, with its expiry index key and message reference.
func (b *batch) deleteEntry(k []byte) error {
	_, err := b.deleteEntryIf(k, 0)
	return err
}

// deleteEntryIf is deleteEntry; with expiredBy > 0, only for an entry expiring at or before it. It
// reports whether it deleted.
func (b *batch) deleteEntryIf(k []byte, expiredBy int64) (bool, error) {
	s, err := b.load(k)
	if err != nil || !s.exists {
		return false, err
	}
	v, err := decodeEntry(s.val)
	if err != nil {
		return false, err
	}
	if expiredBy > 0 && (v.Expires == 0 || v.Expires > expiredBy) {
		return false, nil
	}
	b.unref(v.MsgID)
	if v.Expires > 0 {
		b.del(keyExpiry(v.Expires, k), s.base)
	}
	b.del(k, s.base)
	return true, nil
}

func (b *batch) deleteList(l store.List, owner string) error {
	keys, err := b.prefixed(prefixList(l, owner))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.deleteEntry([]byte(k)); err != nil {
			return err
		}
	}
	return nil
}

func (b *batch) releaseRetained(k []byte) error {
	s, err := b.load(k)
	if err != nil || !s.exists {
		return err
	}
	id, err := decodeUvarint(s.val, "retained")
	if err != nil {
		return err
	}
	b.unref(id)
	b.del(k, s.base)
	return nil
}

func (b *batch) deleteSession(cid string) error {
	b.del(keySession(cid), baseUnknown)
	keys, err := b.prefixed(appendStr([]byte{pInflight}, cid))
	if err != nil {
		return err
	}
	for _, k := range keys {
		b.del([]byte(k), basePresent)
	}
	keys, err = b.prefixed(appendStr([]byte{pInbound}, cid))
	if err != nil {
		return err
	}
	for _, k := range keys {
		b.del([]byte(k), basePresent)
	}
	return nil
}

// finish settles reference counts: a message whose count rises from zero gets its body written, one
// whose count falls to zero loses it. It returns the batch's net mutations.
func (b *batch) finish() ([]Mutation, error) {
	for id, delta := range b.refs {
		if delta == 0 {
			continue
		}
		rk := keyRefcount(id)
		s, err := b.load(rk)
		if err != nil {
			return nil, err
		}
		var n uint64
		if s.exists {
			if n, err = decodeUvarint(s.val, "refcount"); err != nil {
				return nil, err
			}
		}
		was := n > 0
		after := int64(n) + int64(delta)
		switch {
		case after <= 0 && was:
			b.del(rk, s.base)
			b.del(keyMessage(id), basePresent)
		case after <= 0:
			// Referenced and released within this batch: never written.
		default:
			b.set(rk, encodeUvarint(uint64(after)), s.base)
			if !was {
				m := b.msgs[id]
				if m == nil {
					return nil, fmt.Errorf("%w: message %d referenced without its body", store.ErrCorrupt, id)
				}
				b.set(keyMessage(id), encodeMessage(m), baseAbsent)
			}
		}
	}
	muts := make([]Mutation, 0, len(b.slots))
	for k, s := range b.slots {
		switch {
		case !s.dirty:
		case s.exists:
			muts = append(muts, Mutation{Key: []byte(k), Value: s.val})
		case s.base != baseAbsent:
			muts = append(muts, Mutation{Key: []byte(k), Delete: true})
		}
	}
	return muts, nil
}
