package router

import "slices"

// Persistence hooks. The router keeps its state in memory and never imports the store; a virtual host
// that persists implements Journal and passes it in Options, and restores what it recovered with the
// Restore methods below before any client connects.

// Tracker is set on a Message by a publisher that waits for the message to be durable before
// acknowledging it. Whoever starts a durable write for the message (a Journal, a sink keeping it for an
// offline session) calls Track first and the returned function once with the write's outcome. The router
// only passes it on.
type Tracker interface {
	Track() (done func(error))
}

// Journal is told about state changes that must survive a restart. It is called on the publisher's
// goroutine in the order the changes take effect and must not block for long (it queues the write and
// reports the outcome to m.Tracker, when set).
type Journal interface {
	// Retain records that m is the retained message of its topic, or clears the topic's retained
	// message when m's body is empty.
	Retain(m *Message)
	// Enqueue records that persistent message m is in queue d with queue sequence number seq (and
	// redeliveries earlier deliveries): on arrival, and again when a redelivery is counted. Called with
	// the queue's lock held.
	Enqueue(d Destination, seq uint64, redeliveries uint32, m *Message)
	// Dequeue records that the message with queue sequence number seq left queue d for good
	// (acknowledged, expired, dropped or dead-lettered). Called with the queue's lock held.
	Dequeue(d Destination, seq uint64)
	// Delivered records queue d's delivered mark: messages with queue sequence numbers up to mark may
	// have been delivered. After a crash, those still journalled come back as redeliveries (see
	// RestoreBacklog). Called with the queue's lock held, before the deliveries it covers, once per
	// DeliveredWindow sequence numbers.
	Delivered(d Destination, mark uint64)
	// Durable records durable subscription d with its options, created or changed, or with o nil its
	// removal (its queue has released every message by then). tr, when set, learns when it is durable.
	// Called with the router's durable-subscription lock held, in the order of the changes.
	Durable(d Destination, o *DurableOptions, tr Tracker)
	// Load returns up to limit journalled messages of queue d with queue sequence number >= from, in
	// ascending order. It must include every Enqueue made before the call, written yet or not. The router
	// calls it with the queue's lock held when the queue's in-memory window runs low (Options.SwapMessages),
	// so it must not wait for writes.
	Load(d Destination, from uint64, limit int) ([]Stored, error)
}

// Stored is a journalled queue message, as Journal.Load returns it.
type Stored struct {
	Seq          uint64
	Redeliveries uint32
	Msg          *Message
}

// DeliveredWindow is how far past the highest delivered sequence number a queue's delivered mark
// (Journal.Delivered) is set, so the mark is written once per window of deliveries, not per delivery. A
// crash can therefore mark up to this many undelivered messages as redeliveries, never the reverse.
const DeliveredWindow = 256

// journalsLocked reports whether q journals it: persistent messages of named and durable-subscription
// queues (not temporary queues, whose owner's connection bounds their life), except those a QueueBackend
// fed: it keeps them.
func (q *queue) journalsLocked(it *qitem) bool {
	return q.r.opts.Journal != nil && (q.dest.Kind == Queue || q.dest.Kind == DurableSub) && it.msg.Persistent && !it.fed
}

// journalEnqueueLocked journals it's arrival or its new redelivery count.
func (q *queue) journalEnqueueLocked(it *qitem) {
	if q.journalsLocked(it) {
		q.r.opts.Journal.Enqueue(q.dest, it.order, it.redeliveries, it.msg)
	}
}

// journalDequeueLocked journals that it left the queue. A poisoned message is journalled by
// journalPoisoned instead, once its dead-letter copy is.
func (q *queue) journalDequeueLocked(it *qitem) {
	if q.journalsLocked(it) && !it.poisoned {
		q.r.opts.Journal.Dequeue(q.dest, it.order)
	}
}

// journalPoisoned journals that a poisoned message left the queue, after deadLetter copied it (or
// dropped it). The queue's lock is not held; nothing journals the message after its release, so the
// order holds.
func (q *queue) journalPoisoned(it *qitem) {
	if q.journalsLocked(it) {
		q.r.opts.Journal.Dequeue(q.dest, it.order)
	}
}

// markDeliveryLocked advances the queue's delivered mark before it is delivered.
func (q *queue) markDeliveryLocked(it *qitem) {
	if !q.journalsLocked(it) {
		return
	}
	if it.order > q.markSent {
		q.markSent = it.order + DeliveredWindow
		q.r.opts.Journal.Delivered(q.dest, q.markSent)
	}
}

// exactMarkLocked journals the queue's delivered mark as the highest sequence number actually
// delivered, at Close, so that after a graceful restart only delivered messages count as redeliveries.
// A delivery after it journals a window again.
func (q *queue) exactMarkLocked() {
	if q.markSent > q.delivMax && q.delivMax > 0 {
		q.markSent = q.delivMax
		q.r.opts.Journal.Delivered(q.dest, q.markSent)
	}
}

// RestoreBacklog tells the router that queue d (kind Queue or DurableSub) holds count journalled
// messages with sequence numbers first to last, and that those up to delivered may have been delivered
// before the restart (Journal.Delivered): they come back with at least one redelivery (a stored count
// stays as it is, so a nacked message redelivered again before the crash is one short). Nothing is loaded
// now; the queue loads its messages through Journal.Load in windows as consumers drain it, so a backlog
// of millions costs no startup time and no memory. With count 0 it only records the mark: the queue's
// new sequence numbers start above it. Call it before any client connects, with a Journal set. Quotas
// count the restored messages (but not their bytes, unknown until loaded); they are not applied.
func (r *Router) RestoreBacklog(d Destination, count int, first, last, delivered uint64) {
	floor := max(last, delivered)
	if count <= 0 || r.opts.Journal == nil {
		if floor > 0 {
			var kb [256]byte
			key := AppendKey(kb[:0], d)
			r.qmu.Lock()
			if r.seqFloors == nil {
				r.seqFloors = make(map[string]uint64)
			}
			r.seqFloors[string(key)] = max(r.seqFloors[string(key)], floor)
			r.qmu.Unlock()
		}
		return
	}
	q := r.lockedQueue(d, true)
	defer q.mu.Unlock()
	if q.swapped == 0 {
		q.swapFrom = first
	}
	q.swapFrom = min(q.swapFrom, first)
	q.swapped += count
	q.held += count
	q.arrivals = max(q.arrivals, floor)
	q.crashMark = max(q.crashMark, delivered)
	q.markSent = max(q.markSent, delivered)
	q.delivMax = max(q.delivMax, delivered) // they may have been delivered: keep them marked
}

// RestoreQueued puts a message recovered from the journal back in queue d (kind Queue or DurableSub) with its queue
// sequence number and redelivery count, without journalling it, in memory. RestoreBacklog, which loads
// nothing until needed, is what a host uses; do not combine the two for one queue. Call it before any client connects, in
// ascending seq per queue; quotas are not applied (the messages were accepted before the restart).
func (r *Router) RestoreQueued(d Destination, seq uint64, redeliveries uint32, m *Message) {
	q := r.lockedQueue(d, true)
	defer q.mu.Unlock()
	it := &qitem{msg: m, order: seq, size: itemSize(m), redeliveries: redeliveries, prio: min(m.Priority, MaxPriority)}
	q.pushWaitingLocked(it)
	q.arrivals = max(q.arrivals, seq)
	q.held++
	q.heldBytes += it.size
}

// retain applies a retained message (or clears one), journalling it unless it is Internal. With a journal
// the change and its journal call are made under one lock, so concurrent publishers to one topic journal
// in the order the router applied them and the store ends with the same retained message as the router.
// An Internal message replacing a journalled one leaves the journalled one in the store: it comes back
// after a restart until the broker publishes the topic again.
func (r *Router) retain(ri int, m *Message) {
	j := r.opts.Journal
	if j != nil || r.retainWatch.Load() != nil {
		r.retainMu.Lock()
		defer r.retainMu.Unlock()
	}
	if len(m.Body) == 0 {
		r.retained.clear(ri, m.Dest.Path)
	} else {
		r.retained.set(ri, m.Dest.Path, m)
	}
	if j != nil && !m.Internal {
		j.Retain(m)
	}
	r.notifyRetainedLocked(ri, m)
}

// DeleteRetained clears the retained message of the topic (kind Topic) at path, journalled as a publish
// of an empty retained message is, but delivered to nobody: an operator's removal must not hand current
// subscribers the empty message such a publish gives them. tr, when set, learns when the removal is
// durable. It reports whether the topic held a retained message; when it held none nothing is journalled.
func (r *Router) DeleteRetained(path []string, tr Tracker) bool {
	j := r.opts.Journal
	if j != nil || r.retainWatch.Load() != nil {
		r.retainMu.Lock()
		defer r.retainMu.Unlock()
	}
	if !r.retained.clear(0, path) {
		return false
	}
	m := &Message{ID: r.nextID.Add(1), Dest: Destination{Kind: Topic, Path: slices.Clone(path)}, Retain: true, Tracker: tr}
	if j != nil {
		j.Retain(m)
	}
	r.notifyRetainedLocked(0, m)
	return true
}

// ReserveIDs makes the router assign message IDs above max from now on, so IDs of messages recovered
// from a store are never reused.
func (r *Router) ReserveIDs(max uint64) {
	for {
		cur := r.nextID.Load()
		if cur >= max || r.nextID.CompareAndSwap(cur, max) {
			return
		}
	}
}

// RestoreRetained makes m the retained message of its topic without journalling it (it comes from the
// journal). m.ID must be set.
func (r *Router) RestoreRetained(m *Message) {
	if ri, ok := rootIndex(m.Dest.Kind); ok && len(m.Body) > 0 {
		r.retained.set(ri, m.Dest.Path, m)
	}
}
