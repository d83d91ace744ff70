package stomp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// ErrAccessRefused is the cause of an ERROR frame answering a request that access control refused.
var ErrAccessRefused = errors.New("stomp: access refused")

// clientIDHeader names the CONNECT header that gives the client id used for "%c" in access rules
// (Apollo's); without it the session id stands in.
const clientIDHeader = "client-id"

// loginRefused is the body of the ERROR frame answering every refused login that depends on who the
// client says it is: bad credentials, no credentials on a host that wants them, a user who may not
// connect, a virtual host that does not exist. One answer for all, so that neither a correct password nor
// a host name can be told from the answer; the log says which it was.
const loginRefused = "bad login or passcode, or not allowed to connect"

// login authenticates on host (protocol.Login); a refusal is the ERROR frame's error.
func (s *session) login(host *virtualhost.Host, login string, passcode []byte, hasLogin bool, clientID string) (virtualhost.Principal, error) {
	p, err := protocol.Login(s.c, host, login, passcode, hasLogin, clientID, &s.h.refusals)
	if err == nil {
		s.slot = host
		return p, nil
	}
	return virtualhost.Principal{}, loginError(err)
}

// loginError is the ERROR frame of a refused login: loginRefused for a refusal of the client's identity,
// the reason itself for one of the server's (a full host, a host being removed).
func loginError(err error) error {
	detail := loginRefused
	if !errors.Is(err, virtualhost.ErrBadCredentials) && !errors.Is(err, virtualhost.ErrNotAuthorized) {
		detail = trimPrefixes(err.Error())
	}
	e := protoErr("access refused", "%s", detail)
	e.cause = err
	return e
}

// access is the session's view of its host's access rules.
func (s *session) access() protocol.Access {
	return protocol.Access{Conn: s.c, Host: s.host, Principal: s.principal, ClientID: s.clientID, Refusals: &s.h.refusals}
}

// refused is the ERROR frame answering a request access control refused.
func refused(err error) error {
	return &frameError{msg: "access refused", detail: strings.TrimPrefix(err.Error(), "protocol: "), cause: ErrAccessRefused}
}

// maySend checks a SEND destination; the error is the ERROR frame's.
func (s *session) maySend(name string, d router.Destination) error {
	if a := s.access(); !a.MaySend(d, name) {
		return refused(fmt.Errorf("%w to send to %s", protocol.ErrDenied, name))
	}
	return nil
}

// maySubscribe checks a SUBSCRIBE filter: an error when nothing it reaches may be read, a gate when
// only some of it may (nil when all may). A durable subscription must be wholly allowed.
func (s *session) maySubscribe(name string, f router.Filter, durable bool) (*virtualhost.Gate, error) {
	a := s.access()
	g, err := a.MaySubscribe(f, name, durable)
	if err != nil {
		return nil, refused(err)
	}
	return g, nil
}

// Refusals returns how many logins, SENDs and SUBSCRIBEs access control refused.
func (h *Handler) Refusals() (logins, sends, subscribes uint64) {
	return h.refusals.Logins.Load(), h.refusals.Sends.Load(), h.refusals.Subscribes.Load()
}
