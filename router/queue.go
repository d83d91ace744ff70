package router

import (
	"fmt"
	"slices"
	"sync"
)

// DefaultCredit is the unacknowledged-message window of a consumer whose ConsumerOptions.Credit is 0.
const DefaultCredit = 1000

// ConsumerOptions configure one queue consumer.
type ConsumerOptions struct {
	// Credit is the most unacknowledged messages the consumer holds at once; 0 means DefaultCredit.
	// Ignored with AutoAck.
	Credit int
	// AutoAck acknowledges a message as soon as the consumer's Sink.Deliver returns true.
	AutoAck bool
}

// qitem is one message held by a queue, waiting or in flight.
type qitem struct {
	msg          *Message
	order        uint64 // arrival number: requeued messages go back in arrival order
	redeliveries uint32
	size         int64
}

// queue is one named queue. Everything in it is guarded by mu, which is also held while a consumer's
// Sink.Deliver runs: sinks must not call back into the router from Deliver.
type queue struct {
	r    *Router
	key  string
	mu   sync.Mutex
	wait deque
	// held and heldBytes count every message the queue holds: waiting and in flight (unacked). They are
	// what Options.MaxQueueMessages and MaxQueueBytes bound.
	held      int
	heldBytes int64
	consumers []*Consumer
	next      int    // round-robin cursor into consumers
	seq       uint64 // last delivery sequence number
	arrivals  uint64
	dead      bool // removed from the router's map; publishers holding it must look again
}

// Consumer is one competing consumer of a queue.
type Consumer struct {
	q       *queue
	sub     *Subscription
	credit  int
	autoAck bool
	unacked map[uint64]*qitem
	blocked bool // its sink reported full; waits for Resume
	closed  bool
}

func itemSize(m *Message) int64 {
	n := int64(len(m.Body) + len(m.ContentType))
	for _, h := range m.Headers {
		n += int64(len(h.Name) + len(h.Value))
	}
	return n
}

// enqueueLocked stores m (drop-tail when full) and dispatches. It returns the deliveries made.
func (q *queue) enqueueLocked(m *Message) (int, error) {
	o := &q.r.opts
	size := itemSize(m)
	if q.held+1 > o.MaxQueueMessages || q.heldBytes+size > o.MaxQueueBytes {
		return 0, ErrQueueFull
	}
	q.arrivals++
	q.wait.pushBack(&qitem{msg: m, order: q.arrivals, size: size})
	q.held++
	q.heldBytes += size
	return q.dispatchLocked(), nil
}

func (q *queue) releaseLocked(it *qitem) {
	q.held--
	q.heldBytes -= it.size
}

func (c *Consumer) readyLocked() bool {
	return !c.closed && !c.blocked && (c.autoAck || len(c.unacked) < c.credit)
}

// dispatchLocked hands waiting messages, in FIFO order, to consumers round-robin among those with credit
// and room. A message whose consumer's sink is full goes back to the head and that consumer waits for
// Resume. Expired messages are dropped. It returns the deliveries made.
func (q *queue) dispatchLocked() int {
	delivered := 0
	var now int64
	for q.wait.len() > 0 {
		var c *Consumer
		n := len(q.consumers)
		for i := 0; i < n; i++ {
			x := q.consumers[(q.next+i)%n]
			if x.readyLocked() {
				c = x
				q.next = (q.next + i + 1) % n
				break
			}
		}
		if c == nil {
			break
		}
		it := q.wait.popFront()
		if it.msg.Expires != 0 {
			if now == 0 {
				now = nowMillis()
			}
			if it.msg.Expires <= now {
				q.releaseLocked(it)
				q.r.dropped.Add(1)
				continue
			}
		}
		q.seq++
		d := Delivery{Msg: it.msg, Sub: c.sub, Seq: q.seq, Redeliveries: it.redeliveries}
		if !c.sub.Sink.Deliver(d) {
			q.wait.pushFront(it)
			c.blocked = true
			continue
		}
		delivered++
		if c.autoAck {
			q.releaseLocked(it)
		} else {
			c.unacked[q.seq] = it
		}
	}
	if delivered > 0 {
		q.r.delivered.Add(uint64(delivered))
	}
	return delivered
}

// Ack acknowledges the delivery with sequence number seq: the message is gone for good. It reports false
// for an unknown or already settled seq.
func (c *Consumer) Ack(seq uint64) bool {
	q := c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := c.unacked[seq]
	if !ok {
		return false
	}
	delete(c.unacked, seq)
	q.releaseLocked(it)
	q.dispatchLocked()
	return true
}

// Nack rejects the delivery with sequence number seq: the message goes back to the head of the queue with
// Redeliveries+1 and is dispatched again. It reports false for an unknown or already settled seq.
func (c *Consumer) Nack(seq uint64) bool {
	q := c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := c.unacked[seq]
	if !ok {
		return false
	}
	delete(c.unacked, seq)
	it.redeliveries++
	q.wait.pushFront(it)
	q.dispatchLocked()
	return true
}

// Resume tells the queue the consumer's sink has room again after a Deliver returned false, and
// dispatches what waits.
func (c *Consumer) Resume() {
	q := c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if c.closed {
		return
	}
	c.blocked = false
	q.dispatchLocked()
}

// Unacked returns the number of messages delivered to c and not yet acknowledged.
func (c *Consumer) Unacked() int {
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return len(c.unacked)
}

// Close detaches the consumer. Its unacknowledged messages go back to the head of the queue in their
// original arrival order, with Redeliveries+1, and are dispatched to the remaining consumers. Close is
// idempotent.
func (c *Consumer) Close() {
	q := c.q
	q.mu.Lock()
	if c.closed {
		q.mu.Unlock()
		return
	}
	c.closed = true
	if i := slices.Index(q.consumers, c); i >= 0 {
		q.consumers = slices.Delete(q.consumers, i, i+1)
		if q.next > i {
			q.next--
		}
		if q.next >= len(q.consumers) {
			q.next = 0
		}
	}
	items := make([]*qitem, 0, len(c.unacked))
	for _, it := range c.unacked {
		items = append(items, it)
	}
	c.unacked = nil
	// Push the latest arrival first so the earliest ends up at the head.
	slices.SortFunc(items, func(a, b *qitem) int {
		switch {
		case a.order > b.order:
			return -1
		case a.order < b.order:
			return 1
		}
		return 0
	})
	for _, it := range items {
		it.redeliveries++
		q.wait.pushFront(it)
	}
	q.dispatchLocked()
	idle := len(q.consumers) == 0 && q.held == 0
	q.mu.Unlock()
	if idle {
		q.r.dropIdleQueue(q)
	}
}

// deque is a FIFO ring buffer that also takes items back at the head.
type deque struct {
	buf  []*qitem
	head int
	n    int
}

func (d *deque) len() int { return d.n }

func (d *deque) grow() {
	nb := make([]*qitem, max(16, 2*len(d.buf)))
	for i := 0; i < d.n; i++ {
		nb[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = nb, 0
}

func (d *deque) pushBack(it *qitem) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.n)%len(d.buf)] = it
	d.n++
}

func (d *deque) pushFront(it *qitem) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = it
	d.n++
}

func (d *deque) popFront() *qitem {
	it := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	if d.n == 0 && len(d.buf) > 1024 {
		d.buf, d.head = nil, 0 // give back the memory of a drained burst
	}
	return it
}

// queueKind reports whether k names a queue-like destination.
func queueKind(k Kind) bool { return k == Queue || k == TempQueue || k == DurableSub }

// lockedQueue returns the queue for d, created on first use when create is set, with its mutex held.
// Looking up an existing queue allocates nothing.
func (r *Router) lockedQueue(d Destination, create bool) *queue {
	var kb [256]byte
	key := appendPathKey(kb[:0], int(d.Kind), d.Path)
	for {
		r.qmu.RLock()
		q := r.queues[string(key)]
		r.qmu.RUnlock()
		if q == nil {
			if !create {
				return nil
			}
			r.qmu.Lock()
			if q = r.queues[string(key)]; q == nil {
				q = &queue{r: r, key: string(key)}
				r.queues[q.key] = q
			}
			r.qmu.Unlock()
		}
		q.mu.Lock()
		if !q.dead {
			return q
		}
		q.mu.Unlock()
	}
}

// dropIdleQueue forgets q if it still holds nothing and has no consumer, so queues named once do not
// accumulate. Lock order: router queue map, then the queue.
func (r *Router) dropIdleQueue(q *queue) {
	r.qmu.Lock()
	defer r.qmu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.consumers) == 0 && q.held == 0 && !q.dead && r.queues[q.key] == q {
		q.dead = true
		delete(r.queues, q.key)
	}
}

// Consume attaches a competing consumer to the queue s.Filter names (literal, kind Queue, TempQueue or
// DurableSub), creating the queue on first use, and dispatches what waits.
func (r *Router) Consume(s *Subscription, o ConsumerOptions) (*Consumer, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if s.Sink == nil {
		return nil, fmt.Errorf("%w: subscription has no sink", ErrInvalidFilter)
	}
	if !queueKind(s.Filter.Kind) {
		return nil, fmt.Errorf("%w: a %s is not a queue", ErrInvalidFilter, s.Filter.Kind)
	}
	if len(s.Filter.Segs) == 0 || !s.Filter.IsLiteral() {
		return nil, fmt.Errorf("%w: a queue name must be literal", ErrInvalidFilter)
	}
	credit := o.Credit
	if credit <= 0 {
		credit = DefaultCredit
	}
	c := &Consumer{sub: s, credit: credit, autoAck: o.AutoAck, unacked: make(map[uint64]*qitem)}
	q := r.lockedQueue(s.Filter.Destination(), true)
	c.q = q
	q.consumers = append(q.consumers, c)
	q.dispatchLocked()
	q.mu.Unlock()
	return c, nil
}

// QueueDepth returns the number of messages waiting (not in flight) in the queue of kind Queue at path;
// for tests and monitoring.
func (r *Router) QueueDepth(path []string) int {
	return r.QueueDepthOf(Destination{Kind: Queue, Path: path})
}

// QueueDepthOf returns the number of messages waiting (not in flight) in the queue d names.
func (r *Router) QueueDepthOf(d Destination) int {
	q := r.lockedQueue(d, false)
	if q == nil {
		return 0
	}
	defer q.mu.Unlock()
	return q.wait.len()
}

// DeleteQueue removes the queue d names, with everything it holds, waiting or in flight; its consumers
// are closed (their Ack and Nack return false). It returns the number of messages discarded. Front-ends
// use it for a temporary queue whose owner went away.
func (r *Router) DeleteQueue(d Destination) int {
	var kb [256]byte
	key := appendPathKey(kb[:0], int(d.Kind), d.Path)
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
	n := q.held
	for _, c := range q.consumers {
		c.closed = true
		c.unacked = nil
	}
	q.consumers = nil
	q.wait = deque{}
	q.held, q.heldBytes = 0, 0
	return n
}
