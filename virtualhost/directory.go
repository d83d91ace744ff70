package virtualhost

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// Sessions across the nodes of a cluster. A front-end whose client ids are unique per virtual host (MQTT)
// claims a client id cluster-wide before it takes the session locally, through a SessionDirectory; the
// node that holds the session is asked to give it up (SessionHolder) and hands its state over. Without a
// cluster there is no directory, and nothing of this runs. The front-end decides the rules (protocol/mqtt's
// doc); the directory carries claims and their answers, and the wire form is the store's
// protocol-neutral records (store.SessionState, store.Entry) as JSON, the form `lyre store export` writes.

// ClaimStamp orders the claims of one client id: the later claim wins, as the later CONNECT does on one
// node. Time is a hybrid logical clock in nanoseconds: the node's wall clock, raised above every stamp the
// node has seen, so a claim made after another reached this node is later than it whatever the clocks
// say; Node breaks ties.
type ClaimStamp struct {
	Time int64
	Node string
}

// After reports whether s is later than o.
func (s ClaimStamp) After(o ClaimStamp) bool {
	return s.Time > o.Time || s.Time == o.Time && s.Node > o.Node
}

// SessionClaim is one node's claim of a client id's session.
type SessionClaim struct {
	Host     string // the virtual host's name
	ClientID string
	// Owner is the user the claiming client authenticated as ("" anonymous): a session another user owns
	// is not given up.
	Owner string
	// CleanStart: the claimer discards the session, so the holder ends it rather than hands it over.
	CleanStart bool
	Stamp      ClaimStamp
	// Verify marks the claim a node repeats after it found no holder: should two nodes have claimed at
	// once, each before the other's hold was known, the earlier gives way now. What it hands over is
	// dropped.
	Verify bool
}

// ClaimOutcome is what a claim found.
type ClaimOutcome uint8

// Claim outcomes.
const (
	// ClaimFree: no node holds the session.
	ClaimFree ClaimOutcome = iota
	// ClaimEnded: the holder gave the session up and ended it (a clean start, or a session that ended
	// with its connection): nothing to hand over.
	ClaimEnded
	// ClaimHanded: the holder gave the session up; Session is its state.
	ClaimHanded
	// ClaimRefusedNewer: a later claim holds the session: the claiming connection loses.
	ClaimRefusedNewer
	// ClaimRefusedOwner: the session belongs to another user.
	ClaimRefusedOwner
	// ClaimNoAnswer: a node holds the session but did not answer within the claim's deadline (stalled,
	// or cut off after its interest reached this node), or the answer did not decode.
	ClaimNoAnswer
)

var outcomeNames = [...]string{"free", "ended", "handed", "refused_newer", "refused_owner", "no_answer"}

func (o ClaimOutcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// ClaimResult is the answer to a claim.
type ClaimResult struct {
	Outcome ClaimOutcome
	Session *SessionHandover // ClaimHanded only
	// Trimmed counts backlog messages left out because the handover did not fit the transport's limit.
	Trimmed int
}

// SessionHandover is a session a node gave up: its record, its in-flight and inbound state, and the
// messages waiting in its durable subscriptions. Inflight entries name backlog entries by queue and
// sequence number.
type SessionHandover struct {
	RecoveredSession
	Backlog []HandedEntry // per queue in sequence order
}

// HandedEntry is one message waiting in a durable subscription of a handed-over session.
type HandedEntry struct {
	Queue router.Destination
	router.Stored
}

// SessionDirectory is the cluster-wide registry of client ids a front-end claims through. Its methods are
// safe for concurrent use; Hold and Release never block (the front-end calls them under its registry's
// lock) and take effect in the order they are made.
type SessionDirectory interface {
	// Stamp returns a stamp later than every one this node made or saw.
	Stamp() ClaimStamp
	// Claim asks the node holding c's session, if any, to give it up, waiting until ctx is done at the
	// latest (then ClaimNoAnswer).
	Claim(ctx context.Context, c SessionClaim) ClaimResult
	// Hold announces that this node holds client id's session of host; Release that it no longer does.
	Hold(host, clientID string)
	Release(host, clientID string)
	// Serve makes h answer other nodes' claims. Call it once, before the first Hold.
	Serve(h SessionHolder)
}

// SessionHolder gives up a session another node claims. GiveUp runs on a goroutine of its own and may
// block until the session is released (bounded by the holder).
type SessionHolder interface {
	GiveUp(c SessionClaim) ClaimResult
}

// SessionTransport carries claims between nodes (router/cluster's Link). ClaimSession sends req to the
// holders of client id's session of vhost and returns the first answer; held is false when no node
// holds it. ServeSessions's fn answers another node's claim.
type SessionTransport interface {
	ServeSessions(fn func(req []byte) []byte)
	HoldSession(vhost, clientID string)
	ReleaseSession(vhost, clientID string)
	ClaimSession(ctx context.Context, vhost, clientID string, req []byte) (reply []byte, held bool, err error)
	MaxPayload() int
}

// Directory is the SessionDirectory over a SessionTransport.
type Directory struct {
	t    SessionTransport
	node string
	log  *zap.Logger

	mu   sync.Mutex
	last int64 // the clock: the highest stamp time made or seen

	recordWarned atomic.Int64 // when a failed record write was last logged (Unix ns)
}

// NewDirectory returns the directory of node over t.
func NewDirectory(t SessionTransport, node string, log *zap.Logger) *Directory {
	if log == nil {
		log = zap.NewNop()
	}
	return &Directory{t: t, node: node, log: log.Named("sessions")}
}

// Stamp implements SessionDirectory.
func (d *Directory) Stamp() ClaimStamp {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = max(time.Now().UnixNano(), d.last+1)
	return ClaimStamp{Time: d.last, Node: d.node}
}

func (d *Directory) observe(s ClaimStamp) {
	d.mu.Lock()
	d.last = max(d.last, s.Time)
	d.mu.Unlock()
}

// Hold implements SessionDirectory.
func (d *Directory) Hold(host, clientID string) { d.t.HoldSession(host, clientID) }

// Release implements SessionDirectory.
func (d *Directory) Release(host, clientID string) { d.t.ReleaseSession(host, clientID) }

// Claim implements SessionDirectory.
func (d *Directory) Claim(ctx context.Context, c SessionClaim) ClaimResult {
	req, err := json.Marshal(c)
	if err != nil {
		return ClaimResult{Outcome: ClaimNoAnswer}
	}
	b, held, err := d.t.ClaimSession(ctx, c.Host, c.ClientID, req)
	switch {
	case !held && err == nil:
		return ClaimResult{Outcome: ClaimFree}
	case err != nil:
		d.log.Warn("session claim not answered", zap.String("vhost", c.Host), zap.String("client_id", c.ClientID), zap.Error(err))
		return ClaimResult{Outcome: ClaimNoAnswer}
	}
	res, err := decodeClaimReply(b)
	if err != nil {
		d.log.Warn("session claim answer malformed", zap.String("vhost", c.Host), zap.String("client_id", c.ClientID), zap.Error(err))
		return ClaimResult{Outcome: ClaimNoAnswer}
	}
	return res
}

// Serve implements SessionDirectory.
func (d *Directory) Serve(h SessionHolder) {
	d.t.ServeSessions(func(req []byte) []byte {
		var c SessionClaim
		if err := json.Unmarshal(req, &c); err != nil {
			d.log.Warn("session claim malformed", zap.Error(err))
			return nil // no answer: the claimer's deadline
		}
		d.observe(c.Stamp)
		res := h.GiveUp(c)
		b, trimmed := encodeClaimReply(res, d.t.MaxPayload())
		if trimmed > 0 {
			d.log.Warn("session handover over the cluster's message limit: its newest waiting messages are left out",
				zap.String("vhost", c.Host), zap.String("client_id", c.ClientID), zap.Int("dropped", trimmed))
		}
		return b
	})
}

// claimReply is a ClaimResult on the wire: the store's records.
type claimReply struct {
	Outcome ClaimOutcome
	Trimmed int                 `json:",omitempty"`
	Session *store.SessionState `json:",omitempty"`
	Backlog []store.Entry       `json:",omitempty"`
}

// encodeClaimReply encodes res within limit bytes (0: no limit), leaving out the newest backlog messages
// when the whole does not fit; it returns how many it left out.
func encodeClaimReply(res ClaimResult, limit int) ([]byte, int) {
	w := claimReply{Outcome: res.Outcome}
	if hs := res.Session; hs != nil {
		w.Session = sessionState(&hs.RecoveredSession)
		w.Backlog = make([]store.Entry, len(hs.Backlog))
		for i, e := range hs.Backlog {
			w.Backlog[i] = store.Entry{List: listOf(e.Queue.Kind), Owner: router.Key(e.Queue), Seq: e.Seq,
				Redeliveries: e.Redeliveries, Msg: storeMessage(e.Msg)}
		}
	}
	all := len(w.Backlog)
	for {
		w.Trimmed = all - len(w.Backlog)
		b, err := json.Marshal(w)
		if err != nil {
			return nil, 0
		}
		if limit <= 0 || len(b) <= limit || len(w.Backlog) == 0 {
			return b, w.Trimmed
		}
		w.Backlog = w.Backlog[:len(w.Backlog)/2]
	}
}

func decodeClaimReply(b []byte) (ClaimResult, error) {
	var w claimReply
	if err := json.Unmarshal(b, &w); err != nil {
		return ClaimResult{}, err
	}
	res := ClaimResult{Outcome: w.Outcome, Trimmed: w.Trimmed}
	if w.Outcome != ClaimHanded {
		return res, nil
	}
	if w.Session == nil {
		return res, fmt.Errorf("%w: handover without a session", store.ErrCorrupt)
	}
	rs, err := recoveredSession(*w.Session)
	if err != nil {
		return res, err
	}
	hs := &SessionHandover{RecoveredSession: rs}
	for _, e := range w.Backlog {
		q, ok := router.ParseKey(e.Owner)
		if !ok || e.Msg == nil {
			return res, fmt.Errorf("%w: handover entry %q/%d", store.ErrCorrupt, e.Owner, e.Seq)
		}
		hs.Backlog = append(hs.Backlog, HandedEntry{Queue: q,
			Stored: router.Stored{Seq: e.Seq, Redeliveries: e.Redeliveries, Msg: routerMessage(e.Msg)}})
	}
	res.Session = hs
	return res, nil
}

// sessionState is the store's record of rs (SaveSession, PutInflight, PutInbound write the same).
func sessionState(rs *RecoveredSession) *store.SessionState {
	s := &store.SessionState{Session: store.Session{ClientID: rs.ClientID, ProtocolVersion: rs.ProtocolVersion,
		ExpiryInterval: rs.ExpiryInterval, DisconnectedAt: rs.DisconnectedAt, Owner: rs.Owner}, Inbound: rs.Inbound}
	for _, sub := range rs.Subscriptions {
		s.Session.Subscriptions = append(s.Session.Subscriptions, store.Subscription{Name: sub.Name,
			Filter: router.FilterKey(sub.Filter), Share: sub.Share, QoS: sub.QoS, Options: sub.Options,
			Identifier: sub.Identifier, Durable: sub.Durable})
	}
	for _, f := range rs.Inflight {
		st := store.InflightPublish
		if f.Released {
			st = store.InflightRelease
		}
		s.Inflight = append(s.Inflight, store.Inflight{ClientID: rs.ClientID, PacketID: f.PacketID, State: st,
			QoS: f.QoS, Ref: store.Ref{List: listOf(f.Queue.Kind), Owner: router.Key(f.Queue), Seq: f.Seq}})
	}
	return s
}

var _ SessionDirectory = (*Directory)(nil)
