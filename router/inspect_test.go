package router

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// queueInfoOf finds d in infos.
func queueInfoOf(t *testing.T, infos []QueueInfo, d Destination) QueueInfo {
	t.Helper()
	for _, qi := range infos {
		if qi.Dest.Kind == d.Kind && slices.Equal(qi.Dest.Path, d.Path) {
			return qi
		}
	}
	t.Fatalf("%v %q not listed in %+v", d.Kind, d.Path, infos)
	return QueueInfo{}
}

func TestQueuesListsEveryQueue(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j, SwapMessages: 2, QueuePolicies: []QueuePolicy{
		policy(t, "/queue/work", QueuePolicy{MaxMessages: 50, NakLimit: 1, DLQ: []string{"dlq", "*"}}),
	}})
	work := mustName(t, stompG, "/queue/work")
	for i := range 5 {
		pubMsg(t, r, &Message{Dest: work, Body: []byte(fmt.Sprint("body", i)), Persistent: true})
	}
	if qi := queueInfoOf(t, r.Queues(), work); qi.Depth != 5 || qi.Swapped != 3 || qi.Bytes != 25 ||
		qi.MaxMessages != 50 || qi.MaxBytes != DefaultMaxQueueBytes || !qi.Journalled || qi.Enqueued != 5 {
		t.Fatalf("work before consuming: %+v", qi)
	}
	s := &recSink{}
	c, err := r.Consume(queueSub(t, "/queue/work", s), ConsumerOptions{Credit: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Ack(s.all()[0].Seq)
	c.Nack(s.all()[1].Seq) // NakLimit 1: to dlq.work
	qi := queueInfoOf(t, r.Queues(), work)
	if qi.Depth != 1 || qi.Unacked != 2 || qi.Consumers != 1 || qi.Enqueued != 5 || qi.Dequeued != 2 || qi.Bytes != 15 {
		t.Fatalf("work while consumed: %+v", qi)
	}
	dlq := Destination{Kind: Queue, Path: []string{"dlq", "work"}}
	if qi := queueInfoOf(t, r.Queues(), dlq); qi.Depth != 1 || qi.Enqueued != 1 || qi.MaxMessages != DefaultMaxQueueMessages {
		t.Fatalf("dlq: %+v", qi)
	}
	// A durable subscription is listed while it holds nothing and nobody consumes it.
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#")}, nil); err != nil {
		t.Fatal(err)
	}
	if r.HasQueue(dsubD) {
		t.Fatal("the test wants a durable subscription without a queue")
	}
	if qi := queueInfoOf(t, r.Queues(), dsubD); qi.Depth != 0 || !qi.Journalled || qi.MaxMessages != DefaultMaxQueueMessages {
		t.Fatalf("durable subscription: %+v", qi)
	}
	if qi, ok := r.QueueInfo(dsubD); !ok || qi.Dest.Kind != DurableSub {
		t.Fatalf("QueueInfo(dsub) = %+v, %v", qi, ok)
	}
	// A temporary queue is not journalled.
	tmp := Destination{Kind: TempQueue, Path: []string{"t1"}}
	pubMsg(t, r, &Message{Dest: tmp, Body: []byte("x"), Persistent: true})
	if qi, ok := r.QueueInfo(tmp); !ok || qi.Journalled || qi.Depth != 1 {
		t.Fatalf("temp queue: %+v %v", qi, ok)
	}
	if _, ok := r.QueueInfo(Destination{Kind: Queue, Path: []string{"never"}}); ok {
		t.Fatal("QueueInfo reports a queue that does not exist")
	}
	// Sorted by kind, then path segment by segment; a snapshot the caller may keep.
	got := r.Queues()
	var names []string
	for _, qi := range got {
		names = append(names, qi.Dest.Kind.String()+":"+strings.Join(qi.Dest.Path, "|"))
	}
	want := []string{"queue:dlq|work", "queue:work", "dsub:$mqtt|dev1|p/#", "temp-queue:t1"}
	if !slices.Equal(names, want) {
		t.Fatalf("order %q, want %q", names, want)
	}
	got[1].Dest.Path[0] = "changed"
	if _, ok := r.QueueInfo(work); !ok {
		t.Fatal("modifying a snapshot changed the router")
	}
}

func TestQueuesSortStable(t *testing.T) {
	r := New(Options{})
	for _, n := range []string{"b", "a.z", "a", "a.b.c", "ab"} {
		pubMsg(t, r, qmsg(t, "/queue/"+n, "x"))
	}
	var names []string
	for _, qi := range r.Queues() {
		names = append(names, strings.Join(qi.Dest.Path, "."))
	}
	if want := []string{"a", "a.b.c", "a.z", "ab", "b"}; !slices.Equal(names, want) {
		t.Fatalf("order %q, want %q", names, want)
	}
}

func TestTopicsListsFiltersAndRetained(t *testing.T) {
	r := New(Options{})
	sub := func(filter, share string) *Subscription {
		s := &Subscription{Filter: mustFilter(t, mqttG, filter), Sink: &recSink{}, Share: share}
		if err := r.Subscribe(s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	sub("a/+", "")
	plus := sub("a/+", "")
	sub("a/b", "")
	sub("a/b", "g")
	sub("a/b", "g")
	sub("a/b", "h")
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "a/#")}, nil); err != nil {
		t.Fatal(err)
	}
	sub("a/#", "")
	re := &Subscription{Filter: mustFilter(t, stompG, "/topic/a.{[0-9]+}"), Sink: &recSink{}}
	if err := r.Subscribe(re); err != nil {
		t.Fatal(err)
	}
	if err := r.Subscribe(&Subscription{Filter: Filter{Kind: TempTopic, Segs: []Seg{{Text: "tmp"}}}, Sink: &recSink{}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Message{
		{Dest: mustName(t, mqttG, "a/b"), Body: []byte("r1"), Retain: true},
		{Dest: mustName(t, mqttG, "x/y"), Body: []byte("r2"), Retain: true},
		{Dest: mustName(t, mqttG, "old"), Body: []byte("r3"), Retain: true, Expires: 1},
	} {
		pubMsg(t, r, m)
	}
	type row struct {
		filter                        string
		subs, durable, shared, groups int
		retained                      bool
	}
	render := func(ti TopicInfo) string {
		var parts []string
		for _, s := range ti.Filter.Segs {
			switch s.Kind {
			case SegOne:
				parts = append(parts, "+")
			case SegMany:
				parts = append(parts, "#")
			case SegRegex:
				parts = append(parts, "{"+s.Text+"}")
			default:
				parts = append(parts, s.Text)
			}
		}
		return ti.Filter.Kind.String() + ":" + strings.Join(parts, "/")
	}
	var got []row
	for _, ti := range r.Topics() {
		got = append(got, row{render(ti), ti.Subscriptions, ti.Durable, ti.Shared, ti.Groups, ti.Retained})
	}
	want := []row{
		{"topic:a/b", 4, 0, 3, 2, true},
		{"topic:a/+", 2, 0, 0, 0, false},
		{"topic:a/#", 2, 1, 0, 0, false},
		{"topic:a/{[0-9]+}", 1, 0, 0, 0, false},
		{"topic:x/y", 0, 0, 0, 0, true},
		{"temp-topic:tmp", 1, 0, 0, 0, false},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Topics:\n got %+v\nwant %+v", got, want)
	}
	for _, ti := range r.Topics() {
		if ti.Filter.Segs[len(ti.Filter.Segs)-1].Kind == SegRegex && ti.Filter.Segs[1].Re == nil {
			t.Fatal("regex segment without its compiled Re")
		}
	}
	r.Unsubscribe(plus)
	r.Unsubscribe(re)
	got = got[:0]
	for _, ti := range r.Topics() {
		got = append(got, row{render(ti), ti.Subscriptions, ti.Durable, ti.Shared, ti.Groups, ti.Retained})
	}
	if want := append(append([]row{}, want[0]), row{"topic:a/+", 1, 0, 0, 0, false}, want[2], want[4], want[5]); !slices.Equal(got, want) {
		t.Fatalf("after unsubscribing:\n got %+v\nwant %+v", got, want)
	}
}

// retainJournal records Retain calls.
type retainJournal struct {
	*memJournal
	retains []*Message
}

func (j *retainJournal) Retain(m *Message) { j.retains = append(j.retains, m) }

type countTracker struct{ n int }

func (c *countTracker) Track() func(error) { c.n++; return func(error) {} }

// DeleteRetained clears a retained message, journalled, without delivering anything to subscribers.
func TestDeleteRetained(t *testing.T) {
	j := &retainJournal{memJournal: newMemJournal()}
	r := New(Options{Journal: j})
	s := &recSink{}
	r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, "a/#"), Sink: s})
	pubMsg(t, r, &Message{Dest: mustName(t, mqttG, "a/b"), Body: []byte("r"), Retain: true})
	pubMsg(t, r, &Message{Dest: mustName(t, mqttG, "a/c"), Body: []byte("kept"), Retain: true})
	before := len(s.all())
	tr := &countTracker{}
	if !r.DeleteRetained([]string{"a", "b"}, tr) {
		t.Fatal("DeleteRetained found nothing")
	}
	if got := r.Retained(mustFilter(t, mqttG, "a/#")); len(got) != 1 || string(got[0].Body) != "kept" {
		t.Fatalf("retained after delete: %v", got)
	}
	if len(s.all()) != before {
		t.Fatal("a subscriber received something from DeleteRetained")
	}
	last := j.retains[len(j.retains)-1]
	if len(j.retains) != 3 || len(last.Body) != 0 || !slices.Equal(last.Dest.Path, []string{"a", "b"}) || last.Dest.Kind != Topic || last.Tracker != tr {
		t.Fatalf("journalled %d retains, last %+v", len(j.retains), last)
	}
	if r.DeleteRetained([]string{"a", "b"}, tr) || r.DeleteRetained([]string{"a"}, nil) {
		t.Fatal("DeleteRetained of nothing reported a removal")
	}
	if len(j.retains) != 3 {
		t.Fatal("a removal of nothing was journalled")
	}
	if st := r.Stats(); st.Retained != 1 {
		t.Fatalf("Stats.Retained = %d, want 1", st.Retained)
	}
}
