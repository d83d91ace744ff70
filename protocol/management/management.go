package management

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// Errors of Sessions.DeleteSession.
var (
	// ErrSessionOnline refuses to delete a session whose client is connected: disconnect it first.
	ErrSessionOnline = errors.New("management: the session's client is connected")
	// ErrNoSession is returned for a client id (or virtual host) without a session.
	ErrNoSession = errors.New("management: no such session")
)

// Sessions is what the MQTT front-end tells management about its sessions.
type Sessions interface {
	// Sessions lists the MQTT sessions of a virtual host, online and offline.
	Sessions(vhost string) []SessionInfo
	// DeleteSession removes an offline session with its subscriptions and backlog; ErrSessionOnline when
	// its client is connected, ErrNoSession when there is none.
	DeleteSession(vhost, clientID string) error
}

// SessionInfo describes one MQTT session.
type SessionInfo struct {
	ClientID string `json:"client_id"`
	User     string `json:"user,omitempty"`
	Online   bool   `json:"online"`
	// Persistent is false for a clean session, which ends with its connection.
	Persistent    bool     `json:"persistent"`
	Subscriptions []string `json:"subscriptions"`
	// Backlog is the messages waiting for the session's client: in its durable subscriptions, and in the
	// session's own queue behind the in-flight window.
	Backlog  int `json:"backlog"`
	Inflight int `json:"inflight"`
	// ExpiresAt is when an offline session expires; zero for never or online.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Options wire a Manager to the broker.
type Options struct {
	Version string
	Started time.Time
	// Hosts are the broker's virtual hosts.
	Hosts *virtualhost.Registry
	// Server lists and disconnects connections and counts connector traffic.
	Server *protocol.Server
	// Sessions lists MQTT sessions; nil lists none.
	Sessions Sessions
	// Config returns the configuration running now (it changes on reload).
	Config func() *conf.Config
	// Reload re-reads and applies the configuration (POST /api/v1/reload); nil answers 501.
	Reload func() error
	// Cluster returns the node's cluster state; nil on a node without a cluster block.
	Cluster func() *ClusterInfo
	// ClusterChanged is signalled when the cluster state changes, so $SYS/broker/cluster/... tells at once
	// rather than at the next sys_interval; nil waits for it.
	ClusterChanged <-chan struct{}
	Log            *zap.Logger
}

// Manager is the management HTTP handler, and publishes $SYS topics until Close.
type Manager struct {
	o   Options
	log *zap.Logger
	mux *http.ServeMux

	closeOnce sync.Once
	quit      chan struct{}
	wg        sync.WaitGroup
}

// New returns a Manager serving the management routes. Close stops its background work.
func New(o Options) *Manager {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	m := &Manager{o: o, log: o.Log, mux: http.NewServeMux(), quit: make(chan struct{})}
	m.metricsRoutes()
	m.apiRoutes()
	m.consoleRoutes()
	m.startSys()
	return m
}

// ServeHTTP serves one management request.
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	m.mux.ServeHTTP(w, r)
}

// Close stops the $SYS publisher.
func (m *Manager) Close() {
	m.closeOnce.Do(func() { close(m.quit) })
	m.wg.Wait()
}

// config returns the running configuration, or nil.
func (m *Manager) config() *conf.Config {
	if m.o.Config == nil {
		return nil
	}
	return m.o.Config()
}
