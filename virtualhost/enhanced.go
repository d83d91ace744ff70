package virtualhost

import (
	"fmt"
	"net"
	"time"
)

// ErrAuthEnded answers a Step on an exchange that has already reported done. It wraps ErrBadCredentials,
// so a front-end that goes on with it refuses the login.
var ErrAuthEnded = fmt.Errorf("%w: the authentication exchange has ended", ErrBadCredentials)

// AuthExchange is one enhanced-authentication exchange in progress (MQTT 5 AUTH).
//
// An exchange may also have a method Claimed() string returning the user name the client gave, proven or
// not; ClaimedUser uses it to name the user in the log line of a refused login.
type AuthExchange interface {
	// Step takes the client's authentication data and returns the data to answer with. done reports the
	// end of the exchange; err is then nil when the client proved who it is (ErrBadCredentials otherwise).
	// A Step after done is an error.
	Step(in []byte) (out []byte, done bool, err error)
	// User is the user the exchange authenticated, once Step reported done without error.
	User() string
}

// Authenticator is one method. Hosts hold a registry of them by method name.
type Authenticator interface {
	Method() string
	Start(h *Host) AuthExchange
}

// WithAuthenticator offers method a on the host, in place of a built-in one of the same name.
func WithAuthenticator(a Authenticator) Option {
	return func(o *options) { o.auth = append(o.auth, a) }
}

// authenticators builds a host's registry: SCRAM-SHA-256 when some user has SCRAM credentials, then
// those given with WithAuthenticator.
func authenticators(users map[string]user, extra []Authenticator) map[string]Authenticator {
	m := make(map[string]Authenticator, 1+len(extra))
	for _, u := range users {
		if u.scram != nil {
			m[MethodSCRAMSHA256] = SCRAMSHA256{}
			break
		}
	}
	for _, a := range extra {
		m[a.Method()] = a
	}
	return m
}

// StartAuth begins an exchange of the named method; ok is false for a method the host does not offer
// (MQTT 5 answers 0x8C Bad authentication method). Method names are compared exactly, as SASL names are.
func (h *Host) StartAuth(method string) (x AuthExchange, ok bool) {
	a, ok := h.cur.Load().auth[method]
	if !ok {
		return nil, false
	}
	return a.Start(h), true
}

// LoginAuth finishes a login whose exchange ended (err is Step's error): like Login, it checks the
// connect permission for clientID and returns the throttle delay owed by an address that keeps failing.
// The principal is x.User(), authenticated, with the groups of that name's users file entry. An exchange
// that names no user (it has not ended well) is refused with ErrBadCredentials. remote may be nil. Its
// outcome waits for the address's turn, as a Login does (loginlimit.go), so an address paying a delay
// does not learn sooner by another method whether it guessed right.
func (h *Host) LoginAuth(remote net.Addr, x AuthExchange, err error, clientID string) (Principal, time.Duration, error) {
	lt, terr := h.loginTurn(remote, false)
	if terr != nil {
		return Principal{}, 0, terr
	}
	var p Principal
	if err == nil {
		name := ""
		if x != nil {
			name = x.User()
		}
		if name == "" || len(name) > MaxUserLength {
			err = ErrBadCredentials
		} else {
			u, listed := h.cur.Load().users[name]
			p = Principal{User: name, Groups: u.groups, Authenticated: true, listed: listed}
		}
	}
	p, delay, err := h.admit(remote, p, err, clientID)
	lt.done(delay)
	return p, delay, err
}

// ClaimedUser returns the user name a client gave in exchange x, for log lines: x.User() once proven,
// else what the exchange's Claimed method reports, if it has one.
func ClaimedUser(x AuthExchange) string {
	if x == nil {
		return ""
	}
	if u := x.User(); u != "" {
		return u
	}
	if c, ok := x.(interface{ Claimed() string }); ok {
		return c.Claimed()
	}
	return ""
}
