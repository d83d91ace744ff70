package router

import (
	"slices"
	"sync"
	"testing"
)

// sysJournal is a memJournal that records the bodies of the retained messages it is told about.
type sysJournal struct {
	*memJournal
	mu       sync.Mutex
	retained []string // bodies, "" for a clear
}

func (j *sysJournal) Retain(m *Message) {
	j.mu.Lock()
	j.retained = append(j.retained, string(m.Body))
	j.mu.Unlock()
}

// An Internal message ($SYS) is retained and delivered like any other, but never journalled and not
// counted as published.
func TestInternalRetainedNotJournalled(t *testing.T) {
	j := &sysJournal{memJournal: newMemJournal()}
	r := New(Options{Journal: j})
	g := mqttG
	sink := &recSink{}
	if err := r.Subscribe(&Subscription{Filter: mustFilter(t, g, "$SYS/broker/#"), Sink: sink}); err != nil {
		t.Fatal(err)
	}
	sys := Destination{Kind: Topic, Path: []string{"$SYS", "broker", "uptime"}}
	for _, body := range []string{"1 seconds", "2 seconds"} {
		r.Publish(&Message{Dest: sys, Body: []byte(body), Retain: true, Internal: true})
	}
	r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"a"}}, Body: []byte("client"), Retain: true})

	if got := sink.bodies(); !slices.Equal(got, []string{"1 seconds", "2 seconds"}) {
		t.Errorf("delivered %q", got)
	}
	if rm := r.Retained(mustFilter(t, g, "$SYS/broker/uptime")); len(rm) != 1 || string(rm[0].Body) != "2 seconds" {
		t.Errorf("retained %v", rm)
	}
	j.mu.Lock()
	journalled := slices.Clone(j.retained)
	j.mu.Unlock()
	if !slices.Equal(journalled, []string{"client"}) {
		t.Errorf("journalled %q, want only the client's message", journalled)
	}
	st := r.Stats()
	if st.Published != 1 || st.Delivered != 2 || st.Retained != 2 || st.NoRoute != 1 {
		t.Errorf("stats published %d delivered %d retained %d no route %d, want 1 2 2 1",
			st.Published, st.Delivered, st.Retained, st.NoRoute)
	}
	// Nobody subscribed: an Internal message is no unrouted publish either.
	r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"$SYS", "x"}}, Body: []byte("1"), Retain: true, Internal: true})
	if n := r.Stats().NoRoute; n != 1 {
		t.Errorf("no route %d after an internal message nobody subscribed to", n)
	}
	// An empty Internal message clears the topic, still without the journal.
	r.Publish(&Message{Dest: sys, Retain: true, Internal: true})
	r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"$SYS", "x"}}, Retain: true, Internal: true})
	if rm := r.Retained(mustFilter(t, g, "$SYS/#")); len(rm) != 0 {
		t.Errorf("retained after clear %v", rm)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.retained) != 1 {
		t.Errorf("journalled %q after clearing an internal message", j.retained)
	}
}
