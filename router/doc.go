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
//
// Publish calls Sink.Deliver on the publisher's goroutine; Deliver must not block, and Publish never
// waits. A topic delivery a sink refuses (at its hard bound) is dropped and counted. Holding a publisher
// back while a subscriber is over its window is the front-ends' doing, between the packets they read
// (see Sink, Message.Publisher, Delivery.Paced for topics whose policy is SlowBlock, the default, and
// PublishResult.Pressure for full durable subscriptions).
//
// Whether a subscriber may receive a message is not the same question as whether it has room. A sink
// that may receive only part of what its filter matches (an access gate on a wildcard) implements
// Acceptor, and the router asks it before Deliver: a refused message is not for that subscriber, so it
// is neither delivered nor dropped there, a shared group offers it to its other members (and drops it
// only when some member that may receive it was full), and a queue consumer leaves it to the others. A
// durable subscription's DurableOptions.Match is the same question: a message it keeps out is not counted
// as delivered, so an MQTT 5 publisher whose message reached only gates hears "no matching subscribers".
// Deliver then means only "taken" or "full". The router finds the Acceptor once, at Subscribe or Consume, so
// the sinks without one pay a nil test.
//
// # Shared subscriptions
//
// Subscriptions with the same Share name and the same filter form a group (MQTT 5 $share/{group}/{filter})
// that receives each message once, through one member picked by Options.ShareStrategy, as EMQX users
// expect: round robin (the default) rotates; random picks uniformly; sticky gives one member everything
// until it leaves or is full, then sticks to the member that took the message; hash_clientid sends one
// publisher's messages (Message.SenderID; round robin without one) and hash_topic one topic's messages to
// one member while membership is unchanged. The hashes use rendezvous hashing over a random salt per
// member: a departing member's keys spread over the others, a joining one takes its 1/n share of them, and no
// other key moves. In every strategy a member that may not receive the message (Acceptor) or whose sink is
// full is passed over for the next one in turn; sticky keeps its member across such a refusal, which says
// nothing about the next message. A group counts a drop only when some member that may receive the
// message was full. The round-robin position and the sticky member live in state shared by the group's
// snapshots, so membership changes keep them; picking costs no allocation and no lock.
//
// A cluster link may take the groups of Topic messages over (SetSharedDispatch): Publish then leaves them
// alone, except for Internal messages and '$' topics, and the link hands each message NATS routed to
// this node to one group with DeliverShared. Without a link Publish dispatches every group, as above.
//
// # Durable subscriptions
//
// A durable subscription (durable.go) is a topic filter in the trie whose matches go into a queue of
// kind DurableSub named by the subscription, whether or not anyone consumes it, so it is journalled,
// swapped and bounded like any queue; queue policies of kind DurableSub configure it. STOMP durable
// subscriptions and an MQTT session's subscriptions are both this. It is owned by the principal that
// created it: only the owner consumes it (ConsumerOptions.Owner), changes or destroys it.
//
// # Queues
//
// A queue is created on first use and forgotten when it holds nothing and has no consumer (or after its
// policy's AutoDeleteAfter). Each message gets a queue sequence number on arrival (Delivery.QueueSeq).
// Waiting messages are dispatched highest Message.Priority first, in sequence order within a priority,
// round-robin among the active consumers that have credit (unacknowledged window, in messages and
// optionally bytes), whose sink is not full and that accept the message (ConsumerOptions.Match, FromSeq).
// A message no ready consumer accepts stays and later ones are tried. The messages of a Message.Group go
// to the consumer that took the group's first message while it lives. While an exclusive consumer is
// attached, only the earliest one is active. A browser consumer receives a snapshot of what the queue held
// when it attached, without consuming it, then a Delivery with BrowseEnd. A consumer whose sink refuses a
// message keeps no message; it waits for Consumer.Resume. Nack puts a message back among the waiting ones
// in its sequence position; Consumer.Close does so for its unacknowledged messages; both count a
// redelivery, and a message that reaches its policy's NakLimit moves to the policy's dead-letter queue
// (or is dropped without one).
//
// # Queues kept by a backend
//
// A QueueBackend (backend.go; router/cluster implements it over JetStream) may claim named queues and
// durable subscriptions' queues: the router then hands their messages to it (at Publish, or in the
// durable subscription's share of a topic publish) instead of queueing them, with the message's Tracker,
// so the publisher's acknowledgement waits for the backend's write as it waits for the Journal's. The
// queue in the router becomes a window onto the backend's backlog: Want tells the backend, under the
// queue's lock, how many messages the local consumers have credit for (their free credit less what
// waits); the backend feeds that many (Feed), and they are dispatched like any others. Every way a fed
// message leaves for good (acknowledged, expired, purged, dead-lettered once its copy is durable)
// settles it with the backend instead of the Journal, which never sees fed messages; when the queue's last
// consumer leaves, what it holds is handed back for other nodes' consumers; destroying a claimed durable
// subscription discards its backlog in the backend (Discard). Quotas and full policies do
// not apply to a claimed queue (the backend bounds its backlog); priority, groups, exclusive consumers,
// selectors and browsers see what the backend fed. Without a backend none of this costs anything but a
// nil test: a queued message stays 32 bytes (the backend's reference lives in a map of claimed queues).
//
// # Swapping
//
// A queue whose persistent messages are journalled (kind Queue or DurableSub, Options.Journal set) holds
// at most Options.SwapMessages waiting messages, and SwapBytes of them, in memory. Beyond that, arriving
// persistent messages stay in the journal only (the queue counts them) and are loaded back in windows
// through Journal.Load, in sequence order, as consumers drain the messages in memory to half the bound;
// non-persistent messages arriving meanwhile wait in memory for the loads to reach them, so sequence
// order holds across both. A backlog restored at startup (RestoreBacklog) is loaded the same way, so
// neither its size nor the startup time depends on it. What sees only the messages in memory: priority
// (a swapped-out backlog is dispatched by priority within each loaded window), selectors (a consumer
// whose selector refuses every message in a full window waits for other consumers to drain it),
// browsers and FullDropHead. In-flight messages are bounded by consumer credit, not by the window.
//
// A journalled queue also journals a delivered mark (Journal.Delivered) once per DeliveredWindow sequence
// numbers, before the deliveries it covers, so messages delivered but unacknowledged at a crash come
// back marked as redeliveries, without a write per delivery.
//
// Queue policies (Options.QueuePolicies, first filter match) set the quota, the full policy, NakLimit,
// the DLQ and AutoDeleteAfter. A queue holds at most its quota of messages and bytes, waiting plus
// unacknowledged (defaults Options.MaxQueueMessages and MaxQueueBytes). When full, FullBlock (default)
// stores nothing and returns ErrQueueFull: the front-end tells the publisher (STOMP waits with WaitRoom,
// then ERROR; MQTT closes or drops QoS 0); FullDropHead evicts the oldest waiting messages and FullDropTail
// drops the new one, both counted in PublishResult.Dropped. Topic subscribers are bounded by their sinks,
// which refuse (and the router counts a drop); under the topic policy SlowBlock, the default for every
// topic, they hold publishers back first (Delivery.Paced), and only SlowQueue drops at once. A full
// durable subscription under FullBlock drops the message for itself only (the topic's other subscribers
// have it) and, while a consumer drains it, asks the publisher to wait (PublishResult.Pressure).
//
// MaxSubscriptions bounds the topic subscriptions and queue consumers in use, counted with an atomic
// add on Subscribe and Consume and given back on Unsubscribe and when a consumer closes (its own Close,
// or its queue deleted or purged); MaxDurables bounds the durable subscriptions, except those restored
// from the journal.
//
// SetPolicies replaces the policies, quotas, MaxQueues, MaxDurables, MaxSubscriptions and ShareStrategy of
// a running router (a virtual
// host's configuration reload). They live in one immutable snapshot behind an atomic pointer, read once
// per publish, so the publish path takes no lock for them; SetPolicies swaps it under the queue map's
// lock (no queue is created under the old snapshot after the swap), then gives every existing queue the
// policy that now matches it, each under its own lock. A queue over a smaller new quota keeps what it
// holds; a larger one wakes publishers waiting for room.
//
// # Monitoring and administration
//
// Stats counts what happened to messages with atomic adds on the router's own counters, made only where
// a message is dropped or unrouted: a message delivered costs nothing more. Dropped is the sum of its
// reasons: a queue's or durable subscription's full policy (DroppedQueueFull), a topic subscriber's full
// sink (DroppedSubscriberFull), expiry while queued or swapped out (DroppedExpired), and a poisoned
// message with no dead-letter queue to take it (DroppedPoisoned). A publish refused with ErrQueueFull is not a
// drop (the publisher is told: QueueFull), nor is a topic publish that matched nothing (NoRoute: no
// subscriber missed it), nor a message discarded on purpose with its queue or by a purge (Discarded).
// Drops a front-end decides on its own (a slow subscriber's QoS 0 backlog) are counted there.
//
// Queues and Topics return snapshots sorted by kind and path, segment by segment, so that a caller
// paging through them sees a stable order; paths stay canonical segments, for the caller to render.
// Queues lists every durable subscription, even one whose queue the router has forgotten (empty, no
// consumer). Topics lists the filters in the trie with their subscription counts (durable and shared
// members among them) and the topics holding a retained message, walking the trie under its read lock.
//
// The administrative operations act on waiting messages only, as RabbitMQ's do: PurgeQueue removes what
// waits, in memory or swapped out (loaded in windows to be removed), and leaves delivered, unacknowledged
// messages with their consumers; MoveMessages moves waiting messages oldest first, by sequence number,
// into a target created as a publish creates it, and stops at a full target whatever its full policy, so
// a move never drops anything. DeleteRetained clears a retained message without delivering the empty
// message a clearing publish would. Everything they change is journalled, in batches of 1000 messages:
// a Journal that is an AtomicJournal writes each batch as one unit, so a moved message's arrival and
// departure are durable together (one queue after a crash, never both nor neither); with a plain
// Journal each change goes on its own, arrival first, as dead-lettering does.
//
// # Locks
//
// Lock order, outermost first:
//
//	durable subscriptions -> router trie (RWMutex) -> match cache mutex
//	durable subscriptions -> router queue map -> queue mutex -> sink's locks (session, outbound)
//	queue mutex -> QueueBackend's own locks (Want, Settle)
//	queue mutex -> queue mutex: MoveMessages only, the two taken in key order after the map is released
//
// The retained store has its own lock and is never held with another. The retained-change lock (retainMu)
// orders a change with its Journal call and its watcher (WatchRetained: a cluster link that replicates
// retained messages and applies the other nodes' with ApplyRetained); neither calls back into the router. Topic fan-out holds no router lock
// while calling Deliver. Queue dispatch runs on the caller's goroutine under the queue's mutex, and Deliver
// is called with that mutex held: a sink must never call back into the router from Deliver (doing so
// deadlocks); it may from any other goroutine, for example Resume from its writer after draining.
package router
