package router

import (
	"slices"
	"time"
)

// FullPolicy says what a queue does with a message that arrives when it holds its quota.
type FullPolicy uint8

// Queue full policies.
const (
	// FullBlock refuses the message with ErrQueueFull; the publisher may wait with WaitRoom and retry.
	FullBlock FullPolicy = iota
	// FullDropHead drops the oldest waiting messages until the new one fits; if it cannot fit even then
	// (everything held is in flight), the new message is dropped.
	FullDropHead
	// FullDropTail drops the new message.
	FullDropTail
)

// QueuePolicy configures the queues its Filter matches: the first policy in Options.QueuePolicies whose
// filter matches a queue's destination (same kind, wildcards allowed) applies, resolved when the queue is
// created and again by SetPolicies. A queue no policy matches uses the Options defaults.
type QueuePolicy struct {
	Filter Filter
	// NakLimit: once a message has been redelivered this many times (NACKs, and consumers closed while
	// holding it), it is dead-lettered instead of requeued. 0 = redeliver forever.
	NakLimit int
	// DLQ is the path of the queue (kind Queue) that receives dead-lettered messages; a segment "*" stands
	// for the queue's own path. Empty = dead-lettered messages are dropped (and counted).
	DLQ []string
	// MaxMessages and MaxBytes bound what the queue holds, waiting plus unacknowledged; 0 = the Options
	// default.
	MaxMessages int
	MaxBytes    int64
	// Full is what a publish to a full queue does.
	Full FullPolicy
	// AutoDeleteAfter keeps an empty queue without consumers (and its sequence numbering) this long before
	// forgetting it; 0 forgets it at once, as it holds nothing.
	AutoDeleteAfter time.Duration
}

// SlowConsumerPolicy says what a topic does when a subscriber's sink refuses a delivery.
type SlowConsumerPolicy uint8

// Topic slow-consumer policies.
const (
	// SlowQueue drops the delivery (the subscriber's own bounded queue is full) and counts it.
	SlowQueue SlowConsumerPolicy = iota
	// SlowBlock holds the publisher back, between the packets its front-end reads, while a subscriber
	// over its window makes room, for a bounded time (Delivery.Paced); then the subscriber drops.
	SlowBlock
)

// TopicPolicy configures the topics its Filter matches (first match in Options.TopicPolicies wins).
type TopicPolicy struct {
	Filter       Filter
	SlowConsumer SlowConsumerPolicy
}

// MaxPriority is the highest message priority queues distinguish.
const MaxPriority = 9

// Policies are the Options a running router takes again with SetPolicies: a virtual host's queue,
// durable-subscription and topic policies, quotas and queue limit, and shared-subscription strategy,
// changed by a configuration reload. Zero fields mean the defaults, as in Options.
type Policies struct {
	MaxQueueMessages int
	MaxQueueBytes    int64
	MaxQueues        int
	QueuePolicies    []QueuePolicy
	TopicPolicies    []TopicPolicy
	ShareStrategy    ShareStrategy
	// MaxDurables and MaxSubscriptions bound what is created from now on; nothing in use is removed
	// for them.
	MaxDurables      int
	MaxSubscriptions int
}

// policies returns the Policies part of o.
func (o *Options) policies() Policies {
	return Policies{MaxQueueMessages: o.MaxQueueMessages, MaxQueueBytes: o.MaxQueueBytes, MaxQueues: o.MaxQueues,
		QueuePolicies: o.QueuePolicies, TopicPolicies: o.TopicPolicies, ShareStrategy: o.ShareStrategy,
		MaxDurables: o.MaxDurables, MaxSubscriptions: o.MaxSubscriptions}
}

// policies is the router's compiled Policies: immutable once stored in Router.pol, so the publish path
// reads it with one atomic load and no lock.
type policies struct {
	maxMsgs     int
	maxBytes    int64
	maxQueues   int
	maxDurables int
	maxSubs     int
	queues      []QueuePolicy
	topics      []TopicPolicy
	share       ShareStrategy
}

// compilePolicies applies the defaults and takes its own copies of p's policies, compiled; a policy that
// does not validate would match wrongly, so it is left out.
func compilePolicies(p Policies) *policies {
	c := &policies{maxMsgs: p.MaxQueueMessages, maxBytes: p.MaxQueueBytes, maxQueues: p.MaxQueues, share: p.ShareStrategy,
		maxDurables: p.MaxDurables, maxSubs: p.MaxSubscriptions}
	if c.maxMsgs <= 0 {
		c.maxMsgs = DefaultMaxQueueMessages
	}
	if c.maxDurables <= 0 {
		c.maxDurables = DefaultMaxDurables
	}
	if c.maxSubs <= 0 {
		c.maxSubs = DefaultMaxSubscriptions
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxQueueBytes
	}
	for _, qp := range p.QueuePolicies {
		qp.Filter.Segs = slices.Clone(qp.Filter.Segs)
		qp.DLQ = slices.Clone(qp.DLQ)
		if checkFilter(&qp.Filter) == nil {
			c.queues = append(c.queues, qp)
		}
	}
	for _, tp := range p.TopicPolicies {
		tp.Filter.Segs = slices.Clone(tp.Filter.Segs)
		if checkFilter(&tp.Filter) == nil {
			c.topics = append(c.topics, tp)
		}
	}
	return c
}

// SetPolicies replaces the router's policies while it runs. Queues and durable subscriptions created from
// now on take them, and every existing one takes the policy that matches it now, with its quota, full
// policy, NakLimit, DLQ and AutoDeleteAfter: a queue holding more than its new quota keeps what it holds,
// and refuses or drops arrivals (its full policy) until it is below. MaxQueues, MaxDurables and
// MaxSubscriptions bound what is created from now on; nothing is deleted for them. Publishes running meanwhile use the old policies or the new ones.
func (r *Router) SetPolicies(p Policies) {
	pol := compilePolicies(p)
	r.qmu.Lock() // orders the swap with queue creation: no queue is made under the old policies after it
	r.pol.Store(pol)
	queues := make([]*queue, 0, len(r.queues))
	for _, q := range r.queues {
		queues = append(queues, q)
	}
	r.qmu.Unlock()
	for _, q := range queues {
		q.mu.Lock()
		q.applyPolicyLocked(pol)
		if !q.fullFor(0) {
			q.wakeRoomLocked() // a larger quota: publishers waiting for room may go on
		}
		q.mu.Unlock()
	}
}

// applyPolicyLocked gives q the policy of pol that matches it, and its quota.
func (q *queue) applyPolicyLocked(pol *policies) {
	q.pol = pol.queuePolicy(q.dest)
	q.maxMsgs, q.maxBytes = pol.quota(q.dest)
}

// quota returns the message and byte bounds of the queue d names: its policy's, else the defaults.
func (p *policies) quota(d Destination) (int, int64) {
	msgs, bytes := p.maxMsgs, p.maxBytes
	if qp := p.queuePolicy(d); qp != nil {
		if qp.MaxMessages > 0 {
			msgs = qp.MaxMessages
		}
		if qp.MaxBytes > 0 {
			bytes = qp.MaxBytes
		}
	}
	return msgs, bytes
}

// queuePolicy returns the first queue policy matching d, or nil.
func (p *policies) queuePolicy(d Destination) *QueuePolicy {
	for i := range p.queues {
		if qp := &p.queues[i]; qp.Filter.Matches(d) {
			return qp
		}
	}
	return nil
}

// slowBlocks reports whether the first topic policy matching d blocks publishers on slow consumers.
func (p *policies) slowBlocks(d Destination) bool {
	for i := range p.topics {
		if tp := &p.topics[i]; tp.Filter.Matches(d) {
			return tp.SlowConsumer == SlowBlock
		}
	}
	return false
}

// dlqDest expands a DLQ path template for the queue at path; ok is false when there is no DLQ.
func dlqDest(tmpl, path []string) (Destination, bool) {
	if len(tmpl) == 0 {
		return Destination{}, false
	}
	out := make([]string, 0, len(tmpl)+len(path))
	for _, s := range tmpl {
		if s == "*" {
			out = append(out, path...)
		} else {
			out = append(out, s)
		}
	}
	return Destination{Kind: Queue, Path: out}, true
}
