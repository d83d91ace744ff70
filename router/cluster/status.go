package cluster

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// statusPoll is how often the link looks at its routes (or NATS connection) when nothing told it of a
// change: the embedded server has no callback for routes coming and going.
const statusPoll = 500 * time.Millisecond

// Link modes, Status.Mode.
const (
	ModeEmbedded = "embedded" // an embedded nats-server with routes to the other nodes
	ModeNATSURL  = "nats_url" // a client of an external NATS
)

// Status is what the link knows of the cluster now (see the package doc, Operations).
type Status struct {
	Name string // the cluster's name
	Node string // this node's name
	Mode string // ModeEmbedded or ModeNATSURL
	// Connected: embedded, at least one route to another node is up (and the link's in-process client is
	// connected to the embedded server); nats_url, the client is connected to a NATS server. A node that
	// is not connected still serves its own clients.
	Connected bool
	// Since is when Connected last changed (the link's start before the first change).
	Since time.Time
	// Disconnects counts the times Connected went from true to false.
	Disconnects uint64
	// Routes is the number of route connections of the embedded server (NATS pools several per peer);
	// 0 with nats_url.
	Routes int
	// Peers are the nodes this node's embedded server has had a route to since it started, connected or
	// not now, sorted by name; none with nats_url (the client sees servers, not the other Lyre nodes).
	Peers []Peer
	// Server is, with nats_url, the URL (credentials redacted) of the NATS server the client is connected
	// to; "" when disconnected or embedded.
	Server string
	Stats  Stats
}

// Peer is another node as the embedded server sees it.
type Peer struct {
	Name      string
	Connected bool
	Since     time.Time // when Connected last changed (when the node was first seen)
}

// inDrops sums what NATS dropped for the link's subscriptions (Stats.InDropped): each subscription
// counts its own, so the link keeps the set, and what the ones it unsubscribed had dropped.
type inDrops struct {
	mu   sync.Mutex
	subs map[*nats.Subscription]bool
	gone uint64
	// warned is when the last slow-consumer warning was logged, suppressed the number since.
	warned     time.Time
	suppressed int
}

// slowWarnEvery bounds the slow-consumer warnings: NATS reports each episode, which under a sustained
// overload is many a second.
const slowWarnEvery = 10 * time.Second

func (l *Link) watchSub(s *nats.Subscription) {
	d := &l.drops
	d.mu.Lock()
	if d.subs == nil {
		d.subs = make(map[*nats.Subscription]bool)
	}
	d.subs[s] = true
	d.mu.Unlock()
}

// unwatchSub forgets s, keeping its count; call it before unsubscribing (then s counts no more).
func (l *Link) unwatchSub(s *nats.Subscription) {
	d := &l.drops
	d.mu.Lock()
	if n, err := s.Dropped(); err == nil && n > 0 {
		d.gone += uint64(n)
	}
	delete(d.subs, s)
	d.mu.Unlock()
}

func (l *Link) inDropped() uint64 {
	d := &l.drops
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.gone
	for s := range d.subs {
		if k, err := s.Dropped(); err == nil && k > 0 {
			n += uint64(k)
		}
	}
	return n
}

// natsError logs an asynchronous NATS error; slow-consumer ones at most every slowWarnEvery, with the
// number of messages dropped so far.
func (l *Link) natsError(err error) {
	if !errors.Is(err, nats.ErrSlowConsumer) {
		l.log.Warn("cluster link error", zap.Error(err))
		return
	}
	d := &l.drops
	d.mu.Lock()
	now := time.Now()
	if now.Sub(d.warned) < slowWarnEvery {
		d.suppressed++
		d.mu.Unlock()
		return
	}
	suppressed := d.suppressed
	d.warned, d.suppressed = now, 0
	d.mu.Unlock()
	l.log.Warn("cluster inbound queue full: messages from other nodes dropped (this node's subscribers do not keep up)",
		zap.Uint64("dropped_total", l.inDropped()), zap.Int("episodes_not_logged", suppressed))
}

// linkState is the link's connection state; refresh keeps it and logs its changes.
type linkState struct {
	changed chan struct{}

	mu          sync.Mutex
	connected   bool
	since       time.Time
	disconnects uint64
	routes      int
	server      string
	peers       map[string]*Peer
	lastErr     error // the NATS client's last disconnect error, for the log
}

// startStatus takes the first look at the cluster (without logging it: the node only starts) and starts
// the goroutine that polls it.
func (l *Link) startStatus() {
	l.st.changed = make(chan struct{}, 1)
	l.st.since = time.Now()
	l.st.peers = make(map[string]*Peer)
	l.refresh(false)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(statusPoll)
		defer t.Stop()
		for {
			select {
			case <-l.quit:
				return
			case <-t.C:
				l.refresh(true)
			}
		}
	}()
}

// natsLost is called by the NATS client's disconnect handler. The client may have reconnected by the
// time it runs (the in-process one does at once), so the loss is recorded whatever the connection says
// now; refresh then records the reconnection, if any.
func (l *Link) natsLost(err error) {
	s := &l.st
	s.mu.Lock()
	if !l.closing.Load() { // our own Close is no news
		s.lastErr = err
		if s.connected {
			s.setLocked(l, false, time.Now(), true)
		}
	}
	s.mu.Unlock()
	l.refresh(true)
}

// Status returns the link's state now, and its counters.
func (l *Link) Status() Status {
	l.refresh(true)
	s := &l.st
	s.mu.Lock()
	st := Status{Name: l.cfg.Name, Node: l.cfg.Node, Mode: ModeEmbedded, Connected: s.connected, Since: s.since,
		Disconnects: s.disconnects, Routes: s.routes, Server: s.server, Peers: make([]Peer, 0, len(s.peers))}
	for _, p := range s.peers {
		st.Peers = append(st.Peers, *p)
	}
	s.mu.Unlock()
	if l.ns == nil {
		st.Mode = ModeNATSURL
	}
	slices.SortFunc(st.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	st.Stats = l.Stats()
	return st
}

// Changed is signalled (a non-blocking send on a channel of capacity 1) when Connected or a peer's
// state changes: a reader that wants to publish the news at once (the $SYS publisher) waits on it.
func (l *Link) Changed() <-chan struct{} { return l.st.changed }

// refresh looks at the routes (embedded) or the client's connection (nats_url), records what changed
// and, when log is set, logs it: a Warn when the node loses its last route or its NATS connection (it
// keeps serving its own clients), an Info when it is connected again, an Info per peer.
func (l *Link) refresh(log bool) {
	s := &l.st
	// Held while looking, too: two refreshes applying what they saw in the other order would flap.
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.closing.Load() {
		return
	}
	var up []string
	var routes int
	var server string
	connected := false
	if l.ns != nil {
		rz, err := l.ns.Routez(nil)
		if err != nil {
			return
		}
		routes = len(rz.Routes)
		for _, r := range rz.Routes {
			name := r.RemoteName
			if name == "" {
				name = r.RemoteID
			}
			if name != "" && !slices.Contains(up, name) {
				up = append(up, name)
			}
		}
		// The link's own client counts too: the embedded server closes it as a slow consumer when this
		// node's routers fall far enough behind (NATS's max_pending), and until it has reconnected the
		// node has no interest in the cluster.
		connected = len(up) > 0 && l.nc.IsConnected()
	} else if l.nc.IsConnected() {
		connected, server = true, l.nc.ConnectedUrlRedacted()
	}
	now := time.Now()
	news := false
	s.routes, s.server = routes, server
	for _, name := range up {
		p := s.peers[name]
		switch {
		case p == nil:
			s.peers[name] = &Peer{Name: name, Connected: true, Since: now}
		case !p.Connected:
			p.Connected, p.Since = true, now
		default:
			continue
		}
		news = true
		if log {
			l.log.Info("cluster peer connected", zap.String("peer", name))
		}
	}
	for name, p := range s.peers {
		if p.Connected && !slices.Contains(up, name) {
			p.Connected, p.Since = false, now
			news = true
			if log {
				l.log.Warn("cluster peer lost", zap.String("peer", name))
			}
		}
	}
	if connected != s.connected {
		s.setLocked(l, connected, now, log)
	} else if news {
		s.notify()
	}
}

// setLocked records that the link is now connected or not, logs it when log is set and signals Changed.
func (s *linkState) setLocked(l *Link, connected bool, now time.Time, log bool) {
	s.connected, s.since = connected, now
	switch {
	case !connected:
		s.disconnects++
		if log {
			l.log.Warn("cluster connection lost: serving local clients only; topic messages do not cross nodes until it is back",
				zap.Error(s.lastErr))
		}
	case log && l.ns != nil:
		var up []string
		for name, p := range s.peers {
			if p.Connected {
				up = append(up, name)
			}
		}
		slices.Sort(up)
		l.log.Info("cluster connected", zap.Strings("peers", up), zap.Int("routes", s.routes))
	case log:
		l.log.Info("cluster connected", zap.String("server", s.server))
	}
	s.lastErr = nil
	s.notify()
}

// notify signals Changed without blocking.
func (s *linkState) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Subject returns the NATS subject a topic message of vhost on path is published on: what to give
// `nats sub` when looking at the traffic, or a NATS server's interest, from outside the link.
func Subject(vhost string, path []string) string { return topicSubject(topicPrefix(vhost), path) }
