// Package stomp is Lyre's STOMP 1.0/1.1/1.2 front-end: it decodes frames from a protocol.Conn, runs the
// session state machine and translates STOMP destinations into router destinations and back. What STOMP
// and MQTT share (acknowledgement ordering, login and access checks, resuming consumers, holding
// publishers back) is in package protocol; durable subscriptions are the router's.
//
// # Concurrency
//
// Serve runs on the connection's reader goroutine, which owns frame decoding, the session state and every
// router call. Router deliveries (subscription.Deliver) run on publishers' goroutines, possibly while the
// router holds a queue lock; they only encode into the connection's outbound queue and touch state
// guarded by session.mu, and never call the router. Lock order, as in protocol's doc: router →
// session.bmu → session.mu → Conn outbound. The reader never holds session.mu while calling the router.
// The OnDrain hook (writer goroutine) flushes held receipts and retained messages and resumes queue
// consumers.
//
// # Frames
//
// Frames are read by this package's Reader, not go-stomp's frame.Reader, so that max_headers,
// max_header_length and max_message_length are enforced before anything is buffered. A content-length
// is not trusted beyond 64 KiB: a larger body is read into pooled 64 KiB chunks as it arrives and gets
// its own buffer once whole, so a client announcing max_message_length and stalling holds what it sent
// (as the MQTT reader does).
//
// Frame encoding appends straight into the connection's outbound buffer (Conn.Begin/Commit), so a
// delivery costs no intermediate frame value and, for a topic message, no allocation.
//
// # Decisions where the specification leaves room
//
//   - A CONNECT without a host header goes to the default virtual host; an unknown host is an ERROR.
//   - message-id is the router's message ID, the same for every subscriber of one message; the 1.2 ack
//     header is a per-session delivery number, so each delivery is acknowledged individually.
//   - A SEND to a topic whose subscriber is over its window (half the outbound limit beyond its largest
//     message) holds the producer back: its socket is not read after that frame, receipt or not, until
//     the subscriber has room, for at most protocol.PaceTimeout (the default slow_consumer_policy,
//     block; the same rule as MQTT's, router.Delivery.Paced, and the same mechanism, protocol.Pace). A
//     subscriber that made a producer wait in vain drops what does not fit (counted) until its queue
//     empties; under slow_consumer_policy queue topic messages that do not fit are dropped at once
//     (DESIGN.md §5). Queue messages stay in the queue until the connection drains.
//   - ACK or NACK of an id this session issued but no longer tracks (already acknowledged, or a topic
//     delivery) is ignored; an id never issued is an ERROR.
//   - A RECEIPT that does not fit in a full outbound queue waits for the queue to drain; with
//     protocol.MaxPendingAcks receipts held the reader stops reading (as MQTT does for its
//     acknowledgements). An ERROR that does not fit is lost, and the connection closes anyway.
//   - The retained messages a new topic subscription matches are all delivered, as the client reads them.
//   - SEND: persistent:true or a receipt header makes the message QoS 1; retain:set / retain:remove set or
//     clear the retained message; expires (Unix ms) and ttl (ms from now; the earlier wins) bound its life;
//     priority (0-9, more is 9) orders queues; message_group (or JMSXGroupID) keeps a group on one queue
//     consumer; other headers travel with it. A SEND to a full queue follows the queue's full_policy:
//     block waits up to QueueFullWait for room, then ERROR; drop_head and drop_tail accept the SEND.
//   - SUBSCRIBE: prefetch-count, or Apollo's credit:count[,bytes], sets the unacknowledged window of a
//     client or client-individual queue consumer (default DefaultCredit); selector (JMS syntax, with the
//     JMSDeliveryMode, JMSPriority, JMSXGroupID, JMSMessageID and JMSExpiration pseudo-properties) filters
//     topic subscriptions and queue consumers (a queue keeps what one consumer's selector refuses for the
//     others), not durable subscriptions; browser:true browses a queue in auto mode and ends with a
//     MESSAGE carrying browser:end and an empty message-id; exclusive:true, from-seq (a queue sequence
//     number, or -1 for new messages only) and include-seq (the header name to put the sequence number
//     in) apply to queues. NACK counts a redelivery; the queue's nak_limit then moves the message to its
//     dlq (see router.QueuePolicy).
//   - Selectors run on the publisher's goroutine, once per message and subscriber, so their cost is
//     bounded: a selector holds at most max_selector_length bytes and nests at most 64 deep, and each
//     of its terms costs time linear in the header value it reads. LIKE in particular (like.go) matches
//     in one pass over the value: the pattern's segments between '%' are each found at the leftmost
//     place after the previous one, never retried; a segment holding '_' is scanned for bit-parallel
//     (shift-and), and may hold at most 1024 characters. BETWEEN evaluates its operand once.
//   - A composite SUBSCRIBE or SEND that names one destination several times subscribes to it, or sends
//     to it, once.
//   - A connection subscribes to at most max_subscriptions destinations, each destination of a
//     composite SUBSCRIBE counting; one more is an ERROR ("too many subscriptions"), checked before any
//     destination of the SUBSCRIBE is resolved. The virtual host's max_subscriptions (all its clients
//     together) and max_durable_subscriptions are the router's: an ERROR too.
//   - reply-to, correlation-id, content-type and expires are message properties, shared with MQTT 5: see
//     "Message properties" below.
//   - Temporary destinations are private to their connection, and durable subscriptions (persistent
//     SUBSCRIBE to a topic, /dsub/<id>) are the router's, owned by their creator: see the sections below.
//   - Transactions: a connection has at most max_transactions open; together they hold at most
//     max_transaction_frames frames and max_transaction_bytes bytes (command, headers and body of each
//     frame, so headers cannot be used to hold more than a body could). A SEND is checked when it enters
//     a transaction as it would be if sent then (destination, access rules, headers, the host's
//     max_message_length) and again at COMMIT, since the rules may have changed meanwhile. A DISCONNECT
//     or a dropped connection aborts them.
//
// # Liberal where no specification forbids
//
// Lyre accepts what ActiveMQ and RabbitMQ accept from clients wherever the STOMP specifications do not
// forbid it (a "MUST" they state is kept: a 1.1 or 1.2 SUBSCRIBE without an id, a 1.1 ACK without a
// subscription header and a 1.2 ACK without an id are refused). Accepted beyond the letter of the
// version a client negotiated:
//
//   - ack:client-individual on a STOMP 1.0 SUBSCRIBE, a de-facto extension before 1.1 named it: an ACK
//     (or NACK) by message-id then settles that message alone.
//   - NACK on STOMP 1.0, which 1.0 does not define: it means what it means in 1.1 (by message-id, with
//     an optional subscription header), as RabbitMQ takes it.
//   - A 1.0 ACK or NACK without a subscription header is looked up in every subscription of the session.
//   - A CONNECT without a host header (required from 1.1) goes to the virtual host a WebSocket's HTTP
//     Host header names, else the default one.
//   - ACK or NACK of an id this session issued but no longer tracks is ignored (see above).
//
// # Temporary destinations
//
// Temporary destinations (/temp-queue/..., /temp-topic/...) are private to the connection that names
// them, as in ActiveMQ and RabbitMQ. A connection's own temp names live under its session id, "lyre-" and
// 128 bits from crypto/rand (so nobody guesses one, and no id comes back after a restart): when it writes
// /temp-queue/foo the router sees the path [lyre-… foo]. Other connections reach it by the global name
// /temp-queue/lyre-….foo, which they learn from the reply-to of a message whose SEND named
// /temp-queue/foo; they may send to it but not subscribe. Sending to the global name of a connection that
// has gone, or of a temporary queue its connection never named, is an ERROR, so nobody makes queues under
// another connection that would outlive it. When the owner's connection ends, every temporary queue it
// named (by SEND, SUBSCRIBE or reply-to) is deleted, with what it still holds discarded and counted
// (router.Stats.Discarded), as in Apollo.
//
// Bounds: a connection names at most MaxTempDestinations temporary destinations, queues and topics
// together (one more is an ERROR "too many temporary destinations"); each temporary queue holds at most
// virtualhost.TempQueueQuota bytes and TempQueueMessages messages, beyond which what arrives is dropped
// and counted, so an owner that does not read its replies costs at most their product and never holds
// its responders up. Access rules apply to them with the kinds temp_queue and temp_topic, matching the
// name without the session id ("replies" for /temp-queue/replies, whoever sends to it): SEND needs send,
// SUBSCRIBE consume (temp_queue) or receive (temp_topic). A host whose rules say nothing of them refuses
// them, as ActiveMQ does without a tempDestinationAuthorizationEntry; a rule without a kind covers them.
//
// # Message properties
//
// Four SEND headers are carried as properties of the message rather than as application headers, so
// that MQTT 5 subscribers get them as the matching properties and MQTT 5 publishers' properties reach
// STOMP subscribers as these headers:
//
//	SEND header      router.Message    MESSAGE header            MQTT 5 property
//	reply-to         ReplyTo           reply-to                  response topic
//	correlation-id   CorrelationData   correlation-id            correlation data
//	content-type     ContentType       content-type              content type
//	expires, ttl     Expires           expires                   message expiry interval
//	(none)           UTF8              (none)                    payload format indicator
//
// In detail:
//
//   - reply-to is parsed as one destination of the connector's grammar, exactly as destination is, and
//     rendered for each subscriber in its own grammar (DESIGN.md §3): an MQTT publisher's response topic
//     a/b reads /topic/a.b here. A reply-to naming this session's temporary destination travels under
//     its global name (see below); its owner sees it in the local form. A reply-to that does not parse
//     (not a name of this grammar, a wildcard, empty) or names several destinations
//     (destination_separator) is kept as a plain application header, as written: it still reaches STOMP
//     subscribers, and MQTT 5 ones as a user property, but it is no MQTT response topic.
//   - correlation-id becomes the correlation data, the bytes of the header value; an empty one stays a
//     plain header. STOMP header values are UTF-8 text, so correlation data that is not valid UTF-8 (an
//     MQTT publisher may send any bytes) is left out of MESSAGE frames rather than mangled or encoded in
//     a form the client could not tell from the publisher's own text.
//   - The UTF-8 payload indicator has no STOMP header: it is not mapped. A SEND leaves it unset, and a
//     MESSAGE does not show it (content-type is the STOMP way to say what the body is).
//   - When a message has a reply-to (or correlation data shown as correlation-id), an application
//     header of the same name (an MQTT 5 user property) is not rendered, so a frame never has two.
//   - The first reply-to and correlation-id of a SEND count (STOMP 1.2 "Repeated Header Entries"); the
//     repeats are dropped with the one carried as a property.
//
// # Durable subscriptions
//
// Durable subscriptions (DESIGN.md §5) are the router's (router.CreateDurable): a topic filter whose
// matches the router keeps in the subscription's queue, journalled on a durable host, bounded by the
// queue's quota, whether or not anyone consumes it. SUBSCRIBE to a topic with persistent:true and an id
// creates the durable subscription /dsub/<id> on that topic, or attaches to it when it exists with the
// same topic; with another topic it is replaced and what it held is discarded (Apollo's behaviour). The
// client consumes it with the usual ack modes; SUBSCRIBE /dsub/<id> attaches to an existing one;
// UNSUBSCRIBE with persistent:true destroys it.
//
// A durable subscription belongs to the user that created it (anonymous: to nobody in particular): nobody
// else attaches to it, replaces it or destroys it (ERROR). Creating one is the access-rule action create
// on kind dsub (and receive on the whole topic filter), destroying one destroy, attaching consume. Names
// whose first level starts with '$' are the broker's (an MQTT session's durable subscriptions live under
// $mqtt) and cannot be used from STOMP.
//
// # Receipts
//
// On a durable virtual host (one with a store block) the writes a frame causes are gathered on the
// frame's virtualhost.Tracker: those of the messages of a SEND that asks for a receipt (a persistent
// queue message, a retained message, a copy kept for a durable subscription) and the record of a durable
// subscription a SUBSCRIBE creates or an UNSUBSCRIBE destroys. The frame's RECEIPT leaves only once those
// writes are durable. Receipts keep the order of the frames they answer, so a DISCONNECT receipt still
// means every earlier frame was processed and its writes are durable. The reader goroutine never waits
// for the store: receipts queue in a protocol.AckQueue (the reader waits only when
// protocol.MaxPendingAcks are held, the same policy as MQTT's) and leave as their writes complete. A
// failed write answers with an ERROR frame and closes the connection, and the receipt is never sent, so
// the client knows the message may be lost.
//
// # Management
//
// After CONNECT the session is attached to its connection for management (protocol.Conn.SetSession;
// session implements protocol.Session): host, user, client id (the client-id header, else the session
// id), version, and the subscriptions as SUBSCRIBE wrote them, "<destination> id:<id>" (a STOMP 1.0
// subscription without an id is its destination alone). Describe runs on any goroutine: the reader
// changes the subscription map under session.mu too, and Describe reads it under that lock. Messages
// are counted once each: a SEND taken for routing (CountIn, when it is executed: a composite SEND is one
// message, a SEND in an aborted transaction none), every MESSAGE frame queued (CountOut in
// subscription.enqueue: live, retained, redelivered; not the browse-end marker), and every topic message
// dropped because the outbound queue was full (CountDropped, beside Handler.Dropped).
//
// # Reload
//
// After CONNECTED a session registers its OnRecheck hook (recheck.go); a configuration reload runs it on
// the reload's goroutine (protocol.Server.Recheck) once the host took its new users and rules. The hook
// reads the principal and each subscription's destinations (as access control judged them at SUBSCRIBE,
// fixed before the subscription enters session.subs, which the reader changes under session.mu) and lets
// protocol.Recheck decide. A client that may go on is left alone; if its user's groups changed, the
// reader adopts the new principal before its next frame. A client that may not go on gets an ERROR frame
// and is closed within die_delay, as after any ERROR (STOMP 1.2 requires the close): "subscription
// revoked" with a subscription header naming the ids it may no longer hold (their destinations in the
// body), "access refused" for a user removed or no longer allowed to connect, "virtual host removed", or
// "access changed" for a subscription now reaching destinations it may not read, without a gate to narrow
// it (the client subscribes again and gets one). The reader's cleanup then ends every subscription, as
// UNSUBSCRIBE does; a durable subscription stays for its owner, as a plain UNSUBSCRIBE leaves it (the
// owner may no longer consume it, and an administrator may delete it).
//
// # Access control
//
// Logins and access checks are package protocol's, shared with MQTT (protocol.Login at CONNECT,
// protocol.Access for the rest; the rules are virtualhost.Authorize's). A refused CONNECT, SEND or
// SUBSCRIBE, or a refused create, destroy or attach of a durable subscription, is answered with an ERROR
// frame (message "access refused"), after which the connection closes as for any ERROR. Every refused
// login that depends on who the client is gets one and the same ERROR frame (body "bad login or passcode,
// or not allowed to connect"): a wrong passcode, no login on a host that wants one, a user who may not
// connect, and a host header naming no virtual host (answered after the same bcrypt work and throttling,
// on the default host: protocol.RefuseUnknownHost), so neither a correct passcode nor a host name can be
// told from the answer before a login succeeds, as RabbitMQ answers an unknown vhost like bad
// credentials; the log line says which it was. A full host is refused before the passcode is checked. A wildcard
// subscription reaching some forbidden topics is accepted and delivers only from the allowed ones; a
// durable one must be wholly allowed, since its queue would keep the rest. Temporary destinations are
// subject to access rules too (see above). Log lines name the remote address (the connection's logger
// carries it), never the passcode.
package stomp
