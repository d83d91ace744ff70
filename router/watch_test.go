package router

import (
	"testing"
)

func TestWatchTopics(t *testing.T) {
	r := New(Options{})
	mk := func(f string) *Subscription {
		flt, err := mqttG.ParseFilter(f)
		if err != nil {
			t.Fatal(err)
		}
		return &Subscription{Filter: flt, Sink: nopSink{}}
	}
	before := mk("a/+/c")
	if err := r.Subscribe(before); err != nil {
		t.Fatal(err)
	}
	type ev struct {
		s     *Subscription
		added bool
	}
	var got []ev
	stop := r.WatchTopics(func(s *Subscription, added bool) { got = append(got, ev{s, added}) })
	if len(got) != 1 || got[0].s != before || !got[0].added {
		t.Fatalf("existing subscription not reported: %+v", got)
	}
	after := mk("x/#")
	if err := r.Subscribe(after); err != nil {
		t.Fatal(err)
	}
	tmp := &Subscription{Filter: Filter{Kind: TempTopic, Segs: []Seg{{Text: "t"}}}, Sink: nopSink{}}
	if err := r.Subscribe(tmp); err != nil {
		t.Fatal(err)
	}
	r.Unsubscribe(before)
	r.Unsubscribe(before) // unknown now: no event
	want := []ev{{before, true}, {after, true}, {before, false}}
	if len(got) != len(want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	stop()
	r.Unsubscribe(after)
	if len(got) != len(want) {
		t.Fatalf("event after stop: %+v", got[len(want):])
	}
}
