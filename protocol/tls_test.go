package protocol_test

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt"
	"github.com/lyremq/lyre/protocol/prototest"
	pstomp "github.com/lyremq/lyre/protocol/stomp"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

const tlsWait = 5 * time.Second

// tlsBroker runs the real MQTT and STOMP front-ends behind one connector.
type tlsBroker struct {
	srv   *protocol.Server
	addr  string
	logs  *observer.ObservedLogs
	mqtt  *mqtt.Handler
	hosts *virtualhost.Registry
}

// startTLSBroker serves c (Bind, TLS, Protocol/Detect as given) with hosts "default" (anonymous) and
// "tenant-b" (alias b.example.com).
func startTLSBroker(t *testing.T, c conf.Connector) *tlsBroker {
	t.Helper()
	def := virtualhost.New(conf.VirtualHost{Name: "default", HostNames: []string{"localhost"}, Anonymous: true}, router.Options{})
	b := virtualhost.New(conf.VirtualHost{Name: "tenant-b", HostNames: []string{"b.example.com"}, Anonymous: true}, router.Options{})
	hosts := virtualhost.NewRegistry(def, b)
	t.Cleanup(hosts.Close) // after the server's shutdown (cleanups run last-in first-out)
	mh := mqtt.NewHandler(hosts, zaptest.NewLogger(t))
	sh := pstomp.NewHandler(hosts, zaptest.NewLogger(t))
	sh.HeartBeatSend, sh.HeartBeatReceive = 0, 0
	c.MQTT, c.STOMP = conf.DefaultMQTT(), conf.DefaultSTOMP()
	srv, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: mh, protocol.STOMP: sh}, c, nil)
	return &tlsBroker{srv: srv, addr: addr, logs: logs, mqtt: mh, hosts: hosts}
}

// tlsConnector is a tls:// connector speaking protocols (one fixed protocol, or several detected).
func tlsConnector(tc *conf.TLS, protocols ...string) conf.Connector {
	c := conf.Connector{Name: "tls", Bind: "tls://127.0.0.1:0", TLS: tc}
	if len(protocols) == 1 {
		c.Protocol = protocols[0]
	} else {
		c.Detect = protocols
	}
	return c
}

// detectConnector is an autodetecting tcp:// connector that also recognises TLS.
func detectConnector(tc *conf.TLS) conf.Connector {
	return conf.Connector{Name: "shared", Bind: "tcp://127.0.0.1:0", TLS: tc,
		Detect: []string{protocol.TLS, protocol.MQTT, protocol.STOMP}}
}

// pahoConnect connects a paho client (MQTT 3.1.1) over TLS when cfg is set, else in clear text.
func pahoConnect(t *testing.T, addr, id string, cfg *tls.Config, mod func(*paho.ClientOptions)) (paho.Client, error) {
	t.Helper()
	scheme := "tcp://"
	if cfg != nil {
		scheme = "tls://"
	}
	o := paho.NewClientOptions().AddBroker(scheme + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetKeepAlive(30 * time.Second).
		SetConnectTimeout(tlsWait).SetWriteTimeout(tlsWait).SetOrderMatters(true)
	if cfg != nil {
		o.SetTLSConfig(cfg)
	}
	if mod != nil {
		mod(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(tlsWait) {
		t.Fatal("paho: connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mustPaho(t *testing.T, addr, id string, cfg *tls.Config) paho.Client {
	t.Helper()
	c, err := pahoConnect(t, addr, id, cfg, nil)
	if err != nil {
		t.Fatalf("paho connect %s: %v", id, err)
	}
	return c
}

func pahoWait(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(tlsWait) {
		t.Fatal("paho: token timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("paho: %v", err)
	}
}

// mqttInbox subscribes c to filter and collects payloads.
type mqttInbox struct {
	mu   sync.Mutex
	msgs []string
}

func pahoSubscribe(t *testing.T, c paho.Client, filter string) *mqttInbox {
	t.Helper()
	in := &mqttInbox{}
	pahoWait(t, c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		in.mu.Lock()
		in.msgs = append(in.msgs, string(m.Payload()))
		in.mu.Unlock()
	}))
	return in
}

func (in *mqttInbox) wait(t *testing.T, want ...string) {
	t.Helper()
	prototest.WaitFor(t, tlsWait, func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		return len(in.msgs) >= len(want)
	})
	in.mu.Lock()
	defer in.mu.Unlock()
	if strings.Join(in.msgs, "|") != strings.Join(want, "|") {
		t.Fatalf("received %q; want %q", in.msgs, want)
	}
}

// stompConnect runs go-stomp over nc (a TLS or clear-text connection) to host "default".
func stompConnect(t *testing.T, nc net.Conn) *stomp.Conn {
	t.Helper()
	sc, err := stomp.Connect(nc, stomp.ConnOpt.Host("default"), stomp.ConnOpt.HeartBeat(0, 0),
		stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
	if err != nil {
		t.Fatalf("stomp connect: %v", err)
	}
	t.Cleanup(func() { _ = sc.Disconnect() })
	return sc
}

// stompSync waits until the broker has processed every frame sc sent so far: go-stomp does not wait for
// SUBSCRIBE, but a receipt for a later frame on the same connection comes after it.
func stompSync(t *testing.T, sc *stomp.Conn) {
	t.Helper()
	if err := sc.Send("/topic/sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
}

func tlsDial(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: tlsWait}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	return tc
}

func stompRecv(t *testing.T, sub *stomp.Subscription) string {
	t.Helper()
	select {
	case m := <-sub.C:
		if m.Err != nil {
			t.Fatalf("stomp subscription: %v", m.Err)
		}
		return string(m.Body)
	case <-time.After(tlsWait):
		t.Fatal("stomp: no message")
		return ""
	}
}

// MQTT with paho over a tls:// connector, with and without client certificates.
func TestTLSConnectorMQTT(t *testing.T) {
	p := newPKI(t)
	alice := p.clientCert(pkix.Name{CommonName: "alice"})
	for _, tc := range []struct {
		name       string
		clientAuth string
		certs      []tls.Certificate
	}{
		{"no client auth", "none", nil},
		{"client cert requested, none sent", "request", nil},
		{"client cert requested and sent", "request", []tls.Certificate{alice}},
		{"client cert required and sent", "require", []tls.Certificate{alice}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startTLSBroker(t, tlsConnector(p.tlsConf(tc.clientAuth), protocol.MQTT))
			sub := mustPaho(t, b.addr, "sub", p.client("localhost", tc.certs...))
			in := pahoSubscribe(t, sub, "secure/+")
			pub := mustPaho(t, b.addr, "pub", p.client("localhost", tc.certs...))
			pahoWait(t, pub.Publish("secure/a", 1, false, "over tls"))
			in.wait(t, "over tls")
		})
	}
}

// client_auth = "require": a client without a certificate, or with one from another CA, never gets a
// session; the refusal is logged.
func TestTLSRequireRejectsClientWithoutCert(t *testing.T) {
	p := newPKI(t)
	b := startTLSBroker(t, tlsConnector(p.tlsConf("require"), protocol.MQTT))
	if _, err := pahoConnect(t, b.addr, "anon", p.client("localhost"), nil); err == nil {
		t.Fatal("paho connected without a client certificate under client_auth require")
	}
	e := waitLog(t, b.logs, "tls handshake failed")
	if r := e.ContextMap()["reason"].(string); !strings.Contains(r, "certificate") {
		t.Fatalf("handshake failure reason %q does not mention the certificate", r)
	}
	other := newPKI(t) // a certificate the broker's CA did not sign
	if _, err := pahoConnect(t, b.addr, "stranger", p.client("localhost", other.clientCert(pkix.Name{CommonName: "mallory"})), nil); err == nil {
		t.Fatal("paho connected with a certificate from an untrusted CA")
	}
	if n := b.mqtt.SessionCount(b.hosts.Default()); n != 0 {
		t.Fatalf("%d sessions after refused handshakes", n)
	}
	mustPaho(t, b.addr, "alice", p.client("localhost", p.clientCert(pkix.Name{CommonName: "alice"})))
}

// client_auth = "require" on the autodetecting port: TLS clients need a certificate, clear-text clients
// are still served, and the connector warns about it at Listen.
func TestTLSRequireOnDetectedPort(t *testing.T) {
	p := newPKI(t)
	b := startTLSBroker(t, detectConnector(p.tlsConf("require")))
	if e := waitLog(t, b.logs, "client_auth require applies to TLS connections only: this autodetecting connector also "+
		"accepts clear text; bind tls:// to require a certificate from every client"); e.Level != zapcore.WarnLevel {
		t.Fatalf("warning logged at %v", e.Level)
	}
	if _, err := pahoConnect(t, b.addr, "anon-tls", p.client("localhost"), nil); err == nil {
		t.Fatal("TLS client without a certificate connected under client_auth require")
	}
	waitLog(t, b.logs, "tls handshake failed")
	withCert := mustPaho(t, b.addr, "alice", p.client("localhost", p.clientCert(pkix.Name{CommonName: "alice"})))
	in := pahoSubscribe(t, withCert, "x")
	clear := mustPaho(t, b.addr, "clear", nil)
	pahoWait(t, clear.Publish("x", 1, false, "clear to tls"))
	in.wait(t, "clear to tls")
}

// STOMP with go-stomp over a tls.Dial connection on a tls:// connector that detects MQTT and STOMP
// inside TLS.
func TestTLSConnectorSTOMP(t *testing.T) {
	p := newPKI(t)
	b := startTLSBroker(t, tlsConnector(p.tlsConf("request"), protocol.MQTT, protocol.STOMP))
	sc := stompConnect(t, tlsDial(t, b.addr, p.client("localhost", p.clientCert(pkix.Name{CommonName: "bob"}))))
	sub, err := sc.Subscribe("/topic/secure.a", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	stompSync(t, sc)
	// An MQTT client inside TLS on the same tls:// port publishes to the same topic.
	pub := mustPaho(t, b.addr, "pub", p.client("localhost"))
	pahoWait(t, pub.Publish("secure/a", 0, false, "mqtt to stomp"))
	if got := stompRecv(t, sub); got != "mqtt to stomp" {
		t.Fatalf("stomp got %q", got)
	}
	if err := sc.Send("/topic/secure.a", "text/plain", []byte("stomp to stomp")); err != nil {
		t.Fatal(err)
	}
	if got := stompRecv(t, sub); got != "stomp to stomp" {
		t.Fatalf("stomp got %q", got)
	}
}

// A tls:// connector refuses clear text: the bytes of an MQTT CONNECT are not a TLS record.
func TestTLSConnectorRefusesClearText(t *testing.T) {
	p := newPKI(t)
	b := startTLSBroker(t, tlsConnector(p.tlsConf("none"), protocol.MQTT))
	if _, err := pahoConnect(t, b.addr, "clear", nil, nil); err == nil {
		t.Fatal("clear-text MQTT connected to a tls:// connector")
	}
	waitLog(t, b.logs, "tls handshake failed")
}

// On the autodetecting port, TLS and clear text MQTT and STOMP are served side by side, and their
// messages meet in one router.
func TestTLSDetectedAlongsideClearText(t *testing.T) {
	p := newPKI(t)
	b := startTLSBroker(t, detectConnector(p.tlsConf("none")))
	cfg := p.client("localhost")

	mqttTLS := mustPaho(t, b.addr, "mqtt-tls", cfg)
	mqttClear := mustPaho(t, b.addr, "mqtt-clear", nil)
	stompTLS := stompConnect(t, tlsDial(t, b.addr, cfg))
	stompClear := stompConnect(t, prototest.Dial(t, b.addr))

	inTLS := pahoSubscribe(t, mqttTLS, "mixed/#")
	inClear := pahoSubscribe(t, mqttClear, "mixed/#")
	subTLS, err := stompTLS.Subscribe("/topic/mixed.**", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	subClear, err := stompClear.Subscribe("/topic/mixed.**", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	stompSync(t, stompTLS)
	stompSync(t, stompClear)

	pahoWait(t, mqttClear.Publish("mixed/1", 1, false, "from clear mqtt"))
	if err := stompTLS.Send("/topic/mixed.2", "text/plain", []byte("from tls stomp"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	want := []string{"from clear mqtt", "from tls stomp"}
	inTLS.wait(t, want...)
	inClear.wait(t, want...)
	for _, sub := range []*stomp.Subscription{subTLS, subClear} {
		for _, w := range want {
			if got := stompRecv(t, sub); got != w {
				t.Fatalf("stomp got %q; want %q", got, w)
			}
		}
	}
}

// capture-style checks of the Conn API: TLS state, SNI name and certificate identity.
func TestTLSConnState(t *testing.T) {
	p := newPKI(t)
	alice := p.clientCert(pkix.Name{CommonName: "alice", Organization: []string{"Lyre"}, OrganizationalUnit: []string{"ops"}})
	for _, tc := range []struct {
		name, identity, sni string
		certs               []tls.Certificate
		want                string
	}{
		{"cn", "cn", "a.example.com", []tls.Certificate{alice}, "alice"},
		{"dn", "dn", "b.example.com", []tls.Certificate{alice}, "CN=alice,OU=ops,O=Lyre"},
		{"no certificate", "cn", "localhost", nil, ""},
		{"identity off", "", "localhost", []tls.Certificate{alice}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCapture()
			tlsc := p.tlsConf("request")
			tlsc.CertIdentity = tc.identity
			_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h}, detectConnector(tlsc), nil)
			cfg := p.client(tc.sni, tc.certs...)
			nc := tlsDial(t, addr, cfg)
			if _, err := nc.Write([]byte("STOMP\n\n\x00")); err != nil {
				t.Fatal(err)
			}
			c := h.conn(t)
			st := c.TLS()
			if st == nil || !st.HandshakeComplete || st.Version < tls.VersionTLS12 {
				t.Fatalf("TLS() = %+v; want a completed handshake", st)
			}
			if c.Protocol() != protocol.STOMP || c.ServerName() != tc.sni || c.CertIdentity() != tc.want {
				t.Fatalf("protocol %q, ServerName %q, CertIdentity %q; want stomp, %q, %q",
					c.Protocol(), c.ServerName(), c.CertIdentity(), tc.sni, tc.want)
			}
			prototest.WaitFor(t, tlsWait, func() bool { return string(h.bytes()) == "STOMP\n\n\x00" })
			// The handler's writes are encrypted on the way out.
			c.Write([]byte("CONNECTED\n\n\x00"))
			buf := make([]byte, 32)
			_ = nc.SetReadDeadline(time.Now().Add(tlsWait))
			n, err := io.ReadAtLeast(nc, buf, len("CONNECTED\n\n\x00"))
			if err != nil || string(buf[:n]) != "CONNECTED\n\n\x00" {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
			// Clear text on the same port has no TLS state.
			clear := prototest.Dial(t, addr)
			_, _ = clear.Write([]byte("STOMP\n\n\x00"))
			if c := h.conn(t); c.TLS() != nil || c.ServerName() != "" || c.CertIdentity() != "" {
				t.Fatalf("clear text: TLS %v, ServerName %q, CertIdentity %q", c.TLS(), c.ServerName(), c.CertIdentity())
			}
		})
	}
}

// MQTT picks the virtual host by the TLS SNI name when neither the connector nor the user name names one.
func TestTLSSNIPicksMQTTHost(t *testing.T) {
	p := newPKI(t)
	b := startTLSBroker(t, tlsConnector(p.tlsConf("none"), protocol.MQTT))
	tenantB := b.hosts.Lookup("tenant-b")

	subB := mustPaho(t, b.addr, "sub-b", p.client("b.example.com"))
	if n := b.mqtt.SessionCount(tenantB); n != 1 {
		t.Fatalf("tenant-b has %d sessions after an SNI b.example.com connect; want 1", n)
	}
	inB := pahoSubscribe(t, subB, "t")
	subDefault := mustPaho(t, b.addr, "sub-default", p.client("localhost"))
	inDefault := pahoSubscribe(t, subDefault, "t")

	// A user@host name wins over SNI: this publisher asks for b.example.com but names the default host.
	pubDefault, err := pahoConnect(t, b.addr, "pub-default", p.client("b.example.com"),
		func(o *paho.ClientOptions) { o.SetUsername("carol@default") })
	if err != nil {
		t.Fatal(err)
	}
	pubB := mustPaho(t, b.addr, "pub-b", p.client("b.example.com"))
	pahoWait(t, pubDefault.Publish("t", 1, false, "to default"))
	pahoWait(t, pubB.Publish("t", 1, false, "to b"))
	inB.wait(t, "to b")
	inDefault.wait(t, "to default")
}

// tlsEcho echoes what it reads, so a test can check a connection still works.
var tlsEcho = protocol.HandlerFunc(func(c *protocol.Conn) {
	buf := make([]byte, 256)
	for {
		n, err := c.Reader().Read(buf)
		if n > 0 {
			c.Write(buf[:n])
		}
		if err != nil {
			c.Close(err)
			return
		}
	}
})

func echo(t *testing.T, nc net.Conn, msg string) {
	t.Helper()
	_ = nc.SetDeadline(time.Now().Add(tlsWait))
	if _, err := nc.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo read %q, %v; want %q", buf, err, msg)
	}
}

// ReloadCertificates serves new files to new connections while an established one stays up; files
// that do not load leave the previous certificate in place and the error names the connector.
func TestTLSReloadCertificates(t *testing.T) {
	p := newPKI(t)
	s, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: tlsEcho}, tlsConnector(p.tlsConf("none"), protocol.MQTT), nil)
	first := p.served
	old := tlsDial(t, addr, p.client("localhost"))
	echo(t, old, "before reload")
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first) != 0 {
		t.Fatalf("served serial %v; want %v", got, first)
	}

	p.writeServerCert("lyre server renewed")
	if err := s.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	fresh := tlsDial(t, addr, p.client("localhost"))
	if got := fresh.ConnectionState().PeerCertificates[0]; got.SerialNumber.Cmp(p.served) != 0 || got.Subject.CommonName != "lyre server renewed" {
		t.Fatalf("after reload served %v %q; want serial %v", got.SerialNumber, got.Subject.CommonName, p.served)
	}
	echo(t, fresh, "new connection")
	echo(t, old, "old connection still up")

	// A broken key file: the error names the connector and the previous certificate stays.
	if err := os.WriteFile(p.keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.ReloadCertificates()
	if err == nil || !strings.Contains(err.Error(), `"tls"`) || !strings.Contains(err.Error(), p.keyFile) {
		t.Fatalf("reload with a broken key = %v; want an error naming connector \"tls\" and the key file", err)
	}
	again := tlsDial(t, addr, p.client("localhost"))
	if got := again.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "lyre server renewed" {
		t.Fatalf("after a failed reload served %q; want the previous certificate", got)
	}
	echo(t, old, "old connection survives a failed reload")
}

// Reloading while clients handshake is safe (run with -race): every client gets a whole certificate.
func TestTLSReloadDuringHandshakes(t *testing.T) {
	p := newPKI(t)
	s, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: tlsEcho}, tlsConnector(p.tlsConf("none"), protocol.MQTT), nil)
	stop := make(chan struct{})
	reloaded := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				reloaded <- n
				return
			default:
			}
			if err := s.ReloadCertificates(); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				tc, err := tls.Dial("tcp", addr, p.client("localhost"))
				if err != nil {
					t.Error(err)
					return
				}
				_ = tc.SetDeadline(time.Now().Add(tlsWait))
				_, err = tc.Write([]byte("ping"))
				buf := make([]byte, 4)
				if err == nil {
					_, err = io.ReadFull(tc, buf)
				}
				_ = tc.Close()
				if err != nil || string(buf) != "ping" {
					t.Errorf("echo %q, %v", buf, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if n := <-reloaded; n == 0 {
		t.Fatal("no reload ran during the handshakes")
	}
}

// Garbage after a TLS record header on the autodetecting port is a failed handshake: closed and logged.
func TestTLSGarbageRecordClosedAndLogged(t *testing.T) {
	p := newPKI(t)
	h := newCapture()
	_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h},
		detectConnector(p.tlsConf("none")), nil)
	nc := prototest.Dial(t, addr)
	if _, err := nc.Write([]byte("\x16\x03\x01\x00\x08not a hello at all")); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, nc, tlsWait)
	e := waitLog(t, logs, "tls handshake failed")
	f := e.ContextMap()
	if f["connector"] != "shared" || !strings.HasPrefix(f["reason"].(string), protocol.ErrTLSHandshake.Error()) {
		t.Fatalf("log fields %v", f)
	}
	select {
	case c := <-h.conns:
		t.Fatalf("garbage reached the handler as %q", c.Protocol())
	default:
	}
}

// A port probe (connect, then close) on a tls:// connector is not a failed handshake: it is logged at
// debug only.
func TestTLSPortProbeIsQuiet(t *testing.T) {
	p := newPKI(t)
	_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: tlsEcho}, tlsConnector(p.tlsConf("none"), protocol.MQTT), nil)
	probe := prototest.Dial(t, addr)
	_ = probe.Close()
	waitLog(t, logs, "connection closed while detecting protocol")
	if n := logs.FilterMessage("tls handshake failed").Len(); n != 0 {
		t.Fatalf("a port probe logged %d handshake failures", n)
	}
}

// A TLS client that sends nothing recognisable inside the tunnel is closed as unknown, and one that
// stalls in the handshake is closed at detect_timeout.
func TestTLSInnerUnknownAndTimeout(t *testing.T) {
	p := newPKI(t)
	h := newCapture()
	c := detectConnector(p.tlsConf("none"))
	c.DetectTimeout = 300 * time.Millisecond
	_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h}, c, nil)

	tc := tlsDial(t, addr, p.client("localhost"))
	_, _ = tc.Write([]byte("HELLO\n"))
	expectClosed(t, tc, tlsWait)
	if r := waitLog(t, logs, "unknown protocol").ContextMap()["reason"].(string); !strings.Contains(r, "inside tls") {
		t.Fatalf("reason %q does not say inside tls", r)
	}

	stall := prototest.Dial(t, addr)
	_, _ = stall.Write([]byte("\x16\x03\x01"))
	expectClosed(t, stall, tlsWait)
	waitLog(t, logs, "detect timeout")
}

func TestTLSListenErrors(t *testing.T) {
	p := newPKI(t)
	s := protocol.NewServer(zap.NewNop(), map[string]protocol.Handler{protocol.MQTT: tlsEcho, protocol.STOMP: tlsEcho})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	missing := p.tlsConf("none")
	missing.CertFile = p.dir + "/nope.pem"
	noPEM := p.tlsConf("require")
	noPEM.ClientCAFile = p.keyFile
	noCA := p.tlsConf("none")
	noCA.ClientAuth = "require"
	badVersion := p.tlsConf("none")
	badVersion.MinVersion = "1.1"
	for _, tc := range []struct {
		name string
		c    conf.Connector
		want string
	}{
		{"missing cert file", tlsConnector(missing, protocol.MQTT), "nope.pem"},
		{"client CA file without certificates", tlsConnector(noPEM, protocol.MQTT), "no PEM certificate"},
		{"require without client CA", tlsConnector(noCA, protocol.MQTT), "needs client_ca_file"},
		{"min version 1.1", tlsConnector(badVersion, protocol.MQTT), "min_version"},
		{"tls in detect without a tls block", detectConnector(nil), "needs a tls block"},
		{"tls:// without a tls block", tlsConnector(nil, protocol.MQTT), "needs a tls block"},
		{"tls block on a clear connector", conf.Connector{Name: "tls", Bind: "tcp://127.0.0.1:0", Protocol: protocol.MQTT, TLS: p.tlsConf("none")}, "tls block without"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Network, tc.c.Address = "tcp", "127.0.0.1:0"
			err := s.Listen(tc.c)
			if err == nil || !strings.Contains(err.Error(), `"`+tc.c.Name+`"`) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Listen = %v; want an error naming connector %q and saying %q", err, tc.c.Name, tc.want)
			}
		})
	}
	if len(s.Addrs()) != 0 {
		t.Fatalf("failed Listen calls bound %v", s.Addrs())
	}
}

// tricklingConn sends its first n bytes one byte per write, so the server sees a ClientHello arrive a
// byte at a time and must sniff, then replay what it sniffed into the handshake.
type tricklingConn struct {
	net.Conn
	n int
}

func (c *tricklingConn) Write(p []byte) (int, error) {
	written := 0
	for c.n > 0 && len(p) > 0 {
		if _, err := c.Conn.Write(p[:1]); err != nil {
			return written, err
		}
		time.Sleep(time.Millisecond) // separate segments
		p, written, c.n = p[1:], written+1, c.n-1
	}
	k, err := c.Conn.Write(p)
	return written + k, err
}

func TestTLSClientHelloByteAtATime(t *testing.T) {
	p := newPKI(t)
	h := newCapture()
	_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h},
		detectConnector(p.tlsConf("none")), nil)
	raw := prototest.Dial(t, addr)
	tc := tls.Client(&tricklingConn{Conn: raw, n: 12}, p.client("a.example.com"))
	_ = tc.SetDeadline(time.Now().Add(tlsWait))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	// The inner protocol's first bytes trickle too: the inner sniff sees them over several records.
	for _, b := range []string{"\x10", "\x0e\x00", "\x04MQ", "TT\x04\x02\x00\x3c\x00\x02c1"} {
		if _, err := tc.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	c := h.conn(t)
	if c.Protocol() != protocol.MQTT || c.ServerName() != "a.example.com" {
		t.Fatalf("protocol %q, ServerName %q", c.Protocol(), c.ServerName())
	}
	prototest.WaitFor(t, tlsWait, func() bool { return string(h.bytes()) == mqttConnect })
	f := waitLog(t, logs, "tls handshake done").ContextMap()
	if f["server_name"] != "a.example.com" || f["version"] != "TLS 1.3" || f["client_cert"] != false {
		t.Fatalf("handshake log %v", f)
	}
	if f := waitLog(t, logs, "listening").ContextMap(); f["tls"] != "detected" {
		t.Fatalf("listening log %v; want tls detected", f)
	}
}

// A TLS client that stops reading is closed as a slow consumer, like a clear-text one: the write
// deadline reaches through crypto/tls.
func TestTLSSlowConsumer(t *testing.T) {
	p := newPKI(t)
	closed := make(chan error, 1)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		chunk := make([]byte, 1<<20)
		for i := 0; i < 256 && c.Write(chunk); i++ {
		}
		<-c.Done()
		closed <- c.Err()
	})
	_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.STOMP: h},
		tlsConnector(p.tlsConf("none"), protocol.STOMP), func(s *protocol.Server) {
			s.WriteTimeout = 200 * time.Millisecond
			s.MaxPending = 64 << 20
		})
	tc := tlsDial(t, addr, p.client("localhost"))
	select {
	case err := <-closed:
		if !errors.Is(err, protocol.ErrSlowConsumer) {
			t.Fatalf("close reason %v; want ErrSlowConsumer", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow TLS consumer not closed")
	}
	_ = tc.Close()
}

// Connectors decoded by conf from HCL: a tls:// connector requiring client certificates with TLS 1.3
// only, and an autodetecting one with "tls" in its detect list.
func TestTLSFromHCLConfig(t *testing.T) {
	p := newPKI(t)
	src := `
connector "secure" {
  bind     = "tls://127.0.0.1:0"
  protocol = "mqtt"
  tls {
    cert_file      = "server.pem"
    key_file       = "server-key.pem"
    client_ca_file = "ca.pem"
    client_auth    = "require"
    min_version    = "1.3"
    cert_identity  = "cn"
  }
}
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["tls", "mqtt", "stomp"]
  tls {
    cert_file = "server.pem"
    key_file  = "server-key.pem"
  }
}
virtual_host "default" {
  anonymous = true
}
`
	path := p.dir + "/lyre.hcl"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	hosts := virtualhost.NewRegistry(virtualhost.New(cfg.VirtualHosts[0], router.Options{}))
	t.Cleanup(hosts.Close)
	sh := pstomp.NewHandler(hosts, zaptest.NewLogger(t))
	sh.HeartBeatSend, sh.HeartBeatReceive = 0, 0
	s, _, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: mqtt.NewHandler(hosts, zaptest.NewLogger(t)),
		protocol.STOMP: sh}, cfg.Connectors[0], nil)
	if err := s.Listen(cfg.Connectors[1]); err != nil {
		t.Fatal(err)
	}
	secure, auto := s.Addrs()["secure"].String(), s.Addrs()["auto"].String()

	alice := p.clientCert(pkix.Name{CommonName: "alice"})
	c := mustPaho(t, secure, "alice", p.client("localhost", alice))
	in := pahoSubscribe(t, c, "hcl/#")
	sc := stompConnect(t, tlsDial(t, auto, p.client("localhost")))
	if err := sc.Send("/topic/hcl.x", "text/plain", []byte("from stomp over detected tls"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	in.wait(t, "from stomp over detected tls")

	old := p.client("localhost", alice)
	old.MaxVersion = tls.VersionTLS12
	if _, err := pahoConnect(t, secure, "old", old, nil); err == nil {
		t.Fatal("a TLS 1.2 client connected to a min_version 1.3 connector")
	}
}

// A verified client certificate is the client's identity (cert_identity = "cn"): without a user name the
// certificate's CN is the user that access rules see; a CN the rules do not allow, or no certificate on
// a host without anonymous access, is refused with CONNACK 0x05.
func TestTLSCertIdentityIsTheMQTTUser(t *testing.T) {
	p := newPKI(t)
	host := virtualhost.New(conf.VirtualHost{Name: "devices", HostNames: []string{"localhost"},
		AccessRules: []conf.AccessRule{{Allow: []string{"device-1"}}}}, router.Options{})
	hosts := virtualhost.NewRegistry(host)
	t.Cleanup(hosts.Close)
	mh := mqtt.NewHandler(hosts, zaptest.NewLogger(t))
	c := tlsConnector(p.tlsConf("request"), protocol.MQTT)
	c.MQTT = conf.DefaultMQTT()
	c.TLS.CertIdentityHosts = []string{"devices"}
	_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: mh}, c, nil)

	device := p.clientCert(pkix.Name{CommonName: "device-1"})
	if _, err := pahoConnect(t, addr, "d1", p.client("localhost", device), nil); err != nil {
		t.Fatalf("device-1 with its certificate: %v", err)
	}
	intruder := p.clientCert(pkix.Name{CommonName: "intruder"})
	for name, cfg := range map[string]*tls.Config{
		"certificate the rules do not allow": p.client("localhost", intruder),
		"no certificate":                     p.client("localhost"),
	} {
		_, err := pahoConnect(t, addr, "x", cfg, nil)
		if err == nil || !strings.Contains(err.Error(), "not Authorized") {
			t.Errorf("%s: connect error %v, want CONNACK 0x05 (not authorized)", name, err)
		}
	}
}
