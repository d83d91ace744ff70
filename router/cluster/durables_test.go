package cluster

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lyremq/lyre/router"
)

// TestDurableMirrorsStoreForOtherNodes: a durable subscription made on a is mirrored on b and c, so a
// message published on c waits for its copy in the stream (the publisher's acknowledgement is the
// stream's) and is read by the subscription's client when it comes back on b; a gated subscription is
// not mirrored; destroying the subscription removes the mirrors.
func TestDurableMirrorsStoreForOtherNodes(t *testing.T) {
	nodes := startQueueMesh(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	gated := router.Destination{Kind: router.DurableSub, Path: []string{"gated"}}
	sub := router.Destination{Kind: router.DurableSub, Path: []string{"sub1"}}
	o := router.DurableOptions{Filter: lit("news", "#"), Owner: "alice", QoS: 1}
	og := o
	og.Match = func(*router.Message) bool { return true }
	// The gated one first: the registry is read in order, so once sub1's mirror is there the gated
	// subscription's change has been read too.
	for _, d := range []struct {
		d router.Destination
		o router.DurableOptions
	}{{gated, og}, {sub, o}} {
		if _, err := a.r.CreateDurable(d.d, d.o, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range []node{b, c} {
		waitForLong(t, "the mirrors", func() bool { return nd.r.IsMirror(sub) })
		if _, ok := nd.r.Durable(gated); ok {
			t.Fatal("a gated subscription was mirrored: another node cannot tell what it keeps")
		}
	}
	if a.r.IsMirror(sub) {
		t.Fatal("the subscription's own node holds a mirror of it")
	}
	topic := router.Destination{Kind: router.Topic, Path: []string{"news", "x"}}
	for i := range 5 {
		tr := newWaitTracker()
		c.r.Publish(&router.Message{Dest: topic, Body: fmt.Appendf(nil, "c%d", i), QoS: 1, Persistent: true, Tracker: tr})
		if err := tr.wait(t); err != nil { // fails "tracked no write" without c's mirror
			t.Fatal(err)
		}
	}
	// alice comes back on b: the mirror becomes her subscription, and its consumer reads the backlog.
	if existed, err := b.r.CreateDurable(sub, o, nil); err != nil || !existed {
		t.Fatalf("alice on b: existed %v, %v", existed, err)
	}
	if b.r.IsMirror(sub) {
		t.Fatal("b's mirror is still a mirror with alice's client on b")
	}
	sb := &queueSink{}
	cb, err := b.r.Consume(&router.Subscription{Filter: router.Filter{Kind: router.DurableSub, Segs: []router.Seg{{Text: "sub1"}}}, Sink: sb, QoS: 1},
		router.ConsumerOptions{Owner: "alice", Credit: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	waitForLong(t, "c's 5 messages on b", func() bool { return len(sb.got()) >= 5 })
	for _, dl := range sb.got() {
		cb.Ack(dl.Seq)
	}
	if _, err := b.r.DestroyDurable(sub, "alice", nil); err != nil {
		t.Fatal(err)
	}
	waitForLong(t, "c's mirror removed", func() bool { _, ok := c.r.Durable(sub); return !ok })
	if _, ok := a.r.Durable(sub); ok {
		t.Fatal("a keeps the subscription destroyed on b")
	}
}

// TestRegistryQueueFullDrops: the durable subscription changes waiting for the writer are bounded; one
// finding the queue full is dropped and counted, not waited for (the watcher holds the router's lock).
func TestRegistryQueueFullDrops(t *testing.T) {
	rc := &recorder{}
	dh := &durableHost{q: make(chan durableOp, 2)}
	for i := range 3 {
		dh.offer(rc, durableOp{subject: fmt.Sprint(i)})
	}
	if len(dh.q) != 2 || rc.dropped.Load() != 1 {
		t.Fatalf("%d queued, %d dropped; want 2 and 1", len(dh.q), rc.dropped.Load())
	}
	if op := <-dh.q; op.subject != "0" {
		t.Fatalf("first queued %q, want the first change", op.subject)
	}
}

// TestRecordsWaitForTheStreams: writes made before the streams exist wait in order, reported done at
// once, up to recordQueue of them; the next one fails, counted.
func TestRecordsWaitForTheStreams(t *testing.T) {
	rc := &recorder{}
	var errs []error
	for i := range recordQueue + 1 {
		rc.put(fmt.Sprint(i), nil, func(err error) { errs = append(errs, err) })
	}
	if len(errs) != recordQueue+1 || errs[0] != nil || errs[recordQueue-1] != nil || !errors.Is(errs[recordQueue], ErrRecordsUnavailable) {
		t.Fatalf("outcomes: %d, first %v, last waiting %v, one too many %v", len(errs), errs[0], errs[recordQueue-1], errs[recordQueue])
	}
	if len(rc.early) != recordQueue || rc.early[0].subject != "0" || rc.early[recordQueue-1].subject != fmt.Sprint(recordQueue-1) {
		t.Fatalf("%d waiting, not in order", len(rc.early))
	}
	if rc.failed.Load() != 1 {
		t.Fatalf("%d failed, want the one with no room", rc.failed.Load())
	}
}
