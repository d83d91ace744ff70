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
	published []*Message
	want      []int
	acked     []any
	returned  []any
}

func (b *fakeBackend) Claims(d Destination) bool {
	return d.Kind == Queue && len(d.Path) > 0 && d.Path[0] == "c"
}

func (b *fakeBackend) Discard(Destination) {}

func (b *fakeBackend) Publish(_ Destination, m *Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
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
