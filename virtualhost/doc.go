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
// The router's administrative operations (PurgeQueue, MoveMessages) journal through the host as an
// atomic journal (router.AtomicJournal): each batch of up to 1000 changes is one store commit, so a
// message moved from a dead-letter queue back to its queue is, after a crash, in one of them. A batch
// gathers like an atomic tracker: a write about one of its new entries made before it commits (a consumer
// of the target acknowledging at once) joins it, and a message whose publisher's tracker has not
// flushed yet is moved inside that tracker's commit.
//
// # Monitoring
//
// Counters returns the host's refusals, each counted once where it is decided: authentication failures
// (bad credentials) and refused connects (no connect permission, no user on a closed host) in admit,
// full hosts in Acquire, access denials in Authorize and AuthorizeFilter (a filter allowing nothing),
// and the messages a Gate withheld. They are atomic adds on the refusal paths only: a Gate's allowed
// delivery, which runs per message, costs nothing more. StoreStats passes the store's counters through
// (commit latency distribution, size), since front-ends and exporters do not see the store.
//
// # Authentication
//
// A client proves who it is in one of three ways, each ending in the same admission (connect permission,
// throttling of repeated failures): a user name and password checked against the users file's bcrypt
// hash (Login); a verified TLS client certificate on a connector with cert_identity (LoginCert); or an
// enhanced-authentication exchange (MQTT 5 AUTH) of a method the host offers (StartAuth, then LoginAuth
// with what the exchange ended on). Unknown names cost the same time and get the same answers as wrong
// passwords, so a client cannot tell which names exist; a login to a host that does not exist is answered
// by the default host's Decoy (the same bcrypt work and throttling), so host names cannot be enumerated
// either. The host's errors stay distinct (ErrBadCredentials, ErrNotAuthorized) for logs and counters:
// front-ends answer a refused connect of a client that gave credentials as they answer wrong ones, and
// ask HasRoom before checking any password, since a refusal that only a correct password reaches tells it
// is correct.
//
// Logins are bounded before any password is checked (loginlimit.go), so that no number of clients makes
// the broker spend more than a few CPUs on bcrypt: a host checks at most max_concurrent_logins passwords
// at once (default one per CPU; management requests' Verify counts too), and an address has at most
// max_concurrent_logins_per_address logins under way (default 4). A login waits for its turn at most
// Throttle.Wait (5s), then fails with ErrLoginBusy (MQTT CONNACK 0x03 / 0x88, STOMP ERROR). The delay a
// failure earns (Throttle) belongs to the address: the next login from it waits until the delay is over,
// and the failed attempt keeps its place among the address's attempts until then, so a client that
// closes without waiting for its answer and reconnects gains nothing. Login, LoginCert, LoginAuth (whose
// outcome waits for the turn, though its exchange ran before) and Verify all take their turn. A client
// that leaves while waiting for its turn is not noticed (the host does not see connections): its wait
// ends within Throttle.Wait.
//
// Enhanced-authentication methods are Authenticators held by name; the front-end carries the bytes.
// A host offers SCRAM-SHA-256 (RFC 5802, RFC 7677) when some user of its users file has a scram_sha_256
// block; WithAuthenticator adds or replaces methods. The SCRAM server is github.com/xdg-go/scram; around
// it the host decides what the library leaves to its caller:
//   - A name without SCRAM credentials (unknown, or a user with a password only) gets fake ones, derived
//     with HKDF from a host secret and the name (RFC 5802 §9): the same name always gets the same salt,
//     with the salt length and iteration count of a real user the name picks, and the exchange fails at
//     the proof with e=invalid-proof, the answer to a wrong password. The secret is a hash of the users
//     file's password hashes and keys, which never leave the broker, so fake salts survive restarts as
//     real ones do. The fake credentials are computed for every name, so real ones cost no less time.
//   - Channel binding is not offered: gs2 flags 'n' and 'y' are accepted, 'p' is refused
//     (e=channel-binding-not-supported). An authorization identity other than the user's own is refused.
//   - User names are looked up as the client sends them, after the =2C/=3D unescaping; passwords are
//     SASLprep-normalised when credentials are made (NewSCRAMCredentials, lyre passwd), as clients do.
//   - Every failure ends the exchange with a server-error message as out and an error wrapping
//     ErrBadCredentials; the error names the RFC 5802 server-error, never whether the user exists.
//
// Re-authentication (MQTT 5 AUTH with reason 0x19 on a connected client) is a new exchange started with
// StartAuth, of the method the connection authenticated with [MQTT-4.12.1-1]; a host keeps no state per
// connection, so any number may follow each other. The front-end checks what the host cannot know: that
// the method is the connection's, and that the exchange authenticated the connection's user — a
// re-authentication proving a different user must be refused and the connection closed, never taken as a
// change of identity. It then calls LoginAuth (throttling and the connect permission, which may have been
// revoked) but takes no second connection slot (not protocol.LoginAuth, which does).
//
// # Credential cache
//
// bcrypt is slow on purpose: at cost 10 (lyre passwd's default) one check takes 50-100ms of a CPU, so a
// host that checks a CPU's worth of passwords at once logs in a few dozen clients per second, and a
// storm of clients reconnecting waits its turn for minutes. A host therefore remembers, for
// credential_cache (30s by default in a configuration file; 0 turns it off, as does leaving it out of a
// conf.VirtualHost built in Go), the users whose password bcrypt has just verified: a login with the
// same user name and password within that time is answered without bcrypt (about a microsecond). Login
// and Verify use it, so MQTT, STOMP and management requests share one cache per host. SCRAM needs none:
// its server side is a few HMACs (the client pays the iterations); a certificate has no password.
//
// Why it is safe:
//   - The cache holds neither a password nor a plain hash of one: per user, the HMAC-SHA-256 of the
//     user name (length-prefixed) and the password under a key drawn from crypto/rand when the process
//     starts, which never leaves its memory. Without the key the MAC tells nothing; with a dump of the
//     process's memory (which also shows passwords as they arrive) guesses for the users held can be
//     tried at HMAC speed rather than bcrypt's: that is the cost, bounded by the TTL and the size.
//   - Only a success is remembered, and a lookup finds an entry only for the same MAC (compared in
//     constant time). Any other password misses, runs bcrypt (or the dummy hash for an unknown name) and
//     is counted and throttled as without a cache; it does not evict the entry. A hit answers faster
//     than bcrypt, but only for the right password, which the answer tells anyway.
//   - The cache belongs to the host's settings snapshot: a reload builds new settings with an empty
//     cache, so a password changed or a user removed in the users file takes effect at once, and a login
//     verified against the old file is put in the old snapshot's cache, which nobody reads any more. A
//     retired host forgets its cache.
//   - An entry is trusted for the TTL from the bcrypt check that made it; hits do not extend it.
//   - A hit is still a login: it asks the connect permission (admit), whose refusals are counted, and
//     it waits for its address's turn, so an address paying the delay its failures earned waits as
//     before. It takes no place among the host's password checks (max_concurrent_logins), which bound
//     bcrypt, not this; a hit that finds its entry gone after waiting for its turn (expired, or a reload)
//     takes its place among them and runs bcrypt after all.
//
// Each host holds at most credential_cache_size users (default 10000; an entry costs about 100 bytes).
// When full, a newly verified user takes the place of an expired entry if one of the first few looked
// at is, else of an arbitrary one (Go maps iterate from a random place): constant time, and the user
// dropped pays one bcrypt at its next login. The cache helps clients that log in again within the TTL:
// a flapping network, clients that connect for each message, and clients that gave up waiting for
// their CONNACK during a storm and retry (the check their first attempt cost is not lost). It does not
// help the first login after the broker starts (the cache is in memory, under a new key) nor a client
// connected for longer than the TTL. Logins with the same credentials that arrive while bcrypt checks
// them wait for that check instead of running their own (a fleet sharing one account reconnects for one
// bcrypt); a failure is not shared, so each login with a wrong password pays, and is throttled, alone.
// HostCounters.PasswordChecks and CredentialCacheHits
// (lyre_password_checks_total, lyre_credential_cache_hits_total) show how often each path was taken.
//
// # Access rules
//
// Access rules follow Apollo: broker rules, then the host's, are tried in order and the first rule whose
// action, kind, id and principal list all match decides (allow or deny); when rules exist and none
// matches, the request is denied. A broker and host with no rules at all allow everything, so a plain
// configuration keeps working. Actions and kinds are typed (Action, Object); reading a queue, a temporary
// queue or a durable subscription is consume, reading a topic or a temporary topic receive (ReadAction),
// for every front-end; creating and destroying a durable subscription are create and destroy on kind
// dsub. Temporary destinations are kinds temp_queue and temp_topic, matched by their name without the
// owner's session id (RulePath); every temporary queue is bounded by TempQueueQuota and
// TempQueueMessages, dropping what arrives beyond (its owner pays, not its responders).
//
// A name in an allow or deny list is a group when the host's users file has a group of that name (one of
// its users lists it, or a group block declares it), else a user; conf refuses a user named like a group
// it is not in (one in a group of its own name is that group's member, so the name still means one set). So a principal whose name is not from the users file (a certificate identity, an enhanced
// method's user) is never taken for a group that happens to share its name; write a group block for a
// group nobody is in yet.
//
// Ids are patterns in the STOMP default grammar without prefix ("orders.**", "devices.*.temp"), matched
// against canonical paths with the router's filter semantics (router.MatchSegments), including
// [MQTT-4.7.2-1]: a wildcard at the first level does not match a level starting with '$', so "$SYS" must
// be granted by name. In an id, "%u" and "%c" stand for the user name and the client id, escaped as one
// level; a rule using them matches no one who lacks them (anonymous users, empty client ids), and "%c"
// only a client id its principal claims (see Client ids). A wildcard
// subscription reaching some forbidden destinations delivers through a Gate, which caches its decisions
// under the router's length-prefixed key (a joined key once let a %00 in a segment poison a decision).
//
// # Client ids
//
// A client picks its client id (MQTT CONNECT, STOMP client-id header) freely, so a rule granting
// "devices.%c.**" to everyone would let bob, connecting as "dev1", act for device dev1. "%c" therefore
// stands only for a client id the client's principal claims: a pattern of its users file entry
// (client_ids), of the group block of one of its groups, or of the host's client_ids. A pattern matches
// a whole client id; "*" is any run of characters and "%u" the user's proven name (a "*" in the name is
// a character). A client id nobody claims makes every "%c" rule skip the client, as an empty one does;
// it still connects and is bound by the other rules. By default nothing is claimed, so "%c" rules match
// nobody until client ids are given out, like EMQX's ACL placeholders bound to an authenticated client.
// "%c" is a security boundary exactly when no client id is claimed by two principals who must not share
// it. "%u" alone keeps them apart (user names are unique); "%u-*" does only while no user's name is
// another's followed by "-" (bob's "bob-*" covers "bob-x-1", which a user "bob-x" claims too); explicit
// lists per user (client_ids = ["dev1", "dev2"]) do when they do not overlap. The host's "*" makes every
// client id everyone's, as before client ids were bound to users: "%c" is then a convenience for clients
// that name themselves honestly, not a boundary. Matching is linear: pieces between "*" are found left
// to right, without backtracking.
//
// A certificate identity (cert_identity) is a user only on the hosts its connector's
// cert_identity_hosts lists (by default the connector's virtual_host, else the first host): the CA
// vouches for names of one tenant, and a certificate naming "alice" must not become a different tenant's
// alice. On another host the client is one without credentials (anonymous where the host allows that,
// else refused), and the refusal's log line says why.
//
// # Policies and limits
//
// `queue "PATTERN" { }` and `dsub "PATTERN" { }` blocks become router queue policies of their kind
// (quota, full policy, nak_limit and DLQ, auto delete), `topic "PATTERN" { }` blocks topic policies; the
// host's quota and quota_messages are the default for every queue and durable subscription. Messages a
// full policy drops are counted (router Stats.DroppedQueueFull, part of Dropped) and logged: the first
// drop at a destination at once, then at most one line per destination every 10 s with the count since
// (droplog.go).
// MaxConnections, MaxQueues and MaxMessageLength bound what clients may do; MaxSubscriptions (topic
// subscriptions and queue consumers of all the host's clients together, default 1000000) and
// MaxDurableSubscriptions (default 100000) become the router's MaxSubscriptions and MaxDurables, so
// every host has its own, changed by a reload like the quotas.
//
// # Reload
//
// A configuration reload changes a running host in place. What may change (users and groups, SCRAM
// credentials, broker and host access rules, anonymous access, host names, limits, queue, dsub and topic
// policies, quotas, the shared-subscription strategy) lives in one immutable snapshot behind an atomic
// pointer: logins, access checks and gates read it with one atomic load, so the hot paths take no new
// lock. Prepare builds the new snapshot (reading the users file again, compiling the rules) and fails
// without touching the host; Apply swaps it in and hands the router its new policies
// (router.SetPolicies). A reload prepares every host before it applies any, so a configuration that
// fails is refused whole. Name, router and store are fixed: a host whose store block changes is a new
// host, opened beside the old one, which is retired (Retire: Acquire refuses new clients) and closed once
// its clients have gone (Connections is 0).
//
// Apply ends no connection. A Gate remembers its decisions per rule set and forgets them when the rules
// are replaced, so a gated subscription follows the new rules at once. Everything else a connected client
// holds is re-checked by its front-end (protocol.Server.Recheck) with Refresh, which says who the client
// is now (its groups as the users file says today) and whether it may stay: a user that logged in
// against the users file and is no longer in it is removed (ErrUserRemoved); an anonymous client of a
// host that turned anonymous access off, or a client that may no longer connect, is not authorized. A
// client authenticated otherwise (a TLS certificate, an enhanced method whose user the file does not
// list) only takes the groups the file has for its name. A password change ends no connection: the client
// proved who it was, and the next login needs the new password.
//
// The Registry is an immutable index behind an atomic pointer too: Set replaces the list of hosts (added,
// removed, renamed) while lookups go on.
package virtualhost
