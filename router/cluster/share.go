package cluster

import (
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// Shared-subscription groups across nodes (see the package doc): each local group (virtual host, group
// name, filter) with at least one member is a NATS queue subscription, on the link's second connection,
// to the subjects its filter maps onto, with a queue name every node derives alike. NATS gives each
// topic message to one subscription of the queue group in the whole cluster; that node's router gives
// it to one local member (router.DeliverShared), by its share strategy.

// shareKey names one local group.
type shareKey struct {
	h      *host
	group  string
	filter string // router.FilterKey
}

// shareGroup is one local group's queue subscriptions, counted by members. Owned by the interest
// goroutine, except that the inbound goroutine reads h, group and f (immutable) through shareBy.
type shareGroup struct {
	h     *host
	group string
	f     router.Filter
	n     int
	subs  []*nats.Subscription
}

// shareState is the link's part for shared groups.
type shareState struct {
	qc     *nats.Conn // without NoEcho: a node's own messages reach its own queue subscriptions
	in     chan *nats.Msg
	groups map[shareKey]*shareGroup // owned by the interest goroutine
	// bySub finds a message's group from its subscription; guarded by Link.mu.
	bySub map[*nats.Subscription]*shareGroup

	delivered, lost atomic.Uint64
}

// SharedStats counts the messages the link's queue subscriptions brought for local shared groups.
type SharedStats struct {
	Delivered uint64 // taken by a local member (or refused by every full member: counted by the router)
	Lost      uint64 // no local member any more (the last one left while NATS routed it here), or malformed
}

// startShares connects the second client (same server and credentials, without NoEcho) and starts the
// goroutine that hands its messages to the local groups.
func (l *Link) startShares(url string, opts []nats.Option) error {
	qc, err := nats.Connect(url, append(opts, nats.Name("lyre "+l.cfg.Node+" shared"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			l.log.Warn("cluster shared-groups connection error", zap.Error(err))
		}))...)
	if err != nil {
		return err
	}
	l.share = &shareState{qc: qc, in: make(chan *nats.Msg, inQueue), groups: make(map[shareKey]*shareGroup),
		bySub: make(map[*nats.Subscription]*shareGroup)}
	l.wg.Add(1)
	go l.shareLoop()
	return nil
}

// queueName is the NATS queue group of a shared group: the same on every node for the same virtual
// host, group name and filter, and a valid queue name whatever the bytes (every part is a token).
func queueName(h *host, group string, f router.Filter) string {
	b := []byte(h.prefix)
	b = appendToken(b, group)
	b = append(b, '.')
	b = appendToken(b, router.FilterKey(f))
	return string(b)
}

// applyShare adds or removes one member of a local group: the first member subscribes the group's queue
// subscriptions, the last one's leaving unsubscribes them. Interest goroutine.
func (l *Link) applyShare(o op) {
	s := l.share
	k := shareKey{h: o.h, group: o.share, filter: router.FilterKey(o.f)}
	g := s.groups[k]
	switch {
	case o.added && g != nil:
		g.n++
	case o.added:
		g = &shareGroup{h: o.h, group: o.share, f: o.f, n: 1}
		q := queueName(o.h, o.share, o.f)
		// Subscribed under the lock that shareLoop takes to find a message's group, so that a message
		// arriving at once finds it.
		l.mu.Lock()
		for _, subj := range filterSubjects(o.h.prefix, o.f) {
			sub, err := s.qc.ChanQueueSubscribe(subj, q, s.in)
			if err != nil {
				l.log.Error("cluster queue subscribe", zap.String("subject", subj), zap.Error(err))
				continue
			}
			_ = sub.SetPendingLimits(-1, -1)
			g.subs = append(g.subs, sub)
			s.bySub[sub] = g
		}
		l.mu.Unlock()
		s.groups[k] = g
	case g != nil:
		if g.n--; g.n == 0 {
			l.dropShare(k, g)
		}
	}
}

// detachShares drops every group of h. Interest goroutine.
func (l *Link) detachShares(h *host) {
	for k, g := range l.share.groups {
		if k.h == h {
			l.dropShare(k, g)
		}
	}
}

func (l *Link) dropShare(k shareKey, g *shareGroup) {
	s := l.share
	for _, sub := range g.subs {
		_ = sub.Unsubscribe()
	}
	delete(s.groups, k)
	l.mu.Lock()
	for _, sub := range g.subs {
		delete(s.bySub, sub)
	}
	l.mu.Unlock()
}

// shareLoop hands what the queue subscriptions bring to the local group each is for. Unlike inLoop it
// drops no copies: one message matching two groups' subscriptions is for both.
func (l *Link) shareLoop() {
	defer l.wg.Done()
	s := l.share
	for {
		var nm *nats.Msg
		select {
		case <-l.quit:
			return
		case nm = <-s.in:
		}
		l.mu.Lock()
		g := s.bySub[nm.Sub]
		l.mu.Unlock()
		if g == nil {
			s.lost.Add(1) // the group's last member here left after NATS picked this node
			continue
		}
		_, path, err := parseTopicSubject(nm.Subject)
		if err != nil {
			l.malformed.Add(1)
			continue
		}
		m, _, err := decode(nm.Data, path, time.Now())
		if err != nil {
			l.malformed.Add(1)
			continue
		}
		// As in inLoop: a live delivery, not stored here; the retained copy travels through the retained stream.
		m.RetainKept = true
		m.Publisher = g.h
		if pr := g.h.r.DeliverShared(m, g.group, g.f); pr.Delivered == 0 && pr.Dropped == 0 {
			s.lost.Add(1)
			continue
		}
		s.delivered.Add(1)
	}
}

// SharedStats returns the shared-group counters.
func (l *Link) SharedStats() SharedStats {
	if l.share == nil {
		return SharedStats{}
	}
	return SharedStats{Delivered: l.share.delivered.Load(), Lost: l.share.lost.Load()}
}
