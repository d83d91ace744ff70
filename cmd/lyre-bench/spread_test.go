package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
)

// countingProxy forwards connections to target and counts them: a stand-in for one node of a cluster
// in front of one broker.
func countingProxy(t *testing.T, target string) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{})
				go func() { _, _ = io.Copy(u, c); _ = u.Close(); close(done) }()
				_, _ = io.Copy(c, u)
				_ = c.Close()
				<-done
			})
		}
	})
	return ln.Addr().String(), conns
}

// -sub-addr and -pub-addr spread the clients over the addresses, client i on the (i mod n)th.
func TestBenchSpreadOverAddresses(t *testing.T) {
	broker, _ := startMosquitto(t)
	a, na := countingProxy(t, broker)
	b, nb := countingProxy(t, broker)
	c, nc := countingProxy(t, broker)
	cfg, err := parseFlags([]string{"-mode", "fanout", "-qos", "1", "-subs", "5", "-count", "300", "-topic", "test",
		"-sub-addr", a + ", " + b, "-pub-addr", c, "-sub-wait", "10ms"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := bench(context.Background(), cfg, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if r.failed() || r.Received != 1500 || r.Lost != 0 {
		t.Fatalf("received %d of 1500, lost %d, errors %v", r.Received, r.Lost, r.Errors)
	}
	if !slices.Equal(r.SubAddrs, []string{a, b}) || !slices.Equal(r.PubAddrs, []string{c}) {
		t.Fatalf("result's addresses: subs %v pubs %v", r.SubAddrs, r.PubAddrs)
	}
	// Subscribers 0, 2, 4 on a; 1, 3 on b; the publisher on c.
	if got := []int64{na.Load(), nb.Load(), nc.Load()}; !slices.Equal(got, []int64{3, 2, 1}) {
		t.Fatalf("connections per address %v, want [3 2 1]", got)
	}
}

func TestParseAddrFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-mode", "queue", "-proto", "stomp", "-sub-addr", "h:1"},
		{"-mode", "idle", "-pub-addr", "h:1"},
		{"-sub-addr", "h:1,nope"},
		{"-sub-wait", "-1s"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
	c, err := parseFlags([]string{"-addr", "x:1", "-sub-addr", "h:1, h:2"}, &bytes.Buffer{})
	if err != nil || !slices.Equal(c.subAddrs, []string{"h:1", "h:2"}) || !slices.Equal(c.pubAddrs, []string{"x:1"}) {
		t.Fatalf("subs %v pubs %v (%v)", c.subAddrs, c.pubAddrs, err)
	}
}
