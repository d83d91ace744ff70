package stomp

import (
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

	// temps holds the session ids of live connections that own temporary destinations; tempQueues the
	// router keys of the temporary queues they named.
	temps, tempQueues sync.Map

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

// Dropped returns the number of topic deliveries dropped so far because a subscriber could not keep up
// (under slow_consumer_policy block, the default, after holding its producers back in vain; see the
// package doc).
func (h *Handler) Dropped() uint64 { return h.dropped.Load() }

// Serve implements protocol.Handler: it handles CONNECT on a goroutine of its own (protocol.Apart: login
// and session setup need a deep stack), then the connection core steps the session frame by frame and
// may park it between frames.
func (h *Handler) Serve(c *protocol.Conn) {
	s := h.newSession(c)
	s.start()
	stepping := false
	defer func() {
		if !stepping {
			s.cleanup() // after an error, or a panic on its way to the connection core
		}
	}()
	var err error
	protocol.Apart(func() { err = s.Step() })
	if err == nil {
		c.Continue(s)
		stepping = true
	}
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
		id:  newSessionID(),
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
