package virtualhost_test

import (
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/virtualhost"
)

func queueFilter(d router.Destination) router.Filter {
	f := router.Filter{Kind: d.Kind}
	for _, p := range d.Path {
		f.Segs = append(f.Segs, router.Seg{Text: p})
	}
	return f
}

// waitTracker waits for tr's writes.
func waitTracker(t *testing.T, tr *virtualhost.Tracker) error {
	t.Helper()
	done := make(chan error, 1)
	tr.Then(func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("tracker never completed")
		return nil
	}
}

// consumeBodies attaches an auto-acking consumer to d and returns what it got.
func consumeBodies(t *testing.T, h *virtualhost.Host, d router.Destination) (bodies []string, redeliveries []uint32) {
	t.Helper()
	var sk sink
	c, err := h.Router.Consume(&router.Subscription{Filter: queueFilter(d), Sink: &sk}, router.ConsumerOptions{AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, d := range sk.all() {
		bodies = append(bodies, string(d.Msg.Body))
		redeliveries = append(redeliveries, d.Redeliveries)
	}
	return bodies, redeliveries
}

// A purge is durable once its tracker says so: after a crash, only what was delivered and not
// acknowledged comes back (as redeliveries); the purged messages, swapped out ones included, are gone.
func TestPurgeSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	ro := router.Options{SwapMessages: 8}
	h, err := openHost(durableConf(dir), ro)
	if err != nil {
		t.Fatal(err)
	}
	jobs := router.Destination{Kind: router.Queue, Path: []string{"jobs"}}
	for i := range 40 {
		if err := publishWait(t, h, &router.Message{Dest: jobs, Body: []byte(strconv.Itoa(i)), QoS: 1, Persistent: true}); err != nil {
			t.Fatal(err)
		}
	}
	var sk sink
	if _, err := h.Router.Consume(&router.Subscription{Filter: queueFilter(jobs), Sink: &sk}, router.ConsumerOptions{Credit: 2}); err != nil {
		t.Fatal(err)
	}
	tr := &virtualhost.Tracker{}
	if n, err := h.Router.PurgeQueue(jobs, tr); n != 38 || err != nil {
		t.Fatalf("PurgeQueue = %d, %v; want 38", n, err)
	}
	if err := waitTracker(t, tr); err != nil {
		t.Fatal(err)
	}
	if err := virtualhost.Crash(h); err != nil {
		t.Fatal(err)
	}

	h, err = openHost(durableConf(dir), ro)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if c := h.Recovered(); c.QueueEntries != 2 {
		t.Fatalf("recovered %+v, want the 2 unacknowledged entries", c)
	}
	bodies, red := consumeBodies(t, h, jobs)
	if !slices.Equal(bodies, []string{"0", "1"}) || !slices.Equal(red, []uint32{1, 1}) {
		t.Fatalf("after the crash: %q redeliveries %v, want [0 1] [1 1]", bodies, red)
	}
}

// nackToDLQ publishes bodies to work, then dead-letters those in dead by nacking them past the
// NakLimit of 2 and acknowledges the others.
func nackToDLQ(t *testing.T, h *virtualhost.Host, work router.Destination, bodies []string, dead map[string]bool) {
	t.Helper()
	for _, b := range bodies {
		if err := publishWait(t, h, &router.Message{Dest: work, Body: []byte(b), QoS: 1, Persistent: true}); err != nil {
			t.Fatal(err)
		}
	}
	var sk sink
	c, err := h.Router.Consume(&router.Subscription{Filter: queueFilter(work), Sink: &sk}, router.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < len(sk.all()); i++ {
		d := sk.all()[i]
		if dead[string(d.Msg.Body)] {
			c.Nack(d.Seq) // redelivered once, then dead-lettered at the second nack
		} else {
			c.Ack(d.Seq)
		}
	}
}

var dlqPolicy = router.Options{QueuePolicies: []router.QueuePolicy{{
	Filter:   router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "work"}}},
	NakLimit: 2, DLQ: []string{"dlq", "*"},
}}}

// Replaying a dead-letter queue moves exactly the dead messages back, in order, and the move survives a
// crash once its tracker says it is durable.
func TestMoveDLQSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), dlqPolicy)
	if err != nil {
		t.Fatal(err)
	}
	work := router.Destination{Kind: router.Queue, Path: []string{"work"}}
	dlq := router.Destination{Kind: router.Queue, Path: []string{"dlq", "work"}}
	nackToDLQ(t, h, work, []string{"a", "b", "c", "d", "e"}, map[string]bool{"b": true, "d": true, "e": true})
	if d := h.Router.QueueDepthOf(dlq); d != 3 {
		t.Fatalf("dlq holds %d, want 3", d)
	}
	tr := &virtualhost.Tracker{}
	if n, err := h.Router.MoveMessages(dlq, work, 0, tr); n != 3 || err != nil {
		t.Fatalf("MoveMessages = %d, %v; want 3", n, err)
	}
	if err := waitTracker(t, tr); err != nil {
		t.Fatal(err)
	}
	if err := virtualhost.Crash(h); err != nil {
		t.Fatal(err)
	}

	h, err = openHost(durableConf(dir), dlqPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if d := h.Router.QueueDepthOf(dlq); d != 0 {
		t.Fatalf("dlq holds %d after the crash, want 0", d)
	}
	if c := h.Recovered(); c.QueueEntries != 3 || c.Messages != 3 {
		t.Fatalf("recovered %+v, want 3 entries and 3 bodies (moved, not copied)", c)
	}
	if bodies, _ := consumeBodies(t, h, work); !slices.Equal(bodies, []string{"b", "d", "e"}) {
		t.Fatalf("work after the crash: %q, want [b d e]", bodies)
	}
}

// A move whose commit fails leaves the store as it was: each message in one queue, none lost, none
// twice. (Journalled as two commits, a failure of the first alone would lose the messages.)
func TestMoveIsOneCommit(t *testing.T) {
	dir := t.TempDir()
	var failNext atomic.Bool
	var writes atomic.Int64
	st, err := badgerstore.Open(dir, badgerstore.Options{BeforeWrite: func() error {
		writes.Add(1)
		if failNext.CompareAndSwap(true, false) {
			return errors.New("injected: disk full")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := conf.VirtualHost{Name: "d", Anonymous: true}
	h, err := virtualhost.Open(c, dlqPolicy, virtualhost.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	work := router.Destination{Kind: router.Queue, Path: []string{"work"}}
	dlq := router.Destination{Kind: router.Queue, Path: []string{"dlq", "work"}}
	nackToDLQ(t, h, work, []string{"a", "b", "c"}, map[string]bool{"a": true, "b": true, "c": true})
	if err := <-st.Commit(); err != nil { // a barrier: the dead-lettering is written
		t.Fatal(err)
	}
	failNext.Store(true)
	before, commitsBefore := writes.Load(), st.Stats().Commits
	tr := &virtualhost.Tracker{}
	if n, err := h.Router.MoveMessages(dlq, work, 0, tr); n != 3 || err != nil {
		t.Fatalf("MoveMessages = %d, %v", n, err)
	}
	if err := waitTracker(t, tr); err == nil {
		t.Fatal("the failed commit was reported durable")
	}
	if got, commits := writes.Load()-before, st.Stats().Commits-commitsBefore; got != 1 || commits != 1 {
		t.Fatalf("the move took %d commits in %d store writes, want 1 in 1", commits, got)
	}
	if err := virtualhost.Crash(h); err != nil {
		t.Fatal(err)
	}
	st2, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lists := map[string]int{}
	if _, err := st2.Recover(store.Visitor{Queue: func(q store.Queue, l store.ListInfo) error {
		d, _ := router.ParseKey(q.Name)
		lists[d.Path[0]] = l.Count
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	st2.Close()
	if lists["dlq"] != 3 || lists["work"] != 0 {
		t.Fatalf("store after a failed move: %v, want the 3 messages in the dlq only", lists)
	}
}

// Messages moved from a queue into a durable subscription are journalled in its list and come back there.
func TestMoveIntoDurableSubscription(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Router.CreateDurable(dsubDest, router.DurableOptions{Filter: pFilter, Owner: "a", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	q := router.Destination{Kind: router.Queue, Path: []string{"replay"}}
	for i := range 3 {
		if err := publishWait(t, h, &router.Message{Dest: q, Body: []byte(strconv.Itoa(i)), QoS: 1, Persistent: true}); err != nil {
			t.Fatal(err)
		}
	}
	tr := &virtualhost.Tracker{}
	if n, err := h.Router.MoveMessages(q, dsubDest, 2, tr); n != 2 || err != nil {
		t.Fatalf("MoveMessages = %d, %v", n, err)
	}
	if err := waitTracker(t, tr); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h, err = openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if c := h.Recovered(); c.DurableSubEntries != 2 || c.QueueEntries != 1 {
		t.Fatalf("recovered %+v, want 2 entries in the durable subscription and 1 in the queue", c)
	}
	var sk sink
	cons, err := h.Router.Consume(&router.Subscription{Filter: dsubConsumerFilter(dsubDest), Sink: &sk, QoS: 1},
		router.ConsumerOptions{Owner: "a", AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	cons.Close()
	var got []string
	for _, d := range sk.all() {
		got = append(got, string(d.Msg.Body))
	}
	if !slices.Equal(got, []string{"0", "1"}) {
		t.Fatalf("durable subscription after reopen: %q", got)
	}
}
