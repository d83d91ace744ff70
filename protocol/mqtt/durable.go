package mqtt

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// errStoreWrite closes a connection whose acknowledgement waited for a write that failed: the client
// sends again after reconnecting.
var errStoreWrite = errors.New("mqtt: store write failed; message not acknowledged")

// dsubPrefix is the first level of every MQTT session's durable subscription name. '$' names are the
// broker's: STOMP cannot name them.
const dsubPrefix = "$mqtt"

// dsubOf names the durable subscription of client id's subscription to filter text key.
func dsubOf(clientID, key string) router.Destination {
	return router.Destination{Kind: router.DurableSub, Path: []string{dsubPrefix, clientID, key}}
}

// literalFilter is the filter naming exactly destination d.
func literalFilter(d router.Destination) router.Filter {
	f := router.Filter{Kind: d.Kind, Segs: make([]router.Seg, len(d.Path))}
	for i, p := range d.Path {
		f.Segs[i] = router.Seg{Kind: router.SegLiteral, Text: p}
	}
	return f
}

// durableOptions are the router options of entry e's durable subscription: gated for its owner when the
// gate says so, and leaving out its own client's messages for MQTT 5's no local [MQTT-3.8.3-3].
func durableOptions(e *subEntry, owner string, gate *virtualhost.Gate) router.DurableOptions {
	o := router.DurableOptions{Filter: e.rs.Filter, Owner: owner, QoS: e.qos, DropQoS0Offline: true}
	switch {
	case e.noLocal:
		clientID := e.dsub.Path[1]
		o.Match = func(m *router.Message) bool {
			return m.SenderID != clientID && (gate == nil || gate.Allows(m.Dest.Path))
		}
	case gate != nil:
		o.Match = func(m *router.Message) bool { return gate.Allows(m.Dest.Path) }
	}
	return o
}

// Subscription options as a session record keeps them: the bits of the SUBSCRIBE options byte.
const (
	optNoLocal           = 1 << 2
	optRetainAsPublished = 1 << 3
	optRetainHandling    = 3 << 4
)

func (e *subEntry) options() uint8 {
	var o uint8
	if e.noLocal {
		o |= optNoLocal
	}
	if e.rap {
		o |= optRetainAsPublished
	}
	return o | e.rh<<4&optRetainHandling
}

func (e *subEntry) setOptions(o uint8) {
	e.noLocal, e.rap, e.rh = o&optNoLocal != 0, o&optRetainAsPublished != 0, (o&optRetainHandling)>>4
}

// createDurable makes (or keeps, with e's QoS) the durable subscription of entry e.
func (cl *client) createDurable(e *subEntry, gate *virtualhost.Gate) error {
	_, err := cl.rt.CreateDurable(*e.dsub, durableOptions(e, protocol.Owner(cl.principal), gate), nil)
	return err
}

// destroyDurable ends the durable subscription of entry e, discarding what it holds.
func (cl *client) destroyDurable(e *subEntry) {
	if _, err := cl.rt.DestroyDurable(*e.dsub, cl.sess.owner, nil); err != nil && !errors.Is(err, router.ErrNoDurable) {
		cl.c.Log().Warn("durable subscription not destroyed", zap.String("client_id", cl.sess.id), zap.String("filter", e.key), zap.Error(err))
	}
}

// discardDurables destroys every durable subscription of session s (a clean session replaces it, or it
// is discarded): those its entries name and any left under its name by an earlier incarnation. tr, when
// set, learns when the removals are durable.
func discardDurables(rt *router.Router, s *session, tr router.Tracker) {
	for _, ds := range rt.Durables([]string{dsubPrefix, s.id}) {
		if len(ds.Dest.Path) == 3 {
			_, _ = rt.DestroyDurable(ds.Dest, ds.Owner, tr)
		}
	}
}

// consumeOptions are the consumer options of a session's queue or durable subscription.
func (cl *client) consumeOptions(e *subEntry) router.ConsumerOptions {
	return router.ConsumerOptions{Credit: window(cl.lim, cl.v5), AutoAck: e.queue && e.qos == 0, AckQoS0: e.dsub != nil,
		Owner: protocol.Owner(cl.principal)}
}

// consumerSub is the router subscription a consumer of entry e attaches with: the queue e names, or its
// durable subscription. The router treats the pointer as the consumer's identity: a fresh one each time.
func consumerSub(e *subEntry, s *session) *router.Subscription {
	f := e.rs.Filter
	if e.dsub != nil {
		f = literalFilter(*e.dsub)
	}
	return &router.Subscription{Filter: f, Sink: s, QoS: e.qos, ID: e.key, Opaque: e}
}

// recordsInflight reports whether a delivery's packet id is written to the store: QoS 1 or 2 from a
// durable subscription on a durable host. A QoS 2 one is written before the PUBLISH goes out.
func (s *session) recordsInflight(it *outItem) bool {
	return it.qos > 0 && it.entry != nil && it.entry.dsub != nil && s.host.Durable() &&
		!s.host.Router.Claimed(*it.entry.dsub) // the cluster keeps its messages: see detach
}

// writeInflightLocked writes the in-flight record of delivery it under packet id (released: PUBREC
// came). The first write of a QoS 2 delivery sends its PUBLISH once durable (inflightWritten); a
// release's writer waits on tr.
func (s *session) writeInflightLocked(id uint16, it *outItem, released bool, tr router.Tracker) {
	f := virtualhost.Inflight{PacketID: id, Released: released, QoS: it.qos, Queue: *it.entry.dsub, Seq: it.qseq}
	if !released && it.qos == 2 {
		// The store's committer reports here: never take s.mu on its goroutine.
		tr = virtualhost.TrackFunc(func(err error) { go s.inflightWritten(id, err) })
	}
	s.host.PutInflight(s.id, f, tr)
}

// inflightWritten sends a QoS 2 delivery once its packet id is durable. A failed write closes the
// connection: exactly once cannot be promised for it.
func (s *session) inflightWritten(id uint16, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.inflight, func(f inflightMsg) bool { return f.id == id && f.writing })
	if i < 0 {
		return
	}
	s.inflight[i].writing = false
	if err != nil {
		if s.conn != nil {
			s.conn.Close(fmt.Errorf("%w: in-flight record: %w", errStoreWrite, err))
		}
		return
	}
	s.pumpLocked()
}

// resumeInflightLocked takes a durable subscription's redelivery of a message that was in flight under a
// packet id before its consumer closed (a reconnect, or a restart that restored the id): it is resent
// under that id [MQTT-4.4.0-1], or, when the client had received it (PUBREC), only acknowledged at
// PUBCOMP. It reports whether it was one.
func (s *session) resumeInflightLocked(it *outItem) bool {
	for i := range s.inflight {
		f := &s.inflight[i]
		if f.item.msg != nil || f.item.entry != it.entry || f.item.qseq != it.qseq {
			continue
		}
		if f.state == waitPubcomp {
			f.item.msg, f.item.seq = it.msg, it.seq // acknowledged to its queue at PUBCOMP
			return true
		}
		dup := *it
		dup.dup = true
		f.item = dup
		if !f.unsent {
			f.unsent = true
			s.unsent++
		}
		s.pumpLocked()
		return true
	}
	return false
}

// dropUnmatchedLocked forgets in-flight deliveries whose durable subscription did not deliver them again
// once consumed: their messages are gone (destroyed with the subscription, expired).
func (s *session) dropUnmatchedLocked() {
	s.inflight = slices.DeleteFunc(s.inflight, func(f inflightMsg) bool {
		gone := f.item.msg == nil && f.state != waitPubcomp && !f.writing
		if gone {
			if f.unsent {
				s.unsent--
			}
			if s.recordsInflight(&f.item) {
				s.host.DeleteInflight(s.id, f.id, nil)
			}
		}
		return gone
	})
}

// record is the session's record for the host. Reader goroutine (owns subs).
func (s *session) record(version byte) virtualhost.SessionRecord {
	rec := virtualhost.SessionRecord{ClientID: s.id, Owner: s.owner, ProtocolVersion: version}
	if version == packet.Version5 {
		rec.ExpiryInterval = s.expiry // 3.1.1's record keeps 0: a persistent session never expires
	}
	for key, e := range s.subs {
		rec.Subscriptions = append(rec.Subscriptions, virtualhost.SessionSub{Name: key, Filter: e.rs.Filter,
			Share: e.rs.Share, QoS: e.qos, Options: e.options(), Identifier: e.subID, Durable: e.dsub != nil})
	}
	return rec
}

// saveRecord writes the session's record and waits until it is durable, so CONNACK or SUBACK promise
// only what a crash keeps. A clean session has none.
func (cl *client) saveRecord() error {
	s := cl.sess
	if s.clean || !cl.h.keepsSessions(cl.host) {
		return nil
	}
	tr := &virtualhost.Tracker{}
	cl.h.saveSession(cl.host, s.record(cl.version), tr)
	if err := tr.Wait(); err != nil {
		return fmt.Errorf("%w: session record: %w", errStoreWrite, err)
	}
	return nil
}

// RestoreAll rebuilds, before any client connects, the persistent sessions every host's store held
// (virtualhost.Host.TakeSessions): offline, with their subscriptions and in-flight packet ids. Their
// durable subscriptions are the router's, restored by the host; a wildcard one the owner may read only
// in part gets its gate back here. It returns the count per host name.
func (h *Handler) RestoreAll() map[string]int {
	counts := make(map[string]int)
	for _, host := range h.hosts.Hosts() {
		counts[host.Name] = h.RestoreHost(host)
	}
	return counts
}

// RestoreHost is RestoreAll for one host: a reload calls it for a durable host it adds, before the
// registry lets clients reach the host. It returns the sessions restored.
func (h *Handler) RestoreHost(host *virtualhost.Host) int {
	reg := h.registry(host)
	now := time.Now()
	n := 0
	var expired []*session
	for _, rs := range host.TakeSessions() {
		s := h.restoreOne(host, rs)
		// An MQTT 5 session expires its interval after its client left, a restart in between or not;
		// one whose client was connected when the broker stopped counts from now.
		left := time.Duration(s.expiry) * time.Second
		if rs.DisconnectedAt != 0 {
			left -= now.Sub(time.UnixMilli(rs.DisconnectedAt))
		}
		if s.expiry != maxExpiry && left <= 0 {
			expired = append(expired, s)
			continue
		}
		reg.mu.Lock()
		reg.sessions[s.id] = s
		h.holdLocked(host, s.id)
		h.scheduleLocked(host, s, left)
		reg.mu.Unlock()
		n++
	}
	for _, s := range expired {
		h.discard(host, s, nil)
		h.log.Info("session expired while the broker was down", zap.String("vhost", host.Name), zap.String("client_id", s.id))
	}
	return n
}

func (h *Handler) restoreOne(host *virtualhost.Host, rs virtualhost.RecoveredSession) *session {
	s := newSession(rs.ClientID, false, host, h.log)
	s.owner, s.version = rs.Owner, rs.ProtocolVersion
	s.expiry = maxExpiry
	if rs.ProtocolVersion == packet.Version5 && rs.ExpiryInterval != 0 {
		s.expiry = rs.ExpiryInterval
	}
	p := host.PrincipalOf(rs.Owner)
	for _, sub := range rs.Subscriptions {
		e := &subEntry{key: sub.Name, qos: sub.QoS, queue: sub.Filter.Kind == router.Queue, subID: sub.Identifier,
			unrouted: !sub.Durable && sub.Filter.Kind == router.Topic}
		e.setOptions(sub.Options)
		e.rs = &router.Subscription{Filter: sub.Filter, Sink: s, QoS: sub.QoS, ID: sub.Name, Share: sub.Share, Opaque: e}
		if sub.Durable {
			d := dsubOf(s.id, sub.Name)
			e.dsub = &d
			// Match functions are not journalled: the gate and no local are set again here.
			some, all := host.AuthorizeFilter(p, virtualhost.ActionReceive, virtualhost.ObjectTopic, sub.Filter.Segs, s.id)
			var gate *virtualhost.Gate
			if some && !all {
				gate = host.Gate(p, virtualhost.ActionReceive, virtualhost.ObjectTopic, s.id)
			}
			if gate != nil || e.noLocal {
				_, _ = host.Router.CreateDurable(d, durableOptions(e, rs.Owner, gate), nil)
			}
			e.gate = gate
		}
		s.setEntryLocked(e, true) // nothing else sees s yet
	}
	for _, f := range rs.Inflight {
		key := ""
		if len(f.Queue.Path) == 3 {
			key = f.Queue.Path[2]
		}
		e := s.subs[key]
		if e == nil || e.dsub == nil {
			host.DeleteInflight(s.id, f.PacketID, nil) // its subscription is gone
			continue
		}
		state := waitPuback
		switch {
		case f.Released:
			state = waitPubcomp
		case f.QoS == 2:
			state = waitPubrec
		}
		s.inflight = append(s.inflight, inflightMsg{id: f.PacketID, state: state,
			item: outItem{entry: e, qseq: f.Seq, qos: f.QoS, dup: true}})
		s.lastID = max(s.lastID, f.PacketID)
		s.idsInOrder = false // restored ids are in no known order: nextIDLocked scans
	}
	if len(rs.Inbound) > 0 {
		s.awaitingRel = make(map[uint16]struct{}, len(rs.Inbound))
		for _, id := range rs.Inbound {
			s.awaitingRel[id] = struct{}{}
		}
	}
	return s
}
