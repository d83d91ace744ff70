package router

import (
	"sync"
	"sync/atomic"
)

// QueueBackend keeps the messages of some queues outside this router, in a store shared with the routers
// of other nodes: router/cluster implements it over a replicated JetStream stream, so that a queue has one
// backlog in the whole cluster and each message goes to one consumer wherever it was sent. The router
// never imports the implementation (DESIGN.md §2).
//
// A queue the backend claims is a window onto its backlog. Publish hands every message for it to the
// backend instead of queueing it; the backend feeds messages back (Router.Feed) as the local consumers
// have credit for them (Want), and the router dispatches them to its consumers as it does any queue
// message: credit, round robin, acknowledgements, Nack and redelivery, the redelivered mark, the NakLimit
// and dead-letter queue. What the router does with a fed message ends with Settle: acknowledged (or
// expired, purged, dead-lettered) it is gone from the backend; handed back (no local consumer left) the
// backend offers it to the consumers of every node again.
type QueueBackend interface {
	// Claims reports whether the messages of queue d live in the backend. The router asks once per queue
	// incarnation (when it creates its queue) and once per publish; it must answer the same for the
	// same destination, quickly.
	Claims(d Destination) bool
	// Publish stores m in queue d: m.Dest for a queue, the subscription for a durable subscription's copy
	// of a topic message (whose Dest stays its topic). It must not block for long. The store is the
	// message's durable write: when m.Tracker is set, the backend calls Track before Publish returns and
	// the returned function with the outcome once the backend holds m (replicated), so a publisher
	// acknowledges m only then. An error refuses m at once (the backend cannot take messages now).
	Publish(d Destination, m *Message) error
	// Discard drops every message the backend holds for queue d: its durable subscription was destroyed
	// (or replaced by one with another filter). It must not block nor call the router.
	Discard(d Destination)
	// Want tells the backend how many more messages the local consumers of queue d can take now (their
	// free credit less what already waits here); 0 stops the feeding. The router calls it with the
	// queue's lock held whenever the number changes: it must not block nor call the router.
	Want(d Destination, n int)
	// Settle ends the life of a fed message here: ack true when it left the queue for good
	// (acknowledged, expired, purged, dead-lettered after its copy was stored), false when it is handed
	// back for any node's consumers (nobody here consumes the queue any more). ref is what Feed was
	// given. Called with the queue's lock held: it must not block nor call the router.
	Settle(ref any, ack bool)
}

// backendBox holds a QueueBackend behind an atomic pointer.
type backendBox struct{ b QueueBackend }

// SetQueueBackend makes b keep the queues it claims (see QueueBackend); nil turns it off for queues
// created afterwards (those that exist keep settling their fed messages with the old one). A queue that
// exists already (a backlog restored from the host's own store) is claimed too: its new messages go to
// b, and its consumers get both, its own journalled messages first. Set it before clients connect (a
// cluster link does, when it attaches the router).
func (r *Router) SetQueueBackend(b QueueBackend) {
	if b == nil {
		r.backend.Store(nil)
		return
	}
	r.qmu.Lock() // no queue is created meanwhile without being claimed
	defer r.qmu.Unlock()
	r.backend.Store(&backendBox{b})
	for _, q := range r.queues {
		if claimable(q.dest.Kind) && b.Claims(q.dest) {
			q.mu.Lock()
			q.backend = b
			q.mu.Unlock()
		}
	}
}

// Replicated reports whether a QueueBackend is set: then a publisher's acknowledgement waits for the
// backend (Message.Tracker) even on a host without a store of its own.
func (r *Router) Replicated() bool { return r.backend.Load() != nil }

// claimable reports whether a backend may claim queues of kind k: named queues and durable
// subscriptions' queues, not temporary queues (their connection's).
func claimable(k Kind) bool { return k == Queue || k == DurableSub }

// claimer returns the backend that claims d, or nil.
func (r *Router) claimer(d Destination) QueueBackend {
	if bb := r.backend.Load(); bb != nil && bb.b.Claims(d) {
		return bb.b
	}
	return nil
}

// publishBackend hands m to the backend that claims its queue. A refusal is the backend's error, not a
// full queue (Stats.QueueFull).
func (r *Router) publishBackend(b QueueBackend, m *Message) PublishResult {
	return PublishResult{Err: b.Publish(m.Dest, m)}
}

// Feed gives queue d (a named queue or a durable subscription's), claimed by the router's QueueBackend, a
// message the backend holds: it waits among
// the queue's messages in arrival order and is dispatched like any other, with redeliveries earlier
// deliveries (the redelivered mark). ref comes back in QueueBackend.Settle. Quotas do not apply: the
// backend feeds what Want asked for. Feed reports false, keeping nothing, when d has no local consumer
// (any more) or is not claimed: the backend settles the message itself (hands it back).
func (r *Router) Feed(d Destination, m *Message, redeliveries uint32, ref any) bool {
	if r.closed.Load() || !claimable(d.Kind) || len(d.Path) == 0 {
		return false
	}
	q := r.lockedQueue(d, false)
	if q == nil {
		return false
	}
	defer q.mu.Unlock()
	if q.backend == nil || len(q.consumers) == 0 {
		return false
	}
	if m.ID == 0 {
		m.ID = r.nextID.Add(1)
	}
	q.stopIdleTimerLocked()
	q.arrivals++
	it := &qitem{msg: m, order: q.arrivals, size: itemSize(m), prio: min(m.Priority, MaxPriority), redeliveries: redeliveries, fed: true}
	if q.refs == nil {
		q.refs = make(map[*qitem]any)
	}
	q.refs[it] = ref
	q.enqueued++
	q.held++
	q.heldBytes += it.size
	q.pushWaitingLocked(it)
	q.dispatchLocked()
	return true
}

// autoAckWant is what an auto-acknowledging consumer of a claimed queue asks for at a time: it has no
// credit to measure.
const autoAckWant = 64

// wantLocked tells the backend of a claimed queue how many messages its consumers can take now.
func (q *queue) wantLocked() {
	n := 0
	if !q.dead {
		for _, c := range q.activeLocked() {
			switch {
			case c.closed || c.blocked:
			case c.autoAck:
				n += autoAckWant
			default:
				n += max(c.credit-len(c.unacked), 0)
			}
		}
		n = max(n-q.waiting, 0)
	}
	if n != q.want {
		q.want = n
		q.backend.Want(q.dest, n)
	}
}

// returnFedLocked hands every waiting fed message back to the backend once the queue has no consumer.
func (q *queue) returnFedLocked() {
	if q.backend == nil || len(q.consumers) > 0 {
		return
	}
	for p := range q.levels {
		w := &q.levels[p]
		for i := 0; i < w.len(); {
			it := w.at(i)
			ref, ok := q.takeRefLocked(it)
			if !ok {
				i++
				continue
			}
			w.removeAt(i)
			q.waiting--
			q.memBytes -= it.size
			q.backend.Settle(ref, false) // handed back: forgetting it settles nothing more
			q.forgetLocked(it)
			q.dequeued-- // not gone for good: another node delivers it
		}
	}
	q.wantLocked()
}

// settleLocked tells the backend that fed message it left the queue for good. A poisoned message is
// settled by settlePoisoned instead, once its dead-letter copy is stored.
func (q *queue) settleLocked(it *qitem) {
	if it.fed && !it.poisoned {
		if ref, ok := q.takeRefLocked(it); ok {
			q.backend.Settle(ref, true)
		}
	}
}

// takeRefLocked removes and returns the backend's reference of fed message it, once.
func (q *queue) takeRefLocked(it *qitem) (any, bool) {
	if !it.fed {
		return nil, false
	}
	ref, ok := q.refs[it]
	if ok {
		delete(q.refs, it)
	}
	return ref, ok
}

// settlePoisoned settles a poisoned fed message after deadLetter published its copy: once the copy is
// durable (its Tracker) when someone tracked its write, at once otherwise; handed back if the copy
// failed, so it is neither lost nor duplicated in the dead-letter queue by this node. The queue's lock is
// not held.
func (q *queue) settlePoisoned(it *qitem, copied bool, tr *settleTracker) {
	if !it.fed { // set before the item was shared, never changed: no lock needed to read it
		return
	}
	q.mu.Lock()
	ref, ok := q.takeRefLocked(it)
	b := q.backend
	q.mu.Unlock()
	if !ok {
		return
	}
	settle := func(err error) {
		q.mu.Lock()
		defer q.mu.Unlock()
		b.Settle(ref, copied && err == nil)
	}
	if tr == nil {
		settle(nil)
		return
	}
	tr.then(settle)
}

// settleTracker is the Tracker of a dead-letter copy of a fed message: the original is settled when the
// copy's writes are done.
type settleTracker struct {
	mu      sync.Mutex
	pending int
	sealed  bool
	err     error
	fn      func(error)
	fired   atomic.Bool
}

// Track implements Tracker.
func (t *settleTracker) Track() func(error) {
	t.mu.Lock()
	t.pending++
	t.mu.Unlock()
	var once atomic.Bool
	return func(err error) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		t.mu.Lock()
		t.pending--
		if err != nil && t.err == nil {
			t.err = err
		}
		t.mu.Unlock()
		t.fire()
	}
}

// then seals the tracker (the publish that tracks writes has returned) and calls fn once they are done.
func (t *settleTracker) then(fn func(error)) {
	t.mu.Lock()
	t.sealed, t.fn = true, fn
	t.mu.Unlock()
	t.fire()
}

func (t *settleTracker) fire() {
	t.mu.Lock()
	ready := t.sealed && t.pending == 0
	fn, err := t.fn, t.err
	t.mu.Unlock()
	if ready && t.fired.CompareAndSwap(false, true) {
		fn(err)
	}
}

// handBackLocked hands every fed message the queue holds, waiting or in flight, back to the backend: the
// queue is being deleted here, not in the backend.
func (q *queue) handBackLocked() {
	if q.backend == nil {
		return
	}
	hand := func(it *qitem) {
		if ref, ok := q.takeRefLocked(it); ok {
			q.backend.Settle(ref, false)
		}
	}
	for p := range q.levels {
		w := &q.levels[p]
		for i := 0; i < w.len(); i++ {
			hand(w.at(i))
		}
	}
	for _, c := range q.consumers {
		for _, it := range c.unacked {
			hand(it)
		}
	}
	if q.want != 0 {
		q.want = 0
		q.backend.Want(q.dest, 0)
	}
}
