package protocol

// What the management layer (protocol/management, wired by cmd/lyre) sees of connections: traffic
// counters, the session a front-end attaches once a client has logged in, and the list of live
// connections with a way to end one (see the package doc, "Management").

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
)

// ErrKicked is the close reason of a connection an administrator disconnected (Server.Disconnect).
var ErrKicked = errors.New("protocol: disconnected by an administrator")

// Traffic is what passed through connections: socket bytes and application messages (PUBLISH, SEND,
// MESSAGE), each way, and the messages dropped because the client did not keep up.
type Traffic struct {
	BytesIn, BytesOut       uint64
	MessagesIn, MessagesOut uint64
	// Dropped counts messages meant for the client that its front-end dropped because the client's window
	// or outbound queue was full (slow subscriber): QoS 0 and non-persistent topic messages, and the
	// oldest messages of a subscriber marked slow.
	Dropped uint64
}

func (t *Traffic) add(o Traffic) {
	t.BytesIn += o.BytesIn
	t.BytesOut += o.BytesOut
	t.MessagesIn += o.MessagesIn
	t.MessagesOut += o.MessagesOut
	t.Dropped += o.Dropped
}

// counters are a connection's Traffic as it runs. Most are written by one goroutine (the reader or the
// writer) and read by scrapes: uncontended atomics. msgsOut and dropped are also written by deliveries on
// publishers' goroutines, one atomic add each.
type counters struct {
	bytesIn, bytesOut, msgsIn, msgsOut, dropped atomic.Uint64
}

func (c *counters) snapshot() Traffic {
	return Traffic{BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		MessagesIn: c.msgsIn.Load(), MessagesOut: c.msgsOut.Load(), Dropped: c.dropped.Load()}
}

// CountIn counts n messages received from the client (the front-end, on the reader goroutine).
func (c *Conn) CountIn(n int) { c.stats.msgsIn.Add(uint64(n)) }

// CountOut counts n messages queued for the client.
func (c *Conn) CountOut(n int) { c.stats.msgsOut.Add(uint64(n)) }

// CountDropped counts n messages for the client that were dropped because it did not keep up (its window
// or outbound queue was full). Safe from any goroutine; it never blocks.
func (c *Conn) CountDropped(n int) { c.stats.dropped.Add(uint64(n)) }

// Traffic returns the connection's counters so far.
func (c *Conn) Traffic() Traffic { return c.stats.snapshot() }

// Session is what a front-end attaches to a connection once its client has logged in (SetSession), so
// management can list who is connected. Describe is called from any goroutine and must not block.
type Session interface {
	Describe() SessionInfo
}

// SessionInfo describes a logged-in client.
type SessionInfo struct {
	VirtualHost string
	User        string // "" for anonymous
	ClientID    string // MQTT client id, STOMP client-id header (or the session id)
	Version     string // protocol version: "3.1.1", "5", "1.2", ...
	// Persistent is true for an MQTT session that outlives the connection.
	Persistent bool
	// Subscriptions are the client's subscriptions in its own wire syntax.
	Subscriptions []string
}

// SetSession attaches s to the connection; nil detaches it.
func (c *Conn) SetSession(s Session) {
	c.out.mu.Lock()
	c.session = s
	c.out.mu.Unlock()
}

func (c *Conn) sessionInfo() (SessionInfo, bool) {
	c.out.mu.Lock()
	s := c.session
	c.out.mu.Unlock()
	if s == nil {
		return SessionInfo{}, false
	}
	return s.Describe(), true
}

// ConnInfo is a snapshot of one live connection.
type ConnInfo struct {
	ID        uint64
	Connector string
	Protocol  string // MQTT or STOMP
	Transport string // tcp, tls, ws, wss
	Remote    string
	Since     time.Time
	Traffic   Traffic
	// LoggedIn is false while the client has not completed its CONNECT; Session is then empty.
	LoggedIn bool
	Session  SessionInfo
}

// Info returns a snapshot of the connection.
func (c *Conn) Info() ConnInfo {
	ci := ConnInfo{ID: c.id, Connector: c.set.Connector.Name, Protocol: c.proto, Transport: c.Transport(),
		Remote: c.nc.RemoteAddr().String(), Since: time.Unix(0, c.since), Traffic: c.stats.snapshot()}
	ci.Session, ci.LoggedIn = c.sessionInfo()
	return ci
}

// Connections returns a snapshot of every live connection whose protocol is known, by ID.
func (s *Server) Connections() []ConnInfo {
	s.mu.Lock()
	conns := s.connsLocked()
	s.mu.Unlock()
	out := make([]ConnInfo, 0, len(conns))
	for _, c := range conns {
		out = append(out, c.Info())
	}
	slices.SortFunc(out, func(a, b ConnInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Disconnect closes the connection with the given ID (ErrKicked); false when there is none. The
// front-end sees its connection end as if the network had dropped it: an MQTT will is published.
func (s *Server) Disconnect(id uint64) bool {
	s.mu.Lock()
	var found *Conn
	for c := range s.conns {
		if c.id == id {
			found = c
			break
		}
	}
	s.mu.Unlock()
	if found == nil {
		return false
	}
	found.Close(ErrKicked)
	return true
}

// ConnectorStats are one connector's counters.
type ConnectorStats struct {
	Name      string
	Protocols []string
	Active    int64 // connections open now (HTTP ones included)
	Accepted  uint64
	// Refused counts connections closed before reaching a front-end, by reason: "max_connections",
	// "unknown_protocol", "detect_timeout", "tls_handshake", "http_refused".
	Refused map[string]uint64
	// Traffic is by protocol and virtual host ("" before login), live connections and ended ones.
	Traffic []ProtocolTraffic
}

// ProtocolTraffic is the traffic of one protocol on one virtual host through one connector.
type ProtocolTraffic struct {
	Protocol, VirtualHost string
	Traffic
}

// Refusal reasons in ConnectorStats.Refused.
const (
	RefusedMaxConnections  = "max_connections"
	RefusedUnknownProtocol = "unknown_protocol"
	RefusedDetectTimeout   = "detect_timeout"
	RefusedTLSHandshake    = "tls_handshake"
	RefusedHTTP            = "http_refused"
)

// listenerStats are a listener's counters beside its active count.
type listenerStats struct {
	accepted atomic.Uint64
	refused  [5]atomic.Uint64 // by refusalReasons index
	mu       sync.Mutex
	ended    map[trafficKey]*Traffic // traffic of connections that ended
}

var refusalReasons = [...]string{RefusedMaxConnections, RefusedUnknownProtocol, RefusedDetectTimeout,
	RefusedTLSHandshake, RefusedHTTP}

func (ls *listenerStats) refuse(reason string) {
	ls.refused[slices.Index(refusalReasons[:], reason)].Add(1)
}

type trafficKey struct{ proto, host string }

// retire adds an ended connection's traffic to the listener's totals.
func (ls *listenerStats) retire(c *Conn) {
	si, _ := c.sessionInfo()
	t := c.stats.snapshot()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.ended == nil {
		ls.ended = make(map[trafficKey]*Traffic)
	}
	k := trafficKey{c.proto, si.VirtualHost}
	tt := ls.ended[k]
	if tt == nil {
		tt = new(Traffic)
		ls.ended[k] = tt
	}
	tt.add(t)
}

// ConnectorStats returns every connector's counters, in the order they were bound.
func (s *Server) ConnectorStats() []ConnectorStats {
	s.mu.Lock()
	lns := slices.Clone(s.lns)
	conns := s.connsLocked()
	s.mu.Unlock()
	byListener := make(map[*Settings]map[trafficKey]*Traffic, len(lns))
	for _, l := range lns {
		m := make(map[trafficKey]*Traffic)
		l.stats.mu.Lock()
		for k, t := range l.stats.ended {
			tt := *t
			m[k] = &tt
		}
		l.stats.mu.Unlock()
		byListener[l.set] = m
	}
	for _, c := range conns {
		m := byListener[c.set]
		if m == nil {
			continue // a listener closed meanwhile
		}
		si, _ := c.sessionInfo()
		k := trafficKey{c.proto, si.VirtualHost}
		if m[k] == nil {
			m[k] = new(Traffic)
		}
		m[k].add(c.stats.snapshot())
	}
	out := make([]ConnectorStats, 0, len(lns))
	for _, l := range lns {
		cs := ConnectorStats{Name: l.set.Connector.Name, Protocols: l.set.Connector.Protocols(),
			Active: l.active.Load(), Accepted: l.stats.accepted.Load(), Refused: make(map[string]uint64, len(refusalReasons))}
		for i, r := range refusalReasons {
			cs.Refused[r] = l.stats.refused[i].Load()
		}
		for k, t := range byListener[l.set] {
			cs.Traffic = append(cs.Traffic, ProtocolTraffic{Protocol: k.proto, VirtualHost: k.host, Traffic: *t})
		}
		slices.SortFunc(cs.Traffic, func(a, b ProtocolTraffic) int {
			return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.VirtualHost, b.VirtualHost))
		})
		out = append(out, cs)
	}
	return out
}

// errManagement routes a request that is not a WebSocket upgrade to the management handler.
var errManagement = errors.New("protocol: management request")

// errHandedOff ends detection for a connection handed to the management HTTP server, which closes it.
var errHandedOff = errors.New("protocol: connection handed to the management http server")

// SetManagement sets the handler of HTTP requests that are not WebSocket upgrades on connectors with
// management on (the REST API, metrics, console). Set it before Listen; nil answers them 404.
func (s *Server) SetManagement(h http.Handler) {
	s.mu.Lock()
	s.mgmt = h
	s.mu.Unlock()
}

func (s *Server) managementHandler() http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mgmt
}

type connectorKey struct{}

// ConnectorOf returns the connector a management request came through (from its context), or nil.
func ConnectorOf(ctx context.Context) *conf.Connector {
	c, _ := ctx.Value(connectorKey{}).(*conf.Connector)
	return c
}

// handOff gives nc, whose first bytes (replayed) are an HTTP request for the management handler, to the
// server's HTTP server, which serves it and any later request on it (keep-alive) and closes it. The
// connection holds its connector slot until then. On error nc is not handed off: the caller closes it.
func (s *Server) handOff(l *listener, nc net.Conn, replayed []byte) error {
	if err := clearDeadlines(nc); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.httpLn == nil {
		s.httpLn = &chanListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: l.ln.Addr()}
		s.httpSrv = &http.Server{
			Handler:           keptAliveUpgrades(s.mgmt),
			ReadHeaderTimeout: conf.DefaultUpgradeTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          zap.NewStdLog(s.log.Named("http")),
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if hc, ok := c.(*httpConn); ok {
					return context.WithValue(ctx, connectorKey{}, &hc.l.set.Connector)
				}
				return ctx
			},
		}
		s.wg.Add(1)
		go func(srv *http.Server, ln net.Listener) {
			defer s.wg.Done()
			_ = srv.Serve(ln)
		}(s.httpSrv, s.httpLn)
	}
	hl := s.httpLn
	s.mu.Unlock()
	// Once accepted, the connection keeps the slot its detection took (serve does not give it back);
	// httpConn.Close does.
	hc := &httpConn{Conn: nc, r: io.MultiReader(bytes.NewReader(replayed), nc), l: l}
	select {
	case hl.ch <- hc:
		return nil
	case <-hl.done:
		return ErrServerClosed // the caller closes nc and gives the slot back
	}
}

// keptAliveUpgrades wraps the management handler: a WebSocket request arriving on a connection the
// management server keeps alive (the first request on a connection is routed before it gets here) is
// answered 426 and the connection closed, so the client opens its WebSocket on a new one. Browsers do
// that anyway: they never send an upgrade over a pooled connection.
func keptAliveUpgrades(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := ConnectorOf(r.Context()); c != nil && c.HTTP != nil { // with defaults: see NewSettings
			hc := c.HTTP
			if r.URL.Path == hc.MQTTPath || r.URL.Path == hc.STOMPPath || headerHasToken(r.Header, "Upgrade", "websocket") {
				w.Header().Set("Connection", "close")
				w.Header().Set("Upgrade", "websocket")
				http.Error(w, r.URL.Path+" is a WebSocket endpoint: open it on a new connection", http.StatusUpgradeRequired)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// shutdownHTTP stops the management HTTP server: no new requests, those running finish until ctx ends.
func (s *Server) shutdownHTTP(ctx context.Context) {
	s.mu.Lock()
	hs, hl := s.httpSrv, s.httpLn
	s.mu.Unlock()
	if hs == nil {
		return
	}
	hl.close()
	_ = hs.Shutdown(ctx)
	_ = hs.Close()
}

// httpConn is a connection served by the management HTTP server: the request bytes read while
// detecting come first.
type httpConn struct {
	net.Conn
	r    io.Reader
	l    *listener
	once sync.Once
}

func (c *httpConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *httpConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.active.Add(-1) })
	return err
}

// chanListener is the management HTTP server's listener: connections arrive from handOff.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close() { l.once.Do(func() { close(l.done) }) }

func (l *chanListener) Close() error { l.close(); return nil }

func (l *chanListener) Addr() net.Addr { return l.addr }

// recorder keeps a copy of what is read through it: the bytes of a request read while detecting, for
// the management server to read again.
type recorder struct {
	r   io.Reader
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}
