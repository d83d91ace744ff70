package router

import (
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// Options configure a Router. The zero value gives the defaults.
type Options struct {
	// CacheSize bounds the match cache in topics. 0 means 4096; a negative value disables the cache.
	CacheSize int
	// MaxQueueMessages bounds the messages one queue holds, waiting plus unacknowledged. 0 means 100000.
	// When full, Publish returns ErrQueueFull and does not store the message (drop-tail).
	MaxQueueMessages int
	// MaxQueueBytes bounds the bytes (bodies and headers) one queue holds, waiting plus unacknowledged.
	// 0 means 64 MiB. Same full policy as MaxQueueMessages.
	MaxQueueBytes int64
	// MaxQueues bounds the queues in use (a queue with no message and no consumer is not counted: it is
	// forgotten). Publishing to or consuming from one more is refused with ErrTooManyQueues. 0 = no limit.
	MaxQueues int
	// QueuePolicies configure queues by destination pattern; the first match applies (see QueuePolicy).
	// A policy whose filter does not validate is ignored. SetPolicies changes these, the quotas above,
	// MaxQueues, TopicPolicies and ShareStrategy on a running router.
	QueuePolicies []QueuePolicy
	// TopicPolicies configure topics by destination pattern; the first match applies (see TopicPolicy).
	TopicPolicies []TopicPolicy
	// Journal, when set, is told about changes that must survive a restart (see Journal). nil keeps
	// everything in memory only.
	Journal Journal
	// SwapMessages bounds the waiting messages a journalled queue (kind Queue or DurableSub, with a
	// Journal) holds in memory. Beyond it, arriving persistent messages stay in the journal only and are
	// loaded back in windows (Journal.Load) as consumers drain the queue; see the package doc. 0 means
	// DefaultSwapMessages; a negative value never swaps out (a restored backlog is still loaded in
	// windows, but all of it).
	SwapMessages int
	// SwapBytes bounds the bytes (bodies and headers) of those in-memory waiting messages likewise.
	// 0 means DefaultSwapBytes.
	SwapBytes int64
	// MaxDurables bounds the durable subscriptions; creating one more fails with ErrTooManyDurables.
	// 0 means DefaultMaxDurables.
	MaxDurables int
	// MaxSubscriptions bounds the topic subscriptions (Subscribe) and queue consumers (Consume, browsers
	// included) in use together, whoever made them: one more fails with ErrTooManySubscriptions. The
	// subscription a durable subscription keeps in the trie is not counted (MaxDurables bounds those);
	// a consumer of one is. 0 means DefaultMaxSubscriptions.
	MaxSubscriptions int
	// ShareStrategy picks the member of a shared-subscription group that gets each message. The zero
	// value is ShareRoundRobin.
	ShareStrategy ShareStrategy
	// Dropped, when set, is told of the messages a queue's or durable subscription's full policy dropped
	// (n bound for d; they are in Stats.Dropped too). It runs on the publisher's goroutine with no router
	// lock held and must not block: the virtual host logs them, a line per destination at most every
	// few seconds.
	Dropped func(d Destination, n int)
}

// Defaults applied by New to zero Options fields.
const (
	DefaultCacheSize        = 4096
	DefaultMaxQueueMessages = 100000
	DefaultMaxQueueBytes    = 64 << 20
	DefaultSwapMessages     = 10000
	DefaultSwapBytes        = 16 << 20
	DefaultMaxSubscriptions = 1000000
)

// Router routes messages inside one virtual host: topic fan-out through the subscription trie, retained
// messages, and queues with competing consumers. It is safe for concurrent use.
type Router struct {
	opts     Options
	topics   *trie
	retained *retainStore
	retainMu sync.Mutex // orders retained changes with their Journal and watcher calls
	// retainWatch is WatchRetained's fn, nil without one; stored under retainMu.
	retainWatch atomic.Pointer[func(*Message)]
	// shareExternal leaves Topic shared groups to DeliverShared (SetSharedDispatch).
	shareExternal atomic.Bool

	qmu    sync.RWMutex
	queues map[string]*queue
	// seqFloors holds, per journalled queue key, the sequence number a new incarnation of the queue
	// starts above: its delivered mark (Journal.Delivered) may be that high. Guarded by qmu.
	seqFloors map[string]uint64

	dur durables // durable subscriptions (durable.go)

	backend atomic.Pointer[backendBox] // keeps the queues it claims (backend.go); nil: none

	// pol holds what SetPolicies changes (policy.go): an immutable snapshot read once per publish, so a
	// reload never takes a lock on the publish path.
	pol atomic.Pointer[policies]

	seed maphash.Seed // keys the shared-subscription hash strategies

	// nsubs counts the subscriptions and consumers MaxSubscriptions bounds.
	nsubs atomic.Int64

	nextID    atomic.Uint64
	published atomic.Uint64
	delivered atomic.Uint64
	// Drops by reason (Stats.Dropped is their sum): a queue's full policy, a topic subscriber's full
	// sink, expiry, and poisoned messages with no DLQ to take them.
	dropFull    atomic.Uint64
	dropSink    atomic.Uint64
	dropExpired atomic.Uint64
	dropPoison  atomic.Uint64
	noRoute     atomic.Uint64
	full        atomic.Uint64
	deadLet     atomic.Uint64
	poisoned    atomic.Uint64
	loads       atomic.Uint64
	loadErrs    atomic.Uint64
	discarded   atomic.Uint64
	moved       atomic.Uint64
	closed      atomic.Bool
}

// New returns a Router with o's zero fields set to their defaults.
func New(o Options) *Router {
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MaxQueueMessages <= 0 {
		o.MaxQueueMessages = DefaultMaxQueueMessages
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = DefaultMaxQueueBytes
	}
	switch {
	case o.SwapMessages == 0:
		o.SwapMessages = DefaultSwapMessages
	case o.SwapMessages < 0:
		o.SwapMessages = math.MaxInt
	}
	if o.SwapBytes <= 0 {
		o.SwapBytes = DefaultSwapBytes
	}
	r := &Router{
		opts:     o,
		topics:   newTrie(o.CacheSize),
		retained: newRetainStore(),
		queues:   make(map[string]*queue),
		seed:     maphash.MakeSeed(),
	}
	r.pol.Store(compilePolicies(o.policies()))
	return r
}

// Subscribe adds a topic subscription (filter kind Topic or TempTopic). A subscription with Share set joins
// the group of subscriptions with the same Share and the same filter; each message goes to one member of
// the group. Subscribe the same pointer only once; Unsubscribe takes it back. Regex segments without a
// compiled Re are compiled here.
func (r *Router) Subscribe(s *Subscription) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if s == nil || s.Sink == nil {
		return fmt.Errorf("%w: subscription has no sink", ErrInvalidFilter)
	}
	ri, ok := rootIndex(s.Filter.Kind)
	if !ok {
		return fmt.Errorf("%w: cannot subscribe to a %s; use Consume", ErrInvalidFilter, s.Filter.Kind)
	}
	if err := checkFilter(&s.Filter); err != nil {
		return err
	}
	if !r.takeSubscription() {
		return ErrTooManySubscriptions
	}
	s.acc, _ = s.Sink.(Acceptor)
	if s.Share != "" {
		s.salt = rand.Uint64()
	}
	r.topics.insert(ri, s)
	return nil
}

// takeSubscription counts one more subscription or consumer, or reports false at MaxSubscriptions.
func (r *Router) takeSubscription() bool {
	if r.nsubs.Add(1) > int64(r.pol.Load().maxSubs) {
		r.nsubs.Add(-1)
		return false
	}
	return true
}

// Unsubscribe removes a subscription added by Subscribe; an unknown one is ignored.
func (r *Router) Unsubscribe(s *Subscription) {
	if s == nil {
		return
	}
	if ri, ok := rootIndex(s.Filter.Kind); ok && r.topics.remove(ri, s) {
		r.nsubs.Add(-1)
	}
}

// Match returns the subscriptions matching the Topic path, as an immutable snapshot.
func (r *Router) Match(path []string) *Result {
	return r.topics.match(0, path)
}

// MatchDest returns the subscriptions matching a Topic or TempTopic destination.
func (r *Router) MatchDest(d Destination) *Result {
	ri, ok := rootIndex(d.Kind)
	if !ok {
		return emptyResult
	}
	return r.topics.match(ri, d.Path)
}

// Retained returns the retained messages f matches (f's kind Topic or TempTopic), oldest first: a snapshot
// for a new subscription, with no cap. Wildcards follow the subscription rules, including [MQTT-4.7.2-1].
func (r *Router) Retained(f Filter) []*Message {
	ri, ok := rootIndex(f.Kind)
	if !ok || len(f.Segs) == 0 {
		return nil
	}
	for _, s := range f.Segs {
		if s.Kind == SegRegex && s.Re == nil {
			if checkFilter(&f) != nil {
				return nil
			}
			break
		}
	}
	return r.retained.match(ri, &f, nowMillis())
}

// PublishResult tells the publisher what happened to one message.
type PublishResult struct {
	// Delivered counts the sinks that accepted a delivery during this call (for a queue: deliveries made
	// by the dispatch this call ran, which may include earlier waiting messages).
	Delivered int
	// Dropped counts topic subscriptions (or share groups) whose sinks were all full; for a queue, the
	// messages its full policy dropped (the new one for FullDropTail, the evicted ones for FullDropHead).
	Dropped int
	// Err is ErrQueueFull when a queue had no room (the message was not stored), ErrClosed after Close,
	// or ErrInvalidName for a destination with no path.
	Err error
	// Pressure is set when a durable subscription with a consumer was full (FullBlock) and could not keep
	// the message. The publisher's front-end holds the publisher back (stops reading its socket) until
	// it has room, for a bounded time, so a subscriber that keeps up on average loses nothing to a burst
	// (see Backpressure).
	Pressure Backpressure
}

// Backpressure is a subscriber over its window, as a publisher's front-end sees it: it waits for Room
// (not reading the publisher's socket) for a bounded time, and calls Stuck when the subscriber made no
// room in that time; the subscriber then pays under its own policy (drops) rather than holding
// publishers back again until it has caught up. Sinks that take a message over their window offer the
// same to the publisher through Message.Publisher (the front-ends share one mechanism, protocol.Brake).
type Backpressure interface {
	// Room returns a channel closed once there is room, or nil when there is room now.
	Room() <-chan struct{}
	// Stuck tells the subscriber a publisher waited the whole bound in vain.
	Stuck()
}

// Publish routes m. It assigns m.ID when zero; after that m must not be modified.
//
// Topic and TempTopic: a message with Retain set replaces the topic's retained message, or clears it when
// the body is empty; then every matching subscription's Sink.Deliver is called on this goroutine (it must
// not block), and a false return counts as a drop. Publish never waits: holding back a publisher whose
// subscribers are over their windows is its front-end's doing, between the packets it reads
// (PublishResult.Pressure, Message.Publisher, Delivery.Paced).
//
// Queue, TempQueue and DurableSub: the message is appended to the named queue (created on first use) and
// dispatched to a consumer with credit. A full queue applies its policy's FullPolicy: FullBlock (the
// default) rejects it with ErrQueueFull and the caller decides what to tell the publisher (it may WaitRoom
// and retry); the drop policies drop a message and report it in Dropped.
func (r *Router) Publish(m *Message) PublishResult {
	if r.closed.Load() {
		return PublishResult{Err: ErrClosed}
	}
	if len(m.Dest.Path) == 0 {
		return PublishResult{Err: fmt.Errorf("%w: empty path", ErrInvalidName)}
	}
	if m.ID == 0 {
		m.ID = r.nextID.Add(1)
	}
	if !m.Internal {
		r.published.Add(1)
	}
	if queueKind(m.Dest.Kind) {
		if m.Dest.Kind == Queue {
			if b := r.claimer(m.Dest); b != nil {
				return r.publishBackend(b, m)
			}
		}
		q, err := r.lockedQueueLimit(m.Dest, true, true)
		if err != nil {
			r.full.Add(1)
			return PublishResult{Err: err}
		}
		pr := q.enqueueLocked(m)
		idle := q.idleLocked() // a drop policy may have stored nothing in a queue made for this call
		q.mu.Unlock()
		if idle {
			r.queueIdle(q)
		}
		if pr.Err != nil {
			r.full.Add(1)
		}
		if pr.Dropped > 0 && r.opts.Dropped != nil {
			r.opts.Dropped(m.Dest, pr.Dropped)
		}
		return pr
	}
	ri, ok := rootIndex(m.Dest.Kind)
	if !ok {
		return PublishResult{Err: fmt.Errorf("%w: unknown kind %d", ErrInvalidName, m.Dest.Kind)}
	}
	if m.Retain && !m.RetainKept {
		// Before matching: a subscriber that reads retained messages after subscribing then either sees
		// this one there or gets it live.
		r.retain(ri, m)
	}
	res := r.topics.match(ri, m.Dest.Path)
	if len(res.Subs) == 0 && len(res.Groups) == 0 {
		if !m.Internal {
			r.noRoute.Add(1)
		}
		return PublishResult{}
	}
	// Counted in locals, not in a PublishResult: the compiler keeps them in registers, where fields of a
	// struct this size live on the stack (a measurable share of a one-subscriber publish).
	var delivered, dropped, counted int // counted: drops the durable subscriptions counted themselves
	var pressure Backpressure
	pol := r.pol.Load()
	d := Delivery{Msg: m, Paced: len(pol.topics) == 0 || pol.slowBlocks(m.Dest)}
	for _, s := range res.Subs {
		if s.dur != nil {
			n, bp, refused := r.offer(s.dur, m)
			if refused {
				continue // not for this subscription (an access gate): neither delivered nor dropped
			}
			if n == 0 {
				delivered++
			}
			dropped += n
			counted += n
			if bp != nil && pressure == nil {
				pressure = bp
			}
			continue
		}
		if !s.accepts(m) {
			continue // not for this subscriber (an access gate): neither delivered nor dropped
		}
		d.Sub = s
		if s.Sink.Deliver(d) {
			delivered++
		} else {
			dropped++
		}
	}
	if len(res.Groups) > 0 && !r.sharedElsewhere(ri, m) {
		for _, g := range res.Groups {
			switch g.deliver(d, pol.share, r.seed) {
			case groupTook:
				delivered++
			case groupFull:
				dropped++
			}
		}
	}
	if delivered > 0 {
		r.delivered.Add(uint64(delivered))
	}
	if dropped > counted {
		r.dropSink.Add(uint64(dropped - counted))
	}
	return PublishResult{Delivered: delivered, Dropped: dropped, Pressure: pressure}
}

// Stats are the router's counters and sizes. Counters count from New; the exported snapshot reads each
// one atomically, not all of them at one instant.
type Stats struct {
	// Published counts Publish calls that routed a message (not those refused with ErrClosed or
	// ErrInvalidName, nor Internal ones: the broker's $SYS values); Delivered counts deliveries sinks took, topic and queue, redeliveries included.
	Published, Delivered uint64
	// Dropped counts messages lost to a bound or to expiry: the sum of the Dropped* reasons below. A
	// message a topic fans out is counted once per subscription (or shared group) that lost it.
	Dropped uint64
	// DroppedQueueFull counts messages a queue's or durable subscription's full policy dropped: the new
	// message under FullDropTail, the evicted ones under FullDropHead, and a durable subscription's copy
	// refused under FullBlock (the topic's other subscribers have it). A publish to a queue refused with
	// ErrQueueFull is not a drop: the publisher is told (QueueFull).
	DroppedQueueFull uint64
	// DroppedSubscriberFull counts topic deliveries a subscriber's sink refused at its hard bound, per
	// subscription, or per shared group when every member that may receive the message was full. Drops a
	// front-end decides on its own (a slow subscriber's QoS 0 backlog) are the front-end's to count.
	DroppedSubscriberFull uint64
	// DroppedExpired counts queue messages whose expiry passed while they waited: dropped when dispatch
	// reached them, or deleted from the journal by the store's expiry sweep while swapped out.
	DroppedExpired uint64
	// DroppedPoisoned counts messages that reached their policy's NakLimit and were dropped because the
	// queue has no dead-letter queue or it refused them (Poisoned minus DeadLettered).
	DroppedPoisoned uint64
	// NoRoute counts topic publishes that matched no subscription at all: published to nothing. It is
	// not a drop (no subscriber missed the message); a retained message is kept all the same. Internal
	// messages ($SYS) are not counted, as they are not in Published.
	NoRoute uint64
	// QueueFull counts publishes to a queue refused with ErrQueueFull (or ErrTooManyQueues).
	QueueFull uint64
	// Poisoned counts queue messages that reached their policy's NakLimit; DeadLettered counts those
	// moved to a dead-letter queue (the others were dropped and are in DroppedPoisoned).
	Poisoned, DeadLettered uint64
	// SwapLoads counts windows of swapped-out messages loaded back from the journal; SwapLoadErrors the
	// loads that failed (the messages stay in the journal and the load is retried on the next dispatch).
	SwapLoads, SwapLoadErrors uint64
	// Discarded counts messages discarded on purpose, not lost: with their queue (a destroyed durable
	// subscription, a temporary queue whose owner went away) or purged by an operator (PurgeQueue). Not
	// in Dropped.
	Discarded uint64
	// Moved counts messages moved from one queue to another by MoveMessages.
	Moved         uint64
	Subscriptions int // topic subscriptions, durable ones included
	Durables      int // durable subscriptions
	Retained      int // retained messages
	Queues        int // queues in use
	CachedTopics  int // entries in the match cache
}

// Stats returns a snapshot of the counters.
func (r *Router) Stats() Stats {
	s := Stats{
		Published:             r.published.Load(),
		Delivered:             r.delivered.Load(),
		DroppedQueueFull:      r.dropFull.Load(),
		DroppedSubscriberFull: r.dropSink.Load(),
		DroppedExpired:        r.dropExpired.Load(),
		DroppedPoisoned:       r.dropPoison.Load(),
		NoRoute:               r.noRoute.Load(),
		QueueFull:             r.full.Load(),
		Poisoned:              r.poisoned.Load(),
		DeadLettered:          r.deadLet.Load(),
		SwapLoads:             r.loads.Load(),
		SwapLoadErrors:        r.loadErrs.Load(),
		Discarded:             r.discarded.Load(),
		Moved:                 r.moved.Load(),
		Retained:              r.retained.len(),
	}
	s.Dropped = s.DroppedQueueFull + s.DroppedSubscriberFull + s.DroppedExpired + s.DroppedPoisoned
	r.topics.mu.RLock()
	s.Subscriptions = r.topics.count
	r.topics.mu.RUnlock()
	r.qmu.RLock()
	s.Queues = len(r.queues)
	r.qmu.RUnlock()
	r.dur.mu.Lock()
	s.Durables = len(r.dur.m)
	r.dur.mu.Unlock()
	if r.topics.cache != nil {
		s.CachedTopics = r.topics.cache.len()
	}
	return s
}

// Close makes later Publish, Subscribe and Consume calls fail with ErrClosed, and journals each queue's
// exact delivered mark (see Journal.Delivered). It starts no goroutines and
// so has none to stop; existing consumers may still Ack, Nack and Close.
func (r *Router) Close() {
	r.closed.Store(true)
	r.qmu.RLock()
	defer r.qmu.RUnlock()
	for _, q := range r.queues {
		q.mu.Lock()
		q.stopIdleTimerLocked()
		q.exactMarkLocked()
		q.mu.Unlock()
	}
}
