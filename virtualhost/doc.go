// Package virtualhost isolates tenants: each Host has its own router, store, users, access rules,
// limits and policies. Front-ends pick a Host at CONNECT time (STOMP by the `host` header, MQTT by the
// connector, a `user@host` user name or the TLS server name) and from then on talk only to that Host.
// virtualhost imports the router and the store interface, never a store implementation (cmd/lyre opens
// the store and passes it in with WithStore) and never a front-end.
//
// # Persistence
//
// A host with a store is durable. The host is the only place that builds store operations: the router
// journals through it (it implements router.Journal: persistent queue and durable-subscription
// messages, delivered marks, durable subscriptions' records, retained messages), and front-ends hand it
// their own session state (SaveSession, PutInflight, PutInbound, ...). Records are protocol-neutral:
// names are router keys, filters canonical filter keys (router.Key, router.FilterKey), so recovery needs
// no grammar. Open recovers the store before any client can connect: retained messages and durable
// subscriptions into the router, queue and durable-subscription backlogs as counts the router loads in
// windows as they are consumed (a backlog of millions costs neither startup time nor memory), and the
// session records for the front-end (TakeSessions). A sweeper deletes expired entries every minute. A
// memory host journals nothing and every write succeeds at once.
//
// A publisher's acknowledgement waits for the writes its message caused through a Tracker. An MQTT
// publisher's writes (the inbound QoS 2 id, the durable copies) are gathered into one commit
// (NewAtomicTracker): durable together or not at all. A write about an entry whose put still gathers in
// such a tracker (a consumer acknowledging it at once, its in-flight record) joins the tracker, so the
// store never sees the two out of order.
//
// # Access rules
//
// Access rules follow Apollo: broker rules, then the host's, are tried in order and the first rule whose
// action, kind, id and principal list all match decides (allow or deny); when rules exist and none
// matches, the request is denied. A broker and host with no rules at all allow everything, so a plain
// configuration keeps working. Actions and kinds are typed (Action, Object); reading a queue or a durable
// subscription is consume, reading a topic receive (ReadAction), for every front-end; creating and
// destroying a durable subscription are create and destroy on kind dsub.
//
// Ids are patterns in the STOMP default grammar without prefix ("orders.**", "devices.*.temp"), matched
// against canonical paths with the router's filter semantics (router.MatchSegments), including
// [MQTT-4.7.2-1]: a wildcard at the first level does not match a level starting with '$', so "$SYS" must
// be granted by name. In an id, "%u" and "%c" stand for the user name and the client id, escaped as one
// level; a rule using them matches no one who lacks them (anonymous users, empty client ids). A wildcard
// subscription reaching some forbidden destinations delivers through a Gate, which caches its decisions
// under the router's length-prefixed key (a joined key once let a %00 in a segment poison a decision).
//
// # Policies and limits
//
// `queue "PATTERN" { }` and `dsub "PATTERN" { }` blocks become router queue policies of their kind
// (quota, full policy, nak_limit and DLQ, auto delete), `topic "PATTERN" { }` blocks topic policies; the
// host's quota and quota_messages are the default for every queue and durable subscription. Messages a
// full policy drops are counted (router Stats.Dropped) and logged: the first drop at a destination at
// once, then at most one line per destination every 10 s with the count since (droplog.go).
// MaxConnections, MaxQueues and MaxMessageLength bound what clients may do.
package virtualhost
