package router

import (
	"cmp"
	"slices"
	"strings"
)

// Introspection for monitoring and the management API: snapshots, taken under the locks that guard
// each part and copied out, sorted so that a caller paging through them sees a stable order. Paths are
// canonical segments; rendering them is the caller's job.

// QueueInfo describes one queue as Queues sees it.
type QueueInfo struct {
	// Dest names the queue: kind Queue (dead-letter queues are queues), TempQueue or DurableSub (the
	// queue of a durable subscription).
	Dest Destination
	// Depth counts the messages waiting for a consumer (not delivered, or delivered and given back), in
	// memory or swapped out.
	Depth int
	// Swapped counts the waiting messages held in the journal only (see the package doc, Swapping).
	Swapped int
	// Unacked counts the messages delivered to consumers and not yet acknowledged.
	Unacked int
	// Bytes is the size (bodies and headers) of what the queue holds, waiting and unacknowledged: what
	// its byte quota bounds. The messages of a backlog restored at startup count once loaded.
	Bytes int64
	// Consumers counts the attached competing consumers; Browsers the browsing ones.
	Consumers, Browsers int
	// MaxMessages and MaxBytes are the queue's quota (its policy's, else the Options defaults).
	MaxMessages int
	MaxBytes    int64
	// Journalled is set when the queue's persistent messages survive a restart (kind Queue or
	// DurableSub on a router with a Journal).
	Journalled bool
	// Enqueued counts the messages that arrived since the router made the queue (published, moved in);
	// Dequeued those that left it for good (acknowledged, dropped, expired, dead-lettered, purged, moved
	// out). The router forgets an idle queue (see the package doc), and a new one counts from zero.
	// Messages restored at startup are in neither.
	Enqueued, Dequeued uint64
}

// Queues returns every queue the router holds, and every durable subscription's queue even while the
// router keeps none for it (empty, nobody consuming), sorted by kind and then path, segment by segment.
// It locks each queue in turn, so the entries are consistent one by one but not taken at one instant.
func (r *Router) Queues() []QueueInfo {
	r.qmu.RLock()
	qs := make([]*queue, 0, len(r.queues))
	for _, q := range r.queues {
		qs = append(qs, q)
	}
	r.qmu.RUnlock()
	out := make([]QueueInfo, 0, len(qs))
	have := make(map[string]bool, len(qs))
	for _, q := range qs {
		q.mu.Lock()
		if !q.dead {
			out = append(out, q.infoLocked())
			have[q.key] = true
		}
		q.mu.Unlock()
	}
	r.dur.mu.Lock()
	for key, ds := range r.dur.m {
		if !have[key] {
			msgs, bytes := r.quota(ds.dest)
			out = append(out, QueueInfo{Dest: cloneDest(ds.dest), MaxMessages: msgs, MaxBytes: bytes,
				Journalled: r.journals(ds.dest.Kind)})
		}
	}
	r.dur.mu.Unlock()
	slices.SortFunc(out, func(a, b QueueInfo) int { return compareDest(a.Dest, b.Dest) })
	return out
}

// QueueInfo returns what Queues reports about the queue d names; ok is false when the router holds no
// such queue (a durable subscription's is always known while the subscription exists).
func (r *Router) QueueInfo(d Destination) (info QueueInfo, ok bool) {
	if q := r.lockedQueue(d, false); q != nil {
		info = q.infoLocked()
		q.mu.Unlock()
		return info, true
	}
	if d.Kind != DurableSub {
		return QueueInfo{}, false
	}
	r.dur.mu.Lock()
	ds := r.dur.m[Key(d)]
	r.dur.mu.Unlock()
	if ds == nil {
		return QueueInfo{}, false
	}
	msgs, bytes := r.quota(ds.dest)
	return QueueInfo{Dest: cloneDest(ds.dest), MaxMessages: msgs, MaxBytes: bytes, Journalled: r.journals(d.Kind)}, true
}

func (q *queue) infoLocked() QueueInfo {
	unacked := 0
	for _, c := range q.consumers {
		unacked += len(c.unacked)
	}
	return QueueInfo{
		Dest:        cloneDest(q.dest),
		Depth:       q.waiting + q.swapped + len(q.parked),
		Swapped:     q.swapped,
		Unacked:     unacked,
		Bytes:       q.heldBytes,
		Consumers:   len(q.consumers),
		Browsers:    len(q.browsers),
		MaxMessages: q.maxMsgs,
		MaxBytes:    q.maxBytes,
		Journalled:  q.r.journals(q.dest.Kind),
		Enqueued:    q.enqueued,
		Dequeued:    q.dequeued,
	}
}

// journals reports whether queues of kind k journal their persistent messages.
func (r *Router) journals(k Kind) bool {
	return r.opts.Journal != nil && (k == Queue || k == DurableSub)
}

// quota returns the message and byte bounds of the queue d names (its policy's, else the defaults).
func (r *Router) quota(d Destination) (int, int64) { return r.pol.Load().quota(d) }

// TopicInfo describes one entry of Topics: a subscription filter in use, or a topic holding a retained
// message, or both (a literal filter naming a topic with a retained message).
type TopicInfo struct {
	// Filter is the subscription filter (kind Topic or TempTopic), or the topic's path as literal
	// segments. Regex segments share their compiled Re with the router; do not modify them.
	Filter Filter
	// Subscriptions counts the subscriptions with this filter: plain ones, durable subscriptions and the
	// members of shared groups.
	Subscriptions int
	// Durable counts the durable subscriptions among them (each keeps its matches in its queue, listed by
	// Queues under its DurableSub destination).
	Durable int
	// Shared counts the members of shared groups among them, and Groups the groups: each group receives
	// a message once.
	Shared, Groups int
	// Retained is set when the topic (a literal filter) holds an unexpired retained message.
	Retained bool
}

// Topics returns the subscription filters in use with their subscription counts, and the topics that
// hold a retained message, sorted by kind, then segment by segment (literal levels before wildcards,
// each by byte order). It walks the subscription trie under its read lock, then the retained messages
// under theirs; a subscriber is held up for as long as the walk takes (linear in the filters).
func (r *Router) Topics() []TopicInfo {
	var out []TopicInfo
	byKey := make(map[string]int) // literal filter key -> index in out
	var kb []byte
	t := r.topics
	t.mu.RLock()
	for ri, root := range t.roots {
		walkTrie(root, nil, func(segs []Seg, n *node) {
			ti := TopicInfo{Filter: Filter{Kind: kindOfRoot[ri], Segs: slices.Clone(segs)}, Groups: len(n.groups)}
			for _, s := range n.subs {
				if s.dur != nil {
					ti.Durable++
				}
			}
			for _, g := range n.groups {
				ti.Shared += len(g.Members)
			}
			ti.Subscriptions = len(n.subs) + ti.Shared
			if ti.Filter.IsLiteral() {
				kb = appendLiteralKey(kb[:0], &ti.Filter)
				byKey[string(kb)] = len(out)
			}
			out = append(out, ti)
		})
	}
	t.mu.RUnlock()
	now := nowMillis()
	rs := r.retained
	rs.mu.RLock()
	for ri, root := range rs.roots {
		walkRetained(root, nil, func(path []string, m *Message) {
			if m.Expires != 0 && m.Expires <= now {
				return
			}
			kb = appendKey(kb[:0], kindOfRoot[ri], path)
			if i, ok := byKey[string(kb)]; ok {
				out[i].Retained = true
				return
			}
			segs := make([]Seg, len(path))
			for i, p := range path {
				segs[i] = Seg{Kind: SegLiteral, Text: p}
			}
			out = append(out, TopicInfo{Filter: Filter{Kind: kindOfRoot[ri], Segs: segs}, Retained: true})
		})
	}
	rs.mu.RUnlock()
	slices.SortFunc(out, func(a, b TopicInfo) int { return compareFilter(a.Filter, b.Filter) })
	return out
}

// walkTrie calls fn for n and every node below it holding subscriptions, with the segments leading to
// it. segs is reused: fn copies what it keeps. The trie's lock is held.
func walkTrie(n *node, segs []Seg, fn func([]Seg, *node)) {
	if len(n.subs) > 0 || len(n.groups) > 0 {
		fn(segs, n)
	}
	for text, c := range n.lits {
		walkTrie(c, append(segs, Seg{Kind: SegLiteral, Text: text}), fn)
	}
	if n.one != nil {
		walkTrie(n.one, append(segs, Seg{Kind: SegOne}), fn)
	}
	for _, e := range n.res {
		walkTrie(e.next, append(segs, Seg{Kind: SegRegex, Text: e.src, Re: e.re}), fn)
	}
	if n.many != nil {
		walkTrie(n.many, append(segs, Seg{Kind: SegMany}), fn)
	}
}

// walkRetained calls fn for every retained message at or below n with its path (reused: fn copies what
// it keeps). The retained store's lock is held.
func walkRetained(n *rnode, path []string, fn func([]string, *Message)) {
	if n.msg != nil {
		fn(path, n.msg)
	}
	for s, c := range n.kids {
		walkRetained(c, append(path, s), fn)
	}
}

func cloneDest(d Destination) Destination {
	return Destination{Kind: d.Kind, Path: slices.Clone(d.Path)}
}

// compareDest orders destinations by kind, then path segment by segment (a prefix first).
func compareDest(a, b Destination) int {
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return slices.Compare(a.Path, b.Path)
}

// compareFilter orders filters by kind, then segment by segment: by segment kind (literal first), then
// text; a prefix first.
func compareFilter(a, b Filter) int {
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return slices.CompareFunc(a.Segs, b.Segs, func(x, y Seg) int {
		if c := cmp.Compare(x.Kind, y.Kind); c != 0 {
			return c
		}
		return strings.Compare(x.Text, y.Text)
	})
}
