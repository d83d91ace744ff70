package router

import (
	"fmt"
	"slices"
)

// DefaultCredit is the unacknowledged-message window of a consumer whose ConsumerOptions.Credit is 0.
const DefaultCredit = 1000

// ConsumerOptions configure one queue consumer.
type ConsumerOptions struct {
	// Credit is the most unacknowledged messages the consumer holds at once; 0 means DefaultCredit.
	// Ignored with AutoAck and for browsers.
	Credit int
	// CreditBytes, when positive, also bounds the bytes (bodies and headers) of the unacknowledged
	// messages; a consumer always gets at least one message. Ignored with AutoAck and for browsers.
	CreditBytes int64
	// AutoAck acknowledges a message as soon as the consumer's Sink.Deliver returns true.
	AutoAck bool
	// Match, when set, selects the messages this consumer takes; a message it refuses stays in the queue
	// for other consumers. It runs under the queue's lock and must not call the router.
	Match func(*Message) bool
	// Browser makes a non-destructive consumer: it receives (without acknowledging) every message the
	// queue holds, waiting or in flight, in sequence order, then one Delivery with BrowseEnd set, and
	// nothing after that.
	Browser bool
	// Exclusive: while an exclusive consumer is attached, the earliest attached one receives every
	// message and the other consumers of the queue none; when it leaves, the next exclusive one takes over.
	Exclusive bool
	// FromSeq restricts the consumer to messages whose queue sequence number is at least FromSeq; a
	// browser starts there. -1 means only messages that arrive after the consumer attaches; 0, every one.
	FromSeq int64
	// AckQoS0 acknowledges a delivery whose QoS, min(message QoS, the subscription's QoS), is 0 as soon
	// as the sink takes it: at most once needs no acknowledgement (MQTT).
	AckQoS0 bool
	// Owner is the consuming principal. A durable subscription's queue admits only its owner
	// (ErrNotOwner), and only while the subscription exists (ErrNoDurable).
	Owner string
}

// Consumer is one competing (or browsing) consumer of a queue.
type Consumer struct {
	q            *queue
	sub          *Subscription
	credit       int
	creditBytes  int64
	autoAck      bool
	ackQoS0      bool
	match        func(*Message) bool
	browser      bool
	exclusive    bool
	fromSeq      uint64
	browse       []*qitem // browser: what the queue held when it attached, in sequence order, not yet sent
	browseDone   bool
	unacked      map[uint64]*qitem
	unackedBytes int64
	blocked      bool // its sink reported full; waits for Resume
	closed       bool
}

// closeLocked marks c closed, once, giving back its place under MaxSubscriptions.
func (c *Consumer) closeLocked() {
	c.closed = true
	c.q.r.nsubs.Add(-1)
}

func (c *Consumer) readyLocked() bool {
	if c.closed || c.blocked {
		return false
	}
	if c.autoAck {
		return true
	}
	return len(c.unacked) < c.credit && (c.creditBytes <= 0 || len(c.unacked) == 0 || c.unackedBytes < c.creditBytes)
}

func (c *Consumer) accepts(it *qitem) bool {
	return it.order >= c.fromSeq && (c.match == nil || c.match(it.msg))
}

func anyReady(cs []*Consumer) bool {
	for _, c := range cs {
		if c.readyLocked() {
			return true
		}
	}
	return false
}

// settleLocked removes the delivery seq from c's unacknowledged set.
func (c *Consumer) settleLocked(seq uint64) (*qitem, bool) {
	it, ok := c.unacked[seq]
	if ok {
		delete(c.unacked, seq)
		c.unackedBytes -= it.size
	}
	return it, ok
}

// Ack acknowledges the delivery with sequence number seq: the message is gone for good. It reports false
// for an unknown or already settled seq.
func (c *Consumer) Ack(seq uint64) bool {
	q := c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := c.settleLocked(seq)
	if !ok {
		return false
	}
	q.releaseLocked(it)
	q.dispatchLocked()
	return true
}

// Nack rejects the delivery with sequence number seq: the message goes back among the waiting ones in
// its sequence position (normally the head) with Redeliveries+1 and is dispatched again, unless it
// reached its policy's NakLimit: then it moves to the policy's dead-letter queue, or is dropped without
// one. It reports false for an unknown or already settled seq.
func (c *Consumer) Nack(seq uint64) bool {
	q := c.q
	q.mu.Lock()
	it, ok := c.settleLocked(seq)
	if !ok {
		q.mu.Unlock()
		return false
	}
	var dead []*qitem
	if q.requeueLocked(it) {
		dead = append(dead, it)
	}
	q.dispatchLocked()
	q.mu.Unlock()
	q.deadLetter(dead)
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

// Close detaches the consumer. Its unacknowledged messages go back among the waiting ones in sequence
// order, with Redeliveries+1 (those reaching the NakLimit are dead-lettered), and are dispatched to the
// remaining consumers; the message groups it owned find new owners. Close is idempotent.
func (c *Consumer) Close() {
	q := c.q
	q.mu.Lock()
	if c.closed {
		q.mu.Unlock()
		return
	}
	c.closeLocked()
	if c.browser {
		c.browse = nil
		q.browsers = slices.DeleteFunc(q.browsers, func(x *Consumer) bool { return x == c })
	} else if i := slices.Index(q.consumers, c); i >= 0 {
		q.consumers = slices.Delete(q.consumers, i, i+1)
		if c.exclusive {
			q.exclusive--
		}
		if q.next > i {
			q.next--
		}
		if q.next >= len(q.consumers) {
			q.next = 0
		}
	}
	for g, owner := range q.groups {
		if owner == c {
			delete(q.groups, g)
		}
	}
	var dead []*qitem
	for _, it := range c.unacked {
		if q.requeueLocked(it) {
			dead = append(dead, it)
		}
	}
	c.unacked, c.unackedBytes = nil, 0
	q.dispatchLocked()
	q.returnFedLocked()
	idle := q.idleLocked()
	q.mu.Unlock()
	q.deadLetter(dead)
	if idle {
		q.r.queueIdle(q)
	}
}

// Consume attaches a consumer to the queue s.Filter names (literal, kind Queue, TempQueue or DurableSub),
// creating the queue on first use, and dispatches what waits.
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
	if s.Filter.Kind == DurableSub {
		if err := r.checkDurableConsumer(s.Filter.Destination(), o.Owner); err != nil {
			return nil, err
		}
	}
	if !r.takeSubscription() {
		return nil, ErrTooManySubscriptions
	}
	credit := o.Credit
	if credit <= 0 {
		credit = DefaultCredit
	}
	c := &Consumer{sub: s, credit: credit, creditBytes: o.CreditBytes, autoAck: o.AutoAck || o.Browser, ackQoS0: o.AckQoS0,
		match: acceptorMatch(s.Sink, o.Match), browser: o.Browser, exclusive: o.Exclusive && !o.Browser, unacked: make(map[uint64]*qitem)}
	q, err := r.lockedQueueLimit(s.Filter.Destination(), true, true)
	if err != nil {
		r.nsubs.Add(-1)
		return nil, err
	}
	c.q = q
	q.stopIdleTimerLocked()
	switch {
	case o.FromSeq < 0:
		c.fromSeq = q.arrivals + 1
	case o.FromSeq > 0:
		c.fromSeq = uint64(o.FromSeq)
	}
	if c.browser {
		q.snapshotLocked(c)
		q.browsers = append(q.browsers, c)
	} else {
		q.consumers = append(q.consumers, c)
		if c.exclusive {
			q.exclusive++
		}
	}
	q.dispatchLocked()
	q.mu.Unlock()
	return c, nil
}

// acceptorMatch folds a sink's Acceptor into a consumer's Match: a message either refuses stays in the
// queue for other consumers.
func acceptorMatch(sink Sink, match func(*Message) bool) func(*Message) bool {
	a, ok := sink.(Acceptor)
	switch {
	case !ok:
		return match
	case match == nil:
		return a.Accepts
	}
	return func(m *Message) bool { return a.Accepts(m) && match(m) }
}
