package mqtt

// Session lifecycle: the per-host registry, takeover, attach after CONNACK, release when the connection ends.

import (
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// registry holds one virtual host's sessions by client id.
type registry struct {
	mu       sync.Mutex
	sessions map[string]*session
	// In a cluster (cluster.go), nil without: claims are the client ids being claimed cluster-wide, and
	// stamps the claim stamp of the connection attached to each session, for GiveUp to compare.
	claims map[string]*pendingClaim
	stamps map[string]virtualhost.ClaimStamp
}

// attachment is one connection's hold on a session. Guarded by registry.mu.
type attachment struct {
	conn    *protocol.Conn
	version byte // the connection's protocol level: an MQTT 5 one is told why it is taken over
	// done is closed once the connection has released the session. Made by the first connection that
	// waits for the release (a takeover): most attachments never need it, and a channel costs 96 bytes.
	done chan struct{}
}

// takeSession finds or creates the session for client id, taking it over from a connection that still
// holds it [MQTT-3.1.4-2]: that connection is closed (an MQTT 5 one after DISCONNECT 0x8E
// [MQTT-3.1.4-3]) and its release awaited. With clean session (clean start) on an existing session is
// discarded [MQTT-3.1.2-6] [MQTT-3.1.2-4]. expiry is the session expiry the connection asks for (0:
// the session ends with the connection). It reports whether a session was present.
func (cl *client) takeSession(id string, cleanStart bool, expiry uint32) (*session, bool, error) {
	reg := cl.h.registry(cl.host)
	att := &attachment{conn: cl.c, version: cl.version}
	var claim *pendingClaim
	if cl.h.dir != nil {
		// Cluster-wide first: the node holding the session gives it up (cluster.go).
		var err error
		if claim, err = cl.claimCluster(reg, att, id, cleanStart); err != nil {
			return nil, false, err
		}
		defer cl.h.finishClaim(reg, id, claim)
	}
	deadline := time.Now().Add(takeoverWait)
	for {
		reg.mu.Lock()
		s := reg.sessions[id]
		if s != nil && s.att != nil {
			prev := s.att
			if prev.done == nil {
				prev.done = make(chan struct{})
			}
			done := prev.done
			reg.mu.Unlock()
			if prev.conn != nil { // else the session is ending (endOffline): wait until it is gone
				disconnect(prev.conn, prev.version, packet.ReasonSessionTakenOver, errTakenOver, cl.lim.DieDelay)
			}
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-done:
				t.Stop()
			case <-cl.c.Done():
				t.Stop()
				return nil, false, errOutboundClosed
			case <-t.C:
				return nil, false, errTakeoverTimeout
			}
			continue
		}
		cl.att = att
		if claim != nil {
			reg.stamps[id] = claim.stamp
		}
		if s != nil && !cleanStart {
			s.att = att
			// A connection to the session before the will delay passed cancels the will [MQTT-3.1.3-9],
			// and the session no longer expires while it is connected.
			s.stopTimersLocked()
			s.will = nil
			s.expiry = expiry
			reg.mu.Unlock()
			// The stored record still has the expiry of the connection before and the time it left. An MQTT 5
			// session (now or before) gets its record written again, with the expiry it has now and no
			// departure time: else a restart, kill -9 included, would count the old interval from the old
			// departure and could end a session whose client was connected, or asked for 0xFFFFFFFF
			// [MQTT-3.1.2-23].
			s.mu.Lock()
			was5 := s.version == packet.Version5
			s.mu.Unlock()
			if !s.clean && cl.h.keepsSessions(cl.host) && (was5 || cl.version == packet.Version5) {
				cl.h.saveSession(cl.host, s.record(cl.version), nil) // unattached until resume: s.subs is ours
			}
			return s, true, nil
		}
		old := s
		var oldWill *willMsg
		if old != nil {
			old.stopTimersLocked()
			oldWill, old.will = old.will, nil // its session ends now: its delayed will goes out
		}
		s = newSession(id, expiry == 0, cl.host, cl.h.log)
		s.expiry = expiry
		s.owner = protocol.Owner(cl.principal) // in its first record
		s.att = att
		reg.sessions[id] = s
		if old == nil {
			cl.h.holdLocked(cl.host, id)
		}
		reg.mu.Unlock()
		if old != nil {
			// Unattached and unreachable: nothing else touches it [MQTT-3.1.2-6].
			cl.h.discard(cl.host, old, nil)
			cl.h.publishWill(cl.host, oldWill)
		}
		if !s.clean {
			cl.h.saveSession(cl.host, s.record(cl.version), nil) // nothing else sees s yet
		}
		return s, false, nil
	}
}

// discard ends an unattached session for good: its subscriptions, durable ones with what they hold, its
// record. Nothing else may reach s any more. tr, when set, learns when the store writes are durable.
func (h *Handler) discard(host *virtualhost.Host, s *session, tr router.Tracker) {
	for _, e := range s.subs {
		if e.dsub == nil && !e.queue {
			host.Router.Unsubscribe(e.rs)
		}
	}
	discardDurables(host.Router, s, tr)
	s.mu.Lock()
	s.discardLocked()
	s.mu.Unlock()
	h.deleteSession(host, s.id, tr)
}

// release ends an unattached session here because another node has it now (cluster.go): as discard,
// except that what the cluster keeps for its durable subscriptions stays for that node, and so does the
// cluster's record of it.
func (h *Handler) release(host *virtualhost.Host, s *session) {
	for _, e := range s.subs {
		if e.dsub == nil && !e.queue {
			host.Router.Unsubscribe(e.rs)
		}
	}
	for _, ds := range host.Router.Durables([]string{dsubPrefix, s.id}) {
		if len(ds.Dest.Path) == 3 {
			_, _ = host.Router.DropDurable(ds.Dest, ds.Owner, nil)
		}
	}
	s.mu.Lock()
	s.discardLocked()
	s.mu.Unlock()
	host.DeleteSession(s.id, nil)
}

// resume attaches the session to this connection after CONNACK: resends, queued messages, then the
// consumers of its queues and durable subscriptions, whose redeliveries of messages in flight go out
// again under their packet ids (durable.go); in-flight ids whose messages are gone are forgotten.
func (cl *client) resume() {
	s := cl.sess
	cl.c.OnDrain(cl.onDrain)
	s.attach(cl.c, cl.version, cl.g, cl.lim, cl.v5)
	for _, e := range s.subs {
		if e.consumes() && e.consumer == nil {
			if err := cl.consume(e); err != nil {
				cl.c.Log().Warn("consumer not resumed", zap.String("filter", e.key), zap.Error(err))
			}
		}
	}
	s.mu.Lock()
	s.dropUnmatchedLocked()
	s.pumpLocked()
	s.mu.Unlock()
}

// end releases the session when the connection is over and publishes the will unless the client said
// DISCONNECT (an MQTT 5 client may ask for it with reason 0x04). A session whose expiry is 0 ends now;
// another stays, and expires after its interval unless a connection takes it again.
func (cl *client) end(graceful bool) {
	cl.applyRevocation() // a reload's re-check ended the connection
	s := cl.sess
	s.cons.Take()
	ending := s.expiry == 0
	for _, e := range s.subs {
		if e.consumer != nil {
			e.consumer.Close() // unacknowledged messages go back to the queue
			e.consumer = nil
		}
		if ending && !e.queue && e.dsub == nil {
			cl.rt.Unsubscribe(e.rs)
		}
	}
	if ending && !s.clean {
		// A persistent session resumed with expiry 0, or set to 0 by DISCONNECT: it ends now, with its
		// durable subscriptions and record.
		discardDurables(cl.rt, s, nil)
		cl.h.deleteSession(cl.host, s.id, nil)
	}
	s.mu.Lock()
	s.clean = ending // under the lock for management; the reader reads it without
	s.mu.Unlock()
	s.detach()
	if !ending && cl.h.keepsSessions(cl.host) && (s.expiry != maxExpiry || cl.v5 != nil && cl.v5.expiryChanged) {
		// The disconnect time is what its expiry counts from, across a restart too. A session that never
		// expires needs no new record, unless its DISCONNECT changed the expiry to 0xFFFFFFFF.
		rec := s.record(cl.version)
		rec.DisconnectedAt = time.Now().UnixMilli()
		cl.h.saveSession(cl.host, rec, nil)
	}
	will := cl.will
	if graceful {
		will = nil // [MQTT-3.1.2-10]
	}
	reg := cl.h.registry(cl.host)
	reg.mu.Lock()
	if ending && reg.sessions[s.id] == s {
		delete(reg.sessions, s.id)
		cl.h.releaseLocked(reg, cl.host, s.id)
	}
	s.att = nil
	done := cl.att.done
	if !ending {
		cl.h.scheduleLocked(cl.host, s, time.Duration(s.expiry)*time.Second)
		if will != nil && cl.v5 != nil && cl.v5.willDelay > 0 {
			// [MQTT-3.1.3-9] published after the will delay, or when the session ends if that is sooner.
			// The timer gets its own copy: will is set to nil next, and a closure over will would see
			// nil when it fires, never match s.will, and drop the will.
			delayed := will
			s.will = delayed
			s.willTimer = time.AfterFunc(time.Duration(cl.v5.willDelay)*time.Second, func() {
				if !cl.host.Retired() {
					cl.h.willDue(cl.host, s, delayed)
				}
			})
			will = nil
		}
	}
	reg.mu.Unlock()
	if done != nil {
		close(done)
	}
	// [MQTT-3.1.2-8] published when the connection ends without DISCONNECT.
	cl.h.publishWill(cl.host, will)
}

// publishWill publishes a will message, if any, with its expiry counted from now.
func (h *Handler) publishWill(host *virtualhost.Host, will *willMsg) {
	if will == nil {
		return
	}
	m := will.Message // a will is published once; the copy keeps the router's message apart all the same
	if will.expiry > 0 {
		m.Expires = time.Now().Add(time.Duration(will.expiry) * time.Second).UnixMilli()
	}
	if res := host.Router.Publish(&m); res.Err != nil {
		h.log.Info("will not published", zap.String("topic", will.Origin), zap.Error(res.Err))
	}
}

// willDue publishes a session's delayed will, unless a connection took the session meanwhile.
func (h *Handler) willDue(host *virtualhost.Host, s *session, will *willMsg) {
	reg := h.registry(host)
	reg.mu.Lock()
	due := s.will == will && s.att == nil
	if due {
		s.will, s.willTimer = nil, nil
	}
	reg.mu.Unlock()
	if due {
		h.publishWill(host, will)
	}
}

// scheduleLocked arms the expiry of offline session s after d (maxExpiry seconds: never). Caller holds
// the registry's lock.
func (h *Handler) scheduleLocked(host *virtualhost.Host, s *session, d time.Duration) {
	if s.expiry == maxExpiry || h.closed.Load() {
		return
	}
	if s.expiryTimer != nil {
		s.expiryTimer.Stop()
	}
	s.expiresAt = time.Now().Add(max(d, 0)).UnixMilli()
	s.expiryTimer = time.AfterFunc(max(d, 0), func() {
		if !host.Retired() { // a reload removed the host: ForgetHost is on its way
			h.expire(host, s)
		}
	})
}

// expire ends an offline session whose expiry interval passed [MQTT-3.1.2-23].
func (h *Handler) expire(host *virtualhost.Host, s *session) {
	if h.endOffline(host, s, nil) == nil {
		h.log.Info("session expired", zap.String("vhost", host.Name), zap.String("client_id", s.id))
	}
}

// errHandlerClosed refuses to end a session once the broker is shutting down (Handler.Close).
var errHandlerClosed = errors.New("mqtt: handler closed")

// endOffline ends offline session s for good, as its expiry does (or an administrator, DeleteSession):
// its delayed will goes out now, and the session is discarded with its subscriptions, what they hold and
// its store records (tr, when set, learns when those writes are durable). It refuses a session whose
// client is connected (management.ErrSessionOnline) and one that is gone or already ending
// (management.ErrNoSession). The client id stays taken until the session is gone: a client connecting
// with it meanwhile waits for the release, as for a takeover (takeSession), so it neither resumes the
// session nor has its new durable subscriptions destroyed along with the old ones.
func (h *Handler) endOffline(host *virtualhost.Host, s *session, tr router.Tracker) error {
	reg := h.registry(host)
	reg.mu.Lock()
	switch {
	case h.closed.Load():
		reg.mu.Unlock()
		return errHandlerClosed
	case reg.sessions[s.id] != s || s.att != nil && s.att.conn == nil:
		reg.mu.Unlock()
		return management.ErrNoSession
	case s.att != nil:
		reg.mu.Unlock()
		return management.ErrSessionOnline
	}
	ending := &attachment{done: make(chan struct{})} // no connection: ending
	s.att = ending
	will := s.will
	s.stopTimersLocked()
	s.will = nil
	reg.mu.Unlock()
	h.publishWill(host, will)
	h.discard(host, s, tr)
	reg.mu.Lock()
	if reg.sessions[s.id] == s {
		delete(reg.sessions, s.id)
		h.releaseLocked(reg, host, s.id)
	}
	s.att = nil
	reg.mu.Unlock()
	close(ending.done)
	return nil
}

// stopTimersLocked stops the session's expiry and will timers. Caller holds the registry's lock.
func (s *session) stopTimersLocked() {
	if s.expiryTimer != nil {
		s.expiryTimer.Stop()
		s.expiryTimer = nil
		s.expiresAt = 0
	}
	if s.willTimer != nil {
		s.willTimer.Stop()
		s.willTimer = nil
	}
}

// ForgetHost drops the sessions of a host a reload removed, once its connections have ended: their expiry
// and will timers stop (delayed wills not yet due are not published), and what a persistent session keeps
// stays in the host's store, as at shutdown. The host is closed next; if the configuration brings it back,
// its sessions are restored from the store (RestoreHost).
func (h *Handler) ForgetHost(host *virtualhost.Host) {
	h.mu.Lock()
	r := h.registries[host]
	delete(h.registries, host)
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	for id, s := range r.sessions {
		s.stopTimersLocked()
		h.releaseLocked(r, host, id)
	}
	r.mu.Unlock()
}

// Close stops the handler's timers (session expiry, delayed wills) at broker shutdown: offline sessions
// stay in the store and expire after the next start; delayed wills not yet due are not published.
func (h *Handler) Close() {
	h.mu.Lock()
	regs := make([]*registry, 0, len(h.registries))
	for _, r := range h.registries {
		regs = append(regs, r)
	}
	h.mu.Unlock()
	h.closed.Store(true)
	h.stopOnce.Do(func() { close(h.stop) })
	h.verifies.Wait()
	for _, r := range regs {
		r.mu.Lock()
		for _, s := range r.sessions {
			s.stopTimersLocked()
		}
		r.mu.Unlock()
	}
}
