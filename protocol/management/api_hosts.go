package management

import (
	"net/http"
	"strings"

	"github.com/lyremq/lyre/virtualhost"
)

// hostInfo is one virtual host in GET /api/v1/vhosts and /api/v1/vhosts/{vhost}.
type hostInfo struct {
	Name      string   `json:"name"`
	HostNames []string `json:"host_names"`
	Anonymous bool     `json:"anonymous"`
	// Durable is set for a host with a store: persistent messages survive a restart.
	Durable bool `json:"durable"`
	// Connections counts the logged-in clients.
	Connections int `json:"connections"`
	// Subscriptions counts topic subscriptions, durable ones included; DurableSubscriptions those.
	Subscriptions        int    `json:"subscriptions"`
	DurableSubscriptions int    `json:"durable_subscriptions"`
	Queues               int    `json:"queues"`
	Retained             int    `json:"retained"`
	MessagesPublished    uint64 `json:"messages_published"`
	MessagesDelivered    uint64 `json:"messages_delivered"`
	Drops                drops  `json:"drops"`
	// NoRoute counts topic publishes that matched no subscription (not a drop: nobody missed them).
	NoRoute uint64 `json:"no_route"`
	// QueueFullRefusals counts publishes a full queue refused (the publisher was told: not a drop).
	QueueFullRefusals uint64 `json:"queue_full_refusals"`
	DeadLettered      uint64 `json:"dead_lettered"`
	// Discarded counts messages an operator purged or that went with their queue; Moved those moved.
	Discarded uint64 `json:"discarded"`
	Moved     uint64 `json:"moved"`
}

// drops are the messages a host lost to a bound or to expiry, by reason (router.Stats).
type drops struct {
	Total          uint64 `json:"total"`
	QueueFull      uint64 `json:"queue_full"`
	SubscriberFull uint64 `json:"subscriber_full"`
	Expired        uint64 `json:"expired"`
	Poisoned       uint64 `json:"poisoned"`
}

func describeHost(h *virtualhost.Host) hostInfo {
	s := h.Router.Stats()
	names := h.HostNames()
	if names == nil {
		names = []string{}
	}
	return hostInfo{Name: h.Name, HostNames: names, Anonymous: h.Anonymous(), Durable: h.Durable(),
		Connections: h.Connections(), Subscriptions: s.Subscriptions, DurableSubscriptions: s.Durables,
		Queues: s.Queues, Retained: s.Retained, MessagesPublished: s.Published, MessagesDelivered: s.Delivered,
		Drops: drops{Total: s.Dropped, QueueFull: s.DroppedQueueFull, SubscriberFull: s.DroppedSubscriberFull,
			Expired: s.DroppedExpired, Poisoned: s.DroppedPoisoned},
		NoRoute: s.NoRoute, QueueFullRefusals: s.QueueFull, DeadLettered: s.DeadLettered, Discarded: s.Discarded, Moved: s.Moved}
}

// listHosts answers GET /api/v1/vhosts: every host for monitor on kind broker; else, for monitor on the
// host the user logged in to, that host alone (a tenant's operator sees their own host).
func (m *Manager) listHosts(w http.ResponseWriter, r *http.Request) {
	h, user := m.brokerHost(r)
	if h == nil {
		writeError(w, http.StatusServiceUnavailable, "no virtual host")
		return
	}
	p, err := m.login(r, h, user)
	if err != nil {
		m.unauthorized(w, r, h, err)
		return
	}
	var hosts []*virtualhost.Host
	switch {
	case h.Authorize(p, virtualhost.ActionMonitor, virtualhost.ObjectBroker, []string{"broker"}, ""):
		hosts = m.o.Hosts.Hosts()
	case h.Authorize(p, virtualhost.ActionMonitor, virtualhost.ObjectVirtualHost, []string{h.Name}, ""):
		hosts = []*virtualhost.Host{h}
	default:
		m.forbidden(w, r, h, "monitor on broker or on virtual_host %s not allowed for %s", h.Name, describe(p))
		return
	}
	out := make([]hostInfo, len(hosts))
	for i, h := range hosts {
		out[i] = describeHost(h)
	}
	writePage(w, r, out)
}

// getHost answers GET /api/v1/vhosts/{vhost} (monitor on the host).
func (m *Manager) getHost(w http.ResponseWriter, r *http.Request) {
	if h := m.onHost(w, r, virtualhost.ActionMonitor); h != nil {
		writeJSON(w, http.StatusOK, describeHost(h))
	}
}

// sameHost reports whether a connection's virtual host name is h's.
func sameHost(name string, h *virtualhost.Host) bool { return strings.EqualFold(name, h.Name) }
