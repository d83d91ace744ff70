package mqtt

// A configuration reload re-checks connected clients (protocol.Server.Recheck; see the package doc,
// "Reload").

import (
	"errors"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/virtualhost"
)

// revocation is what the recheck hook posts to the reader, which applies it as the connection ends
// (applyRevocation): the client as the new users file has it, and the subscriptions to remove.
type revocation struct {
	principal virtualhost.Principal
	keys      []string // filters as the client wrote them
	dropWill  bool     // the client may no longer be on the host: its will is not published
}

// recheck is the connection's OnRecheck hook. It runs on the reload's goroutine, reads the subscriptions
// under s.mu (the reader changes them under it too), and when the client may not go on, posts the rest
// to the reader and says goodbye: MQTT 5 DISCONNECT 0x87 (not authorized: user removed, connect or a
// subscription revoked) or 0x98 (administrative action: host removed, access changed under a
// subscription), with a reason string naming the filters; 3.x is closed.
func (cl *client) recheck() bool {
	s := cl.sess
	s.mu.Lock()
	p := cl.principal
	held := make([]protocol.Held, 0, len(s.subs))
	for key, e := range s.subs {
		held = append(held, protocol.Held{Name: key, Filter: e.rs.Filter, Gated: e.gate != nil})
	}
	s.mu.Unlock()
	v := protocol.Recheck(cl.host, p, s.id, held)
	if v.Err == nil {
		if v.Adopt {
			np := v.Principal
			cl.adopt.Store(&np)
		}
		return false
	}
	rv := &revocation{principal: v.Principal, dropWill: !errors.Is(v.Err, protocol.ErrRevoked) && !errors.Is(v.Err, protocol.ErrAccessChanged)}
	if rv.dropWill {
		rv.principal = p
	}
	for _, h := range v.Revoked {
		rv.keys = append(rv.keys, h.Name)
	}
	cl.revoked.Store(rv)
	protocol.LogRecheck(cl.c, cl.host, p, s.id, v)
	rc, _ := reasonOf(v.Err)
	disconnect(cl.c, cl.shutdownVersion(), rc, v.Err, cl.lim.DieDelay)
	return true
}

// recheckReason is the DISCONNECT reason code of a reload's re-check outcome; ok is false for other errors.
func recheckReason(err error) (byte, bool) {
	switch {
	case errors.Is(err, protocol.ErrRevoked), errors.Is(err, virtualhost.ErrUserRemoved),
		errors.Is(err, virtualhost.ErrNotAuthorized):
		return packet.ReasonNotAuthorized, true
	case errors.Is(err, protocol.ErrAccessChanged), errors.Is(err, protocol.ErrHostRemoved):
		return packet.ReasonAdministrativeAction, true
	}
	return 0, false
}

// adoptPrincipal takes the principal a reload's re-check posted (the user's groups changed), before the
// reader handles its next packet: every later access check uses it. Under s.mu, where the hook reads it.
func (cl *client) adoptPrincipal() {
	p := cl.adopt.Swap(nil)
	if p == nil {
		return
	}
	cl.sess.mu.Lock()
	cl.principal = *p
	cl.sess.mu.Unlock()
}

// applyRevocation runs on the reader as the connection ends, when a re-check closed it: the client
// takes its new principal, each revoked subscription is removed as an UNSUBSCRIBE would (a persistent
// session's durable subscription is destroyed with what it holds, and its record saved), and a persistent
// session's other subscriptions are re-checked (reauthorize), so what a durable subscription keeps while
// the client is away is what its owner may now read. The will is dropped when the client may no longer
// be on the host, and re-checked otherwise.
func (cl *client) applyRevocation() {
	rv := cl.revoked.Load()
	if rv == nil {
		return
	}
	s := cl.sess
	s.mu.Lock()
	cl.principal = rv.principal
	s.mu.Unlock()
	removed := false
	for _, key := range rv.keys {
		if e := s.subs[key]; e != nil {
			cl.removeEntry(e)
			removed = true
			cl.c.Log().Info("subscription removed: not authorized after reload", zap.String("vhost", cl.host.Name),
				zap.String("client_id", s.id), zap.String("filter", key))
		}
	}
	var err error
	if removed {
		err = cl.saveRecord() // nothing for a clean session
	}
	if !s.clean && !rv.dropWill && err == nil {
		err = cl.reauthorize()
	}
	if err != nil {
		cl.c.Log().Warn("session record not saved", zap.String("client_id", s.id), zap.Error(err))
	}
	if cl.will != nil && (rv.dropWill || !cl.maySend(cl.will.Dest, cl.will.Origin, s.id)) {
		cl.will = nil
	}
}
