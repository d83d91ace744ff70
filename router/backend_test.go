package router

import (
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeBackend claims queues under "c" and records what the router asks of it.
type fakeBackend struct {
	mu        sync.Mutex
	dests     []Destination // where each published message went
	discarded []Destination
	published []*Message
	want      []int
	acked     []any
	returned  []any
}

func (b *fakeBackend) Claims(d Destination) bool {
	return (d.Kind == Queue || d.Kind == DurableSub) && len(d.Path) > 0 && d.Path[0] == "c"
}

func (b *fakeBackend) Discard(d Destination) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.discarded = append(b.discarded, d)
}

func (b *fakeBackend) Publish(d Destination, m *Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dests = append(b.dests, d)
	b.published = append(b.published, m)
	return nil
}

func (b *fakeBackend) Want(_ Destination, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.want = append(b.want, n)
}

func (b *fakeBackend) Settle(ref any, ack bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ack {
		b.acked = append(b.acked, ref)
	} else {
		b.returned = append(b.returned, ref)
	}
}

func (b *fakeBackend) lastWant() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.want) == 0 {
		return -1
	}
	return b.want[len(b.want)-1]
}

type collectSink struct{ ds []Delivery }

func (s *collectSink) Deliver(d Delivery) bool { s.ds = append(s.ds, d); return true }

func TestQueueBackendClaimsFeedsAndSettles(t *testing.T) {
	r := New(Options{})
	b := &fakeBackend{}
	r.SetQueueBackend(b)
	if !r.Replicated() {
		t.Fatal("Replicated() false with a backend")
	}
	claimed := Destination{Kind: Queue, Path: []string{"c", "q"}}
	local := Destination{Kind: Queue, Path: []string{"l"}}
	if pr := r.Publish(&Message{Dest: claimed, Body: []byte("x"), Persistent: true}); pr.Err != nil {
		t.Fatal(pr.Err)
	}
	r.Publish(&Message{Dest: local, Body: []byte("y")})
	if len(b.published) != 1 || string(b.published[0].Body) != "x" {
		t.Fatalf("backend got %d messages, want the claimed queue's one", len(b.published))
	}
	if r.QueueDepthOf(claimed) != 0 || r.QueueDepthOf(local) != 1 {
		t.Fatalf("depths %d (claimed) and %d (local), want 0 and 1", r.QueueDepthOf(claimed), r.QueueDepthOf(local))
	}
	if r.Feed(claimed, &Message{Dest: claimed, Body: []byte("early")}, 0, "early") {
		t.Fatal("Feed kept a message for a queue with no consumer")
	}

	s := &collectSink{}
	f := Filter{Kind: Queue, Segs: []Seg{{Text: "c"}, {Text: "q"}}}
	c, err := r.Consume(&Subscription{Filter: f, Sink: s, QoS: 1}, ConsumerOptions{Credit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if w := b.lastWant(); w != 3 {
		t.Fatalf("want %d after a consumer with credit 3 attached", w)
	}
	for i, ref := range []string{"a", "b", "c"} {
		if !r.Feed(claimed, &Message{Dest: claimed, Body: []byte(ref)}, uint32(i), ref) {
			t.Fatalf("Feed %s refused", ref)
		}
	}
	if len(s.ds) != 3 || s.ds[2].Redeliveries != 2 || s.ds[0].Msg.ID == 0 {
		t.Fatalf("deliveries %+v", s.ds)
	}
	if w := b.lastWant(); w != 0 {
		t.Fatalf("want %d with the credit used up", w)
	}
	c.Ack(s.ds[0].Seq)
	if !slices.Equal(b.acked, []any{"a"}) || b.lastWant() != 1 {
		t.Fatalf("after an ack: acked %v, want %d", b.acked, b.lastWant())
	}
	c.Nack(s.ds[1].Seq) // redelivered here, to the same consumer
	if len(s.ds) != 4 || string(s.ds[3].Msg.Body) != "b" || s.ds[3].Redeliveries != 2 {
		t.Fatalf("nacked message not redelivered locally: %+v", s.ds[3:])
	}
	c.Close()
	slices.SortFunc(b.returned, func(x, y any) int { return strings.Compare(x.(string), y.(string)) })
	if want := []any{"b", "c"}; !slices.Equal(b.returned, want) {
		t.Fatalf("handed back %v, want %v", b.returned, want)
	}
	if w := b.lastWant(); w != 0 {
		t.Fatalf("want %d with no consumer", w)
	}
	if r.HasQueue(claimed) {
		t.Fatal("the claimed queue is kept with nothing in it and no consumer")
	}
	// Temporary queues stay with their connection's node.
	tmp := Destination{Kind: TempQueue, Path: []string{"c", "t"}}
	r.Publish(&Message{Dest: tmp, Body: []byte("t")})
	if r.QueueDepthOf(tmp) != 1 || len(b.published) != 1 {
		t.Fatal("a temporary queue went to the backend")
	}
}

// TestQueueBackendClaimsExistingQueue: a queue that held messages before the backend was set (a backlog
// restored from the host's store) keeps them for its consumers and takes fed messages after them.
func TestQueueBackendClaimsExistingQueue(t *testing.T) {
	r := New(Options{})
	d := Destination{Kind: Queue, Path: []string{"c", "old"}}
	r.Publish(&Message{Dest: d, Body: []byte("local")})
	b := &fakeBackend{}
	r.SetQueueBackend(b)
	r.Publish(&Message{Dest: d, Body: []byte("new")})
	if len(b.published) != 1 || r.QueueDepthOf(d) != 1 {
		t.Fatalf("backend got %d messages, queue holds %d; want 1 each", len(b.published), r.QueueDepthOf(d))
	}
	s := &collectSink{}
	c, err := r.Consume(&Subscription{Filter: Filter{Kind: Queue, Segs: []Seg{{Text: "c"}, {Text: "old"}}}, Sink: s, QoS: 1}, ConsumerOptions{Credit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if w := b.lastWant(); w != 4 {
		t.Fatalf("want %d: credit 5 less the local message delivered", w)
	}
	r.Feed(d, &Message{Dest: d, Body: []byte("fed")}, 0, "f")
	if len(s.ds) != 2 || string(s.ds[0].Msg.Body) != "local" || string(s.ds[1].Msg.Body) != "fed" {
		t.Fatalf("deliveries %v", s.ds)
	}
	c.Ack(s.ds[0].Seq)
	if len(b.acked) != 0 {
		t.Fatalf("the local message's ack went to the backend: %v", b.acked)
	}
	c.Ack(s.ds[1].Seq)
	if len(b.acked) != 1 {
		t.Fatalf("the fed message's ack did not reach the backend")
	}
}

// TestQueueBackendClaimsDurableSubscription: a claimed durable subscription's copies of topic messages go
// to the backend under the subscription's name, keeping their topic, and destroying it discards its
// backlog there; an unclaimed one keeps its queue in the router.
func TestQueueBackendClaimsDurableSubscription(t *testing.T) {
	r := New(Options{})
	b := &fakeBackend{}
	r.SetQueueBackend(b)
	f := Filter{Kind: Topic, Segs: []Seg{{Text: "t"}, {Kind: SegMany}}}
	claimed := Destination{Kind: DurableSub, Path: []string{"c", "d"}}
	local := Destination{Kind: DurableSub, Path: []string{"$own"}}
	for _, d := range []Destination{claimed, local} {
		if _, err := r.CreateDurable(d, DurableOptions{Filter: f, QoS: 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	topic := Destination{Kind: Topic, Path: []string{"t", "x"}}
	pr := r.Publish(&Message{Dest: topic, Body: []byte("m"), QoS: 1, Persistent: true})
	if pr.Delivered != 2 || pr.Dropped != 0 {
		t.Fatalf("publish result %+v: want both subscriptions counted as delivered", pr)
	}
	if len(b.dests) != 1 || !slices.Equal(b.dests[0].Path, claimed.Path) || !slices.Equal(b.published[0].Dest.Path, topic.Path) {
		t.Fatalf("backend got %v (messages %v), want the claimed subscription's copy with its topic", b.dests, b.published)
	}
	if r.QueueDepthOf(claimed) != 0 || r.QueueDepthOf(local) != 1 {
		t.Fatalf("depths %d (claimed) and %d (local), want 0 and 1", r.QueueDepthOf(claimed), r.QueueDepthOf(local))
	}
	if _, err := r.DestroyDurable(claimed, "", nil); err != nil {
		t.Fatal(err)
	}
	if len(b.discarded) != 1 || !slices.Equal(b.discarded[0].Path, claimed.Path) {
		t.Fatalf("discarded %v, want the destroyed subscription", b.discarded)
	}
}

// DropDurable removes a claimed subscription here only: the backend discards nothing, and what it fed
// and a consumer held is handed back, not acknowledged.
func TestQueueBackendDropDurableKeepsBackendMessages(t *testing.T) {
	r := New(Options{})
	b := &fakeBackend{}
	r.SetQueueBackend(b)
	d := Destination{Kind: DurableSub, Path: []string{"c", "moving"}}
	f := Filter{Kind: Topic, Segs: []Seg{{Text: "t"}}}
	if _, err := r.CreateDurable(d, DurableOptions{Filter: f, QoS: 1, Owner: "u"}, nil); err != nil {
		t.Fatal(err)
	}
	if !r.Claimed(d) || r.Claimed(Destination{Kind: DurableSub, Path: []string{"local"}}) {
		t.Fatal("Claimed does not follow the backend's Claims")
	}
	sink := &collectSink{}
	c, err := r.Consume(&Subscription{Filter: Filter{Kind: DurableSub, Segs: []Seg{{Text: "c"}, {Text: "moving"}}}, Sink: sink, QoS: 1}, ConsumerOptions{Credit: 10, Owner: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Feed(d, &Message{Dest: Destination{Kind: Topic, Path: []string{"t"}}, Body: []byte("x"), QoS: 1}, 0, "ref1") {
		t.Fatal("feed refused")
	}
	if len(sink.ds) != 1 {
		t.Fatalf("delivered %d, want the fed message", len(sink.ds))
	}
	if _, err := r.DropDurable(d, "someone else", nil); err != ErrNotOwner {
		t.Fatalf("another owner's drop: %v, want ErrNotOwner", err)
	}
	if _, err := r.DropDurable(d, "u", nil); err != nil {
		t.Fatal(err)
	}
	if c.Unacked() != 0 {
		t.Fatal("the consumer still holds the message")
	}
	if len(b.discarded) != 0 || len(b.acked) != 0 || !slices.Equal(b.returned, []any{"ref1"}) {
		t.Fatalf("backend: discarded %v, acked %v, returned %v; want only ref1 handed back", b.discarded, b.acked, b.returned)
	}
	if _, ok := r.Durable(d); ok {
		t.Fatal("the subscription is still here")
	}
	if _, err := r.DropDurable(d, "u", nil); err != ErrNoDurable {
		t.Fatalf("second drop: %v, want ErrNoDurable", err)
	}
}

// A durable subscription another node made is kept here as a mirror: a publish here reaches the backend
// for it, nothing is reported back to the watcher, a client's CreateDurable by the same owner turns it
// into its own (reported), another owner's is refused, and another node's destruction removes it without
// purging the backend.
func TestDurableMirrors(t *testing.T) {
	r := New(Options{})
	b := &fakeBackend{}
	r.SetQueueBackend(b)
	type change struct {
		d Destination
		o *DurableOptions
	}
	var seen []change
	stop := r.WatchDurables(func(d Destination, o *DurableOptions) { seen = append(seen, change{d, o}) })
	defer stop()
	d := Destination{Kind: DurableSub, Path: []string{"c", "m"}}
	f := Filter{Kind: Topic, Segs: []Seg{{Text: "t"}, {Kind: SegMany}}}
	if err := r.ApplyDurable(d, &DurableOptions{Filter: f, Owner: "alice", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if !r.IsMirror(d) || len(seen) != 0 {
		t.Fatalf("mirror %v, reported %v", r.IsMirror(d), seen)
	}
	pr := r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"t", "x"}}, Body: []byte("m"), QoS: 1})
	if pr.Delivered != 1 || len(b.dests) != 1 || !slices.Equal(b.dests[0].Path, d.Path) {
		t.Fatalf("publish %+v, backend got %v: want the mirror's copy", pr, b.dests)
	}
	// The other node changes the subscription's filter: the mirror follows, and purges nothing (that
	// node did).
	g := Filter{Kind: Topic, Segs: []Seg{{Text: "u"}}}
	if err := r.ApplyDurable(d, &DurableOptions{Filter: g, Owner: "alice", QoS: 0}); err != nil {
		t.Fatal(err)
	}
	r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"t", "x"}}, Body: []byte("old"), QoS: 1})
	r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"u"}}, Body: []byte("new"), QoS: 1})
	if o, _ := r.Durable(d); !r.IsMirror(d) || len(b.dests) != 2 || len(b.discarded) != 0 || o.QoS != 0 || !equalFilter(o.Filter, g) {
		t.Fatalf("after a filter change there: mirror %v, backend got %v, discarded %v, options %+v", r.IsMirror(d), b.dests, b.discarded, o)
	}
	if err := r.ApplyDurable(d, &DurableOptions{Filter: f, Owner: "alice", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDurable(d, DurableOptions{Filter: f, Owner: "bob", QoS: 1}, nil); err != ErrNotOwner {
		t.Fatalf("bob taking alice's subscription made on another node: %v, want ErrNotOwner", err)
	}
	if existed, err := r.CreateDurable(d, DurableOptions{Filter: f, Owner: "alice", QoS: 1}, nil); err != nil || !existed {
		t.Fatalf("alice's own: existed %v, %v", existed, err)
	}
	if r.IsMirror(d) || len(seen) != 1 || seen[0].o == nil {
		t.Fatalf("after alice's CreateDurable: mirror %v, reported %v", r.IsMirror(d), seen)
	}
	// Another node's gated change removes mirrors only: alice's own subscription here stays.
	if r.RemoveMirror(d); !durableExists(r, d) {
		t.Fatal("RemoveMirror removed a client's subscription")
	}
	if err := r.ApplyDurable(d, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Durable(d); ok || len(b.discarded) != 0 || len(seen) != 1 {
		t.Fatalf("after another node's destruction: still here %v, discarded %v, reported %v", ok, b.discarded, seen)
	}
	if _, err := r.CreateDurable(d, DurableOptions{Filter: f, Owner: "alice", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.DestroyDurable(d, "alice", nil); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[2].o != nil || len(b.discarded) != 1 {
		t.Fatalf("a client's create and destroy: reported %v, discarded %v", seen, b.discarded)
	}
}

func durableExists(r *Router, d Destination) bool { _, ok := r.Durable(d); return ok }

// TestRemoveMirror: a mirror goes, and the backend keeps its messages (nothing discarded).
func TestRemoveMirror(t *testing.T) {
	r := New(Options{})
	b := &fakeBackend{}
	r.SetQueueBackend(b)
	d := Destination{Kind: DurableSub, Path: []string{"m"}}
	if err := r.ApplyDurable(d, &DurableOptions{Filter: Filter{Kind: Topic, Segs: []Seg{{Text: "t"}}}, Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	if r.RemoveMirror(d); durableExists(r, d) || len(b.discarded) != 0 {
		t.Fatalf("after RemoveMirror: still here %v, discarded %v", durableExists(r, d), b.discarded)
	}
}
