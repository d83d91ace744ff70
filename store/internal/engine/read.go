package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/lyremq/lyre/store"
)

// loader decodes messages for one read, each message once.
type loader struct {
	r    Reader
	seen map[uint64]*store.Message
}

func (l *loader) message(id uint64) (*store.Message, error) {
	if m, ok := l.seen[id]; ok {
		return m, nil
	}
	v, ok, err := l.r.Get(keyMessage(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: message %d referenced but missing", store.ErrCorrupt, id)
	}
	m, err := decodeMessage(id, v)
	if err != nil {
		return nil, err
	}
	if l.seen == nil {
		l.seen = make(map[uint64]*store.Message)
	}
	l.seen[id] = m
	return m, nil
}

// Entries implements store.Store.
func (e *Engine) Entries(list store.List, owner string, from uint64, limit int) ([]store.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	prefix := prefixList(list, owner)
	var out []store.Entry
	err := e.view(func(r Reader) error {
		l := loader{r: r}
		return r.Scan(prefix, appendU64(bytes.Clone(prefix), from), false, func(k, v []byte) (bool, error) {
			ev, err := decodeEntry(v)
			if err != nil {
				return false, err
			}
			m, err := l.message(ev.MsgID)
			if err != nil {
				return false, err
			}
			out = append(out, store.Entry{List: list, Owner: owner, Seq: binary.BigEndian.Uint64(k[len(prefix):]),
				Redeliveries: ev.Redeliveries, Msg: m})
			return len(out) < limit, nil
		})
	})
	return out, err
}

// lists summarises every list of kind l by owner.
func lists(r Reader, l store.List) (map[string]*store.ListInfo, error) {
	out := make(map[string]*store.ListInfo)
	prefix := []byte{pEntry, byte(l)}
	var cur *store.ListInfo
	var curOwner string
	err := r.Scan(prefix, prefix, true, func(k, _ []byte) (bool, error) {
		owner, rest, err := parseOwnerKey(k, 2)
		if err != nil || len(rest) != 8 {
			return false, fmt.Errorf("%w: entry key", store.ErrCorrupt)
		}
		seq := binary.BigEndian.Uint64(rest)
		if cur == nil || owner != curOwner {
			cur, curOwner = &store.ListInfo{First: seq}, owner
			out[owner] = cur
		}
		cur.Count++
		cur.Last = seq
		return true, nil
	})
	return out, err
}

// records calls fn for each record under the one-byte prefix p, with the owner name from the key.
func records(r Reader, p byte, fn func(name string, rest, val []byte) error) error {
	return r.Scan([]byte{p}, []byte{p}, false, func(k, v []byte) (bool, error) {
		name, rest, err := parseOwnerKey(k, 1)
		if err != nil {
			return false, err
		}
		return true, fn(name, rest, v)
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Recover implements store.Store. It runs on one snapshot; v's functions must not wait for commits.
func (e *Engine) Recover(v store.Visitor) (store.Counts, error) {
	var c store.Counts
	err := e.view(func(r Reader) error {
		l := loader{r: r}
		if err := recoverQueues(r, v, &c); err != nil {
			return err
		}
		if err := recoverDurables(r, v, &c); err != nil {
			return err
		}
		if err := recoverSessions(r, v, &c); err != nil {
			return err
		}
		err := records(r, pRetained, func(topic string, _, val []byte) error {
			id, err := decodeUvarint(val, "retained")
			if err != nil {
				return err
			}
			c.Retained++
			if v.Retained == nil {
				return nil
			}
			m, err := l.message(id)
			if err != nil {
				return err
			}
			return v.Retained(store.Retained{Topic: topic, Msg: m})
		})
		if err != nil {
			return err
		}
		return r.Scan([]byte{pMessage}, []byte{pMessage}, true, func(k, _ []byte) (bool, error) {
			c.Messages++
			c.MaxMessageID = max(c.MaxMessageID, binary.BigEndian.Uint64(k[1:]))
			return true, nil
		})
	})
	return c, err
}

func recoverQueues(r Reader, v store.Visitor, c *store.Counts) error {
	infos, err := lists(r, store.ListQueue)
	if err != nil {
		return err
	}
	queues := make(map[string]store.Queue)
	err = records(r, pQueue, func(name string, _, val []byte) error {
		q, err := decodeQueue(name, val)
		if err != nil {
			return fmt.Errorf("%w: queue %q", err, name)
		}
		queues[name] = q
		return nil
	})
	if err != nil {
		return err
	}
	for name := range infos {
		if _, ok := queues[name]; !ok {
			queues[name] = store.Queue{Name: name}
		}
	}
	for _, name := range sortedKeys(queues) {
		var li store.ListInfo
		if p := infos[name]; p != nil {
			li = *p
		}
		c.Queues++
		c.QueueEntries += li.Count
		if v.Queue != nil {
			if err := v.Queue(queues[name], li); err != nil {
				return err
			}
		}
	}
	return nil
}

func recoverDurables(r Reader, v store.Visitor, c *store.Counts) error {
	infos, err := lists(r, store.ListDurableSub)
	if err != nil {
		return err
	}
	subs := make(map[string]store.DurableSub)
	err = records(r, pDurable, func(id string, _, val []byte) error {
		s, err := decodeDurable(id, val)
		subs[id] = s
		return err
	})
	if err != nil {
		return err
	}
	for id := range infos {
		if _, ok := subs[id]; !ok {
			subs[id] = store.DurableSub{ID: id}
		}
	}
	for _, id := range sortedKeys(subs) {
		var li store.ListInfo
		if p := infos[id]; p != nil {
			li = *p
		}
		c.DurableSubs++
		c.DurableSubEntries += li.Count
		if v.DurableSub != nil {
			if err := v.DurableSub(subs[id], li); err != nil {
				return err
			}
		}
	}
	return nil
}

func recoverSessions(r Reader, v store.Visitor, c *store.Counts) error {
	sessions := make(map[string]*store.SessionState)
	get := func(cid string) *store.SessionState {
		s := sessions[cid]
		if s == nil {
			s = &store.SessionState{Session: store.Session{ClientID: cid}}
			sessions[cid] = s
		}
		return s
	}
	err := records(r, pSession, func(cid string, _, val []byte) error {
		s, err := decodeSession(cid, val)
		get(cid).Session = s
		return err
	})
	if err != nil {
		return err
	}
	err = records(r, pInflight, func(cid string, rest, val []byte) error {
		if len(rest) != 2 {
			return fmt.Errorf("%w: inflight key", store.ErrCorrupt)
		}
		in, err := decodeInflight(cid, binary.BigEndian.Uint16(rest), val)
		if err != nil {
			return err
		}
		s := get(cid)
		s.Inflight = append(s.Inflight, in)
		return nil
	})
	if err != nil {
		return err
	}
	err = records(r, pInbound, func(cid string, rest, _ []byte) error {
		if len(rest) != 2 {
			return fmt.Errorf("%w: inbound key", store.ErrCorrupt)
		}
		s := get(cid)
		s.Inbound = append(s.Inbound, binary.BigEndian.Uint16(rest))
		return nil
	})
	if err != nil {
		return err
	}
	for _, cid := range sortedKeys(sessions) {
		s := sessions[cid]
		c.Sessions++
		c.Inflight += len(s.Inflight)
		c.Inbound += len(s.Inbound)
		if v.Session != nil {
			if err := v.Session(*s); err != nil {
				return err
			}
		}
	}
	return nil
}

// RemoveExpired implements store.Store, walking the expiry index in time order.
func (e *Engine) RemoveExpired(now int64, limit int) ([]store.Ref, error) {
	if limit <= 0 || now <= 0 {
		return nil, nil
	}
	var refs []store.Ref
	err := e.view(func(r Reader) error {
		p := []byte{pExpiry}
		return r.Scan(p, p, true, func(k, _ []byte) (bool, error) {
			if len(k) < 9 {
				return false, fmt.Errorf("%w: expiry key", store.ErrCorrupt)
			}
			if int64(binary.BigEndian.Uint64(k[1:9])) > now {
				return false, nil
			}
			ref, err := parseEntryKey(k[9:])
			if err != nil {
				return false, err
			}
			refs = append(refs, ref)
			return len(refs) < limit, nil
		})
	})
	if err != nil || len(refs) == 0 {
		return nil, err
	}
	ops := make([]store.Op, len(refs))
	for i, ref := range refs {
		ops[i] = store.DeleteEntry{Ref: ref, ExpiredBy: now}
	}
	var removed []store.Ref
	ch := make(chan error, 1)
	e.submit(&request{ops: ops, done: func(err error) { ch <- err }, removed: &removed})
	if err := <-ch; err != nil {
		return nil, err
	}
	return removed, nil
}

var _ store.Store = (*Engine)(nil)
