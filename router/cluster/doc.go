// Package cluster joins the routers of several Lyre nodes over NATS, so that a topic message published on
// one node reaches the matching subscribers on every node, and a queue is one queue across the nodes,
// replicated in JetStream (DESIGN.md §9).
//
// # Design
//
// A node runs an embedded nats-server whose route listener and routes come from the cluster block (or
// connects to an external NATS, nats_url), and one nats.go client. For each virtual host the Link is one
// more subscriber and publisher on the host's router; the router knows nothing about it:
//
//   - Interest. router.WatchTopics tells the link about every Topic subscription added or removed.
//     Each filter becomes NATS subjects (filterSubjects): a literal level one token, '+'/'*' a '*',
//     '#'/'**' a '>' (and, after a first level, also the parent subject, since "a/#" matches "a"
//     and "a.>" does not), a {regex} level a '*': wider than the filter, and the local router's own
//     trie drops what it does not match. A subject has one NATS subscription however many local
//     filters need it (reference counted), unsubscribed when the last one goes. NATS propagates the
//     interest over its routes, so a message travels only to nodes with a matching subscription.
//   - Out. A subscription to '#' (the link's Sink) sees every local topic message and queues it
//     (bounded; a full queue drops and the router counts it) for a goroutine that publishes it on
//     "lyre.<vhost>.t.<level>...". It never blocks the publisher.
//   - In. Messages from NATS are published into the host's router as if by a local publisher, so every
//     front-end's subscribers get them once. The link is their Message.Publisher, and refuses them as
//     an Acceptor, so they never go back out (no loop). The client connects with NoEcho, so a node
//     never gets its own messages back (its local subscribers already had them from the router).
//
// Subject tokens: levels are encoded so that any level (empty, with '.', '*', '>', spaces, any byte)
// maps to one valid token and back: bytes [A-Za-z0-9_-] as they are, any other byte as '~' and two
// upper-case hex digits, the empty level as a lone '~'. The virtual host name is encoded the same way.
//
// Duplicates: NATS delivers a message once per matching subscription of a connection, and one message
// can match several of a node's subjects ("a/+" and "a/b"). All subscriptions feed one channel read by
// one goroutine; each message carries its origin (a random id per link incarnation) and a sequence
// number increasing per origin, and a message whose sequence number is not above the last one seen from
// its origin is dropped (Stats.Duplicates). NATS keeps one publisher's order to one subscriber, so the
// copies are adjacent and this never drops a first copy.
//
// Envelope (codec.go): a small binary header before the payload carries QoS, the persistent, retain and
// UTF-8 flags, priority, remaining lifetime (not the absolute expiry, so clocks need not agree; an
// expired message is not sent), content type, sender id, message group, reply-to, correlation data and
// the application headers (STOMP headers, MQTT 5 user properties) in order, repeats kept. The decoder
// checks every length against what is left before allocating; FuzzDecode exercises it.
//
// # Queues
//
// With JetStream (a directory, or an external NATS that has it) named queues (kind Queue: STOMP
// /queue/x, MQTT names under the connector's queue_prefix) are the cluster's. The link is each host
// router's router.QueueBackend (queues.go); the router never imports NATS.
//
//   - Storage. One stream per virtual host, "LYRE_Q_<vhost>", on subjects "lyre.<vhost>.q.<level>...",
//     file storage, R = the configured replicas, work-queue retention: a message is deleted once
//     acknowledged, so the stream holds exactly the queues' backlogs. One stream per host rather than per
//     queue because every stream is a RAFT group; queues come and go by name as on a single node,
//     and a stream per queue would make each first SEND wait for a RAFT group to form. Work-queue
//     rather than limits retention because a queue message is consumed once: limits retention would
//     keep consumed messages until an age or size limit, and a node restarting could not tell them from
//     unconsumed ones without the consumer's state anyway.
//   - Sending. The router hands every message for a clustered queue to the link (persistent or not),
//     which publishes it asynchronously; the message's Tracker learns the outcome when JetStream's
//     publish acknowledgement comes, that is once a quorum of the stream's replicas stored it. That is
//     the path router/persist.go's journal takes on a single node, so the front-ends answer a STOMP
//     RECEIPT or an MQTT PUBACK/PUBREC only then (virtualhost.Host.TracksWrites: a host without a store
//     of its own waits too). A publish JetStream refuses, or does not acknowledge within 10 s, fails the
//     tracker: the sender is not acknowledged (its connection is closed) and sends again. Until the
//     stream exists (JetStream needs a quorum of the configured nodes) sends to queues are refused at
//     once with ErrQueuesUnavailable.
//   - Consuming. Each queue has one durable pull consumer, "lyre_q_<hash of its subject>", shared by
//     every node, explicit acknowledgements, no limit on acknowledgements pending. A node whose router
//     has consumers for the queue runs one feeder for it, which fetches as many messages as the local
//     consumers have free credit (router QueueBackend.Want) and feeds them to the router (Router.Feed),
//     which dispatches them as any queue message: round robin, credit, ACK/NACK, the redelivered mark.
//     JetStream gives each message to one fetch, so each message goes to one node and one consumer
//     there. A consumer's acknowledgement acknowledges it in JetStream (fire and forget); a NACK
//     redelivers it on the same node, as on a single node. When the last local consumer leaves, the
//     messages the node held (waiting, or unacknowledged by the consumers that left) are handed back at
//     once (a JetStream NAK), so consumers on other nodes get them without waiting. A message's
//     redelivery count starts from JetStream's delivery count, so it is marked redelivered on any node;
//     JetStream counts a fetch, so a message a node handed back before any client saw it is marked
//     redelivered too (never the reverse), and a hand-back that overtakes the end of the node's own pull
//     request counts one delivery more (the node takes the message once more and gives it back).
//   - Liveness. JetStream offers a message a node fetched to the other nodes if the node does not
//     settle it within the ack wait (Config.AckWait, DefaultAckWait 10 s); a live node keeps the
//     messages it holds with progress heartbeats every third of it. That wait is how long the
//     in-flight messages of a killed node take to reach consumers elsewhere.
//   - Dead letters. NakLimit counts JetStream's earlier deliveries plus the node's own; a poisoned
//     message's copy goes to the dead-letter queue (itself clustered), and the original is
//     acknowledged only once the copy is stored: both, never neither. A copy the DLQ refuses for want
//     of room drops the message, as on a single node; a copy JetStream refuses hands it back.
//   - Expiry. A message's remaining lifetime travels in the envelope and counts from the time the
//     stream stored it; a node drops an expired message when it dispatches it (acknowledging it in
//     JetStream). JetStream does not expire messages itself.
//
// What a node's queue machinery sees is what it fetched, so the following act per node, not across the
// cluster: priority (among the messages one node holds), message groups (sticky to a consumer of the
// node that fetched the group's message), exclusive consumers (one active per node), selectors (a
// message a node fetched that none of its consumers accept waits there until one does or the last one
// leaves), browsers (see the node's messages only) and the administrative operations (purge, move,
// depth: what the node holds, not the stream's backlog). Queue quotas and full policies do not apply to
// a clustered queue or durable subscription: its backlog is bounded by the stream (unlimited by
// default, on disk), and producers are held back only by the acknowledgements they wait for. Order: JetStream hands out a
// queue's messages in order, but consumers on several nodes run concurrently, and handed-back or
// redelivered messages come back when JetStream redelivers them, not in their original place.
// A queue that holds a backlog in the host's own store from before the node was clustered keeps serving
// it, before the messages from JetStream.
//
// Non-persistent queue messages take the same stream as persistent ones: a queue's messages go to one
// consumer in the cluster whatever their persistence, and a non-persistent one waits for a consumer as
// on a single node; the sender does not wait for it unless it asked for a receipt. Core NATS queue
// groups would be cheaper for them, but at most once and lost when no node has a consumer.
//
// # Durable subscriptions
//
// The durable subscriptions clients name (STOMP's; a name starting with '$' is the broker's own, and an
// MQTT session's subscriptions are those: they stay node-local) keep their backlog in the same stream,
// on "lyre.<vhost>.d.<name>", consumed through one durable consumer per subscription like a queue. The
// subscription itself (filter, owner) is each node's, as on a single node, journalled in its own store:
// a client that comes back on another node and subscribes again by the same id creates it there, and
// its consumer there reads the backlog the first node stored. Every node that holds the subscription
// stores a copy of each matching message, the ones published on it and the ones the topic link brings,
// under a message ID naming the topic message cluster-wide (its origin link and its ID there), so
// JetStream keeps one (duplicate window: two minutes; a second copy arriving while the first is being
// stored counts as stored). What this guarantees:
//
//   - A message published on a node that holds the subscription is acknowledged to its publisher (STOMP
//     RECEIPT, MQTT PUBACK) once its copy is replicated: it survives kill -9 of that node, and the
//     subscription's client gets it from any node it subscribes again on.
//   - A message published on a node that does not hold the subscription reaches it over the topic link,
//     at most once, as any cross-node topic message: its publisher is acknowledged by its own node, and
//     the copy is lost if no node holding the subscription is up (between the kill of the only one and
//     the client's return elsewhere) or the link drops it.
//   - Destroying the subscription (UNSUBSCRIBE with persistent:true, or a SUBSCRIBE with the same id and
//     another filter) purges its backlog from the stream; nodes where it was created before keep their
//     own copy of the subscription, and go on storing what matches it, until it is destroyed there too
//     (the subscription's registry is not replicated: that would take a KV bucket every node watches).
//
// # What is clustered and what stays node-local
//
// Clustered: live topic messages to plain topic subscriptions, wildcard and regex filters included,
// for every protocol, and to durable subscriptions' filters (an MQTT persistent session's or a STOMP
// durable subscription's): a remote message arriving while the node is up goes into the durable's
// queue on that node as a local one would. With JetStream, named queues and STOMP durable
// subscriptions' backlogs, replicated (above).
//
// Node-local for now: queues and durable backlogs without JetStream (each node has its own), shared
// subscriptions (a $share group gets a
// message published on its own node only; across nodes they need NATS queue groups), retained messages
// (each node's store keeps what was published on it; a message arriving from NATS is delivered live with
// the retain flag cleared, so a remote node does not store it, and an MQTT 5 retain-as-published
// subscriber there sees retain 0), temporary topics, durable backlogs and sessions, and topics whose
// first level starts with '$' ($SYS is each node's own status; the '#' that feeds the link does not
// match them [MQTT-4.7.2-1]). A virtual host added by a configuration reload is not attached until the
// next restart. Messages larger than 8 MiB (the embedded server's payload limit) stay on their node
// (Stats.TooLarge). With a cluster an MQTT 5 publisher no longer hears "no matching subscribers": the
// link's '#' matches every topic.
//
// # Delivery guarantees and partitions
//
// Across nodes topic delivery is at most once, whatever the QoS: the publisher's acknowledgement means
// the local node has the message, not that other nodes got it. A message is lost for remote subscribers
// when the link's outbound queue or a NATS buffer is full, while a route is down (a partition: each side
// keeps delivering to its own subscribers, and nothing is queued for the other side or replayed when the
// route comes back), and while a node is down or restarting. Subscribers on the publishing node are
// unaffected by any of it.
//
// Clustered queues are at least once, across nodes and at any QoS (no duplicate detection for QoS 2),
// and an acknowledged send is never lost while a quorum of the stream's replicas keeps its disk:
//
//   - kill -9 of a node (or its crash): what it had acknowledged to senders is on a quorum, so it is
//     still in the stream; what it had fetched and not settled comes back to the other nodes' consumers
//     after the ack wait, marked redelivered; a consumer's acknowledgement that had not reached
//     JetStream yet is lost, so that message is delivered again (a duplicate). Its clients reconnect
//     to another node and consume there. A send in progress on it is not acknowledged: the client
//     sends again (a duplicate when JetStream had stored it). JetStream elects new leaders for the
//     stream and the queue consumers among the nodes left; meanwhile sends wait (and fail after 10 s).
//   - A partition: the side with a quorum goes on. On the minority side sends to queues are refused
//     (the sender is not acknowledged, after up to 10 s); its consumers keep the messages they were
//     given, but their acknowledgements and heartbeats do not reach JetStream, so after the ack wait
//     the majority delivers those messages again (duplicates when both sides' consumers process them).
//     After healing the minority's nodes fetch again.
//   - Fewer than a quorum of nodes up, or JetStream not formed yet: no queue send is accepted, no
//     message is fetched; topics keep working at most once.
//   - Replicas 1: the stream lives on one node; killing that node stops queues until it is back
//     (nothing acknowledged is lost if its disk survives).
//
// # Decisions
//
//   - The embedded server has a client listener on a random loopback port with a random token only this
//     process knows: nats-server v2.15.3 does not start routing with DontListen. The link itself
//     connects in-process.
//   - JetStream: with a directory the embedded server runs JetStream there, file storage, its memory
//     capped at 64 MiB. Its meta group is formed from the configured routes, so every node lists the
//     others (conf refuses a directory without routes; a first node cannot learn its peers from
//     gossip alone). replicas (default: the node count up to 3) is the R of every stream the link
//     creates. With nats_url the external NATS's JetStream is used when its account has it.
//     Link.JetStream waits until the meta group answers: a quorum of the configured nodes must be up
//     before replicated state is available, and until then a node serves its local clients (and refuses
//     sends to queues).
//   - One NATS connection per node serves every virtual host; subjects keep hosts apart.
package cluster
