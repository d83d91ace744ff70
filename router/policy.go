package router

import "time"

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
// filter matches a queue's destination (same kind, wildcards allowed) applies, resolved once when the queue
// is created. A queue no policy matches uses the Options defaults.
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

// queuePolicy returns the first queue policy matching d, or nil.
func (r *Router) queuePolicy(d Destination) *QueuePolicy {
	for i := range r.opts.QueuePolicies {
		p := &r.opts.QueuePolicies[i]
		if p.Filter.Matches(d) {
			return p
		}
	}
	return nil
}

// slowBlocks reports whether the first topic policy matching d blocks publishers on slow consumers.
func (r *Router) slowBlocks(d Destination) bool {
	for i := range r.opts.TopicPolicies {
		p := &r.opts.TopicPolicies[i]
		if p.Filter.Matches(d) {
			return p.SlowConsumer == SlowBlock
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
