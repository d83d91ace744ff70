package management

import (
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// traffic is protocol.Traffic in the API: socket bytes and application messages, each way, and the
// messages dropped for slow subscribers.
type traffic struct {
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
	MessagesIn  uint64 `json:"messages_in"`
	MessagesOut uint64 `json:"messages_out"`
	Dropped     uint64 `json:"dropped"`
}

func trafficOf(t protocol.Traffic) traffic {
	return traffic{BytesIn: t.BytesIn, BytesOut: t.BytesOut, MessagesIn: t.MessagesIn, MessagesOut: t.MessagesOut,
		Dropped: t.Dropped}
}

func (t *traffic) add(o traffic) {
	t.BytesIn += o.BytesIn
	t.BytesOut += o.BytesOut
	t.MessagesIn += o.MessagesIn
	t.MessagesOut += o.MessagesOut
	t.Dropped += o.Dropped
}

// brokerInfo is GET /api/v1/broker.
type brokerInfo struct {
	Version       string          `json:"version"`
	Started       time.Time       `json:"started"`
	UptimeSeconds int64           `json:"uptime_seconds"`
	Config        *configSummary  `json:"config,omitempty"`
	Connectors    []connectorInfo `json:"connectors"`
	// Totals add up every connector's traffic, ended connections included.
	Totals traffic `json:"totals"`
	// Cluster is the node's cluster state; absent without a cluster block.
	Cluster *ClusterInfo `json:"cluster,omitempty"`
}

// configSummary is what the running configuration says, without secrets or file paths beyond its own.
type configSummary struct {
	Source       string          `json:"source"`
	Connectors   []connectorConf `json:"connectors"`
	VirtualHosts []string        `json:"virtual_hosts"`
	// SysInterval is a duration as the config writes it ("10s"); "0s" when $SYS is off.
	SysInterval string `json:"sys_interval"`
}

type connectorConf struct {
	Name        string   `json:"name"`
	Bind        string   `json:"bind"`
	Protocols   []string `json:"protocols"`
	Management  bool     `json:"management"`
	VirtualHost string   `json:"virtual_host,omitempty"`
}

// connectorInfo is one connector's counters (protocol.ConnectorStats).
type connectorInfo struct {
	Name      string            `json:"name"`
	Protocols []string          `json:"protocols"`
	Active    int64             `json:"active"`
	Accepted  uint64            `json:"accepted"`
	Refused   map[string]uint64 `json:"refused"`
	Traffic   []protocolTraffic `json:"traffic"`
}

// protocolTraffic is the traffic of one protocol on one virtual host ("" before login) through one
// connector.
type protocolTraffic struct {
	Protocol    string `json:"protocol"`
	VirtualHost string `json:"vhost"`
	traffic
}

func summarize(c *conf.Config) *configSummary {
	s := &configSummary{Source: c.Source, Connectors: make([]connectorConf, 0, len(c.Connectors)),
		VirtualHosts: make([]string, 0, len(c.VirtualHosts)), SysInterval: c.SysInterval.String()}
	for i := range c.Connectors {
		cc := &c.Connectors[i]
		s.Connectors = append(s.Connectors, connectorConf{Name: cc.Name, Bind: cc.Bind, Protocols: cc.Protocols(),
			Management: cc.Management, VirtualHost: cc.VirtualHost})
	}
	for _, h := range c.VirtualHosts {
		s.VirtualHosts = append(s.VirtualHosts, h.Name)
	}
	return s
}

// getBroker answers GET /api/v1/broker (monitor on kind broker).
func (m *Manager) getBroker(w http.ResponseWriter, r *http.Request) {
	if !m.onBroker(w, r, virtualhost.ActionMonitor) {
		return
	}
	b := brokerInfo{Version: m.o.Version, Started: m.o.Started.UTC(),
		UptimeSeconds: int64(time.Since(m.o.Started) / time.Second), Connectors: []connectorInfo{}, Cluster: m.cluster()}
	if c := m.config(); c != nil {
		b.Config = summarize(c)
	}
	if m.o.Server != nil {
		for _, cs := range m.o.Server.ConnectorStats() {
			ci := connectorInfo{Name: cs.Name, Protocols: cs.Protocols, Active: cs.Active, Accepted: cs.Accepted,
				Refused: cs.Refused, Traffic: make([]protocolTraffic, 0, len(cs.Traffic))}
			for _, t := range cs.Traffic {
				pt := protocolTraffic{Protocol: t.Protocol, VirtualHost: t.VirtualHost, traffic: trafficOf(t.Traffic)}
				ci.Traffic = append(ci.Traffic, pt)
				b.Totals.add(pt.traffic)
			}
			b.Connectors = append(b.Connectors, ci)
		}
	}
	writeJSON(w, http.StatusOK, b)
}

// reload answers POST /api/v1/reload (admin on kind broker): 200 once the configuration is applied, 400
// with conf's file:line:col messages when it is refused (the old one keeps running), 501 without
// Options.Reload.
func (m *Manager) reload(w http.ResponseWriter, r *http.Request) {
	if !m.onBroker(w, r, virtualhost.ActionAdmin) {
		return
	}
	if m.o.Reload == nil {
		writeError(w, http.StatusNotImplemented, "this broker cannot reload its configuration")
		return
	}
	if err := m.o.Reload(); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	user, _, _ := r.BasicAuth()
	m.log.Info("configuration reloaded through the management api", zap.String("user", protocol.LoggedName(user)))
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}
