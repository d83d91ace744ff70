package management

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lyremq/lyre/virtualhost"
)

// ClusterInfo is the node's cluster state as management shows it (GET /api/v1/cluster, the cluster
// section of GET /api/v1/broker, the lyre_cluster_ metrics and $SYS/broker/cluster/...). cmd/lyre fills
// it from router/cluster's Link.Status, so management needs no NATS.
type ClusterInfo struct {
	Name string `json:"name"`
	Node string `json:"node"`
	// Mode is "embedded" (an embedded NATS server with routes) or "nats_url" (an external NATS).
	Mode string `json:"mode"`
	// Connected: embedded, a route to at least one other node is up; nats_url, the NATS connection is.
	Connected bool `json:"connected"`
	// Since is when Connected last changed.
	Since time.Time `json:"since"`
	// Disconnects counts the times Connected went from true to false.
	Disconnects uint64 `json:"disconnects"`
	// Routes is the embedded server's route connections (NATS pools several per peer).
	Routes int `json:"routes"`
	// Server is the NATS server connected to (nats_url).
	Server string `json:"server,omitempty"`
	// Peers are the nodes seen since this one started, connected or not (embedded).
	Peers    []ClusterPeer   `json:"peers"`
	Messages ClusterMessages `json:"messages"`
}

// ClusterPeer is another node as this one sees it.
type ClusterPeer struct {
	Name      string    `json:"name"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
}

// ClusterMessages are the cluster link's counters (router/cluster Stats).
type ClusterMessages struct {
	Sent       uint64 `json:"sent"`
	Received   uint64 `json:"received"`
	Dropped    uint64 `json:"dropped"`
	TooLarge   uint64 `json:"too_large"`
	Duplicates uint64 `json:"duplicates"`
	Malformed  uint64 `json:"malformed"`
	// InDropped are messages from other nodes dropped because this node did not keep up.
	InDropped uint64 `json:"in_dropped"`
}

// cluster returns the cluster state, nil when the node is not in a cluster.
func (m *Manager) cluster() *ClusterInfo {
	if m.o.Cluster == nil {
		return nil
	}
	return m.o.Cluster()
}

// getCluster answers GET /api/v1/cluster (monitor on kind broker): 404 on a node without a cluster block.
func (m *Manager) getCluster(w http.ResponseWriter, r *http.Request) {
	if !m.onBroker(w, r, virtualhost.ActionMonitor) {
		return
	}
	c := m.cluster()
	if c == nil {
		writeError(w, http.StatusNotFound, "this node is not in a cluster")
		return
	}
	writeJSON(w, http.StatusOK, c)
}

var (
	descClusterInfo = newDesc("cluster_info",
		"Always 1 on a node in a cluster; the labels name the cluster, this node and the mode (embedded or nats_url).",
		"cluster", "node", "mode")
	descClusterConnected = newDesc("cluster_connected",
		"1 while the node is connected to the cluster (embedded: a route to another node is up; nats_url: the NATS "+
			"connection is), 0 while it serves its own clients only.")
	descClusterDisconnects = newDesc("cluster_disconnects_total", "Times the node lost the cluster.")
	descClusterRoutes      = newDesc("cluster_routes", "Route connections of the embedded NATS server (several per peer).")
	descClusterPeers       = newDesc("cluster_peers", "Other nodes the embedded NATS server has a route to now.")
	descClusterPeer        = newDesc("cluster_peer_connected",
		"1 while a route to the peer is up, 0 after it went; one series per node seen since this one started.", "peer")
	descClusterSent     = newDesc("cluster_messages_sent_total", "Local topic messages published to the cluster.")
	descClusterReceived = newDesc("cluster_messages_received_total",
		"Topic messages from other nodes published into this node's routers.")
	descClusterDropped = newDesc("cluster_messages_dropped_total",
		"Local topic messages not sent to the cluster: the link's outbound queue was full, or NATS refused them "+
			"(disconnected from an external NATS).")
	descClusterTooLarge = newDesc("cluster_messages_too_large_total",
		"Local topic messages over the NATS payload limit, kept on this node.")
	descClusterDuplicates = newDesc("cluster_messages_duplicate_total",
		"Copies of one message from overlapping NATS subscriptions, dropped.")
	descClusterMalformed = newDesc("cluster_messages_malformed_total",
		"Messages from NATS whose subject or envelope did not decode.")
	descClusterInDropped = newDesc("cluster_messages_in_dropped_total",
		"Messages from other nodes dropped because the link's inbound queue was full: this node's subscribers "+
			"did not keep up (a NATS slow consumer).")
)

var clusterDescs = []*prometheus.Desc{
	descClusterInfo, descClusterConnected, descClusterDisconnects, descClusterRoutes, descClusterPeers,
	descClusterPeer, descClusterSent, descClusterReceived, descClusterDropped, descClusterTooLarge,
	descClusterDuplicates, descClusterMalformed, descClusterInDropped,
}

// collectCluster sends the lyre_cluster_ metrics; none on a node without a cluster.
func collectCluster(e emitter, c *ClusterInfo) {
	if c == nil {
		return
	}
	e.gauge(descClusterInfo, 1, c.Name, c.Node, c.Mode)
	e.gauge(descClusterConnected, boolGauge(c.Connected))
	e.counter(descClusterDisconnects, c.Disconnects)
	e.gauge(descClusterRoutes, float64(c.Routes))
	up := 0
	for _, p := range c.Peers {
		e.gauge(descClusterPeer, boolGauge(p.Connected), p.Name)
		if p.Connected {
			up++
		}
	}
	e.gauge(descClusterPeers, float64(up))
	cm := &c.Messages
	e.counter(descClusterSent, cm.Sent)
	e.counter(descClusterReceived, cm.Received)
	e.counter(descClusterDropped, cm.Dropped)
	e.counter(descClusterTooLarge, cm.TooLarge)
	e.counter(descClusterDuplicates, cm.Duplicates)
	e.counter(descClusterMalformed, cm.Malformed)
	e.counter(descClusterInDropped, cm.InDropped)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sysCluster returns the $SYS/broker/cluster/... values (broker-wide, on every host). state is 1 or 0,
// as mosquitto's $SYS/broker/connection/<bridge>/state.
func sysCluster(c *ClusterInfo) []sysValue {
	if c == nil {
		return nil
	}
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	up := 0
	vs := []sysValue{{"cluster/name", c.Name}, {"cluster/node", c.Node}, {"cluster/state", b(c.Connected)}}
	for _, p := range c.Peers {
		if p.Name != "" && !strings.ContainsAny(p.Name, "/+#") { // a topic level of its own
			vs = append(vs, sysValue{"cluster/peers/" + p.Name + "/state", b(p.Connected)})
		}
		if p.Connected {
			up++
		}
	}
	return append(vs, sysValue{"cluster/peers/connected", strconv.Itoa(up)},
		sysValue{"cluster/messages/sent", u(c.Messages.Sent)},
		sysValue{"cluster/messages/received", u(c.Messages.Received)},
		sysValue{"cluster/messages/dropped", u(c.Messages.Dropped)})
}
