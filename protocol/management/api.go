package management

import (
	"net/http"
	"strings"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// apiRoutes registers /api/v1/.
func (m *Manager) apiRoutes() {
	for pattern, h := range m.apiHandlers() {
		m.mux.HandleFunc(pattern, h)
	}
}

// apiHandlers maps every /api/v1/ route (a net/http pattern) to its handler; openapi.json documents
// exactly these (TestOpenAPICoversRoutes).
func (m *Manager) apiHandlers() map[string]http.HandlerFunc {
	const v = "/api/v1"
	const host = v + "/vhosts/{vhost}"
	return map[string]http.HandlerFunc{
		"GET " + v + "/openapi.json": m.openAPI,
		"GET " + v + "/broker":       m.getBroker,
		"POST " + v + "/reload":      m.reload,
		"GET " + v + "/vhosts":       m.listHosts,
		"GET " + v + "/connections":  m.listConnections,
		"GET " + v + "/cluster":      m.getCluster,

		"GET " + host:                                m.getHost,
		"GET " + host + "/connections":               m.listHostConnections,
		"DELETE " + host + "/connections/{id}":       m.deleteConnection,
		"GET " + host + "/sessions":                  m.listSessions,
		"DELETE " + host + "/sessions/{client_id}":   m.deleteSession,
		"GET " + host + "/queues":                    m.listQueues,
		"GET " + host + "/queues/{name}":             m.getQueue,
		"DELETE " + host + "/queues/{name}":          m.deleteQueue,
		"DELETE " + host + "/queues/{name}/messages": m.purgeQueue,
		"POST " + host + "/queues/{name}/move":       m.moveMessages,
		"GET " + host + "/topics":                    m.listTopics,
		"GET " + host + "/dsubs":                     m.listDsubs,
		"GET " + host + "/retained":                  m.listRetained,
		"DELETE " + host + "/retained/{name}":        m.deleteRetained,
		"POST " + host + "/topics/{name}":            m.publish(router.Topic),
		"POST " + host + "/queues/{name}":            m.publish(router.Queue),
	}
}

// names is the grammar of destination names in the API, path values and bodies alike: the access rule
// ids' (the STOMP default grammar without prefixes), so "sensors.k1.temp" is MQTT's sensors/k1/temp.
var names = virtualhost.PatternGrammar()

// parseName parses the request's {name} as a destination of kind k; the error is for a 400.
func parseName(r *http.Request, k router.Kind) (router.Destination, error) {
	d, err := names.ParseName(r.PathValue("name"))
	d.Kind = k
	return d, err
}

// renderPath is the API's name of a canonical path.
func renderPath(path []string) string { return names.Render(router.Destination{Path: path}) }

// hostOf returns the virtual host the request's {vhost} names (by name or host name). A name no host
// has is a 404 only for a user who may monitor the broker (and could list the hosts anyway); anyone else
// gets the 401 of wrong credentials, after the same bcrypt work and throttling (the login is tried on the
// broker's host): a 404 before any login would tell which host names exist.
func (m *Manager) hostOf(w http.ResponseWriter, r *http.Request) *virtualhost.Host {
	name := r.PathValue("vhost")
	if h := m.o.Hosts.Lookup(name); h != nil {
		return h
	}
	bh, user := m.brokerHost(r)
	if bh != nil {
		if p, err := m.login(r, bh, user); err == nil && bh.Authorize(p, virtualhost.ActionMonitor, virtualhost.ObjectBroker, []string{"broker"}, "") {
			writeError(w, http.StatusNotFound, "no virtual host %q", name)
			return nil
		}
	}
	m.unauthorized(w, r, bh, nil) // unknown or not for this user: alike, whatever the login said
	return nil
}

// hostUser is the basic auth user name of a request to host h, without an "@host" suffix naming h.
func (m *Manager) hostUser(r *http.Request, h *virtualhost.Host) string {
	user, _, _ := r.BasicAuth()
	if i := strings.LastIndexByte(user, '@'); i >= 0 && m.o.Hosts.Lookup(user[i+1:]) == h {
		return user[:i]
	}
	return user
}

// onHost returns the host a request under /api/v1/vhosts/{vhost}/ names once its user may do action
// (monitor or admin) on it; else it has answered 404, 401 or 403 and returns nil.
func (m *Manager) onHost(w http.ResponseWriter, r *http.Request, action virtualhost.Action) *virtualhost.Host {
	h := m.hostOf(w, r)
	if h == nil {
		return nil
	}
	if _, ok := m.allow(w, r, h, m.hostUser(r, h), action, virtualhost.ObjectVirtualHost, []string{h.Name}); !ok {
		return nil
	}
	return h
}

// onBroker reports whether a broker-wide request's user may do action on kind broker; else it has
// answered 401 or 403.
func (m *Manager) onBroker(w http.ResponseWriter, r *http.Request, action virtualhost.Action) bool {
	h, user := m.brokerHost(r)
	if h == nil {
		writeError(w, http.StatusServiceUnavailable, "no virtual host")
		return false
	}
	_, ok := m.allow(w, r, h, user, action, virtualhost.ObjectBroker, []string{"broker"})
	return ok
}
