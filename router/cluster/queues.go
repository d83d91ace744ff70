package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Queues across nodes (see the package doc, "Queues" and "Durable subscriptions"): one JetStream stream
// per virtual host with work-queue retention holds every queue's and durable subscription's backlog, one
// subject each; one durable pull consumer per queue, shared by every node, hands each message to one
// node at a time; the node's router dispatches it to one of its consumers and the consumer's
// acknowledgement acknowledges it in JetStream.

const (
	queueMark   = "q" // subjects "lyre.<vhost>.q.<level>..."
	durableMark = "d" // subjects "lyre.<vhost>.d.<level>...": durable subscriptions' copies

	// topicHeader carries the topic of a durable subscription's message, its levels encoded as subject
	// tokens: the subject names the subscription.
	topicHeader = "Lyre-Topic"

	// DefaultAckWait is how long JetStream waits for a node to settle a message it fetched before it
	// offers the message to the other nodes: how soon the in-flight messages of a node that died reach
	// consumers elsewhere. A live node keeps the messages its consumers hold with progress heartbeats.
	DefaultAckWait = 10 * time.Second

	maxFetch       = 256         // messages one pull request asks for at most
	fetchWait      = time.Second // how long one pull request waits for messages
	asyncPending   = 16384       // publishes awaiting their JetStream acknowledgement
	publishTimeout = 10 * time.Second
	retryWait      = 200 * time.Millisecond
	consumerIdle   = time.Hour // a queue consumer nobody pulled from for this long is removed by JetStream
)

// ErrQueuesUnavailable refuses a message for a clustered queue while the cluster's JetStream has no
// quorum (or its stream is not made yet): the sender is not acknowledged and may send again.
var ErrQueuesUnavailable = errors.New("cluster: queues unavailable: JetStream has no quorum yet")

// errTooLarge refuses a queue message over NATS's payload limit.
var errTooLarge = errors.New("cluster: message larger than the cluster's payload limit")

// QueueStats counts what one virtual host's clustered queues did.
type QueueStats struct {
	Published uint64 // messages handed to JetStream and acknowledged by it
	Failed    uint64 // publishes JetStream did not acknowledge (the sender was not acknowledged either)
	Fed       uint64 // messages fetched and given to the local router
	Acked     uint64 // fed messages acknowledged in JetStream (consumed, expired, purged, dead-lettered)
	Returned  uint64 // fed messages handed back (no local consumer any more)
	Malformed uint64 // stored messages that did not decode (terminated: never delivered)
}

// queueBackend keeps an attached host's queues in JetStream: it is the host router's QueueBackend.
type queueBackend struct {
	l       *Link
	h       *host
	stream  string // "LYRE_Q_<vhost token>"
	prefix  string // "lyre.<vhost token>.q."
	dprefix string // "lyre.<vhost token>.d."
	js      jetstream.JetStream
	ctx     context.Context // cancelled by close
	cancel  context.CancelFunc
	ready   atomic.Bool

	// pubMu guards pubs, the publishes awaiting JetStream's acknowledgement in publish order, and
	// pubWake; the acknowledger goroutine takes them in order.
	pubMu   sync.Mutex
	pubs    []pendingPub
	pubWake chan struct{}

	mu      sync.Mutex // taken under a queue's lock (Want, Settle): never call the router holding it
	closed  bool
	feeders map[string]*feeder   // by subject
	fed     map[*fedMsg]struct{} // fetched and not settled: kept alive by heartbeats

	published, failed, nFed, acked, returned, malformed atomic.Uint64
}

type pendingPub struct {
	f    jetstream.PubAckFuture
	done func(error) // nil: nobody waits
}

// fedMsg is the reference the router keeps with a message it was fed.
type fedMsg struct{ m jetstream.Msg }

// feeder pulls one queue's messages while its local consumers want them. want and running are guarded
// by queueBackend.mu.
type feeder struct {
	d       router.Destination
	subject string
	want    int
	running bool
	stop    context.CancelFunc // ends the pull request in progress; nil between requests
}

// queueStream is the name of vhost's queue stream.
func queueStream(vhost string) string { return string(appendToken([]byte("LYRE_Q_"), vhost)) }

func queuePrefix(vhost string) string {
	b := appendToken([]byte(subjectRoot+"."), vhost)
	return string(append(b, "."+queueMark+"."...))
}

func durablePrefix(vhost string) string {
	b := appendToken([]byte(subjectRoot+"."), vhost)
	return string(append(b, "."+durableMark+"."...))
}

// subject is the subject queue d's messages are stored on.
func (qb *queueBackend) subject(d router.Destination) string {
	if d.Kind == router.DurableSub {
		return topicSubject(qb.dprefix, d.Path)
	}
	return topicSubject(qb.prefix, d.Path)
}

// consumerName names the durable consumer of a queue subject: a hash, since a consumer name may not hold
// every byte a subject does, and has a length limit.
func consumerName(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return "lyre_q_" + hex.EncodeToString(sum[:16])
}

// attachQueues makes the link keep h's queues in JetStream, when the link has JetStream.
func (l *Link) attachQueues(h *host) error {
	if l.js == nil {
		return nil
	}
	js, err := jetstream.New(l.nc, jetstream.WithPublishAsyncMaxPending(asyncPending),
		jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return fmt.Errorf("cluster: jetstream: %w", err)
	}
	qb := &queueBackend{l: l, h: h, stream: queueStream(h.name), prefix: queuePrefix(h.name), dprefix: durablePrefix(h.name), js: js,
		pubWake: make(chan struct{}, 1), feeders: make(map[string]*feeder), fed: make(map[*fedMsg]struct{})}
	qb.ctx, qb.cancel = context.WithCancel(context.Background())
	l.mu.Lock()
	h.qb = qb
	l.mu.Unlock()
	h.r.SetQueueBackend(qb)
	l.wg.Add(3)
	go qb.setup()
	go qb.ackLoop()
	go qb.heartbeats()
	return nil
}

// close stops the backend's goroutines (the link waits for them): publishes still unacknowledged fail,
// and the router keeps its queues to itself from now on.
func (qb *queueBackend) close() {
	qb.h.r.SetQueueBackend(nil)
	qb.mu.Lock()
	qb.closed = true
	qb.mu.Unlock()
	qb.cancel()
}

// setup makes the host's queue stream once JetStream has a quorum, retrying until it does.
func (qb *queueBackend) setup() {
	defer qb.l.wg.Done()
	for attempt := 0; ; attempt++ {
		js, r, err := qb.l.JetStream(qb.ctx)
		if errors.Is(err, ErrNoJetStream) {
			qb.l.log.Warn("no JetStream: queues stay node-local", zap.String("vhost", qb.h.name))
			qb.h.r.SetQueueBackend(nil)
			return
		}
		if err == nil {
			ctx, cancel := context.WithTimeout(qb.ctx, streamAttemptTimeout(attempt))
			_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
				Name: qb.stream, Subjects: []string{qb.prefix + ">", qb.dprefix + ">"}, Retention: jetstream.WorkQueuePolicy,
				Storage: jetstream.FileStorage, Replicas: r, MaxMsgSize: maxPayload,
			})
			cancel()
			if err == nil {
				qb.ready.Store(true)
				qb.l.log.Info("clustered queues ready", zap.String("vhost", qb.h.name), zap.String("stream", qb.stream),
					zap.Int("replicas", r))
				return
			}
		}
		if qb.ctx.Err() != nil {
			return
		}
		qb.l.log.Debug("queue stream not ready", zap.String("vhost", qb.h.name), zap.Error(err))
		if !qb.pause(retryWait) {
			return
		}
	}
}

// pause waits d, reporting false when the backend closed meanwhile.
func (qb *queueBackend) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-qb.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Claims implements router.QueueBackend: named queues and durable subscriptions (STOMP's, and the ones
// of MQTT persistent sessions) are the cluster's; temporary queues are their connection's.
func (qb *queueBackend) Claims(d router.Destination) bool {
	return (d.Kind == router.Queue || d.Kind == router.DurableSub) && len(d.Path) > 0
}

// Publish implements router.QueueBackend: m goes to JetStream asynchronously; its Tracker learns when
// JetStream acknowledged it (stored by a quorum of the stream's replicas). A durable subscription's copy
// carries its topic, and a message ID naming the topic message cluster-wide (its origin link and its ID
// there), so that the copies of one message that several nodes holding the subscription store are one
// (JetStream's duplicate window).
func (qb *queueBackend) Publish(d router.Destination, m *router.Message) error {
	if !qb.ready.Load() {
		return ErrQueuesUnavailable
	}
	buf, ok := encode(nil, m, qb.l.id, 0, time.Now())
	if !ok {
		return nil // expired on the way: dropped, as a queue drops an expired message
	}
	if len(buf) > maxPayload {
		return errTooLarge
	}
	nm := &nats.Msg{Subject: qb.subject(d), Data: buf}
	if d.Kind == router.DurableSub {
		origin, id := qb.l.id, m.ID
		if in := qb.h.inbound.Load(); in != nil && in.m == m {
			origin, id = in.origin, in.id
		}
		nm.Header = nats.Header{}
		nm.Header.Set(topicHeader, topicSubject("", m.Dest.Path))
		nm.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s|%x|%x", nm.Subject, origin, id))
	}
	f, err := qb.js.PublishMsgAsync(nm)
	if err != nil {
		qb.failed.Add(1)
		return fmt.Errorf("%w: %w", ErrQueuesUnavailable, err)
	}
	var done func(error)
	if m.Tracker != nil {
		done = m.Tracker.Track()
	}
	qb.pubMu.Lock()
	qb.pubs = append(qb.pubs, pendingPub{f, done})
	qb.pubMu.Unlock()
	select {
	case qb.pubWake <- struct{}{}:
	default:
	}
	return nil
}

// ackLoop waits for JetStream's acknowledgements in publish order and tells each message's tracker.
func (qb *queueBackend) ackLoop() {
	defer qb.l.wg.Done()
	var batch []pendingPub
	for {
		qb.pubMu.Lock()
		batch, qb.pubs = qb.pubs, batch[:0]
		qb.pubMu.Unlock()
		for i, p := range batch {
			var err error
			select {
			case <-p.f.Ok():
			case err = <-p.f.Err():
				if isDuplicateInProcess(err) {
					// Another node is storing the same durable-subscription copy (same message ID).
					err = nil
				}
			case <-qb.ctx.Done():
				err = router.ErrClosed
			}
			if err != nil {
				qb.failed.Add(1)
			} else {
				qb.published.Add(1)
			}
			if p.done != nil {
				p.done(err)
			}
			batch[i] = pendingPub{}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-qb.ctx.Done():
			qb.pubMu.Lock()
			rest := qb.pubs
			qb.pubs = nil
			qb.pubMu.Unlock()
			for _, p := range rest {
				if p.done != nil {
					p.done(router.ErrClosed)
				}
			}
			return
		case <-qb.pubWake:
		}
	}
}

// Discard implements router.QueueBackend: the durable subscription's messages are purged from the
// stream, in the background.
func (qb *queueBackend) Discard(d router.Destination) {
	subject := qb.subject(d)
	qb.mu.Lock()
	defer qb.mu.Unlock()
	if qb.closed {
		return
	}
	qb.l.wg.Add(1)
	go func() {
		defer qb.l.wg.Done()
		ctx, cancel := context.WithTimeout(qb.ctx, 10*time.Second)
		defer cancel()
		st, err := qb.js.Stream(ctx, qb.stream)
		if err == nil {
			err = st.Purge(ctx, jetstream.WithPurgeSubject(subject))
		}
		if err != nil && qb.ctx.Err() == nil {
			qb.l.log.Warn("durable subscription's messages not purged", zap.String("subject", subject), zap.Error(err))
		}
	}()
}

// Want implements router.QueueBackend: a feeder pulls up to n messages of queue d for the local
// consumers; n 0 stops it.
func (qb *queueBackend) Want(d router.Destination, n int) {
	subject := qb.subject(d)
	qb.mu.Lock()
	defer qb.mu.Unlock()
	f := qb.feeders[subject]
	if f == nil {
		if n <= 0 || qb.closed {
			return
		}
		f = &feeder{d: router.Destination{Kind: d.Kind, Path: append([]string(nil), d.Path...)}, subject: subject}
		qb.feeders[subject] = f
	}
	f.want = n
	if n <= 0 && f.stop != nil {
		// Nobody here takes more: end the pull request now, or JetStream would go on handing it
		// messages this node can only give back.
		f.stop()
	}
	if n > 0 && !f.running && !qb.closed {
		f.running = true
		qb.l.wg.Add(1)
		go qb.feed(f)
	}
}

// Settle implements router.QueueBackend: acknowledged in JetStream, or handed back at once (Nak) for
// any node to fetch again.
func (qb *queueBackend) Settle(ref any, ack bool) {
	fm, ok := ref.(*fedMsg)
	if !ok {
		return
	}
	qb.mu.Lock()
	delete(qb.fed, fm)
	qb.mu.Unlock()
	if ack {
		_ = fm.m.Ack()
		qb.acked.Add(1)
	} else {
		_ = fm.m.Nak()
		qb.returned.Add(1)
	}
}

// feed pulls f's queue while its consumers want messages, and gives them to the router.
func (qb *queueBackend) feed(f *feeder) {
	defer qb.l.wg.Done()
	var cons jetstream.Consumer
	for {
		qb.mu.Lock()
		n := f.want
		if n <= 0 || qb.closed {
			f.running = false
			if qb.feeders[f.subject] == f && n <= 0 {
				delete(qb.feeders, f.subject)
			}
			qb.mu.Unlock()
			return
		}
		qb.mu.Unlock()
		if !qb.ready.Load() {
			if !qb.pause(retryWait) {
				return
			}
			continue
		}
		if cons == nil {
			ctx, cancel := context.WithTimeout(qb.ctx, 10*time.Second)
			c, err := qb.js.CreateOrUpdateConsumer(ctx, qb.stream, jetstream.ConsumerConfig{
				Durable: consumerName(f.subject), FilterSubject: f.subject, AckPolicy: jetstream.AckExplicitPolicy,
				AckWait: qb.l.ackWait(), MaxAckPending: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
				InactiveThreshold: consumerIdle,
			})
			cancel()
			if err != nil {
				qb.l.log.Debug("queue consumer not ready", zap.String("subject", f.subject), zap.Error(err))
				if !qb.pause(retryWait) {
					return
				}
				continue
			}
			cons = c
		}
		ctx, cancel := context.WithTimeout(qb.ctx, fetchWait)
		qb.mu.Lock()
		f.stop = cancel
		qb.mu.Unlock()
		batch, err := cons.Fetch(min(n, maxFetch), jetstream.FetchContext(ctx))
		if err != nil {
			qb.endFetch(f)
			cons = nil // the consumer may be gone (removed while idle) or moving: make sure of it again
			if !qb.pause(retryWait) {
				return
			}
			continue
		}
		for jm := range batch.Messages() {
			if !qb.give(f, jm) {
				// Handed back: a request still open would be handed it again at once.
				cancel()
			}
		}
		qb.endFetch(f)
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) &&
			!errors.Is(err, context.Canceled) {
			cons = nil
			if !qb.pause(retryWait) {
				return
			}
		}
	}
}

// endFetch ends f's pull request.
func (qb *queueBackend) endFetch(f *feeder) {
	qb.mu.Lock()
	stop := f.stop
	f.stop = nil
	qb.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// give feeds one fetched message to the router, or hands it back when nobody here consumes the queue
// (reporting false).
func (qb *queueBackend) give(f *feeder, jm jetstream.Msg) bool {
	meta, err := jm.Metadata()
	if err != nil {
		qb.malformed.Add(1)
		_ = jm.Term()
		return true
	}
	// The remaining lifetime was measured when the message was published: count it from when the stream
	// stored it, not from now.
	path := f.d.Path
	if f.d.Kind == router.DurableSub {
		// A durable subscription's message keeps the topic it was published to.
		if path, err = parseLevels(jm.Headers().Get(topicHeader)); err != nil {
			qb.malformed.Add(1)
			_ = jm.Term()
			return true
		}
	}
	m, _, err := decode(jm.Data(), path, meta.Timestamp)
	if err != nil {
		qb.malformed.Add(1)
		_ = jm.Term()
		return true
	}
	if f.d.Kind == router.Queue {
		m.Dest = f.d
	}
	fm := &fedMsg{m: jm}
	qb.mu.Lock()
	qb.fed[fm] = struct{}{}
	qb.mu.Unlock()
	qb.nFed.Add(1)
	var redeliveries uint32
	if meta.NumDelivered > 1 {
		redeliveries = uint32(min(meta.NumDelivered-1, 1<<31))
	}
	if !qb.h.r.Feed(f.d, m, redeliveries, fm) {
		qb.Settle(fm, false)
		return false
	}
	return true
}

// heartbeats keeps the messages fed to the local router from being offered to other nodes while they
// wait here or with a consumer: JetStream redelivers a message not settled within the ack wait.
func (qb *queueBackend) heartbeats() {
	defer qb.l.wg.Done()
	t := time.NewTicker(qb.l.ackWait() / 3)
	defer t.Stop()
	var refs []*fedMsg
	for {
		select {
		case <-qb.ctx.Done():
			return
		case <-t.C:
		}
		qb.mu.Lock()
		for fm := range qb.fed {
			refs = append(refs, fm)
		}
		qb.mu.Unlock()
		for i, fm := range refs {
			_ = fm.m.InProgress()
			refs[i] = nil
		}
		refs = refs[:0]
	}
}

func (qb *queueBackend) stats() QueueStats {
	return QueueStats{Published: qb.published.Load(), Failed: qb.failed.Load(), Fed: qb.nFed.Load(),
		Acked: qb.acked.Load(), Returned: qb.returned.Load(), Malformed: qb.malformed.Load()}
}

// ackWait is the configured ack wait of the queue consumers.
func (l *Link) ackWait() time.Duration {
	if l.cfg.AckWait > 0 {
		return l.cfg.AckWait
	}
	return DefaultAckWait
}

// QueuesReady reports whether vhost's queues are clustered and ready: its stream exists. Until then
// sends to its queues are refused (ErrQueuesUnavailable).
func (l *Link) QueuesReady(vhost string) bool {
	qb := l.queues(vhost)
	return qb != nil && qb.ready.Load()
}

// QueueStats returns the counters of vhost's clustered queues (zero when they are not clustered).
func (l *Link) QueueStats(vhost string) QueueStats {
	if qb := l.queues(vhost); qb != nil {
		return qb.stats()
	}
	return QueueStats{}
}

func (l *Link) queues(vhost string) *queueBackend {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.hosts[string(appendToken(nil, vhost))]; h != nil {
		return h.qb
	}
	return nil
}

// isDuplicateInProcess reports JetStream's answer to a message whose ID another publish of it is storing
// right now: the message is being stored, under that publish.
func isDuplicateInProcess(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && ae.ErrorCode == 10158 // JSStreamDuplicateMessageConflict
}

// parseLevels decodes levels written as subject tokens (topicSubject with no prefix).
func parseLevels(s string) ([]string, error) {
	if s == "" {
		return nil, errBadSubject
	}
	toks := strings.Split(s, ".")
	path := make([]string, len(toks))
	for i, t := range toks {
		var err error
		if path[i], err = decodeToken(t); err != nil {
			return nil, err
		}
	}
	return path, nil
}

var _ router.QueueBackend = (*queueBackend)(nil)
