package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lyremq/lyre/protocol/prototest"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 with the given serial and its key.
func writeSelfSigned(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "lyre test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
}

// servedSerial completes a TLS handshake with addr and returns the serial of the certificate served.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true}) // the test only reads which certificate is served
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// SIGHUP makes a running broker reload its TLS certificates: new connections get the new certificate.
func TestRunReloadsCertificatesOnSIGHUP(t *testing.T) {
	// Our own registration keeps a SIGHUP that arrives before run's from ending the test process.
	guard := make(chan os.Signal, 16)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 1)
	path := filepath.Join(dir, "lyre.hcl")
	writeFile(t, path, `
connector "tls" {
  bind     = "tls://127.0.0.1:0"
  protocol = "mqtt"
  tls {
    cert_file = "cert.pem"
    key_file  = "key.pem"
  }
}
virtual_host "default" {
  host_names = ["localhost"]
  anonymous  = true
}
`)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"--config", path, "--log-format", "json"}, &out, &errb) }()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit code %d", code)
		}
	}()
	prototest.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(errb.String(), "lyre started") })
	var addr string
	for _, line := range strings.Split(errb.String(), "\n") {
		var e struct{ Msg, Address string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "listening" {
			addr = e.Address
		}
	}
	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("served certificate serial %d, want 1", got)
	}

	writeSelfSigned(t, certFile, keyFile, 2)
	// run registers for SIGHUP just after logging "lyre started": repeat the signal until it answers.
	prototest.WaitFor(t, 5*time.Second, func() bool {
		_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
		time.Sleep(20 * time.Millisecond)
		return strings.Contains(errb.String(), "certificates reloaded")
	})
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("after SIGHUP the served certificate has serial %d, want 2", got)
	}
}
