package mqtt

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

var (
	errSessionOwner = errors.New("mqtt: the client id's session belongs to another user")
	// errHostMessageLength closes a connection that published more than its host's max_message_length.
	errHostMessageLength = errors.New("mqtt: message larger than the virtual host allows")
)

// authenticate logs the client in on host: with its user name and password, or, for an MQTT 5 CONNECT
// naming an authentication method, by an enhanced authentication exchange (auth.go). It returns the
// authentication data for CONNACK and, on refusal, the CONNACK code.
func (cl *client) authenticate(host *virtualhost.Host, user string, cp *packet.ConnectPacket, clientID string) (virtualhost.Principal, []byte, byte, error) {
	if cl.v5 != nil && cl.v5.authMethod != "" {
		return cl.enhancedAuth(host, cp, clientID)
	}
	p, code, err := cl.login(host, user, cp.Password, cp.UsernameFlag, clientID)
	return p, nil, code, err
}

// login authenticates on host (protocol.Login) and returns the CONNACK code for a refusal.
func (cl *client) login(host *virtualhost.Host, user string, password []byte, hasUser bool, clientID string) (virtualhost.Principal, byte, error) {
	p, err := protocol.Login(cl.c, host, user, password, hasUser, clientID, &cl.h.refusals)
	return p, loginCode(err), err
}

// loginCode is the CONNACK code for a login's outcome.
func loginCode(err error) byte {
	switch {
	case err == nil:
		return connAccepted
	case errors.Is(err, virtualhost.ErrBadCredentials):
		return connBadCredentials
	case errors.Is(err, protocol.ErrHostFull), errors.Is(err, protocol.ErrHostRemoved), errors.Is(err, virtualhost.ErrLoginBusy):
		return connServerUnavailable
	}
	return connNotAuthorized
}

// errLoginRefused is what a client that named a user hears of any refusal that depends on who it is.
var errLoginRefused = fmt.Errorf("%w: %w", errRefused, virtualhost.ErrBadCredentials)

// refuseLogin refuses CONNECT cp with code for reason. A client that claimed an identity (a user name, a
// password, an authentication method) and is refused for who it is (bad credentials, no connect
// permission) gets the answer of a wrong password, 0x04 (MQTT 5: 0x86) with the same reason string: a
// user who may not connect has no other way to learn that a password is right, and a different answer
// would tell. The log line written where the refusal was decided says which it was.
func (cl *client) refuseLogin(cp *packet.ConnectPacket, code byte, reason error) error {
	claimed := cp.UsernameFlag || cp.PasswordFlag || (cl.v5 != nil && cl.v5.authMethod != "")
	if claimed && (code == connNotAuthorized || code == connBadCredentials) {
		return cl.refuseAs(connBadCredentials, errLoginRefused, reason)
	}
	return cl.refuse(code, reason)
}

// access is the client's view of its host's access rules, built when needed so an idle client keeps no
// copy of it.
func (cl *client) access(clientID string) protocol.Access {
	return protocol.Access{Conn: cl.c, Host: cl.host, Principal: cl.principal, ClientID: clientID, Refusals: &cl.h.refusals}
}

// checkLength enforces the host's max_message_length on a payload (what: "publish" or "will"); over it
// the connection is closed, as for the connector's own limit (MQTT 3.1.1 has no way to refuse one
// PUBLISH).
func (cl *client) checkLength(n int, what string) error {
	if max := cl.host.MaxMessageLength(); max > 0 && int64(n) > max {
		cl.c.Log().Info(what+" refused: larger than the virtual host's max_message_length", zap.String("vhost", cl.host.Name),
			zap.Int("bytes", n), zap.Int64("max", max))
		return fmt.Errorf("%w: %d bytes, virtual host %q allows %d", errHostMessageLength, n, cl.host.Name, max)
	}
	return nil
}

// maySend reports whether the client may publish to d; a refusal is counted and logged.
func (cl *client) maySend(d router.Destination, topic, clientID string) bool {
	a := cl.access(clientID)
	return a.MaySend(d, topic)
}

// Refusals returns how many logins, publishes and subscriptions were refused by access control.
func (h *Handler) Refusals() (logins, publishes, subscriptions uint64) {
	return h.refusals.Logins.Load(), h.refusals.Sends.Load(), h.refusals.Subscribes.Load()
}

// mayTakeSession refuses a client id whose session (connected or kept) another authenticated user opened,
// so nobody takes over someone else's subscriptions and queued messages, or kicks them off, by reusing
// their client id. Sessions of unknown owner (opened anonymously, or restored from a record written
// before owners were stored) may be taken; a restored session keeps its owner.
func (cl *client) mayTakeSession(id string) bool {
	reg := cl.h.registry(cl.host)
	reg.mu.Lock()
	s := reg.sessions[id]
	ok := s == nil || s.owner == "" || s.owner == protocol.Owner(cl.principal)
	reg.mu.Unlock()
	if !ok {
		cl.h.refusals.Logins.Add(1)
		cl.c.Log().Warn("mqtt login refused: client id in use by another user's session", zap.String("vhost", cl.host.Name),
			zap.String("user", protocol.LoggedName(cl.principal.User)), zap.String("client_id", protocol.LoggedName(id)))
	}
	return ok
}

// claimSession records the session's owner (in its store record too, when it changed: a session of
// unknown owner claimed by a user) and, for a session that existed before this connection, re-checks
// its subscriptions against this client's rights (see reauthorize).
func (cl *client) claimSession(present bool) error {
	reg := cl.h.registry(cl.host)
	reg.mu.Lock()
	changed := false
	if o := protocol.Owner(cl.principal); o != "" && cl.sess.owner != o {
		cl.sess.owner, changed = o, true
	}
	reg.mu.Unlock()
	if changed && present {
		if err := cl.saveRecord(); err != nil {
			return err
		}
	}
	if present {
		return cl.reauthorize()
	}
	return nil
}

// reauthorize re-checks the subscriptions of a resumed session against the client now attached: one
// kept across a restart or a rule change must not deliver what this client may not receive. A
// subscription reaching nothing allowed is removed (a durable one destroyed, a queue's consumer never
// attached: its messages stay in the queue for consumers that may take them); a durable one gets the
// gate the client's rights call for (messages it kept before are delivered); a direct one (shared) whose
// gate changed is re-made (the new one first, so nothing published meanwhile is missed; a message may then
// come twice, as QoS 1 allows); a shared one restored after a restart, in no router yet, is subscribed.
// Queued topic messages the client may not receive are dropped.
func (cl *client) reauthorize() error {
	s := cl.sess
	removed := false
	for _, e := range s.subs {
		if e.rs == nil {
			continue
		}
		obj, action := virtualhost.ObjectTopic, virtualhost.ActionReceive
		if e.queue {
			obj, action = virtualhost.ObjectQueue, virtualhost.ActionConsume
		}
		some, all := cl.host.AuthorizeFilter(cl.principal, action, obj, e.rs.Filter.Segs, s.id)
		if !some || (e.queue && !all) {
			cl.removeEntry(e)
			removed = true
			cl.c.Log().Info("resumed subscription removed: not authorized", zap.String("vhost", cl.host.Name),
				zap.String("user", protocol.LoggedName(cl.principal.User)), zap.String("client_id", s.id), zap.String("filter", e.key))
			continue
		}
		if e.queue {
			continue // a literal queue: allowed whole
		}
		var gate *virtualhost.Gate
		if !all {
			gate = cl.host.Gate(cl.principal, virtualhost.ActionReceive, virtualhost.ObjectTopic, s.id)
		}
		if e.dsub != nil {
			if err := cl.createDurable(e, gate); err != nil {
				cl.c.Log().Warn("durable subscription not re-authorized", zap.String("client_id", s.id), zap.String("filter", e.key), zap.Error(err))
				continue
			}
			s.mu.Lock()
			e.gate = gate
			s.mu.Unlock()
			continue
		}
		if _, gated := e.rs.Sink.(virtualhost.GatedSink); all && !gated && !e.unrouted {
			continue
		}
		rs := &router.Subscription{Filter: e.rs.Filter, Sink: virtualhost.SinkFor(s, gate), QoS: e.rs.QoS, ID: e.rs.ID, Share: e.rs.Share, Opaque: e}
		if err := cl.rt.Subscribe(rs); err != nil {
			continue
		}
		old := e.rs
		s.mu.Lock()
		e.rs, e.gate = rs, gate
		s.mu.Unlock()
		if !e.unrouted {
			cl.rt.Unsubscribe(old)
		}
		e.unrouted = false
	}
	// Queued topic messages the client may not receive are dropped.
	s.mu.Lock()
	s.queue.filter(func(it *outItem) bool {
		return it.msg == nil || it.seq != 0 || it.msg.Dest.Kind != router.Topic ||
			cl.host.Authorize(cl.principal, virtualhost.ActionReceive, virtualhost.ObjectTopic, it.msg.Dest.Path, s.id)
	})
	s.mu.Unlock()
	if removed {
		return cl.saveRecord()
	}
	return nil
}
