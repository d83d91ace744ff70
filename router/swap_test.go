package router

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
)

// memJournal is a Journal keeping queue entries in memory, as a store would.
type memJournal struct {
	mu      sync.Mutex
	entries map[string]map[uint64]Stored // queue key -> seq -> entry
	marks   map[string][]uint64          // queue key -> Delivered calls
	loads   int
	// durables holds the durable subscriptions recorded (Durable) by key; a removal deletes the key
	// and counts in removed.
	durables map[string]DurableOptions
	removed  int
}

func newMemJournal() *memJournal {
	return &memJournal{entries: make(map[string]map[uint64]Stored), marks: make(map[string][]uint64),
		durables: make(map[string]DurableOptions)}
}

func (j *memJournal) Durable(d Destination, o *DurableOptions, tr Tracker) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if o == nil {
		delete(j.durables, jkey(d))
		j.removed++
	} else {
		j.durables[jkey(d)] = *o
	}
	if tr != nil {
		tr.Track()(nil)
	}
}

func jkey(d Destination) string { return Key(d) }

func (j *memJournal) Retain(*Message) {}

func (j *memJournal) Enqueue(d Destination, seq uint64, redeliveries uint32, m *Message) {
	j.mu.Lock()
	defer j.mu.Unlock()
	k := jkey(d)
	if j.entries[k] == nil {
		j.entries[k] = make(map[uint64]Stored)
	}
	j.entries[k][seq] = Stored{Seq: seq, Redeliveries: redeliveries, Msg: m}
}

func (j *memJournal) Dequeue(d Destination, seq uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.entries[jkey(d)], seq)
}

func (j *memJournal) Delivered(d Destination, mark uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.marks[jkey(d)] = append(j.marks[jkey(d)], mark)
}

func (j *memJournal) Load(d Destination, from uint64, limit int) ([]Stored, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.loads++
	var out []Stored
	for seq, s := range j.entries[jkey(d)] {
		if seq >= from {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (j *memJournal) count(d Destination) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.entries[jkey(d)])
}

// inMemory returns the waiting messages a queue holds in memory and how many it swapped out.
func inMemory(t *testing.T, r *Router, d Destination) (waiting, swapped, parked int) {
	t.Helper()
	q := r.lockedQueue(d, false)
	if q == nil {
		return 0, 0, 0
	}
	defer q.mu.Unlock()
	return q.waiting, q.swapped, len(q.parked)
}

var swapQ = Destination{Kind: Queue, Path: []string{"backlog"}}

func persistentMsg(i int, persistent bool) *Message {
	return &Message{Dest: swapQ, Body: []byte(strconv.Itoa(i)), Persistent: persistent, QoS: 1}
}

// drain consumes the queue with an acking consumer of the given credit and returns the bodies in
// delivery order, checking that no more than bound waiting messages are ever in memory.
func drain(t *testing.T, r *Router, credit, bound int) []Delivery {
	t.Helper()
	s := &recSink{}
	c, err := r.Consume(&Subscription{Filter: Filter{Kind: Queue, Segs: []Seg{{Text: "backlog"}}}, Sink: s}, ConsumerOptions{Credit: credit})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acked := 0
	for {
		got := s.all()
		if acked == len(got) {
			break
		}
		for _, d := range got[acked:] {
			if w, _, _ := inMemory(t, r, swapQ); w > bound {
				t.Fatalf("%d waiting messages in memory, bound %d", w, bound)
			}
			if !c.Ack(d.Seq) {
				t.Fatalf("ack %d refused", d.Seq)
			}
			acked++
		}
	}
	return s.all()
}

func TestSwapKeepsABoundedWindowInFIFOOrder(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j, SwapMessages: 100})
	const n = 5000
	for i := range n {
		if pr := r.Publish(persistentMsg(i, true)); pr.Err != nil {
			t.Fatal(pr.Err)
		}
	}
	w, sw, _ := inMemory(t, r, swapQ)
	if w != 100 || sw != n-100 {
		t.Fatalf("in memory %d, swapped %d; want 100 and %d", w, sw, n-100)
	}
	if d := r.QueueDepthOf(swapQ); d != n {
		t.Fatalf("depth %d, want %d", d, n)
	}
	got := drain(t, r, 10, 100)
	if len(got) != n {
		t.Fatalf("consumed %d of %d", len(got), n)
	}
	for i, d := range got {
		if string(d.Msg.Body) != strconv.Itoa(i) || d.QueueSeq != uint64(i+1) || d.Redeliveries != 0 {
			t.Fatalf("delivery %d: body %q seq %d redeliveries %d", i, d.Msg.Body, d.QueueSeq, d.Redeliveries)
		}
	}
	if j.count(swapQ) != 0 || r.HasQueue(swapQ) {
		t.Fatalf("journal keeps %d entries; queue kept: %v", j.count(swapQ), r.HasQueue(swapQ))
	}
	if st := r.Stats(); st.SwapLoads == 0 || st.SwapLoadErrors != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestSwapBoundsBytes(t *testing.T) {
	r := New(Options{Journal: newMemJournal(), SwapBytes: 10 << 10})
	body := make([]byte, 1024)
	for range 200 {
		r.Publish(&Message{Dest: swapQ, Body: body, Persistent: true})
	}
	if w, sw, _ := inMemory(t, r, swapQ); w != 10 || sw != 190 {
		t.Fatalf("in memory %d, swapped %d; want 10 and 190", w, sw)
	}
	if got := drain(t, r, 3, 10); len(got) != 200 {
		t.Fatalf("consumed %d of 200", len(got))
	}
}

// Non-persistent messages are not journalled, so they cannot be swapped out: they wait in memory for the
// loads to reach them, and order holds across both kinds.
func TestSwapKeepsOrderWithNonPersistentMessages(t *testing.T) {
	r := New(Options{Journal: newMemJournal(), SwapMessages: 10})
	const n = 300
	for i := range n {
		r.Publish(persistentMsg(i, i%3 != 0))
	}
	if _, _, parked := inMemory(t, r, swapQ); parked == 0 {
		t.Fatal("no non-persistent message parked while the backlog is swapped out")
	}
	got := drain(t, r, 4, 10+n/3)
	if len(got) != n {
		t.Fatalf("consumed %d of %d", len(got), n)
	}
	for i, d := range got {
		if string(d.Msg.Body) != strconv.Itoa(i) {
			t.Fatalf("delivery %d is %q", i, d.Msg.Body)
		}
	}
}

// An auto-acking consumer gets a swapped backlog too: nothing but dispatch itself loads the next window.
func TestSwapAutoAckDrainsEverything(t *testing.T) {
	r := New(Options{Journal: newMemJournal(), SwapMessages: 50})
	for i := range 1000 {
		r.Publish(persistentMsg(i, true))
	}
	s := &recSink{}
	if _, err := r.Consume(&Subscription{Filter: Filter{Kind: Queue, Segs: []Seg{{Text: "backlog"}}}, Sink: s}, ConsumerOptions{AutoAck: true}); err != nil {
		t.Fatal(err)
	}
	if got := s.bodies(); len(got) != 1000 || got[999] != "999" {
		t.Fatalf("auto-ack consumer got %d messages", len(got))
	}
}

// A backlog restored at startup is not loaded until a consumer needs it; messages at or below the
// delivered mark come back as redeliveries, and new ones get sequence numbers above the old.
func TestRestoreBacklogLoadsLazilyAndMarksRedeliveries(t *testing.T) {
	j := newMemJournal()
	for i := 1; i <= 1000; i++ {
		j.Enqueue(swapQ, uint64(i+10), 0, persistentMsg(i, true))
	}
	r := New(Options{Journal: j, SwapMessages: 100})
	r.RestoreBacklog(swapQ, 1000, 11, 1010, 300)
	if w, sw, _ := inMemory(t, r, swapQ); w != 0 || sw != 1000 || j.loads != 0 {
		t.Fatalf("after restore: in memory %d, swapped %d, loads %d", w, sw, j.loads)
	}
	r.Publish(persistentMsg(1001, true))
	got := drain(t, r, 7, 100)
	if len(got) != 1001 {
		t.Fatalf("consumed %d of 1001", len(got))
	}
	for i, d := range got {
		wantRedelivered := d.QueueSeq <= 300
		if string(d.Msg.Body) != strconv.Itoa(i+1) || (d.Redeliveries > 0) != wantRedelivered {
			t.Fatalf("delivery %d: body %q seq %d redeliveries %d", i, d.Msg.Body, d.QueueSeq, d.Redeliveries)
		}
	}
	if last := got[1000].QueueSeq; last != 1011 {
		t.Fatalf("new message got seq %d, want 1011", last)
	}
}

// Entries that vanish from the journal while swapped out (the store's expiry sweep) are forgotten
// when the loads find the journal exhausted, so the queue's accounts return to zero.
func TestSwapForgetsVanishedEntries(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j, SwapMessages: 10})
	for i := range 100 {
		r.Publish(persistentMsg(i, true))
	}
	for seq := uint64(50); seq < 60; seq++ {
		j.Dequeue(swapQ, seq)
	}
	got := drain(t, r, 5, 10)
	if len(got) != 90 {
		t.Fatalf("consumed %d, want 90", len(got))
	}
	if r.HasQueue(swapQ) || r.QueueDepthOf(swapQ) != 0 {
		t.Fatal("the queue's accounts did not return to zero")
	}
	if st := r.Stats(); st.Dropped != 10 {
		t.Fatalf("dropped %d, want 10", st.Dropped)
	}
}

// The delivered mark is journalled once per DeliveredWindow deliveries, ahead of them; a queue that is
// forgotten and made again starts above its mark.
func TestDeliveredMarkOncePerWindow(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j})
	const n = 1000
	for i := range n {
		r.Publish(persistentMsg(i, true))
	}
	got := drain(t, r, 50, n)
	if len(got) != n {
		t.Fatalf("consumed %d", len(got))
	}
	marks := j.marks[jkey(swapQ)]
	want := []uint64{1 + DeliveredWindow, 2 + 2*DeliveredWindow, 3 + 3*DeliveredWindow, 4 + 4*DeliveredWindow}
	if !slices.Equal(marks, want) {
		t.Fatalf("marks %v, want %v", marks, want)
	}
	if r.HasQueue(swapQ) {
		t.Fatal("queue kept")
	}
	r.Publish(persistentMsg(0, true))
	d := drain(t, r, 1, 1)
	if len(d) != 1 || d[0].QueueSeq <= marks[len(marks)-1] {
		t.Fatalf("new incarnation's first seq %d, mark %d", d[0].QueueSeq, marks[len(marks)-1])
	}
	// Non-persistent messages are not journalled and need no mark.
	r.Publish(persistentMsg(1, false))
	drain(t, r, 1, 1)
	if len(j.marks[jkey(swapQ)]) != len(marks)+1 {
		t.Fatalf("marks after a non-persistent delivery: %v", j.marks[jkey(swapQ)])
	}
}

// FullDropHead evicts the oldest message even when every waiting message is swapped out.
func TestSwapDropHeadLoadsTheOldest(t *testing.T) {
	r := New(Options{Journal: newMemJournal(), SwapMessages: 5, QueuePolicies: []QueuePolicy{
		{Filter: Filter{Kind: Queue, Segs: []Seg{{Kind: SegMany}}}, MaxMessages: 20, Full: FullDropHead}}})
	for i := range 30 {
		if pr := r.Publish(persistentMsg(i, true)); pr.Err != nil {
			t.Fatal(pr.Err)
		}
	}
	got := drain(t, r, 3, 5)
	var bodies []string
	for _, d := range got {
		bodies = append(bodies, string(d.Msg.Body))
	}
	var want []string
	for i := 10; i < 30; i++ {
		want = append(want, fmt.Sprint(i))
	}
	if !slices.Equal(bodies, want) {
		t.Fatalf("got %v, want %v", bodies, want)
	}
}

// At Close the mark is journalled exactly, so after a graceful restart only messages really delivered
// count as redeliveries.
func TestCloseJournalsTheExactMark(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j})
	for i := range 10 {
		r.Publish(persistentMsg(i, true))
	}
	s := &recSink{}
	if _, err := r.Consume(&Subscription{Filter: Filter{Kind: Queue, Segs: []Seg{{Text: "backlog"}}}, Sink: s}, ConsumerOptions{Credit: 3}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if marks := j.marks[jkey(swapQ)]; !slices.Equal(marks, []uint64{1 + DeliveredWindow, 3}) {
		t.Fatalf("marks %v, want [%d 3]", marks, 1+DeliveredWindow)
	}
}
