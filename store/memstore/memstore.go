// Package memstore is the store of a virtual host configured without a `store { }` block: the same
// semantics as badgerstore (it shares its engine), kept in memory and lost at exit. Commits still go
// through the group committer, so callers see the same ordering and notifications.
package memstore

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/internal/engine"
)

// Options configure a memory store. The zero value is the default.
type Options struct {
	// FlushDelay: see badgerstore.Options.FlushDelay.
	FlushDelay time.Duration
	// BeforeWrite, when set, is called before each batch is applied; an error fails the batch with
	// nothing applied. For fault-injection tests.
	BeforeWrite func() error
}

// Store is an in-memory store.Store.
type Store struct {
	*engine.Engine
	kv *kv
}

// New returns an empty memory store.
func New(o Options) *Store {
	m := newKV()
	e, err := engine.New(m, engine.Options{FlushDelay: o.FlushDelay, BeforeWrite: o.BeforeWrite})
	if err != nil {
		panic(err) // an empty in-memory KV has no version to refuse
	}
	return &Store{Engine: e, kv: m}
}

// Stats implements store.Store; SizeBytes is the bytes of the keys and values held.
func (s *Store) Stats() store.Stats {
	st := s.Engine.Stats()
	st.SizeBytes = s.kv.size.Load()
	return st
}

const maxLevel = 24

type node struct {
	key, val []byte
	next     []*node
}

// kv is an ordered map: a skip list under one lock, so that reads see whole batches only.
type kv struct {
	mu    sync.RWMutex
	head  node
	level int
	size  atomic.Int64 // bytes of the keys and values held
}

func newKV() *kv { return &kv{head: node{next: make([]*node, maxLevel)}, level: 1} }

// findGE returns the first node with key >= k, filling prev (when non-nil) with each level's predecessor.
func (m *kv) findGE(k []byte, prev *[maxLevel]*node) *node {
	x := &m.head
	for i := m.level - 1; i >= 0; i-- {
		for x.next[i] != nil && bytes.Compare(x.next[i].key, k) < 0 {
			x = x.next[i]
		}
		if prev != nil {
			prev[i] = x
		}
	}
	return x.next[0]
}

func (m *kv) set(k, v []byte) {
	var prev [maxLevel]*node
	if n := m.findGE(k, &prev); n != nil && bytes.Equal(n.key, k) {
		m.size.Add(int64(len(v) - len(n.val)))
		n.val = v
		return
	}
	m.size.Add(int64(len(k) + len(v)))
	lvl := 1
	for lvl < maxLevel && rand.Uint32()&3 == 0 {
		lvl++
	}
	for i := m.level; i < lvl; i++ {
		prev[i] = &m.head
	}
	m.level = max(m.level, lvl)
	n := &node{key: k, val: v, next: make([]*node, lvl)}
	for i := range lvl {
		n.next[i] = prev[i].next[i]
		prev[i].next[i] = n
	}
}

func (m *kv) delete(k []byte) {
	var prev [maxLevel]*node
	n := m.findGE(k, &prev)
	if n == nil || !bytes.Equal(n.key, k) {
		return
	}
	for i := range n.next {
		prev[i].next[i] = n.next[i]
	}
	m.size.Add(-int64(len(n.key) + len(n.val)))
}

func (m *kv) Get(k []byte) ([]byte, bool, error) {
	if n := m.findGE(k, nil); n != nil && bytes.Equal(n.key, k) {
		return bytes.Clone(n.val), true, nil
	}
	return nil, false, nil
}

func (m *kv) Scan(prefix, start []byte, keysOnly bool, fn func(k, v []byte) (bool, error)) error {
	for n := m.findGE(start, nil); n != nil && bytes.HasPrefix(n.key, prefix); n = n.next[0] {
		v := n.val
		if keysOnly {
			v = nil
		}
		if more, err := fn(n.key, v); err != nil || !more {
			return err
		}
	}
	return nil
}

func (m *kv) View(fn func(r engine.Reader) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(m)
}

func (m *kv) Write(muts []engine.Mutation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mu := range muts {
		if mu.Delete {
			m.delete(mu.Key)
		} else {
			m.set(mu.Key, mu.Value)
		}
	}
	return nil
}

func (m *kv) Close() error { return nil }

var _ store.Store = (*Store)(nil)
