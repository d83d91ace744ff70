// Package management serves Lyre's HTTP management interface on connectors with `management = true`:
// Prometheus metrics (/metrics), a JSON REST API (/api/v1/, described by /api/v1/openapi.json) with
// publishing over HTTP, and an embedded web console (/console/). It also publishes each virtual host's
// $SYS topics. protocol hands it the HTTP requests that are not WebSocket upgrades (Server.SetManagement);
// cmd/lyre wires it to the broker.
//
// # Authorization
//
// Requests authenticate with HTTP basic auth against a virtual host's users; without an Authorization
// header the request is anonymous, which only an anonymous host accepts. Requests under
// /api/v1/vhosts/{vhost}/ use that host; broker-wide ones (/metrics, /api/v1/broker, /api/v1/vhosts,
// /api/v1/connections, /api/v1/reload) use the host a "user@host" user name names (as MQTT does), else
// the connector's virtual_host, else the first host. Access rules then decide, as for clients:
//
//   - reading a host's resources needs action monitor on kind virtual_host (id: the host's name);
//   - changing them (disconnect, delete a session, purge, move, delete a queue or a retained message)
//     needs admin on kind virtual_host;
//   - publishing needs send on the topic or queue, like any publisher;
//   - broker-wide views need monitor on kind broker (id "broker"), reload needs admin on kind broker.
//
// A host without access rules allows everything to those it lets in. The connect permission is not
// asked: a monitoring account need not be able to connect as a client. A failed login is answered 401
// after the host's login throttle delay (the same per-address throttle MQTT and STOMP logins feed), and
// counted. Every 401 and 403 is logged at Info ("management request refused", with the status, method,
// path, host, user name and remote address, never the password), as the front-ends log their refusals.
// Logins go through the host's credential cache (virtualhost.Host.Verify, the host's credential_cache),
// so a console polling every few seconds does not pay bcrypt on every request; a reload forgets it. A {vhost} no host has is a 404 only for a user who may monitor the broker (who
// can list the hosts anyway, and is checked as a broker-wide request is); anyone else gets the 401 of
// wrong credentials, after the same bcrypt work, so host names cannot be probed before a login (the MQTT
// and STOMP front-ends answer an unknown host the same way). Requests that carry "X-Requested-With" (the console's fetches) get their 401
// without a WWW-Authenticate header, so the browser shows the console's login form rather than its own.
//
// # REST API
//
// /api/v1/ is JSON; every route is in apiHandlers and in openapi.json, which documents exactly those (a
// test compares them both ways) and is served without login. Names of queues and topics are the access
// rule ids' (virtualhost.PatternGrammar): the STOMP grammar without prefix, URL-escaped in the path, and
// rendered back the same way. Listings are snapshots in a stable order (the router's sorted ones), cut
// into pages. GET /api/v1/vhosts lists every host for monitor on kind broker and, for a tenant's operator
// who only has monitor on the host they log in to, that host alone.
//
// Changes wait for their store writes before answering (a virtualhost.Tracker): a purge, a move (the
// router journals each message's departure and arrival in one batch), a deleted retained message. A
// queue is deleted by purging it and then forgetting it (router.ForgetQueue); one with consumers is
// refused (409), since nothing could tell them it is gone. A session is deleted only offline (409 while
// its client is connected: disconnect it first).
//
// An HTTP publish is a publisher like any other. It needs send on the destination; its body is bounded
// by the smallest max_message_length of the connector's protocols and the host's, read through
// http.MaxBytesReader (413 without buffering more); the message headers follow the STOMP SEND rules
// (protocol.ParseExpires, ParsePriority, ReservedHeader), from X-Lyre-<Name> request headers named
// <name> in lower case. A persistent message's writes are gathered in one commit (an atomic Tracker, as
// for an MQTT PUBLISH) and the 201 waits for it, the guarantee of a PUBACK. A full queue whose policy is
// block holds the request for queueFullWait, retrying as STOMP does (protocol.RetryFull), then 503 with
// Retry-After; subscribers over their windows hold it for protocol.PaceTimeout at most (a protocol.Pacer
// as the message's Publisher), as a connection's reader is held.
//
// # Metrics
//
// GET /metrics serves the Prometheus text format from a registry of the Manager's own (never the global
// one): Go runtime and process collectors, and one collector that builds every lyre_ metric at scrape
// time from counters the broker keeps anyway (connector counters, router.Stats, the hosts' gauges, the
// MQTT sessions list). Nothing is counted on the publish path for monitoring's sake. Labels are bounded:
// connector, protocol and vhost (all from the configuration), and small fixed sets (reason, state). There
// is no per-client label, and no per-queue one either: temporary queues and per-session durable
// subscriptions make queue names unbounded, so queue figures are summed per host and kind; the REST API
// lists queues one by one. The README's Monitoring section lists the metrics.
//
// # $SYS
//
// Every virtual host gets mosquitto's $SYS/broker/... topics (version, uptime, clients/..., messages/...,
// load/.../1min|5min|15min, heap/...), published into the host's router as retained topic messages by
// one goroutine, every sys_interval: read on each tick, so a reload changes the period from the next one;
// 0 turns them off and clears what was published. A value is published only when it changed since the
// last tick, as mosquitto does. Most figures are the host's own (its clients, its traffic, its retained
// messages), so a tenant sees nothing of another; version, uptime, heap and load/connections (connections
// are accepted before their host is known) are broker-wide. The messages are router.Message.Internal:
// retained in memory only, never written to the host's store (they are recomputed after a restart), and
// not counted as published. Clients read them like any topic, subject to access rules: receive on
// "$SYS.**" (a rule whose id starts with a wildcard does not cover $ topics).
//
// # Cluster
//
// On a node with a cluster block, Options.Cluster gives the cluster state (ClusterInfo, filled by cmd/lyre
// from router/cluster's Link.Status: management itself knows nothing of NATS). It is served as GET
// /api/v1/cluster (404 without a cluster) and the cluster section of GET /api/v1/broker, both for monitor
// on kind broker; as the lyre_cluster_ metrics; and as $SYS/broker/cluster/... on every host, published
// at once when Options.ClusterChanged signals rather than at the next sys_interval.
//
// # Web console
//
// /console/ is a single page in plain JavaScript modules with no build step, embedded from console/
// (go:embed) and served by consoleHandler: index.html, app.js (API calls, pages, polling), table.js,
// format.js, graph.js and app.css. The files hold no data and are served without login; everything the
// page shows it fetches from /api/v1 as the user, so the API's checks are the console's (an action a user
// may not take is refused with the API's 403 text, shown as is). Each file carries an ETag of its content
// and Cache-Control no-cache: a browser revalidates (304) and never mixes files of two builds.
//
// The page is its own login form: its fetches carry X-Requested-With, so a 401 comes without
// WWW-Authenticate and the browser keeps its prompt to itself. The credentials the user types are kept in
// the tab's sessionStorage and sent as basic auth on every fetch; they are forgotten when the API refuses
// them or the user signs out. Since script in the page could read them, the page is served with a
// Content-Security-Policy that allows only its own files (no inline script or style, no eval, no other
// origin, no framing, no form submission, no base URL) and it writes every value with textContent, never as
// HTML; TestConsoleSourcesObeyCSP checks the sources for both. Rates are computed in the page from
// successive GET /api/v1/broker (every 2 s) and drawn on a canvas for the last 5 minutes: the broker keeps
// no history. The real-browser tests are cmd/lyre's TestConsole and TestConsoleActions.
package management
