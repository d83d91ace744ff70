package cluster

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lyremq/lyre/router"
)

// Durable subscriptions across nodes (see the package doc, "Durable subscriptions"): every node keeps a
// mirror of every durable subscription made on another node, so that a message published on any node is
// stored for every durable subscription it matches before its publisher is acknowledged, not only on
// the node where the subscription's client is. One stream, LYRE_DURABLES, keeps the last change of each
// subscription of each host (MaxMsgsPerSubject 1): its options, or that it was destroyed.

const (
	durablesStream = "LYRE_DURABLES"
	registryMark   = "dr" // subjects "lyre.<vhost>.dr.<level>...": the subscription's name
	// registryQueue bounds the changes waiting for the writer; a change finding it full is dropped
	// (counted): the other nodes then miss it until the subscription's next change.
	registryQueue = 4096
)

// durableChange is a durable subscription change on the wire.
type durableChange struct {
	Origin uint64 // the link incarnation that made it: a node ignores its own
	Gone   bool   `json:",omitempty"` // destroyed
	Filter string `json:",omitempty"` // router.FilterKey
	Owner  string `json:",omitempty"`
	QoS    uint8  `json:",omitempty"`
	// DropQoS0Offline as router.DurableOptions.
	DropQoS0Offline bool `json:",omitempty"`
	// Gated: the subscription keeps only what an access gate (or MQTT's no local) lets through, which
	// only its own node knows: other nodes keep no mirror of it.
	Gated bool `json:",omitempty"`
}

// durableHost is one attached host's part of the registry.
type durableHost struct {
	stopWatch func()
	stop      chan struct{}
	q         chan durableOp
}

type durableOp struct {
	subject string
	data    []byte
}

// registryPrefix is the subject prefix of h's durable subscription changes, ending with '.'.
func (h *host) registryPrefix() string {
	return strings.TrimSuffix(h.prefix, topicMark+".") + registryMark + "."
}

// attachDurables watches h's durable subscriptions and applies the other nodes' ones, once the
// recorder's streams exist.
func (l *Link) attachDurables(h *host) {
	rc := l.rec
	if rc == nil {
		return
	}
	dh := &durableHost{stop: make(chan struct{}), q: make(chan durableOp, registryQueue)}
	l.mu.Lock()
	h.dreg = dh
	l.mu.Unlock()
	prefix := h.registryPrefix()
	dh.stopWatch = h.r.WatchDurables(func(d router.Destination, o *router.DurableOptions) {
		c := durableChange{Origin: l.id, Gone: o == nil}
		if o != nil {
			c = durableChange{Origin: l.id, Filter: router.FilterKey(o.Filter), Owner: o.Owner, QoS: o.QoS,
				DropQoS0Offline: o.DropQoS0Offline, Gated: o.Match != nil}
		}
		data, err := json.Marshal(c)
		if err != nil {
			return
		}
		dh.offer(rc, durableOp{topicSubject(prefix, d.Path), data})
	})
	l.wg.Add(2)
	go rc.writeDurables(dh)
	go rc.consumeDurables(h, dh, prefix)
}

// offer queues a change for the writer, or drops it, counted, when registryQueue changes wait: the
// watcher runs under the router's lock and must not block.
func (dh *durableHost) offer(rc *recorder, op durableOp) {
	select {
	case dh.q <- op:
	default:
		rc.dropped.Add(1)
	}
}

func (l *Link) detachDurables(h *host) {
	l.mu.Lock()
	dh := h.dreg
	l.mu.Unlock()
	if dh != nil {
		dh.stopWatch()
		close(dh.stop)
	}
}

// writeDurables writes h's changes in order once the streams exist; a change the stream does not take
// is lost (counted as a failed write) until the subscription's next change.
func (rc *recorder) writeDurables(dh *durableHost) {
	defer rc.l.wg.Done()
	if !rc.waitReady(dh) {
		return
	}
	for {
		select {
		case op := <-dh.q:
			rc.put(op.subject, op.data, nil)
		case <-dh.stop:
			return
		case <-rc.ctx.Done():
			return
		}
	}
}

// consumeDurables reads h's part of the stream, the last change of every subscription first, then every
// change as it comes, and applies the other nodes' changes to h's router.
func (rc *recorder) consumeDurables(h *host, dh *durableHost, prefix string) {
	defer rc.l.wg.Done()
	if !rc.waitReady(dh) {
		return
	}
	for {
		cons, err := rc.js.OrderedConsumer(rc.ctx, durablesStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{prefix + ">"},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		})
		if err == nil {
			var cc jetstream.ConsumeContext
			if cc, err = cons.Consume(func(msg jetstream.Msg) { rc.applyDurable(h, prefix, msg) }); err == nil {
				select {
				case <-dh.stop:
				case <-rc.ctx.Done():
				}
				cc.Stop()
				<-cc.Closed()
				return
			}
		}
		if !rc.pause(dh) {
			return
		}
	}
}

// waitReady waits until the recorder's streams exist; false when h is detached or the link closes first.
func (rc *recorder) waitReady(dh *durableHost) bool {
	select {
	case <-rc.ready:
		return true
	case <-dh.stop:
		return false
	case <-rc.ctx.Done():
		return false
	}
}

// pause waits a moment before a retry; false when h is detached or the link closes.
func (rc *recorder) pause(dh *durableHost) bool {
	select {
	case <-dh.stop:
		return false
	case <-rc.ctx.Done():
		return false
	case <-time.After(retryWait):
		return true
	}
}

// applyDurable applies one change read from the stream, unless this link made it.
func (rc *recorder) applyDurable(h *host, prefix string, msg jetstream.Msg) {
	var c durableChange
	path, err := parsePath(strings.TrimPrefix(msg.Subject(), prefix))
	if err == nil {
		err = json.Unmarshal(msg.Data(), &c)
	}
	if err != nil {
		rc.l.malformed.Add(1)
		return
	}
	if c.Origin == rc.l.id {
		return // applied here already, when it was made
	}
	d := router.Destination{Kind: router.DurableSub, Path: path}
	switch {
	case c.Gone:
		_ = h.r.ApplyDurable(d, nil)
		rc.mirrored.Add(1)
		return
	case c.Gated:
		h.r.RemoveMirror(d)
		rc.mirrored.Add(1)
		return
	}
	f, err := router.ParseFilterKey(c.Filter)
	if err != nil {
		rc.l.malformed.Add(1)
		return
	}
	o := &router.DurableOptions{Filter: f, Owner: c.Owner, QoS: c.QoS, DropQoS0Offline: c.DropQoS0Offline,
		// What another node publishes is stored by that node (its own mirror, or the subscription):
		// a mirror keeps copies of this node's publishers' messages only.
		Match: func(m *router.Message) bool { in := h.inbound.Load(); return in == nil || in.m != m }}
	if err := h.r.ApplyDurable(d, o); err != nil {
		rc.l.log.Warn("durable subscription of another node not mirrored", zap.String("subject", msg.Subject()), zap.Error(err))
		return
	}
	rc.mirrored.Add(1)
}
