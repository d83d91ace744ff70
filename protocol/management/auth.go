package management

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// errUnauthenticated is a missing or wrong login (401).
var errUnauthenticated = errors.New("authentication required")

// brokerHost returns the host a broker-wide request authenticates against: the one its basic auth user
// name names ("user@host"), else the connector's virtual_host, else the first. The user name without the
// host part is returned too.
func (m *Manager) brokerHost(r *http.Request) (*virtualhost.Host, string) {
	user, _, _ := r.BasicAuth()
	if i := strings.LastIndexByte(user, '@'); i >= 0 {
		if h := m.o.Hosts.Lookup(user[i+1:]); h != nil {
			return h, user[:i]
		}
	}
	if c := protocol.ConnectorOf(r.Context()); c != nil && c.VirtualHost != "" {
		if h := m.o.Hosts.Lookup(c.VirtualHost); h != nil {
			return h, user
		}
	}
	return m.o.Hosts.Default(), user
}

// login authenticates r against host h; user is the basic auth user name (without any "@host").
func (m *Manager) login(r *http.Request, h *virtualhost.Host, user string) (virtualhost.Principal, error) {
	_, password, hasAuth := r.BasicAuth()
	if !hasAuth {
		if p, err := h.Authenticate("", nil, false); err == nil {
			return p, nil
		}
		return virtualhost.Principal{}, errUnauthenticated
	}
	// Verify answers from the host's credential cache when it holds these credentials (a browser or a
	// scraper sends them with every request), else by bcrypt.
	p, d, err := h.Verify(remoteAddr(r), user, []byte(password), true)
	if err != nil {
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
		if errors.Is(err, virtualhost.ErrLoginBusy) {
			return virtualhost.Principal{}, err // not a wrong password: 503, as MQTT and STOMP say unavailable
		}
		return virtualhost.Principal{}, errUnauthenticated
	}
	return p, nil
}

// allow authenticates r against h and checks that it may do action on obj id; on failure it writes
// the 401 or 403 and returns false.
func (m *Manager) allow(w http.ResponseWriter, r *http.Request, h *virtualhost.Host, user string,
	action virtualhost.Action, obj virtualhost.Object, id []string) (virtualhost.Principal, bool) {
	p, err := m.login(r, h, user)
	if err != nil {
		m.unauthorized(w, r, h, err)
		return p, false
	}
	if !h.Authorize(p, action, obj, id, "") {
		m.forbidden(w, r, h, "%s on %s %s not allowed for %s", action, obj, strings.Join(id, "."), describe(p))
		return p, false
	}
	return p, true
}

// unauthorized writes a 401 for a request whose login (err) failed on host h (nil: none) and logs it; a
// browser's native login prompt is asked for only when the request is not the console's own fetch. A
// login refused because the host's login bounds are full (virtualhost.ErrLoginBusy) is a 503 with
// Retry-After instead: the credentials were not checked, so the client should not be asked for others.
func (m *Manager) unauthorized(w http.ResponseWriter, r *http.Request, h *virtualhost.Host, err error) {
	if errors.Is(err, virtualhost.ErrLoginBusy) {
		w.Header().Set("Retry-After", "1")
		m.logRefused(r, h, http.StatusServiceUnavailable, err.Error())
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	if r.Header.Get("X-Requested-With") == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="lyre", charset="UTF-8"`)
	}
	m.logRefused(r, h, http.StatusUnauthorized, errUnauthenticated.Error())
	writeError(w, http.StatusUnauthorized, "%v", errUnauthenticated)
}

// forbidden writes a 403 for a request to host h and logs it.
func (m *Manager) forbidden(w http.ResponseWriter, r *http.Request, h *virtualhost.Host, format string, args ...any) {
	reason := fmt.Sprintf(format, args...)
	m.logRefused(r, h, http.StatusForbidden, reason)
	writeError(w, http.StatusForbidden, "%s", reason)
}

// logRefused logs a request refused by authentication or access rules, as the MQTT and STOMP front-ends
// log theirs: with the remote address and the user name (never the password). h is the host the login
// was tried on (nil: none).
func (m *Manager) logRefused(r *http.Request, h *virtualhost.Host, status int, reason string) {
	user, _, _ := r.BasicAuth()
	vhost := ""
	if h != nil {
		vhost = h.Name
	}
	m.log.Info("management request refused", zap.Int("status", status), zap.String("method", r.Method),
		zap.String("path", r.URL.Path), zap.String("vhost", vhost), zap.String("user", protocol.LoggedName(user)),
		zap.String("remote", r.RemoteAddr), zap.String("reason", reason))
}

func describe(p virtualhost.Principal) string {
	if p.User == "" {
		return "anonymous"
	}
	return "user " + p.User
}

func remoteAddr(r *http.Request) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	if err != nil {
		return nil
	}
	return a
}
