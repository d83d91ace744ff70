// Package store holds what must survive a crash, per virtual host: persistent queue messages (and
// dead-letter queues, which are just queues), durable subscriptions and their backlogs (STOMP durable
// subscriptions and the subscriptions of MQTT sessions that outlive their connection alike), session
// records with their in-flight state (outbound deliveries' packet ids, inbound QoS 2 ids awaiting PUBREL)
// and retained messages. Store is the interface; store/badgerstore is the durable implementation (one
// badger directory per host), store/memstore the in-memory one, and store/storetest the contract both
// pass. The package uses the standard library only; the router does not import it, so it has its own
// records. Records are protocol-neutral: names and filters are the caller's canonical keys (the router's),
// never a protocol's wire text, so reading them back needs no grammar.
//
// # Model
//
// A message body is stored once, however many places reference it: queue entries, durable-subscription
// backlog entries, session queue entries, in-flight deliveries and retained topics all hold its ID and
// bump its reference count. The body is written when the count rises from zero and deleted when it falls
// back to zero, so a message published to ten durable targets costs one body, and acking the last
// reference frees it. Callers pass the *Message with every reference; the store decides whether to write.
//
// Queues and durable-subscription backlogs are ordered lists of entries keyed by (list, owner, seq). The caller assigns seq (ListInfo.Last+1 after a restart). Entries reads a list in
// windows from a seq, so a backlog of millions stays on disk and only a window is held in memory.
//
// # Writes: group commit
//
// Commit/CommitFunc queue a set of ops that apply atomically. One goroutine takes everything queued
// (after FlushDelay, when set), applies the ops in order to an overlay of the committed state, settles
// reference counts, and writes the net result in one transaction with one sync. Each caller then learns
// the outcome of its commit. Because only the net result is written, an entry enqueued and acked within
// one batch (a message consumed before the flush) is never written at all. A batch that fails fails all
// its commits and applies none of them; a batch too big for one transaction is split at commit
// boundaries. Invalid ops are refused (ErrInvalidOp) before queueing, so they never fail someone else's
// batch. When the commit queue (4096 commits) is full, Commit blocks until the committer catches up.
//
// # Using it from the broker
//
// Each line is one Commit; "→ ack" means the publisher's acknowledgement waits for it.
//
//	persistent publish to queue Q          PutEntry{Q, seq, msg} → ack
//	… to several durable targets at once   one Commit with a PutEntry per target, same *Message → ack
//	consumer ack                           DeleteEntry{Q, seq} (done may be nil)
//	delivered past the mark                PutQueue{Q, Delivered: seq + window} (once per window)
//	redelivery count after a nack          PutEntry{Q, seq, msg, Redeliveries+1}
//	to the dead-letter queue               DeleteEntry{Q, seq} + PutEntry{DLQ, seq', msg}
//	moved or purged by an operator         PutEntry{to, seq', msg} + DeleteEntry{from, seq}, or
//	                                       DeleteEntry{Q, seq}: up to 1000 messages per commit
//	durable subscription made / changed    PutDurableSub (its topic matches: PutEntry{ListDurableSub, …})
//	QoS 2 delivery sent under packet id    PutInflight{publish, ref: the entry}
//	… PUBREC                               PutInflight{release, ref}, then DeleteEntry of the entry
//	… PUBCOMP                              DeleteInflight
//	inbound QoS 2 PUBLISH / PUBREL         PutInbound (→ PUBREC) / DeleteInbound
//	retained set / cleared                 PutRetained / DeleteRetained → ack
//	session record (SUBSCRIBE, CONNECT)    PutSession
//	session or durable subscription ends   DeleteSession / DeleteDurableSub
//	startup                                Recover, then Entries windows; new message ids above
//	                                       Counts.MaxMessageID, new seqs above ListInfo.Last
//	housekeeping                           RemoveExpired(now, n) on a timer
//
// Message IDs must be unique among stored messages: reusing the ID of a message still referenced makes
// the new reference point at the old body. Hence the restart rule above.
//
// # Monitoring
//
// Stats counts commits, batches and writes, and gives what an exporter needs besides: the commits
// queued now, the distribution of commit latency (a Histogram over fixed buckets from 0.1 ms to 1 s,
// observed by the committer from a commit's queueing to its outcome, which is what a publisher waiting
// for its acknowledgement waits) and the store's size. The store package imports no metrics library;
// the exporter maps Distribution onto its histogram type.
//
// # Keys and encodings (format version 2)
//
// str(s) is uvarint(len(s)) followed by the bytes; u64 and u16 are big-endian, so keys sort by number.
// Names (queue names, durable subscription ids, list owners, retained topics) and filters are the
// caller's canonical keys: any bytes.
//
//	v                                  "2": the format version; Open refuses any other (ErrVersion)
//	m u64(id)                          message: flags(1: persistent, 2: retain, 4: group, 8: properties)
//	                                   qos priority destKind varint(expires) uvarint(n) n×str(path segment)
//	                                   str(origin) str(content type) uvarint(n) n×(str(name) str(value))
//	                                   [str(group), when flag 4] [properties, when flag 8] body…
//	                                   properties: bits(1: reply-to, 2: correlation data, 4: UTF-8)
//	                                   [kind uvarint(n) n×str(segment), bit 1] [str(data), bit 2]
//	c u64(id)                          uvarint(reference count); absent = 0 = no body
//	q str(name)                        queue record: kind (1 byte) [uvarint(delivered mark)]
//	d str(id)                          durable subscription: str(filter) str(selector) str(owner) qos flags
//	s str(client id)                   session: protocol version, uvarint(expiry s), varint(disconnected
//	                                   at ms), str(owner), uvarint(n) n×(str(name) str(filter) str(share)
//	                                   qos options uvarint(identifier) durable(0|1))
//	e list str(owner) u64(seq)         list entry (list 1 queue, 2 dsub): uvarint(message id)
//	                                   uvarint(redeliveries) varint(expires)
//	i str(client id) u16(packet id)    outbound in-flight: state qos list str(owner) uvarint(seq)
//	p str(client id) u16(packet id)    inbound QoS 2 id awaiting PUBREL: empty value
//	r str(topic)                       retained: uvarint(message id)
//	x u64(expires ms) <entry key>      expiry index of entries whose message expires; empty value
//
// Fields in [brackets] are left out when zero, and decode as zero when absent. The message group and the
// properties hide behind flag bits because the body runs to the end of the value; a message without them
// is written exactly as before they existed. A properties bit this build does not know is ErrCorrupt. A
// build older than the properties section would read the section as the start of the body, so go back
// to one through Export and Import (whose older reader ignores the fields it does not know), not by
// opening the directory.
//
// Format version 1 (until December 2026) kept wire text in filters and names and a third list per MQTT
// session; Open refuses it with ErrVersion. Its export stream (below) is read by Import of this version,
// which converts it (see Import).
//
// Export and Import move all of it to and from a line-delimited JSON stream (see Export) for backups and
// format upgrades.
package store
