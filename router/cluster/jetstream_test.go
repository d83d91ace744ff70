package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// withJetStream gives each node its own JetStream directory and replicas r.
func withJetStream(t *testing.T, r int) func(*Config) {
	return func(c *Config) {
		c.Directory = t.TempDir()
		c.Replicas = r
	}
}

// startMesh starts n nodes on fixed free ports, each routing to all the others, as a JetStream cluster
// needs (its meta group is formed from the configured routes, not from gossip alone).
func startMesh(t *testing.T, n int, opts ...func(*Config)) []node {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	return startNodesWith(t, n, func(i int, c *Config) {
		c.Listen = addrs[i]
		c.Routes = nil
		for j, a := range addrs {
			if j != i {
				c.Routes = append(c.Routes, a)
			}
		}
		for _, o := range opts {
			o(c)
		}
	})
}

// TestJetStreamReplicatedAcrossNodes: with a directory the embedded servers form a JetStream cluster; a
// stream of R3 keeps its messages and takes new ones when the node that wrote them is gone.
func TestJetStreamReplicatedAcrossNodes(t *testing.T) {
	nodes := startMesh(t, 3, withJetStream(t, 3))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, r, err := nodes[0].l.JetStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r != 3 {
		t.Fatalf("replicas %d, want 3", r)
	}
	// The links make their queue streams meanwhile; a stream still being made when its servers shut
	// down leaves nats-server goroutines behind, so the test lets them finish first.
	for _, nd := range nodes {
		waitForLong(t, "the queue stream", func() bool { return nd.l.QueuesReady("v") })
	}
	var st jetstream.Stream
	// The meta leader answers before every peer has reported in; stream creation with R3 can still
	// fail with "insufficient resources" for a moment.
	waitFor(t, "an R3 stream", func() bool {
		st, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: r,
			Storage: jetstream.FileStorage})
		return err == nil
	})
	for i := range 10 {
		if _, err := js.Publish(ctx, "t.x", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(st.CachedInfo().Cluster.Replicas); n != 2 {
		t.Fatalf("stream has %d other replicas, want 2", n)
	}
	nodes[0].l.Close() // the cleanup's second Close is a no-op

	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js1, _, err := nodes[1].l.JetStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each attempt has its own short deadline: a request nobody answers (no meta or stream leader yet)
	// waits for its context, and the next attempt may reach the new leader.
	try := func(fn func(ctx context.Context) error) func() bool {
		return func() bool {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return fn(actx) == nil
		}
	}
	var info *jetstream.StreamInfo
	waitForIn(t, 60*time.Second, "the stream on the remaining nodes", try(func(ctx context.Context) error {
		s, err := js1.Stream(ctx, "T")
		if err != nil {
			return err
		}
		info, err = s.Info(ctx)
		return err
	}))
	if info.State.Msgs != 10 {
		t.Fatalf("after losing a node the stream has %d messages, want 10", info.State.Msgs)
	}
	waitForIn(t, 60*time.Second, "a publish with two of three nodes", try(func(ctx context.Context) error {
		_, err := js1.Publish(ctx, "t.x", []byte("after"))
		return err
	}))
}

// TestNoJetStreamWithoutDirectory: without a directory the link says so rather than waiting.
func TestNoJetStreamWithoutDirectory(t *testing.T) {
	nodes := startNodes(t, 1)
	if _, _, err := nodes[0].l.JetStream(context.Background()); !errors.Is(err, ErrNoJetStream) {
		t.Fatalf("JetStream() error %v, want ErrNoJetStream", err)
	}
}
