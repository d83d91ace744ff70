package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/mqtt"
	"github.com/lyremq/lyre/protocol/stomp"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/router/cluster"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/virtualhost"
)

// Broker is one running Lyre: virtual hosts and the connectors serving them.
type Broker struct {
	log   *zap.Logger
	hosts *virtualhost.Registry
	srv   *protocol.Server
	mqtt  *mqtt.Handler
	mgmt  *management.Manager
	// link joins the hosts' routers to the cluster; nil without a cluster block.
	link *cluster.Link
	cfg  atomic.Pointer[conf.Config] // running now
	// reloading serialises Reload, and Shutdown with it; down is set by Shutdown, under it.
	reloading sync.Mutex
	down      bool
}

// Start builds the virtual hosts, then binds every connector. On error nothing is left running.
func Start(cfg *conf.Config, log *zap.Logger) (*Broker, error) {
	hosts := make([]*virtualhost.Host, 0, len(cfg.VirtualHosts))
	for _, vc := range cfg.VirtualHosts {
		h, err := openHost(vc, cfg, log)
		if err != nil {
			virtualhost.NewRegistry(hosts...).Close()
			return nil, err
		}
		hosts = append(hosts, h)
	}
	warnAnonymous(cfg, log)
	warnOpenFiles(cfg, log)
	reg := virtualhost.NewRegistry(hosts...)
	mh := mqtt.NewHandler(reg, log)
	// Persistent MQTT sessions come back before any connector accepts, so a client resumes its session
	// (their durable subscriptions, and STOMP's, are the router's: the host restored them).
	restored := mh.RestoreAll()
	sh := stomp.NewHandler(reg, log)
	for _, h := range hosts {
		if h.Durable() {
			log.Info("sessions and durable subscriptions restored", zap.String("vhost", h.Name),
				zap.Int("mqtt_sessions", restored[h.Name]), zap.Int("durable_subscriptions", h.Router.Stats().Durables))
		}
	}
	srv := protocol.NewServer(log, map[string]protocol.Handler{
		"mqtt":  mh,
		"stomp": sh,
	})
	b := &Broker{log: log, hosts: reg, srv: srv, mqtt: mh}
	b.cfg.Store(cfg)
	mo := management.Options{Version: version, Hosts: reg, Server: srv, Sessions: mh,
		Config: b.cfg.Load, Reload: b.Reload, Log: log.Named("management")}
	if cfg.Cluster != nil {
		// Before the connectors: a client's first subscription already becomes cluster interest. Before
		// management, which shows the link's state.
		if err := b.joinCluster(cfg.Cluster, hosts); err != nil {
			_ = b.Shutdown(context.Background())
			return nil, err
		}
		mo.Cluster, mo.ClusterChanged = b.clusterInfo, b.link.Changed()
	}
	b.mgmt = management.New(mo)
	srv.SetManagement(b.mgmt)
	for _, c := range cfg.Connectors {
		if err := srv.Listen(c); err != nil {
			_ = b.Shutdown(context.Background())
			return nil, fmt.Errorf("connector %q: %w", c.Name, err)
		}
	}
	return b, nil
}

// Addrs returns the bound address of each connector by name.
func (b *Broker) Addrs() map[string]net.Addr { return b.srv.Addrs() }

// Hosts returns the virtual host registry.
func (b *Broker) Hosts() *virtualhost.Registry { return b.hosts }

// Shutdown stops accepting, says goodbye to every connection, waits for them until ctx is done, then
// releases the hosts.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.reloading.Lock() // a reload running finishes first
	defer b.reloading.Unlock()
	b.down = true
	err := b.srv.Shutdown(ctx)
	// After the connections (nothing local publishes any more), before the hosts: the link publishes into
	// their routers until it is closed.
	if b.link != nil {
		b.link.Close()
	}
	if b.mgmt != nil { // nil when joining the cluster failed
		b.mgmt.Close()
	}
	b.mqtt.Close() // its session expiry and will timers
	b.hosts.Close()
	return err
}

// joinCluster starts the cluster link and attaches every host's router to it. Hosts a reload adds are not
// attached (see router/cluster's doc).
func (b *Broker) joinCluster(c *conf.Cluster, hosts []*virtualhost.Host) error {
	l, err := cluster.Start(cluster.Config{Name: c.Name, Node: c.Node, Listen: c.Listen, Routes: c.Routes,
		Advertise: c.Advertise, NATSURL: c.NATSURL, Directory: c.Directory, Replicas: c.Replicas}, b.log)
	if err != nil {
		return err
	}
	b.link = l
	for _, h := range hosts {
		if _, err := l.Attach(h.Name, h.Router); err != nil {
			return err
		}
	}
	// Retained messages from the cluster before the first subscriber, for a bounded time: without a
	// JetStream quorum yet the node starts with its own and loads the cluster's when it can.
	ctx, cancel := context.WithTimeout(context.Background(), retainedLoadWait)
	defer cancel()
	if err := l.WaitRetained(ctx); err != nil {
		b.log.Warn("cluster retained messages not loaded yet; serving this node's until they are", zap.Error(err))
	}
	// MQTT client ids are claimed cluster-wide: a session moves to the node its client connects to (and,
	// with JetStream, outlives its node: its record and backlog are replicated).
	b.mqtt.SetDirectory(virtualhost.NewDirectory(l, c.Node, b.log))
	return nil
}

// The link keeps MQTT session records cluster-wide when it has JetStream (the directory asks it).
var _ virtualhost.RecordTransport = (*cluster.Link)(nil)

// retainedLoadWait bounds how long a starting node waits for the cluster's retained messages.
const retainedLoadWait = 5 * time.Second

// Cluster returns the cluster link, nil without a cluster block.
func (b *Broker) Cluster() *cluster.Link { return b.link }

// clusterInfo is the link's state for management.
func (b *Broker) clusterInfo() *management.ClusterInfo {
	st := b.link.Status()
	ci := &management.ClusterInfo{Name: st.Name, Node: st.Node, Mode: st.Mode, Connected: st.Connected, Since: st.Since,
		Disconnects: st.Disconnects, Routes: st.Routes, Server: st.Server, Peers: make([]management.ClusterPeer, 0, len(st.Peers)),
		Messages: management.ClusterMessages{Sent: st.Stats.Sent, Received: st.Stats.Received, Dropped: st.Stats.Dropped,
			TooLarge: st.Stats.TooLarge, Duplicates: st.Stats.Duplicates, Malformed: st.Stats.Malformed,
			InDropped: st.Stats.InDropped}}
	for _, p := range st.Peers {
		ci.Peers = append(ci.Peers, management.ClusterPeer{Name: p.Name, Connected: p.Connected, Since: p.Since})
	}
	return ci
}

// openHost opens virtual host vc of configuration cfg (broker rules first), with its store when it has a
// store block, and logs what it is and what its store held.
func openHost(vc conf.VirtualHost, cfg *conf.Config, log *zap.Logger) (*virtualhost.Host, error) {
	opts := []virtualhost.Option{virtualhost.WithBrokerRules(cfg.AccessRules),
		virtualhost.WithLogger(log.With(zap.String("vhost", vc.Name)))}
	if vc.Store != nil {
		st, err := openStore(vc, log)
		if err != nil {
			return nil, fmt.Errorf("virtual_host %q: %w", vc.Name, err)
		}
		opts = append(opts, virtualhost.WithStore(st))
	}
	h, err := virtualhost.Open(vc, router.Options{}, opts...)
	if err != nil {
		return nil, fmt.Errorf("virtual_host %q: %w", vc.Name, err)
	}
	log.Info("virtual host", zap.String("vhost", h.Name), zap.Strings("host_names", h.HostNames()),
		zap.Bool("anonymous", h.Anonymous()))
	if h.Durable() {
		logRecovered(log, vc, h.Recovered())
	}
	return h, nil
}

// openStore opens the badger store of a host's store block; its warnings go to the log.
func openStore(vc conf.VirtualHost, log *zap.Logger) (store.Store, error) {
	st, err := badgerstore.Open(vc.Store.Directory, badgerstore.Options{NoSync: !vc.Store.Sync, FlushDelay: vc.Store.FlushDelay,
		Logger: log.Named("store").With(zap.String("vhost", vc.Name)).Sugar()})
	if err != nil {
		return nil, fmt.Errorf("store %q: %w", vc.Store.Directory, err)
	}
	return st, nil
}

// logRecovered logs what a host's store held at startup.
func logRecovered(log *zap.Logger, vc conf.VirtualHost, c store.Counts) {
	log.Info("store recovered", zap.String("vhost", vc.Name), zap.String("directory", vc.Store.Directory),
		zap.Int("queues", c.Queues), zap.Int("queue_messages", c.QueueEntries),
		zap.Int("durable_subscriptions", c.DurableSubs), zap.Int("durable_subscription_messages", c.DurableSubEntries),
		zap.Int("sessions", c.Sessions),
		zap.Int("inflight", c.Inflight), zap.Int("inbound_qos2", c.Inbound),
		zap.Int("retained", c.Retained), zap.Int("messages", c.Messages))
}

// warnAnonymous logs a warning for each anonymous virtual host that a connector on a non-loopback
// address can reach: anyone on the network may then use it without credentials. A connector reaches its
// own virtual_host, or every host when it names none (STOMP picks by the host header).
func warnAnonymous(cfg *conf.Config, log *zap.Logger) {
	for _, c := range cfg.Connectors {
		if loopbackBind(c.Address) {
			continue
		}
		for _, h := range cfg.VirtualHosts {
			if !h.Anonymous || (c.VirtualHost != "" && !strings.EqualFold(c.VirtualHost, h.Name) && !slices.Contains(c.Protocols(), "stomp")) {
				continue
			}
			log.Warn("anonymous access is on for a virtual host served on a non-loopback address: anyone who can reach it may connect without credentials",
				zap.String("vhost", h.Name), zap.String("connector", c.Name), zap.String("bind", c.Bind))
		}
	}
}

// loopbackBind reports whether address ("host:port") listens on loopback only.
func loopbackBind(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
