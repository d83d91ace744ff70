package protocol_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lyremq/lyre/protocol"
)

// A client that kept its TLS session resumes it on its next connection (TLS 1.3 tickets, and TLS 1.2
// tickets), on a tls:// connector and on one detecting TLS: the server's crypto/tls configuration
// leaves session tickets on, which spares a reconnecting client the certificate signature and, when
// client certificates are checked, their verification.
func TestTLSSessionResumption(t *testing.T) {
	p := newPKI(t)
	connectors := map[string]func() string{
		"tls": func() string {
			return startTLSBroker(t, tlsConnector(p.tlsConf("none"), protocol.MQTT, protocol.STOMP)).addr
		},
		"detected": func() string { return startTLSBroker(t, detectConnector(p.tlsConf("none"))).addr },
	}
	for name, start := range connectors {
		addr := start()
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			t.Run(name+"/"+tls.VersionName(v), func(t *testing.T) {
				cfg := p.client("localhost")
				cfg.MinVersion, cfg.MaxVersion = v, v
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				for i, want := range []bool{false, true, true} {
					if got := mqttOverTLS(t, addr, cfg); got != want {
						t.Fatalf("connection %d: resumed %v, want %v", i, got, want)
					}
				}
			})
		}
	}
}

// mqttOverTLS connects over TLS with cfg, logs in with an MQTT CONNECT (reading the CONNACK also
// reads a TLS 1.3 ticket sent after the handshake), disconnects, and reports whether the TLS session
// was resumed.
func mqttOverTLS(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: tlsWait}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(tlsWait))
	connect := []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, 4, 'r', 'e', 's', 'u'}
	if _, err := tc.Write(connect); err != nil {
		t.Fatal(err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(tc, ack[:]); err != nil || ack != [4]byte{0x20, 2, 0, 0} {
		t.Fatalf("CONNACK % x, %v", ack, err)
	}
	if _, err := tc.Write([]byte{0xe0, 0}); err != nil {
		t.Fatal(err)
	}
	return tc.ConnectionState().DidResume
}
