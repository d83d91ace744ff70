package protocol

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Access control at the edge, one implementation for both front-ends (see virtualhost.Authorize). Each
// front-end turns the errors into its protocol's answer: a CONNACK code, a SUBACK failure, an ERROR frame.
// Log lines name the remote address (the connection's logger carries it), never a password.

var (
	// ErrDenied is the cause of a refused SEND/PUBLISH or SUBSCRIBE.
	ErrDenied = errors.New("protocol: not authorized")
	// ErrHostFull refuses a login when the virtual host's max_connections are in use.
	ErrHostFull = errors.New("protocol: the virtual host has reached its max_connections")
	// ErrUnknownHost is the logged reason of a login to a virtual host that does not exist; the client is
	// answered as for bad credentials (RefuseUnknownHost).
	ErrUnknownHost = errors.New("protocol: no virtual host is named")
)

// maxLoggedName bounds a user name or client id written to logs: an over-long one is a refusal reason,
// not data.
const maxLoggedName = 64

// LoggedName shortens s for a log line.
func LoggedName(s string) string {
	if len(s) > maxLoggedName {
		return s[:maxLoggedName] + "…"
	}
	return s
}

// Refusals counts what access control refused on one front-end.
type Refusals struct {
	Logins, Sends, Subscribes atomic.Uint64
}

// Login authenticates a client of connection c on host, checks the connect permission and takes one of
// the host's connection slots (the caller releases it with host.Release). A verified TLS client
// certificate stands for the user name when the client gives none (cert_identity), on the hosts the
// connector's cert_identity_hosts lists; elsewhere the client is one without credentials. On refusal it counts
// and logs, waits the delay the host imposes on repeated failures from this address (cut short if the
// connection closes) and returns virtualhost.ErrBadCredentials, virtualhost.ErrNotAuthorized,
// ErrHostFull, or ErrHostRemoved for a host a reload is removing.
func Login(c *Conn, host *virtualhost.Host, user string, password []byte, hasUser bool, clientID string, r *Refusals) (virtualhost.Principal, error) {
	var (
		p     virtualhost.Principal
		delay time.Duration
		err   error
	)
	if err := CheckRoom(c, host, user, clientID, r); err != nil {
		return p, err
	}
	id := c.CertIdentity()
	switch {
	case id != "" && !hasUser && c.Connector().CertIdentityValidOn(host.Name):
		p, delay, err = host.LoginCert(c.RemoteAddr(), id, clientID)
		user = id
	default:
		p, delay, err = host.Login(c.RemoteAddr(), user, password, hasUser, clientID)
		if err != nil && id != "" && !hasUser {
			// The certificate proves a name to the hosts cert_identity_hosts lists, not to this one.
			err = fmt.Errorf("%w (certificate identity %q not valid on virtual host %s: see cert_identity_hosts)", err, LoggedName(id), host.Name)
		}
	}
	return admit(c, host, p, delay, err, user, clientID, r)
}

// RefuseUnknownHost refuses a client that named a virtual host that does not exist (a STOMP CONNECT's
// host header) as a wrong password is refused on def, the default host: the same bcrypt work and
// throttling (virtualhost.Host.Decoy), counted and logged with the name it asked for, then the delay. The
// front-end answers it as it answers bad credentials, so host names cannot be enumerated before
// authentication. It returns the error a front-end answers: virtualhost.ErrBadCredentials, or
// virtualhost.ErrLoginBusy as Login would; neither names the host (the log line does, with ErrUnknownHost).
func RefuseUnknownHost(c *Conn, def *virtualhost.Host, name, user string, password []byte, hasUser bool, r *Refusals) error {
	delay, busy := def.Decoy(c.RemoteAddr(), user, password, hasUser)
	r.Logins.Add(1)
	answer := virtualhost.ErrBadCredentials
	if busy != nil {
		answer = busy // what a known host would answer, and nothing of the name
	}
	c.Log().Warn("login refused", zap.String("vhost", LoggedName(name)), zap.String("user", LoggedName(user)),
		zap.Duration("delay", delay), zap.Error(fmt.Errorf("%w: %w %q", answer, ErrUnknownHost, LoggedName(name))))
	wait(c, delay)
	return answer
}

// LoginAuth is Login for a client whose enhanced-authentication exchange x has ended with err (Step's
// error): host.LoginAuth decides, then the same connection slot, refusal count, log line and delay. A
// re-authentication must not come here, since it takes no second slot (see virtualhost's package doc).
func LoginAuth(c *Conn, host *virtualhost.Host, x virtualhost.AuthExchange, err error, clientID string, r *Refusals) (virtualhost.Principal, error) {
	p, delay, err := host.LoginAuth(c.RemoteAddr(), x, err, clientID)
	return admit(c, host, p, delay, err, virtualhost.ClaimedUser(x), clientID, r)
}

// admit finishes a login the host decided: on success it takes a connection slot; on refusal it counts,
// logs and waits the delay before returning the error.
func admit(c *Conn, host *virtualhost.Host, p virtualhost.Principal, delay time.Duration, err error, user, clientID string, r *Refusals) (virtualhost.Principal, error) {
	if err == nil {
		if host.Acquire() {
			return p, nil
		}
		err = noRoom(host)
	}
	r.Logins.Add(1)
	c.Log().Warn("login refused", zap.String("vhost", host.Name), zap.String("user", LoggedName(user)),
		zap.String("client_id", LoggedName(clientID)), zap.Duration("delay", delay), zap.Error(err))
	wait(c, delay)
	return virtualhost.Principal{}, err
}

// CheckRoom refuses (counted and logged as a login) a client of a host without a free connection slot,
// before its credentials are checked: a refusal that came only after a correct password would tell it was
// correct. Login asks it; a front-end running an authentication exchange asks it before the exchange.
func CheckRoom(c *Conn, host *virtualhost.Host, user, clientID string, r *Refusals) error {
	if host.HasRoom() {
		return nil
	}
	_, err := admit(c, host, virtualhost.Principal{}, 0, noRoom(host), user, clientID, r)
	return err
}

// noRoom is the refusal of a host that has no connection slot for a client: full, or being removed.
func noRoom(host *virtualhost.Host) error {
	if host.Retired() {
		return fmt.Errorf("%w: %s", ErrHostRemoved, host.Name)
	}
	return ErrHostFull
}

// wait sleeps the delay a refused login earned (cut short if the connection closes).
func wait(c *Conn, delay time.Duration) {
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.Done():
		}
		t.Stop()
	}
}

// Owner is the identity that owns what a principal creates that outlives its connection (a durable
// subscription, an MQTT session): its user name when proven, else "" (nobody in particular).
func Owner(p virtualhost.Principal) string {
	if !p.Authenticated {
		return ""
	}
	return p.User
}

// Access is one authenticated client's view of its host's access rules.
type Access struct {
	Conn      *Conn
	Host      *virtualhost.Host
	Principal virtualhost.Principal
	ClientID  string // fills "%c" in rule ids
	Refusals  *Refusals
}

// MaySend reports whether the client may publish to d (named name on the wire); a refusal is counted
// and logged. A temporary destination is judged by its name without its owner's session
// (virtualhost.RulePath).
func (a *Access) MaySend(d router.Destination, name string) bool {
	obj, checked := virtualhost.ObjectOf(d.Kind)
	if !checked || a.Host.Authorize(a.Principal, virtualhost.ActionSend, obj, virtualhost.RulePath(d.Kind, d.Path), a.ClientID) {
		return true
	}
	a.Refusals.Sends.Add(1)
	a.Conn.Log().Info("send refused: not authorized", zap.String("vhost", a.Host.Name),
		zap.String("user", LoggedName(a.Principal.User)), zap.String("client_id", LoggedName(a.ClientID)),
		zap.String("destination", name))
	return false
}

// MaySubscribe checks a subscription filter for reading (virtualhost.ReadAction): an error wrapping
// ErrDenied when nothing it reaches may be read, a gate when only some of it may, nil when all may.
// whole demands all of it (a durable subscription, whose queue would keep what the gate drops).
func (a *Access) MaySubscribe(f router.Filter, name string, whole bool) (*virtualhost.Gate, error) {
	obj, checked := virtualhost.ObjectOf(f.Kind)
	if !checked {
		return nil, nil
	}
	action := virtualhost.ReadAction(f.Kind)
	some, all := a.Host.AuthorizeFilter(a.Principal, action, obj, virtualhost.RulePath(f.Kind, f.Segs), a.ClientID)
	if all {
		return nil, nil
	}
	if some && !whole {
		return a.Host.Gate(a.Principal, action, obj, a.ClientID), nil
	}
	a.Refusals.Subscribes.Add(1)
	a.Conn.Log().Info("subscribe refused: not authorized", zap.String("vhost", a.Host.Name),
		zap.String("user", LoggedName(a.Principal.User)), zap.String("client_id", LoggedName(a.ClientID)),
		zap.String("filter", name))
	return nil, fmt.Errorf("%w to %s %s", ErrDenied, action, name)
}

// May reports whether the client may perform action on the durable subscription (or other object) at
// path; a refusal is counted as a subscription refusal and logged.
func (a *Access) May(action virtualhost.Action, obj virtualhost.Object, path []string, name string) error {
	if a.Host.Authorize(a.Principal, action, obj, path, a.ClientID) {
		return nil
	}
	a.Refusals.Subscribes.Add(1)
	a.Conn.Log().Info("refused: not authorized", zap.String("vhost", a.Host.Name), zap.String("action", string(action)),
		zap.String("user", LoggedName(a.Principal.User)), zap.String("client_id", LoggedName(a.ClientID)),
		zap.String("object", name))
	return fmt.Errorf("%w to %s %s", ErrDenied, action, name)
}
