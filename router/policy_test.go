package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func pubMsg(t testing.TB, r *Router, m *Message) PublishResult {
	t.Helper()
	pr := r.Publish(m)
	if pr.Err != nil {
		t.Fatalf("publish %q: %v", m.Body, pr.Err)
	}
	return pr
}

func qmsg(t testing.TB, name, body string) *Message {
	return &Message{Dest: mustName(t, stompG, name), Body: []byte(body)}
}

func policy(t testing.TB, pattern string, p QueuePolicy) QueuePolicy {
	p.Filter = mustFilter(t, stompG, pattern)
	return p
}

func TestQueuePriority(t *testing.T) {
	r := New(Options{})
	for i, p := range []uint8{0, 9, 4, 9, 0, 4, 200} {
		m := qmsg(t, "/queue/p", fmt.Sprintf("%d-%d", p, i))
		m.Priority = p
		pubMsg(t, r, m)
	}
	s := &recSink{}
	if _, err := r.Consume(queueSub(t, "/queue/p", s), ConsumerOptions{AutoAck: true}); err != nil {
		t.Fatal(err)
	}
	// Higher first, FIFO within a priority; 200 counts as 9 and arrived last among the 9s.
	want := []string{"9-1", "9-3", "200-6", "4-2", "4-5", "0-0", "0-4"}
	if got := s.bodies(); !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestQueueNackKeepsPriorityOrder(t *testing.T) {
	r := New(Options{})
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/queue/p", s), ConsumerOptions{Credit: 1})
	lo := qmsg(t, "/queue/p", "lo")
	pubMsg(t, r, lo) // delivered at once (credit 1)
	hi := qmsg(t, "/queue/p", "hi")
	hi.Priority = 5
	pubMsg(t, r, hi)
	c.Nack(s.all()[0].Seq)
	// The NACKed low-priority message goes back behind the waiting high-priority one.
	if got := s.bodies(); !slices.Equal(got, []string{"lo", "hi"}) {
		t.Fatalf("got %q", got)
	}
}

func TestQueueNakLimitDeadLetters(t *testing.T) {
	r := New(Options{QueuePolicies: []QueuePolicy{
		policy(t, "/queue/orders.**", QueuePolicy{NakLimit: 2, DLQ: []string{"dlq", "*"}}),
		policy(t, "/queue/nodlq", QueuePolicy{NakLimit: 1}),
	}})
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/queue/orders.new", s), ConsumerOptions{Credit: 10})
	pubMsg(t, r, qmsg(t, "/queue/orders.new", "poison"))
	for i := 0; i < 2; i++ {
		d := s.all()[i]
		if d.Redeliveries != uint32(i) || d.QueueSeq != 1 {
			t.Fatalf("delivery %d: redeliveries %d seq %d", i, d.Redeliveries, d.QueueSeq)
		}
		c.Nack(d.Seq)
	}
	if n := len(s.all()); n != 2 {
		t.Fatalf("delivered %d times, want 2 (nak_limit 2)", n)
	}
	if d := r.QueueDepth([]string{"dlq", "orders", "new"}); d != 1 {
		t.Fatalf("DLQ depth %d, want 1", d)
	}
	dl := &recSink{}
	r.Consume(queueSub(t, "/queue/dlq.orders.new", dl), ConsumerOptions{AutoAck: true})
	if got := dl.bodies(); !slices.Equal(got, []string{"poison"}) {
		t.Fatalf("DLQ got %q", got)
	}
	if got := dl.all()[0].Redeliveries; got != 0 {
		t.Fatalf("DLQ redeliveries %d", got)
	}

	// No DLQ: dropped and counted.
	s2 := &recSink{}
	c2, _ := r.Consume(queueSub(t, "/queue/nodlq", s2), ConsumerOptions{Credit: 10})
	pubMsg(t, r, qmsg(t, "/queue/nodlq", "x"))
	c2.Nack(s2.all()[0].Seq)
	st := r.Stats()
	if st.Poisoned != 2 || st.DeadLettered != 1 || st.Dropped != 1 || r.QueueDepth([]string{"nodlq"}) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestQueueCloseCountsTowardNakLimit(t *testing.T) {
	r := New(Options{QueuePolicies: []QueuePolicy{policy(t, "/queue/q", QueuePolicy{NakLimit: 1, DLQ: []string{"dead"}})}})
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/queue/q", s), ConsumerOptions{Credit: 10})
	pubMsg(t, r, qmsg(t, "/queue/q", "a"))
	c.Close()
	if r.QueueDepth([]string{"dead"}) != 1 || r.QueueDepth([]string{"q"}) != 0 {
		t.Fatalf("depths q=%d dead=%d", r.QueueDepth([]string{"q"}), r.QueueDepth([]string{"dead"}))
	}
}

func TestQueueMessageGroups(t *testing.T) {
	r := New(Options{})
	a, b := &recSink{}, &recSink{}
	ca, _ := r.Consume(queueSub(t, "/queue/g", a), ConsumerOptions{AutoAck: true})
	r.Consume(queueSub(t, "/queue/g", b), ConsumerOptions{AutoAck: true})
	for i := range 12 {
		m := qmsg(t, "/queue/g", fmt.Sprintf("%c%d", 'x'+i%3, i))
		m.Group = string(rune('x' + i%3))
		pubMsg(t, r, m)
	}
	owner := map[string]*recSink{}
	for _, s := range []*recSink{a, b} {
		for _, body := range s.bodies() {
			g := body[:1]
			if o := owner[g]; o != nil && o != s {
				t.Fatalf("group %s went to two consumers", g)
			}
			owner[g] = s
		}
	}
	if len(owner) != 3 || len(a.all())+len(b.all()) != 12 {
		t.Fatalf("owners %d, deliveries %d+%d", len(owner), len(a.all()), len(b.all()))
	}
	// When the owner leaves, its groups move to the remaining consumer.
	ca.Close()
	before := len(b.all())
	for i := range 3 {
		m := qmsg(t, "/queue/g", "later")
		m.Group = string(rune('x' + i))
		pubMsg(t, r, m)
	}
	if len(b.all()) != before+3 {
		t.Fatalf("b got %d after a left, want %d", len(b.all()), before+3)
	}
}

func TestQueueGroupWaitsForBusyOwner(t *testing.T) {
	r := New(Options{})
	a, b := &recSink{}, &recSink{}
	ca, _ := r.Consume(queueSub(t, "/queue/g", a), ConsumerOptions{Credit: 1})
	r.Consume(queueSub(t, "/queue/g", b), ConsumerOptions{Credit: 1})
	for _, body := range []string{"g1", "g2"} {
		m := qmsg(t, "/queue/g", body)
		m.Group = "g"
		pubMsg(t, r, m)
	}
	pubMsg(t, r, qmsg(t, "/queue/g", "free"))
	// g1 to a (its owner now, credit used up); g2 waits for a; "free" goes to b past it.
	if !slices.Equal(a.bodies(), []string{"g1"}) || !slices.Equal(b.bodies(), []string{"free"}) {
		t.Fatalf("a %q b %q", a.bodies(), b.bodies())
	}
	ca.Ack(a.all()[0].Seq)
	if !slices.Equal(a.bodies(), []string{"g1", "g2"}) {
		t.Fatalf("a %q", a.bodies())
	}
}

func TestQueueSelectorLeavesMessagesForOthers(t *testing.T) {
	r := New(Options{})
	red, any := &recSink{}, &recSink{}
	isRed := func(m *Message) bool { return strings.HasPrefix(string(m.Body), "red") }
	r.Consume(queueSub(t, "/queue/s", red), ConsumerOptions{AutoAck: true, Match: isRed})
	for _, b := range []string{"blue1", "red1", "blue2", "red2"} {
		pubMsg(t, r, qmsg(t, "/queue/s", b))
	}
	if got := red.bodies(); !slices.Equal(got, []string{"red1", "red2"}) {
		t.Fatalf("red got %q", got)
	}
	if d := r.QueueDepth([]string{"s"}); d != 2 {
		t.Fatalf("depth %d, want the 2 blue ones waiting", d)
	}
	r.Consume(queueSub(t, "/queue/s", any), ConsumerOptions{AutoAck: true})
	if got := any.bodies(); !slices.Equal(got, []string{"blue1", "blue2"}) {
		t.Fatalf("other got %q", got)
	}
}

func TestQueueExclusive(t *testing.T) {
	r := New(Options{})
	plain, x1, x2 := &recSink{}, &recSink{}, &recSink{}
	r.Consume(queueSub(t, "/queue/x", plain), ConsumerOptions{AutoAck: true})
	c1, _ := r.Consume(queueSub(t, "/queue/x", x1), ConsumerOptions{AutoAck: true, Exclusive: true})
	r.Consume(queueSub(t, "/queue/x", x2), ConsumerOptions{AutoAck: true, Exclusive: true})
	for i := range 4 {
		pubMsg(t, r, qmsg(t, "/queue/x", fmt.Sprint(i)))
	}
	if len(x1.all()) != 4 || len(x2.all()) != 0 || len(plain.all()) != 0 {
		t.Fatalf("x1 %d x2 %d plain %d", len(x1.all()), len(x2.all()), len(plain.all()))
	}
	c1.Close()
	pubMsg(t, r, qmsg(t, "/queue/x", "after"))
	if !slices.Equal(x2.bodies(), []string{"after"}) || len(plain.all()) != 0 {
		t.Fatalf("x2 %q plain %q", x2.bodies(), plain.bodies())
	}
}

func TestQueueBrowser(t *testing.T) {
	r := New(Options{})
	for i := range 3 {
		pubMsg(t, r, qmsg(t, "/queue/b", fmt.Sprint(i)))
	}
	// One in flight: a browser sees it too.
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/queue/b", s), ConsumerOptions{Credit: 1})
	br := &recSink{}
	r.Consume(queueSub(t, "/queue/b", br), ConsumerOptions{Browser: true})
	got := br.all()
	if len(got) != 4 || !got[3].BrowseEnd || got[3].Msg != nil {
		t.Fatalf("browser got %d deliveries: %+v", len(got), got)
	}
	for i, d := range got[:3] {
		if string(d.Msg.Body) != fmt.Sprint(i) || d.QueueSeq != uint64(i+1) || d.Seq != 0 {
			t.Fatalf("browse %d: %q seq %d/%d", i, d.Msg.Body, d.QueueSeq, d.Seq)
		}
	}
	if d := r.QueueDepth([]string{"b"}); d != 2 {
		t.Fatalf("browsing consumed: depth %d", d)
	}
	// Nothing after the end marker.
	pubMsg(t, r, qmsg(t, "/queue/b", "later"))
	if len(br.all()) != 4 {
		t.Fatalf("browser got more after end")
	}
	c.Ack(s.all()[0].Seq)

	// from-seq: a browser starting at 3 sees 3 and later, a full sink resumes.
	br2 := &recSink{}
	br2.full.Store(true)
	b2, _ := r.Consume(queueSub(t, "/queue/b", br2), ConsumerOptions{Browser: true, FromSeq: 3})
	br2.full.Store(false)
	b2.Resume()
	var bodies []string
	for _, d := range br2.all() {
		if d.BrowseEnd {
			bodies = append(bodies, "END")
		} else {
			bodies = append(bodies, string(d.Msg.Body))
		}
	}
	if !slices.Equal(bodies, []string{"2", "later", "END"}) {
		t.Fatalf("from-seq browse %q", bodies)
	}
}

func TestQueueFromSeqNewOnly(t *testing.T) {
	r := New(Options{})
	pubMsg(t, r, qmsg(t, "/queue/f", "old"))
	s := &recSink{}
	r.Consume(queueSub(t, "/queue/f", s), ConsumerOptions{AutoAck: true, FromSeq: -1})
	pubMsg(t, r, qmsg(t, "/queue/f", "new"))
	if got := s.bodies(); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("got %q", got)
	}
	if d := r.QueueDepth([]string{"f"}); d != 1 {
		t.Fatalf("depth %d: the old message must stay", d)
	}
}

func TestQueueCreditBytes(t *testing.T) {
	r := New(Options{})
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/queue/cb", s), ConsumerOptions{Credit: 100, CreditBytes: 10})
	for range 3 {
		pubMsg(t, r, qmsg(t, "/queue/cb", "123456"))
	}
	if n := len(s.all()); n != 2 {
		t.Fatalf("in flight %d, want 2 (6 bytes < 10, then 12 >= 10)", n)
	}
	c.Ack(s.all()[0].Seq)
	if n := len(s.all()); n != 3 {
		t.Fatalf("after ack %d", n)
	}
}

func TestQueueFullPolicies(t *testing.T) {
	r := New(Options{QueuePolicies: []QueuePolicy{
		policy(t, "/queue/head", QueuePolicy{MaxMessages: 2, Full: FullDropHead}),
		policy(t, "/queue/tail", QueuePolicy{MaxMessages: 2, Full: FullDropTail}),
		policy(t, "/queue/block", QueuePolicy{MaxMessages: 2}),
	}})
	for _, q := range []string{"head", "tail", "block"} {
		for i := range 3 {
			pr := r.Publish(qmsg(t, "/queue/"+q, fmt.Sprint(i)))
			switch {
			case i < 2 && (pr.Err != nil || pr.Dropped != 0):
				t.Fatalf("%s %d: %+v", q, i, pr)
			case i == 2 && q == "block" && !errors.Is(pr.Err, ErrQueueFull):
				t.Fatalf("block: %+v", pr)
			case i == 2 && q != "block" && (pr.Err != nil || pr.Dropped != 1):
				t.Fatalf("%s: %+v", q, pr)
			}
		}
	}
	want := map[string][]string{"head": {"1", "2"}, "tail": {"0", "1"}, "block": {"0", "1"}}
	for q, w := range want {
		s := &recSink{}
		r.Consume(queueSub(t, "/queue/"+q, s), ConsumerOptions{AutoAck: true})
		if got := s.bodies(); !slices.Equal(got, w) {
			t.Fatalf("%s kept %q, want %q", q, got, w)
		}
	}
}

func TestQueueQuotaBytes(t *testing.T) {
	r := New(Options{QueuePolicies: []QueuePolicy{policy(t, "/queue/qb", QueuePolicy{MaxBytes: 10})}})
	pubMsg(t, r, qmsg(t, "/queue/qb", "12345678"))
	if pr := r.Publish(qmsg(t, "/queue/qb", "123")); !errors.Is(pr.Err, ErrQueueFull) {
		t.Fatalf("over quota: %+v", pr)
	}
}

func TestWaitRoom(t *testing.T) {
	r := New(Options{QueuePolicies: []QueuePolicy{policy(t, "/queue/w", QueuePolicy{MaxMessages: 1})}})
	pubMsg(t, r, qmsg(t, "/queue/w", "a"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.WaitRoom(ctx, qmsg(t, "/queue/w", "c")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRoom on a full queue: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.WaitRoom(context.Background(), qmsg(t, "/queue/w", "c")) }()
	time.Sleep(10 * time.Millisecond)
	s := &recSink{}
	r.Consume(queueSub(t, "/queue/w", s), ConsumerOptions{AutoAck: true})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitRoom not woken by a release")
	}
	if pr := r.Publish(qmsg(t, "/queue/w", "b")); pr.Err != nil {
		t.Fatal(pr.Err)
	}
}

func TestQueueAutoDeleteAfter(t *testing.T) {
	r := New(Options{QueuePolicies: []QueuePolicy{policy(t, "/queue/keep", QueuePolicy{AutoDeleteAfter: 50 * time.Millisecond})}})
	defer r.Close()
	keep, gone := mustName(t, stompG, "/queue/keep"), mustName(t, stompG, "/queue/gone")
	for _, name := range []string{"/queue/keep", "/queue/gone"} {
		s := &recSink{}
		c, _ := r.Consume(queueSub(t, name, s), ConsumerOptions{AutoAck: true})
		pubMsg(t, r, qmsg(t, name, "x"))
		c.Close()
	}
	if r.HasQueue(gone) {
		t.Fatal("a queue without auto_delete_after is forgotten once idle")
	}
	if !r.HasQueue(keep) {
		t.Fatal("queue dropped before auto_delete_after")
	}
	// Sequence numbers continue while it is kept.
	s := &recSink{}
	c, _ := r.Consume(queueSub(t, "/queue/keep", s), ConsumerOptions{AutoAck: true})
	pubMsg(t, r, qmsg(t, "/queue/keep", "y"))
	if s.all()[0].QueueSeq != 2 {
		t.Fatalf("seq %d, want 2", s.all()[0].QueueSeq)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for r.HasQueue(keep) {
		if time.Now().After(deadline) {
			t.Fatal("queue not deleted after auto_delete_after")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// slowSink refuses its first refusals deliveries.
type slowSink struct {
	refusals atomic.Int32
	got      atomic.Int32
}

func (s *slowSink) Deliver(Delivery) bool {
	if s.refusals.Add(-1) >= 0 {
		return false
	}
	s.got.Add(1)
	return true
}

// A topic whose policy is SlowBlock, the default also for topics no policy matches, marks its
// deliveries Paced, SlowQueue does not; Publish itself never waits, whatever the sinks do.
func TestTopicSlowConsumerBlockPaces(t *testing.T) {
	r := New(Options{TopicPolicies: []TopicPolicy{{Filter: mustFilter(t, stompG, "/topic/block.**"), SlowConsumer: SlowBlock},
		{Filter: mustFilter(t, stompG, "/topic/drop"), SlowConsumer: SlowQueue}}})
	for _, tc := range []struct {
		r     *Router
		name  string
		paced bool
	}{{r, "/topic/block.a", true}, {r, "/topic/drop", false}, {r, "/topic/other", true}, {New(Options{}), "/topic/x", true}} {
		s := &recSink{}
		tc.r.Subscribe(&Subscription{Filter: mustFilter(t, stompG, tc.name), Sink: s})
		tc.r.Publish(qmsg(t, tc.name, "m"))
		if got := s.all(); len(got) != 1 || got[0].Paced != tc.paced {
			t.Fatalf("%s: %+v, want Paced %v", tc.name, got, tc.paced)
		}
	}
	s := &slowSink{}
	s.refusals.Store(1 << 30)
	r.Subscribe(&Subscription{Filter: mustFilter(t, stompG, "/topic/block.x"), Sink: s})
	start := time.Now()
	if pr := r.Publish(qmsg(t, "/topic/block.x", "m")); pr.Dropped != 1 {
		t.Fatalf("%+v", pr)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Fatalf("Publish waited %s for a refusing sink", el)
	}
}

// TestQueueTwoConsumersOneNacking: every message reaches someone once, the NACKed ones end in the DLQ
// after nak_limit, nothing is lost or duplicated outside redelivery.
func TestQueueTwoConsumersOneNacking(t *testing.T) {
	const n, limit = 500, 3
	r := New(Options{QueuePolicies: []QueuePolicy{policy(t, "/queue/work", QueuePolicy{NakLimit: limit, DLQ: []string{"work", "dlq"}})}})
	nacker := make(chanSink, n*limit)
	acker := make(chanSink, n*limit)
	cn, _ := r.Consume(queueSub(t, "/queue/work", nacker), ConsumerOptions{Credit: 5})
	ca, _ := r.Consume(queueSub(t, "/queue/work", acker), ConsumerOptions{Credit: 5})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}   // deliveries per body
	acked := map[string]bool{} // bodies acknowledged
	stop := make(chan struct{})
	work := func(ch chan Delivery, c *Consumer, nack bool) {
		defer wg.Done()
		for {
			select {
			case d := <-ch:
				mu.Lock()
				seen[string(d.Msg.Body)]++
				if !nack {
					if acked[string(d.Msg.Body)] {
						t.Errorf("%s acknowledged twice", d.Msg.Body)
					}
					acked[string(d.Msg.Body)] = true
				}
				mu.Unlock()
				if nack {
					c.Nack(d.Seq)
				} else {
					c.Ack(d.Seq)
				}
			case <-stop:
				return
			}
		}
	}
	wg.Add(2)
	go work(nacker, cn, true)
	go work(acker, ca, false)
	for i := range n {
		pubMsg(t, r, qmsg(t, "/queue/work", fmt.Sprint(i)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := len(acked)+r.QueueDepth([]string{"work", "dlq"}) == n
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked %d + dlq %d != %d", len(acked), r.QueueDepth([]string{"work", "dlq"}), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		b := fmt.Sprint(i)
		if seen[b] == 0 || seen[b] > limit+1 {
			t.Fatalf("%s delivered %d times", b, seen[b])
		}
	}
	st := r.Stats()
	if int(st.DeadLettered) != n-len(acked) || st.Poisoned != st.DeadLettered || r.QueueDepth([]string{"work"}) != 0 {
		t.Fatalf("acked %d, stats %+v", len(acked), st)
	}
	if len(acked) == 0 || len(acked) == n {
		t.Fatalf("acked %d of %d: both consumers should have taken part", len(acked), n)
	}
}

func TestFilterMatch(t *testing.T) {
	cases := []struct {
		filter, name string
		want         bool
	}{
		{"/queue/a.**", "/queue/a", true},
		{"/queue/a.**", "/queue/a.b.c", true},
		{"/queue/a.*", "/queue/a.b", true},
		{"/queue/a.*", "/queue/a.b.c", false},
		{"/queue/a.{b+}", "/queue/a.bbb", true},
		{"/queue/a.{b+}", "/queue/a.c", false},
		{"/queue/a", "/queue/ab", false},
		{"/queue/a.**", "/topic/a.b", false}, // another kind
		// [MQTT-4.7.2-1]: a wildcard at the first level does not match a first level starting with '$'.
		{"/topic/**", "/topic/$SYS.x", false},
		{"/topic/*.x", "/topic/$SYS.x", false},
		{"/topic/{.*}.x", "/topic/$SYS.x", false},
		{"/topic/$SYS.**", "/topic/$SYS.x", true},
		{"/topic/a.*", "/topic/a.$x", true}, // only the first level is special
	}
	for _, c := range cases {
		f := mustFilter(t, stompG, c.filter)
		if got := f.Matches(mustName(t, stompG, c.name)); got != c.want {
			t.Errorf("%s ~ %s = %v", c.filter, c.name, got)
		}
	}
}

// SetPolicies changes a running router: an existing queue takes its new quota and full policy at once,
// a queue created afterwards the new defaults, and MaxQueues bounds the queues made from then on.
func TestSetPoliciesInPlace(t *testing.T) {
	r := New(Options{MaxQueueMessages: 2})
	for i := range 2 {
		pubMsg(t, r, qmsg(t, "/queue/a", fmt.Sprint(i)))
	}
	if pr := pubQueue(t, r, "/queue/a", "2"); !errors.Is(pr.Err, ErrQueueFull) {
		t.Fatalf("third publish before: %+v, want ErrQueueFull", pr)
	}
	// A larger default quota for every queue, and drop_tail at 3 for a.*.
	r.SetPolicies(Policies{MaxQueueMessages: 10, MaxQueues: 2,
		QueuePolicies: []QueuePolicy{policy(t, "/queue/a", QueuePolicy{MaxMessages: 3, Full: FullDropTail})}})
	if pr := pubQueue(t, r, "/queue/a", "2"); pr.Err != nil || pr.Dropped != 0 {
		t.Fatalf("third publish after: %+v", pr)
	}
	if pr := pubQueue(t, r, "/queue/a", "3"); pr.Err != nil || pr.Dropped != 1 {
		t.Fatalf("fourth publish (drop_tail at 3): %+v, want one dropped", pr)
	}
	for i := range 10 {
		if pr := pubQueue(t, r, "/queue/b", fmt.Sprint(i)); pr.Err != nil {
			t.Fatalf("publish %d to a new queue under the new default of 10: %v", i, pr.Err)
		}
	}
	if pr := pubQueue(t, r, "/queue/c", "x"); !errors.Is(pr.Err, ErrTooManyQueues) {
		t.Fatalf("a third queue under MaxQueues 2: %+v", pr)
	}
	// Back to a smaller quota: the queue keeps what it holds and refuses arrivals.
	r.SetPolicies(Policies{MaxQueueMessages: 5})
	if d := r.QueueDepth([]string{"b"}); d != 10 {
		t.Fatalf("depth of b after a smaller quota = %d, want 10 kept", d)
	}
	if pr := pubQueue(t, r, "/queue/b", "more"); !errors.Is(pr.Err, ErrQueueFull) {
		t.Fatalf("publish over the smaller quota: %+v", pr)
	}
}

// A publisher waiting for room (WaitRoom) goes on when SetPolicies raises the quota.
func TestSetPoliciesWakesWaitRoom(t *testing.T) {
	r := New(Options{MaxQueueMessages: 1})
	pubMsg(t, r, qmsg(t, "/queue/w", "0"))
	m := qmsg(t, "/queue/w", "1")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- r.WaitRoom(ctx, m)
	}()
	time.Sleep(20 * time.Millisecond) // most likely waiting by now; either order must pass
	r.SetPolicies(Policies{MaxQueueMessages: 2})
	if err := <-done; err != nil {
		t.Fatalf("WaitRoom: %v", err)
	}
	pubMsg(t, r, m)
}
