package mqtt

// Persistence on a durable virtual host (one with a store block; see virtualhost.Host.Durable).
//
// A session with clean session off journals, in the order its state changes under session.mu:
//   - its record and subscriptions (store.PutSession) at CONNECT and on each SUBSCRIBE/UNSUBSCRIBE, before
//     CONNACK/SUBACK;
//   - each QoS ≥ 1 topic message it keeps (store.PutEntry on its session list) and, once sent, the
//     outbound in-flight state with its packet id (PutInflight, then PUBREC → the release state, PUBACK or
//     PUBCOMP → DeleteInflight);
//   - the inbound QoS 2 packet ids awaiting PUBREL (PutInbound / DeleteInbound).
//
// At startup Handler.Restore rebuilds these sessions offline, subscribed, with their queued and in-flight
// messages, so a resumed session continues where it stopped [MQTT-4.1.0-1]: in-flight messages are resent
// with DUP (or PUBREL) under their packet ids, then the queue. Queue consumers of a session resume at
// CONNECT as they always do; queue messages themselves are not session state.
//
// A publisher's PUBACK / PUBREC is sent only once every write its message caused is durable: the message
// carries a virtualhost.Tracker that each write registers with (the retained journal, a session keeping
// the message, the inbound QoS 2 id). The reader goroutine does not wait: acknowledgements queue per
// connection in arrival order and leave as their writes complete, so PUBACKs keep the order of the
// PUBLISH packets [MQTT-4.6.0-2]. A failed write closes the connection without acknowledging, so the
// client sends the message again after reconnecting. PUBREL (to a subscriber) and PUBCOMP (to a
// publisher) likewise leave once the state they announce is durable, so a crash can neither resend a
// completed QoS 2 delivery nor keep a released inbound id that would swallow the id's next message.
//
// Subscriptions restored at startup are not re-checked against access rules that only partly allow a
// wildcard filter (the gate is rebuilt at the next SUBSCRIBE).

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/virtualhost"
)

var errStoreWrite = errors.New("mqtt: store write failed; message not acknowledged")

// sessionStore links a persistent session on a durable host to the host's store.
type sessionStore struct {
	host *virtualhost.Host
	seq  uint64 // last sequence number used in the session's list; guarded by session.mu
	// failures counts writes that failed with no publisher waiting. Atomic: the store's committer
	// reports them and must never wait for session.mu (a writer holding it may wait for the committer).
	failures atomic.Uint64
	// deferred are the atomic trackers (MQTT publishers') this session added writes to: flushed before
	// any later write of the session, so the store sees its changes in order. Guarded by session.mu.
	deferred []*virtualhost.Tracker
}

// commitLocked queues ops for the session; tr, when set, is the publisher waiting for them. An atomic
// tracker takes them into its single commit.
func (s *session) commitLocked(tr router.Tracker, ops ...store.Op) {
	if at, ok := tr.(*virtualhost.Tracker); ok && at.Atomic() {
		at.Add(ops...)
		if len(s.ps.deferred) >= 64 {
			// Bounded: forget the trackers their publishers flushed already (an offline session
			// receiving a flood makes no write of its own that would flush them).
			s.ps.deferred = slices.DeleteFunc(s.ps.deferred, func(t *virtualhost.Tracker) bool { return !t.Unflushed() })
		}
		s.ps.deferred = append(s.ps.deferred, at)
		return
	}
	s.flushDeferredLocked()
	if tr != nil {
		s.ps.host.Commit(tr.Track(), ops...)
		return
	}
	s.ps.host.Commit(s.writeFailed, ops...)
}

// flushDeferredLocked commits the writes this session left in publishers' atomic trackers.
func (s *session) flushDeferredLocked() {
	for i, t := range s.ps.deferred {
		t.Flush()
		s.ps.deferred[i] = nil
	}
	s.ps.deferred = s.ps.deferred[:0]
}

// writeFailed reports a failed write nobody waits for: the first, then every 1000th.
func (s *session) writeFailed(err error) {
	if err == nil {
		return
	}
	n := s.ps.failures.Add(1)
	if n == 1 || n%1000 == 0 {
		s.log.Error("session store write failed", zap.String("client_id", s.id), zap.Uint64("failures", n), zap.Error(err))
	}
}

// keepsLocked reports whether the session journals this item: a persistent session's QoS ≥ 1 topic
// message (queue deliveries belong to their queue).
func (s *session) keepsLocked(it *outItem) bool {
	return s.ps != nil && it.qos > 0 && it.seq == 0
}

// putEntryLocked journals an item the session keeps queued (or held until SUBACK).
func (s *session) putEntryLocked(it *outItem, tr router.Tracker) {
	if !s.keepsLocked(it) || it.sseq != 0 {
		return
	}
	s.ps.seq++
	it.sseq = s.ps.seq
	s.commitLocked(tr, store.PutEntry{Entry: store.Entry{List: store.ListSession, Owner: s.id, Seq: it.sseq,
		QoS: it.qos, Msg: virtualhost.StoreMessage(it.msg)}})
}

// deleteEntryLocked journals that a queued item is gone (dropped or expired).
func (s *session) deleteEntryLocked(it *outItem) {
	if s.ps == nil || it.sseq == 0 {
		return
	}
	s.commitLocked(nil, store.DeleteEntry{Ref: store.Ref{List: store.ListSession, Owner: s.id, Seq: it.sseq}})
	it.sseq = 0
}

// sentLocked journals an item sent under packet id: its in-flight record replaces its queue entry. A
// fresh item (delivered straight from Deliver) makes its publisher wait for the record.
func (s *session) sentLocked(it *outItem, id uint16) {
	if !s.keepsLocked(it) {
		return
	}
	st := store.InflightPublish
	put := store.PutInflight{Inflight: store.Inflight{ClientID: s.id, PacketID: id, State: st, QoS: it.qos,
		Msg: virtualhost.StoreMessage(it.msg)}}
	if it.sseq == 0 {
		s.commitLocked(it.msg.Tracker, put)
		return
	}
	// The put first: the message keeps a reference throughout, so its body is not rewritten.
	s.commitLocked(nil, put, store.DeleteEntry{Ref: store.Ref{List: store.ListSession, Owner: s.id, Seq: it.sseq}})
	it.sseq = 0
}

// inflightDoneLocked journals an in-flight change: PUBREC (release state; tr, when set, waits for it) or
// completion.
func (s *session) inflightDoneLocked(f *inflightMsg, released bool, tr router.Tracker) {
	if s.ps == nil || !s.keepsLocked(&f.item) {
		return
	}
	if released {
		s.commitLocked(tr, store.PutInflight{Inflight: store.Inflight{ClientID: s.id, PacketID: f.id,
			State: store.InflightRelease, QoS: 2}})
		return
	}
	s.commitLocked(nil, store.DeleteInflight{ClientID: s.id, PacketID: f.id})
}

// record returns the session's store record with its subscriptions. Reader goroutine (owns subs).
func (s *session) record(version byte) store.Session {
	rec := store.Session{ClientID: s.id, ProtocolVersion: version, Owner: s.owner}
	for key, e := range s.subs {
		rec.Subscriptions = append(rec.Subscriptions, store.Subscription{Filter: key, QoS: e.qos})
	}
	return rec
}

// saveRecord writes the session's record and waits until it is durable, so CONNACK or SUBACK promise
// only what a crash keeps.
func (cl *client) saveRecord() error {
	s := cl.sess
	if s.ps == nil {
		return nil
	}
	if err := store.Apply(cl.host.Store(), store.PutSession{Session: s.record(cl.version)}); err != nil {
		return fmt.Errorf("%w: session record: %w", errStoreWrite, err)
	}
	return nil
}

// Restore rebuilds the persistent sessions recovered by host's store (see virtualhost.Host.TakeSessions)
// before any client connects: offline, subscribed, with their queued and in-flight messages. Filters
// are parsed with connector c's MQTT grammar and the sessions get c's limits until their client
// connects. It returns how many sessions it restored.
func (h *Handler) Restore(host *virtualhost.Host, c *conf.Connector) (int, error) {
	states := host.TakeSessions()
	if len(states) == 0 {
		return 0, nil
	}
	set, err := protocol.NewSettings(*c)
	if err != nil {
		return 0, err
	}
	g, lim := set.MQTTGrammar, &set.Connector.MQTT
	reg := h.registry(host)
	for _, st := range states {
		s, err := h.restoreOne(host, g, lim, st)
		if err != nil {
			return 0, fmt.Errorf("mqtt: restore session %q: %w", st.Session.ClientID, err)
		}
		reg.mu.Lock()
		reg.sessions[s.id] = s
		reg.mu.Unlock()
	}
	return len(states), nil
}

func (h *Handler) restoreOne(host *virtualhost.Host, g *router.Grammar, lim *conf.MQTT, st store.SessionState) (*session, error) {
	s := newSession(st.Session.ClientID, false, h.log)
	s.owner = st.Session.Owner // so only its user resumes it (mayTakeSession)
	s.ps = &sessionStore{host: host, seq: st.Queued.Last}
	s.maxInflight, s.maxQueued, s.g, s.version = lim.MaxInflight, lim.MaxQueuedMessages, g, st.Session.ProtocolVersion
	for _, sub := range st.Session.Subscriptions {
		text, group, err := splitShare(sub.Filter)
		if err != nil {
			return nil, err
		}
		f, err := g.ParseFilter(text)
		if err != nil {
			return nil, err
		}
		e := &subEntry{key: sub.Filter, qos: sub.QoS, queue: f.Kind == router.Queue}
		e.rs = &router.Subscription{Filter: f, Sink: s, QoS: sub.QoS, ID: sub.Filter, Share: group, Opaque: e}
		s.setEntryLocked(e, true) // nothing else sees s yet
		if !e.queue {
			if err := host.Router.Subscribe(e.rs); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range st.Inflight {
		it := outItem{qos: f.QoS}
		state := waitPubcomp
		if f.State == store.InflightPublish {
			it.msg = virtualhost.RouterMessage(f.Msg)
			state = waitPuback
			if f.QoS == 2 {
				state = waitPubrec
			}
		}
		s.inflight = append(s.inflight, inflightMsg{id: f.PacketID, state: state, item: it})
		s.lastID = max(s.lastID, f.PacketID)
	}
	if len(st.Inbound) > 0 {
		s.awaitingRel = make(map[uint16]struct{}, len(st.Inbound))
		for _, id := range st.Inbound {
			s.awaitingRel[id] = struct{}{}
		}
	}
	// The queued messages, read in windows so a long list is never loaded in one piece.
	const window = 1024
	for from := st.Queued.First; st.Queued.Count > 0; {
		es, err := host.Store().Entries(store.ListSession, s.id, from, window)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			s.queue.push(outItem{msg: virtualhost.RouterMessage(e.Msg), qos: e.QoS, sseq: e.Seq})
		}
		if len(es) < window {
			break
		}
		from = es[len(es)-1].Seq + 1
	}
	return s, nil
}

// restoreConnector picks, for Restore, the first connector serving MQTT for the host; nil when none.
func restoreConnector(cs []conf.Connector, host string) *conf.Connector {
	for i := range cs {
		c := &cs[i]
		if c.VirtualHost != "" && !strings.EqualFold(c.VirtualHost, host) {
			continue
		}
		for _, p := range c.Protocols() {
			if p == protocol.MQTT {
				return c
			}
		}
	}
	return nil
}

// RestoreAll restores every durable host's sessions (see Restore), using for each host the first
// connector serving MQTT to it (or the defaults), and returns the count per host name.
func (h *Handler) RestoreAll(cs []conf.Connector) (map[string]int, error) {
	counts := make(map[string]int)
	for _, host := range h.hosts.Hosts() {
		if !host.Durable() {
			continue
		}
		c := restoreConnector(cs, host.Name)
		if c == nil {
			c = &conf.Connector{}
		}
		n, err := h.Restore(host, c)
		if err != nil {
			return counts, fmt.Errorf("virtual_host %q: %w", host.Name, err)
		}
		counts[host.Name] = n
	}
	return counts, nil
}
