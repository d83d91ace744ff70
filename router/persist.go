package router

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
}

// journalsLocked reports whether q journals it: persistent messages of named and durable-subscription
// queues (not temporary queues, whose owner's connection bounds their life).
func (q *queue) journalsLocked(it *qitem) bool {
	return q.r.opts.Journal != nil && (q.dest.Kind == Queue || q.dest.Kind == DurableSub) && it.msg.Persistent
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

// RestoreQueued puts a message recovered from the journal back in queue d (kind Queue or DurableSub) with its queue
// sequence number and redelivery count, without journalling it. Call it before any client connects, in
// ascending seq per queue; quotas are not applied (the messages were accepted before the restart).
func (r *Router) RestoreQueued(d Destination, seq uint64, redeliveries uint32, m *Message) {
	q := r.lockedQueue(d, true)
	defer q.mu.Unlock()
	it := &qitem{msg: m, order: seq, size: itemSize(m), redeliveries: redeliveries, prio: min(m.Priority, MaxPriority)}
	q.levels[it.prio].insert(it)
	q.top = max(q.top, it.prio)
	q.arrivals = max(q.arrivals, seq)
	q.waiting++
	q.held++
	q.heldBytes += it.size
}

// retain applies a retained message (or clears one), journalling it. With a journal the change and its
// journal call are made under one lock, so concurrent publishers to one topic journal in the order the
// router applied them and the store ends with the same retained message as the router.
func (r *Router) retain(ri int, m *Message) {
	j := r.opts.Journal
	if j != nil {
		r.retainMu.Lock()
		defer r.retainMu.Unlock()
	}
	if len(m.Body) == 0 {
		r.retained.clear(ri, m.Dest.Path)
	} else {
		r.retained.set(ri, m.Dest.Path, m)
	}
	if j != nil {
		j.Retain(m)
	}
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
