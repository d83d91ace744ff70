package mqtt

// Session takeover across the nodes of a cluster (the package doc's "Clusters"): the claim a CONNECT makes
// through the virtual hosts' SessionDirectory, the holder's side (GiveUp), and the state handed over.

import (
	"context"
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

// claimWait bounds how long a CONNECT waits for the node holding its session to answer its claim; after
// it the connection proceeds with what it has (a fresh session, or its own). A variable for tests.
var claimWait = 5 * time.Second

const (
	// giveUpWait bounds how long a holder waits for its connection to release a claimed session: less
	// than claimWait, so the claimer hears why.
	giveUpWait = 4 * time.Second
	// claimVerifyDelay is how long after a claim that found no holder (or no answer) the claim is made
	// again, once interest has crossed the routes: two nodes that claimed at once, each before the
	// other's hold was known, then meet and the earlier claim gives way.
	claimVerifyDelay = 250 * time.Millisecond
)

var (
	errTakenOverRemote = fmt.Errorf("%w, on another node", errTakenOver)
	errClaimLost       = errors.New("mqtt: a later connection with the same client id on another node holds the session")
)

// pendingClaim is a client id this node is claiming cluster-wide: one claim per id at a time, so a later
// local CONNECT claims after an earlier one, with a later stamp. Guarded by registry.mu.
type pendingClaim struct {
	stamp virtualhost.ClaimStamp
	done  chan struct{} // closed when the claiming connection has attached the session or given up
}

// SetDirectory makes the handler claim client ids cluster-wide through d and give up the sessions other
// nodes claim. Call it once, before any connector accepts: the sessions restored by then are announced.
func (h *Handler) SetDirectory(d virtualhost.SessionDirectory) {
	h.mu.Lock()
	h.dir = d
	regs := make(map[*virtualhost.Host]*registry, len(h.registries))
	for host, r := range h.registries {
		regs[host] = r
	}
	h.mu.Unlock()
	if rs, ok := d.(virtualhost.SessionRecords); ok && rs.Replicates() {
		h.records = rs
	}
	d.Serve(h)
	restored := make(map[*virtualhost.Host][]string)
	for host, r := range regs {
		r.mu.Lock()
		for id := range r.sessions {
			d.Hold(host.Name, id)
			restored[host] = append(restored[host], id)
		}
		r.mu.Unlock()
	}
	if h.records != nil && len(restored) > 0 {
		h.verifies.Add(1)
		go h.reconcile(restored)
	}
}

// keepsSessions reports whether host's persistent sessions are written anywhere: its store, or the
// cluster's session records.
func (h *Handler) keepsSessions(host *virtualhost.Host) bool {
	return host.Durable() || h.records != nil && h.records.Replicates()
}

// saveSession writes a session record to the host's store and the cluster's records.
func (h *Handler) saveSession(host *virtualhost.Host, rec virtualhost.SessionRecord, tr router.Tracker) {
	host.SaveSession(rec, tr)
	if h.records != nil && h.records.Replicates() {
		h.records.SaveRecord(host.Name, rec, tr)
	}
}

// deleteSession removes a session's records: it ended for good.
func (h *Handler) deleteSession(host *virtualhost.Host, clientID string, tr router.Tracker) {
	host.DeleteSession(clientID, tr)
	if h.records != nil && h.records.Replicates() {
		h.records.DeleteRecord(host.Name, clientID, tr)
	}
}

// recordWait bounds how long a Clean Session 0 CONNECT that found no holder waits for the cluster's
// record of its session: the stream leader's answer, which takes a few seconds when the leader died with
// the session's node and the stream elects another. A Clean Session 1 CONNECT, which wants the record
// only to discard it, waits cleanRecordWait. A node cut off from the quorum waits that long once per
// CONNECT of a client id it does not hold.
const (
	recordWait      = 8 * time.Second
	cleanRecordWait = time.Second
)

// resumeRecord makes the session the cluster's records keep for client id an offline session of this
// node, when no node holds it (its node died): its durable subscriptions are made again here, and read the
// messages the cluster kept for them. A session of another user refuses the client, as a holder would.
func (cl *client) resumeRecord(reg *registry, id string, cleanStart bool) error {
	h := cl.h
	reg.mu.Lock()
	here := reg.sessions[id] != nil
	reg.mu.Unlock()
	if here {
		return nil
	}
	wait := recordWait
	if cleanStart {
		wait = cleanRecordWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	found, err := h.records.LoadRecord(ctx, cl.host.Name, id)
	cancel()
	switch {
	case err != nil:
		cl.c.Log().Warn("the cluster's record of the session not read: going on without it",
			zap.String("vhost", cl.host.Name), zap.String("client_id", protocol.LoggedName(id)), zap.Error(err))
		return nil
	case !found.Found || found.Ended:
		return nil
	case found.Session.Owner != "" && found.Session.Owner != protocol.Owner(cl.principal):
		h.refusals.Logins.Add(1)
		cl.c.Log().Warn("mqtt login refused: client id in use by another user's session in the cluster",
			zap.String("vhost", cl.host.Name), zap.String("user", protocol.LoggedName(cl.principal.User)),
			zap.String("client_id", protocol.LoggedName(id)))
		return cl.refuse(connNotAuthorized, fmt.Errorf("%w: %w", errRefused, errSessionOwner))
	}
	rs := found.Session
	rs.Inflight, rs.Inbound = nil, nil // node-local: their messages come back from the cluster, redelivered
	h.adopt(cl.host, &virtualhost.SessionHandover{RecoveredSession: rs})
	if recordExpired(rs.SessionRecord, time.Now()) {
		// It expired while no node held it: it ends now, with what the cluster kept for it.
		reg.mu.Lock()
		s := reg.sessions[id]
		reg.mu.Unlock()
		if s != nil {
			_ = h.endOffline(cl.host, s, nil)
		}
		cl.c.Log().Info("the cluster's record of the session had expired: the session ends",
			zap.String("vhost", cl.host.Name), zap.String("client_id", protocol.LoggedName(id)))
		return nil
	}
	cl.c.Log().Info("session resumed from the cluster's record: the node that held it is gone",
		zap.String("vhost", cl.host.Name), zap.String("client_id", protocol.LoggedName(id)), zap.String("node", found.Node))
	return nil
}

// recordExpired reports whether an MQTT 5 session's expiry interval has passed since its client left
// [MQTT-3.1.2-23]; 3.1.1 records, and sessions that never expire, do not expire.
func recordExpired(rec virtualhost.SessionRecord, now time.Time) bool {
	if rec.ProtocolVersion != packet.Version5 || rec.ExpiryInterval == 0 || rec.ExpiryInterval == maxExpiry || rec.DisconnectedAt == 0 {
		return false
	}
	return now.After(time.UnixMilli(rec.DisconnectedAt).Add(time.Duration(rec.ExpiryInterval) * time.Second))
}

// reconcile checks the sessions a node restored from its store against the cluster's records once they
// can be read: a session that moved to another node while this one was down, or ended there, is not this
// node's any more and is dropped here, keeping what the cluster holds for it; one the records do not know
// (written before the cluster, or while it had no quorum) is recorded now.
func (h *Handler) reconcile(restored map[*virtualhost.Host][]string) {
	defer h.verifies.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	node := h.dir.Stamp().Node
	for host, ids := range restored {
		reg := h.registry(host)
		for _, id := range ids {
			var found virtualhost.RecordLookup
			var err error
			for {
				if found, err = h.records.LoadRecord(ctx, host.Name, id); err == nil || ctx.Err() != nil {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			if ctx.Err() != nil {
				return
			}
			reg.mu.Lock()
			s := reg.sessions[id]
			offline := s != nil && s.att == nil
			var ending *attachment
			if offline && found.Found && (found.Ended || found.Node != node) {
				ending = &attachment{done: make(chan struct{})}
				s.att = ending
				s.stopTimersLocked()
				s.will = nil
			}
			reg.mu.Unlock()
			switch {
			case ending != nil:
				h.release(host, s)
				reg.mu.Lock()
				if reg.sessions[id] == s {
					delete(reg.sessions, id)
					h.releaseLocked(reg, host, id)
				}
				s.att = nil
				reg.mu.Unlock()
				close(ending.done)
				h.log.Info("restored session dropped: it moved to another node or ended there while this one was down",
					zap.String("vhost", host.Name), zap.String("client_id", protocol.LoggedName(id)), zap.String("node", found.Node))
			case offline && !found.Found:
				h.records.SaveRecord(host.Name, s.record(s.version), nil)
			}
		}
	}
}

// holdLocked and releaseLocked announce a session entering or leaving a host's registry. Caller holds
// the registry's lock, so the announcements keep the registry's order.
func (h *Handler) holdLocked(host *virtualhost.Host, id string) {
	if h.dir != nil {
		h.dir.Hold(host.Name, id)
	}
}

func (h *Handler) releaseLocked(reg *registry, host *virtualhost.Host, id string) {
	if h.dir != nil {
		h.dir.Release(host.Name, id)
		delete(reg.stamps, id)
	}
}

// claimCluster claims client id cluster-wide before the session is taken locally. The holder, if any,
// closes its connection and hands the session over (adopted into this node's registry, offline, for
// takeSession to resume), or ends it (clean start). It returns the pending claim, which takeSession
// finishes (finishClaim) once the session is attached, so a claim arriving meanwhile is compared with
// this one; and the refusal of a client whose session belongs to another user or whose claim lost to a
// later one.
func (cl *client) claimCluster(reg *registry, att *attachment, id string, cleanStart bool) (*pendingClaim, error) {
	h := cl.h
	p := &pendingClaim{done: make(chan struct{})}
	for {
		reg.mu.Lock()
		prev := reg.claims[id]
		if prev == nil {
			p.stamp = h.dir.Stamp()
			if reg.claims == nil {
				reg.claims = make(map[string]*pendingClaim)
				reg.stamps = make(map[string]virtualhost.ClaimStamp)
			}
			reg.claims[id] = p
			reg.mu.Unlock()
			break
		}
		reg.mu.Unlock()
		select {
		case <-prev.done:
		case <-cl.c.Done():
			return nil, errOutboundClosed
		}
	}
	c := virtualhost.SessionClaim{Host: cl.host.Name, ClientID: id, Owner: protocol.Owner(cl.principal),
		CleanStart: cleanStart, Stamp: p.stamp}
	ctx, cancel := context.WithTimeout(context.Background(), claimWait)
	res := h.dir.Claim(ctx, c)
	cancel()
	if ce := cl.check("session claim"); ce != nil {
		ce.Write(zap.String("client_id", id), zap.Stringer("outcome", res.Outcome))
	}
	switch res.Outcome {
	case virtualhost.ClaimHanded:
		h.adopt(cl.host, res.Session)
	case virtualhost.ClaimRefusedOwner:
		h.finishClaim(reg, id, p)
		h.refusals.Logins.Add(1)
		cl.c.Log().Warn("mqtt login refused: client id in use by another user's session on another node",
			zap.String("vhost", cl.host.Name), zap.String("user", protocol.LoggedName(cl.principal.User)),
			zap.String("client_id", protocol.LoggedName(id)))
		return nil, cl.refuse(connNotAuthorized, fmt.Errorf("%w: %w", errRefused, errSessionOwner))
	case virtualhost.ClaimRefusedNewer:
		// Two CONNECTs at once on two nodes: the later one wins, as on one node; this one is the earlier.
		h.finishClaim(reg, id, p)
		return nil, cl.refuse(connServerUnavailable, fmt.Errorf("%w: %w", errRefused, errClaimLost))
	case virtualhost.ClaimFree, virtualhost.ClaimNoAnswer:
		if res.Outcome == virtualhost.ClaimFree && h.records != nil && h.records.Replicates() {
			if err := cl.resumeRecord(reg, id, cleanStart); err != nil {
				h.finishClaim(reg, id, p)
				return nil, err
			}
		}
		if res.Outcome == virtualhost.ClaimNoAnswer {
			cl.c.Log().Warn("session holder did not answer in time: going on without its state",
				zap.String("vhost", cl.host.Name), zap.String("client_id", protocol.LoggedName(id)))
		}
		c.Verify = true
		h.verifyLater(cl.host, reg, att, c)
	}
	return p, nil
}

// finishClaim ends a pending claim: claims from other nodes now meet the session (or nothing).
func (h *Handler) finishClaim(reg *registry, id string, p *pendingClaim) {
	if p == nil {
		return
	}
	reg.mu.Lock()
	if reg.claims[id] == p {
		delete(reg.claims, id)
	}
	reg.mu.Unlock()
	close(p.done)
}

// verifyLater makes claim c again after claimVerifyDelay if att still holds the session: see
// claimVerifyDelay. A state handed over then is dropped: this connection has a session already.
func (h *Handler) verifyLater(host *virtualhost.Host, reg *registry, att *attachment, c virtualhost.SessionClaim) {
	if h.closed.Load() {
		return
	}
	h.verifies.Add(1)
	go func() {
		defer h.verifies.Done()
		t := time.NewTimer(claimVerifyDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-h.stop:
			return
		}
		reg.mu.Lock()
		s := reg.sessions[c.ClientID]
		held := s != nil && s.att == att
		reg.mu.Unlock()
		if !held {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), claimWait)
		res := h.dir.Claim(ctx, c)
		cancel()
		if res.Outcome == virtualhost.ClaimHanded {
			h.log.Warn("a concurrent session on another node gave way; its state is dropped",
				zap.String("vhost", host.Name), zap.String("client_id", protocol.LoggedName(c.ClientID)))
		}
	}()
}

// GiveUp implements virtualhost.SessionHolder: another node claims a session of this one. A connection
// holding it is closed as a local takeover closes it (MQTT 5: DISCONNECT 0x8E) and its release awaited,
// its will handled as for a local takeover ([MQTT-3.1.2-8], on this node: wills never fire twice). The
// offline session then ends here: with a clean start its delayed will goes out and it is discarded;
// otherwise its delayed will is cancelled, as a connection within the will delay cancels it
// [MQTT-3.1.3-9], and its state is handed over. A claim earlier than the connection holding the session
// (or than this node's own pending claim) is refused, so of two CONNECTs at once the later wins.
func (h *Handler) GiveUp(c virtualhost.SessionClaim) virtualhost.ClaimResult {
	host := h.hosts.Lookup(c.Host)
	if host == nil || host.Name != c.Host || h.closed.Load() {
		return virtualhost.ClaimResult{Outcome: virtualhost.ClaimEnded}
	}
	reg := h.registry(host)
	deadline := time.Now().Add(giveUpWait)
	for {
		reg.mu.Lock()
		if p := reg.claims[c.ClientID]; p != nil && p.stamp.After(c.Stamp) {
			reg.mu.Unlock()
			return virtualhost.ClaimResult{Outcome: virtualhost.ClaimRefusedNewer}
		}
		s := reg.sessions[c.ClientID]
		switch {
		case s == nil:
			reg.mu.Unlock()
			return virtualhost.ClaimResult{Outcome: virtualhost.ClaimEnded}
		case s.owner != "" && s.owner != c.Owner:
			reg.mu.Unlock()
			return virtualhost.ClaimResult{Outcome: virtualhost.ClaimRefusedOwner}
		case s.att != nil && s.att.conn != nil && reg.stamps[c.ClientID].After(c.Stamp):
			reg.mu.Unlock()
			return virtualhost.ClaimResult{Outcome: virtualhost.ClaimRefusedNewer}
		case s.att != nil:
			prev := s.att
			if prev.done == nil {
				prev.done = make(chan struct{})
			}
			done := prev.done
			reg.mu.Unlock()
			if prev.conn != nil {
				disconnect(prev.conn, prev.version, packet.ReasonSessionTakenOver, errTakenOverRemote,
					prev.conn.Settings().Connector.MQTT.DieDelay)
			}
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-done:
				t.Stop()
				continue
			case <-t.C:
				return virtualhost.ClaimResult{Outcome: virtualhost.ClaimNoAnswer}
			}
		}
		// Offline: it ends here, as endOffline ends one, the client id taken meanwhile.
		ending := &attachment{done: make(chan struct{})}
		s.att = ending
		will := s.will
		s.stopTimersLocked()
		s.will = nil
		reg.mu.Unlock()
		res := virtualhost.ClaimResult{Outcome: virtualhost.ClaimEnded}
		switch {
		case c.CleanStart:
			h.publishWill(host, will) // the session ends: its delayed will goes out now
			h.discard(host, s, nil)
		case !c.Verify:
			res = virtualhost.ClaimResult{Outcome: virtualhost.ClaimHanded, Session: h.handover(host, s)}
			h.release(host, s)
		default:
			// The claimer has a session of this id already: what the cluster keeps under its durable
			// subscriptions' names is its now.
			h.release(host, s)
		}
		reg.mu.Lock()
		if reg.sessions[s.id] == s {
			delete(reg.sessions, s.id)
			h.releaseLocked(reg, host, s.id)
		}
		s.att = nil
		reg.mu.Unlock()
		close(ending.done)
		h.log.Info("session given up to another node", zap.String("vhost", host.Name),
			zap.String("client_id", protocol.LoggedName(s.id)), zap.Stringer("outcome", res.Outcome))
		return res
	}
}

// handover is the state of offline session s, which is ending here: its record, in-flight and inbound
// packet ids, and the messages its durable subscriptions hold, drained from them (their departure
// journalled; discard destroys the subscriptions next). Nothing else touches s.
func (h *Handler) handover(host *virtualhost.Host, s *session) *virtualhost.SessionHandover {
	hs := &virtualhost.SessionHandover{RecoveredSession: virtualhost.RecoveredSession{SessionRecord: s.record(s.version)}}
	s.mu.Lock()
	for _, f := range s.inflight {
		if e := f.item.entry; e != nil && e.dsub != nil {
			hs.Inflight = append(hs.Inflight, virtualhost.Inflight{PacketID: f.id, Released: f.state == waitPubcomp,
				QoS: f.item.qos, Queue: *e.dsub, Seq: f.item.qseq})
		}
	}
	s.mu.Unlock()
	for id := range s.awaitingRel {
		hs.Inbound = append(hs.Inbound, id)
	}
	slices.Sort(hs.Inbound)
	for _, e := range s.subs {
		if e.dsub == nil {
			continue
		}
		msgs, err := host.Router.DrainQueue(*e.dsub)
		if err != nil {
			h.log.Warn("durable subscription not wholly handed over", zap.String("vhost", host.Name),
				zap.String("client_id", protocol.LoggedName(s.id)), zap.String("filter", e.key), zap.Error(err))
		}
		for _, m := range msgs {
			hs.Backlog = append(hs.Backlog, virtualhost.HandedEntry{Queue: *e.dsub, Stored: m})
		}
	}
	return hs
}

// adopt makes handed-over session hs an offline session of host, as a restart restores one: its durable
// subscriptions made with their waiting messages (new sequence numbers, to which its in-flight packet
// ids are mapped), its records written. A session this node holds already keeps its place.
func (h *Handler) adopt(host *virtualhost.Host, hs *virtualhost.SessionHandover) {
	reg := h.registry(host)
	reg.mu.Lock()
	exists := reg.sessions[hs.ClientID] != nil
	reg.mu.Unlock()
	if exists {
		h.log.Warn("handed-over session dropped: this node holds one already", zap.String("vhost", host.Name),
			zap.String("client_id", protocol.LoggedName(hs.ClientID)))
		return
	}
	rt := host.Router
	for _, sub := range hs.Subscriptions {
		if sub.Durable {
			o := router.DurableOptions{Filter: sub.Filter, Owner: hs.Owner, QoS: sub.QoS, DropQoS0Offline: true}
			if _, err := rt.CreateDurable(dsubOf(hs.ClientID, sub.Name), o, nil); err != nil {
				h.log.Warn("handed-over durable subscription not made", zap.String("vhost", host.Name),
					zap.String("client_id", protocol.LoggedName(hs.ClientID)), zap.String("filter", sub.Name), zap.Error(err))
			}
		}
	}
	type ref struct {
		queue string
		seq   uint64
	}
	seqs := make(map[ref]uint64, len(hs.Backlog))
	lost := 0
	for _, e := range hs.Backlog {
		seq, err := rt.Adopt(e.Queue, e.Msg, e.Redeliveries)
		if err != nil {
			lost++
			continue
		}
		seqs[ref{router.Key(e.Queue), e.Seq}] = seq
	}
	if lost > 0 {
		h.log.Warn("handed-over messages dropped", zap.String("vhost", host.Name),
			zap.String("client_id", protocol.LoggedName(hs.ClientID)), zap.Int("dropped", lost))
	}
	rs := hs.RecoveredSession
	rs.Inflight = nil
	for _, f := range hs.Inflight {
		n, ok := seqs[ref{router.Key(f.Queue), f.Seq}]
		if !ok && !f.Released {
			continue // its message did not come: nothing to resend under its id
		}
		// A released delivery's message is usually gone (acknowledged at PUBREC): only its PUBREL is
		// resent, and 0 names no entry, where its old number could name another message here.
		f.Seq = n
		rs.Inflight = append(rs.Inflight, f)
	}
	s := h.restoreOne(host, rs)
	if h.keepsSessions(host) {
		h.saveSession(host, s.record(s.version), nil)
	}
	if host.Durable() {
		for _, f := range s.inflight {
			if s.recordsInflight(&f.item) {
				host.PutInflight(s.id, virtualhost.Inflight{PacketID: f.id, Released: f.state == waitPubcomp,
					QoS: f.item.qos, Queue: *f.item.entry.dsub, Seq: f.item.qseq}, nil)
			}
		}
		for id := range s.awaitingRel {
			host.PutInbound(s.id, id, nil)
		}
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	// While this node claims the id no other local connection takes it, so the place is still free.
	reg.sessions[s.id] = s
	h.holdLocked(host, s.id)
}
