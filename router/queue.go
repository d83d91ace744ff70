package router

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sort"
	"sync"
	"time"
)

// MaxStickyGroups bounds the message groups a queue remembers an owner for. Beyond it, a new group's
// messages go to a consumer chosen by hashing the group name among the current consumers.
const MaxStickyGroups = 100000

// qitem is one message held by a queue, waiting or in flight.
type qitem struct {
	msg          *Message
	order        uint64 // queue sequence number: requeued messages go back in sequence order
	size         int64
	redeliveries uint32
	prio         uint8
	gone         bool // released (acknowledged, dropped, dead-lettered); browsers skip it
	poisoned     bool // reached the NakLimit: journalled as gone once its dead-letter copy is (persist.go)
	// fed marks a message a QueueBackend fed (backend.go); its reference is in queue.refs. A bool fits
	// in the struct's padding, where the reference itself would make every queued message larger.
	fed bool
}

// queue is one named queue. Everything in it is guarded by mu, which is also held while a consumer's
// Sink.Deliver runs: sinks must not call back into the router from Deliver.
type queue struct {
	r    *Router
	key  string
	dest Destination
	pol  *QueuePolicy // nil: Options defaults; SetPolicies may change it (under mu)
	mu   sync.Mutex

	// levels holds the waiting messages by priority, each in sequence order; waiting counts them.
	levels  [MaxPriority + 1]waitList
	waiting int
	top     uint8 // no level above it holds a message
	// held and heldBytes count every message the queue holds: waiting and in flight (unacked). They are
	// what the quota bounds.
	held      int
	heldBytes int64
	maxMsgs   int
	maxBytes  int64
	memBytes  int64 // bytes of the waiting messages in levels

	// Swapping (swap.go): swapped persistent waiting messages are in the journal only, with sequence
	// numbers from swapFrom on; parked holds the non-journalled ones that arrived meanwhile, in sequence
	// order, until the loads pass them. Every message in levels has a lower sequence number than both.
	swapped      int
	swappedBytes int64 // known bytes of the swapped messages (unknown for a restored backlog)
	swapFrom     uint64
	parked       []*qitem
	loadAvg      int64  // average size of the last window loaded; 0 = unknown
	crashMark    uint64 // restored delivered mark: messages up to it come back as redeliveries
	markSent     uint64 // the delivered mark last journalled
	delivMax     uint64 // highest sequence number delivered of a journalled message

	consumers []*Consumer // competing consumers in attach order
	browsers  []*Consumer
	exclusive int    // exclusive consumers among consumers
	next      int    // round-robin cursor into the active consumers
	seq       uint64 // last delivery sequence number
	arrivals  uint64 // last queue sequence number
	groups    map[string]*Consumer
	room      chan struct{} // closed when something is released; made by WaitRoom
	idleTimer *time.Timer   // AutoDeleteAfter countdown
	idleSince time.Time
	dead      bool // removed from the router's map; publishers holding it must look again

	// backend keeps the queue's messages when it claims the queue (backend.go): Publish hands them to it
	// and it feeds them back as consumers want them (want: the last number told).
	backend QueueBackend
	want    int
	refs    map[*qitem]any // the backend's references of the fed messages held

	// enqueued and dequeued count arrivals and departures for good (QueueInfo).
	enqueued, dequeued uint64
}

func itemSize(m *Message) int64 {
	n := int64(len(m.Body) + len(m.ContentType) + len(m.Group))
	for _, h := range m.Headers {
		n += int64(len(h.Name) + len(h.Value))
	}
	return n
}

func (q *queue) fullFor(size int64) bool {
	return q.held+1 > q.maxMsgs || q.heldBytes+size > q.maxBytes
}

// enqueueLocked stores m, applying the full policy, and dispatches.
func (q *queue) enqueueLocked(m *Message) PublishResult {
	var pr PublishResult
	size := itemSize(m)
	if q.fullFor(size) {
		full := FullBlock
		if q.pol != nil {
			full = q.pol.Full
		}
		switch full {
		case FullDropTail:
			q.r.dropFull.Add(1)
			pr.Dropped = 1
			return pr
		case FullDropHead:
			for q.fullFor(size) && q.evictOldestLocked() {
				pr.Dropped++
			}
			if q.fullFor(size) {
				q.r.dropFull.Add(uint64(pr.Dropped) + 1)
				pr.Dropped++
				return pr
			}
			q.r.dropFull.Add(uint64(pr.Dropped))
		default:
			pr.Err = ErrQueueFull
			return pr
		}
	}
	q.stopIdleTimerLocked()
	q.arrivals++
	it := &qitem{msg: m, order: q.arrivals, size: size, prio: min(m.Priority, MaxPriority)}
	q.journalEnqueueLocked(it)
	q.enqueued++
	q.held++
	q.heldBytes += size
	if !q.swapOutLocked(it) {
		q.pushWaitingLocked(it)
	}
	pr.Delivered = q.dispatchLocked()
	return pr
}

// evictOldestLocked drops the waiting message with the lowest sequence number (FullDropHead), loading
// it first when it is swapped out. It reports false when nothing waits.
func (q *queue) evictOldestLocked() bool {
	if q.waiting == 0 && !q.loadLocked(1) {
		return false
	}
	best := q.oldestLevelLocked()
	it := q.levels[best].at(0)
	q.levels[best].removeAt(0)
	q.waiting--
	q.memBytes -= it.size
	q.releaseLocked(it)
	return true
}

// pushWaitingLocked adds it to the waiting messages in memory, in sequence order.
func (q *queue) pushWaitingLocked(it *qitem) {
	q.levels[it.prio].insert(it)
	q.top = max(q.top, it.prio)
	q.waiting++
	q.memBytes += it.size
}

// releaseLocked forgets a message for good, journalling it, and wakes publishers waiting for room.
func (q *queue) releaseLocked(it *qitem) {
	q.journalDequeueLocked(it)
	q.forgetLocked(it)
}

// forgetLocked is releaseLocked for a message whose departure the caller journals itself.
func (q *queue) forgetLocked(it *qitem) {
	q.settleLocked(it)
	q.dequeued++
	q.held--
	q.heldBytes -= it.size
	it.gone = true
	q.wakeRoomLocked()
}

// wakeRoomLocked wakes the publishers waiting for room (WaitRoom).
func (q *queue) wakeRoomLocked() {
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
}

// requeueLocked puts an in-flight message back among the waiting ones, in sequence order, or reports it
// poisoned when it reached the policy's NakLimit.
func (q *queue) requeueLocked(it *qitem) (poisoned bool) {
	it.redeliveries++
	if q.pol != nil && q.pol.NakLimit > 0 && int(it.redeliveries) >= q.pol.NakLimit {
		it.poisoned = true
		q.releaseLocked(it)
		return true
	}
	q.journalEnqueueLocked(it)
	q.pushWaitingLocked(it)
	return false
}

// activeLocked returns the consumers that may receive now: the earliest exclusive one if any, else all.
func (q *queue) activeLocked() []*Consumer {
	if q.exclusive > 0 {
		for i, c := range q.consumers {
			if c.exclusive {
				return q.consumers[i : i+1]
			}
		}
	}
	return q.consumers
}

var groupSeed = maphash.MakeSeed()

// pickLocked chooses the consumer for it among active, or nil if none can take it now. A message of a
// group goes to the group's owner; if the owner is busy the message waits for it.
func (q *queue) pickLocked(active []*Consumer, it *qitem) *Consumer {
	g := it.msg.Group
	if g != "" {
		if owner := q.groups[g]; owner != nil && !owner.closed && (q.exclusive == 0 || owner == active[0]) {
			if owner.accepts(it) {
				if owner.readyLocked() {
					return owner
				}
				return nil
			}
			// The owner's selector refuses this one: anyone else may take it, without becoming the owner.
			return q.roundRobinLocked(active, it)
		}
		if len(q.groups) >= MaxStickyGroups {
			c := active[maphash.String(groupSeed, g)%uint64(len(active))]
			if c.readyLocked() && c.accepts(it) {
				return c
			}
			return nil
		}
		c := q.roundRobinLocked(active, it)
		if c != nil {
			if q.groups == nil {
				q.groups = make(map[string]*Consumer)
			}
			q.groups[g] = c
		}
		return c
	}
	return q.roundRobinLocked(active, it)
}

func (q *queue) roundRobinLocked(active []*Consumer, it *qitem) *Consumer {
	n := len(active)
	for i := 0; i < n; i++ {
		x := active[(q.next+i)%n]
		if x.readyLocked() && x.accepts(it) {
			q.next = (q.next + i + 1) % n
			return x
		}
	}
	return nil
}

// dispatchLocked feeds browsers, then hands waiting messages, highest priority first and in sequence
// order within a priority, to the active consumers round-robin among those with credit and room that
// accept them. A message no ready consumer accepts stays and later ones are tried; this scan is linear in
// the waiting messages when selectors or busy group owners hold some back. A message whose consumer's sink
// is full stays in place and that consumer waits for Resume. Expired messages are dropped. It returns the
// deliveries made. A swapped-out backlog is loaded in windows as the waiting messages in memory run low.
func (q *queue) dispatchLocked() int {
	delivered := q.browseLocked()
	q.refillLocked()
	for {
		n := q.dispatchWaitingLocked()
		delivered += n
		if n == 0 || q.swapped == 0 || !q.refillLocked() {
			break
		}
	}
	if q.backend != nil {
		q.wantLocked()
	}
	return delivered
}

// dispatchWaitingLocked is one pass of dispatchLocked over the waiting messages in memory.
func (q *queue) dispatchWaitingLocked() int {
	delivered := 0
	active := q.activeLocked()
	var now int64
	for q.top > 0 && q.levels[q.top].len() == 0 {
		q.top--
	}
	for p := int(q.top); p >= 0 && q.waiting > 0 && len(active) > 0; p-- {
		w := &q.levels[p]
		for i := 0; i < w.len(); {
			if !anyReady(active) {
				p = -1
				break
			}
			it := w.at(i)
			if it.msg.Expires != 0 {
				if now == 0 {
					now = nowMillis()
				}
				if it.msg.Expires <= now {
					w.removeAt(i)
					q.waiting--
					q.memBytes -= it.size
					q.releaseLocked(it)
					q.r.dropExpired.Add(1)
					continue
				}
			}
			c := q.pickLocked(active, it)
			if c == nil {
				i++
				continue
			}
			q.markDeliveryLocked(it)
			q.seq++
			d := Delivery{Msg: it.msg, Sub: c.sub, Seq: q.seq, Redeliveries: it.redeliveries, QueueSeq: it.order}
			if !c.sub.Sink.Deliver(d) {
				c.blocked = true
				continue
			}
			w.removeAt(i)
			q.waiting--
			q.memBytes -= it.size
			q.delivMax = max(q.delivMax, it.order)
			delivered++
			if c.autoAck || c.ackQoS0 && min(it.msg.QoS, c.sub.QoS) == 0 {
				q.releaseLocked(it)
			} else {
				c.unacked[q.seq] = it
				c.unackedBytes += it.size
			}
		}
	}
	if delivered > 0 {
		q.r.delivered.Add(uint64(delivered))
	}
	return delivered
}

// snapshotLocked lists what the queue holds for browser b, waiting and in flight, in sequence order.
func (q *queue) snapshotLocked(b *Consumer) {
	var items []*qitem
	for p := range q.levels {
		w := &q.levels[p]
		for i := 0; i < w.len(); i++ {
			if it := w.at(i); b.accepts(it) {
				items = append(items, it)
			}
		}
	}
	for _, c := range q.consumers {
		for _, it := range c.unacked {
			if b.accepts(it) {
				items = append(items, it)
			}
		}
	}
	slices.SortFunc(items, func(a, b *qitem) int {
		switch {
		case a.order < b.order:
			return -1
		case a.order > b.order:
			return 1
		}
		return 0
	})
	b.browse = items
}

// browseLocked delivers to each browser what is left of its snapshot, skipping messages released or
// expired meanwhile, then its end marker.
func (q *queue) browseLocked() int {
	delivered := 0
	var now int64
	for _, b := range q.browsers {
		if b.closed || b.blocked || b.browseDone {
			continue
		}
		for len(b.browse) > 0 {
			it := b.browse[0]
			skip := it.gone
			if !skip && it.msg.Expires != 0 {
				if now == 0 {
					now = nowMillis()
				}
				skip = it.msg.Expires <= now // dispatch drops it
			}
			if !skip {
				if !b.sub.Sink.Deliver(Delivery{Msg: it.msg, Sub: b.sub, Redeliveries: it.redeliveries, QueueSeq: it.order}) {
					b.blocked = true
					break
				}
				delivered++
			}
			b.browse[0] = nil
			b.browse = b.browse[1:]
		}
		if !b.blocked {
			if b.sub.Sink.Deliver(Delivery{Sub: b.sub, BrowseEnd: true}) {
				b.browseDone = true
			} else {
				b.blocked = true
			}
		}
	}
	return delivered
}

// deadLetter moves poisoned messages to the queue's DLQ, or drops them. It runs without the queue's lock:
// the DLQ is another queue, whose own DLQ may be this one.
func (q *queue) deadLetter(items []*qitem) {
	if len(items) == 0 {
		return
	}
	r := q.r
	r.poisoned.Add(uint64(len(items)))
	var d Destination
	q.mu.Lock() // SetPolicies may change the policy
	pol := q.pol
	q.mu.Unlock()
	ok := pol != nil
	if ok {
		d, ok = dlqDest(pol.DLQ, q.dest.Path)
	}
	if ok && d.Kind == q.dest.Kind && slices.Equal(d.Path, q.dest.Path) {
		ok = false // a queue that is its own DLQ would loop
	}
	for _, it := range items {
		if !ok {
			r.dropPoison.Add(1)
			q.journalPoisoned(it)
			q.settlePoisoned(it, true, nil)
			continue
		}
		m := *it.msg
		m.Dest, m.Origin, m.OriginGram, m.Tracker = d, "", nil, nil
		var tr *settleTracker
		if it.fed {
			// A fed message leaves the backend once its copy is stored: both, never neither.
			tr = &settleTracker{}
			m.Tracker = tr
		}
		// The DLQ's own full policy applies; with FullBlock a full DLQ drops the message.
		pr := r.Publish(&m)
		q.journalPoisoned(it) // after the copy: a crash in between keeps both, never neither
		// A DLQ that refused the copy for want of room drops the message, as on a single node; one that
		// failed otherwise (a backend that cannot store now) hands it back to be delivered again.
		q.settlePoisoned(it, pr.Err == nil || errors.Is(pr.Err, ErrQueueFull), tr)
		if pr.Err != nil {
			r.dropPoison.Add(1)
			continue
		}
		r.deadLet.Add(1)
	}
}

func (q *queue) idleLocked() bool {
	return len(q.consumers) == 0 && len(q.browsers) == 0 && q.held == 0 && !q.dead
}

func (q *queue) stopIdleTimerLocked() {
	if q.idleTimer != nil {
		q.idleTimer.Stop()
		q.idleTimer = nil
	}
}

// queueKind reports whether k names a queue-like destination.
func queueKind(k Kind) bool { return k == Queue || k == TempQueue || k == DurableSub }

// lockedQueue returns the queue for d, created on first use when create is set, with its mutex held.
// Looking up an existing queue allocates nothing.
func (r *Router) lockedQueue(d Destination, create bool) *queue {
	q, _ := r.lockedQueueLimit(d, create, false)
	return q
}

// lockedQueueLimit is lockedQueue that, with limit set, refuses to create a queue beyond
// Options.MaxQueues (ErrTooManyQueues).
func (r *Router) lockedQueueLimit(d Destination, create, limit bool) (*queue, error) {
	var kb [256]byte
	key := AppendKey(kb[:0], d)
	for {
		r.qmu.RLock()
		q := r.queues[string(key)]
		r.qmu.RUnlock()
		if q == nil {
			if !create {
				return nil, nil
			}
			r.qmu.Lock()
			if q = r.queues[string(key)]; q == nil {
				if max := r.pol.Load().maxQueues; limit && max > 0 && len(r.queues) >= max {
					r.qmu.Unlock()
					return nil, ErrTooManyQueues
				}
				q = r.newQueue(string(key), d)
				r.queues[q.key] = q
			}
			r.qmu.Unlock()
		}
		q.mu.Lock()
		if !q.dead {
			return q, nil
		}
		q.mu.Unlock()
	}
}

func (r *Router) newQueue(key string, d Destination) *queue {
	q := &queue{r: r, key: key, dest: Destination{Kind: d.Kind, Path: slices.Clone(d.Path)}}
	if claimable(d.Kind) {
		q.backend = r.claimer(d)
	}
	q.applyPolicyLocked(r.pol.Load()) // r.qmu is held: SetPolicies cannot swap them meanwhile
	q.arrivals = r.seqFloors[key]
	q.markSent = q.arrivals
	return q
}

// queueIdle is called when q became empty with no consumer: it is forgotten now, or after its policy's
// AutoDeleteAfter if it stays idle that long.
func (r *Router) queueIdle(q *queue) {
	var after time.Duration
	q.mu.Lock()
	if q.pol != nil {
		after = q.pol.AutoDeleteAfter
	}
	q.mu.Unlock()
	if after <= 0 {
		r.dropIdleQueue(q, 0)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.idleLocked() || r.closed.Load() {
		return
	}
	q.idleSince = time.Now()
	q.stopIdleTimerLocked()
	q.idleTimer = time.AfterFunc(after, func() { r.dropIdleQueue(q, after) })
}

// dropIdleQueue forgets q if it still holds nothing and has no consumer, and has been idle for at least
// after, so queues named once do not accumulate. Lock order: router queue map, then the queue.
func (r *Router) dropIdleQueue(q *queue, after time.Duration) {
	r.qmu.Lock()
	defer r.qmu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if after > 0 && (q.idleTimer == nil || time.Since(q.idleSince) < after) {
		return // it was used meanwhile; a later idle period has its own timer
	}
	if q.idleLocked() && r.queues[q.key] == q {
		r.keepSeqFloorLocked(q)
		q.dead = true
		q.idleTimer = nil
		delete(r.queues, q.key)
	}
}

// WaitRoom waits until the queue m is destined for has room for m (or no longer exists), or ctx ends.
// A publisher refused with ErrQueueFull calls it before publishing m again; another publisher may take
// the room first, so it may have to wait again. A message larger than the queue's byte quota waits until
// ctx ends.
func (r *Router) WaitRoom(ctx context.Context, m *Message) error {
	size := itemSize(m)
	for {
		q := r.lockedQueue(m.Dest, false)
		if q == nil || !q.fullFor(size) {
			if q != nil {
				q.mu.Unlock()
			}
			return nil
		}
		if size > q.maxBytes {
			q.mu.Unlock()
			<-ctx.Done()
			return ctx.Err()
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		ch := q.room
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// QueueDepth returns the number of messages waiting (not in flight) in the queue of kind Queue at path;
// for tests and monitoring.
func (r *Router) QueueDepth(path []string) int {
	return r.QueueDepthOf(Destination{Kind: Queue, Path: path})
}

// QueueDepthOf returns the number of messages waiting (not in flight) in the queue d names, swapped
// out or not.
func (r *Router) QueueDepthOf(d Destination) int {
	q := r.lockedQueue(d, false)
	if q == nil {
		return 0
	}
	defer q.mu.Unlock()
	return q.waiting + q.swapped + len(q.parked)
}

// HasQueue reports whether the router currently keeps a queue for d (in use, holding messages, or idle
// within its AutoDeleteAfter).
func (r *Router) HasQueue(d Destination) bool {
	q := r.lockedQueue(d, false)
	if q == nil {
		return false
	}
	q.mu.Unlock()
	return true
}

// DeleteQueue removes the queue d names, with everything it holds, waiting or in flight; its consumers
// are closed (their Ack and Nack return false). It returns the number of messages discarded. Front-ends
// use it for a temporary queue whose owner went away.
func (r *Router) DeleteQueue(d Destination) int {
	var kb [256]byte
	key := AppendKey(kb[:0], d)
	r.qmu.Lock()
	defer r.qmu.Unlock()
	q := r.queues[string(key)]
	if q == nil {
		return 0
	}
	delete(r.queues, q.key)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dead = true
	q.stopIdleTimerLocked()
	n := q.held
	q.handBackLocked()
	for _, c := range slices.Concat(q.consumers, q.browsers) {
		c.closeLocked()
		c.unacked = nil
	}
	q.consumers, q.browsers, q.groups = nil, nil, nil
	q.levels = [MaxPriority + 1]waitList{}
	q.waiting, q.memBytes = 0, 0
	q.swapped, q.swappedBytes, q.parked = 0, 0, nil
	q.held, q.heldBytes = 0, 0
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
	r.discarded.Add(uint64(n))
	return n
}

// purgeLocked releases every message the queue holds, waiting in memory, parked, swapped out (loaded in
// windows to be released) or in flight, journalling each release, and closes its consumers and browsers
// (their Ack and Nack return false). It returns the number of messages released.
func (q *queue) purgeLocked() int {
	n := 0
	for _, c := range slices.Concat(q.consumers, q.browsers) {
		for _, it := range c.unacked {
			q.releaseLocked(it)
			n++
		}
		c.closeLocked()
		c.unacked, c.unackedBytes = nil, 0
	}
	q.consumers, q.browsers, q.groups, q.exclusive, q.next = nil, nil, nil, 0, 0
	w, err := q.purgeWaitingLocked(nil)
	n += w
	if err != nil { // a failed load: the journal keeps them; the journal's removal of the list deletes them
		n += q.swapped
		q.held -= q.swapped
		q.heldBytes -= q.swappedBytes
		q.swapped, q.swappedBytes = 0, 0
	}
	return n
}

// waitList is a queue's waiting messages of one priority in sequence order: a slice with a moving head,
// so that popping the head and putting a requeued message back in front are O(1).
type waitList struct {
	buf  []*qitem
	head int
}

func (w *waitList) len() int        { return len(w.buf) - w.head }
func (w *waitList) at(i int) *qitem { return w.buf[w.head+i] }

// insert places it in sequence order.
func (w *waitList) insert(it *qitem) {
	items := w.buf[w.head:]
	i := sort.Search(len(items), func(i int) bool { return items[i].order >= it.order })
	if i == 0 && w.head > 0 {
		w.head--
		w.buf[w.head] = it
		return
	}
	w.buf = slices.Insert(w.buf, w.head+i, it)
}

func (w *waitList) removeAt(i int) {
	if i == 0 {
		w.buf[w.head] = nil
		w.head++
		switch {
		case w.head == len(w.buf):
			if cap(w.buf) > 1024 {
				w.buf = nil // give back the memory of a drained burst
			} else {
				w.buf = w.buf[:0]
			}
			w.head = 0
		case w.head > 1024 && 2*w.head > len(w.buf):
			n := copy(w.buf, w.buf[w.head:])
			clear(w.buf[n:])
			w.buf, w.head = w.buf[:n], 0
		}
		return
	}
	w.buf = slices.Delete(w.buf, w.head+i, w.head+i+1)
}
