package router

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func queueSub(t testing.TB, name string, sink Sink) *Subscription {
	t.Helper()
	return &Subscription{Filter: mustFilter(t, stompG, name), Sink: sink}
}

func pubQueue(t testing.TB, r *Router, name, body string) PublishResult {
	t.Helper()
	return r.Publish(&Message{Dest: mustName(t, stompG, name), Body: []byte(body)})
}

func TestQueueRoundRobin(t *testing.T) {
	r := New(Options{})
	a, b := &recSink{}, &recSink{}
	for _, s := range []*recSink{a, b} {
		if _, err := r.Consume(queueSub(t, "/queue/q", s), ConsumerOptions{AutoAck: true}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		if pr := pubQueue(t, r, "/queue/q", fmt.Sprint(i)); pr.Err != nil || pr.Delivered != 1 {
			t.Fatalf("publish %d: %+v", i, pr)
		}
	}
	if got, want := a.bodies(), []string{"0", "2", "4"}; !slices.Equal(got, want) {
		t.Fatalf("a got %q, want %q", got, want)
	}
	if got, want := b.bodies(), []string{"1", "3", "5"}; !slices.Equal(got, want) {
		t.Fatalf("b got %q, want %q", got, want)
	}
	if d := r.QueueDepth([]string{"q"}); d != 0 {
		t.Fatalf("depth = %d", d)
	}
}

func TestQueueFIFOWithoutConsumers(t *testing.T) {
	r := New(Options{})
	for i := range 5 {
		if pr := pubQueue(t, r, "/queue/q", fmt.Sprint(i)); pr.Err != nil || pr.Delivered != 0 {
			t.Fatalf("publish: %+v", pr)
		}
	}
	if d := r.QueueDepth([]string{"q"}); d != 5 {
		t.Fatalf("depth = %d, want 5", d)
	}
	s := &recSink{}
	if _, err := r.Consume(queueSub(t, "/queue/q", s), ConsumerOptions{AutoAck: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := s.bodies(), []string{"0", "1", "2", "3", "4"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i, d := range s.all() {
		if d.Seq == 0 || (i > 0 && d.Seq <= s.all()[i-1].Seq) || d.Msg.ID == 0 {
			t.Fatalf("delivery %d: seq %d id %d", i, d.Seq, d.Msg.ID)
		}
	}
}

func TestQueueCreditAndAck(t *testing.T) {
	r := New(Options{})
	s := &recSink{}
	c, err := r.Consume(queueSub(t, "/queue/q", s), ConsumerOptions{Credit: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		pubQueue(t, r, "/queue/q", fmt.Sprint(i))
	}
	if got := s.bodies(); !slices.Equal(got, []string{"0", "1"}) {
		t.Fatalf("with credit 2: %q", got)
	}
	if c.Unacked() != 2 || r.QueueDepth([]string{"q"}) != 3 {
		t.Fatalf("unacked %d depth %d", c.Unacked(), r.QueueDepth([]string{"q"}))
	}
	first := s.all()[0].Seq
	if !c.Ack(first) {
		t.Fatal("Ack failed")
	}
	if c.Ack(first) {
		t.Fatal("second Ack of the same seq succeeded")
	}
	if c.Ack(12345) || c.Nack(12345) {
		t.Fatal("unknown seq settled")
	}
	if got := s.bodies(); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("after one ack: %q", got)
	}
	for _, d := range s.all()[1:] {
		c.Ack(d.Seq)
	}
	if got := s.bodies(); len(got) != 5 {
		t.Fatalf("after acking: %q", got)
	}
	for _, d := range s.all()[3:] {
		c.Ack(d.Seq)
	}
	if c.Unacked() != 0 || r.QueueDepth([]string{"q"}) != 0 {
		t.Fatalf("unacked %d depth %d", c.Unacked(), r.QueueDepth([]string{"q"}))
	}
	c.Close()
	if n := r.Stats().Queues; n != 0 {
		t.Fatalf("idle queue kept: %d queues", n)
	}
}

func TestQueueNackRedelivers(t *testing.T) {
	r := New(Options{})
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/queue/q", s), ConsumerOptions{Credit: 1})
	pubQueue(t, r, "/queue/q", "a")
	pubQueue(t, r, "/queue/q", "b")
	d := s.all()[0]
	if string(d.Msg.Body) != "a" || d.Redeliveries != 0 {
		t.Fatalf("first delivery %+v", d)
	}
	if !c.Nack(d.Seq) {
		t.Fatal("Nack failed")
	}
	// Back at the head: "a" again, before "b", marked as redelivered.
	d2 := s.all()[1]
	if string(d2.Msg.Body) != "a" || d2.Redeliveries != 1 || d2.Seq == d.Seq || d2.Msg != d.Msg {
		t.Fatalf("redelivery %+v", d2)
	}
	c.Ack(d2.Seq)
	if d3 := s.all()[2]; string(d3.Msg.Body) != "b" || d3.Redeliveries != 0 {
		t.Fatalf("third delivery %+v", d3)
	}
}

func TestQueueCloseRequeuesInOrder(t *testing.T) {
	r := New(Options{})
	a := &recSink{}
	ca, _ := r.Consume(queueSub(t, "/queue/q", a), ConsumerOptions{Credit: 3})
	for i := range 5 {
		pubQueue(t, r, "/queue/q", fmt.Sprint(i))
	}
	ca.Ack(a.all()[1].Seq) // "1" acked; "0" and "2" in flight, then "3" delivered on the freed credit
	if got := a.bodies(); !slices.Equal(got, []string{"0", "1", "2", "3"}) {
		t.Fatalf("a got %q", got)
	}
	ca.Close()
	ca.Close() // idempotent
	if d := r.QueueDepth([]string{"q"}); d != 4 {
		t.Fatalf("depth after close = %d, want 4", d)
	}
	if ca.Ack(a.all()[0].Seq) {
		t.Fatal("Ack after Close succeeded")
	}
	b := &recSink{}
	r.Consume(queueSub(t, "/queue/q", b), ConsumerOptions{AutoAck: true})
	if got := b.bodies(); !slices.Equal(got, []string{"0", "2", "3", "4"}) {
		t.Fatalf("b got %q, want the requeued messages first, in order", got)
	}
	for i, d := range b.all() {
		want := uint32(1)
		if i == 3 {
			want = 0
		}
		if d.Redeliveries != want {
			t.Fatalf("%q redeliveries = %d, want %d", d.Msg.Body, d.Redeliveries, want)
		}
	}
}

func TestQueueSinkFullAndResume(t *testing.T) {
	r := New(Options{})
	a, b := &recSink{}, &recSink{}
	ca, _ := r.Consume(queueSub(t, "/queue/q", a), ConsumerOptions{AutoAck: true})
	a.full.Store(true)
	pubQueue(t, r, "/queue/q", "0")
	if d := r.QueueDepth([]string{"q"}); d != 1 {
		t.Fatalf("refused message not kept: depth %d", d)
	}
	// Another consumer with room takes what the full one refused.
	r.Consume(queueSub(t, "/queue/q", b), ConsumerOptions{AutoAck: true})
	if got := b.bodies(); !slices.Equal(got, []string{"0"}) {
		t.Fatalf("b got %q", got)
	}
	b.full.Store(true)
	pubQueue(t, r, "/queue/q", "1")
	pubQueue(t, r, "/queue/q", "2")
	if d := r.QueueDepth([]string{"q"}); d != 2 {
		t.Fatalf("depth = %d", d)
	}
	// a stays blocked until Resume, even though its sink has room again.
	a.full.Store(false)
	pubQueue(t, r, "/queue/q", "3")
	if len(a.all()) != 0 {
		t.Fatalf("blocked consumer got %q before Resume", a.bodies())
	}
	ca.Resume()
	if got := a.bodies(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("after Resume a got %q", got)
	}
}

func TestQueueFull(t *testing.T) {
	r := New(Options{MaxQueueMessages: 3, MaxQueueBytes: 1000})
	for i := range 3 {
		if pr := pubQueue(t, r, "/queue/q", fmt.Sprint(i)); pr.Err != nil {
			t.Fatalf("publish %d: %v", i, pr.Err)
		}
	}
	// Drop-tail: the new message is refused and not stored.
	if pr := pubQueue(t, r, "/queue/q", "3"); !errors.Is(pr.Err, ErrQueueFull) {
		t.Fatalf("4th publish: %+v", pr)
	}
	if d := r.QueueDepth([]string{"q"}); d != 3 {
		t.Fatalf("depth = %d", d)
	}
	// In-flight messages count until acked.
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/queue/q", s), ConsumerOptions{})
	if pr := pubQueue(t, r, "/queue/q", "3"); !errors.Is(pr.Err, ErrQueueFull) {
		t.Fatalf("publish with 3 unacked: %+v", pr)
	}
	c.Ack(s.all()[0].Seq)
	if pr := pubQueue(t, r, "/queue/q", "3"); pr.Err != nil || pr.Delivered != 1 {
		t.Fatalf("publish after ack: %+v", pr)
	}
	if st := r.Stats(); st.QueueFull != 2 {
		t.Fatalf("QueueFull = %d", st.QueueFull)
	}
	// Bytes bound: another queue, same limit.
	big := make([]byte, 600)
	if pr := r.Publish(&Message{Dest: mustName(t, stompG, "/queue/b"), Body: big}); pr.Err != nil {
		t.Fatal(pr.Err)
	}
	if pr := r.Publish(&Message{Dest: mustName(t, stompG, "/queue/b"), Body: big}); !errors.Is(pr.Err, ErrQueueFull) {
		t.Fatalf("bytes bound: %+v", pr)
	}
}

func TestQueueKindsAreSeparate(t *testing.T) {
	r := New(Options{})
	q, tq, ds := &recSink{}, &recSink{}, &recSink{}
	// A durable subscription's queue takes consumers only while the subscription exists.
	if _, err := r.CreateDurable(mustName(t, stompG, "/dsub/x"), DurableOptions{Filter: mustFilter(t, stompG, "/topic/y")}, nil); err != nil {
		t.Fatal(err)
	}
	r.Consume(queueSub(t, "/queue/x", q), ConsumerOptions{AutoAck: true})
	r.Consume(queueSub(t, "/temp-queue/x", tq), ConsumerOptions{AutoAck: true})
	r.Consume(queueSub(t, "/dsub/x", ds), ConsumerOptions{AutoAck: true})
	pubQueue(t, r, "/temp-queue/x", "t")
	pubQueue(t, r, "/queue/x", "q")
	pubQueue(t, r, "/dsub/x", "d")
	if !slices.Equal(q.bodies(), []string{"q"}) || !slices.Equal(tq.bodies(), []string{"t"}) || !slices.Equal(ds.bodies(), []string{"d"}) {
		t.Fatalf("queue %q temp %q dsub %q", q.bodies(), tq.bodies(), ds.bodies())
	}
	// Temporary topics behave like topics in their own namespace.
	tt := &recSink{}
	r.Subscribe(&Subscription{Filter: mustFilter(t, stompG, "/temp-topic/x"), Sink: tt})
	pubQueue(t, r, "/topic/x", "topic")
	pubQueue(t, r, "/temp-topic/x", "temp")
	if !slices.Equal(tt.bodies(), []string{"temp"}) {
		t.Fatalf("temp topic got %q", tt.bodies())
	}
}

func TestConsumeRejects(t *testing.T) {
	r := New(Options{})
	for name, s := range map[string]*Subscription{
		"wildcard": queueSub(t, "/queue/a.*", nopSink{}),
		"topic":    queueSub(t, "/topic/a", nopSink{}),
		"no sink":  queueSub(t, "/queue/a", nil),
	} {
		if _, err := r.Consume(s, ConsumerOptions{}); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestQueueDropsExpired(t *testing.T) {
	r := New(Options{})
	r.Publish(&Message{Dest: mustName(t, stompG, "/queue/q"), Body: []byte("old"), Expires: 1})
	r.Publish(&Message{Dest: mustName(t, stompG, "/queue/q"), Body: []byte("new")})
	s := &recSink{}
	r.Consume(queueSub(t, "/queue/q", s), ConsumerOptions{AutoAck: true})
	if got := s.bodies(); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("got %q", got)
	}
}

// chanSink hands deliveries to a goroutine that acks them: the way a connection does it, since Deliver
// must not call back into the router.
type chanSink chan Delivery

func (c chanSink) Deliver(d Delivery) bool {
	select {
	case c <- d:
		return true
	default:
		return false
	}
}

// Run with -race: producers and acking consumers at once; every message is delivered and acked once.
func TestQueueConcurrent(t *testing.T) {
	r := New(Options{})
	const producers, perProducer, consumers = 3, 500, 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]int{}
	var cwg sync.WaitGroup
	done := make(chan struct{})
	for range consumers {
		ch := make(chanSink, 8)
		c, err := r.Consume(queueSub(t, "/queue/work", ch), ConsumerOptions{Credit: 4})
		if err != nil {
			t.Fatal(err)
		}
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				select {
				case d := <-ch:
					mu.Lock()
					seen[d.Msg.ID]++
					mu.Unlock()
					c.Ack(d.Seq)
				case <-done:
					c.Close()
					return
				}
			}
		}()
	}
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perProducer {
				if pr := r.Publish(&Message{Dest: Destination{Kind: Queue, Path: []string{"work"}}}); pr.Err != nil {
					t.Error(pr.Err)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == producers*perProducer
	})
	close(done)
	cwg.Wait()
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("message %d delivered %d times", id, n)
		}
	}
}

// waitFor polls cond for up to 5s. It is a copy of prototest.WaitFor because the router never imports
// anything under protocol, not even in tests.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDeleteQueue(t *testing.T) {
	r := New(Options{})
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/temp-queue/t", s), ConsumerOptions{Credit: 1})
	pubQueue(t, r, "/temp-queue/t", "a")
	pubQueue(t, r, "/temp-queue/t", "b")
	if n := r.DeleteQueue(mustName(t, stompG, "/temp-queue/t")); n != 2 {
		t.Fatalf("DeleteQueue = %d, want 2 (one waiting, one in flight)", n)
	}
	if c.Ack(s.all()[0].Seq) {
		t.Fatal("Ack on a deleted queue succeeded")
	}
	c.Close()
	if n := r.Stats().Queues; n != 0 {
		t.Fatalf("queues = %d", n)
	}
	// A later publish creates a fresh queue.
	pubQueue(t, r, "/temp-queue/t", "c")
	if d := r.QueueDepthOf(mustName(t, stompG, "/temp-queue/t")); d != 1 {
		t.Fatalf("depth = %d", d)
	}
	if n := r.DeleteQueue(mustName(t, stompG, "/temp-queue/none")); n != 0 {
		t.Fatalf("unknown queue: %d", n)
	}
}

// Options.MaxQueues refuses a new queue, to publishers and consumers alike, and counts only queues in
// use: one that empties and loses its consumers is forgotten and frees its place.
func TestMaxQueues(t *testing.T) {
	r := New(Options{MaxQueues: 2})
	defer r.Close()
	q := func(name string) Destination { return Destination{Kind: Queue, Path: []string{name}} }
	for _, name := range []string{"a", "b"} {
		if res := r.Publish(&Message{Dest: q(name), Body: []byte("x")}); res.Err != nil {
			t.Fatalf("publish to %s: %v", name, res.Err)
		}
	}
	if res := r.Publish(&Message{Dest: q("c"), Body: []byte("x")}); !errors.Is(res.Err, ErrTooManyQueues) {
		t.Fatalf("publish to a third queue: %v, want ErrTooManyQueues", res.Err)
	}
	f := Filter{Kind: Queue, Segs: []Seg{{Kind: SegLiteral, Text: "c"}}}
	if _, err := r.Consume(&Subscription{Filter: f, Sink: nopSink{}}, ConsumerOptions{}); !errors.Is(err, ErrTooManyQueues) {
		t.Fatalf("consume from a third queue: %v, want ErrTooManyQueues", err)
	}
	// An existing queue still takes messages.
	if res := r.Publish(&Message{Dest: q("a"), Body: []byte("y")}); res.Err != nil {
		t.Fatalf("publish to an existing queue: %v", res.Err)
	}
	// Draining queue b with an auto-ack consumer, then closing it, frees b's place.
	fb := Filter{Kind: Queue, Segs: []Seg{{Kind: SegLiteral, Text: "b"}}}
	c, err := r.Consume(&Subscription{Filter: fb, Sink: nopSink{}}, ConsumerOptions{AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if res := r.Publish(&Message{Dest: q("c"), Body: []byte("x")}); res.Err != nil {
		t.Fatalf("publish after queue b was freed: %v", res.Err)
	}
}
