package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// -mode idle -proto stomp holds its connections with heart-beats, which the peer skips between frames.
func TestIdleSTOMPPeer(t *testing.T) {
	p := newStompPeer(t, "1.2", 0)
	cfg, err := parseFlags([]string{"-proto", "stomp", "-addr", p.addr, "-mode", "idle", "-conns", "30",
		"-duration", "1200ms", "-keepalive", "1s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.vhost == "" || newSTOMPDriver(cfg).opt.heartBeat != time.Second {
		t.Fatalf("vhost %q, heart-beat %v", cfg.vhost, newSTOMPDriver(cfg).opt.heartBeat)
	}
	r, err := idle(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.failed() || r.Connected != 30 || r.Dropped != 0 || r.Interrupted || r.HeldSeconds < 1.1 {
		t.Fatalf("connected %d dropped %d held %.2fs errors %v", r.Connected, r.Dropped, r.HeldSeconds, r.Errors)
	}
}

// An idle STOMP connection the broker closed is dropped at the next sweep.
func TestIdleSTOMPDropped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hangUp := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		fr := newFrameReader(nc, 4096, 1<<20)
		if f, err := fr.next(); err != nil || !f.is("CONNECT") {
			t.Errorf("first frame %v, %v", f, err)
			return
		}
		nc.Write([]byte("CONNECTED\nversion:1.2\nheart-beat:1000,1000\n\n\x00\n"))
		<-hangUp
	})
	cfg, err := parseFlags([]string{"-proto", "stomp", "-addr", ln.Addr().String(), "-mode", "idle", "-keepalive", "1s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ic, err := newSTOMPDriver(cfg).dialIdle(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	conns := []idleConn{ic}
	if n := pingAll(conns, time.Second); n != 0 || conns[0] == nil {
		t.Fatalf("%d dropped while the peer was there", n)
	}
	close(hangUp)
	deadline := time.Now().Add(5 * time.Second)
	for conns[0] != nil && time.Now().Before(deadline) {
		pingAll(conns, time.Second)
		time.Sleep(10 * time.Millisecond)
	}
	if conns[0] != nil {
		t.Fatal("a connection the peer closed was not dropped")
	}
}

// -transport tls reaches the broker inside TLS, verified with -cafile, unverified with -insecure, and
// refused for a certificate the system does not trust.
func TestIdleSTOMPOverTLS(t *testing.T) {
	p := newStompPeer(t, "1.2", 0)
	addr, ca := tlsProxy(t, p.addr)
	for _, args := range [][]string{{"-cafile", ca}, {"-insecure"}} {
		cfg, err := parseFlags(append([]string{"-proto", "stomp", "-transport", "tls", "-addr", addr, "-mode", "idle",
			"-conns", "10", "-duration", "600ms", "-keepalive", "1s"}, args...), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := idle(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.failed() || r.Connected != 10 || r.Transport != "tls" {
			t.Fatalf("%v: connected %d over %s, errors %v", args, r.Connected, r.Transport, r.Errors)
		}
	}
	cfg, err := parseFlags([]string{"-proto", "stomp", "-transport", "tls", "-addr", addr, "-mode", "idle", "-conns", "1"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := idle(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Connected != 0 || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "certificate") {
		t.Fatalf("without -cafile: connected %d, errors %v; want a certificate error", r.Connected, r.Errors)
	}
}

// tlsProxy listens with TLS on a loopback port and forwards each connection to backend in clear text. It
// returns its address and the PEM file of its self-signed certificate (for 127.0.0.1).
func tlsProxy(t *testing.T, backend string) (addr, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lyre-bench test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", backend)
			if err != nil {
				nc.Close()
				continue
			}
			mu.Lock()
			open = append(open, nc, up)
			mu.Unlock()
			wg.Go(func() { io.Copy(up, nc); up.Close() })
			wg.Go(func() { io.Copy(nc, up); nc.Close() })
		}
	})
	return ln.Addr().String(), caFile
}
