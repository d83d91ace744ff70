package router

import (
	"errors"
	"regexp"
)

// Errors returned by the router. Front-ends map them onto their protocol's answer.
var (
	ErrInvalidName   = errors.New("router: invalid destination name")
	ErrInvalidFilter = errors.New("router: invalid filter")
	ErrQueueFull     = errors.New("router: queue full")
	ErrClosed        = errors.New("router: closed")
	ErrTooManyQueues = errors.New("router: too many queues")
	ErrNoQueue       = errors.New("router: no such queue")
	// ErrTooManySubscriptions refuses a subscription or consumer beyond Options.MaxSubscriptions.
	ErrTooManySubscriptions = errors.New("router: too many subscriptions")
)

// Kind says which namespace a destination lives in. Topics and queues with the same path are distinct.
type Kind uint8

// Destination kinds.
const (
	Topic Kind = iota
	Queue
	DurableSub
	TempQueue
	TempTopic
)

func (k Kind) String() string {
	switch k {
	case Topic:
		return "topic"
	case Queue:
		return "queue"
	case DurableSub:
		return "dsub"
	case TempQueue:
		return "temp-queue"
	case TempTopic:
		return "temp-topic"
	}
	return "unknown"
}

// Destination is a canonical, wire-independent name inside one virtual host.
// Path segments are raw (unescaped); empty segments are real ("a//b" has three).
type Destination struct {
	Kind Kind
	Path []string
}

// SegKind is the kind of one filter segment.
type SegKind uint8

// Filter segment kinds.
const (
	SegLiteral SegKind = iota // matches Text exactly
	SegOne                    // one level: MQTT '+', STOMP '*'
	SegMany                   // zero or more levels: MQTT '#', STOMP '**'; always last
	SegRegex                  // one level matched by Re (anchored RE2)
)

// Seg is one segment of a parsed filter.
type Seg struct {
	Kind SegKind
	Text string         // literal text, or the regex source for SegRegex
	Re   *regexp.Regexp // compiled, anchored; only for SegRegex
}

// Filter is a parsed subscription filter: a destination pattern. A filter without wildcard or regex
// segments is literal and names exactly one destination.
type Filter struct {
	Kind Kind
	Segs []Seg
}

// Header is one application header carried with a message (STOMP headers, MQTT 5 user properties).
type Header struct {
	Name, Value string
}

// Message is immutable once published: the router and every subscriber share one value.
type Message struct {
	ID         uint64 // assigned by the router at Publish when zero
	Dest       Destination
	Body       []byte
	QoS        uint8 // 0, 1 or 2; a STOMP persistent message is QoS 1
	Persistent bool
	Retain     bool // the publisher asked for it to be retained (or cleared, when Body is empty)
	// RetainKept marks a Retain message whose retained copy is kept elsewhere (another node published
	// it, and its retained copy travels by other means): the router delivers it with its retain flag as
	// published (MQTT 5 retain-as-published) without storing it.
	RetainKept  bool
	Expires     int64 // Unix milliseconds; 0 = never
	ContentType string
	// Headers are the application headers: STOMP headers the broker does not interpret, MQTT 5 user
	// properties (in order; a name may repeat).
	Headers []Header
	// ReplyTo is where the publisher wants replies (MQTT 5 response topic, STOMP reply-to), rendered for
	// each subscriber in its own grammar; Path nil = none.
	ReplyTo Destination
	// CorrelationData ties a reply to its request (MQTT 5 correlation data, STOMP correlation-id).
	CorrelationData []byte
	// UTF8 says the body is UTF-8 text (MQTT 5 payload format indicator 1).
	UTF8 bool
	// Priority orders a queue: higher first, FIFO within a priority; 0 (lowest) to MaxPriority, larger
	// values count as MaxPriority. Topics ignore it.
	Priority uint8
	// Internal marks the broker's own status messages ($SYS): retained in memory only, never handed to
	// the Journal (they are republished every interval, and a store write each time would buy nothing:
	// they are recomputed after a restart), and not counted in Stats.Published, which counts clients'
	// messages. Their deliveries count as any others.
	Internal bool
	// Group names a message group: while the consumer that received a group's first message lives, the
	// queue gives it every message of that group. "" = no group.
	Group string
	// Origin is the name exactly as the publisher wrote it, with the grammar it was parsed by, so a
	// subscriber that uses the same grammar renders it without allocating.
	Origin     string
	OriginGram *Grammar
	// SenderID is the publishing client's id (MQTT client id, STOMP connection id); "" = unknown. MQTT 5's
	// no local option compares it with the subscriber's; ShareHashClientID picks a shared group's member by it.
	SenderID string
	// Publisher is the publishing connection (the front-ends set their *protocol.Conn): a subscriber
	// recognises its own messages by it, and asks it to slow down (see Sink). Never rendered on the wire.
	Publisher any
	// Tracker, when set by the publisher, learns of each durable write storing or delivering this
	// message starts (see Tracker), so the publisher acknowledges it once they are done.
	Tracker Tracker
}

// Delivery is one message handed to one subscription.
type Delivery struct {
	Msg *Message
	Sub *Subscription
	// Seq identifies a queue delivery for Consumer.Ack/Nack; zero for topic deliveries.
	Seq uint64
	// Redeliveries counts earlier deliveries of this queue message that were not acknowledged.
	Redeliveries uint32
	// Retained is set when the message is a retained one sent because the subscription is new.
	Retained bool
	// QueueSeq is the message's sequence number in its queue, assigned on arrival and kept across
	// redeliveries; zero for topic deliveries. ConsumerOptions.FromSeq refers to it.
	QueueSeq uint64
	// BrowseEnd marks the delivery that tells a browser consumer it has seen every message the queue
	// held; Msg is nil in it and only browser consumers receive one.
	BrowseEnd bool
	// Paced is set on topic deliveries whose topic policy is SlowBlock (the default): a sink over its
	// window holds the publisher back rather than dropping the message at its window (see Sink).
	Paced bool
}

// Sink receives matched messages. Deliver must not block, never sleeps and never calls the router: it
// enqueues into the subscriber's bounded outbound queue and reports false when it cannot take the
// message. The router then counts a drop for a topic delivery and keeps the message for a queue delivery
// (the consumer waits for Consumer.Resume).
//
// Between its window and its hard bound a sink takes a topic delivery and asks the publisher to slow
// down, through Message.Publisher (the front-ends' protocol.Brake): the publisher's reader stops reading
// its socket until the subscriber has room, for a bounded time. Sinks do this for messages that must not
// be lost lightly (MQTT QoS ≥ 1, STOMP persistent) and for every message of a topic whose policy is
// SlowBlock, the default (Delivery.Paced); a subscriber that makes no room within the bound is marked
// slow and drops under its own policy from then on.
//
// A sink that may receive only some of what its filter matches (an access gate on a wildcard) also
// implements Acceptor; the router asks it before every Deliver and never delivers what it refuses.
type Sink interface {
	Deliver(d Delivery) bool
}

// Acceptor is implemented by a Sink that may refuse some messages its subscription matches, whatever
// its room. The router asks Accepts before calling Deliver; a refused message is neither delivered nor
// dropped for that subscription: a plain subscription is skipped, a shared group offers the message to
// its other members, a queue consumer leaves it for the others (as ConsumerOptions.Match does). The
// router looks for Acceptor once, at Subscribe or Consume, so the check costs a nil test per delivery for
// the sinks that do not implement it. Accepts runs on the publisher's goroutine (under the queue's lock
// for a consumer); it must not block or call the router, and must answer the same for the same message.
type Acceptor interface {
	Accepts(m *Message) bool
}

// Subscription ties a filter to a sink. The router treats it as an identity: Unsubscribe takes the same
// pointer that Subscribe did.
type Subscription struct {
	Filter Filter
	Sink   Sink
	QoS    uint8  // the highest QoS granted; deliveries are min(message QoS, QoS)
	ID     string // the front-end's name for it (STOMP subscription id, MQTT filter text)
	Share  string // shared-subscription group; each message goes to one member (Options.ShareStrategy)
	Opaque any    // front-end state

	dur *durable // set for a durable subscription's own entry in the trie (durable.go); Sink is nil
	// acc is Sink as an Acceptor, or nil; set by Subscribe so a delivery tests a field rather than
	// asserting an interface.
	acc Acceptor
	// salt is a shared-group member's own random value for the hash strategies (ShareGroup.rank); set
	// by Subscribe.
	salt uint64
}

// accepts reports whether s may receive m (see Acceptor).
func (s *Subscription) accepts(m *Message) bool { return s.acc == nil || s.acc.Accepts(m) }
