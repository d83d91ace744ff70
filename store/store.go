package store

import (
	"errors"
	"fmt"
)

// Errors returned by stores. Implementations wrap them with context; test with errors.Is.
var (
	ErrClosed      = errors.New("store: closed")
	ErrLocked      = errors.New("store: directory in use by another process")
	ErrVersion     = errors.New("store: unsupported format version")
	ErrInvalidOp   = errors.New("store: invalid operation")
	ErrBatchTooBig = errors.New("store: commit too big for one transaction")
	ErrCorrupt     = errors.New("store: corrupt record")
)

// FormatVersion is the on-disk format this build reads and writes (the value of the version key).
// Version 2 made the records protocol-neutral: names are router keys, filters canonical filter keys, and
// sessions keep no messages of their own (their durable subscriptions do).
const FormatVersion = 2

// Store is the durable state of one virtual host. It is safe for concurrent use.
//
// Writes go through Commit: the ops of one call are applied atomically (all or none) and the caller learns
// when they are durable. Concurrent commits are coalesced into one transaction and one sync (group commit).
// Reads see only committed state, never a batch in progress.
type Store interface {
	// Commit queues ops as one atomic unit and returns a channel (buffered, one value) that receives nil
	// once they are durable, or the error that prevented it (then none of them is applied). The ops and
	// the messages they point to must not be modified until then.
	Commit(ops ...Op) <-chan error
	// CommitFunc is Commit with a callback instead of a channel. done is called exactly once, on the
	// store's commit goroutine (or on the caller's, for an invalid op or a closed store); it must not block
	// nor wait for another commit. A nil done is allowed when the outcome does not matter (an ack whose
	// loss only means a redelivery).
	CommitFunc(done func(error), ops ...Op)

	// Entries returns up to limit entries of one list with Seq >= from, in ascending Seq, messages
	// loaded. It is how a backlog is read in windows, so that it stays on disk.
	Entries(list List, owner string, from uint64, limit int) ([]Entry, error)
	// Recover visits everything stored, for the broker's startup: queues, durable subscriptions, sessions
	// and retained messages, each kind in key order. List contents are summarised (ListInfo), not loaded.
	Recover(v Visitor) (Counts, error)
	// RemoveExpired deletes up to limit list entries whose message expired at or before now (Unix ms)
	// and returns their references, so the caller can drop them from its in-memory windows. It commits
	// through the group committer like any write, with conditional deletes (DeleteEntry.ExpiredBy).
	RemoveExpired(now int64, limit int) ([]Ref, error)

	// Stats returns the store's counters.
	Stats() Stats
	// Close flushes queued commits, stops background work and releases the store. Commits after Close
	// fail with ErrClosed.
	Close() error
}

// List names a kind of ordered list of message references.
type List uint8

// Lists. (Format version 1 had a third, a session's own queue; sessions now keep their messages in
// durable subscriptions.)
const (
	ListQueue      List = 1 // a queue or dead-letter queue; owner = the queue's name
	ListDurableSub List = 2 // a durable subscription's backlog; owner = the subscription's name
)

func (l List) String() string {
	switch l {
	case ListQueue:
		return "queue"
	case ListDurableSub:
		return "dsub"
	}
	return fmt.Sprintf("list(%d)", uint8(l))
}

func (l List) valid() bool { return l == ListQueue || l == ListDurableSub }

// Header is one application header (STOMP header, MQTT 5 user property).
type Header struct {
	Name, Value string
}

// Message is a stored message body with its attributes. It is written once however many entries
// reference it, and deleted when the last reference goes (see the package doc).
type Message struct {
	// ID identifies the message in this store; non-zero. References to one message carry the same ID.
	// After a restart, allocate new IDs above Counts.MaxMessageID.
	ID uint64
	// DestKind and DestPath are the destination it was published to (the router's kind, opaque here).
	DestKind uint8
	DestPath []string
	// Origin is the name as the publisher wrote it ("" when unknown).
	Origin      string
	QoS         uint8
	Persistent  bool
	Retain      bool
	Priority    uint8
	Expires     int64 // Unix milliseconds; 0 = never
	ContentType string
	Headers     []Header
	// Group is the message group (the router's Message.Group); "" = none.
	Group string
	// ReplyToKind and ReplyToPath are where the publisher wants replies (the router's Message.ReplyTo:
	// kind opaque here, canonical segments); an empty path = none. These MQTT 5 properties are left out
	// of an export when empty, so a message without them exports as it did before they existed.
	ReplyToKind uint8    `json:",omitempty"`
	ReplyToPath []string `json:",omitempty"`
	// CorrelationData ties a reply to its request; empty = none.
	CorrelationData []byte `json:",omitempty"`
	// UTF8 says the body is UTF-8 text (MQTT 5 payload format indicator).
	UTF8 bool `json:",omitempty"`
	Body []byte
}

// Entry is one message reference in a list.
type Entry struct {
	List  List
	Owner string
	// Seq orders the list; the caller assigns it (ListInfo.Last+1 after a restart).
	Seq          uint64
	Redeliveries uint32
	Msg          *Message
}

// Ref returns the entry's reference.
func (e Entry) Ref() Ref { return Ref{List: e.List, Owner: e.Owner, Seq: e.Seq} }

// Ref names one list entry.
type Ref struct {
	List  List
	Owner string
	Seq   uint64
}

// ListInfo summarises a list without loading it.
type ListInfo struct {
	Count       int
	First, Last uint64 // sequence numbers; 0 when empty
}

// Queue is a queue's record. A queue exists when it has a record or entries.
type Queue struct {
	Name string
	// Kind is the caller's classification (the router's destination kind, or its own DLQ marker); opaque.
	Kind uint8
	// Delivered is the caller's delivery mark: entries with Seq <= Delivered may have been delivered
	// before a crash (so they are redeliveries). 0 = none. The caller allocates new seqs above it.
	Delivered uint64
}

// DurableSub is a durable subscription's record: a topic filter whose matches are kept in the list of
// the same name (ListDurableSub) until consumed. STOMP /dsub/<id>, and each subscription of an MQTT
// session that outlives its connection, are durable subscriptions.
type DurableSub struct {
	// ID is the subscription's name (the caller's canonical key of its destination).
	ID string
	// Filter is the topic filter in the caller's canonical form (no protocol's syntax).
	Filter string
	// Selector is a message selector expression; "" = every message.
	Selector string
	// Owner is the principal that created it and alone may use it; "" = anyone.
	Owner string
	// QoS is the highest QoS granted.
	QoS uint8
	// Flags are the caller's option bits (the router's: drop QoS 0 messages while offline).
	Flags uint8
}

// Subscription is one subscription of a session.
type Subscription struct {
	// Name is the client's name for it: the filter as it wrote it, its key in the session. A label,
	// never parsed: Filter is what it subscribes to.
	Name string
	// Filter is the filter in the caller's canonical form.
	Filter string
	// Share names the shared-subscription group it belongs to; "" = none.
	Share      string
	QoS        uint8
	Options    uint8  // MQTT 5 subscription option bits beyond QoS (no local, retain as published, ...)
	Identifier uint32 // MQTT 5 subscription identifier; 0 = none
	// Durable is set when the subscription keeps its messages in a durable subscription of the session
	// (a DurableSub record, named by the caller from the client id and Name).
	Durable bool
}

// Session is a client session's record (MQTT clean session off / session expiry > 0): who owns it and
// what it subscribed to. Its messages are in its durable subscriptions' lists.
type Session struct {
	ClientID        string
	ProtocolVersion uint8
	// ExpiryInterval is in seconds (MQTT 5); 0 = the session never expires by itself (3.1.1).
	ExpiryInterval uint32
	// DisconnectedAt is Unix milliseconds of the last disconnect; 0 while connected.
	DisconnectedAt int64
	Subscriptions  []Subscription
	// Owner is the user the session belongs to ("" = anonymous), so a restored session is resumed only
	// by its user.
	Owner string
}

// InflightState is where an outbound two-phase (MQTT QoS 2) delivery stands.
type InflightState uint8

// Inflight states.
const (
	// InflightPublish: sent under its packet id, awaiting the client's receipt (PUBREC).
	InflightPublish InflightState = 1
	// InflightRelease: received by the client (PUBREC), released (PUBREL sent), awaiting completion
	// (PUBCOMP). The message itself may be gone from its list.
	InflightRelease InflightState = 2
)

// Inflight is one outbound delivery of a session that the client has not completed: the packet id it
// was sent under, so that after a restart it is resent under the same id, and the list entry it
// delivers, which stays in its list until the client receives it.
type Inflight struct {
	ClientID string
	PacketID uint16
	State    InflightState
	QoS      uint8
	Ref      Ref // the entry delivered
}

// Retained is the retained message of one topic.
type Retained struct {
	Topic string // the caller's canonical topic text
	Msg   *Message
}

// SessionState is a session as recovered: its record and in-flight state.
type SessionState struct {
	Session  Session
	Inflight []Inflight // ascending packet id
	// Inbound lists the QoS 2 packet ids received and awaiting PUBREL, ascending.
	Inbound []uint16
}

// Visitor receives what Recover finds. A nil function skips that kind; an error stops Recover.
type Visitor struct {
	Queue      func(q Queue, l ListInfo) error
	DurableSub func(d DurableSub, l ListInfo) error
	Session    func(s SessionState) error
	Retained   func(r Retained) error
}

// Counts are what Recover found.
type Counts struct {
	Queues, QueueEntries           int
	DurableSubs, DurableSubEntries int
	Sessions                       int
	Inflight, Inbound              int
	Retained                       int
	Messages                       int    // message bodies
	MaxMessageID                   uint64 // highest stored message id
}

// Stats are a store's running counters, and what a monitoring exporter needs besides.
type Stats struct {
	Commits uint64 // Commit/CommitFunc calls applied or failed
	Ops     uint64 // ops in them
	// Batches counts transactions: with sync on, one sync each. Batches < Commits shows group commit.
	Batches uint64
	Failed  uint64 // commits that failed
	// Writes counts keys set or deleted in the backend; a put cancelled by a delete in the same batch
	// (flush_delay) writes nothing.
	Writes uint64
	// Queued counts the commits waiting for the committer now (at most 4096; Commit blocks beyond).
	Queued int
	// CommitLatency is the distribution of the time from a commit's queueing (Commit, CommitFunc) to its
	// outcome, durable or failed: what a publisher waiting for its acknowledgement waits, the wait for
	// the batch ahead, flush_delay and the sync included. Every commit counted in Commits is in it.
	CommitLatency Distribution
	// SizeBytes is the room the store takes: on disk for badger (every file of its directory, by the
	// blocks allocated to it where the platform reports them, measured at most every few seconds); the
	// keys and values held for the memory store.
	SizeBytes int64
}

// Apply commits ops and waits until they are durable.
func Apply(s Store, ops ...Op) error { return <-s.Commit(ops...) }
