// Package mqtt is Lyre's MQTT 3.1 / 3.1.1 / 5.0 front-end: it turns a recognised connection into a session
// bound to one virtual host's router. The codec is protocol/mqtt/packet; what MQTT and STOMP share
// (acknowledgement ordering, login and access checks, resuming consumers, holding publishers back) is
// in package protocol.
//
// # Concurrency
//
// A connection's reader goroutine (Handler.Serve) owns decoding, the session state machine and every
// call into the router. Deliveries arrive on publishers' goroutines (session.Deliver, possibly with a
// router queue lock held): they take only the session's own mutex and append to the connection's
// outbound queue, never blocking and never calling the router. Lock order (protocol's doc): router
// queue → session.mu → the connection's outbound lock. The router is never called with session.mu held;
// the store's committer never takes session.mu (it reports on a goroutine of its own).
//
// # Sessions
//
// A clean session lives as long as its connection; its subscriptions are topic subscriptions of the
// router, delivered straight to the session. A session with clean session off outlives its connection
// (per virtual host, by client id) until a clean-session connection with the same client id discards it
// [MQTT-3.1.2-6]. Each of its topic subscriptions that is not shared is a durable subscription of the
// router, named $mqtt/<client id>/<filter as the client wrote it> (kind DurableSub, `$mqtt.<client
// id>.<filter>` in policy patterns): the router keeps what it matches while the client is away,
// journalled on a durable host and swapped to the store in windows, bounded by the quota that applies
// (the queue defaults, 100,000 messages / 64 MiB, unless a host quota or a `dsub "$mqtt.**" { }` policy
// says otherwise; at the bound the policy's full_policy drops, counted), exactly as for a STOMP durable
// subscription. While the client is connected the session consumes each one with credit max_inflight: a
// QoS 0 delivery is acknowledged as it goes out, QoS 1 on PUBACK, QoS 2 on PUBREC. Messages delivered at
// QoS 0 are not kept while the client is away (mosquitto's default).
//
// Beside the router's durable subscriptions a session keeps only what is MQTT's own, through the host
// (virtualhost.SessionRecord, Inflight, inbound ids): its record (owner, protocol level,
// subscriptions), the packet ids of QoS 1 and 2 deliveries in flight, and the inbound QoS 2 ids awaiting
// PUBREL. A QoS 2 delivery's packet id is written before its PUBLISH goes out and its release (PUBREC)
// before the PUBREL, so after a crash the message is resent under the same id, or only the PUBREL is:
// never delivered twice [MQTT-4.3.3]. A QoS 1 id is written without waiting; one lost in a crash comes
// back DUP under a new id, as QoS 1 allows. Across a reconnect every unacknowledged message is resent
// under its original id, in the original order [MQTT-4.4.0-1] [MQTT-4.6.0-1]: the durable subscription
// delivers it again and the session matches it by its sequence number.
//
// A session and its durable subscriptions belong to the user that opened it: another user may not take
// the client id over (CONNACK 0x05), attach to them or destroy them. Sessions opened anonymously belong
// to nobody in particular. A wildcard filter the owner may read only in part is gated inside the durable
// subscription, so what it keeps is what the owner may read; a restored session gets its gates back at
// startup from its owner's rights. Every subscription of a session that resumes (after a restart, a
// reload, or just a reconnect) is checked again against the rights of the client now attached: one
// reaching nothing it may read is removed, a queue subscription it may no longer consume included (its
// consumer is not attached, so the queue's messages wait for a consumer that may take them).
//
// Shared subscriptions ($share/group/filter) are not durable: the group gives each message to a member
// that is online (as EMQX does), their in-flight ids are not written, and they get no retained messages.
//
// # Flow control
//
// Online, a session sends QoS ≥ 1 messages while fewer than max_inflight are unacknowledged; beyond that
// up to max_queued_messages wait in the session. A QoS ≥ 1 topic message arriving while they are full is
// still taken, and its publisher is held back (protocol.Pace: its socket is not read after that PUBLISH)
// until the subscriber has worked its queue down to three quarters (so a released publisher sends a
// batch, not one message per wake-up), for at most protocol.PaceTimeout. A subscriber that makes no room in
// that time is marked slow: until it is down to half its queue, its oldest messages are dropped
// (counted, logged) and nobody is held back for it. A client is never held back for its own
// subscription. QoS 0 messages are paced like QoS 1 under the default slow_consumer_policy, block (the
// same rule and mechanism as STOMP producers': router.Delivery.Paced, protocol.Pace); under
// slow_consumer_policy queue they are dropped (counted) when the connection's outbound queue is over its
// byte limit.
// A full durable subscription holds its publishers back the same way (router.PublishResult.Pressure).
//
// A publisher's PUBACK / PUBREC is sent only once every write its message caused is durable (retained
// message, durable subscriptions' copies, the inbound QoS 2 id, in one commit for an MQTT publisher:
// virtualhost.NewAtomicTracker). The reader never waits for the store: acknowledgements queue in a
// protocol.AckQueue and leave in the order of the PUBLISH packets [MQTT-4.6.0-2]. A failed write closes
// the connection without acknowledging, so the client sends again after reconnecting.
//
// # Decisions where the specification leaves room
//
//   - A client id may be up to 65535 bytes in 3.1.1 (MQTT 3.1: 23); an empty id with clean session gets
//     a unique "lyre-…" id.
//   - Queues: a topic starting with the connector's queue_prefix names a router queue. PUBLISH enqueues;
//     SUBSCRIBE makes the session a competing consumer with credit max_inflight, granted at most QoS 1:
//     a QoS 0 consumer acknowledges on send, a QoS 1 consumer on PUBACK. Unacknowledged queue messages go
//     back to the queue when the connection ends, also for a persistent session. A queue message
//     delivered again after such a return carries DUP: the message is a retransmission, if not the
//     packet (DESIGN §5 asks for the redelivered mark; [MQTT-3.3.1-3] ties DUP to retransmission).
//   - The virtual host's max_message_length bounds a will's payload as it does a PUBLISH's: a larger
//     will refuses its CONNECT (MQTT 5: CONNACK 0x95; 3.1.1 has no code for it, so the connection
//     closes without CONNACK, as 3.2.2.3 asks).
//   - A client holds at most max_subscriptions subscriptions (its session's); filters beyond are refused
//     in SUBACK (0x80; MQTT 5: 0x97), as are those beyond the virtual host's max_subscriptions or, for a
//     persistent session, its max_durable_subscriptions, logged once per connection. A SUBSCRIBE or
//     UNSUBSCRIBE listing more filters than max_subscriptions could never be granted: decoding stops at
//     the first one too many (packet.Reader.SetMaxFilters) and the connection closes (MQTT 5 after
//     DISCONNECT 0x97), so a 100 MB SUBSCRIBE costs its bytes, not millions of filters.
//   - A PUBLISH with QoS ≥ 1 refused by a full queue closes the connection without acknowledging it, so
//     the client resends it later (3.1.1 has no negative acknowledgement); MQTT 5 gets PUBACK / PUBREC
//     0x97 instead.
//   - Wills are published when the connection ends for any reason other than DISCONNECT, including
//     takeover by the same client id (on this node or, in a cluster, another) and broker shutdown.
//   - Overlapping subscriptions of a clean session get one copy of a message at the highest QoS granted
//     among the matching filters; a persistent session's get one copy per subscription, each at its own
//     QoS, as [MQTT-3.3.5-1] allows (their durable subscriptions keep their own copies).
//   - Between a SUBSCRIBE and its SUBACK, deliveries for the new subscription are held, so the SUBACK
//     comes first, then the retained messages [MQTT-3.3.1-6], then what arrived meanwhile.
//   - Every MQTT topic has a STOMP name, but not every STOMP name has an MQTT one: STOMP's %XX escapes (and
//     a raw "/", which is no STOMP separator) let a level hold "/", "+", "#", NUL or invalid UTF-8, and a
//     STOMP topic may start like the connector's queue_prefix. Rendered for MQTT such a name would be
//     another topic (/topic/sensors.alice%2Ftemp, two levels, would read sensors/alice/temp, three levels
//     and maybe someone else's) or no valid topic at all. An MQTT subscriber skips such a message, whether
//     it matched live, in a durable subscription (acknowledged, as if delivered) or as a retained one; the
//     skip is counted and logged with the session's dropped messages ("a topic name MQTT cannot
//     represent"). It is not refused at SEND, where STOMP subscribers may well want it (ActiveMQ and
//     RabbitMQ take "/" in STOMP names), and the router does not offer it to another member of a shared
//     group (MQTT members cannot name it either). A reply-to MQTT cannot name is left out of the MQTT 5
//     response topic rather than rendered as another one.
//
// # MQTT 5
//
// One session layer serves every level: a v5 connection carries a *v5conn (what CONNECT and CONNACK
// agreed) and its session a *sessV5 (aliases and encoding scratch); for 3.1 and 3.1.1 both are nil, so
// older clients pay a nil test. What MQTT 5 adds maps onto the router as follows.
//
//   - Sessions: Clean Start discards a session; the Session Expiry Interval (capped by the connector's
//     max_session_expiry, the granted value then sent in CONNACK) decides how long it outlives its
//     connection: 0 ends it with the connection, 0xFFFFFFFF never. A 3.1.1 persistent session never
//     expires, as before. The expiry is written with the session record, so a session that expires while
//     the broker is down is deleted, with its durable subscriptions and their backlog, at the next start.
//     DISCONNECT may change the interval, never from 0 (3.14.2.2.2). The Will Delay Interval holds the
//     will back; a client that comes back within it cancels it, and the session's end sends it sooner.
//     A will waiting out its delay lives in a timer, not in the store: at shutdown or in a crash it is
//     not published (3.1.2.5 lets a server defer such wills to a restart; Lyre drops them, so a client
//     that reconnects after the restart never sees a will for an outage that was the broker's).
//     DISCONNECT 0x04 sends the will; a takeover sends DISCONNECT 0x8E to the old connection, shutdown 0x8B.
//   - Flow: the broker announces the connector's receive_maximum (default 1024); a client with more QoS
//     1/2 PUBLISH packets unacknowledged gets DISCONNECT 0x93. The client's Receive Maximum bounds what
//     the session sends it, beside max_inflight (the smaller wins). A PUBLISH larger than the client's
//     Maximum Packet Size is not sent to it and counts as delivered [MQTT-3.1.2-25]; the broker announces
//     the connector's max_message_length as its own.
//   - Topic aliases: inbound, up to the connector's topic_alias_maximum (default 64; 0 or above it is
//     DISCONNECT 0x94, an unknown alias 0x82). Outbound, the first topics a connection receives get
//     aliases, up to the smaller of the client's maximum and the connector's; later topics go out in full.
//     Aliases are never reassigned, so a client never has to track a replaced one.
//   - Message properties travel in router.Message, not as wire bytes: content type, response topic (as a
//     Destination, so a STOMP reply-to and an MQTT response topic are the same name in two grammars),
//     correlation data, user properties (router headers, order kept), the payload format indicator (UTF8)
//     and the expiry (an absolute deadline: a subscriber gets the remaining interval, rounded up, and an
//     expired message is not delivered [MQTT-3.3.2-5]). A payload marked UTF-8 that is not is refused
//     (3.3.2.3.2 allows the check; STOMP receivers rely on the flag for text frames): PUBACK / PUBREC
//     0x99 at QoS 1 and 2, DISCONNECT 0x99 at QoS 0.
//   - Publish outcomes: PUBACK/PUBREC say 0x10 when a topic message reached no subscriber, 0x87 when the
//     client may not publish there (not routed), 0x97 when a queue is full; a QoS 0 PUBLISH the client
//     may not send is dropped (counted), as MQTT 5 has no answer for it.
//   - Subscriptions: no local (compared by client id, router.Message.SenderID), retain as published,
//     retain handling 0/1/2, and subscription identifiers, kept in the durable subscription's options so
//     a restored session keeps them; a message matching several subscriptions of a clean session carries
//     every identifier. No local on a shared subscription is a protocol error [MQTT-3.8.3-4]. Shared
//     subscriptions pick a member by the host's shared_subscription_strategy (router.ShareStrategy);
//     a member the access rules forbid a message is skipped.
//   - Reason strings go on a refusing CONNACK when the client asked for problem information, and on the
//     server's DISCONNECT; never on other acknowledgements, whatever the client asked [MQTT-3.1.2-29]. A
//     malformed MQTT 5 CONNECT gets CONNACK 0x81 or 0x82 before the close [MQTT-4.13.1-1]. Response Information, when asked
//     for, is response_topic_prefix + client id. The Server Keep Alive caps a client's keep-alive at
//     the connector's max_keep_alive. An empty client id gets an assigned "lyre-…" id in CONNACK, clean
//     start or not. Maximum QoS is absent from CONNACK: every QoS is supported.
//   - Enhanced authentication (auth.go): the host's methods (virtualhost.Authenticator; SCRAM-SHA-256
//     when a user has SCRAM credentials) run between CONNECT and CONNACK in AUTH 0x18 packets, within the
//     connect timeout; an unknown method gets 0x8C, a failed exchange 0x86. Re-authentication (AUTH
//     0x19) must use the same method and prove the same user, who must still be allowed to connect;
//     anything else ends the connection with DISCONNECT 0x87 (or 0x82 for a method mismatch), never a
//     change of identity.
//
// # Clusters: session takeover across nodes
//
// With a cluster block a client id is unique per virtual host across the cluster, as it is on one node:
// a session lives on one node, and a client connecting on another takes it over [MQTT-3.1.4-2]. The
// package knows no NATS: cmd/lyre hands the Handler a virtualhost.SessionDirectory (SetDirectory), which
// router/cluster carries over NATS request/reply, and the Handler is the directory's SessionHolder
// (GiveUp). Without a directory none of this runs and CONNECT costs what it did (cluster.go).
//
//   - Holding. Every session in a host's registry, connected or offline, clean or persistent, is held
//     in the directory (Hold when it enters the registry, Release when it leaves, under the registry's
//     lock so the two keep its order). Restored sessions are announced by SetDirectory.
//   - Claiming. Before CONNECT takes the session locally (takeSession), it claims the client id with a
//     stamp (a hybrid logical clock: later than every claim this node made or saw), its user and its
//     clean start. One claim per client id at a time per node: a second local CONNECT waits for the
//     first's, then claims with a later stamp. The claim is pending until the session is attached here.
//   - Giving up. The holder closes a connection holding the session exactly as a local takeover does
//     (MQTT 5: DISCONNECT 0x8E [MQTT-3.1.4-3]) and waits for its release (at most 4 s): the connection's
//     will is handled on the holder as for a local takeover: 3.1 and 3.1.1, and MQTT 5 without a will
//     delay, publish it then [MQTT-3.1.2-8]; an MQTT 5 will with a delay waits in the offline session.
//     The offline session then ends on the holder (its id stays taken meanwhile, as endOffline does):
//     with the claimer's clean start its delayed will is published now (the session ends: 3.1.3.2.2)
//     and it is discarded; without, the delayed will is cancelled, as a connection within the delay
//     cancels it [MQTT-3.1.3-9], and the session is handed over: its record (subscriptions with their
//     options and identifiers, owner, protocol level, expiry), its in-flight packet ids (PUBLISH sent,
//     and PUBREL sent), the inbound QoS 2 ids awaiting PUBREL, and the messages its durable
//     subscriptions hold, drained from them (router.DrainQueue) in order with their redelivery counts.
//     Its durable subscriptions and store records are then destroyed on the holder, which no longer
//     holds the session (with replicated sessions, dropped: see below). A will fires on one node only, the one where its connection ended, and once:
//     the claimer never publishes another node's will.
//   - Adopting. The claimer makes the handed session an offline session of its own, as a restart
//     restores one (restoreOne): durable subscriptions made, the messages adopted into them under new
//     sequence numbers and message IDs (router.Adopt), in-flight ids mapped onto the new numbers, records
//     written on a durable host. takeSession then resumes it as any offline session: Session Present 1,
//     messages in flight resent under their packet ids with DUP, then the backlog [MQTT-4.4.0-1].
//   - Owners. A session another user owns is not given up: the claimer answers CONNACK 0x05 (MQTT 5:
//     0x87), as on one node.
//
// Decisions:
//
//   - Who wins. Two CONNECTs with one client id at once on two nodes: the later claim wins, by stamp,
//     as the later CONNECT wins on one node. A holder refuses a claim stamped before the connection
//     holding the session, or before its own pending claim; the refused claimer answers CONNACK 0x03
//     (MQTT 5: 0x88, server unavailable: a later connection has the session) and closes. Two claims
//     can miss each other when each is made before the other's hold has crossed the routes; so a
//     claim that found no holder (or no answer) is made again 250 ms later, if its connection still
//     holds the session: then the two meet, the earlier connection is closed as taken over, and its
//     session discarded (a concurrent session has nothing to hand over that the winner wants).
//   - A holder that does not answer. Dead or cut off by a partition, its hold is gone with its route
//     and the claim finds no holder at once; alive but stuck, the claim gives up after 5 s. Either way
//     the CONNECT goes on with what this node has: a fresh session (Session Present 0), or the one it
//     holds itself, or, with replicated sessions (below), the session the cluster's record keeps. The
//     old node may then keep a copy of the session (a partition: both sides serve their own clients);
//     the next claim of the id, from either side once the routes are back, reaches every holder and
//     each gives its copy up: the first answer is adopted, the others' state is lost.
//   - Messages in transit. A message published while the session moves may miss it: one arriving on
//     the old node between the drain and the destruction of its durable subscriptions, or published on
//     a third node before the new node's interest has crossed the routes. Across nodes topics are at
//     most once (router/cluster's doc); the backlog the session had when its client left moves whole.
//     A handover larger than NATS's payload limit leaves out its newest messages, logged.
//   - A handover received after this node's connection already has a session (the repeated claim
//     above, or a race with a session this node holds) is dropped, logged.
//   - Queues stay node-local: a session's queue subscriptions move as subscriptions, and consume the
//     new node's queue of that name; unacknowledged queue messages went back to the old node's queue.
//   - Message expiry deadlines travel as they are (Unix ms): the nodes' clocks are expected to agree,
//     as they must across a restart.
//
// # Clusters: replicated sessions
//
// With JetStream (a cluster block with a directory, or an external NATS that has it) the directory is
// also a virtualhost.SessionRecords, and a persistent session outlives the node that held it, kill -9
// included:
//
//   - Its messages. The durable subscriptions of persistent sessions ("$mqtt/<client id>/<filter>") are
//     the cluster's, like STOMP's: their backlog is in the cluster's queue stream, replicated, and a
//     QoS 1 or 2 PUBLISH on any node is acknowledged (PUBACK, PUBREC) once its copy is stored there (the
//     other nodes mirror the subscriptions: router/cluster's doc, "Durable subscriptions"). The session's own connection reads them through the stream too.
//   - Its record. Every record the host's store gets (saveSession: CONNECT, SUBSCRIBE, UNSUBSCRIBE, a
//     disconnect that changes the expiry) is also written to the cluster's records, naming this node,
//     and SUBACK waits for it; a session's end (expiry, clean start, DISCONNECT with expiry 0, an
//     operator's delete) writes a tombstone. This happens on a host without a store too: there the
//     cluster keeps what a restart of the node would lose anyway.
//   - A CONNECT whose claim finds no holder reads the record (waiting 8 s at most, for the stream's
//     leader may have died with the session's node; 1 s with Clean Session 1; while the stream is not
//     made yet there is none to read, and the CONNECT goes on): a live record makes the session an
//     offline session here (adopt, with no backlog to move: the new durable subscriptions
//     read the stream), and the connection resumes it, Session Present 1 (a Clean Start one discards
//     it, which purges its backlog in the stream and writes a tombstone). A record of another user
//     refuses the client (CONNACK 0x05 / 0x87) as a holder would. A claim a holder answers needs no
//     record: the holder hands the session over as above, except its backlog, which stays in the stream
//     for the claimer (the holder drops its durable subscriptions with router.DropDurable, which hands
//     back what it fetched and purges nothing).
//   - In-flight packet ids are not replicated, and a session whose subscriptions are the cluster's does
//     not keep them across a reconnect either: a message in flight goes back to the stream when its
//     consumer closes and comes back with a new sequence number, marked redelivered, under a new packet
//     id with DUP, so what the session keeps of its in-flight state is the PUBRELs it owes. QoS 2 is
//     therefore at least once across a reconnect on a clustered session (as for clustered queues): a
//     message whose PUBREC did not reach the stream may come twice. The inbound QoS 2 ids awaiting
//     PUBREL stay on their node.
//   - A node that comes back after the session moved (restarted with the session in its store)
//     checks each restored session against the records once they can be read (reconcile): a session
//     whose record names another node, or is a tombstone, is dropped here, its backlog left in the
//     stream; one the records do not know (made before the cluster, or while it had no quorum) is
//     recorded now.
//   - Failures. A record write the cluster does not acknowledge within 5 s (no quorum) is logged
//     (once per 10 s) and does not fail the client: the session goes on on its node as without a
//     cluster, and a later write replaces the record. Writes made before the stream exists (a node
//     starting before its quorum) wait in order, 4096 at most, and are written once it does. The durable subscriptions' copies need the
//     quorum: on a node cut off from it, a persistent session's subscriptions get nothing (each copy
//     refused is counted as dropped), while clean sessions' subscriptions are served as before.
//
// # Management
//
// After CONNECT the connection's session is attached for management (protocol.Conn.SetSession; the
// client implements protocol.Session): host, the user the client logged in as, client id, version
// ("3.1", "3.1.1", "5"), whether the session outlives the connection, and the subscriptions as the
// client wrote them ($share/group/filter included). Describe runs on any goroutine; the reader changes
// the subscriptions and the persistence under session.mu, which Describe takes, so no copy is kept per
// connection. Messages are counted where they pass, once each: a PUBLISH taken for routing (allowed; a
// QoS 2 PUBLISH repeated before PUBREL is not counted again) with CountIn, whatever the router then
// makes of it; a PUBLISH queued to the client with CountOut, in sendLocked and in pumpLocked's resends
// (retained messages and resends after a reconnect included). A message dropped because the client does
// not keep up (QoS 0 over the outbound limit, the oldest live message of a full or slow session queue)
// is counted with CountDropped; an expired one or one larger than the client's maximum packet size is
// not (it is no slow-subscriber drop), nor a shared subscription member's refusal (the group offers the
// message to another member, and the router counts it if none takes it).
//
// The Handler is management.Sessions. Sessions lists a host's sessions, online and offline: owner,
// persistence, subscriptions, backlog (the messages waiting in the session's durable subscriptions,
// which are the router's queues, plus those in the session's own queue behind the in-flight window),
// in-flight QoS 1 and 2 deliveries, and when an offline session expires. DeleteSession ends an offline
// session exactly as its expiry does (its delayed will is published, its durable subscriptions are
// destroyed with their backlog, its records deleted) and returns once the store has those writes; it
// refuses a connected one (management.ErrSessionOnline). While a session is ended (expiry or deletion)
// its client id stays taken: a client connecting with it waits for the end, as for a takeover, so it
// neither resumes a half-discarded session nor has its new durable subscriptions destroyed with the old.
//
// # Access control
//
// CONNECT answers 0x04 for bad credentials (MQTT 5: 0x86), and 0x05 (0x87) when a client that gave no
// user name, password or authentication method may not connect. A client that gave one and may not
// connect gets 0x04 (0x86) with the reason string of a wrong password: a different answer once the
// password is right would tell a user who may never connect that it is (the log says which it was). A full
// host answers 0x03 (0x88) before any password is checked, for the same reason. Another user's client id
// is 0x05 (0x87): its user could connect with another id, so it tells nothing more. The user@host
// convention never refuses a host name: an unknown one leaves the whole name as the user name.
// A SUBSCRIBE filter that can reach no destination the client may receive gets 0x80; a PUBLISH the client may not send is
// not routed but still acknowledged as QoS 1 and 2 require, since MQTT 3.1.1 has no way to tell the
// client [MQTT-3.3.5-2] (MQTT 5 says 0x87); a wildcard subscription reaching some forbidden topics delivers only from the
// allowed ones. Log lines name the remote address (the connection's logger carries it), never the
// password.
//
// # Reload
//
// After CONNACK a connection registers its OnRecheck hook (recheck.go); a configuration reload runs it on
// the reload's goroutine (protocol.Server.Recheck), after the host took its new users and rules. The hook
// reads the client's principal and subscriptions under the session's lock (the reader changes both under
// it) and lets protocol.Recheck decide. A client that may go on is left alone; if its user's groups
// changed, the reader adopts the new principal before its next packet, where every publish and subscribe
// check runs. A client that may not go on is told and closed at once, from the hook: MQTT 5 gets DISCONNECT
// 0x87 (not authorized: its user was removed, may no longer connect, or may no longer receive from a
// filter, named in the reason string) or 0x98 (administrative action: its virtual host was removed, or a
// subscription now reaches topics it may not read and has no gate to narrow it); 3.1 and 3.1.1 have no
// way to say why and are closed. CloseAfter stops all output at once, so nothing more reaches a revoked
// subscription.
//
// What touches the session (the router's subscriptions, durable ones included, and the session record) is
// the reader's: the hook posts it (an atomic pointer) and the reader applies it as the connection ends,
// before the session detaches: each revoked subscription is removed as an UNSUBSCRIBE would (a persistent
// session's durable subscription destroyed with what it holds, the record saved), and a persistent
// session's other subscriptions are re-checked as on resume (reauthorize), so what its durable
// subscriptions keep while the client is away is only what its owner may read. The will is not published
// for a client that may no longer be on the host (user removed or refused, host removed), and is checked
// again under the new rules otherwise. Offline sessions are re-checked when they resume, as after a
// restart.
//
// A host a reload adds gets its persistent sessions back from its store (RestoreHost) before clients can
// reach it; a host it removes is forgotten (ForgetHost) once its connections are gone: expiry and will
// timers stop, and the store keeps the sessions, as at shutdown.
package mqtt
