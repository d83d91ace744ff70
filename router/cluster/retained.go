package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Retained messages cluster-wide (see the package doc): one JetStream stream keeps the last retained
// change of every topic of every virtual host, on "lyre.<vhost>.r.<level>...", one message per subject.
const (
	retainedStream = "LYRE_RETAINED"
	retainedMark   = "r"
	// retainedQueue bounds the local changes waiting to be written to the stream.
	retainedQueue = 8192
	// retainedAckWait bounds how long a publisher's acknowledgement waits for the stream's: beyond it
	// the change counts as failed (RetainedStats.Failed), the publisher is acknowledged all the same,
	// and the change lasts on its node until the node reloads the stream's state.
	retainedAckWait = 5 * time.Second
)

// RetainedStats counts what the link did with retained changes.
type RetainedStats struct {
	Written uint64 // local changes the stream stored (acknowledged by JetStream)
	Applied uint64 // changes read from the stream and applied to a local router (own ones included)
	Failed  uint64 // local changes the stream did not store in time, or refused: node-local
	Dropped uint64 // local changes not written: the queue was full, or over the payload limit
	Resyncs uint64 // reloads of the stream's state after a change it did not take
}

// retainer writes local retained changes to the stream and applies the stream's changes to the local
// routers. It exists when the link may have JetStream (a directory, or an external NATS).
type retainer struct {
	l     *Link
	ready chan struct{} // closed once js is set and the stream exists
	ok    atomic.Bool   // ready and usable: a publisher's acknowledgement waits for the stream
	off   atomic.Bool   // no JetStream after all: retained stays node-local
	js    jetstream.JetStream
	q     chan retainOp
	acks  chan pendingAck
	ctx   context.Context // cancelled by Close

	written, applied, failed, dropped, resyncs atomic.Uint64
}

type retainOp struct {
	h    *host
	rh   *retainedHost
	m    *router.Message
	done func(error) // the publisher's tracked write; nil when nobody waits
}

type pendingAck struct {
	rh   *retainedHost
	f    jetstream.PubAckFuture
	done func(error)
}

// retainedHost is one attached host's part: its router's retained watch and its stream consumer.
type retainedHost struct {
	stopWatch func()
	stop      chan struct{} // closed at detach
	resync    chan struct{} // cap 1: a local change was not written; reload the stream's state
	loaded    atomic.Bool   // the stream's values as of the consumer's start are applied
}

// startRetainer starts the goroutines of the retained stream when the link may have JetStream.
func (l *Link) startRetainer() {
	if l.js == nil {
		return
	}
	rt := &retainer{l: l, ready: make(chan struct{}), q: make(chan retainOp, retainedQueue),
		acks: make(chan pendingAck, retainedQueue), ctx: l.quitContext()}
	l.ret = rt
	l.wg.Add(3)
	go rt.setup()
	go rt.writeLoop()
	go rt.ackLoop()
}

// setup waits for JetStream and creates (or updates) the stream, retrying while the meta group forms.
func (rt *retainer) setup() {
	defer rt.l.wg.Done()
	_, replicas, err := rt.l.JetStream(rt.ctx)
	if err != nil {
		if errors.Is(err, ErrNoJetStream) {
			rt.l.log.Info("no JetStream: retained messages stay on their node")
			rt.off.Store(true)
		}
		return
	}
	// Every node creates the stream with its own replicas; configure the same number on every node, or
	// the last node to start decides. Its own context, for a publish timeout that bounds how long an acknowledgement waits.
	js, err := jetstream.New(rt.l.nc, jetstream.WithPublishAsyncTimeout(retainedAckWait))
	if err != nil {
		rt.l.log.Error("retained stream; retained messages stay on their node", zap.Error(err))
		rt.off.Store(true)
		return
	}
	cfg := jetstream.StreamConfig{
		Name:              retainedStream,
		Description:       "Lyre retained messages: the last change of each topic",
		Subjects:          []string{subjectRoot + ".*." + retainedMark + ".>"},
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgSize:        maxPayload,
	}
	if _, ok := makeStream(rt.ctx, js, cfg); !ok {
		return
	}
	rt.js = js
	rt.ok.Store(true)
	close(rt.ready)
	rt.l.log.Info("retained messages replicated", zap.String("stream", retainedStream), zap.Int("replicas", replicas))
}

// watch is the router's retained watcher for h: it queues the change for the stream, never blocking (it
// runs on the publisher's goroutine under the router's retained lock). Once the stream is ready the
// publisher's acknowledgement waits for the stream's (m.Tracker); before, it does not.
func (rt *retainer) watch(h *host, rh *retainedHost, m *router.Message) {
	if rt.off.Load() || len(m.Dest.Path[0]) > 0 && m.Dest.Path[0][0] == '$' {
		return // '$' topics stay on their node, as they do live
	}
	var done func(error)
	if m.Tracker != nil && rt.ok.Load() {
		done = m.Tracker.Track()
	}
	select {
	case rt.q <- retainOp{h: h, rh: rh, m: m, done: done}:
	default:
		// Not replicated: the local change lasts until the stream's state is reloaded, as after a
		// failed write.
		rt.dropped.Add(1)
		finish(done)
		select {
		case rh.resync <- struct{}{}:
		default:
		}
	}
}

// writeLoop publishes local changes to the stream in the order the routers made them, without waiting
// for each acknowledgement (ackLoop does).
func (rt *retainer) writeLoop() {
	defer rt.l.wg.Done()
	select {
	case <-rt.ready:
	case <-rt.l.quit:
		rt.release()
		return
	}
	var seq uint64
	for {
		var op retainOp
		select {
		case <-rt.l.quit:
			rt.release()
			return
		case op = <-rt.q:
		}
		seq++
		m := op.m
		data, ok := encode(nil, m, rt.l.id, seq, time.Now())
		if !ok {
			// Expired before it was written: what the topic retains now is nothing.
			data, _ = encode(nil, &router.Message{Dest: m.Dest, Retain: true}, rt.l.id, seq, time.Now())
		}
		if len(data) > maxPayload {
			rt.dropped.Add(1) // stays on its node (the package doc)
			finish(op.done)
			continue
		}
		f, err := rt.js.PublishMsgAsync(&nats.Msg{Subject: topicSubject(op.h.retainedPrefix(), m.Dest.Path), Data: data})
		if err != nil {
			rt.fail(op.rh, err)
			finish(op.done)
			continue
		}
		select {
		case rt.acks <- pendingAck{rh: op.rh, f: f, done: op.done}:
		case <-rt.l.quit:
			finish(op.done)
			rt.release()
			return
		}
	}
}

// ackLoop waits for the stream's acknowledgements in publish order and releases the publishers.
func (rt *retainer) ackLoop() {
	defer rt.l.wg.Done()
	for {
		var p pendingAck
		select {
		case <-rt.l.quit:
			for {
				select {
				case p := <-rt.acks:
					finish(p.done)
				default:
					return
				}
			}
		case p = <-rt.acks:
		}
		select {
		case <-p.f.Ok():
			rt.written.Add(1)
		case err := <-p.f.Err():
			rt.fail(p.rh, err)
		case <-rt.l.quit:
		}
		finish(p.done)
	}
}

// fail counts a change the stream did not take, and has the host reload the stream's state once the
// stream answers again, so the node converges on the cluster's value.
func (rt *retainer) fail(rh *retainedHost, err error) {
	if n := rt.failed.Add(1); n&(n-1) == 0 { // the 1st, 2nd, 4th, 8th... failure
		rt.l.log.Warn("retained message not replicated; the stream's value replaces it once JetStream answers",
			zap.Error(err), zap.Uint64("failures", n))
	}
	select {
	case rh.resync <- struct{}{}:
	default:
	}
}

// release lets every publisher still waiting go, at Close.
func (rt *retainer) release() {
	for {
		select {
		case op := <-rt.q:
			finish(op.done)
		default:
			return
		}
	}
}

// finish reports a tracked write done. The publisher is acknowledged even when the stream failed: the
// change is applied on this node (the package doc says why).
func finish(done func(error)) {
	if done != nil {
		done(nil)
	}
}

// attach watches h's retained changes and starts its stream consumer.
func (rt *retainer) attach(h *host) {
	rh := &retainedHost{stop: make(chan struct{}), resync: make(chan struct{}, 1)}
	rt.l.mu.Lock()
	h.ret = rh
	rt.l.mu.Unlock()
	rh.stopWatch = h.r.WatchRetained(func(m *router.Message) { rt.watch(h, rh, m) })
	rt.l.wg.Add(1)
	go rt.consume(h, rh)
}

func (rt *retainer) detach(h *host) {
	rt.l.mu.Lock()
	rh := h.ret
	rt.l.mu.Unlock()
	if rh != nil {
		rh.stopWatch()
		close(rh.stop)
	}
}

// consume reads h's part of the stream, the last change of every topic first, then every change as it
// comes, and applies each to h's router: its own changes too, so that the stream's order decides what
// every node ends with when two nodes set one topic at once. After a local change the stream did not
// take (a node cut off from the JetStream quorum) it waits for the stream to answer again and reads it
// anew from the last change of every topic: the node's unwritten change gives way to the stream's value.
func (rt *retainer) consume(h *host, rh *retainedHost) {
	defer rt.l.wg.Done()
	select {
	case <-rt.ready:
	case <-rh.stop:
		return
	case <-rt.l.quit:
		return
	}
	prefix := h.retainedPrefix()
	for {
		cc := rt.startConsumer(h, rh, prefix)
		if cc == nil {
			return // detached or closing
		}
		select {
		case <-rh.stop:
		case <-rt.l.quit:
		case <-rh.resync:
			if rt.waitStream(rh) {
				cc.Stop()
				<-cc.Closed()
				rt.resyncs.Add(1)
				continue
			}
		}
		cc.Stop()
		<-cc.Closed()
		return
	}
}

// startConsumer starts an ordered consumer of h's subjects from the last change of every topic,
// retrying until it can; nil when h is detached or the link closes first.
func (rt *retainer) startConsumer(h *host, rh *retainedHost, prefix string) jetstream.ConsumeContext {
	for {
		ctx, cancel := context.WithTimeout(rt.ctx, 5*time.Second)
		cons, err := rt.js.OrderedConsumer(ctx, retainedStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{prefix + ">"},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		})
		cancel()
		if err == nil {
			if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
				rh.loaded.Store(true)
			}
			var cc jetstream.ConsumeContext
			if cc, err = cons.Consume(func(msg jetstream.Msg) { rt.apply(h, rh, prefix, msg) }); err == nil {
				return cc
			}
		}
		select {
		case <-rh.stop:
			return nil
		case <-rt.l.quit:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitStream waits until the stream answers with a quorum of current replicas; false when h is detached
// or the link closes first. A leader that has just lost its peers still answers for a while, and what
// it would hand out then is its own view, not the cluster's.
func (rt *retainer) waitStream(rh *retainedHost) bool {
	for {
		ctx, cancel := context.WithTimeout(rt.ctx, 2*time.Second)
		st, err := rt.js.Stream(ctx, retainedStream)
		cancel()
		if err == nil && hasQuorum(st.CachedInfo()) {
			return true
		}
		select {
		case <-rh.stop:
			return false
		case <-rt.l.quit:
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// hasQuorum reports whether a stream's leader and the replicas current with it are a majority of its
// peers.
func hasQuorum(info *jetstream.StreamInfo) bool {
	if info == nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return info != nil && info.Cluster == nil // a stream without a cluster has no quorum to lose
	}
	current := 1
	for _, p := range info.Cluster.Replicas {
		if p != nil && p.Current && !p.Offline {
			current++
		}
	}
	return 2*current > 1+len(info.Cluster.Replicas)
}

// apply makes one change read from the stream h's router's. The remaining lifetime the envelope
// carries counts from the time the stream stored the change, so a node that loads it later keeps it for
// what is left of its lifetime, and drops it when nothing is.
func (rt *retainer) apply(h *host, rh *retainedHost, prefix string, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		rt.l.malformed.Add(1)
		return
	}
	if md.NumPending == 0 {
		defer rh.loaded.Store(true)
	}
	path, err := parsePath(strings.TrimPrefix(msg.Subject(), prefix))
	if err != nil || !strings.HasPrefix(msg.Subject(), prefix) {
		rt.l.malformed.Add(1)
		return
	}
	m, _, err := decode(msg.Data(), path, md.Timestamp)
	if err != nil {
		rt.l.malformed.Add(1)
		return
	}
	if m.Expires != 0 && m.Expires <= time.Now().UnixMilli() {
		m = &router.Message{Dest: m.Dest} // expired meanwhile: the topic retains nothing
	}
	m.Retain = true
	m.Publisher = h
	h.r.ApplyRetained(m)
	rt.applied.Add(1)
}

// retainedPrefix is the subject prefix of h's retained changes, ending with '.'.
func (h *host) retainedPrefix() string {
	return strings.TrimSuffix(h.prefix, topicMark+".") + retainedMark + "."
}

// parsePath decodes the level tokens of a subject's tail.
func parsePath(rest string) ([]string, error) {
	if rest == "" {
		return nil, errBadSubject
	}
	toks := strings.Split(rest, ".")
	path := make([]string, len(toks))
	for i, t := range toks {
		var err error
		if path[i], err = decodeToken(t); err != nil {
			return nil, err
		}
	}
	return path, nil
}

// RetainedStats returns the retained-message counters (zero without JetStream).
func (l *Link) RetainedStats() RetainedStats {
	rt := l.ret
	if rt == nil {
		return RetainedStats{}
	}
	return RetainedStats{Written: rt.written.Load(), Applied: rt.applied.Load(), Failed: rt.failed.Load(),
		Dropped: rt.dropped.Load(), Resyncs: rt.resyncs.Load()}
}

// RetainedReady reports whether vhost's retained messages are replicated: the stream exists and the
// node has applied what it held when the node's consumer started. Until then retained changes are
// node-local and a new subscriber sees this node's retained messages only.
func (l *Link) RetainedReady(vhost string) bool {
	if l.ret == nil || !l.ret.ok.Load() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hosts[string(appendToken(nil, vhost))]
	return h != nil && h.ret != nil && h.ret.loaded.Load()
}

// WaitRetained waits until every attached host's retained messages are loaded from the stream
// (RetainedReady), so that a node starting up serves its first subscribers the cluster's retained
// messages. It returns nil at once without JetStream, and ctx's error when ctx ends first (no quorum
// yet: the node serves its local retained messages until the stream is ready).
func (l *Link) WaitRetained(ctx context.Context) error {
	rt := l.ret
	for {
		if rt == nil || rt.off.Load() {
			return nil
		}
		if rt.ok.Load() && l.allLoaded() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: retained messages not loaded: %w", ctx.Err())
		case <-l.quit:
			return router.ErrClosed
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (l *Link) allLoaded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if h.ret == nil || !h.ret.loaded.Load() {
			return false
		}
	}
	return true
}
