package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
)

// Handler serves one recognised connection on the connection's reader goroutine; when Serve returns the
// connection is flushed (bounded by a one-second deadline) and closed. Serve must return once reads
// from c.Reader fail.
type Handler interface{ Serve(c *Conn) }

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Conn)

// Serve calls f(c).
func (f HandlerFunc) Serve(c *Conn) { f(c) }

// Server accepts connections on any number of connectors and hands each to its protocol's Handler.
type Server struct {
	// MaxPending bounds each connection's outbound queue in bytes beyond its largest message (a message
	// is never refused for its size); 0 means DefaultMaxPending (8 MiB). Set it before Listen.
	MaxPending int
	// WriteTimeout closes a connection as a slow consumer when a socket write makes no progress for this
	// long; 0 means DefaultWriteTimeout (10s). Set it before Listen.
	WriteTimeout time.Duration

	log      *zap.Logger
	handlers map[string]Handler
	pace     atomic.Int64 // SetPaceTimeout; 0 = PaceTimeout

	wg       sync.WaitGroup // every goroutine the server starts
	mu       sync.Mutex
	closing  bool
	quit     chan struct{} // closed when Shutdown starts; wakes accept loops in backoff
	lns      []*listener
	sniffing map[net.Conn]*listener // accepted, protocol not yet known
	conns    map[*Conn]struct{}
	// rechecks counts Recheck calls (recheck.go).
	rechecks atomic.Uint32
	// poll watches parked connections for input (park_linux.go).
	poll pollerOnce

	// The management HTTP server (manage.go), started by the first request handed to it.
	mgmt    http.Handler
	httpSrv *http.Server
	httpLn  *chanListener
}

// NewServer returns a server dispatching recognised connections to handlers, keyed by protocol name
// (MQTT, STOMP).
func NewServer(log *zap.Logger, handlers map[string]Handler) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	return &Server{
		log:      log,
		handlers: handlers,
		quit:     make(chan struct{}),
		sniffing: make(map[net.Conn]*listener),
		conns:    make(map[*Conn]struct{}),
	}
}

func (s *Server) maxPending() int {
	if s.MaxPending > 0 {
		return s.MaxPending
	}
	return DefaultMaxPending
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return DefaultWriteTimeout
}

// listener is one bound connector.
type listener struct {
	orig     conf.Connector // as given to Listen: what a reload compares with
	set      *Settings      // the connector with defaults, shared by its connections
	ln       net.Listener
	active   atomic.Int64 // connections accepted and not yet finished
	refusals rateLimit    // max_connections refusals, for logging
	tls      *tlsListener // nil without TLS

	// Detection failures, for logging.
	httpLogs, unknownLogs, timeoutLogs, tlsLogs rateLimit
	stats                                       listenerStats
}

func (l *listener) maxConnections() int64 { return int64(l.set.Connector.MaxConnections) }

func (l *listener) detectTimeout() time.Duration { return l.set.Connector.DetectTimeout }

// Listen binds the connector's address now and accepts connections in the background until Shutdown.
// A connector with TLS (a Bind starting with "tls://", or TLS in Detect) loads its certificate files
// first. Errors name the connector and its address or file.
func (s *Server) Listen(c conf.Connector) error {
	protos := c.Protocols()
	if len(protos) == 0 {
		return fmt.Errorf("protocol: connector %q: no protocol or detect list", c.Name)
	}
	for _, p := range protos {
		if p != TLS && s.handlers[p] == nil {
			return fmt.Errorf("protocol: connector %q: no handler for protocol %q", c.Name, p)
		}
	}
	set, err := NewSettings(c)
	if err != nil {
		return fmt.Errorf("protocol: %w", err)
	}
	tl, err := newTLSListener(&c)
	if err != nil {
		return err
	}
	network := c.Network
	if network == "" {
		network = "tcp"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return fmt.Errorf("protocol: connector %q: %w", c.Name, ErrServerClosed)
	}
	if slices.ContainsFunc(s.lns, func(l *listener) bool { return l.set.Connector.Name == c.Name }) {
		return fmt.Errorf("protocol: connector %q: duplicate name", c.Name)
	}
	ln, err := net.Listen(network, c.Address)
	if err != nil {
		return fmt.Errorf("protocol: connector %q: listen on %s: %w", c.Name, c.Address, err)
	}
	s.serveLocked(ln, c, set, tl)
	return nil
}

// serveLocked starts accepting on ln for connector orig (set: with its defaults), with TLS when tl is not
// nil. s.mu is held.
func (s *Server) serveLocked(ln net.Listener, orig conf.Connector, set *Settings, tl *tlsListener) {
	c := set.Connector
	l := &listener{orig: orig, set: set, ln: ln, tls: tl}
	l.set.Connector.Detect = slices.Clone(c.Detect)
	if tl != nil {
		l.set.Connector.TLS = &tl.conf
	}
	s.lns = append(s.lns, l)
	fields := []zap.Field{zap.String("connector", c.Name), zap.Stringer("address", ln.Addr()),
		zap.Strings("protocols", c.Protocols())}
	if tl != nil {
		fields = append(fields, zap.String("tls", tl.mode()))
	}
	if c.ServesHTTP() {
		fields = append(fields, zap.Strings("websocket", []string{c.HTTP.MQTTPath, c.HTTP.STOMPPath}))
	}
	s.log.Info("listening", fields...)
	if tl != nil && !tl.always && tl.conf.ClientAuth == "require" {
		s.log.Warn("client_auth require applies to TLS connections only: this autodetecting connector also "+
			"accepts clear text; bind tls:// to require a certificate from every client", zap.String("connector", c.Name))
	}
	s.wg.Add(1)
	go s.acceptLoop(l)
}

// Addrs returns the bound address of each connector, by name.
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]net.Addr, len(s.lns))
	for _, l := range s.lns {
		m[l.set.Connector.Name] = l.ln.Addr()
	}
	return m
}

// acceptLoop accepts until the listener is closed, backing off 5ms..1s on errors (EMFILE and the like)
// as net/http does.
func (s *Server) acceptLoop(l *listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			select {
			case <-s.quit:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed", zap.String("connector", l.set.Connector.Name), zap.Error(err),
				zap.Duration("retry_in", delay))
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.quit:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		l.stats.accepted.Add(1)
		if l.active.Load() >= l.maxConnections() {
			// Close at once rather than leave the client hanging.
			_ = nc.Close()
			l.stats.refuse(RefusedMaxConnections)
			if n := l.refusals.hit(); n > 0 {
				s.log.Warn("max connections reached, connection refused", zap.String("connector", l.set.Connector.Name),
					zap.Int64("max_connections", l.maxConnections()), zap.Int64("refused", n))
			}
			continue
		}
		if !s.track(l, nc) {
			_ = nc.Close()
			return
		}
		l.active.Add(1)
		// Armed here rather than on the new goroutine, whose stack it would grow (see detect). A TLS
		// handshake writes too: its write deadline is set once TLS is recognised (handshakeTLS).
		if l.set.Connector.Protocol == "" || l.tls != nil {
			_ = nc.SetReadDeadline(time.Now().Add(l.detectTimeout()))
		}
		go s.serve(l, nc)
	}
}

// track registers a sniffing connection of l and counts its goroutine; false once shutdown has begun.
func (s *Server) track(l *listener, nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.sniffing[nc] = l
	s.wg.Add(1)
	return true
}

// serve recognises the protocol of nc and runs its handler.
func (s *Server) serve(l *listener, nc net.Conn) {
	var c *Conn
	var handedOff bool // to the management HTTP server, with the connector slot
	var parked bool    // the connection lives on without this goroutine
	defer func() {
		if !parked {
			s.served(l, nc, c, handedOff, recover())
		}
	}()
	c, handedOff = s.open(l, nc)
	if c == nil || c.Err() != nil {
		return
	}
	s.handlers[c.proto].Serve(c)
	if c.step != nil {
		if parked = c.run(false); parked {
			return
		}
	}
	s.handlerDone(c)
}

// handlerDone flushes and closes a connection whose handler returned.
//
//go:noinline
func (s *Server) handlerDone(c *Conn) {
	// Serve has returned, so nothing reads any more: the read buffer can go back to its pool.
	switch r := c.r.(type) {
	case *connReader:
		r.release()
	case *wsConn:
		r.src.release()
	}
	c.CloseAfter(ErrHandlerDone, handlerFlushTimeout)
	<-c.Done()
}

// served ends a connection (on its last goroutine): it logs and recovers a handler panic, unregisters the
// connection and counts it gone. c is nil when detection failed or panicked.
func (s *Server) served(l *listener, nc net.Conn, c *Conn, handedOff bool, panicked any) {
	defer s.wg.Done()
	if !handedOff {
		defer l.active.Add(-1)
	}
	if panicked != nil {
		s.log.Error("connection handler panic", zap.String("connector", l.set.Connector.Name),
			zap.Stringer("remote", nc.RemoteAddr()), zap.Any("panic", panicked), zap.ByteString("stack", debug.Stack()))
		if c != nil {
			c.Close(fmt.Errorf("%w: %v", errPanic, panicked))
		}
		_ = nc.Close()
	}
	s.mu.Lock()
	delete(s.sniffing, nc)
	if c != nil {
		delete(s.conns, c)
	}
	s.mu.Unlock()
	if c != nil {
		c.unwatch()
		l.stats.retire(c)
	}
}

// open recognises the protocol of nc and registers its connection; nil when detection failed (nc is
// closed), a closed connection when shutdown has begun. It is apart from serve to keep serve's frame
// small: serve stays on the stack of every idle connection, whose goroutine should fit its initial
// 2 KiB (see detect).
//
//go:noinline
func (s *Server) open(l *listener, nc net.Conn) (*Conn, bool) {
	proto, conn, r, err := s.detect(l, nc)
	if errors.Is(err, errHandedOff) {
		return nil, true
	}
	if err != nil {
		_ = nc.Close()
		return nil, false
	}
	c := newConn(s, conn, r, l.set, proto)
	c.l = l
	switch tc := conn.(type) {
	case *tls.Conn:
		c.tlsc = tc
	case *wsConn:
		c.tlsc = tc.tls // wss: TLS() and ServerName() describe the TLS under the WebSocket
	}
	c.watchable()
	s.mu.Lock()
	delete(s.sniffing, nc)
	if s.closing {
		s.mu.Unlock()
		c.Close(ErrServerClosed)
		return c, false
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c, false
}

// Shutdown stops the listeners, runs every connection's OnShutdown hook (closing those without one) and
// waits until every connection has ended or ctx is done. Then it closes what is left, waits for the
// goroutines to finish and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.quit)
	}
	for _, l := range s.lns {
		_ = l.ln.Close()
	}
	sniffing := make([]net.Conn, 0, len(s.sniffing))
	for nc := range s.sniffing {
		sniffing = append(sniffing, nc)
	}
	conns := s.connsLocked()
	s.mu.Unlock()

	for _, nc := range sniffing {
		_ = nc.Close()
	}
	for _, c := range conns {
		c.shutdown()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.shutdownHTTP(ctx)
	}()

	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		s.closePoller()
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	conns = s.connsLocked()
	s.mu.Unlock()
	for _, c := range conns {
		c.Close(ErrServerClosed)
	}
	<-finished
	s.closePoller()
	return ctx.Err()
}

func (s *Server) connsLocked() []*Conn {
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// rateLimit lets one log line through per second and counts the events in between.
type rateLimit struct {
	mu    sync.Mutex
	last  time.Time
	count int64
}

// hit records an event; it returns the number of events to report (this one included), or 0 to stay quiet.
func (r *rateLimit) hit() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	now := time.Now()
	if now.Sub(r.last) < time.Second {
		return 0
	}
	r.last = now
	n := r.count
	r.count = 0
	return n
}
