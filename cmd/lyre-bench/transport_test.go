package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// -transport tls dials TLS over TCP, verified against -cafile, or not at all with -insecure, and fails
// without either for a certificate the system does not trust.
func TestTransportTLS(t *testing.T) {
	certFile, keyFile, err := selfSignedCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	addr := ln.Addr().String()
	for _, args := range [][]string{{"-insecure"}, {"-cafile", certFile}} {
		cfg, err := parseFlags(append([]string{"-transport", "tls"}, args...), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		tr := newTransport(cfg, "mqtt")
		nc, err := tr.dial(context.Background(), addr, 5*time.Second, 64, 64)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if _, ok := nc.(*tls.Conn); !ok || tcpConn(nc) == nil {
			t.Fatalf("%v: %T, want TLS over TCP", args, nc)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write([]byte("ping"))
		if b, err := io.ReadAll(io.LimitReader(nc, 4)); err != nil || string(b) != "ping" {
			t.Fatalf("%v: echo %q, %v", args, b, err)
		}
		nc.Close()
	}
	cfg, err := parseFlags([]string{"-transport", "tls"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newTransport(cfg, "mqtt").dial(context.Background(), addr, 5*time.Second, 64, 64); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("dial without -cafile: %v, want a certificate error", err)
	}
	if _, err := parseFlags([]string{"-transport", "tls", "-ws-path", "/mqtt"}, &bytes.Buffer{}); !errors.Is(err, errUsage) {
		t.Fatalf("-transport tls -ws-path: %v, want a usage error", err)
	}
}
