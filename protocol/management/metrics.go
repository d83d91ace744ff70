package management

import (
	"maps"
	"net/http"
	"runtime"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// metricsRoutes registers /metrics: the Prometheus text exposition of the Manager's own registry (see
// the package doc, Metrics), for users allowed monitor on kind broker.
func (m *Manager) metricsRoutes() {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&collector{m: m},
	)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(m.log.Named("metrics")),
		ErrorHandling: promhttp.ContinueOnError, // a bad metric is logged and left out, the rest served
	})
	m.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		host, user := m.brokerHost(r)
		if host == nil {
			writeError(w, http.StatusServiceUnavailable, "no virtual host")
			return
		}
		if _, ok := m.allow(w, r, host, user, virtualhost.ActionMonitor, virtualhost.ObjectBroker, []string{"broker"}); !ok {
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// Metric descriptors. Every metric is built at scrape time from counters and snapshots that exist
// anyway (const metrics), so monitoring costs the publish path nothing.
var (
	descBuildInfo = newDesc("build_info", "Always 1; the labels name the running version.", "version", "go_version")
	descStartTime = newDesc("start_time_seconds", "When the broker started, in Unix seconds.")

	// Per connector.
	descConnectorConns = newDesc("connector_connections",
		"Connections open through the connector now, before and after login, management HTTP ones included.", "connector")
	descConnectorAccepted = newDesc("connector_connections_accepted_total",
		"Connections the connector accepted, refused ones included.", "connector")
	descConnectorRefused = newDesc("connector_connections_refused_total",
		"Connections the connector closed before they reached a protocol front-end, by reason.", "connector", "reason")
	descMsgsIn = newDesc("messages_received_total",
		"Application messages (MQTT PUBLISH, STOMP SEND) received from clients; vhost is empty before login.",
		"connector", "protocol", "vhost")
	descMsgsOut = newDesc("messages_sent_total",
		"Application messages (MQTT PUBLISH, STOMP MESSAGE) queued for clients.", "connector", "protocol", "vhost")
	descBytesIn = newDesc("received_bytes_total",
		"Bytes read from client sockets (after TLS, WebSocket framing included).", "connector", "protocol", "vhost")
	descBytesOut = newDesc("sent_bytes_total",
		"Bytes written to client sockets (before TLS, WebSocket framing included).", "connector", "protocol", "vhost")

	// Per virtual host.
	descClients = newDesc("connections",
		"Clients logged in to the virtual host now (what its max_connections bounds).", "vhost")
	descPublished = newDesc("messages_published_total",
		"Messages the virtual host's router routed (from clients, HTTP, wills and dead-lettering; not $SYS).", "vhost")
	descDelivered = newDesc("messages_delivered_total",
		"Deliveries the router handed to subscribers and consumers, redeliveries and $SYS included.", "vhost")
	descDropped = newDesc("messages_dropped_total",
		"Messages lost, by reason: slow_subscriber (a client's window or outbound queue was full).", "vhost", "reason")
	descQueueFull = newDesc("queue_publishes_refused_total",
		"Publishes to a queue refused because it was full (block policy) or the host had too many queues.", "vhost")
	descPoisoned = newDesc("messages_poisoned_total",
		"Queue messages that reached their nak_limit.", "vhost")
	descDeadLettered = newDesc("messages_dead_lettered_total",
		"Poisoned queue messages moved to a dead-letter queue.", "vhost")
	descDiscarded = newDesc("messages_discarded_total",
		"Messages discarded with their queue: a destroyed durable subscription, a temporary queue whose owner left.", "vhost")
	descSwapLoads = newDesc("swap_loads_total",
		"Windows of swapped-out queue messages loaded back from the store.", "vhost")
	descSwapLoadErrors = newDesc("swap_load_errors_total",
		"Loads of swapped-out queue messages that failed (retried on the next dispatch).", "vhost")
	descSubscriptions = newDesc("subscriptions",
		"Topic subscriptions, durable ones and shared-group members included.", "vhost")
	descDurables = newDesc("durable_subscriptions",
		"Durable subscriptions (STOMP durable subscriptions and the subscriptions of persistent MQTT sessions).", "vhost")
	descRetained = newDesc("retained_messages", "Retained messages, $SYS ones included.", "vhost")
	descQueues   = newDesc("queues", "Queues in use (holding messages or consumers).", "vhost")

	descSessions = newDesc("mqtt_sessions",
		"MQTT sessions by state: online (client connected) or offline (persistent, waiting for its client).", "vhost", "state")
	descSessionBacklog = newDesc("mqtt_session_backlog_messages",
		"Messages waiting in MQTT sessions' durable subscriptions.", "vhost", "state")
	descSessionInflight = newDesc("mqtt_session_inflight_messages",
		"Messages sent to MQTT sessions and not yet acknowledged.", "vhost", "state")

	descJournalFailures = newDesc("store_journal_failures_total",
		"Store writes that failed with no publisher waiting to be told (a durable host only).", "vhost")
)

// allDescs lists every descriptor the collector may produce, for Describe.
var allDescs = []*prometheus.Desc{
	descBuildInfo, descStartTime,
	descConnectorConns, descConnectorAccepted, descConnectorRefused, descMsgsIn, descMsgsOut, descBytesIn, descBytesOut,
	descClients, descPublished, descDelivered, descDropped, descQueueFull, descPoisoned, descDeadLettered, descDiscarded,
	descSwapLoads, descSwapLoadErrors, descSubscriptions, descDurables, descRetained, descQueues,
	descSessions, descSessionBacklog, descSessionInflight,
	descJournalFailures,
}

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("lyre_"+name, help, labels, nil)
}

// Drop reasons (label reason of lyre_messages_dropped_total).
const (
	dropSlowSubscriber = "slow_subscriber" // the front-end's: a client's window or outbound queue was full
)

// collector produces Lyre's metrics at scrape time.
type collector struct{ m *Manager }

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.snapshot()
	e := emitter{ch}
	e.gauge(descBuildInfo, 1, c.m.o.Version, runtime.Version())
	e.gauge(descStartTime, float64(c.m.o.Started.UnixNano())/1e9)
	for _, cs := range s.connectors {
		e.gauge(descConnectorConns, float64(cs.Active), cs.Name)
		e.counter(descConnectorAccepted, cs.Accepted, cs.Name)
		for _, reason := range sortedKeys(cs.Refused) {
			e.counter(descConnectorRefused, cs.Refused[reason], cs.Name, reason)
		}
		for _, t := range cs.Traffic {
			e.counter(descMsgsIn, t.MessagesIn, cs.Name, t.Protocol, t.VirtualHost)
			e.counter(descMsgsOut, t.MessagesOut, cs.Name, t.Protocol, t.VirtualHost)
			e.counter(descBytesIn, t.BytesIn, cs.Name, t.Protocol, t.VirtualHost)
			e.counter(descBytesOut, t.BytesOut, cs.Name, t.Protocol, t.VirtualHost)
		}
	}
	for _, hs := range s.hosts {
		c.collectHost(e, &hs)
	}
}

func (c *collector) collectHost(e emitter, hs *hostSnapshot) {
	v, rs := hs.host.Name, &hs.router
	e.gauge(descClients, float64(hs.clients), v)
	e.counter(descPublished, rs.Published, v)
	e.counter(descDelivered, rs.Delivered, v)
	e.counter(descDropped, hs.traffic.Dropped, v, dropSlowSubscriber)
	e.counter(descQueueFull, rs.QueueFull, v)
	e.counter(descPoisoned, rs.Poisoned, v)
	e.counter(descDeadLettered, rs.DeadLettered, v)
	e.counter(descDiscarded, rs.Discarded, v)
	e.counter(descSwapLoads, rs.SwapLoads, v)
	e.counter(descSwapLoadErrors, rs.SwapLoadErrors, v)
	e.gauge(descSubscriptions, float64(rs.Subscriptions), v)
	e.gauge(descDurables, float64(rs.Durables), v)
	e.gauge(descRetained, float64(rs.Retained), v)
	e.gauge(descQueues, float64(rs.Queues), v)
	if hs.sessions != nil {
		for i, state := range sessionStates {
			e.gauge(descSessions, float64(hs.sessions.count[i]), v, state)
			e.gauge(descSessionBacklog, float64(hs.sessions.backlog[i]), v, state)
			e.gauge(descSessionInflight, float64(hs.sessions.inflight[i]), v, state)
		}
	}
	if hs.host.Durable() {
		e.counter(descJournalFailures, hs.host.JournalFailures(), v)
	}
}

// emitter sends const metrics; a metric that cannot be built (a label value that is not UTF-8) is
// reported as invalid, which the handler logs, and the others are still served.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) send(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.send(d, prometheus.GaugeValue, v, labels...)
}

func (e emitter) counter(d *prometheus.Desc, v uint64, labels ...string) {
	e.send(d, prometheus.CounterValue, float64(v), labels...)
}

// snapshot is what one scrape or one $SYS tick reads of the broker, taken once.
type snapshot struct {
	connectors []protocol.ConnectorStats
	hosts      []hostSnapshot
}

// hostSnapshot is one virtual host's part of a snapshot.
type hostSnapshot struct {
	host    *virtualhost.Host
	router  router.Stats
	clients int
	// traffic is the host's client traffic through every connector and protocol.
	traffic protocol.Traffic
	// sessions are the host's MQTT sessions; nil without Options.Sessions.
	sessions *sessionTotals
}

// sessionStates index sessionTotals' arrays and are the values of label state.
var sessionStates = [2]string{"online", "offline"}

type sessionTotals struct {
	count, backlog, inflight [2]int
	// persistentOnline counts the online sessions that outlive their connection.
	persistentOnline int
}

// snapshot reads the broker's counters.
func (m *Manager) snapshot() snapshot {
	var s snapshot
	if m.o.Server != nil {
		s.connectors = m.o.Server.ConnectorStats()
	}
	if m.o.Hosts == nil {
		return s
	}
	hosts := m.o.Hosts.Hosts()
	s.hosts = make([]hostSnapshot, len(hosts))
	byName := make(map[string]*hostSnapshot, len(hosts))
	for i, h := range hosts {
		hs := &s.hosts[i]
		hs.host, hs.router, hs.clients = h, h.Router.Stats(), h.Connections()
		byName[h.Name] = hs
		if m.o.Sessions != nil {
			hs.sessions = sumSessions(m.o.Sessions.Sessions(h.Name))
		}
	}
	for _, cs := range s.connectors {
		for _, t := range cs.Traffic {
			if hs := byName[t.VirtualHost]; hs != nil {
				addTraffic(&hs.traffic, t.Traffic)
			}
		}
	}
	return s
}

func sumSessions(list []SessionInfo) *sessionTotals {
	var st sessionTotals
	for _, si := range list {
		i := 1
		if si.Online {
			i = 0
			if si.Persistent {
				st.persistentOnline++
			}
		}
		st.count[i]++
		st.backlog[i] += si.Backlog
		st.inflight[i] += si.Inflight
	}
	return &st
}

func addTraffic(t *protocol.Traffic, o protocol.Traffic) {
	t.BytesIn += o.BytesIn
	t.BytesOut += o.BytesOut
	t.MessagesIn += o.MessagesIn
	t.MessagesOut += o.MessagesOut
	t.Dropped += o.Dropped
}

// sortedKeys returns m's keys in order, so metrics come out in a stable order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
