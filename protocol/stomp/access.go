package stomp

import (
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Access control at the STOMP edge (see virtualhost.Authorize): a refused CONNECT, SEND or SUBSCRIBE is
// answered with an ERROR frame (message "access refused"), after which the connection closes as for any
// ERROR. A wildcard subscription reaching some forbidden topics is accepted and delivers only from the
// allowed ones; a durable one must be wholly allowed, since its queue would keep the rest. Temporary
// destinations are private to their connection already and are not subject to access rules. Log lines
// name the remote address (the connection's logger carries it), never the passcode.

// ErrAccessRefused is the cause of an ERROR frame answering a request that access control refused.
var ErrAccessRefused = errors.New("stomp: access refused")

// maxLoggedName bounds the login written to logs.
const maxLoggedName = 64

func loggedName(u string) string {
	if len(u) > maxLoggedName {
		return u[:maxLoggedName] + "…"
	}
	return u
}

// clientIDHeader names the CONNECT header that gives the client id used for "%c" in access rules
// (Apollo's); without it the session id stands in.
const clientIDHeader = "client-id"

// login authenticates on host, checks the connect permission and takes a connection slot. On refusal
// it logs and waits the delay the host imposes on repeated failures from this address (bounded; cut
// short if the connection closes).
func (s *session) login(host *virtualhost.Host, login string, passcode []byte, hasLogin bool, clientID string) (virtualhost.Principal, error) {
	var (
		p     virtualhost.Principal
		delay time.Duration
		err   error
	)
	if id := s.c.CertIdentity(); id != "" && !hasLogin {
		// A verified client certificate stands for the login (cert_identity).
		p, delay, err = host.LoginCert(s.c.RemoteAddr(), id, clientID)
		login = id
	} else {
		p, delay, err = host.Login(s.c.RemoteAddr(), login, passcode, hasLogin, clientID)
	}
	if err == nil {
		if host.Acquire() {
			s.slot = host
			return p, nil
		}
		err = errHostFull
	}
	s.h.refusedLogins.Add(1)
	s.c.Log().Warn("stomp login refused", zap.String("vhost", host.Name), zap.String("login", loggedName(login)),
		zap.Duration("delay", delay), zap.Error(err))
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.c.Done():
		}
		t.Stop()
	}
	e := protoErr("access refused", "%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "virtualhost: "), "stomp: "))
	e.cause = err
	return virtualhost.Principal{}, e
}

var errHostFull = errors.New("stomp: the virtual host has reached its max_connections")

// maySend checks a SEND destination; the error is the ERROR frame's.
func (s *session) maySend(name string, d router.Destination) error {
	kind, checked := virtualhost.KindName(d.Kind)
	if !checked || s.host.Authorize(s.principal, "send", kind, d.Path, s.clientID) {
		return nil
	}
	s.h.refusedSends.Add(1)
	s.c.Log().Info("send refused: not authorized", zap.String("vhost", s.host.Name),
		zap.String("user", loggedName(s.principal.User)), zap.String("destination", name))
	return &frameError{msg: "access refused", detail: "not authorized to send to " + name, cause: ErrAccessRefused}
}

// maySubscribe checks a SUBSCRIBE filter: an error when nothing it reaches may be received, a gate when
// only some of it may (nil when all may). A durable subscription must be wholly allowed.
func (s *session) maySubscribe(name string, f router.Filter, durable bool) (*virtualhost.Gate, error) {
	kind, checked := virtualhost.KindName(f.Kind)
	if !checked {
		return nil, nil
	}
	action := "receive"
	if f.Kind != router.Topic {
		action = "consume"
	}
	some, all := s.host.AuthorizeFilter(s.principal, action, kind, f.Segs, s.clientID)
	if all {
		return nil, nil
	}
	if some && !durable {
		return s.host.Gate(s.principal, action, kind, s.clientID), nil
	}
	s.h.refusedSubscribes.Add(1)
	s.c.Log().Info("subscribe refused: not authorized", zap.String("vhost", s.host.Name),
		zap.String("user", loggedName(s.principal.User)), zap.String("destination", name))
	return nil, &frameError{msg: "access refused", detail: "not authorized to " + action + " from " + name, cause: ErrAccessRefused}
}

// Refusals returns how many logins, SENDs and SUBSCRIBEs access control refused.
func (h *Handler) Refusals() (logins, sends, subscribes uint64) {
	return h.refusedLogins.Load(), h.refusedSends.Load(), h.refusedSubscribes.Load()
}
