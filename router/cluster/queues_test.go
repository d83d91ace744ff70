package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/router"
)

// queueSink records the deliveries of a queue consumer; it never refuses one.
type queueSink struct {
	mu sync.Mutex
	ds []router.Delivery
}

func (s *queueSink) Deliver(d router.Delivery) bool {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	s.mu.Unlock()
	return true
}

func (s *queueSink) got() []router.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ds)
}

// waitTracker is a router.Tracker a test waits on: done once every tracked write is.
type waitTracker struct {
	mu      sync.Mutex
	pending int
	err     error
	ch      chan struct{}
}

func newWaitTracker() *waitTracker { return &waitTracker{ch: make(chan struct{})} }

func (w *waitTracker) Track() func(error) {
	w.mu.Lock()
	w.pending++
	w.mu.Unlock()
	return func(err error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil && w.err == nil {
			w.err = err
		}
		if w.pending--; w.pending == 0 {
			close(w.ch)
		}
	}
}

// wait returns the outcome of the tracked writes; none tracked is a test failure: a replicated queue's
// publish must be tracked.
func (w *waitTracker) wait(t *testing.T) error {
	t.Helper()
	w.mu.Lock()
	n := w.pending
	w.mu.Unlock()
	if n == 0 {
		t.Fatal("the publish tracked no write")
	}
	select {
	case <-w.ch:
	case <-time.After(20 * time.Second):
		t.Fatal("no acknowledgement from JetStream")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func queueDest(p ...string) router.Destination {
	return router.Destination{Kind: router.Queue, Path: p}
}

// publishQueue publishes a persistent message to a clustered queue and waits for JetStream to have it.
func publishQueue(t *testing.T, r *router.Router, d router.Destination, body string) {
	t.Helper()
	tr := newWaitTracker()
	m := &router.Message{Dest: d, Body: []byte(body), QoS: 1, Persistent: true, Tracker: tr}
	if pr := r.Publish(m); pr.Err != nil {
		t.Fatalf("publish %s: %v", body, pr.Err)
	}
	if err := tr.wait(t); err != nil {
		t.Fatalf("publish %s: %v", body, err)
	}
}

func startQueueMesh(t *testing.T, n int) []node {
	t.Helper()
	return startQueueMeshAckWait(t, n, 3*time.Second)
}

// startQueueMeshAckWait is startQueueMesh with JetStream's ack wait set to ackWait.
func startQueueMeshAckWait(t *testing.T, n int, ackWait time.Duration) []node {
	t.Helper()
	nodes := startMesh(t, n, withJetStream(t, n), func(c *Config) { c.AckWait = ackWait })
	for _, nd := range nodes {
		waitForLong(t, "clustered queues", func() bool { return nd.l.QueuesReady("v") })
	}
	return nodes
}

func waitForLong(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func bodies(ds []router.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, string(d.Msg.Body))
	}
	return out
}

// TestQueueHandedBackWhenConsumersLeave: messages a node's consumer held unacknowledged go to a consumer
// on another node as soon as the last local consumer leaves (not after the ack wait), marked as
// redeliveries; acknowledged ones never come back, and leave the stream.
func TestQueueHandedBackWhenConsumersLeave(t *testing.T) {
	// The ack wait is far longer than a hand-back takes even on a loaded machine, so that the two
	// cannot be mistaken for each other (a 3 s one was, with three race-enabled suites on two cores).
	const ackWait = 12 * time.Second
	nodes := startQueueMeshAckWait(t, 3, ackWait)
	a, b := nodes[0], nodes[1]
	d := queueDest("orders", "eu")
	for i := range 5 {
		publishQueue(t, b.r, d, fmt.Sprintf("m%d", i))
	}
	sa := &queueSink{}
	ca, err := a.r.Consume(&router.Subscription{Filter: router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "orders"}, {Text: "eu"}}}, Sink: sa, QoS: 1},
		router.ConsumerOptions{Credit: 10})
	if err != nil {
		t.Fatal(err)
	}
	waitForLong(t, "5 deliveries on a", func() bool { return len(sa.got()) == 5 })
	got := sa.got()
	if want := []string{"m0", "m1", "m2", "m3", "m4"}; !slices.Equal(bodies(got), want) {
		t.Fatalf("a got %q, want %q in order", bodies(got), want)
	}
	for _, dl := range got {
		if dl.Redeliveries != 0 || !dl.Msg.Persistent || dl.Msg.QoS != 1 || dl.Msg.Dest.Kind != router.Queue {
			t.Fatalf("first delivery %+v", dl)
		}
	}
	for _, dl := range got[:2] {
		if !ca.Ack(dl.Seq) {
			t.Fatalf("ack %d refused", dl.Seq)
		}
	}
	start := time.Now()
	ca.Close()
	sb := &queueSink{}
	cb, err := b.r.Consume(&router.Subscription{Filter: router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "orders"}, {Text: "eu"}}}, Sink: sb, QoS: 1},
		router.ConsumerOptions{Credit: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	waitForLong(t, "3 redeliveries on b", func() bool { return len(sb.got()) >= 3 })
	if el := time.Since(start); el > ackWait/2 {
		t.Errorf("handed back messages took %v: waited for the ack wait rather than the hand-back", el)
	}
	got = sb.got()
	// Handed-back messages come back in the order JetStream redelivers them, not necessarily their own.
	if bs, want := slices.Sorted(slices.Values(bodies(got))), []string{"m2", "m3", "m4"}; !slices.Equal(bs, want) {
		t.Fatalf("b got %q, want the unacknowledged %q", bs, want)
	}
	for _, dl := range got {
		// Delivered once on a, handed back once: JetStream counts two deliveries, or three when the
		// hand-back overtook the end of a's pull request, which took it once more and gave it back. More
		// would mean a node fetching and handing back in a loop.
		if dl.Redeliveries < 1 || dl.Redeliveries > 2 {
			t.Errorf("%s has %d redeliveries, want 1 (or 2)", dl.Msg.Body, dl.Redeliveries)
		}
		cb.Ack(dl.Seq)
	}
	// Nothing more arrives: a marker published after them is the next delivery.
	publishQueue(t, a.r, d, "end")
	waitForLong(t, "the marker", func() bool { return len(sb.got()) == 4 })
	if last := sb.got()[3]; string(last.Msg.Body) != "end" || last.Redeliveries != 0 {
		t.Fatalf("after the redeliveries b got %q (redeliveries %d), want the marker", last.Msg.Body, last.Redeliveries)
	}
	cb.Ack(sb.got()[3].Seq)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _, err := b.l.JetStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitForLong(t, "the stream empty once everything is acknowledged", func() bool {
		s, err := js.Stream(ctx, queueStream("v"))
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0 // work-queue retention: acknowledged is deleted
	})
}

func queueFilter(p ...string) router.Filter {
	f := router.Filter{Kind: router.Queue}
	for _, s := range p {
		f.Segs = append(f.Segs, router.Seg{Text: s})
	}
	return f
}

// TestQueueNakLimitDeadLetters: a message nacked up to its policy's NakLimit moves to the dead-letter
// queue, itself clustered, so a consumer on another node reads it there; it leaves the original queue's
// stream once its copy is stored.
func TestQueueNakLimitDeadLetters(t *testing.T) {
	nodes := startQueueMesh(t, 3)
	a, c := nodes[0], nodes[2]
	pol := router.Policies{QueuePolicies: []router.QueuePolicy{{Filter: queueFilter("jobs"), NakLimit: 2, DLQ: []string{"dlq", "*"}}}}
	for _, nd := range nodes {
		nd.r.SetPolicies(pol)
	}
	publishQueue(t, c.r, queueDest("jobs"), "poison")
	sa := &queueSink{}
	ca, err := a.r.Consume(&router.Subscription{Filter: queueFilter("jobs"), Sink: sa, QoS: 1}, router.ConsumerOptions{Credit: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	for i := range 2 {
		waitForLong(t, fmt.Sprintf("delivery %d", i+1), func() bool { return len(sa.got()) == i+1 })
		dl := sa.got()[i]
		if int(dl.Redeliveries) != i {
			t.Fatalf("delivery %d has %d redeliveries", i+1, dl.Redeliveries)
		}
		ca.Nack(dl.Seq)
	}
	sc := &queueSink{}
	cc, err := c.r.Consume(&router.Subscription{Filter: queueFilter("dlq", "jobs"), Sink: sc, QoS: 1}, router.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	waitForLong(t, "the dead-lettered copy on c", func() bool { return len(sc.got()) == 1 })
	if dl := sc.got()[0]; string(dl.Msg.Body) != "poison" {
		t.Fatalf("dead-letter queue got %q", dl.Msg.Body)
	}
	cc.Ack(sc.got()[0].Seq)
	if st := a.r.Stats(); st.DeadLettered != 1 || st.Poisoned != 1 {
		t.Fatalf("a's stats %+v: want 1 poisoned, 1 dead-lettered", st)
	}
	waitForLong(t, "both queues' messages gone from the stream", func() bool {
		return a.l.QueueStats("v").Acked == 1 && c.l.QueueStats("v").Acked == 1
	})
	if n := len(sa.got()); n != 2 {
		t.Fatalf("the poisoned message was delivered %d times on a, want 2", n)
	}
}

// TestQueuesStayLocalWithoutJetStream: without JetStream the link leaves queues to each node's router,
// which keeps its own as on a single node.
func TestQueuesStayLocalWithoutJetStream(t *testing.T) {
	nodes := startNodes(t, 2)
	for _, nd := range nodes {
		if nd.r.Replicated() || nd.l.QueuesReady("v") {
			t.Fatal("queues clustered without JetStream")
		}
	}
	d := queueDest("local")
	if pr := nodes[0].r.Publish(&router.Message{Dest: d, Body: []byte("x"), Persistent: true}); pr.Err != nil {
		t.Fatal(pr.Err)
	}
	if nodes[0].r.QueueDepthOf(d) != 1 || nodes[1].r.QueueDepthOf(d) != 0 {
		t.Fatal("a queue message left its node without JetStream")
	}
}

// TestDurableSubscriptionReplicated: a STOMP-style durable subscription kept on two nodes (its client used
// both) stores each matching topic message once in JetStream, wherever it was published, and a consumer
// on either node reads the backlog with the messages' topics; destroying it purges its messages.
func TestDurableSubscriptionReplicated(t *testing.T) {
	nodes := startQueueMesh(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	d := router.Destination{Kind: router.DurableSub, Path: []string{"sub1"}}
	o := router.DurableOptions{Filter: lit("news", "#"), Owner: "alice", QoS: 1}
	for _, nd := range []node{a, b} {
		if _, err := nd.r.CreateDurable(d, o, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a's and b's interest on c", func() bool { return c.l.Interest("v", []string{"news", "x"}) >= 2 })
	topic := router.Destination{Kind: router.Topic, Path: []string{"news", "x"}}
	for i := range 5 {
		// Published on c, which does not hold the subscription: a and b both store their copy.
		c.r.Publish(&router.Message{Dest: topic, Body: fmt.Appendf(nil, "c%d", i), QoS: 1, Persistent: true})
	}
	for i := range 5 {
		// Published on a, which holds it: the publisher waits for JetStream; b stores its copy too.
		tr := newWaitTracker()
		a.r.Publish(&router.Message{Dest: topic, Body: fmt.Appendf(nil, "a%d", i), QoS: 1, Persistent: true, Tracker: tr})
		if err := tr.wait(t); err != nil {
			t.Fatal(err)
		}
	}
	sb := &queueSink{}
	cb, err := b.r.Consume(&router.Subscription{Filter: router.Filter{Kind: router.DurableSub, Segs: []router.Seg{{Text: "sub1"}}}, Sink: sb, QoS: 1},
		router.ConsumerOptions{Owner: "alice", Credit: 100})
	if err != nil {
		t.Fatal(err)
	}
	waitForLong(t, "10 messages on b", func() bool { return len(sb.got()) >= 10 })
	// The last copies stored would arrive right behind the others: a marker published after them on b
	// (stored by b and a) is the next delivery when nothing was stored twice.
	b.r.Publish(&router.Message{Dest: topic, Body: []byte("end"), QoS: 1, Persistent: true})
	waitForLong(t, "the marker", func() bool {
		g := sb.got()
		return len(g) > 0 && string(g[len(g)-1].Msg.Body) == "end"
	})
	got := sb.got()
	seen := map[string]int{}
	for _, dl := range got {
		seen[string(dl.Msg.Body)]++
		if dl.Msg.Dest.Kind != router.Topic || !slices.Equal(dl.Msg.Dest.Path, topic.Path) {
			t.Fatalf("%s delivered with destination %+v, want its topic", dl.Msg.Body, dl.Msg.Dest)
		}
		cb.Ack(dl.Seq)
	}
	if len(got) != 11 || len(seen) != 11 {
		t.Fatalf("b got %d deliveries of %d messages, want 11 once each: %v", len(got), len(seen), seen)
	}
	cb.Close()
	// Destroyed on both nodes, it leaves nothing in the stream.
	c.r.Publish(&router.Message{Dest: topic, Body: []byte("left"), QoS: 1, Persistent: true})
	waitForLong(t, "every copy stored (12 on each node)", func() bool { return b.l.QueueStats("v").Published == 12 && a.l.QueueStats("v").Published == 12 })
	for _, nd := range []node{a, b} {
		if _, err := nd.r.DestroyDurable(d, "alice", nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _, err := a.l.JetStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitForLong(t, "the subscription's messages purged", func() bool {
		s, err := js.Stream(ctx, queueStream("v"))
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
}
