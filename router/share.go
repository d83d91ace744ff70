package router

import (
	"hash/maphash"
	"math/rand/v2"
	"sync/atomic"
)

// ShareStrategy picks the member of a shared-subscription group that receives a message (see the package
// doc). Whatever the pick, a member that may not receive the message (Acceptor) or whose sink is full is
// passed over for the next one in turn.
type ShareStrategy uint8

// Shared-subscription strategies.
const (
	// ShareRoundRobin gives each message to the next member in turn (the default).
	ShareRoundRobin ShareStrategy = iota
	// ShareRandom picks a member uniformly at random.
	ShareRandom
	// ShareSticky gives every message to one member until it leaves the group or is full, then sticks to
	// the member that took the message instead.
	ShareSticky
	// ShareHashClientID picks by the publisher's Message.SenderID, so one publisher's messages go to one
	// member while membership is unchanged. Messages with no SenderID go round-robin.
	ShareHashClientID
	// ShareHashTopic picks by the topic, so one topic's messages go to one member while membership is
	// unchanged.
	ShareHashTopic
)

// String returns the configuration name of the strategy.
func (s ShareStrategy) String() string {
	switch s {
	case ShareRoundRobin:
		return "round_robin"
	case ShareRandom:
		return "random"
	case ShareSticky:
		return "sticky"
	case ShareHashClientID:
		return "hash_clientid"
	case ShareHashTopic:
		return "hash_topic"
	}
	return "unknown"
}

// ShareGroup is an immutable snapshot of one shared-subscription group: the subscriptions with the same
// Share name and the same filter. Membership changes build a new ShareGroup that keeps the same state
// (the round-robin position, the sticky member).
type ShareGroup struct {
	Name    string
	Members []*Subscription
	st      *shareState
}

// shareState is what a group remembers across its snapshots.
type shareState struct {
	next   atomic.Uint64                // round-robin position
	sticky atomic.Pointer[Subscription] // ShareSticky's member; nil until the first pick or after it left
	// hint is sticky's index in a recent snapshot, so finding it is usually one comparison. It may be
	// stale (it is stored after sticky, without a lock); a stale hint costs a scan of Members.
	hint atomic.Int64
}

// groupOutcome is what offering a message to a shared group came to.
type groupOutcome uint8

const (
	groupTook    groupOutcome = iota // a member took it
	groupFull                        // every member that may receive it was full: a drop
	groupRefused                     // no member may receive it (Acceptor): neither delivered nor dropped
)

// deliver hands d to one member picked by st, trying the others in turn when that one may not receive
// the message or is full. seed keys the hash strategies.
func (g *ShareGroup) deliver(d Delivery, st ShareStrategy, seed maphash.Seed) groupOutcome {
	n := len(g.Members)
	if n == 0 {
		return groupRefused
	}
	if st == ShareSticky {
		// Even with one member: the member it sticks to must still be the one when another joins.
		return g.deliverSticky(d)
	}
	start := 0
	if n > 1 {
		switch st {
		case ShareRandom:
			start = rand.IntN(n)
		case ShareHashClientID:
			if d.Msg.SenderID == "" {
				start = g.turn()
				break
			}
			start = g.rank(maphash.String(seed, d.Msg.SenderID))
		case ShareHashTopic:
			start = g.rank(pathHash(seed, d.Msg.Dest.Path))
		default:
			start = g.turn()
		}
	}
	o, _ := g.offer(d, start, n)
	return o
}

// offer tries count members from index start on, wrapping around, and returns the outcome and the index
// of the member that took the message.
func (g *ShareGroup) offer(d Delivery, start, count int) (groupOutcome, int) {
	o := groupRefused
	for i := start; count > 0; count-- {
		if i >= len(g.Members) {
			i = 0
		}
		s := g.Members[i]
		if s.accepts(d.Msg) {
			d.Sub = s
			if s.Sink.Deliver(d) {
				return groupTook, i
			}
			o = groupFull
		}
		i++
	}
	return o, -1
}

// turn returns the next round-robin index.
func (g *ShareGroup) turn() int {
	return int((g.st.next.Add(1) - 1) % uint64(len(g.Members)))
}

// deliverSticky offers d to the sticky member first. When it is full, or gone, the member that takes d
// becomes the sticky one. When it may not receive d (an access gate on part of the filter), another
// member takes d and the sticky one stays: the next message may well be for it.
func (g *ShareGroup) deliverSticky(d Delivery) groupOutcome {
	st := g.st
	cur := st.sticky.Load()
	at := g.indexOf(cur, st.hint.Load())
	if at < 0 {
		o, i := g.offer(d, g.turn(), len(g.Members))
		if o == groupTook {
			g.stick(cur, i)
		}
		return o
	}
	rest := at + 1 // the others, in turn after it
	if !cur.accepts(d.Msg) {
		o, _ := g.offer(d, rest, len(g.Members)-1)
		return o
	}
	d.Sub = cur
	if cur.Sink.Deliver(d) {
		return groupTook
	}
	o, i := g.offer(d, rest, len(g.Members)-1)
	if o != groupTook {
		return groupFull // the sticky member could take it but was full
	}
	g.stick(cur, i)
	return o
}

// stick makes member i sticky in place of was, unless another publisher moved it meanwhile.
func (g *ShareGroup) stick(was *Subscription, i int) {
	if g.st.sticky.CompareAndSwap(was, g.Members[i]) {
		g.st.hint.Store(int64(i))
	}
}

// indexOf returns the index of s in Members, looking at hint first, or -1.
func (g *ShareGroup) indexOf(s *Subscription, hint int64) int {
	if s == nil {
		return -1
	}
	if hint >= 0 && hint < int64(len(g.Members)) && g.Members[hint] == s {
		return int(hint)
	}
	for i, m := range g.Members {
		if m == s {
			return i
		}
	}
	return -1
}

// rank returns the index of the member with the highest weight for key h: rendezvous hashing, so a key's
// member changes only when that member leaves (its keys spread over the others) or a member that
// outranks it joins (about 1/n of the keys move to it), where h modulo n would move most keys.
func (g *ShareGroup) rank(h uint64) int {
	best, top := 0, mix64(h^g.Members[0].salt)
	for i := 1; i < len(g.Members); i++ {
		if w := mix64(h ^ g.Members[i].salt); w > top {
			best, top = i, w
		}
	}
	return best
}

// pathHash hashes a topic path. Each level is hashed separately and chained, so level boundaries count:
// ["ab"] and ["a" "b"] differ.
func pathHash(seed maphash.Seed, path []string) uint64 {
	h := uint64(len(path))
	for _, s := range path {
		h = mix64(h ^ maphash.String(seed, s))
	}
	return h
}

// mix64 is a 64-bit finalizer (the SplitMix64 one): every input bit affects every output bit, so
// nearby inputs give unrelated weights.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// joinGroup returns groups with s added to its group; the changed group is replaced, not modified.
func joinGroup(groups []*ShareGroup, s *Subscription) []*ShareGroup {
	for i, g := range groups {
		if g.Name == s.Share {
			members := make([]*Subscription, len(g.Members), len(g.Members)+1)
			copy(members, g.Members)
			groups[i] = &ShareGroup{Name: g.Name, Members: append(members, s), st: g.st}
			return groups
		}
	}
	return append(groups, &ShareGroup{Name: s.Share, Members: []*Subscription{s}, st: new(shareState)})
}

// leaveGroup returns groups without s; ok is false if s was not found.
func leaveGroup(groups []*ShareGroup, s *Subscription) ([]*ShareGroup, bool) {
	for i, g := range groups {
		if g.Name != s.Share {
			continue
		}
		for j, m := range g.Members {
			if m != s {
				continue
			}
			// Not sticky any more, and not kept alive by the group's state.
			g.st.sticky.CompareAndSwap(s, nil)
			if len(g.Members) == 1 {
				return append(groups[:i:i], groups[i+1:]...), true
			}
			members := make([]*Subscription, 0, len(g.Members)-1)
			members = append(append(members, g.Members[:j]...), g.Members[j+1:]...)
			out := append([]*ShareGroup(nil), groups...)
			out[i] = &ShareGroup{Name: g.Name, Members: members, st: g.st}
			return out, true
		}
	}
	return groups, false
}
