package virtualhost

import (
	"fmt"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// SessionRecord is a session as the host keeps it: who owns it and what it subscribed to.
type SessionRecord struct {
	ClientID        string
	Owner           string // the user that opened it; "" = anonymous
	ProtocolVersion uint8
	ExpiryInterval  uint32 // seconds; 0 = never expires by itself
	DisconnectedAt  int64  // Unix ms of the last disconnect; 0 while connected
	Subscriptions   []SessionSub
}

// SessionSub is one subscription of a session.
type SessionSub struct {
	// Name is the client's text for it (its key in the session), a label: Filter is what it subscribes to.
	Name   string
	Filter router.Filter
	Share  string // shared-subscription group; "" = none
	QoS    uint8
	// Options and Identifier are MQTT 5's subscription options and identifier.
	Options    uint8
	Identifier uint32
	// Durable: its messages are kept in a durable subscription of the router, named by the front-end.
	Durable bool
}

// Inflight is an outbound delivery the client has not completed: the packet id it went out under and
// the queue entry it delivers (Queue, Seq), so that after a restart the entry is resent under the same id.
type Inflight struct {
	PacketID uint16
	Released bool // the client received it (PUBREC); only the id remains to complete (PUBCOMP)
	QoS      uint8
	Queue    router.Destination
	Seq      uint64
}

// RecoveredSession is a session found in the store at startup.
type RecoveredSession struct {
	SessionRecord
	Inflight []Inflight // ascending packet id
	Inbound  []uint16   // inbound QoS 2 packet ids awaiting PUBREL, ascending
}

// recoveredSession converts a stored session; its filters and queue names are canonical keys.
func recoveredSession(s store.SessionState) (RecoveredSession, error) {
	rs := RecoveredSession{SessionRecord: SessionRecord{ClientID: s.Session.ClientID, Owner: s.Session.Owner,
		ProtocolVersion: s.Session.ProtocolVersion, ExpiryInterval: s.Session.ExpiryInterval,
		DisconnectedAt: s.Session.DisconnectedAt}, Inbound: s.Inbound}
	for _, sub := range s.Session.Subscriptions {
		f, err := router.ParseFilterKey(sub.Filter)
		if err != nil {
			return rs, fmt.Errorf("%w: session %q: subscription %q: %w", store.ErrCorrupt, s.Session.ClientID, sub.Name, err)
		}
		rs.Subscriptions = append(rs.Subscriptions, SessionSub{Name: sub.Name, Filter: f, Share: sub.Share, QoS: sub.QoS,
			Options: sub.Options, Identifier: sub.Identifier, Durable: sub.Durable})
	}
	for _, f := range s.Inflight {
		q, ok := router.ParseKey(f.Ref.Owner)
		if !ok {
			return rs, fmt.Errorf("%w: session %q: in-flight %d: queue %q", store.ErrCorrupt, s.Session.ClientID, f.PacketID, f.Ref.Owner)
		}
		rs.Inflight = append(rs.Inflight, Inflight{PacketID: f.PacketID, Released: f.State == store.InflightRelease,
			QoS: f.QoS, Queue: q, Seq: f.Ref.Seq})
	}
	return rs, nil
}

// TakeSessions returns the sessions recovered at Open, once: the front-end restores them before any
// client connects. Later calls return nil.
func (h *Host) TakeSessions() []RecoveredSession {
	p := h.persist
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sessions
	p.sessions = nil
	return s
}

// SaveSession writes a session's record (replacing its subscriptions).
func (h *Host) SaveSession(rec SessionRecord, tr router.Tracker) {
	if !h.Durable() {
		return // nothing to write: a writer waiting on tr waits for nothing
	}
	s := store.Session{ClientID: rec.ClientID, ProtocolVersion: rec.ProtocolVersion, ExpiryInterval: rec.ExpiryInterval,
		DisconnectedAt: rec.DisconnectedAt, Owner: rec.Owner}
	for _, sub := range rec.Subscriptions {
		s.Subscriptions = append(s.Subscriptions, store.Subscription{Name: sub.Name, Filter: router.FilterKey(sub.Filter),
			Share: sub.Share, QoS: sub.QoS, Options: sub.Options, Identifier: sub.Identifier, Durable: sub.Durable})
	}
	h.persist.write(tr, store.PutSession{Session: s})
}

// DeleteSession removes a session's record with its in-flight and inbound state (its durable
// subscriptions are the router's to destroy).
func (h *Host) DeleteSession(clientID string, tr router.Tracker) {
	h.sessionWrite(tr, store.DeleteSession{ClientID: clientID})
}

// PutInflight records that the delivery f of session clientID goes out under its packet id (or that
// the client received it: f.Released). The record is written after the entry it delivers, in one commit
// with it when the entry's own write is still gathering in a publisher's atomic tracker.
func (h *Host) PutInflight(clientID string, f Inflight, tr router.Tracker) {
	if !h.Durable() {
		if tr != nil {
			tr.Track()(nil)
		}
		return
	}
	st := store.InflightPublish
	if f.Released {
		st = store.InflightRelease
	}
	owner := router.Key(f.Queue)
	h.persist.entryWrite(owner, f.Seq, tr, store.PutInflight{Inflight: store.Inflight{ClientID: clientID,
		PacketID: f.PacketID, State: st, QoS: f.QoS, Ref: store.Ref{List: listOf(f.Queue.Kind), Owner: owner, Seq: f.Seq}}})
}

// DeleteInflight forgets an in-flight delivery the client completed.
func (h *Host) DeleteInflight(clientID string, packetID uint16, tr router.Tracker) {
	h.sessionWrite(tr, store.DeleteInflight{ClientID: clientID, PacketID: packetID})
}

// PutInbound records an inbound QoS 2 packet id received and not yet released (PUBREL).
func (h *Host) PutInbound(clientID string, packetID uint16, tr router.Tracker) {
	h.sessionWrite(tr, store.PutInbound{ClientID: clientID, PacketID: packetID})
}

// DeleteInbound forgets an inbound QoS 2 packet id once released.
func (h *Host) DeleteInbound(clientID string, packetID uint16, tr router.Tracker) {
	h.sessionWrite(tr, store.DeleteInbound{ClientID: clientID, PacketID: packetID})
}

// PrincipalOf is the principal of user name u as this host knows it (its groups from the users file),
// for decisions made for a session while its client is away (a restored session's durable
// subscriptions). "" is anonymous.
func (h *Host) PrincipalOf(u string) Principal {
	if u == "" {
		return Principal{}
	}
	p := Principal{User: u, Authenticated: true}
	if usr, ok := h.cur.Load().users[u]; ok {
		p.Groups, p.listed = usr.groups, true
	}
	return p
}

func (h *Host) sessionWrite(tr router.Tracker, op store.Op) {
	if h.Durable() {
		h.persist.write(tr, op)
	}
}
