// Package router routes messages inside one virtual host. It knows nothing about wire formats: front-ends
// turn names into canonical destinations with a Grammar at the edge and implement Sink to receive.
//
// # Destinations and grammars
//
// A Destination is (Kind, Path). A Grammar maps one protocol's names onto destinations and filters and
// back: separator, one-level and many-level wildcards (whole segment only), {regex} segments (anchored
// RE2, compiled once at subscribe, at most MaxRegexSegments of at most MaxRegexLen bytes per filter), a
// part pattern every literal segment must match, kind prefixes (longest wins) and %XX escaping. Every
// MQTT topic renders in STOMP and parses back to the same path, and back to MQTT byte for byte.
//
// # Topics
//
// Topic subscriptions live in a trie (literal map, one-level child, many-level child and deduplicated regex
// edges per level). A topic whose first segment starts with '$' is not matched by a wildcard at the first
// level [MQTT-4.7.2-1]. Match results are immutable snapshots shared by every reader, cached per topic in a
// bounded cache that a wildcard subscribe or unsubscribe invalidates by bumping a generation counter.
// Shared subscriptions (Subscription.Share) receive each message once per group, round-robin.
//
// Publish calls Sink.Deliver on the publisher's goroutine; Deliver must not block. A topic delivery a sink
// refuses (its outbound queue is full) is dropped and counted.
//
// # Queues
//
// A queue is created on first use and forgotten when it holds nothing and has no consumer. Messages are
// dispatched in FIFO order, round-robin among consumers that have credit (unacknowledged window) and whose
// sink is not full. A consumer whose sink refuses a message keeps no message; it waits for
// Consumer.Resume. Nack puts a message back at the head; Consumer.Close puts its unacknowledged messages
// back at the head in arrival order; both count a redelivery.
//
// Full-queue policy: a queue holds at most Options.MaxQueueMessages messages and Options.MaxQueueBytes
// bytes, waiting plus unacknowledged. Publish to a full queue stores nothing and returns ErrQueueFull
// (drop-tail); the front-end tells the publisher (STOMP ERROR or receipt withheld, MQTT 5 reason code) or
// drops QoS 0. Topic subscribers are bounded by their sinks, which refuse (and the router counts a drop).
//
// # Locks
//
// Lock order, outermost first:
//
//	virtual host -> router trie (RWMutex) -> match cache mutex
//	router queue map -> queue mutex -> sink's outbound lock
//
// The retained store has its own lock and is never held with another. Topic fan-out holds no router lock
// while calling Deliver. Queue dispatch runs on the caller's goroutine under the queue's mutex, and Deliver
// is called with that mutex held: a sink must never call back into the router from Deliver (doing so
// deadlocks); it may from any other goroutine, for example Resume from its writer after draining.
package router
