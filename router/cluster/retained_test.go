package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/nats-io/nats.go/jetstream"
)

func retainedOf(r *router.Router, path ...string) (string, bool) {
	ms := r.Retained(lit(path...))
	if len(ms) == 0 {
		return "", false
	}
	return string(ms[0].Body), true
}

// TestLinkRetainedStream: a retained change on one node's router lands in the stream under the host's
// retained subject (levels token-encoded) and in every node's router, not delivered live by the stream;
// a clear [MQTT-3.3.1-10] is a tombstone in the stream and clears it everywhere; '$' topics stay local.
func TestLinkRetainedStream(t *testing.T) {
	nodes := startMesh(t, 3, withJetStream(t, 3))
	for _, nd := range nodes {
		waitForLong(t, "retained ready", func() bool { return nd.l.RetainedReady("v") })
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	_, live := subscribe(t, c.r, lit("x", "#"))
	waitFor(t, "c's interest on a", func() bool { return a.l.Interest("v", []string{"x", "y.z"}) > 0 })
	path := []string{"x", "y.z", ""}
	a.r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: path}, Body: []byte("v1"),
		Retain: true, QoS: 1, Headers: []router.Header{{Name: "h", Value: "1"}}})
	for _, nd := range nodes {
		waitFor(t, "the retained message on every node", func() bool { got, _ := retainedOf(nd.r, path...); return got == "v1" })
	}
	if m := b.r.Retained(lit(path...))[0]; m.QoS != 1 || len(m.Headers) != 1 || !m.Retain {
		t.Fatalf("b's retained copy lost fields: %+v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _, err := a.l.JetStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, retainedStream)
	if err != nil {
		t.Fatal(err)
	}
	subj := "lyre.v.r.x.y~2Ez.~"
	if _, err := st.GetLastMsgForSubject(ctx, subj); err != nil {
		t.Fatalf("no stream message on %s: %v", subj, err)
	}
	// The live copy came over core NATS once; applying the stream's copy delivered nothing more.
	if n := len(live.got()); n != 1 {
		t.Fatalf("c's subscriber got %d deliveries, want the one live copy", n)
	}

	b.r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: path}, Retain: true})
	for _, nd := range nodes {
		waitFor(t, "the clear on every node", func() bool { _, ok := retainedOf(nd.r, path...); return !ok })
	}
	if m, err := st.GetLastMsgForSubject(ctx, subj); err != nil || m.Sequence < 2 {
		t.Fatalf("the clear is not in the stream: %v %v", m, err)
	}

	a.r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"$local", "s"}}, Body: []byte("mine"), Retain: true})
	if _, err := st.GetLastMsgForSubject(ctx, "lyre.v.r.~24local.s"); err == nil {
		t.Fatal("a '$' topic's retained message went to the stream")
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatal(err)
	}
	if rs := a.l.RetainedStats(); rs.Written != 1 || rs.Failed != 0 {
		t.Fatalf("a's retained stats %+v, want 1 written", rs)
	}
}

// TestLinkSharedGroupAcrossNodes: a group with a member on b and c gets each of a's messages once, and
// a's router, which has no member, gives it to the group through NATS.
func TestLinkSharedGroupAcrossNodes(t *testing.T) {
	nodes := startNodes(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	recs := make([]*recSink, 0, 2)
	for _, nd := range []node{b, c} {
		s := &recSink{}
		if err := nd.r.Subscribe(&router.Subscription{Filter: lit("job", "+"), Sink: s, Share: "g", QoS: 1}); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, s)
	}
	waitFor(t, "both queue subscriptions on a", func() bool { return a.l.Interest("v", []string{"job", "1"}) == 2 })
	const n = 200
	for i := range n {
		a.r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"job", "1"}}, Body: []byte{byte(i)}})
	}
	waitFor(t, "every message in the group", func() bool { return len(recs[0].got())+len(recs[1].got()) >= n })
	if nb, nc := len(recs[0].got()), len(recs[1].got()); nb+nc != n || nb == 0 || nc == 0 {
		t.Fatalf("b got %d, c %d; want %d in all, some each", nb, nc, n)
	}
	if q := queueName(&host{prefix: topicPrefix("v")}, "g/x", lit("job", "+")); q != "lyre.v.t.g~2Fx.~00~00~03job~01~00" {
		t.Fatalf("queue name %q", q)
	}
}

// TestHasQuorum: a stream leader alone, or with one current replica of four peers, is no quorum; a
// leader with a current majority is.
func TestHasQuorum(t *testing.T) {
	peer := func(current, offline bool) *jetstream.PeerInfo {
		return &jetstream.PeerInfo{Current: current, Offline: offline}
	}
	cl := func(leader string, ps ...*jetstream.PeerInfo) *jetstream.StreamInfo {
		return &jetstream.StreamInfo{Cluster: &jetstream.ClusterInfo{Leader: leader, Replicas: ps}}
	}
	for _, c := range []struct {
		name string
		info *jetstream.StreamInfo
		want bool
	}{
		{"no info", nil, false},
		{"single node", &jetstream.StreamInfo{}, true},
		{"no leader", cl("", peer(true, false), peer(true, false)), false},
		{"R1 leader", cl("a"), true},
		{"leader alone of 3", cl("a", peer(false, false), peer(false, true)), false},
		{"current but offline", cl("a", peer(true, true), peer(false, false)), false},
		{"leader and one of 3", cl("a", peer(true, false), peer(false, true)), true},
		{"leader and one of 4", cl("a", peer(true, false), peer(false, false), peer(false, false)), false},
	} {
		if got := hasQuorum(c.info); got != c.want {
			t.Errorf("%s: hasQuorum = %v, want %v", c.name, got, c.want)
		}
	}
}
