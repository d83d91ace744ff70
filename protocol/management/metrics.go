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

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
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

	// Per virtual host: clients and refusals.
	descClients = newDesc("connections",
		"Clients logged in to the virtual host now (what its max_connections bounds).", "vhost")
	descHostRefused = newDesc("connections_refused_total",
		"Logins the virtual host refused, by reason: not_authorized (no connect permission, or no user on a host "+
			"without anonymous access), max_connections (the host was full). Bad credentials are lyre_auth_failures_total.",
		"vhost", "reason")
	descAuthFailures = newDesc("auth_failures_total",
		"Logins refused for bad credentials (unknown user, wrong password, failed SCRAM exchange), management HTTP ones included.", "vhost")
	descPasswordChecks = newDesc("password_checks_total",
		"bcrypt password checks run for logins (MQTT, STOMP, management HTTP), failed ones and unknown users included.", "vhost")
	descCredentialHits = newDesc("credential_cache_hits_total",
		"Password logins the credential cache answered without bcrypt (credential_cache).", "vhost")
	descAccessDenied = newDesc("access_denied_total",
		"Requests an access rule denied: a publish, subscription or consumer refused, a retained message withheld.", "vhost")
	descGated = newDesc("messages_withheld_total",
		"Messages withheld from wildcard subscriptions that an access rule denies in part.", "vhost")

	// Per virtual host: messages.
	descPublished = newDesc("messages_published_total",
		"Messages the virtual host's router routed (from clients, HTTP, wills and dead-lettering; not $SYS).", "vhost")
	descDelivered = newDesc("messages_delivered_total",
		"Deliveries the router handed to subscribers and consumers, redeliveries and $SYS included.", "vhost")
	descDropped = newDesc("messages_dropped_total",
		"Messages lost, by reason: slow_subscriber, queue_full, expired, poisoned, no_route (see the README).", "vhost", "reason")
	descRefusedDeliveries = newDesc("deliveries_refused_total",
		"Topic deliveries a full subscriber refused, counted by the router per subscription or shared group "+
			"(the front-ends count most of them in lyre_messages_dropped_total{reason=\"slow_subscriber\"} too).", "vhost")
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

	// Per virtual host: topics and queues.
	descSubscriptions = newDesc("subscriptions",
		"Topic subscriptions, durable ones and shared-group members included.", "vhost")
	descDurables = newDesc("durable_subscriptions",
		"Durable subscriptions (STOMP durable subscriptions and the subscriptions of persistent MQTT sessions).", "vhost")
	descRetained = newDesc("retained_messages", "Retained messages, $SYS ones included.", "vhost")
	descQueues   = newDesc("queues",
		"Queues by kind: queue (dead-letter queues included), dsub (a durable subscription's), temp-queue.", "vhost", "kind")
	descQueueDepth = newDesc("queue_messages",
		"Messages waiting in queues for a consumer, in memory or swapped out, summed by kind.", "vhost", "kind")
	descQueueUnacked = newDesc("queue_unacked_messages",
		"Queue messages delivered to consumers and not yet acknowledged, summed by kind.", "vhost", "kind")
	descQueueBytes = newDesc("queue_bytes",
		"Bytes (bodies and headers) queues hold, waiting and unacknowledged, summed by kind.", "vhost", "kind")
	descQueueConsumers = newDesc("queue_consumers", "Consumers attached to queues, summed by kind.", "vhost", "kind")
	descDLQDepth       = newDesc("dead_letter_queue_messages",
		"Messages waiting in dead-letter queues (the queues the host's dlq names designate).", "vhost")

	// Per virtual host: MQTT sessions.
	descSessions = newDesc("mqtt_sessions",
		"MQTT sessions by state: online (client connected) or offline (persistent, waiting for its client).", "vhost", "state")
	descSessionBacklog = newDesc("mqtt_session_backlog_messages",
		"Messages waiting in MQTT sessions' durable subscriptions.", "vhost", "state")
	descSessionInflight = newDesc("mqtt_session_inflight_messages",
		"Messages sent to MQTT sessions and not yet acknowledged.", "vhost", "state")

	// Per virtual host: its store (a durable host only).
	descStoreSize = newDesc("store_size_bytes",
		"Room the host's store takes on disk (badger: its directory's allocated blocks, measured at most every few seconds).", "vhost")
	descStoreCommits = newDesc("store_commits_total", "Commits the store applied or failed.", "vhost")
	descStoreFailed  = newDesc("store_commit_failures_total", "Commits that failed.", "vhost")
	descStoreBatches = newDesc("store_batches_total",
		"Store transactions (one sync each when sync is on); fewer than commits shows group commit.", "vhost")
	descStoreWrites  = newDesc("store_writes_total", "Keys set or deleted in the store.", "vhost")
	descStoreQueued  = newDesc("store_queued_commits", "Commits waiting for the store's committer now.", "vhost")
	descStoreLatency = newDesc("store_commit_duration_seconds",
		"Time from a commit's queueing to its outcome: what a publisher waiting for its acknowledgement waits.", "vhost")
	descJournalFailures = newDesc("store_journal_failures_total",
		"Store writes that failed with no publisher waiting to be told.", "vhost")
)

// allDescs lists every descriptor the collector may produce, for Describe.
var allDescs = []*prometheus.Desc{
	descBuildInfo, descStartTime,
	descConnectorConns, descConnectorAccepted, descConnectorRefused, descMsgsIn, descMsgsOut, descBytesIn, descBytesOut,
	descClients, descHostRefused, descAuthFailures, descPasswordChecks, descCredentialHits, descAccessDenied, descGated,
	descPublished, descDelivered, descDropped, descRefusedDeliveries, descQueueFull, descPoisoned, descDeadLettered,
	descDiscarded, descSwapLoads, descSwapLoadErrors,
	descSubscriptions, descDurables, descRetained, descQueues, descQueueDepth, descQueueUnacked, descQueueBytes,
	descQueueConsumers, descDLQDepth,
	descSessions, descSessionBacklog, descSessionInflight,
	descStoreSize, descStoreCommits, descStoreFailed, descStoreBatches, descStoreWrites, descStoreQueued,
	descStoreLatency, descJournalFailures,
}

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("lyre_"+name, help, labels, nil)
}

// collector produces Lyre's metrics at scrape time.
type collector struct{ m *Manager }

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
	for _, d := range clusterDescs {
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
	for i := range s.hosts {
		collectHost(e, &s.hosts[i])
	}
	collectCluster(e, c.m.cluster())
}

func collectHost(e emitter, hs *hostSnapshot) {
	v, rs, hc := hs.host.Name, &hs.router, &hs.counters
	e.gauge(descClients, float64(hs.clients), v)
	e.counter(descHostRefused, hc.ConnectRefused, v, "not_authorized")
	e.counter(descHostRefused, hc.HostFull, v, "max_connections")
	e.counter(descAuthFailures, hc.AuthFailures, v)
	e.counter(descPasswordChecks, hc.PasswordChecks, v)
	e.counter(descCredentialHits, hc.CredentialCacheHits, v)
	e.counter(descAccessDenied, hc.AccessDenied, v)
	e.counter(descGated, hc.GateDenied, v)

	e.counter(descPublished, rs.Published, v)
	e.counter(descDelivered, rs.Delivered, v)
	for _, d := range hs.drops() {
		e.counter(descDropped, d.n, v, d.reason)
	}
	e.counter(descRefusedDeliveries, rs.DroppedSubscriberFull, v)
	e.counter(descQueueFull, rs.QueueFull, v)
	e.counter(descPoisoned, rs.Poisoned, v)
	e.counter(descDeadLettered, rs.DeadLettered, v)
	e.counter(descDiscarded, rs.Discarded, v)
	e.counter(descSwapLoads, rs.SwapLoads, v)
	e.counter(descSwapLoadErrors, rs.SwapLoadErrors, v)

	e.gauge(descSubscriptions, float64(rs.Subscriptions), v)
	e.gauge(descDurables, float64(rs.Durables), v)
	e.gauge(descRetained, float64(rs.Retained), v)
	for i, kind := range queueKinds {
		q := &hs.queues[i]
		e.gauge(descQueues, float64(q.count), v, kind.String())
		e.gauge(descQueueDepth, float64(q.depth), v, kind.String())
		e.gauge(descQueueUnacked, float64(q.unacked), v, kind.String())
		e.gauge(descQueueBytes, float64(q.bytes), v, kind.String())
		e.gauge(descQueueConsumers, float64(q.consumers), v, kind.String())
	}
	e.gauge(descDLQDepth, float64(hs.dlqDepth), v)

	if ss := hs.sessions; ss != nil {
		for i, state := range sessionStates {
			e.gauge(descSessions, float64(ss.count[i]), v, state)
			e.gauge(descSessionBacklog, float64(ss.backlog[i]), v, state)
			e.gauge(descSessionInflight, float64(ss.inflight[i]), v, state)
		}
	}

	if st := hs.store; st != nil {
		e.gauge(descStoreSize, float64(st.SizeBytes), v)
		e.counter(descStoreCommits, st.Commits, v)
		e.counter(descStoreFailed, st.Failed, v)
		e.counter(descStoreBatches, st.Batches, v)
		e.counter(descStoreWrites, st.Writes, v)
		e.gauge(descStoreQueued, float64(st.Queued), v)
		e.histogram(descStoreLatency, &st.CommitLatency, v)
		e.counter(descJournalFailures, hc.JournalFailures, v)
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

// histogram sends a store latency distribution as a histogram in seconds.
func (e emitter) histogram(d *prometheus.Desc, dist *store.Distribution, labels ...string) {
	buckets := make(map[float64]uint64, len(dist.Bounds))
	for i, b := range dist.Bounds {
		buckets[b.Seconds()] = dist.Cumulative[i]
	}
	m, err := prometheus.NewConstHistogram(d, dist.Count, dist.Sum.Seconds(), buckets, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

// snapshot is what one scrape or one $SYS tick reads of the broker, taken once.
type snapshot struct {
	connectors []protocol.ConnectorStats
	hosts      []hostSnapshot
}

// hostSnapshot is one virtual host's part of a snapshot.
type hostSnapshot struct {
	host     *virtualhost.Host
	router   router.Stats
	counters virtualhost.HostCounters
	clients  int
	// traffic is the host's client traffic through every connector and protocol.
	traffic protocol.Traffic
	// queues sums the router's queues by kind (queueKinds' order); dlqDepth is the depth of those that
	// are dead-letter queues.
	queues   [len(queueKinds)]queueTotals
	dlqDepth int
	// sessions are the host's MQTT sessions; nil without Options.Sessions.
	sessions *sessionTotals
	// store is the host's store's counters; nil for a memory host.
	store *store.Stats
}

// queueKinds are the kinds of router.Queues' entries, and the values of label kind.
var queueKinds = [...]router.Kind{router.Queue, router.DurableSub, router.TempQueue}

type queueTotals struct {
	count, depth, unacked, consumers int
	bytes                            int64
}

// sessionStates index sessionTotals' arrays and are the values of label state.
var sessionStates = [2]string{"online", "offline"}

type sessionTotals struct {
	count, backlog, inflight [2]int
}

// Drop reasons, the values of label reason of lyre_messages_dropped_total. They do not overlap: a
// message lost is counted under one of them, once per subscriber that lost it.
const (
	// dropSlowSubscriber: a front-end dropped a message for a client whose window or outbound queue was
	// full (QoS 0 and non-persistent topic messages, the oldest of a slow MQTT session's queue).
	dropSlowSubscriber = "slow_subscriber"
	// dropQueueFull: a queue's or durable subscription's full policy dropped it (drop_head, drop_tail; a
	// durable subscription's copy under block).
	dropQueueFull = "queue_full"
	// dropExpired: a queue message expired while it waited.
	dropExpired = "expired"
	// dropPoisoned: a message reached its nak_limit with no dead-letter queue to take it.
	dropPoisoned = "poisoned"
	// dropNoRoute: a topic publish no subscription matched (once per publish; a retained one is kept).
	dropNoRoute = "no_route"
)

type drop struct {
	reason string
	n      uint64
}

// drops returns the host's drop counters by reason.
func (hs *hostSnapshot) drops() []drop {
	rs := &hs.router
	return []drop{
		{dropSlowSubscriber, hs.traffic.Dropped},
		{dropQueueFull, rs.DroppedQueueFull},
		{dropExpired, rs.DroppedExpired},
		{dropPoisoned, rs.DroppedPoisoned},
		{dropNoRoute, rs.NoRoute},
	}
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
	cfg := m.config()
	hosts := m.o.Hosts.Hosts()
	s.hosts = make([]hostSnapshot, len(hosts))
	byName := make(map[string]*hostSnapshot, len(hosts))
	for i, h := range hosts {
		hs := &s.hosts[i]
		hs.host, hs.router, hs.counters, hs.clients = h, h.Router.Stats(), h.Counters(), h.Connections()
		byName[h.Name] = hs
		hs.sumQueues(h.Router.Queues(), dlqMatcherOf(cfg, h.Name))
		if m.o.Sessions != nil {
			hs.sessions = sumSessions(m.o.Sessions.Sessions(h.Name))
		}
		if st, ok := h.StoreStats(); ok {
			hs.store = &st
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

// sumQueues adds up qs by kind, and the depth of the dead-letter queues dm recognises.
func (hs *hostSnapshot) sumQueues(qs []router.QueueInfo, dm dlqMatcher) {
	for _, q := range qs {
		i := slices.Index(queueKinds[:], q.Dest.Kind)
		if i < 0 {
			continue
		}
		t := &hs.queues[i]
		t.count++
		t.depth += q.Depth
		t.unacked += q.Unacked
		t.consumers += q.Consumers
		t.bytes += q.Bytes
		if q.Dest.Kind == router.Queue && dm.matches(q.Dest.Path) {
			hs.dlqDepth += q.Depth
		}
	}
}

// stored counts the messages the host holds for later delivery: retained ones, and those waiting or
// unacknowledged in queues and durable subscriptions ($SYS messages/stored, as mosquitto counts it).
func (hs *hostSnapshot) stored() int {
	n := hs.router.Retained
	for _, q := range hs.queues {
		n += q.depth + q.unacked
	}
	return n
}

func sumSessions(list []SessionInfo) *sessionTotals {
	var st sessionTotals
	for _, si := range list {
		i := 1
		if si.Online {
			i = 0
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

// dlqGrammar parses the dlq names of queue and dsub policies: the STOMP default grammar without prefix,
// where a name is a queue's (as virtualhost reads them).
var dlqGrammar = func() *router.Grammar {
	gc := router.STOMPGrammarConfig()
	gc.RequirePrefix = false
	gc.DefaultKind = router.Queue
	g, err := router.NewGrammar(gc)
	if err != nil {
		panic(err)
	}
	return g
}()

// dlqMatcher recognises a host's dead-letter queues from its policies' dlq names, each a path template
// whose "*" segment stands for the name of the queue a message comes from (one or more segments): "dlq.*"
// covers dlq.orders and dlq.orders.eu. A queue is a DLQ when its path fits one of them, whether or not a
// message was dead-lettered into it yet.
type dlqMatcher [][]string

func newDLQMatcher(vc *conf.VirtualHost) dlqMatcher {
	var out dlqMatcher
	for _, ps := range [][]conf.QueuePolicy{vc.Queues, vc.Dsubs} {
		for _, p := range ps {
			if p.DLQ == "" {
				continue
			}
			f, err := dlqGrammar.ParseFilter(p.DLQ)
			if err != nil {
				continue // conf.Load refused it; a host built in Go with a bad one has no such DLQ
			}
			tmpl := make([]string, len(f.Segs))
			for i, s := range f.Segs {
				if s.Kind == router.SegOne {
					tmpl[i] = "*"
				} else {
					tmpl[i] = s.Text
				}
			}
			out = append(out, tmpl)
		}
	}
	return out
}

// matches reports whether path names a dead-letter queue.
func (dm dlqMatcher) matches(path []string) bool {
	for _, tmpl := range dm {
		if fitsTemplate(tmpl, path) {
			return true
		}
	}
	return false
}

func fitsTemplate(tmpl, path []string) bool {
	for len(tmpl) > 0 && tmpl[0] != "*" {
		if len(path) == 0 || path[0] != tmpl[0] {
			return false
		}
		tmpl, path = tmpl[1:], path[1:]
	}
	if len(tmpl) == 0 {
		return len(path) == 0
	}
	for n := 1; n <= len(path); n++ { // "*": the source queue's path, at least one segment
		if fitsTemplate(tmpl[1:], path[n:]) {
			return true
		}
	}
	return false
}

// dlqMatcherOf returns the dead-letter queue matcher of host name in cfg (none without a config).
func dlqMatcherOf(cfg *conf.Config, name string) dlqMatcher {
	if cfg == nil {
		return nil
	}
	for i := range cfg.VirtualHosts {
		if cfg.VirtualHosts[i].Name == name {
			return newDLQMatcher(&cfg.VirtualHosts[i])
		}
	}
	return nil
}
