package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Config is one node's cluster settings (conf.Cluster, checked there).
type Config struct {
	Name   string   // cluster name: nodes of other clusters are refused on the routes
	Node   string   // this node's name, unique in the cluster
	Listen string   // host:port of the embedded server's route listener
	Routes []string // host:port of the other nodes' route listeners
	// Advertise is the host:port the other nodes dial to reach Listen; "" = Listen.
	Advertise string
	// NATSURL connects to an external NATS (comma-separated URLs) instead of embedding a server.
	NATSURL string
	// Directory turns JetStream on in the embedded server, with its storage there. With NATSURL the
	// external NATS decides: JetStream is used when its account has it.
	Directory string
	// Replicas is the R of every stream the link creates (1 when 0).
	Replicas int
	// AckWait is how long a queue message a node fetched may go unsettled before JetStream offers it to
	// the other nodes (queues.go); 0 means DefaultAckWait.
	AckWait time.Duration
}

// Queue bounds. A message that finds its queue full is dropped and counted: topics are at most once
// across nodes, and a link that waited would stall the publisher's reader (router.Sink must not block).
const (
	outQueue = 8192
	inQueue  = 65536
)

// Stats counts what the link did with messages.
type Stats struct {
	Sent       uint64 // local topic messages published to NATS
	Received   uint64 // messages from NATS published into a local router
	Duplicates uint64 // copies dropped because overlapping NATS subscriptions delivered one message twice
	Malformed  uint64 // NATS messages whose subject or envelope did not decode
	Dropped    uint64 // local messages dropped because the outbound queue was full or NATS refused them
	TooLarge   uint64 // local messages over NATS's payload limit, not sent
	// InDropped counts messages from other nodes NATS dropped because the link's inbound queue was full
	// (a NATS slow consumer: this node's routers did not keep up).
	InDropped uint64
	// PressureSent counts the signals this node sent to others while its subscribers were over their
	// windows; HeldEpisodes counts the times other nodes' signals held this node's publishers back, and
	// StuckEpisodes those in which a publisher waited its whole bound (flow.go).
	PressureSent, HeldEpisodes, StuckEpisodes uint64
}

// Link is one node's connection to the cluster: the embedded NATS server (or an external NATS) and the
// client that carries every attached virtual host's topics.
type Link struct {
	log  *zap.Logger
	cfg  Config
	id   uint64 // this incarnation's origin id: the sequence numbers it stamps restart with it
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream // nil without JetStream (see JetStream)
	in   chan *nats.Msg
	out  chan outMsg
	quit chan struct{}
	wg   sync.WaitGroup

	// ret keeps retained messages in JetStream (retained.go); nil without js.
	ret *retainer
	// share carries shared-subscription groups across nodes over a second connection (share.go).
	share *shareState

	mu     sync.Mutex
	hosts  map[string]*host // by vhost token; guarded by mu
	ops    []op             // interest changes not yet applied; guarded by mu
	wake   chan struct{}    // cap 1: there are ops
	closed bool
	// closing is set by Close before it closes the client, so its disconnect is not reported as a loss.
	closing atomic.Bool

	// subs is owned by the interest goroutine: one NATS subscription per subject, reference-counted.
	subs map[string]*natsSub
	// last is owned by the inbound goroutine: the highest sequence number seen per origin.
	last map[uint64]uint64
	// sess carries session claims (sessions.go).
	sess sessions
	// rec keeps session records in JetStream (records.go); nil without js.
	rec *recorder

	sent, received, dups, malformed, dropped, tooLarge atomic.Uint64

	// Flow control across nodes (flow.go): remote is the brake other nodes' signals put on this node's
	// publishers; inPace the brakes local subscribers put on the inbound goroutine.
	remote       remotePressure
	inPace       inPacer
	outBrake     outBrake
	pressureSent atomic.Uint64

	st    linkState // connection state (status.go)
	drops inDrops   // what NATS dropped for the link's subscriptions (status.go)
}

type outMsg struct {
	h *host
	m *router.Message
}

type natsSub struct {
	h   *host
	n   int
	sub *nats.Subscription
}

// op is one interest change; detach drops every subscription of h.
type op struct {
	h      *host
	f      router.Filter
	share  string // a shared group's member (share.go)
	added  bool
	detach bool
}

// Start embeds a NATS server (or connects to c.NATSURL) and connects the link's client. Close releases it.
func Start(c Config, log *zap.Logger) (*Link, error) {
	if c.Node == "" {
		return nil, errors.New("cluster: node name required")
	}
	l := &Link{
		log:   log.Named("cluster").With(zap.String("cluster", c.Name), zap.String("node", c.Node)),
		cfg:   c,
		id:    mrand.Uint64() | 1, // never 0, so a zeroed envelope is never taken for ours
		in:    make(chan *nats.Msg, inQueue),
		out:   make(chan outMsg, outQueue),
		quit:  make(chan struct{}),
		hosts: make(map[string]*host),
		wake:  make(chan struct{}, 1),
		subs:  make(map[string]*natsSub),
		last:  make(map[uint64]uint64),
	}
	l.outBrake.l = l
	// NoEcho (added below for the main client only): the server never hands this node its own messages
	// back, so a local subscriber gets a local message once, from the router, and not again through NATS.
	opts := []nats.Option{
		nats.MaxReconnects(-1),
		// While disconnected from an external NATS, publishing fails (Stats.Dropped) rather than filling a
		// buffer replayed on reconnect: across nodes topics are at most once, never late (package doc).
		nats.ReconnectBufSize(-1),
	}
	// The main client's state and its log lines are status.go's; the shared groups' client (share.go)
	// only logs, since the main client's state is the node's.
	mainOpts := []nats.Option{
		nats.Name("lyre " + c.Node), nats.NoEcho(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { l.natsLost(err) }),
		nats.ReconnectHandler(func(*nats.Conn) { l.refresh(true) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { l.natsError(err) }),
	}
	var err error
	url := c.NATSURL
	if url == "" {
		token := rand.Text()
		if l.ns, err = startServer(c, token, l.log); err != nil {
			return nil, err
		}
		opts = append(opts, nats.InProcessServer(l.ns), nats.Token(token))
	}
	if l.nc, err = nats.Connect(url, append(mainOpts, opts...)...); err != nil {
		if l.ns != nil {
			l.ns.Shutdown()
			l.ns.WaitForShutdown()
		}
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	if c.Directory != "" || c.NATSURL != "" {
		if l.js, err = jetstream.New(l.nc); err != nil {
			l.nc.Close()
			if l.ns != nil {
				l.ns.Shutdown()
				l.ns.WaitForShutdown()
			}
			return nil, fmt.Errorf("cluster: jetstream: %w", err)
		}
	}
	if err := l.startShares(url, opts); err != nil {
		l.nc.Close()
		if l.ns != nil {
			l.ns.Shutdown()
			l.ns.WaitForShutdown()
		}
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	if err := l.startFlow(); err != nil {
		l.share.qc.Close()
		l.nc.Close()
		if l.ns != nil {
			l.ns.Shutdown()
			l.ns.WaitForShutdown()
		}
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	l.startStatus()
	l.wg.Add(3)
	go l.interestLoop()
	go l.outLoop()
	go l.inLoop()
	l.startRetainer()
	l.startRecorder()
	if l.ns != nil {
		l.log.Info("cluster joined", zap.String("listen", c.Listen), zap.Strings("routes", c.Routes))
	} else {
		l.log.Info("cluster joined", zap.String("nats_url", c.NATSURL))
	}
	return l, nil
}

// Close detaches every host, closes the client and shuts the embedded server down, and returns once
// every goroutine the link started has ended.
func (l *Link) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.closing.Store(true)
	hosts := l.hosts
	l.hosts = map[string]*host{}
	l.mu.Unlock()
	for _, h := range hosts {
		h.unwatch()
	}
	close(l.quit)
	l.wg.Wait()
	l.share.qc.Close()
	l.nc.Close()
	l.remote.stop()
	l.outBrake.mu.Lock()
	l.outBrake.release()
	l.outBrake.mu.Unlock()
	if l.ns != nil {
		l.ns.Shutdown()
		l.ns.WaitForShutdown()
		// A route's reconnect goroutine can outlive the shutdown by a moment; what it says then is noise
		// (and a test's logger would refuse it).
		l.ns.SetLoggerV2(natsLogger{zap.NewNop().Sugar()}, false, false, false)
	}
	l.log.Info("cluster left")
}

// JetStream returns the JetStream context for replicated state and the replica count its streams use, once
// the cluster's JetStream answers (its meta leader elected: a quorum of nodes must be up), waiting for at
// most ctx. It fails with ErrNoJetStream without a directory, or when an external NATS has no JetStream.
func (l *Link) JetStream(ctx context.Context) (jetstream.JetStream, int, error) {
	if l.js == nil {
		return nil, 0, ErrNoJetStream
	}
	r := max(l.cfg.Replicas, 1)
	for {
		// One attempt is short: while a meta leader is being elected a request can go unanswered, and the
		// next attempt may reach the new one.
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := l.js.AccountInfo(actx)
		cancel()
		switch {
		case err == nil:
			return l.js, r, nil
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			return nil, 0, ErrNoJetStream
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("cluster: jetstream not ready: %w (last: %v)", ctx.Err(), err)
		case <-l.quit:
			return nil, 0, router.ErrClosed
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// quitContext returns a context cancelled when the link closes (by a goroutine the link waits for).
func (l *Link) quitContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		<-l.quit
		cancel()
	}()
	return ctx
}

// makeStream creates (or updates) stream cfg, trying again until it is made or ctx is done (reported
// false): "insufficient resources" while peers report in, or a meta leader election, pass.
func makeStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, bool) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, streamAttemptTimeout(attempt))
		st, err := js.CreateOrUpdateStream(actx, cfg)
		cancel()
		if err == nil {
			return st, true
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// streamAttemptTimeout is how long the attempt-th request to make a stream waits for its answer: 1 s at
// first, doubling up to 8 s. When several nodes ask for one stream at once, the meta leader answers one
// of them and may leave the others unanswered; a short first wait has those ask again within a second
// (a node was ready 10 s after its peers with a fixed 5 s wait), and the longer ones leave room for a
// loaded machine.
func streamAttemptTimeout(attempt int) time.Duration {
	return time.Second << min(attempt, 3)
}

// ErrNoJetStream says the cluster has no JetStream: replicated state is not available.
var ErrNoJetStream = errors.New("cluster: no JetStream (give the cluster block a directory, or enable it on the external NATS)")

// Stats returns the link's counters.
func (l *Link) Stats() Stats {
	l.remote.mu.Lock()
	held, stuck := l.remote.episodes, l.remote.stuckEpisodes
	l.remote.mu.Unlock()
	return Stats{
		Sent: l.sent.Load(), Received: l.received.Load(), Duplicates: l.dups.Load(),
		Malformed: l.malformed.Load(), Dropped: l.dropped.Load(), TooLarge: l.tooLarge.Load(),
		InDropped: l.inDropped(), PressureSent: l.pressureSent.Load(),
		HeldEpisodes: held, StuckEpisodes: stuck,
	}
}

// Interest returns how many subscriptions the embedded server knows (this node's and, through routes,
// the other nodes') for the subject a message on vhost's topic path is published on; -1 with an
// external NATS, whose interest the client cannot see. Tests poll it to wait for interest to propagate.
func (l *Link) Interest(vhost string, path []string) int {
	if l.ns == nil {
		return -1
	}
	return l.ns.GlobalAccount().Interest(topicSubject(topicPrefix(vhost), path))
}

// RouteAddr returns the embedded server's route listener address (nil with an external NATS): the port
// chosen when Listen asked for port 0.
func (l *Link) RouteAddr() net.Addr {
	if l.ns == nil {
		return nil
	}
	return l.ns.ClusterAddr()
}

// Attach makes vhost's router one more publisher and subscriber of the cluster: its topic subscriptions
// become NATS interest and its local topic messages go to NATS. The returned detach undoes it (a host
// removed by a reload); Close detaches every host.
func (l *Link) Attach(vhost string, r *router.Router) (detach func(), err error) {
	h := &host{l: l, name: vhost, prefix: topicPrefix(vhost), r: r}
	tok := string(appendToken(nil, vhost))
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, router.ErrClosed
	}
	if l.hosts[tok] != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("cluster: virtual host %q attached twice", vhost)
	}
	l.hosts[tok] = h
	l.mu.Unlock()
	// The outbound subscription matches every topic not starting with '$' [MQTT-4.7.2-1]: $SYS is each
	// node's own status, so that is as it should be.
	h.out = &router.Subscription{
		Filter: router.Filter{Kind: router.Topic, Segs: []router.Seg{{Kind: router.SegMany}}},
		Sink:   h, QoS: 2, ID: "cluster",
	}
	if err := r.Subscribe(h.out); err != nil {
		l.mu.Lock()
		delete(l.hosts, tok)
		l.mu.Unlock()
		return nil, fmt.Errorf("cluster: attach %q: %w", vhost, err)
	}
	h.stop = r.WatchTopics(h.watch)
	r.SetSharedDispatch(true) // groups get their messages through NATS queue groups (share.go)
	if l.ret != nil {
		l.ret.attach(h)
	}
	l.attachDurables(h)
	if err := l.attachQueues(h); err != nil {
		h.unwatch()
		l.mu.Lock()
		delete(l.hosts, tok)
		l.mu.Unlock()
		return nil, err
	}
	return func() {
		l.mu.Lock()
		if l.hosts[tok] == h {
			delete(l.hosts, tok)
		}
		l.mu.Unlock()
		h.unwatch()
	}, nil
}

// push queues an interest change for the interest goroutine; it never blocks (it runs under the trie's
// lock).
func (l *Link) push(o op) {
	l.mu.Lock()
	l.ops = append(l.ops, o)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// interestLoop applies interest changes in the order the routers made them.
func (l *Link) interestLoop() {
	defer l.wg.Done()
	for {
		select {
		case <-l.quit:
			return
		case <-l.wake:
		}
		l.mu.Lock()
		ops := l.ops
		l.ops = nil
		l.mu.Unlock()
		for _, o := range ops {
			l.apply(o)
		}
	}
}

func (l *Link) apply(o op) {
	if o.share != "" {
		l.applyShare(o)
		return
	}
	if o.detach {
		l.detachShares(o.h)
		for subj, s := range l.subs {
			if s.h == o.h {
				l.unwatchSub(s.sub)
				_ = s.sub.Unsubscribe()
				delete(l.subs, subj)
			}
		}
		return
	}
	for _, subj := range filterSubjects(o.h.prefix, o.f) {
		s := l.subs[subj]
		switch {
		case o.added && s != nil:
			s.n++
		case o.added:
			sub, err := l.nc.ChanSubscribe(subj, l.in)
			if err != nil {
				// Only a closed connection fails here; its reconnect would not bring this one back.
				l.log.Error("cluster subscribe", zap.String("subject", subj), zap.Error(err))
				continue
			}
			// The pending limits of a channel subscription are the channel's; lift the client's own.
			_ = sub.SetPendingLimits(-1, -1)
			l.watchSub(sub)
			l.subs[subj] = &natsSub{h: o.h, n: 1, sub: sub}
		case s != nil:
			if s.n--; s.n == 0 {
				l.unwatchSub(s.sub)
				_ = s.sub.Unsubscribe()
				delete(l.subs, subj)
			}
		}
	}
}

// outLoop publishes local topic messages to NATS, stamping each with the next sequence number.
func (l *Link) outLoop() {
	defer l.wg.Done()
	var seq uint64
	var buf []byte
	for {
		var o outMsg
		select {
		case <-l.quit:
			return
		case o = <-l.out:
		}
		l.outBrake.drained()
		seq++
		var ok bool
		buf, ok = encode(buf[:0], o.m, l.id, seq, time.Now())
		if !ok {
			continue // expired on the way
		}
		if len(buf) > maxPayload {
			l.tooLarge.Add(1)
			o.h.r.DeliverShared(o.m, "", router.Filter{}) // it stays on its node, for its groups too
			continue
		}
		if err := l.nc.Publish(topicSubject(o.h.prefix, o.m.Dest.Path), buf); err != nil {
			l.dropped.Add(1)
			continue
		}
		l.sent.Add(1)
	}
}

// inLoop publishes what NATS brings into the local routers. One goroutine reads every subscription's
// messages, in the order the client received them, so the copies of one message that overlapping
// subscriptions bring are adjacent and dropped by sequence number.
func (l *Link) inLoop() {
	defer l.wg.Done()
	for {
		var nm *nats.Msg
		select {
		case <-l.quit:
			return
		case nm = <-l.in:
		}
		tok, path, err := parseTopicSubject(nm.Subject)
		if err != nil {
			l.malformed.Add(1)
			continue
		}
		l.mu.Lock()
		h := l.hosts[tok]
		l.mu.Unlock()
		if h == nil {
			continue // detached meanwhile
		}
		m, env, err := decode(nm.Data, path, time.Now())
		if err != nil {
			l.malformed.Add(1)
			continue
		}
		if env.origin == l.id {
			continue // NoEcho makes this impossible; cheap insurance against a loop
		}
		if env.seq <= l.last[env.origin] {
			l.dups.Add(1)
			continue
		}
		l.last[env.origin] = env.seq
		// Delivered live with its retain flag as published (an MQTT 5 retain-as-published subscriber
		// sees it [MQTT-3.3.1-12]) but not stored from here: the retained copy travels through the
		// retained stream when there is JetStream (retained.go); without it each node keeps its own.
		m.RetainKept = true
		m.Publisher = h
		// A durable subscription's queue on this node stores the message under its cluster-wide name
		// (queues.go), so the copies other nodes store of it are one.
		h.inbound.Store(&inbound{m: m, origin: env.origin, id: env.id})
		res := h.r.Publish(m)
		h.inbound.Store(nil)
		l.received.Add(1)
		l.paceIn(env.origin, res.Pressure)
	}
}

// host is one attached virtual host. It is the Sink of the outbound subscription, and the Publisher of
// the messages it brings in, by which it recognises them.
type host struct {
	l      *Link
	name   string
	prefix string
	r      *router.Router
	out    *router.Subscription
	stop   func()
	once   sync.Once
	ret    *retainedHost // retained.go; guarded by Link.mu
	qb     *queueBackend // its clustered queues (queues.go); nil without JetStream
	dreg   *durableHost  // its durable subscriptions' registry (durables.go); guarded by Link.mu
	// inbound is the message the inbound goroutine is publishing into r, with its origin's names for it.
	inbound atomic.Pointer[inbound]
}

// inbound names a message that came from another node: its origin link and its ID there.
type inbound struct {
	m          *router.Message
	origin, id uint64
}

// watch follows the router's topic subscriptions (under its trie lock: only queue the change). A shared
// group's member becomes the group's NATS queue subscription (share.go).
func (h *host) watch(s *router.Subscription, added bool) {
	if s == h.out {
		return
	}
	if s.Share != "" && len(s.Filter.Segs) > 0 && s.Filter.Segs[0].Kind == router.SegLiteral &&
		strings.HasPrefix(s.Filter.Segs[0].Text, "$") {
		return // '$' topics stay on their node: the router dispatches their groups itself
	}
	h.l.push(op{h: h, f: s.Filter, share: s.Share, added: added})
}

func (h *host) unwatch() {
	h.once.Do(func() {
		h.stop()
		h.r.SetSharedDispatch(false)
		if h.l.ret != nil {
			h.l.ret.detach(h)
		}
		h.l.detachDurables(h)
		if h.qb != nil {
			h.qb.close()
		}
		h.r.Unsubscribe(h.out)
		h.l.push(op{h: h, detach: true})
	})
}

// Accepts keeps the messages this link brought in from going back out: that would loop.
func (h *host) Accepts(m *router.Message) bool { return m.Publisher != h }

// Deliver queues a local message for NATS; it never blocks. A full queue refuses it, and the router
// counts the drop.
func (h *host) Deliver(d router.Delivery) bool {
	select {
	case h.l.out <- outMsg{h, d.Msg}:
		h.l.holdPublisher(d)
		return true
	default:
		h.l.dropped.Add(1)
		return false
	}
}

var (
	_ router.Sink     = (*host)(nil)
	_ router.Acceptor = (*host)(nil)
)
