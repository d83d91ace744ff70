package router

import (
	"slices"
	"sync"
	"time"
)

// retainStore keeps the last retained message of every topic, in a tree of path segments so a wildcard
// filter finds its matches without scanning unrelated branches. It has its own lock, never held together
// with another router lock.
type retainStore struct {
	mu    sync.RWMutex
	roots [2]*rnode // Topic, TempTopic
	count int
}

type rnode struct {
	kids map[string]*rnode
	msg  *Message
}

func newRetainStore() *retainStore {
	return &retainStore{roots: [2]*rnode{{}, {}}}
}

// set stores m as the retained message of path, replacing the previous one.
func (rs *retainStore) set(ri int, path []string, m *Message) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := rs.roots[ri]
	for _, s := range path {
		c := n.kids[s]
		if c == nil {
			if n.kids == nil {
				n.kids = make(map[string]*rnode)
			}
			c = &rnode{}
			n.kids[s] = c
		}
		n = c
	}
	if n.msg == nil {
		rs.count++
	}
	n.msg = m
}

// clear removes the retained message of path and prunes the branch it leaves empty. It reports whether
// there was one.
func (rs *retainStore) clear(ri int, path []string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var stackArr [32]*rnode
	nodes := append(stackArr[:0], rs.roots[ri])
	n := rs.roots[ri]
	for _, s := range path {
		if n = n.kids[s]; n == nil {
			return false
		}
		nodes = append(nodes, n)
	}
	if n.msg == nil {
		return false
	}
	n.msg = nil
	rs.count--
	for i := len(path) - 1; i >= 0; i-- {
		c := nodes[i+1]
		if c.msg != nil || len(c.kids) > 0 {
			break
		}
		delete(nodes[i].kids, path[i])
	}
	return true
}

// match returns every unexpired retained message whose topic f matches, oldest first (by message ID).
// The same rules as subscription matching apply, including [MQTT-4.7.2-1]: wildcards at the first level
// skip topics starting with '$'.
func (rs *retainStore) match(ri int, f *Filter, now int64) []*Message {
	var out []*Message
	keep := func(m *Message) {
		if m != nil && (m.Expires == 0 || m.Expires > now) {
			out = append(out, m)
		}
	}
	type frame struct {
		n *rnode
		i int // index of the next filter segment; also the level of n
	}
	rs.mu.RLock()
	stack := []frame{{rs.roots[ri], 0}}
	var sub []*rnode // scratch stack for '#' subtrees
	for len(stack) > 0 {
		fr := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n, i := fr.n, fr.i
		if i == len(f.Segs) {
			keep(n.msg)
			continue
		}
		seg := &f.Segs[i]
		switch seg.Kind {
		case SegLiteral:
			if c := n.kids[seg.Text]; c != nil {
				stack = append(stack, frame{c, i + 1})
			}
		case SegOne, SegRegex:
			for k, c := range n.kids {
				if i == 0 && len(k) > 0 && k[0] == '$' {
					continue
				}
				if seg.Kind == SegOne || seg.Re.MatchString(k) {
					stack = append(stack, frame{c, i + 1})
				}
			}
		case SegMany:
			if i > 0 {
				keep(n.msg) // "a/#" matches "a"
			}
			sub = sub[:0]
			for k, c := range n.kids {
				if i == 0 && len(k) > 0 && k[0] == '$' {
					continue
				}
				sub = append(sub, c)
			}
			for len(sub) > 0 {
				c := sub[len(sub)-1]
				sub = sub[:len(sub)-1]
				keep(c.msg)
				for _, g := range c.kids {
					sub = append(sub, g)
				}
			}
		}
	}
	rs.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Message) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

func (rs *retainStore) len() int {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	return rs.count
}

func nowMillis() int64 { return time.Now().UnixMilli() }
