package router

import (
	"slices"
	"testing"
)

func topicMsg(body string, retain bool, path ...string) *Message {
	return &Message{Dest: Destination{Kind: Topic, Path: path}, Body: []byte(body), Retain: retain}
}

// The watcher sees every retained change a publish or an operator makes, sets and clears
// [MQTT-3.3.1-10], in order, but not $SYS's (Internal) nor those ApplyRetained makes, which are
// stored without being delivered.
func TestWatchRetainedAndApplyRetained(t *testing.T) {
	r := New(Options{})
	if r.ConfirmsRetained() {
		t.Fatal("ConfirmsRetained without a watcher")
	}
	var got []string
	stop := r.WatchRetained(func(m *Message) { got = append(got, m.Dest.Path[0]+"="+string(m.Body)) })
	if !r.ConfirmsRetained() {
		t.Fatal("ConfirmsRetained false with a watcher")
	}
	sink := &recSink{}
	if err := r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, "#"), Sink: sink}); err != nil {
		t.Fatal(err)
	}
	r.Publish(topicMsg("1", true, "a"))
	r.Publish(topicMsg("live", false, "a")) // not retained: not a change
	r.Publish(topicMsg("", true, "a"))      // a clear
	r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"$SYS", "x"}}, Body: []byte("s"), Retain: true, Internal: true})
	r.Publish(topicMsg("2", true, "b"))
	r.DeleteRetained([]string{"b"}, nil)
	r.ApplyRetained(topicMsg("remote", true, "c"))
	if want := []string{"a=1", "a=", "b=2", "b="}; !slices.Equal(got, want) {
		t.Fatalf("watched %q, want %q", got, want)
	}
	// ApplyRetained delivered nothing but is what a new subscriber reads.
	if b := sink.bodies(); !slices.Equal(b, []string{"1", "live", "", "2"}) {
		t.Fatalf("delivered %q", b)
	}
	if rm := r.Retained(mustFilter(t, mqttG, "c")); len(rm) != 1 || string(rm[0].Body) != "remote" || rm[0].ID == 0 {
		t.Fatalf("retained c = %v", rm)
	}
	r.ApplyRetained(topicMsg("", true, "c")) // [MQTT-3.3.1-11] a clear from another node
	if rm := r.Retained(mustFilter(t, mqttG, "c")); len(rm) != 0 {
		t.Fatalf("retained c after a remote clear = %v", rm)
	}
	stop()
	r.Publish(topicMsg("3", true, "a"))
	if len(got) != 4 || r.ConfirmsRetained() {
		t.Fatalf("watcher called after stop: %q", got)
	}
}

// With external dispatch Publish leaves Topic groups alone; DeliverShared gives one member of the named
// group with that filter the message (MQTT 5 section 4.8.2: each message to one session of the group).
func TestSharedDispatchExternal(t *testing.T) {
	r := New(Options{})
	r.SetSharedDispatch(true)
	f := mustFilter(t, mqttG, "t/+")
	m1, m2, other, sys := &recSink{}, &recSink{}, &recSink{}, &recSink{}
	for _, s := range []*Subscription{
		{Filter: f, Sink: m1, Share: "g"}, {Filter: f, Sink: m2, Share: "g"},
		{Filter: mustFilter(t, mqttG, "t/#"), Sink: other, Share: "g"}, // same name, other filter: other group
		{Filter: mustFilter(t, mqttG, "$x/#"), Sink: sys, Share: "g"},
	} {
		if err := r.Subscribe(s); err != nil {
			t.Fatal(err)
		}
	}
	r.Publish(topicMsg("p", false, "t", "1"))
	r.Publish(topicMsg("d", false, "$x", "1")) // '$' topics stay on their node: dispatched here
	if n := len(m1.all()) + len(m2.all()) + len(other.all()); n != 0 {
		t.Fatalf("Publish delivered %d to externally dispatched groups", n)
	}
	if len(sys.all()) != 1 {
		t.Fatalf("a $ topic's group got %d, want 1", len(sys.all()))
	}
	for range 4 {
		if pr := r.DeliverShared(topicMsg("s", false, "t", "1"), "g", f); pr.Delivered != 1 {
			t.Fatalf("DeliverShared = %+v", pr)
		}
	}
	if a, b := len(m1.all()), len(m2.all()); a != 2 || b != 2 || len(other.all()) != 0 {
		t.Fatalf("members got %d and %d, the other group %d; want 2, 2, 0", a, b, len(other.all()))
	}
	if pr := r.DeliverShared(topicMsg("s", false, "u", "1"), "g", f); pr.Delivered != 0 {
		t.Fatalf("DeliverShared of a topic the filter does not match = %+v", pr)
	}
	if pr := r.DeliverShared(topicMsg("all", false, "t", "1"), "", Filter{}); pr.Delivered != 2 {
		t.Fatalf("DeliverShared to every group = %+v, want both groups", pr)
	}
	if len(other.all()) != 1 {
		t.Fatalf("the other group got %d with group \"\", want 1", len(other.all()))
	}
	r.SetSharedDispatch(false)
	r.Publish(topicMsg("p", false, "t", "1"))
	if n := len(m1.all()) + len(m2.all()) + len(other.all()); n != 8 {
		t.Fatalf("after SetSharedDispatch(false) the groups have %d, want 8", n)
	}
}
