// Package cluster joins the routers of several Lyre nodes over NATS, so that a topic message published on
// one node reaches the matching subscribers on every node (DESIGN.md §9), a retained message set on one
// node is what a new subscriber on any node gets, a shared group spread over nodes gets each message
// once, and a queue is one queue across the nodes, replicated in JetStream.
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
// Durable subscriptions (STOMP's, and those of MQTT persistent sessions, "$mqtt.<client id>.<filter>")
// keep their backlog in the same stream, on "lyre.<vhost>.d.<name>", consumed through one durable
// consumer per subscription like a queue. The subscription itself (filter, owner) is journalled in the
// store of the node where its client made it, as on a single node, and announced to the other nodes
// through a second stream, LYRE_DURABLES (durables.go): subject "lyre.<vhost>.dr.<name>" (levels
// encoded as topics' are), MaxMsgsPerSubject 1, file storage, R = replicas, holding the last change of
// each subscription (its filter, owner, QoS; or that it was destroyed). Every other node keeps a mirror
// of it: not journalled and without a consumer, it stores every message published on that node that
// matches the filter into the stream, as the subscription's own node does, and delivers nothing. A client that comes back on another node and subscribes again by the same id
// turns that node's mirror into the subscription, and its consumer there reads the backlog. Every copy
// carries a message ID naming the topic message cluster-wide (its origin link and its ID there), so
// JetStream keeps one per subscription (duplicate window: two minutes; a second copy arriving while the
// first is being stored counts as stored). What this guarantees:
//
//   - A message published on any node is acknowledged to its publisher (STOMP RECEIPT, MQTT PUBACK)
//     once its copy for every durable subscription it matches is replicated: it survives kill -9 of any
//     node, and the subscription's client gets it from any node it subscribes again on
//     (TestClusterSessionSurvivesKill9 publishes on two nodes).
//   - Except for subscriptions whose node alone can tell what they keep: one behind an access gate
//     (the subscriber's read rights) or an MQTT no-local subscription. Other nodes keep no mirror of
//     them; what is published elsewhere reaches them over the topic link, at most once, and is lost if no
//     node holding the subscription is up, as for any cross-node topic message.
//   - A node learns of another's subscription when LYRE_DURABLES delivers its change (normally within
//     milliseconds): a message published on it before that is stored only by the nodes that knew.
//     Subscriptions made before the node joined a cluster with JetStream are announced at their next
//     change. A node that cannot write a change (JetStream without a quorum, 4096 changes waiting)
//     logs and counts it (RecordStats.Failed, Dropped); the others then miss it until the next one.
//   - Mirrors cost what the subscription costs: every node stores matching messages into the stream,
//     and a mirror's filter is interest the topic link sees, so such messages reach every node.
//   - Destroying the subscription (UNSUBSCRIBE with persistent:true) purges its backlog from the stream
//     and removes every node's mirror; a SUBSCRIBE with the same id and another filter purges it too, and
//     the mirrors take the new filter.
//   - A node where the subscription's client was before (a STOMP client that moved) keeps it as the
//     client left it there, its own and journalled, not a mirror: a change of filter made on another
//     node does not reach it until the client comes back to it or destroys the subscription. (An MQTT
//     session's node drops its subscriptions when the session moves, so they become mirrors there.)

// # Session claims
//
// MQTT client ids are unique per virtual host across the cluster: a session lives on one node, and a
// client connecting elsewhere takes it over (protocol/mqtt's doc, "Clusters", has the rules). The link
// carries the claims and does not read them (sessions.go); virtualhost.Directory stamps and encodes them,
// and cmd/lyre wires the two together, so neither the router nor a front-end depends on NATS.
//
//   - Holding is interest. A node holding client id X's session of vhost V (connected or offline)
//     subscribes to "lyre.<V>.s.<X>" (X encoded as a level is; an id whose token would be over 128
//     bytes as "~h" and its SHA-256 in hex). HoldSession and ReleaseSession are counted and never block:
//     the MQTT registry calls them under its lock, and one goroutine applies them in that order.
//   - A claim is a NATS request on that subject. NATS routes it to the holders only, and a subject
//     nobody holds gets "no responders" at once: a CONNECT of a new client id costs one round trip to
//     the local NATS server, no wait. The first answer wins; answers come from holders only.
//   - Each claim is answered on a goroutine of its own (the holder may wait for its connection to end),
//     tracked by the link, so Close waits for them.
//   - A holder that is dead, or cut off by a partition, loses its interest when its route goes: the
//     claim then finds no responders and the claimer goes on with what it has. A holder that is
//     alive but does not answer leaves the claimer with its deadline.
//   - An answer larger than NATS's payload limit (8 MiB) is trimmed by the directory, newest waiting
//     messages first, and logged. With JetStream a session's backlog is in the queue stream and the
//     answer carries its record only (next section).
//
// # Replicated sessions
//
// With JetStream the MQTT sessions outlive their node (records.go; protocol/mqtt's doc, "Clusters:
// replicated sessions", has the rules). Their durable subscriptions are the cluster's (above), and one
// stream, LYRE_SESSIONS, keeps the last record of every client id of every host: subject
// "lyre.<vhost>.sr.<client id>" (encoded as the claims' subjects are), MaxMsgsPerSubject 1, file
// storage, R = replicas; an empty message is a tombstone (the session ended), kept so that a node that was
// down learns of the end. The link stores and returns records and does not read them
// (virtualhost.Directory encodes them: the store's JSON session form and the node that wrote it).
//
//   - Writes (PutSessionRecord) are published asynchronously in the order they are made, at most 4096
//     waiting; the caller learns when JetStream stored the record on a quorum, or that it failed (a
//     full queue, no acknowledgement within 5 s: RecordStats.Failed). Writes made before the streams
//     exist (a node started before its quorum) wait, as many, and are reported done at once: they are
//     written in order once the streams are made (one that finds no room fails).
//   - Reads (SessionRecord) ask the stream leader for the subject's last message: a CONNECT that found
//     no holder, and a restarting node checking the sessions its store restored, read one each.
//   - kill -9 of the node holding a session: what its publishers had acknowledged is in the queue stream,
//     and the record names the session's subscriptions, so the client reconnecting anywhere resumes it
//     (TestClusterSessionSurvivesKill9); messages the dead node had fetched come back after the ack wait,
//     marked redelivered. What other nodes' publishers had acknowledged is in the stream too: their
//     nodes mirror the session's subscriptions (see Durable subscriptions, and its exceptions).
//
// # What is clustered and what stays node-local
//
// Clustered: live topic messages to plain topic subscriptions, wildcard and regex filters included,
// for every protocol, and to durable subscriptions' filters (an MQTT persistent session's or a STOMP
// durable subscription's): a remote message arriving while the node is up goes into the durable's
// queue on that node as a local one would. With JetStream, named queues, durable subscriptions'
// backlogs (STOMP's and MQTT sessions') and MQTT session records, replicated (above).
//
// MQTT sessions move: a client connecting on another node takes its session over (its subscriptions, its
// offline backlog and in-flight packet ids), and it is then held there alone (see Session claims); with
// JetStream they are replicated, and survive their node (see Replicated sessions).
// Clustered too: retained messages, with JetStream (see Retained messages), and MQTT shared
// subscriptions (see Shared subscriptions).
//
// Node-local for now: queues without JetStream (each node has its own), retained messages without
// JetStream (each node's store keeps what was published on it), temporary topics, durable backlogs while
// their session stays where it is (without JetStream), and topics whose first level starts with '$'
// ($SYS is each node's own status; the '#' that feeds the link does not match them [MQTT-4.7.2-1]; their
// retained messages and shared groups stay on their node too). A message arriving from NATS is delivered
// live with its retain flag as published, marked Message.RetainKept so the router does not store it from
// there (the retained stream does): an MQTT 5 retain-as-published subscriber on another node sees
// retain 1 [MQTT-3.3.1-12], any other subscriber retain 0 [MQTT-3.3.1-13]. A virtual host
// added by a configuration reload is not attached until the
// next restart. Messages larger than 8 MiB (the embedded server's payload limit) stay on their node
// (Stats.TooLarge; the node's own shared groups get them). With a cluster an MQTT 5
// publisher no longer hears "no matching subscribers": the link's '#' matches every topic.
//
// # Retained messages
//
// With JetStream (a directory, or an external NATS that has it) one stream, LYRE_RETAINED, keeps the
// last retained change of every topic of every virtual host: subject "lyre.<vhost>.r.<level>..." (the
// topic subjects' token encoding, with "r" for "t"), MaxMsgsPerSubject 1, file storage, R = replicas. A
// stream rather than a KV bucket because KV keys may not hold the '~' of the token encoding. A change
// is the envelope of the retained message; a clear is an envelope with an empty body (a tombstone, kept
// so that a node that was down learns of the clear). The router owns its retained store as before and
// it stays the read path: a SUBSCRIBE reads the local store, with no NATS round trip.
//
//   - Out. router.WatchRetained tells the link of every retained change a publish or an operator
//     (DeleteRetained) makes, under the router's retained lock, in order. The link queues it (bounded,
//     8192; a full queue drops the change: RetainedStats.Dropped) for a goroutine that publishes it to
//     the stream asynchronously, in order, and another that waits for the acknowledgements in order.
//   - In. Per attached host an ordered consumer reads the host's subjects, the last change of every
//     topic first (DeliverLastPerSubject: a node that starts, or restarts after being down, loads the
//     cluster's state, including what changed meanwhile), then every change as the stream stores it,
//     and applies each with router.ApplyRetained: stored (and journalled, so a node with a store keeps
//     the cluster's value across a restart) but not delivered, as live delivery went over core NATS.
//   - Convergence. The link applies every change it reads, its own included, so when two nodes set one
//     topic at once every node ends with the one the stream stored last. A node's own change is in its
//     local store at once and may briefly be replaced by an older one of its own still on the way, or by
//     another node's, before the stream's last one lands.
//   - Expiry. The envelope carries the remaining lifetime when the change was written. A node that
//     reads it counts that lifetime from the time the stream stored the message (its metadata
//     timestamp, by the stream leader's clock): it keeps the message for what is left, and applies a
//     message whose lifetime is over as a clear. Clocks need to agree to within what a lifetime may be
//     off by (NTP is plenty). A change that expired before it was written is written as a clear.
//   - Acknowledgement. A retained publish at QoS 1 or 2 (MQTT PUBACK/PUBREC) or a SEND with a receipt is
//     acknowledged once the stream acknowledged the change, so when the publisher hears back the
//     change is on a quorum of replicas: the watcher tracks the write on the message's router.Tracker,
//     as the store's journal does (DESIGN §5, which asks retained messages to be durable before the
//     acknowledgement), and on a memory host the front-ends set a tracker on a retained publish when
//     router.ConfirmsRetained says a watcher may wait. The cost is one JetStream round trip on retained
//     publishes only; writes are pipelined, so a publisher with several messages in flight is not held
//     to one per round trip. The wait is bounded: a change the stream did not acknowledge within 5 s,
//     or refused, is node-local (RetainedStats.Failed, logged) and the publisher is acknowledged all the
//     same, so a node cut off from the JetStream quorum keeps serving its publishers, a few seconds
//     late, rather than closing them. Such a change is undone when the stream answers again: the node
//     then reloads the stream's state (the last change of every topic; RetainedStats.Resyncs) and the
//     cluster's value replaces it, so the nodes agree again (a write whose acknowledgement timed out
//     may still be committed, when the stream leader that had it is elected again: then every node
//     ends with it). In a partition, then, the side with the
//     quorum keeps replicating and the other side's retained changes last until the partition heals.
//     Until the stream is ready (a quorum of the configured nodes up) changes are queued and written
//     once it is, without holding their publishers back; a change dropped because the queue was full
//     (RetainedStats.Dropped) is undone by a reload as a failed one is.
//   - Not replicated: '$' topics and Internal messages ($SYS), a change over the payload limit
//     (Dropped), and a node's retained messages that never went through the stream (set before the node
//     joined a cluster, or not written): they stay on their node.
//
// A starting node (cmd/lyre) waits for its hosts' retained messages to be loaded (Link.WaitRetained)
// for up to 5 s before its connectors accept, so its first subscribers get the cluster's; without a
// quorum it starts with its own and loads the cluster's when it can (RetainedReady says when). A
// subscriber that subscribes on one node just as another node's change is on its way may get neither
// the live message (it went by before the subscription) nor the retained one (not applied yet); the
// window is the stream's delivery delay, milliseconds.
//
// # Shared subscriptions
//
// An MQTT $share/{group}/{filter} group (STOMP maps nothing onto shared subscriptions) with members on
// several nodes gets each matching message once in the whole cluster, wherever it was published, over
// NATS queue groups. Each node's group (virtual host, group name, filter) with at least one member is
// one queue subscription per subject of its filter (filterSubjects), with the queue name
// "lyre.<vhost>.t.<group>.<filter key>" (every part a token), the same on every node. They live on a
// second NATS connection without NoEcho, so a message published on a node reaches that node's own queue
// subscription as well as the others'; the main connection keeps NoEcho for plain subscriptions. With a
// cluster the router leaves its Topic groups to the link (router.SetSharedDispatch): a local message
// goes to NATS through the link's '#' like any other, NATS picks one queue subscription in the cluster,
// and that node's router gives it to one of its local members (router.DeliverShared) by the configured
// share strategy. A message published on a node with no member reaches the group elsewhere. Without a
// cluster nothing changes: the router dispatches its groups itself, at the cost of one atomic load per
// message that matches a group.
//
//   - Spread. NATS picks among the nodes with a member at random, one chance per node, not per member:
//     a node with three members gets as much as a node with one, and the three share it by the
//     strategy. The strategies (round robin, sticky, hashes) therefore hold within a node only.
//   - Guarantee: at most once across nodes, whatever the QoS, as for topics, and for members on the
//     publishing node too (their messages go through NATS). A message is lost when the link's outbound
//     queue or a NATS buffer is full, while the node picked is going down, and when the last member on
//     the node NATS picked leaves while the message is on its way (NATS picked the node before it
//     learnt of the leaving; SharedStats.Lost). A member leaving while others of its group remain on
//     its node loses nothing: they take it. A partition splits a group in two: each side's messages go
//     to the members on its side.
//   - Members whose access rules refuse a message pass it to the others on their node only; when every
//     member on the node NATS picked refuses it, it is lost (Lost).
//
// # Delivery guarantees and partitions
//
// Across nodes topic delivery is at most once, whatever the QoS: the publisher's acknowledgement means
// the local node has the message, not that other nodes got it. A message is lost for remote subscribers
// when the link's outbound queue or a NATS buffer is full, while a route is down (a partition: each side
// keeps delivering to its own subscribers, and nothing is queued for the other side or replayed when the
// route comes back), and while a node is down or restarting. Subscribers on the publishing node are
// unaffected by any of it, except shared groups, dispatched through NATS even on one node (see Shared
// subscriptions). Retained messages, queues, durable subscriptions' backlogs and MQTT session records are
// in JetStream.
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
// # Flow control
//
// A publisher is held back for a subscriber on another node as for one on its own (DESIGN §5), by the
// same mechanism (flow.go): the link is the Publisher of the messages it brings in, so a local subscriber
// over its window asks it to hold back (HoldFor), as it would ask a connection. The inbound goroutine
// then tells the message's origin node on "lyrefc.<origin id>" (outside "lyre.", so nothing else covers
// it) and waits for room, 500 ms at most per message, repeating the signal every 40 ms; an inbound
// backlog over 1/16 of its queue tells the origin too. A signal holds the origin's publishers back for
// 100 ms (QoS ≥ 1 and paced topics, as locally): each of their messages that goes to other nodes asks its
// publisher's connection to wait for room (its own bound, protocol.PaceTimeout, applies), so the
// publishers run at the pace of the slowest subscriber they feed, wherever it is. The episode ends 100 ms
// after the last signal: a receiver that went away or was cut off costs at most that. The link's own
// outbound queue holds publishers back the same way when it is more than half full, until a quarter.
//
// It stays bounded, so messages can still be lost across nodes: a subscriber that makes no room in
// 500 ms is marked stuck on its node and drops under its own policy, as locally; a publisher not
// held back by its front-end (a replay, a message from the management API) is not slowed; the queues
// still drop what finds them full (Stats.Dropped, Stats.InDropped). Stats counts the signals sent
// (PressureSent) and the episodes (HeldEpisodes, StuckEpisodes: a publisher waited its whole bound).
//
// A partition, in detail (TestClusterPartition). Node 3 loses its routes to nodes 1 and 2 (NATS closes
// them when the connection is reset or a write fails or, for a partition that resets nothing, after
// three route pings 5 s apart go unanswered, 15 to 20 s): nodes 1 and 2 drop node
// 3's interest and node 3 theirs, so each side's messages stay on its side, delivered to its own
// subscribers as before; what a side publishes for the other meanwhile is lost, not queued. Node 3 warns
// ("cluster connection lost") and says so in its status, metrics and $SYS; nodes 1 and 2, still connected
// to each other, warn that peer n3 is lost. Node 3's explicit routes are retried every second or so for
// ever (NATS), and when one connects the gossip brings the rest of the mesh back; the routes then carry
// every subscription again (NATS sends them on connect), so interest is restored with no action from
// Lyre, and messages published from then on cross again. A node on an external NATS (nats_url) is the same
// with one connection: while it is down, publishing to NATS fails and is counted (Stats.Dropped) rather
// than buffered for a late replay (nats.ReconnectBufSize -1), and the client resubscribes on reconnect.
//
// # Operations
//
// State (status.go): Link.Status says whether the node is connected to the cluster, embedded: at least
// one route to another node is up, and the link's in-process client is connected to the embedded server;
// nats_url: the NATS connection is up. A node that is not connected keeps serving its own clients. The
// embedded server closes the link's client as a slow consumer when 64 MiB of messages wait for it (this
// node's routers far behind); the client reconnects at once with its subscriptions, and the node counts
// it as a disconnection, since its interest was withdrawn from the cluster meanwhile. It also gives the peers (embedded: every node the server has had a route
// to since it started, by node name, connected or not, and since when), the route connections (NATS pools
// several per peer), the disconnects so far and the counters (Stats). The embedded server has no callback
// for routes, so a goroutine looks every 500 ms (and Status looks when asked); nats.go's disconnect and
// reconnect handlers make it look at once. Each change is logged once: Warn "cluster connection lost"
// when the last route or the NATS connection goes, Info "cluster connected" when it is back, Warn
// "cluster peer lost" / Info "cluster peer connected" per peer; and signalled on Link.Changed. Closing the
// link is no news.
//
// cmd/lyre shows it through management (protocol/management knows nothing of NATS; cmd/lyre copies the
// Status into a management.ClusterInfo):
//
//   - GET /api/v1/cluster (and the "cluster" section of GET /api/v1/broker): name, node, mode, connected,
//     since, disconnects, routes, server (nats_url), peers, messages {sent, received, dropped, too_large,
//     duplicates, malformed, in_dropped}; 404 on a node without a cluster block.
//   - /metrics: lyre_cluster_info{cluster,node,mode} 1, lyre_cluster_connected (1/0),
//     lyre_cluster_disconnects_total, lyre_cluster_routes, lyre_cluster_peers (connected now),
//     lyre_cluster_peer_connected{peer} (1/0, every peer seen), and the counters
//     lyre_cluster_messages_{sent,received,dropped,too_large,duplicate,malformed,in_dropped}_total.
//   - $SYS/broker/cluster/{name,node,state,peers/connected,peers/<node>/state,messages/sent,
//     messages/received,messages/dropped} on every virtual host, state 1 or 0 as mosquitto's bridge
//     $SYS/broker/connection/<name>/state. A change of state is published at once, not at the next
//     sys_interval.
//
// Joining and leaving need no restart of the others: a new node names any existing node in routes, and
// NATS gossips it to the rest (each existing node dials its advertised route address); a node that stops
// is a peer lost for the others, which go on among themselves (TestClusterNodesJoinAndLeave). The route
// address a node is dialled at is its listen address unless advertise says otherwise (NAT, containers, a
// wildcard listen, a proxy as in the partition test).
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
//   - Two NATS connections per node serve every virtual host: the main one (NoEcho: plain topic
//     subscriptions, publishing, JetStream) and one for shared groups' queue subscriptions, which must
//     see the node's own messages. Subjects keep hosts apart.
//   - Retained changes wait for the stream's acknowledgement before the publisher's; the alternative,
//     acknowledging at once and replicating behind, would let a publisher that heard back from a node
//     that then died lose a retained message the store would have kept (DESIGN §5).
package cluster
