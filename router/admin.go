package router

import (
	"fmt"
)

// Administrative operations on queues: what an operator does through the management API. They are
// journalled like the changes clients cause, so they survive a restart, in batches: see AtomicJournal.

// AtomicJournal is a Journal that can make several queue changes durable as one unit. The
// administrative operations use it: a message MoveMessages moves is, after a crash, in its old queue or
// in its new one, never in both nor in neither, and a caller waiting on a Tracker learns when a whole
// batch is durable. With a Journal that does not implement it, each change is journalled on its own,
// the arrival before the departure (a crash in between leaves a moved message in both queues, as
// dead-lettering does), and the Tracker learns of the arrivals only.
type AtomicJournal interface {
	Journal
	// Batch starts a set of queue changes journalled together by its Commit; tr, when set, learns when
	// they are durable.
	Batch(tr Tracker) JournalBatch
}

// JournalBatch gathers queue changes into one journal write. Its methods are called like the Journal's:
// with the queues' locks held, in the order the changes take effect, and they must not wait for writes.
// Journal.Load must find the messages a batch moved into a queue as soon as Move returns, committed or
// not (a full in-memory window swaps them out at once).
type JournalBatch interface {
	// Dequeue records that the message with queue sequence number seq left queue d for good.
	Dequeue(d Destination, seq uint64)
	// Move records that message m left queue from, where its sequence number was fromSeq, for queue to,
	// where it is toSeq with redeliveries earlier deliveries. fromSeq 0 means from did not journal it
	// (only its arrival is recorded), toSeq 0 that to does not (only its departure).
	Move(from Destination, fromSeq uint64, to Destination, toSeq uint64, redeliveries uint32, m *Message)
	// Commit queues the batch's write as one atomic unit; it does not wait for it. Called once, maybe
	// with queue locks held.
	Commit()
}

// adminBatch is how many messages one JournalBatch of an administrative operation holds: a store
// transaction must hold it (a move writes two entry keys and their expiry keys per message, and no body).
const adminBatch = 1000

// plainBatch is the JournalBatch of a Journal that is not an AtomicJournal: each change on its own.
type plainBatch struct {
	j  Journal
	tr Tracker
}

func (b plainBatch) Dequeue(d Destination, seq uint64) { b.j.Dequeue(d, seq) }

func (b plainBatch) Move(from Destination, fromSeq uint64, to Destination, toSeq uint64, redeliveries uint32, m *Message) {
	if toSeq > 0 {
		c := *m
		c.Tracker = b.tr
		b.j.Enqueue(to, toSeq, redeliveries, &c)
	}
	if fromSeq > 0 {
		b.j.Dequeue(from, fromSeq)
	}
}

func (plainBatch) Commit() {}

// batchJournal returns a batch for the router's Journal, or nil without one (then no queue journals).
func (r *Router) batchJournal(tr Tracker) JournalBatch {
	switch j := r.opts.Journal.(type) {
	case nil:
		return nil
	case AtomicJournal:
		return j.Batch(tr)
	}
	return plainBatch{r.opts.Journal, tr}
}

// batcher hands out journal batches of at most adminBatch changes, committing each full one.
type batcher struct {
	r  *Router
	tr Tracker
	b  JournalBatch
	n  int
}

// next returns the batch to add one change to.
func (bt *batcher) next() JournalBatch {
	if bt.b == nil {
		bt.b = bt.r.batchJournal(bt.tr)
	}
	if bt.n++; bt.n > adminBatch {
		bt.b.Commit()
		bt.b, bt.n = bt.r.batchJournal(bt.tr), 1
	}
	return bt.b
}

// commit commits the batch in progress, if any.
func (bt *batcher) commit() {
	if bt.b != nil {
		bt.b.Commit()
		bt.b, bt.n = nil, 0
	}
}

// PurgeQueue removes every message waiting in the queue d names, in memory or swapped out to the
// journal, and returns how many it removed (counted in Stats.Discarded). As in RabbitMQ, messages
// delivered and not yet acknowledged stay with their consumers, which stay attached: acknowledged they
// are gone, given back (Nack, a consumer closing) they wait in the queue again. The removals are
// journalled like acknowledgements, in atomic batches (AtomicJournal); tr, when set, learns when they are
// durable.
//
// It fails with ErrNoQueue when the router holds no queue d (a durable subscription's queue is known
// while the subscription exists), and with the journal's error when a window of swapped-out messages
// cannot be loaded: what was removed stays removed, the rest stays queued. The queue's lock is held
// throughout, loads from the journal included: its publishers and consumers wait meanwhile.
func (r *Router) PurgeQueue(d Destination, tr Tracker) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	if !queueKind(d.Kind) || len(d.Path) == 0 {
		return 0, fmt.Errorf("%w: a %s with %d segments is not a queue", ErrInvalidName, d.Kind, len(d.Path))
	}
	q := r.lockedQueue(d, false)
	if q == nil {
		return 0, r.noQueue(d)
	}
	n, err := q.purgeWaitingLocked(tr)
	idle := q.idleLocked()
	q.mu.Unlock()
	r.discarded.Add(uint64(n))
	if idle {
		r.queueIdle(q)
	}
	return n, err
}

// noQueue is the answer about a queue the router does not hold: none for an existing durable
// subscription, whose queue is empty, else ErrNoQueue.
func (r *Router) noQueue(d Destination) error {
	if d.Kind == DurableSub {
		r.dur.mu.Lock()
		ds := r.dur.m[Key(d)]
		r.dur.mu.Unlock()
		if ds != nil {
			return nil
		}
	}
	return ErrNoQueue
}

// purgeWaitingLocked releases the waiting messages (in memory, parked and swapped out, loaded in
// windows to be released), journalling their departures in batches for tr. It returns how many it
// released, and the journal's error when a load failed (the messages still swapped out stay).
func (q *queue) purgeWaitingLocked(tr Tracker) (n int, err error) {
	bt := batcher{r: q.r, tr: tr}
	defer bt.commit()
	release := func(it *qitem) {
		if q.journalsLocked(it) {
			bt.next().Dequeue(q.dest, it.order)
		}
		q.forgetLocked(it)
		n++
	}
	for {
		for p := range q.levels {
			w := &q.levels[p]
			for w.len() > 0 {
				it := w.at(0)
				w.removeAt(0)
				release(it)
			}
		}
		q.waiting, q.memBytes = 0, 0
		if q.swapped == 0 {
			break
		}
		before := q.swapped
		if _, err = q.loadErrLocked(maxLoadWindow); err != nil || q.waiting == 0 && q.swapped == before {
			break // failed, or a journal that returns nothing usable
		}
	}
	for _, it := range q.parked {
		release(it)
	}
	q.parked = nil
	return n, err
}

// MoveMessages moves up to max messages (0: all) waiting in the queue from names to the queue to names,
// oldest first (by queue sequence number, whatever their priority), and returns how many it moved
// (counted in Stats.Moved). This is how an operator replays a dead-letter queue. Delivered messages not
// yet acknowledged stay where they are, as for PurgeQueue.
//
// The target is created as a publish creates it (Options.MaxQueues applies), with its own policy and
// quota; a durable subscription's queue only while the subscription exists (ErrNoDurable). A moved
// message keeps its ID, body, attributes and redelivery count and gets a new sequence number; its
// destination becomes the target, except that a message published to a topic keeps its topic when moved
// into a durable subscription (as the subscription's messages do). A move never drops a message: when the
// target is full, whatever its full policy, the move stops and returns the count with ErrQueueFull,
// leaving the rest in from.
//
// Each message's departure and arrival are journalled together, in atomic batches (AtomicJournal), so
// that after a crash a message is in one queue, not both nor neither; tr, when set, learns when the
// moves are durable. It fails with ErrNoQueue when the router holds no queue from (nothing waits in an
// empty durable subscription's: 0 and no error), ErrInvalidName for a destination that is no queue or
// from and to the same, or the journal's error when swapped-out messages cannot be loaded. Both queues'
// locks are held while a batch moves.
func (r *Router) MoveMessages(from, to Destination, max int, tr Tracker) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	for _, d := range []Destination{from, to} {
		if !queueKind(d.Kind) || len(d.Path) == 0 {
			return 0, fmt.Errorf("%w: a %s with %d segments is not a queue", ErrInvalidName, d.Kind, len(d.Path))
		}
	}
	if Key(from) == Key(to) {
		return 0, fmt.Errorf("%w: moving messages from a queue to itself", ErrInvalidName)
	}
	if max < 0 {
		return 0, fmt.Errorf("%w: a negative count", ErrInvalidName)
	}
	moved := 0
	for max == 0 || moved < max {
		want := adminBatch
		if max > 0 {
			want = min(want, max-moved)
		}
		n, err := r.moveBatch(from, to, want, tr)
		moved += n
		if err != nil || n < want {
			return moved, err
		}
	}
	return moved, nil
}

// moveBatch moves up to want messages in one journal batch.
func (r *Router) moveBatch(from, to Destination, want int, tr Tracker) (int, error) {
	if to.Kind == DurableSub {
		// Held across the move, so the subscription cannot be destroyed (its queue purged) meanwhile
		// and leave the moved messages in a queue nobody owns.
		r.dur.mu.Lock()
		defer r.dur.mu.Unlock()
		if r.dur.m[Key(to)] == nil {
			return 0, ErrNoDurable
		}
	}
	src, dst, err := r.lockPair(from, to)
	if src == nil {
		return 0, err
	}
	bt := batcher{r: r, tr: tr}
	n, err := moveLocked(src, dst, want, &bt)
	bt.commit()
	src.dispatchLocked() // refill the window in memory for src's consumers
	dst.dispatchLocked()
	srcIdle, dstIdle := src.idleLocked(), dst.idleLocked()
	src.mu.Unlock()
	dst.mu.Unlock()
	for _, x := range []struct {
		q    *queue
		idle bool
	}{{src, srcIdle}, {dst, dstIdle}} {
		if x.idle {
			r.queueIdle(x.q)
		}
	}
	r.moved.Add(uint64(n))
	return n, err
}

// lockPair returns the queues from and to name with both their locks held. to is created as a publish
// creates it; from must exist (else ErrNoQueue, or nil for an empty durable subscription's). Two queue
// locks are held together only here, taken in key order, so two moves in opposite directions cannot
// deadlock; no queue lock is held while the queue map is.
func (r *Router) lockPair(from, to Destination) (src, dst *queue, err error) {
	for {
		if src = r.lockedQueue(from, false); src == nil {
			if dst != nil {
				r.dropIfIdle(dst) // made for this move, which has nothing to move
			}
			return nil, nil, r.noQueue(from)
		}
		src.mu.Unlock()
		if dst, err = r.lockedQueueLimit(to, true, true); err != nil {
			return nil, nil, err
		}
		dst.mu.Unlock()
		first, second := src, dst
		if first.key > second.key {
			first, second = second, first
		}
		first.mu.Lock()
		second.mu.Lock()
		if !src.dead && !dst.dead {
			return src, dst, nil
		}
		second.mu.Unlock()
		first.mu.Unlock()
	}
}

// dropIfIdle lets q go if it holds nothing and has no consumer.
func (r *Router) dropIfIdle(q *queue) {
	q.mu.Lock()
	idle := q.idleLocked()
	q.mu.Unlock()
	if idle {
		r.queueIdle(q)
	}
}

// moveLocked moves up to want waiting messages, oldest first, from src to dst, journalling each move
// through bt. It stops with ErrQueueFull at a full dst, and with the journal's error when src cannot load
// its swapped-out messages. Both queues' locks are held.
func moveLocked(src, dst *queue, want int, bt *batcher) (int, error) {
	n := 0
	for n < want {
		if src.waiting == 0 {
			if src.swapped == 0 {
				break
			}
			before := src.swapped
			if _, err := src.loadErrLocked(min(want-n, maxLoadWindow)); err != nil {
				return n, err
			}
			if src.waiting == 0 && src.swapped == before {
				break // a journal that returns nothing usable
			}
			continue // loaded, or the swapped count was stale and is now 0
		}
		p := src.oldestLevelLocked()
		it := src.levels[p].at(0)
		if dst.fullFor(it.size) {
			return n, ErrQueueFull
		}
		src.levels[p].removeAt(0)
		src.waiting--
		src.memBytes -= it.size
		m := *it.msg
		if dst.dest.Kind != DurableSub || m.Dest.Kind != Topic {
			m.Dest = dst.dest
		}
		m.Origin, m.OriginGram, m.Tracker, m.Publisher = "", nil, nil, nil
		nit := dst.admitLocked(&m, it.redeliveries)
		var fromSeq, toSeq uint64
		if src.journalsLocked(it) {
			fromSeq = it.order
		}
		if dst.journalsLocked(nit) {
			toSeq = nit.order
		}
		if fromSeq != 0 || toSeq != 0 {
			bt.next().Move(src.dest, fromSeq, dst.dest, toSeq, nit.redeliveries, nit.msg)
		}
		src.forgetLocked(it)
		n++
	}
	return n, nil
}

// oldestLevelLocked returns the priority level whose first waiting message has the lowest sequence
// number. Some message waits in memory.
func (q *queue) oldestLevelLocked() int {
	best := -1
	for p := range q.levels {
		w := &q.levels[p]
		if w.len() > 0 && (best < 0 || w.at(0).order < q.levels[best].at(0).order) {
			best = p
		}
	}
	return best
}

// admitLocked stores m, which has room, as a new arrival with redeliveries, without journalling it or
// dispatching: the caller does both.
func (q *queue) admitLocked(m *Message, redeliveries uint32) *qitem {
	q.stopIdleTimerLocked()
	q.arrivals++
	it := &qitem{msg: m, order: q.arrivals, size: itemSize(m), redeliveries: redeliveries, prio: min(m.Priority, MaxPriority)}
	q.enqueued++
	q.held++
	q.heldBytes += it.size
	if !q.swapOutLocked(it) {
		q.pushWaitingLocked(it)
	}
	return it
}

// ForgetQueue drops the queue d names now if it holds nothing and has no consumer, as the router drops
// an idle queue (without waiting for its policy's AutoDeleteAfter); a publish or a consumer then makes a
// new one. It reports whether the router holds no queue d any more. An operator's queue deletion is a
// PurgeQueue, then ForgetQueue.
func (r *Router) ForgetQueue(d Destination) bool {
	var kb [256]byte
	key := AppendKey(kb[:0], d)
	r.qmu.RLock()
	q := r.queues[string(key)]
	r.qmu.RUnlock()
	if q == nil {
		return true
	}
	q.mu.Lock()
	q.stopIdleTimerLocked()
	q.mu.Unlock()
	r.dropIdleQueue(q, 0)
	r.qmu.RLock()
	defer r.qmu.RUnlock()
	return r.queues[string(key)] == nil
}
