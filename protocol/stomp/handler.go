// Package stomp is Lyre's STOMP 1.0/1.1/1.2 front-end: it decodes frames from a protocol.Conn, runs the
// session state machine and translates STOMP destinations into router destinations and back.
//
// Concurrency: Serve runs on the connection's reader goroutine, which owns frame decoding, the session
// state and every router call. Router deliveries (subscription.Deliver) run on publishers' goroutines,
// possibly while the router holds a queue lock; they only encode into the connection's outbound queue and
// touch state guarded by session.mu, and never call the router. Lock order: session.bmu / session.rmu →
// router → Conn outbound → session.mu. The reader never holds session.mu while calling the router or
// Conn.Begin. The OnDrain hook (writer goroutine) flushes held receipts and retained messages and resumes
// queue consumers.
//
// Frames are read by this package's Reader, not go-stomp's frame.Reader, so that max_headers,
// max_header_length and max_message_length are enforced before anything is buffered.
//
// Decisions where the spec leaves room:
//   - A CONNECT without a host header goes to the default virtual host; an unknown host is an ERROR.
//   - message-id is the router's message ID, the same for every subscriber of one message; the 1.2 ack
//     header is a per-session delivery number, so each delivery is acknowledged individually.
//   - Topic messages that do not fit in the outbound queue are dropped and counted (DESIGN.md §5);
//     queue messages stay in the queue until the connection drains.
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
//   - Temporary destinations are private to their connection (see temp.go). Durable subscriptions
//     (persistent SUBSCRIBE to a topic, /dsub/<id>) are the router's, owned by their creator (see
//     durable.go).
//   - Transactions hold at most MaxTransactionFrames frames and max_message_length body bytes; a
//     DISCONNECT or a dropped connection aborts them.
package stomp

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// ServerName is the CONNECTED frame's server header.
const ServerName = "lyre/0.1.0"

// Defaults of the Handler's tunables.
const (
	// DefaultHeartBeat is the server's side of heart-beat negotiation, both directions.
	DefaultHeartBeat = 10 * time.Second
	// DefaultCredit is the number of unacknowledged queue messages a client or client-individual
	// subscriber may hold, unless its SUBSCRIBE asks for another prefetch-count.
	DefaultCredit = 1000
	// DefaultQueueFullWait is the default Handler.QueueFullWait.
	DefaultQueueFullWait = 10 * time.Second
	// MaxTransactionFrames bounds the frames buffered in one transaction; more is an ERROR.
	MaxTransactionFrames = 10000
	// MaxTransactions bounds the open transactions of one session; more is an ERROR.
	MaxTransactions = 100
)

// Handler serves STOMP connections; it implements protocol.Handler. Set its fields before the server starts.
type Handler struct {
	hosts *virtualhost.Registry
	log   *zap.Logger

	// HeartBeatSend is the smallest interval at which the server sends heart-beats (the sx of CONNECTED's
	// heart-beat header); 0 means the server does not send them. NewHandler sets DefaultHeartBeat.
	HeartBeatSend time.Duration
	// HeartBeatReceive is the interval at which the server wants the client's heart-beats (sy); 0 means
	// none. A client silent for 1.5 times the negotiated interval is disconnected. NewHandler sets
	// DefaultHeartBeat.
	HeartBeatReceive time.Duration

	// QueueFullWait is how long a SEND to a full queue blocks its producer, retrying, before the
	// session answers ERROR. 0 answers at once. NewHandler sets DefaultQueueFullWait.
	QueueFullWait time.Duration

	// temps holds the session ids of live connections that own temporary destinations.
	temps sync.Map

	// dropped counts topic messages dropped because a subscriber's outbound queue was full.
	dropped atomic.Uint64

	// Access control refusals (see Refusals).
	refusals protocol.Refusals
}

// NewHandler returns a STOMP handler serving the virtual hosts of hosts.
func NewHandler(hosts *virtualhost.Registry, log *zap.Logger) *Handler {
	if log == nil {
		log = zap.NewNop()
	}
	return &Handler{hosts: hosts, log: log, HeartBeatSend: DefaultHeartBeat, HeartBeatReceive: DefaultHeartBeat,
		QueueFullWait: DefaultQueueFullWait}
}

// Dropped returns the number of topic deliveries refused so far because a subscriber could not keep up:
// dropped, except under slow_consumer_policy block, where the router retries them (router.Stats counts
// what it finally drops).
func (h *Handler) Dropped() uint64 { return h.dropped.Load() }

// Serve runs one STOMP connection until it ends; it implements protocol.Handler.
func (h *Handler) Serve(c *protocol.Conn) {
	h.newSession(c).run()
}

// newSession prepares a connection's session. It is apart from Serve, whose frame stays under every
// parked reader (see Reader.Wait).
//
//go:noinline
func (h *Handler) newSession(c *protocol.Conn) *session {
	set := c.Settings()
	s := &session{
		h:   h,
		c:   c,
		cfg: &set.Connector.STOMP,
		g:   set.STOMPGrammar,
		id:  sessionPrefix + strconv.FormatUint(c.ID(), 10),
	}
	s.dr = deadlineReader{c: c, r: c.Reader()}
	s.rd.init(&s.dr, Limits{
		MaxHeaders:      s.cfg.MaxHeaders,
		MaxHeaderLength: int(s.cfg.MaxHeaderLength),
		MaxBodyLength:   s.cfg.MaxMessageLength,
	})
	return s
}

var _ protocol.Handler = (*Handler)(nil)
