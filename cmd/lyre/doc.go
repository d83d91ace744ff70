// Command lyre runs the Lyre message broker.
//
//	lyre [--config FILE] [--check] [--version] [--log-level LEVEL] [--log-format console|json]
//	lyre passwd [--cost N] [--iterations N] < password  # a password's users-file lines (bcrypt, SCRAM)
//	lyre store export|import|check ...                  # back up, restore or verify a virtual host's store
//
// Without --config it runs the embedded default configuration: MQTT and STOMP autodetected on
// 127.0.0.1:61613, MQTT on 127.0.0.1:1883, one anonymous virtual host "default".
//
// # Open files
//
// Every connection is a file descriptor. At startup and on each reload the broker compares each
// connector's max_connections, and their sum, with the process's open-file limit (RLIMIT_NOFILE; the Go
// runtime raises the soft limit to the hard one at startup) less 256 descriptors kept for listeners,
// stores and logs, and logs a warning for a connector (or a total) the limit cannot hold: past it accept
// fails with "too many open files". Nothing is refused, since the limit is the system's to raise.
//
// # Garbage collector
//
// The process sets GOGC itself, every second, from the live heap and the allocation rate (gctune.go): a
// large heap that changes slowly (thousands of idle connections) gets a quarter of itself as headroom
// instead of all of itself, a small busy one up to 64 MiB so it collects about once a second's
// allocation, and a large busy one GOGC's default. Measured: 19,000 idle MQTT connections with pings
// every 15 s settle at 3.5 KiB of RSS each instead of 4.1-4.6; QoS 1 fan-in 8→1 costs the broker 1.4-2.0
// µs of CPU per message instead of 2.3. The price: right after a storm of connections, whose allocation
// widened the headroom, RSS is higher until collections catch up (5,000 idle connections measured 2 s
// after connecting: 3.5 KiB each instead of 3.3; over TLS 25.7 instead of 21). GOGC or GOMEMLIMIT in the
// environment turn it off.
//
// # Live reload
//
// SIGHUP, and management's POST /api/v1/reload, call Broker.Reload (reload.go): the configuration file
// the broker started with (or the embedded one, then only applied again) is read and checked whole
// before anything changes: conf.Load, then each kept host's new users file and rules
// (virtualhost.Host.Prepare) and each new connector's TLS files (protocol.Server.CheckConnector). A
// configuration that fails is refused whole: Reload returns the error, and logs one line listing the
// problems exactly as --check prints them (file:line:col); the running configuration stays.
//
// What runs is compared with the new file, not with the previous file: hosts by name (the registry),
// connectors by name with the configuration they were bound with (protocol.Server.Connectors). So a
// connector that failed to bind, or a host whose store did not open, is tried again by the next reload.
// A kept host changes in place (users, groups, rules, policies, limits, host names, anonymous); one
// whose store block changed is a new host: the old one is retired and closed, the new one opened. A
// connector whose settings changed in any way is replaced (logged "connector replaced"): its listener
// and connections go, and it is bound again; certificate files of the others are read again.
//
// Connections: the hosts take their new settings first, then every logged-in connection is re-checked
// by its front-end (protocol.Server.Recheck; see protocol's doc, "Reload", for why the check runs on
// the reload's goroutine and ends every connection whose live state would have to change under its
// reader). Connections of removed hosts and connectors, removed users, and revoked rights are told why
// and closed; the reload waits for them (reloadDrain at most, then closes them hard) before it closes
// a removed host's router and store, since their front-ends' cleanup still uses them. New hosts get
// their persistent MQTT sessions back from their store before the registry lets clients reach them.
// Nothing else is touched: a connection of an unchanged host on an unchanged connector is never
// closed. Reloads are serialised, and Shutdown waits for one in progress.
//
// Failures while applying (a port in use, a store that does not open) do not undo what was applied:
// they are logged and returned, and the new configuration is stored (sys_interval, management's view)
// with the rest applied. One Info line, "configuration reloaded", lists the hosts and connectors
// added, removed, replaced or changed (and how), and the connections closed.
//
// # Cluster
//
// With a cluster block the broker starts its cluster link (router/cluster) after the virtual hosts and
// before the connectors, and attaches every host's router; Shutdown closes it after the connections and
// before the hosts, since it publishes into their routers until then. A reload does not change the link:
// a changed cluster block is logged and waits for a restart, and a virtual host the reload adds is not
// attached. The link starts before management, which shows its state (Broker.clusterInfo copies
// cluster.Status into a management.ClusterInfo, so management imports no NATS) and publishes
// $SYS/broker/cluster/... as soon as Link.Changed signals.
// The MQTT handler gets a virtualhost.Directory over the link (SetDirectory, after its
// sessions are restored, before the connectors accept), so client ids are claimed cluster-wide and a
// session follows its client to the node it connects to (protocol/mqtt's doc, Clusters).
package main
