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
	d.Serve(h)
	for host, r := range regs {
		r.mu.Lock()
		for id := range r.sessions {
			d.Hold(host.Name, id)
		}
		r.mu.Unlock()
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
		case !c.Verify:
			res = virtualhost.ClaimResult{Outcome: virtualhost.ClaimHanded, Session: h.handover(host, s)}
		}
		h.discard(host, s, nil)
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
	if host.Durable() {
		host.SaveSession(s.record(s.version), nil)
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
