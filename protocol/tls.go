package protocol

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
)

// ErrTLSHandshake is the detection failure of a connection whose TLS handshake failed: a garbage record,
// no common version or cipher, a missing or untrusted client certificate.
var ErrTLSHandshake = errors.New("protocol: tls handshake failed")

// tlsListener is the TLS side of a connector: always (a tls:// bind) or detected (detect lists "tls").
type tlsListener struct {
	always bool
	// inner lists the protocols sniffed inside the TLS stream: the detect list without "tls", or the
	// connector's one protocol.
	inner []string
	conf  conf.TLS
	// cfg is the configuration new handshakes use. ReloadCertificates swaps it; a connection keeps the one
	// it was accepted with, so reloading never touches established connections.
	cfg atomic.Pointer[tls.Config]
}

// mode names how the connector uses TLS, for the log: "always" or "detected".
func (tl *tlsListener) mode() string {
	if tl.always {
		return "always"
	}
	return "detected"
}

// newTLSListener checks the connector's TLS settings and loads its files. It returns nil, nil for a
// connector without TLS.
func newTLSListener(c *conf.Connector) (*tlsListener, error) {
	always, detected := c.BindsTLS(), c.DetectsTLS()
	if !always && !detected {
		if c.TLS != nil {
			return nil, fmt.Errorf("protocol: connector %q: tls block without a tls:// bind or \"tls\" in detect", c.Name)
		}
		return nil, nil
	}
	if c.TLS == nil {
		return nil, fmt.Errorf("protocol: connector %q: tls needs a tls block (cert_file, key_file)", c.Name)
	}
	inner := c.Protocols()
	if s := c.Sniffed(); s != nil {
		inner = slices.DeleteFunc(slices.Clone(s), func(p string) bool { return p == TLS })
	}
	if len(inner) == 0 {
		return nil, fmt.Errorf("protocol: connector %q: no protocol to speak inside tls", c.Name)
	}
	tl := &tlsListener{always: always, inner: inner, conf: *c.TLS}
	cfg, err := loadTLSConfig(&tl.conf)
	if err != nil {
		return nil, fmt.Errorf("protocol: connector %q: %w", c.Name, err)
	}
	tl.cfg.Store(cfg)
	return tl, nil
}

// loadTLSConfig builds a server configuration from the connector's tls block, reading its files.
func loadTLSConfig(t *conf.TLS) (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are required")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load cert_file %q and key_file %q: %w", t.CertFile, t.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	switch t.MinVersion {
	case "", "1.2":
		cfg.MinVersion = tls.VersionTLS12
	case "1.3":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls: min_version %q: want \"1.2\" or \"1.3\"", t.MinVersion)
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client_ca_file %q holds no PEM certificate", t.ClientCAFile)
		}
		cfg.ClientCAs = pool
	}
	switch t.ClientAuth {
	case "", "none":
		cfg.ClientAuth = tls.NoClientCert
	case "request", "require":
		// An unverified certificate proves nothing, so asking for one needs the CAs to check it against.
		if cfg.ClientCAs == nil {
			return nil, fmt.Errorf("tls: client_auth %q needs client_ca_file", t.ClientAuth)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if t.ClientAuth == "require" {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	default:
		return nil, fmt.Errorf("tls: client_auth %q: want \"none\", \"request\" or \"require\"", t.ClientAuth)
	}
	switch t.CertIdentity {
	case "", "cn", "dn":
	default:
		return nil, fmt.Errorf("tls: cert_identity %q: want \"cn\" or \"dn\"", t.CertIdentity)
	}
	return cfg, nil
}

// ReloadCertificates reads again the certificate, key and client CA files of every TLS connector and
// uses them for new handshakes; established connections are not touched. A connector whose files do not
// load keeps its previous certificates, and the error names it; the others are still reloaded.
func (s *Server) ReloadCertificates() error {
	s.mu.Lock()
	lns := slices.Clone(s.lns)
	s.mu.Unlock()
	var errs []error
	for _, l := range lns {
		if l.tls == nil {
			continue
		}
		cfg, err := loadTLSConfig(&l.tls.conf)
		if err != nil {
			errs = append(errs, fmt.Errorf("protocol: connector %q: %w", l.set.Connector.Name, err))
			continue
		}
		l.tls.cfg.Store(cfg)
	}
	return errors.Join(errs...)
}

// prefixConn replays bytes already read from a connection (the sniffed start of a ClientHello) before
// reading on.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		if len(p.pre) == 0 {
			p.pre = nil
		}
		return n, nil
	}
	return p.Conn.Read(b)
}

// handshakeTLS runs the server side of a TLS handshake on nc, under the deadline the accept loop set
// (detect_timeout), replaying sniffed first (it keeps sniffed until it is read). It returns the TLS
// connection or an error wrapping ErrTLSHandshake or ErrDetectTimeout.
func (s *Server) handshakeTLS(l *listener, nc net.Conn, sniffed []byte) (*tls.Conn, error) {
	raw := nc
	if len(sniffed) > 0 {
		raw = &prefixConn{Conn: nc, pre: sniffed}
	}
	// The handshake writes as well as reads: bound its writes by the read deadline (detect_timeout) the
	// accept loop armed, so a peer that never reads cannot hold the goroutine.
	if err := nc.SetWriteDeadline(time.Now().Add(l.detectTimeout())); err != nil {
		return nil, err
	}
	tc := tls.Server(raw, l.tls.cfg.Load())
	var err error
	Apart(func() { err = tc.Handshake() }) // see Apart: TLS connections keep their goroutine while idle
	if err != nil {
		switch {
		case isTimeout(err):
			return nil, ErrDetectTimeout
		case isQuietClose(err):
			// The peer went away (a load balancer's port probe does, before sending anything) or Shutdown
			// closed the socket: not a failed handshake worth an Info line.
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrTLSHandshake, err)
	}
	if ce := s.log.Check(zap.DebugLevel, "tls handshake done"); ce != nil {
		st := tc.ConnectionState()
		ce.Write(zap.String("connector", l.set.Connector.Name), zap.Stringer("remote", nc.RemoteAddr()),
			zap.String("version", tls.VersionName(st.Version)), zap.String("cipher", tls.CipherSuiteName(st.CipherSuite)),
			zap.String("server_name", st.ServerName), zap.Bool("client_cert", len(st.VerifiedChains) > 0))
	}
	return tc, nil
}

// clearDeadlines ends the detect_timeout of a TLS connector's connection (set on both directions, since
// the handshake writes too).
func clearDeadlines(nc net.Conn) error { return nc.SetDeadline(time.Time{}) }

// TLS returns the connection's TLS state, or nil in clear text.
func (c *Conn) TLS() *tls.ConnectionState {
	if c.tlsc == nil {
		return nil
	}
	cs := c.tlsc.ConnectionState()
	return &cs
}

// ServerName returns the server name the client asked for in its TLS ClientHello (SNI), or "" in clear
// text or when it sent none.
func (c *Conn) ServerName() string {
	if c.tlsc == nil {
		return ""
	}
	return c.tlsc.ConnectionState().ServerName
}

// CertIdentity returns the identity of the client's verified certificate as the connector's
// cert_identity says: its subject's common name ("cn") or full distinguished name ("dn", RFC 2253 as
// crypto/x509 prints it). It is "" in clear text, without a verified client certificate, or when the
// connector does not use certificates as identities.
func (c *Conn) CertIdentity() string {
	if c.tlsc == nil || c.set.Connector.TLS == nil {
		return ""
	}
	mode := c.set.Connector.TLS.CertIdentity
	if mode == "" {
		return ""
	}
	chains := c.tlsc.ConnectionState().VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return ""
	}
	leaf := chains[0][0]
	if mode == "dn" {
		return leaf.Subject.String()
	}
	return leaf.Subject.CommonName
}
