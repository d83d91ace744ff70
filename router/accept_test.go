package router

import (
	"slices"
	"testing"
)

// gateSink is a recSink that may not receive the topics in deny (an access gate), and records every
// message it was asked about.
type gateSink struct {
	recSink
	deny  []string // last topic level refused
	asked int
}

func (s *gateSink) Accepts(m *Message) bool {
	s.mu.Lock()
	s.asked++
	s.mu.Unlock()
	return !slices.Contains(s.deny, m.Dest.Path[len(m.Dest.Path)-1])
}

var _ Acceptor = (*gateSink)(nil)

// statsDelta returns the Delivered and Dropped counters gained since before.
func statsDelta(r *Router, before Stats) (delivered, dropped uint64) {
	s := r.Stats()
	return s.Delivered - before.Delivered, s.Dropped - before.Dropped
}

// A plain subscription whose sink refuses a message is skipped: nothing delivered, nothing dropped.
func TestAcceptorPlainSubscription(t *testing.T) {
	r := New(Options{})
	f := mustFilter(t, mqttG, "s/+")
	gated := &gateSink{deny: []string{"secret"}}
	open := &recSink{}
	for _, sk := range []Sink{gated, open} {
		if err := r.Subscribe(&Subscription{Filter: f, Sink: sk}); err != nil {
			t.Fatal(err)
		}
	}
	before := r.Stats()
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "s/secret"), Body: []byte("x")}); pr.Delivered != 1 || pr.Dropped != 0 {
		t.Fatalf("secret: %+v, want delivered 1 (the open sink), dropped 0", pr)
	}
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "s/open"), Body: []byte("y")}); pr.Delivered != 2 || pr.Dropped != 0 {
		t.Fatalf("open: %+v", pr)
	}
	if got := gated.bodies(); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("gated sink got %q, want only y", got)
	}
	if dl, dr := statsDelta(r, before); dl != 3 || dr != 0 {
		t.Fatalf("stats: delivered %d dropped %d, want 3 and 0", dl, dr)
	}
	// Refused and full at once: refused wins, it is not a drop.
	gated.full.Store(true)
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "s/secret")}); pr.Dropped != 0 {
		t.Fatalf("refused by a full sink: %+v", pr)
	}
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "s/open")}); pr.Dropped != 1 {
		t.Fatalf("accepted by a full sink: %+v, want a drop", pr)
	}
}

// A group member that may not receive a message is skipped; the message goes to another member, and
// when no member may receive it the group counts it neither delivered nor dropped.
func TestAcceptorSharedGroup(t *testing.T) {
	r := New(Options{})
	f := mustFilter(t, mqttG, "s/+")
	a := &gateSink{deny: []string{"secret"}}
	b := &gateSink{}
	sa := &Subscription{Filter: f, Sink: a, Share: "g"}
	sb := &Subscription{Filter: f, Sink: b, Share: "g"}
	for _, s := range []*Subscription{sa, sb} {
		if err := r.Subscribe(s); err != nil {
			t.Fatal(err)
		}
	}
	before := r.Stats()
	for range 6 {
		if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "s/secret"), Body: []byte("s")}); pr.Delivered != 1 || pr.Dropped != 0 {
			t.Fatalf("secret: %+v", pr)
		}
	}
	if len(a.all()) != 0 || len(b.all()) != 6 {
		t.Fatalf("secret went to a=%d b=%d, want 0 and 6", len(a.all()), len(b.all()))
	}
	// The one member that may receive it is full: a drop.
	b.full.Store(true)
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "s/secret")}); pr.Delivered != 0 || pr.Dropped != 1 {
		t.Fatalf("secret, b full: %+v, want a drop", pr)
	}
	b.full.Store(false)
	// Only the gated member left: the group takes nothing and drops nothing.
	r.Unsubscribe(sb)
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "s/secret")}); pr.Delivered != 0 || pr.Dropped != 0 {
		t.Fatalf("secret, only a: %+v, want neither delivered nor dropped", pr)
	}
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "s/open"), Body: []byte("o")}); pr.Delivered != 1 {
		t.Fatalf("open, only a: %+v", pr)
	}
	if got := a.bodies(); !slices.Equal(got, []string{"o"}) {
		t.Fatalf("a got %q, want only o", got)
	}
	if dl, dr := statsDelta(r, before); dl != 7 || dr != 1 {
		t.Fatalf("stats: delivered %d dropped %d, want 7 and 1", dl, dr)
	}
}

// A queue consumer whose sink refuses a message leaves it for the others, as with ConsumerOptions.Match.
func TestAcceptorConsumer(t *testing.T) {
	r := New(Options{})
	qf := Filter{Kind: Queue, Segs: []Seg{{Kind: SegLiteral, Text: "q"}}}
	picky := &gateSink{deny: []string{"q"}}
	if _, err := r.Consume(&Subscription{Filter: qf, Sink: picky}, ConsumerOptions{AutoAck: true}); err != nil {
		t.Fatal(err)
	}
	if pr := r.Publish(&Message{Dest: Destination{Kind: Queue, Path: []string{"q"}}, Body: []byte("m")}); pr.Delivered != 0 || pr.Err != nil {
		t.Fatalf("refused by the only consumer: %+v", pr)
	}
	other := &recSink{}
	oc, err := r.Consume(&Subscription{Filter: qf, Sink: other}, ConsumerOptions{AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := other.bodies(); !slices.Equal(got, []string{"m"}) || len(picky.all()) != 0 {
		t.Fatalf("other got %q, picky %d", got, len(picky.all()))
	}
	oc.Close()
	// With a Match too, both must accept.
	both := &gateSink{}
	c, err := r.Consume(&Subscription{Filter: qf, Sink: both}, ConsumerOptions{AutoAck: true, Match: func(*Message) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if pr := r.Publish(&Message{Dest: Destination{Kind: Queue, Path: []string{"q"}}, Body: []byte("n")}); pr.Delivered != 0 {
		t.Fatalf("refused by Match: %+v", pr)
	}
	if both.asked == 0 || len(both.all()) != 0 {
		t.Fatalf("a consumer with Match: asked %d, got %d; want its Acceptor asked and nothing delivered", both.asked, len(both.all()))
	}
}
