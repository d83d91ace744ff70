package router

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Durable subscriptions. A durable subscription is a topic filter whose matches the router keeps in a
// queue of kind DurableSub named by the subscription (its destination), whether or not anyone consumes
// it: journalled, swapped to the journal in windows, bounded by the queue's quota and full policy, like
// any queue backlog. STOMP durable subscriptions (/dsub/<id>, persistent:true with an id) and the
// subscriptions of an MQTT session that outlives its connection are the same thing here, as in Apollo;
// a front-end consumes the queue with Consume, with the usual credit and acknowledgements.
//
// A durable subscription is owned by the principal that created it (DurableOptions.Owner, chosen by the
// front-end: the user name). Only its owner may consume it, change it or destroy it; "" is owned by
// nobody in particular and open to everyone.

var (
	// ErrNotOwner refuses a principal that does not own a durable subscription.
	ErrNotOwner = errors.New("router: the durable subscription belongs to another principal")
	// ErrNoDurable is returned for a durable subscription that does not exist.
	ErrNoDurable = errors.New("router: no such durable subscription")
	// ErrTooManyDurables refuses a durable subscription beyond Options.MaxDurables.
	ErrTooManyDurables = errors.New("router: too many durable subscriptions")
)

// DefaultMaxDurables is Options.MaxDurables when it is 0.
const DefaultMaxDurables = 100000

// DurableOptions describe a durable subscription.
type DurableOptions struct {
	// Filter is the topic filter (kind Topic) whose matching messages the subscription keeps.
	Filter Filter
	// Owner is the principal that owns it; "" lets anyone consume, change or destroy it.
	Owner string
	// QoS is the highest QoS granted: a message is kept and delivered at min(its QoS, QoS).
	QoS uint8
	// DropQoS0Offline drops the messages it would deliver at QoS 0 while no consumer is attached (MQTT: a
	// session keeps no QoS 0 message while its client is away, as mosquitto by default); otherwise they
	// are kept like the others (STOMP).
	DropQoS0Offline bool
	// Match, when set, keeps only the messages it accepts (an access gate for a wildcard the owner may
	// read only in part). It is not journalled: the front-end sets it again after a restart, before any
	// client connects. It runs on publishers' goroutines and must not call the router.
	Match func(*Message) bool
}

// DurableInfo describes one durable subscription.
type DurableInfo struct {
	Dest Destination // kind DurableSub: the queue holding its messages
	DurableOptions
}

// durable is one durable subscription. Its Subscription sits in the topic trie; Publish hands matches
// to offer rather than to a Sink.
type durable struct {
	dest Destination
	key  string
	sub  *Subscription
	opts atomic.Pointer[DurableOptions] // replaced, never modified: offer reads it without a lock
	// slow is set when a publisher waited for room in vain: publishers are not held back for it again
	// until its queue is down to half its quota.
	slow atomic.Bool
	// mirror marks a subscription another node made (ApplyDurable): it keeps copies of the messages
	// published here, and is not journalled. Guarded by durables.mu.
	mirror bool
}

// fullDurable is a full durable subscription as a publisher's front-end waits for it.
type fullDurable struct {
	ds   *durable
	room <-chan struct{}
}

func (f fullDurable) Room() <-chan struct{} { return f.room }
func (f fullDurable) Stuck()                { f.ds.slow.Store(true) }

// durables is the router's registry of durable subscriptions.
type durables struct {
	mu sync.Mutex // outermost: held across the trie change and the journal call of one change
	m  map[string]*durable
	// watch is WatchDurables's fn, nil without one. Guarded by mu.
	watch func(d Destination, o *DurableOptions)
}

// owns reports whether principal may act on a durable subscription owned by owner.
func owns(owner, principal string) bool { return owner == "" || owner == principal }

func equalFilter(a, b Filter) bool {
	return a.Kind == b.Kind && slices.EqualFunc(a.Segs, b.Segs, func(x, y Seg) bool { return x.Kind == y.Kind && x.Text == y.Text })
}

// CreateDurable creates durable subscription d (kind DurableSub) with o. When d exists and o.Owner owns
// it, the same filter keeps it, its owner and its messages, with o's QoS and options (existed is true); another
// filter replaces it, discarding what it held (STOMP: a persistent SUBSCRIBE reusing an id with another
// destination). Another owner's is refused with ErrNotOwner. The journal records the change; tr, when
// set, learns when it is durable.
func (r *Router) CreateDurable(d Destination, o DurableOptions, tr Tracker) (existed bool, err error) {
	return r.createDurable(d, o, tr, r.opts.Journal, true)
}

// createDurable is CreateDurable journalling to j (nil: not at all). client marks a client's change (not a
// restore, nor another node's): MaxDurables applies, and the watcher hears of it.
func (r *Router) createDurable(d Destination, o DurableOptions, tr Tracker, j Journal, client bool) (existed bool, err error) {
	if r.closed.Load() {
		return false, ErrClosed
	}
	if err := prepareDurable(d, &o); err != nil {
		return false, err
	}
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	return r.createDurableLocked(d, o, tr, j, client)
}

// prepareDurable checks d and o's filter and compiles a copy of the filter into o.
func prepareDurable(d Destination, o *DurableOptions) error {
	if d.Kind != DurableSub || len(d.Path) == 0 {
		return fmt.Errorf("%w: a durable subscription is named by a %s destination", ErrInvalidName, DurableSub)
	}
	if o.Filter.Kind != Topic {
		return fmt.Errorf("%w: a durable subscription subscribes to topics, not a %s", ErrInvalidFilter, o.Filter.Kind)
	}
	o.Filter.Segs = slices.Clone(o.Filter.Segs)
	return checkFilter(&o.Filter)
}

// createDurableLocked is createDurable once o is prepared, with r.dur.mu held.
func (r *Router) createDurableLocked(d Destination, o DurableOptions, tr Tracker, j Journal, client bool) (existed bool, err error) {
	key := Key(d)
	old := r.dur.m[key]
	if old != nil {
		cur := old.opts.Load()
		if !owns(cur.Owner, o.Owner) {
			return true, ErrNotOwner
		}
		if equalFilter(cur.Filter, o.Filter) {
			o.Filter = cur.Filter // the compiled one the trie holds
			o.Owner = cur.Owner   // fixed at creation
			old.opts.Store(&o)
			if o.QoS != cur.QoS || o.DropQoS0Offline != cur.DropQoS0Offline || old.mirror && client {
				journalDurable(j, d, &o, tr)
			}
			if client {
				old.mirror = false // a client here has it now
				r.watchDurable(d, &o)
			}
			return true, nil
		}
		r.destroyLocked(old, nil, j)
	}
	if client && len(r.dur.m) >= r.pol.Load().maxDurables {
		return false, ErrTooManyDurables
	}
	nd := &durable{dest: Destination{Kind: DurableSub, Path: slices.Clone(d.Path)}, key: key}
	nd.opts.Store(&o)
	nd.sub = &Subscription{Filter: o.Filter, QoS: o.QoS, ID: key, dur: nd}
	r.topics.insert(0, nd.sub)
	if r.dur.m == nil {
		r.dur.m = make(map[string]*durable)
	}
	r.dur.m[key] = nd
	journalDurable(j, d, &o, tr)
	if client {
		r.watchDurable(d, &o)
	}
	return old != nil, nil
}

// DestroyDurable removes durable subscription d with every message it holds, waiting or in flight (its
// consumers are closed), when owner owns it. It returns the number of messages discarded.
func (r *Router) DestroyDurable(d Destination, owner string, tr Tracker) (int, error) {
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	old := r.dur.m[Key(d)]
	if old == nil {
		return 0, ErrNoDurable
	}
	if !owns(old.opts.Load().Owner, owner) {
		return 0, ErrNotOwner
	}
	n := r.destroyLocked(old, tr, r.opts.Journal)
	r.watchDurable(d, nil)
	return n, nil
}

// DropDurable removes durable subscription d from this router only, when owner owns it: the messages a
// QueueBackend keeps for it stay there (what the backend fed here is handed back), for another node that
// takes the subscription over (an MQTT session moving across a cluster). Messages of its own it held are
// discarded as DestroyDurable discards them; it returns their number.
func (r *Router) DropDurable(d Destination, owner string, tr Tracker) (int, error) {
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	old := r.dur.m[Key(d)]
	if old == nil {
		return 0, ErrNoDurable
	}
	if !owns(old.opts.Load().Owner, owner) {
		return 0, ErrNotOwner
	}
	return r.removeLocked(old, tr, r.opts.Journal, true), nil
}

// Claimed reports whether the router's QueueBackend keeps the messages of queue d.
func (r *Router) Claimed(d Destination) bool { return claimable(d.Kind) && r.claimer(d) != nil }

// destroyLocked unsubscribes ds, purges its queue (journalling each message's release, so the journal
// is left with an empty list to delete) and journals the removal to j. r.dur.mu is held.
func (r *Router) destroyLocked(ds *durable, tr Tracker, j Journal) int {
	return r.removeLocked(ds, tr, j, false)
}

// removeLocked is destroyLocked; keep leaves the backend's messages for ds where they are.
func (r *Router) removeLocked(ds *durable, tr Tracker, j Journal, keep bool) int {
	r.topics.remove(0, ds.sub)
	delete(r.dur.m, ds.key)
	n := 0
	if q := r.lockedQueue(ds.dest, false); q != nil {
		if keep {
			q.handBackLocked()
		}
		n = q.purgeLocked()
		idle := q.idleLocked()
		q.mu.Unlock()
		if idle {
			r.dropIdleQueue(q, 0)
		}
	}
	if b := r.claimer(ds.dest); b != nil && !keep {
		b.Discard(ds.dest)
	}
	r.discarded.Add(uint64(n))
	journalDurable(j, ds.dest, nil, tr)
	return n
}

// Durable returns the options of durable subscription d.
func (r *Router) Durable(d Destination) (DurableOptions, bool) {
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	if ds := r.dur.m[Key(d)]; ds != nil {
		return *ds.opts.Load(), true
	}
	return DurableOptions{}, false
}

// Durables returns the durable subscriptions whose path starts with prefix (all with an empty prefix),
// in no particular order.
func (r *Router) Durables(prefix []string) []DurableInfo {
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	var out []DurableInfo
	for _, ds := range r.dur.m {
		if len(ds.dest.Path) >= len(prefix) && slices.Equal(ds.dest.Path[:len(prefix)], prefix) {
			out = append(out, DurableInfo{Dest: ds.dest, DurableOptions: *ds.opts.Load()})
		}
	}
	return out
}

// RestoreDurable recreates a durable subscription recovered from the journal, without journalling it.
// Call it before any client connects, then RestoreBacklog for its messages. MaxDurables does not apply:
// a limit lowered since they were made must not lose what they hold.
func (r *Router) RestoreDurable(d Destination, o DurableOptions) error {
	_, err := r.createDurable(d, o, nil, nil, false)
	return err
}

// offer keeps m for durable subscription ds: Publish's fan-out calls it on the publisher's goroutine,
// holding no lock. It returns how many messages the subscription's full policy dropped (this one, or the
// oldest ones for FullDropHead) and, when it refused m under FullBlock while a consumer drains it, the
// backpressure the publisher's front-end waits on before it reads on (PublishResult.Pressure). A message
// delivered at QoS 0 to a subscription without a consumer that drops those is left out by design, not
// counted. refused is true when Match keeps m out: m is not for this subscription (an access gate), so
// Publish counts it neither delivered nor dropped, as it does for a Sink's Acceptor.
func (r *Router) offer(ds *durable, m *Message) (dropped int, bp Backpressure, refused bool) {
	o := ds.opts.Load()
	if o.Match != nil && !o.Match(m) {
		return 0, nil, true
	}
	if o.DropQoS0Offline && min(m.QoS, o.QoS) == 0 {
		q := r.lockedQueue(ds.dest, false)
		if q == nil {
			return 0, nil, false
		}
		online := len(q.consumers) > 0
		q.mu.Unlock()
		if !online {
			return 0, nil, false
		}
	}
	if b := r.claimer(ds.dest); b != nil {
		// The backend keeps the subscription's messages; a refusal loses this copy only, as a full
		// queue does (the topic's other subscribers have the message).
		if err := b.Publish(ds.dest, m); err != nil {
			r.dropFull.Add(1)
			if r.opts.Dropped != nil {
				r.opts.Dropped(ds.dest, 1)
			}
			return 1, nil, false
		}
		return 0, nil, false
	}
	q := r.lockedQueue(ds.dest, true)
	pr := q.enqueueLocked(m)
	dropped = pr.Dropped
	switch {
	case pr.Err != nil:
		// FullBlock: the topic's other subscribers have the message; this one cannot take it.
		r.dropFull.Add(1)
		dropped = 1
		if len(q.consumers) > 0 && !ds.slow.Load() {
			if q.room == nil {
				q.room = make(chan struct{})
			}
			bp = fullDurable{ds, q.room}
		}
	case ds.slow.Load() && q.held <= q.maxMsgs/2:
		ds.slow.Store(false) // caught up
	}
	idle := q.idleLocked()
	q.mu.Unlock()
	if idle {
		r.queueIdle(q)
	}
	if dropped > 0 && r.opts.Dropped != nil {
		r.opts.Dropped(ds.dest, dropped)
	}
	return dropped, bp, false
}

// checkDurableConsumer enforces ownership for a consumer of a DurableSub queue: the subscription must
// exist and belong to owner.
func (r *Router) checkDurableConsumer(d Destination, owner string) error {
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	ds := r.dur.m[Key(d)]
	if ds == nil {
		return ErrNoDurable
	}
	if !owns(ds.opts.Load().Owner, owner) {
		return ErrNotOwner
	}
	return nil
}

func journalDurable(j Journal, d Destination, o *DurableOptions, tr Tracker) {
	if j != nil {
		j.Durable(d, o, tr)
	}
}
