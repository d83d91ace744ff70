package router

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// atomicJournal is a memJournal that is an AtomicJournal: a batch's changes are applied at once (so
// Load sees them, as the contract wants) and recorded per batch for the tests to inspect.
type atomicJournal struct {
	*memJournal
	bmu       sync.Mutex
	committed [][]batchOp
	loadErr   error
}

type batchOp struct {
	from, to       Destination
	fromSeq, toSeq uint64
}

type fakeBatch struct {
	j    *atomicJournal
	ops  []batchOp
	done func(error)
	used bool
}

func newAtomicJournal() *atomicJournal { return &atomicJournal{memJournal: newMemJournal()} }

func (j *atomicJournal) Batch(tr Tracker) JournalBatch {
	b := &fakeBatch{j: j}
	if tr != nil {
		b.done = tr.Track()
	}
	return b
}

func (j *atomicJournal) Load(d Destination, from uint64, limit int) ([]Stored, error) {
	if j.loadErr != nil {
		return nil, j.loadErr
	}
	return j.memJournal.Load(d, from, limit)
}

func (b *fakeBatch) Dequeue(d Destination, seq uint64) {
	b.j.memJournal.Dequeue(d, seq)
	b.ops = append(b.ops, batchOp{from: d, fromSeq: seq})
}

func (b *fakeBatch) Move(from Destination, fromSeq uint64, to Destination, toSeq uint64, red uint32, m *Message) {
	if toSeq > 0 {
		b.j.memJournal.Enqueue(to, toSeq, red, m)
	}
	if fromSeq > 0 {
		b.j.memJournal.Dequeue(from, fromSeq)
	}
	b.ops = append(b.ops, batchOp{from: from, to: to, fromSeq: fromSeq, toSeq: toSeq})
}

func (b *fakeBatch) Commit() {
	if b.used {
		panic("batch committed twice")
	}
	b.used = true
	b.j.bmu.Lock()
	b.j.committed = append(b.j.committed, b.ops)
	b.j.bmu.Unlock()
	if b.done != nil {
		b.done(nil)
	}
}

// batchSizes returns the number of changes in each committed batch.
func (j *atomicJournal) batchSizes() []int {
	j.bmu.Lock()
	defer j.bmu.Unlock()
	var out []int
	for _, b := range j.committed {
		out = append(out, len(b))
	}
	return out
}

// doneTracker counts Track calls and their completions.
type doneTracker struct {
	mu            sync.Mutex
	tracked, done int
}

func (d *doneTracker) Track() func(error) {
	d.mu.Lock()
	d.tracked++
	d.mu.Unlock()
	return func(error) { d.mu.Lock(); d.done++; d.mu.Unlock() }
}

func (d *doneTracker) counts() (int, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tracked, d.done
}

func persist(d Destination, body string) *Message {
	return &Message{Dest: d, Body: []byte(body), Persistent: true, QoS: 1}
}

func publishBodies(t *testing.T, r *Router, d Destination, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		pubMsg(t, r, persist(d, strconv.Itoa(i)))
	}
}

// PurgeQueue removes what waits (in memory and swapped out, journalled in batches) and leaves what is
// delivered and unacknowledged with its consumer.
func TestPurgeQueue(t *testing.T) {
	j := newAtomicJournal()
	r := New(Options{Journal: j, SwapMessages: 4})
	q := Destination{Kind: Queue, Path: []string{"p"}}
	publishBodies(t, r, q, 0, 2)
	s := &recSink{}
	c, err := r.Consume(queueSub(t, "/queue/p", s), ConsumerOptions{Credit: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	publishBodies(t, r, q, 2, 2500)
	pubMsg(t, r, &Message{Dest: q, Body: []byte("transient")}) // parked behind the swapped-out ones
	if _, swapped, parked := inMemory(t, r, q); swapped == 0 || parked != 1 {
		t.Fatalf("the test wants swapped-out and parked messages: swapped %d parked %d", swapped, parked)
	}
	tr := &doneTracker{}
	before := r.Stats()
	n, err := r.PurgeQueue(q, tr)
	if err != nil || n != 2501 {
		t.Fatalf("PurgeQueue = %d, %v; want 2501", n, err)
	}
	if d := r.QueueDepthOf(q); d != 0 {
		t.Fatalf("depth %d after purge", d)
	}
	if got := j.count(q); got != 2 {
		t.Fatalf("journal holds %d entries, want the 2 unacknowledged ones", got)
	}
	if sizes := j.batchSizes(); !slices.Equal(sizes, []int{1000, 1000, 500}) {
		t.Fatalf("journal batches %v, want [1000 1000 500]", sizes)
	}
	if tracked, done := tr.counts(); tracked != 3 || done != 3 {
		t.Fatalf("tracker: %d tracked, %d done; want one per batch", tracked, done)
	}
	if st := r.Stats(); st.Discarded-before.Discarded != 2501 || st.Dropped != before.Dropped {
		t.Fatalf("stats after purge: %+v", st)
	}
	// The unacknowledged messages stay with their consumer, which stays attached.
	ds := s.all()
	if len(ds) != 2 || c.Unacked() != 2 {
		t.Fatalf("deliveries %d, unacked %d", len(ds), c.Unacked())
	}
	c.Nack(ds[0].Seq) // back in the queue, and redelivered
	c.Ack(ds[1].Seq)
	if got := s.bodies(); !slices.Equal(got, []string{"0", "1", "0"}) {
		t.Fatalf("after purge: %q", got)
	}
	// New messages are queued after a purge as before.
	publishBodies(t, r, q, 9000, 1)
	if got := s.bodies(); got[len(got)-1] != "9000" {
		t.Fatalf("after purge: %q", got)
	}
}

func TestPurgeQueueErrors(t *testing.T) {
	j := newAtomicJournal()
	r := New(Options{Journal: j, SwapMessages: 2})
	if _, err := r.PurgeQueue(Destination{Kind: Queue, Path: []string{"none"}}, nil); !errors.Is(err, ErrNoQueue) {
		t.Fatalf("purge of no queue: %v", err)
	}
	if _, err := r.PurgeQueue(Destination{Kind: Topic, Path: []string{"t"}}, nil); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("purge of a topic: %v", err)
	}
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#")}, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := r.PurgeQueue(dsubD, nil); n != 0 || err != nil {
		t.Fatalf("purge of an empty durable subscription: %d, %v", n, err)
	}
	// A swapped-out window that cannot be loaded: what is in memory goes, the rest stays.
	q := Destination{Kind: Queue, Path: []string{"q"}}
	publishBodies(t, r, q, 0, 5)
	boom := errors.New("disk on fire")
	j.loadErr = boom
	n, err := r.PurgeQueue(q, nil)
	if !errors.Is(err, boom) || n != 2 {
		t.Fatalf("PurgeQueue = %d, %v; want 2 and the load error", n, err)
	}
	if d := r.QueueDepthOf(q); d != 3 {
		t.Fatalf("depth %d after a failed purge, want 3", d)
	}
	j.loadErr = nil
	if n, err := r.PurgeQueue(q, nil); n != 3 || err != nil || j.count(q) != 0 {
		t.Fatalf("second purge: %d, %v, journal %d", n, err, j.count(q))
	}
	if r.HasQueue(q) {
		t.Fatal("a purged queue with no consumer is kept")
	}
}

// drainBodies consumes everything waiting in d with auto-ack and returns the bodies in order.
func drainBodies(t *testing.T, r *Router, d Destination) []string {
	t.Helper()
	s := &recSink{}
	f := Filter{Kind: d.Kind}
	for _, p := range d.Path {
		f.Segs = append(f.Segs, Seg{Text: p})
	}
	c, err := r.Consume(&Subscription{Filter: f, Sink: s}, ConsumerOptions{AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return s.bodies()
}

// An operator replays a dead-letter queue: exactly the dead messages go back, in order, journalled as
// moves, and the DLQ is left empty.
func TestMoveMessagesReplaysDLQ(t *testing.T) {
	j := newAtomicJournal()
	r := New(Options{Journal: j, QueuePolicies: []QueuePolicy{
		policy(t, "/queue/work", QueuePolicy{NakLimit: 1, DLQ: []string{"dlq", "*"}}),
	}})
	work := Destination{Kind: Queue, Path: []string{"work"}}
	dlq := Destination{Kind: Queue, Path: []string{"dlq", "work"}}
	publishBodies(t, r, work, 0, 5)
	s := &recSink{}
	c, err := r.Consume(queueSub(t, "/queue/work", s), ConsumerOptions{Credit: 5})
	if err != nil {
		t.Fatal(err)
	}
	ds := s.all()
	for _, i := range []int{1, 3, 4} {
		c.Nack(ds[i].Seq) // dead-lettered at once (NakLimit 1)
	}
	ids := map[string]uint64{}
	for _, d := range ds {
		ids[string(d.Msg.Body)] = d.Msg.ID
	}
	if d := r.QueueDepthOf(dlq); d != 3 {
		t.Fatalf("dlq depth %d, want 3", d)
	}
	tr := &doneTracker{}
	before := r.Stats()
	n, err := r.MoveMessages(dlq, work, 0, tr)
	if n != 3 || err != nil {
		t.Fatalf("MoveMessages = %d, %v; want 3", n, err)
	}
	if r.HasQueue(dlq) || j.count(dlq) != 0 {
		t.Fatalf("dlq still kept (%v) or journalled (%d)", r.HasQueue(dlq), j.count(dlq))
	}
	if st := r.Stats(); st.Moved-before.Moved != 3 {
		t.Fatalf("Stats.Moved grew by %d", st.Moved-before.Moved)
	}
	if tracked, done := tr.counts(); tracked != 1 || done != 1 {
		t.Fatalf("tracker %d/%d, want one batch", tracked, done)
	}
	if b := j.committed[len(j.committed)-1]; len(b) != 3 || b[0].fromSeq == 0 || b[0].toSeq == 0 || !slices.Equal(b[0].to.Path, work.Path) {
		t.Fatalf("last batch %+v, want 3 moves with both sides journalled", b)
	}
	// The consumer still holds 0 and 2; the moved ones arrive for it in order, same messages.
	for _, d := range ds {
		c.Ack(d.Seq)
	}
	got := s.all()[5:]
	var bodies []string
	for _, d := range got {
		bodies = append(bodies, string(d.Msg.Body))
		if d.Msg.ID != ids[string(d.Msg.Body)] || !slices.Equal(d.Msg.Dest.Path, work.Path) {
			t.Fatalf("moved message %+v: id or destination changed", d.Msg)
		}
	}
	if !slices.Equal(bodies, []string{"1", "3", "4"}) {
		t.Fatalf("replayed %q, want [1 3 4]", bodies)
	}
	for _, d := range got {
		c.Ack(d.Seq)
	}
	c.Close()
	if j.count(work) != 0 {
		t.Fatalf("journal keeps %d work entries after every ack", j.count(work))
	}
}

func TestMoveMessagesLimits(t *testing.T) {
	j := newAtomicJournal()
	r := New(Options{Journal: j, SwapMessages: 3, QueuePolicies: []QueuePolicy{
		policy(t, "/queue/small", QueuePolicy{MaxMessages: 4, Full: FullDropHead}),
	}})
	src := Destination{Kind: Queue, Path: []string{"src"}}
	dst := Destination{Kind: Queue, Path: []string{"dst"}}
	small := Destination{Kind: Queue, Path: []string{"small"}}
	for i := range 10 {
		m := persist(src, strconv.Itoa(i))
		m.Priority = uint8(i % 3) // oldest first whatever the priority
		pubMsg(t, r, m)
	}
	if n, err := r.MoveMessages(src, dst, 2, nil); n != 2 || err != nil {
		t.Fatalf("move 2: %d, %v", n, err)
	}
	// A full target stops the move, whatever its full policy: nothing is dropped.
	pubMsg(t, r, persist(small, "resident"))
	before := r.Stats()
	if n, err := r.MoveMessages(src, small, 0, nil); n != 3 || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("move into a full queue: %d, %v; want 3, ErrQueueFull", n, err)
	}
	if st := r.Stats(); st.Dropped != before.Dropped {
		t.Fatalf("a move dropped %d messages", st.Dropped-before.Dropped)
	}
	if n, err := r.MoveMessages(src, dst, 0, nil); n != 5 || err != nil {
		t.Fatalf("move the rest: %d, %v", n, err)
	}
	// dst dispatches by priority within its window in memory: compare what it holds, not the order.
	got := drainBodies(t, r, dst)
	slices.Sort(got)
	if want := []string{"0", "1", "5", "6", "7", "8", "9"}; !slices.Equal(got, want) {
		t.Fatalf("dst got %q, want %q (the oldest first, not the highest priority)", got, want)
	}
	got = drainBodies(t, r, small)
	slices.Sort(got)
	if want := []string{"2", "3", "4", "resident"}; !slices.Equal(got, want) {
		t.Fatalf("small got %q, want %q", got, want)
	}
	for _, d := range []Destination{src, dst, small} {
		if n := j.count(d); n != 0 {
			t.Fatalf("journal keeps %d entries of %q", n, d.Path)
		}
	}

	// Refusals.
	none := Destination{Kind: Queue, Path: []string{"none"}}
	if _, err := r.MoveMessages(none, dst, 0, nil); !errors.Is(err, ErrNoQueue) {
		t.Fatalf("move from no queue: %v", err)
	}
	if r.HasQueue(dst) {
		t.Fatal("a move from no queue created its target")
	}
	pubMsg(t, r, persist(src, "x"))
	for _, tc := range []struct {
		from, to Destination
		max      int
		err      error
	}{
		{src, src, 0, ErrInvalidName},
		{src, Destination{Kind: Topic, Path: []string{"t"}}, 0, ErrInvalidName},
		{src, dst, -1, ErrInvalidName},
		{src, Destination{Kind: DurableSub, Path: []string{"nobody"}}, 0, ErrNoDurable},
	} {
		if _, err := r.MoveMessages(tc.from, tc.to, tc.max, nil); !errors.Is(err, tc.err) {
			t.Fatalf("move %v -> %v: %v, want %v", tc.from, tc.to, err, tc.err)
		}
	}
	if r.QueueDepthOf(src) != 1 {
		t.Fatal("a refused move moved something")
	}
	// An empty durable subscription holds nothing to move.
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#")}, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := r.MoveMessages(dsubD, dst, 0, nil); n != 0 || err != nil {
		t.Fatalf("move from an empty durable subscription: %d, %v", n, err)
	}
}

// Moving into a durable subscription: a message published to a topic keeps its topic; one published to
// a queue takes the subscription's destination. Without an AtomicJournal each side is journalled alone.
func TestMoveMessagesIntoDurable(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j})
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	other := Destination{Kind: DurableSub, Path: []string{"other"}}
	if _, err := r.CreateDurable(other, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	publishN(t, r, "p/x", 1, 0, 2)
	q := Destination{Kind: Queue, Path: []string{"q"}}
	pubMsg(t, r, persist(q, "queued"))
	if n, err := r.MoveMessages(q, dsubD, 0, nil); n != 1 || err != nil {
		t.Fatalf("move queue -> dsub: %d, %v", n, err)
	}
	if n, err := r.MoveMessages(other, dsubD, 0, nil); n != 2 || err != nil {
		t.Fatalf("move dsub -> dsub: %d, %v", n, err)
	}
	if j.count(dsubD) != 5 || j.count(other) != 0 || j.count(q) != 0 {
		t.Fatalf("journal: dsub %d, other %d, q %d", j.count(dsubD), j.count(other), j.count(q))
	}
	c, s := consumeDurable(t, r, dsubD, "", ConsumerOptions{AutoAck: true})
	defer c.Close()
	var got []string
	for _, d := range s.all() {
		got = append(got, fmt.Sprintf("%s@%s", d.Msg.Body, d.Msg.Dest.Kind))
	}
	if want := []string{"0@topic", "1@topic", "queued@dsub", "0@topic", "1@topic"}; !slices.Equal(got, want) {
		t.Fatalf("durable subscription got %q, want %q", got, want)
	}
}

// Moves in both directions at once, with publishers and consumers: nothing is lost or duplicated and
// nothing deadlocks (two queue locks are taken in key order).
func TestMoveMessagesConcurrent(t *testing.T) {
	j := newAtomicJournal()
	r := New(Options{Journal: j, SwapMessages: 50})
	a := Destination{Kind: Queue, Path: []string{"a"}}
	b := Destination{Kind: Queue, Path: []string{"b"}}
	const perPublisher = 2000
	var wg, pubs sync.WaitGroup
	var moved [2]int
	stop := make(chan struct{})
	for i, pair := range [][2]Destination{{a, b}, {b, a}} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, err := r.MoveMessages(pair[0], pair[1], 7, nil)
				if err != nil && !errors.Is(err, ErrNoQueue) {
					t.Error(err)
					return
				}
				moved[i] += n
			}
		})
	}
	for _, d := range []Destination{a, b} {
		pubs.Go(func() {
			for i := range perPublisher {
				if pr := r.Publish(persist(d, fmt.Sprint(d.Path[0], i))); pr.Err != nil {
					t.Error(pr.Err)
					return
				}
			}
		})
	}
	pubs.Wait()
	close(stop)
	wg.Wait()
	seen := map[string]bool{}
	for _, d := range []Destination{a, b} {
		for _, body := range drainBodies(t, r, d) {
			if seen[body] {
				t.Fatalf("%s twice", body)
			}
			seen[body] = true
		}
	}
	if len(seen) != 2*perPublisher {
		t.Fatalf("%d messages after the moves, want %d", len(seen), 2*perPublisher)
	}
	if j.count(a)+j.count(b) != 0 {
		t.Fatalf("journal keeps %d + %d entries after draining", j.count(a), j.count(b))
	}
	t.Logf("moved %v", moved)
}

// ForgetQueue drops a queue an operator emptied at once, even with an AutoDeleteAfter policy, and only
// then: not while it holds messages or has a consumer. A queue made again after it numbers its messages
// above the old one's, as after an idle drop.
func TestForgetQueue(t *testing.T) {
	j := newAtomicJournal()
	f := Filter{Kind: Queue, Segs: []Seg{{Kind: SegLiteral, Text: "keep"}}}
	r := New(Options{Journal: j, QueuePolicies: []QueuePolicy{{Filter: f, AutoDeleteAfter: time.Hour}}})
	q := Destination{Kind: Queue, Path: []string{"keep"}}
	if !r.ForgetQueue(q) {
		t.Fatal("ForgetQueue of an unknown queue = false")
	}
	publishBodies(t, r, q, 0, 3)
	if r.ForgetQueue(q) || !r.HasQueue(q) {
		t.Fatal("a queue holding messages was forgotten")
	}
	s := &recSink{}
	c, err := r.Consume(queueSub(t, "/queue/keep", s), ConsumerOptions{Credit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PurgeQueue(q, nil); err != nil {
		t.Fatal(err)
	}
	if r.ForgetQueue(q) {
		t.Fatal("a queue with a consumer (and a message in flight) was forgotten")
	}
	seq := s.all()[0].QueueSeq
	c.Close() // the message in flight waits again
	if _, err := r.PurgeQueue(q, nil); err != nil {
		t.Fatal(err)
	}
	if !r.HasQueue(q) {
		t.Fatal("the AutoDeleteAfter policy should keep the empty queue")
	}
	if !r.ForgetQueue(q) || r.HasQueue(q) {
		t.Fatal("an empty queue without consumers was kept")
	}
	publishBodies(t, r, q, 10, 1)
	s2 := &recSink{}
	c2, err := r.Consume(queueSub(t, "/queue/keep", s2), ConsumerOptions{Credit: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if d := s2.all(); len(d) != 1 || string(d[0].Msg.Body) != "10" || d[0].QueueSeq <= seq {
		t.Fatalf("after forgetting: %+v (old sequence %d)", d, seq)
	}
}
