package management

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// connInfo is one connection in the connection listings.
type connInfo struct {
	ID        uint64    `json:"id"`
	Connector string    `json:"connector"`
	Protocol  string    `json:"protocol"`
	Transport string    `json:"transport"`
	Remote    string    `json:"remote"`
	Since     time.Time `json:"since"`
	// LoggedIn is false while the client has not completed its CONNECT: the fields below are then empty.
	LoggedIn    bool   `json:"logged_in"`
	VirtualHost string `json:"vhost"`
	User        string `json:"user"`
	ClientID    string `json:"client_id"`
	Version     string `json:"version"`
	Persistent  bool   `json:"persistent"`
	traffic
	Subscriptions []string `json:"subscriptions"`
}

func describeConn(c protocol.ConnInfo) connInfo {
	s := c.Session
	subs := s.Subscriptions
	if subs == nil {
		subs = []string{}
	}
	return connInfo{ID: c.ID, Connector: c.Connector, Protocol: c.Protocol, Transport: c.Transport, Remote: c.Remote,
		Since: c.Since.UTC(), LoggedIn: c.LoggedIn, VirtualHost: s.VirtualHost, User: s.User, ClientID: s.ClientID,
		Version: s.Version, Persistent: s.Persistent, traffic: trafficOf(c.Traffic), Subscriptions: subs}
}

// connections lists the live connections, by ID; only those logged in to h when h is set.
func (m *Manager) connections(h *virtualhost.Host) []connInfo {
	out := []connInfo{}
	if m.o.Server == nil {
		return out
	}
	for _, c := range m.o.Server.Connections() {
		if h == nil || c.LoggedIn && sameHost(c.Session.VirtualHost, h) {
			out = append(out, describeConn(c))
		}
	}
	return out
}

// listConnections answers GET /api/v1/connections (monitor on kind broker): every connection, those
// still logging in included, or with ?vhost= those of one host.
func (m *Manager) listConnections(w http.ResponseWriter, r *http.Request) {
	if !m.onBroker(w, r, virtualhost.ActionMonitor) {
		return
	}
	var h *virtualhost.Host
	if name := r.URL.Query().Get("vhost"); name != "" {
		if h = m.o.Hosts.Lookup(name); h == nil {
			writeError(w, http.StatusNotFound, "no virtual host %q", name)
			return
		}
	}
	writePage(w, r, m.connections(h))
}

// listHostConnections answers GET /api/v1/vhosts/{vhost}/connections (monitor on the host).
func (m *Manager) listHostConnections(w http.ResponseWriter, r *http.Request) {
	if h := m.onHost(w, r, virtualhost.ActionMonitor); h != nil {
		writePage(w, r, m.connections(h))
	}
}

// deleteConnection answers DELETE /api/v1/vhosts/{vhost}/connections/{id} (admin on the host): the
// connection is closed as if the network had dropped it (an MQTT will is published); 404 when no
// connection of that host has the id.
func (m *Manager) deleteConnection(w http.ResponseWriter, r *http.Request) {
	h := m.onHost(w, r, virtualhost.ActionAdmin)
	if h == nil {
		return
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "connection id must be a number, not %q", r.PathValue("id"))
		return
	}
	found := false
	if m.o.Server != nil {
		for _, c := range m.o.Server.Connections() {
			if c.ID == id && c.LoggedIn && sameHost(c.Session.VirtualHost, h) {
				found = m.o.Server.Disconnect(id)
				break
			}
		}
	}
	if !found {
		writeError(w, http.StatusNotFound, "no connection %d on virtual host %s", id, h.Name)
		return
	}
	m.logAdmin(r, "connection closed", h, zap.Uint64("conn_id", id))
	w.WriteHeader(http.StatusNoContent)
}

// listSessions answers GET /api/v1/vhosts/{vhost}/sessions (monitor on the host): the host's MQTT
// sessions, online and offline, by client id.
func (m *Manager) listSessions(w http.ResponseWriter, r *http.Request) {
	h := m.onHost(w, r, virtualhost.ActionMonitor)
	if h == nil {
		return
	}
	var all []SessionInfo
	if m.o.Sessions != nil {
		all = slices.Clone(m.o.Sessions.Sessions(h.Name))
	}
	slices.SortFunc(all, func(a, b SessionInfo) int { return cmp.Compare(a.ClientID, b.ClientID) })
	for i := range all {
		if all[i].Subscriptions == nil {
			all[i].Subscriptions = []string{}
		}
	}
	writePage(w, r, all)
}

// deleteSession answers DELETE /api/v1/vhosts/{vhost}/sessions/{client_id} (admin on the host): an
// offline session goes with its subscriptions and backlog; 409 while its client is connected (close the
// connection first), 404 when there is none.
func (m *Manager) deleteSession(w http.ResponseWriter, r *http.Request) {
	h := m.onHost(w, r, virtualhost.ActionAdmin)
	if h == nil {
		return
	}
	id := r.PathValue("client_id")
	err := ErrNoSession
	if m.o.Sessions != nil {
		err = m.o.Sessions.DeleteSession(h.Name, id)
	}
	switch {
	case err == nil:
		m.logAdmin(r, "session deleted", h, zap.String("client_id", protocol.LoggedName(id)))
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrSessionOnline):
		writeError(w, http.StatusConflict, "the client of session %q is connected: disconnect it first", id)
	case errors.Is(err, ErrNoSession):
		writeError(w, http.StatusNotFound, "no session %q on virtual host %s", id, h.Name)
	default:
		writeError(w, http.StatusInternalServerError, "%v", err)
	}
}
