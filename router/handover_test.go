package router

import (
	"errors"
	"strconv"
	"testing"
)

// DrainQueue takes every waiting message, in memory, swapped out or parked behind swapped-out ones (a
// non-persistent message), in sequence order, and journals each departure.
func TestDrainQueueTakesSwappedAndParkedInOrder(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j, SwapMessages: 10})
	const n = 300
	for i := range n {
		r.Publish(persistentMsg(i, i%3 != 0))
	}
	if _, sw, parked := inMemory(t, r, swapQ); sw == 0 || parked == 0 {
		t.Fatalf("swapped %d, parked %d: the test needs both", sw, parked)
	}
	got, err := r.DrainQueue(swapQ)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("drained %d of %d", len(got), n)
	}
	for i, s := range got {
		if string(s.Msg.Body) != strconv.Itoa(i) || s.Seq != uint64(i+1) {
			t.Fatalf("message %d: body %q seq %d", i, s.Msg.Body, s.Seq)
		}
	}
	if j.count(swapQ) != 0 || r.QueueDepthOf(swapQ) != 0 {
		t.Fatalf("after the drain the journal keeps %d entries, the queue %d", j.count(swapQ), r.QueueDepthOf(swapQ))
	}
	if got, err := r.DrainQueue(Destination{Kind: Queue, Path: []string{"none"}}); got != nil || err != nil {
		t.Fatalf("drain of no queue: %v %v", got, err)
	}
}

// Adopt puts a message into a durable subscription's queue under a new message ID, keeping its topic and
// its redelivery count, journalled; a consumer gets the adopted messages in order.
func TestAdoptKeepsTopicAndRedeliveries(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j})
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: Filter{Kind: Topic, Segs: []Seg{{Text: "p"}, {Kind: SegMany}}}, QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"p", "live"}}, Persistent: true, QoS: 1}) // seq 1
	topic := Destination{Kind: Topic, Path: []string{"p", "x"}}
	var ids []uint64
	for i := range 3 {
		m := &Message{ID: 1, Dest: topic, Body: []byte{byte('a' + i)}, Persistent: true, QoS: 1}
		seq, err := r.Adopt(dsubD, m, uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i+2) {
			t.Fatalf("adopted %d: seq %d, want %d", i, seq, i+2)
		}
		ids = append(ids, m.ID)
	}
	if ids[0] == 1 || ids[0] == ids[1] {
		t.Fatalf("message IDs %v: the router's own, new for each", ids)
	}
	if c := j.count(dsubD); c != 4 {
		t.Fatalf("journal holds %d entries, want 4", c)
	}
	s := &recSink{}
	c, err := r.Consume(&Subscription{Filter: dsubFilter(dsubD), Sink: s}, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := s.all()
	if len(got) != 4 {
		t.Fatalf("consumed %d, want 4", len(got))
	}
	for i, d := range got[1:] {
		if d.Msg.Dest.Kind != Topic || d.Msg.Dest.Path[1] != "x" || d.Redeliveries != uint32(i) || d.Msg.Body[0] != byte('a'+i) {
			t.Fatalf("delivery %d: %v redeliveries %d body %q", i, d.Msg.Dest, d.Redeliveries, d.Msg.Body)
		}
	}
	if _, err := r.Adopt(Destination{Kind: Topic, Path: []string{"t"}}, &Message{}, 0); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("adopt into a topic: %v", err)
	}
}
