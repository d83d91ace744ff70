package router

import (
	"errors"
	"testing"
)

// TestMaxSubscriptionsPerRouter: a router (one per virtual host) holds at most MaxSubscriptions topic
// subscriptions and queue consumers together; those that end give their place back, and SetPolicies
// changes the bound.
func TestMaxSubscriptionsPerRouter(t *testing.T) {
	r := New(Options{MaxSubscriptions: 3})
	defer r.Close()
	sink := &recSink{}
	topic := func(name string) *Subscription {
		return &Subscription{Filter: Filter{Kind: Topic, Segs: []Seg{{Kind: SegLiteral, Text: name}}}, Sink: sink}
	}
	queue := &Subscription{Filter: Filter{Kind: Queue, Segs: []Seg{{Kind: SegLiteral, Text: "q"}}}, Sink: sink}
	a, b := topic("a"), topic("b")
	for _, s := range []*Subscription{a, b} {
		if err := r.Subscribe(s); err != nil {
			t.Fatal(err)
		}
	}
	c, err := r.Consume(queue, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Subscribe(topic("c")); !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("fourth subscription: %v", err)
	}
	if _, err := r.Consume(queue, ConsumerOptions{}); !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("fourth as a consumer: %v", err)
	}
	r.Unsubscribe(a)
	r.Unsubscribe(a) // unknown now: gives nothing back twice
	c.Close()
	c.Close()
	for _, name := range []string{"c", "d"} {
		if err := r.Subscribe(topic(name)); err != nil {
			t.Fatalf("after two ended: %v", err)
		}
	}
	if err := r.Subscribe(topic("e")); !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("fourth again: %v", err)
	}
	r.SetPolicies(Policies{MaxSubscriptions: 4})
	if err := r.Subscribe(topic("e")); err != nil {
		t.Fatalf("after SetPolicies: %v", err)
	}
	// A deleted queue's consumers give their places back too.
	r.SetPolicies(Policies{MaxSubscriptions: 5})
	if _, err := r.Consume(queue, ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	r.DeleteQueue(queue.Filter.Destination())
	if err := r.Subscribe(topic("f")); err != nil {
		t.Fatalf("after DeleteQueue: %v", err)
	}
}

// TestMaxDurablesPerRouter: the durable subscription bound is each router's own and changes with
// SetPolicies; a restore ignores it.
func TestMaxDurablesPerRouter(t *testing.T) {
	r1, r2 := New(Options{MaxDurables: 1}), New(Options{})
	defer r1.Close()
	defer r2.Close()
	d := func(name string) Destination { return Destination{Kind: DurableSub, Path: []string{name}} }
	o := DurableOptions{Filter: Filter{Kind: Topic, Segs: []Seg{{Kind: SegMany}}}}
	if _, err := r1.CreateDurable(d("a"), o, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.CreateDurable(d("b"), o, nil); !errors.Is(err, ErrTooManyDurables) {
		t.Fatalf("second on r1: %v", err)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := r2.CreateDurable(d(name), o, nil); err != nil {
			t.Fatalf("r2: %v", err)
		}
	}
	if err := r1.RestoreDurable(d("c"), o); err != nil {
		t.Fatalf("restore beyond the bound: %v", err)
	}
	r1.SetPolicies(Policies{MaxDurables: 4})
	if _, err := r1.CreateDurable(d("b"), o, nil); err != nil {
		t.Fatalf("after SetPolicies: %v", err)
	}
}
