package router

import (
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
)

// Result is an immutable snapshot of the subscriptions matching one topic. Readers share it; the router
// never modifies a Result once it is returned, so deliveries run without any router lock.
type Result struct {
	// Subs are the plain (unshared) subscriptions; each gets every message.
	Subs []*Subscription
	// Groups are the shared-subscription groups; each message goes to one member of each group.
	Groups []*ShareGroup
}

// Empty reports whether r matches nothing.
func (r *Result) Empty() bool { return len(r.Subs) == 0 && len(r.Groups) == 0 }

// emptyResult is returned on no match so a miss allocates nothing.
var emptyResult = &Result{}

// node is one level of the trie. All fields except snap are guarded by trie.mu; snap is a lazily built
// Result of this node's own subscriptions, cleared by writers and rebuilt by the first reader.
type node struct {
	lits   map[string]*node
	one    *node
	many   *node
	res    []*reEdge
	subs   []*Subscription
	groups []*ShareGroup
	snap   atomic.Pointer[Result]
}

// reEdge is one regex segment; filters with the same regex source share the edge.
type reEdge struct {
	src  string
	re   *regexp.Regexp
	next *node
}

func (n *node) isEmpty() bool {
	return len(n.lits) == 0 && n.one == nil && n.many == nil && len(n.res) == 0 &&
		len(n.subs) == 0 && len(n.groups) == 0
}

// snapshot returns the node's subscriptions as a shared immutable Result. Called with trie.mu held for
// reading: concurrent readers may build it twice, which is harmless.
func (n *node) snapshot() *Result {
	if r := n.snap.Load(); r != nil {
		return r
	}
	r := emptyResult
	if len(n.subs) > 0 || len(n.groups) > 0 {
		r = &Result{}
		if len(n.subs) > 0 {
			r.Subs = append([]*Subscription(nil), n.subs...)
		}
		if len(n.groups) > 0 {
			r.Groups = append([]*ShareGroup(nil), n.groups...)
		}
	}
	n.snap.Store(r)
	return r
}

// trie indexes the subscriptions of the topic-like kinds (Topic, TempTopic: one root each).
type trie struct {
	mu    sync.RWMutex
	roots [2]*node
	count int
	// ver is bumped under mu on every change; a cache fill computed under an older ver is discarded.
	ver atomic.Uint64
	// gen is bumped on every non-literal change; cache entries of an older gen are stale.
	gen   atomic.Uint64
	cache *matchCache // nil when disabled
	// watch, when set, is told of every subscription added to or removed from the Topic root (WatchTopics).
	watch func(s *Subscription, added bool)
}

func newTrie(cacheSize int) *trie {
	t := &trie{roots: [2]*node{{}, {}}}
	if cacheSize > 0 {
		t.cache = newMatchCache(cacheSize)
	}
	return t
}

// kindOfRoot is the inverse of rootIndex.
var kindOfRoot = [2]Kind{Topic, TempTopic}

func rootIndex(k Kind) (int, bool) {
	switch k {
	case Topic:
		return 0, true
	case TempTopic:
		return 1, true
	}
	return 0, false
}

// checkFilter validates a filter built by hand or by a grammar, compiling regex segments that lack Re.
func checkFilter(f *Filter) error {
	if len(f.Segs) == 0 {
		return fmt.Errorf("%w: no segments", ErrInvalidFilter)
	}
	nre := 0
	for i := range f.Segs {
		s := &f.Segs[i]
		switch s.Kind {
		case SegLiteral, SegOne:
		case SegMany:
			if i != len(f.Segs)-1 {
				return fmt.Errorf("%w: many-level wildcard must be the last segment", ErrInvalidFilter)
			}
		case SegRegex:
			if nre++; nre > MaxRegexSegments {
				return fmt.Errorf("%w: more than %d regex segments", ErrInvalidFilter, MaxRegexSegments)
			}
			if s.Re == nil {
				re, err := compileSegment(s.Text)
				if err != nil {
					return fmt.Errorf("%w: %v", ErrInvalidFilter, err)
				}
				s.Re = re
			}
		default:
			return fmt.Errorf("%w: unknown segment kind %d", ErrInvalidFilter, s.Kind)
		}
	}
	return nil
}

// insert adds s under root ri. The filter has been checked.
func (t *trie) insert(ri int, s *Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.roots[ri]
	for _, seg := range s.Filter.Segs {
		switch seg.Kind {
		case SegLiteral:
			c := n.lits[seg.Text]
			if c == nil {
				if n.lits == nil {
					n.lits = make(map[string]*node)
				}
				c = &node{}
				n.lits[seg.Text] = c
			}
			n = c
		case SegOne:
			if n.one == nil {
				n.one = &node{}
			}
			n = n.one
		case SegMany:
			if n.many == nil {
				n.many = &node{}
			}
			n = n.many
		case SegRegex:
			var e *reEdge
			for _, x := range n.res {
				if x.src == seg.Text {
					e = x
					break
				}
			}
			if e == nil {
				// Dedupe: identical regex sources share one edge and one compiled program.
				e = &reEdge{src: seg.Text, re: seg.Re, next: &node{}}
				n.res = append(n.res, e)
			}
			n = e.next
		}
	}
	if s.Share == "" {
		n.subs = append(n.subs, s)
	} else {
		n.groups = joinGroup(n.groups, s)
	}
	n.snap.Store(nil)
	t.count++
	t.changedLocked(&s.Filter)
	if ri == 0 && t.watch != nil {
		t.watch(s, true)
	}
}

// remove deletes s from root ri and prunes the nodes it leaves empty. It reports whether s was found.
func (t *trie) remove(ri int, s *Subscription) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	type step struct {
		parent *node
		seg    *Seg
	}
	var stack [32]step
	steps := stack[:0]
	n := t.roots[ri]
	for i := range s.Filter.Segs {
		seg := &s.Filter.Segs[i]
		steps = append(steps, step{n, seg})
		var c *node
		switch seg.Kind {
		case SegLiteral:
			c = n.lits[seg.Text]
		case SegOne:
			c = n.one
		case SegMany:
			c = n.many
		case SegRegex:
			for _, e := range n.res {
				if e.src == seg.Text {
					c = e.next
					break
				}
			}
		}
		if c == nil {
			return false
		}
		n = c
	}
	found := false
	if s.Share == "" {
		for i, x := range n.subs {
			if x == s {
				// Keep order; n.subs is private to the trie (snapshots copy it).
				copy(n.subs[i:], n.subs[i+1:])
				n.subs[len(n.subs)-1] = nil
				n.subs = n.subs[:len(n.subs)-1]
				found = true
				break
			}
		}
	} else {
		n.groups, found = leaveGroup(n.groups, s)
	}
	if !found {
		return false
	}
	n.snap.Store(nil)
	t.count--
	// Prune empty nodes bottom-up so an unsubscribe-heavy workload does not leak nodes.
	for i := len(steps) - 1; i >= 0 && n.isEmpty(); i-- {
		p, seg := steps[i].parent, steps[i].seg
		switch seg.Kind {
		case SegLiteral:
			delete(p.lits, seg.Text)
		case SegOne:
			p.one = nil
		case SegMany:
			p.many = nil
		case SegRegex:
			for j, e := range p.res {
				if e.src == seg.Text {
					p.res = append(p.res[:j:j], p.res[j+1:]...)
					break
				}
			}
		}
		n = p
	}
	t.changedLocked(&s.Filter)
	if ri == 0 && t.watch != nil {
		t.watch(s, false)
	}
	return true
}

// changedLocked invalidates cached matches after a change to f. A literal filter affects exactly one topic,
// so only that key is evicted; any other filter bumps the generation, staling the whole cache at once.
func (t *trie) changedLocked(f *Filter) {
	t.ver.Add(1)
	if !f.IsLiteral() {
		t.gen.Add(1)
		return
	}
	if t.cache != nil {
		var kb [256]byte
		t.cache.evict(appendLiteralKey(kb[:0], f))
	}
}

// match returns the subscriptions matching path under root ri.
func (t *trie) match(ri int, path []string) *Result {
	if t.cache == nil {
		t.mu.RLock()
		r := t.matchLocked(ri, path)
		t.mu.RUnlock()
		return r
	}
	var kb [256]byte
	key := appendKey(kb[:0], kindOfRoot[ri], path)
	gen := t.gen.Load()
	if r := t.cache.get(key, gen); r != nil {
		return r
	}
	t.mu.RLock()
	ver, gen := t.ver.Load(), t.gen.Load()
	r := t.matchLocked(ri, path)
	t.mu.RUnlock()
	t.cache.put(key, r, gen, ver, &t.ver)
	return r
}

// matchLocked walks the trie with an explicit stack. Each node is reached at most once (the trie is a
// tree), so no subscription is reported twice.
func (t *trie) matchLocked(ri int, path []string) *Result {
	type frame struct {
		n *node
		i int // index of the next path segment to match
	}
	var stackArr [32]frame
	stack := stackArr[:0]
	var foundArr [8]*Result
	found := foundArr[:0]
	add := func(r *Result) {
		if !r.Empty() {
			found = append(found, r)
		}
	}
	// [MQTT-4.7.2-1] a topic starting with '$' is not matched by a wildcard at the first level.
	dollar := len(path) > 0 && len(path[0]) > 0 && path[0][0] == '$'
	stack = append(stack, frame{t.roots[ri], 0})
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n, i := f.n, f.i
		wild := !dollar || i > 0
		if n.many != nil && wild {
			add(n.many.snapshot()) // zero or more levels: "a/#" matches "a"
		}
		if i == len(path) {
			add(n.snapshot())
			continue
		}
		seg := path[i]
		if c := n.lits[seg]; c != nil {
			stack = append(stack, frame{c, i + 1})
		}
		if !wild {
			continue
		}
		if n.one != nil {
			stack = append(stack, frame{n.one, i + 1}) // '+' matches an empty level too
		}
		for _, e := range n.res {
			if e.re.MatchString(seg) {
				stack = append(stack, frame{e.next, i + 1})
			}
		}
	}
	switch len(found) {
	case 0:
		return emptyResult
	case 1:
		return found[0]
	}
	ns, ng := 0, 0
	for _, r := range found {
		ns += len(r.Subs)
		ng += len(r.Groups)
	}
	out := &Result{}
	if ns > 0 {
		out.Subs = make([]*Subscription, 0, ns)
	}
	if ng > 0 {
		out.Groups = make([]*ShareGroup, 0, ng)
	}
	for _, r := range found {
		out.Subs = append(out.Subs, r.Subs...)
		out.Groups = append(out.Groups, r.Groups...)
	}
	return out
}
