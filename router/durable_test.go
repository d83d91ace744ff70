package router

import (
	"errors"
	"slices"
	"strconv"
	"testing"
)

var dsubD = Destination{Kind: DurableSub, Path: []string{"$mqtt", "dev1", "p/#"}}

func dsubFilter(d Destination) Filter {
	segs := make([]Seg, len(d.Path))
	for i, p := range d.Path {
		segs[i] = Seg{Kind: SegLiteral, Text: p}
	}
	return Filter{Kind: DurableSub, Segs: segs}
}

// consumeDurable attaches a recording consumer to d as owner.
func consumeDurable(t *testing.T, r *Router, d Destination, owner string, o ConsumerOptions) (*Consumer, *recSink) {
	t.Helper()
	s := &recSink{}
	o.Owner = owner
	c, err := r.Consume(&Subscription{Filter: dsubFilter(d), Sink: s, QoS: 1}, o)
	if err != nil {
		t.Fatalf("consume %v as %q: %v", d.Path, owner, err)
	}
	return c, s
}

func publishN(t *testing.T, r *Router, topic string, qos uint8, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		m := &Message{Dest: mustName(t, mqttG, topic), Body: []byte(strconv.Itoa(i)), QoS: qos, Persistent: qos > 0}
		if pr := r.Publish(m); pr.Err != nil {
			t.Fatal(pr.Err)
		}
	}
}

func seqBodies(from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// A durable subscription keeps what matches while nobody consumes it, and its owner gets it all, in
// order, with the topic it was published to.
func TestDurableKeepsWhileOffline(t *testing.T) {
	r := New(Options{})
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), Owner: "alice", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	publishN(t, r, "p/x", 1, 0, 50)
	publishN(t, r, "other", 1, 0, 5)
	if n := r.QueueDepthOf(dsubD); n != 50 {
		t.Fatalf("depth %d, want 50", n)
	}
	c, s := consumeDurable(t, r, dsubD, "alice", ConsumerOptions{Credit: 100})
	defer c.Close()
	if got := s.bodies(); !slices.Equal(got, seqBodies(0, 50)) {
		t.Fatalf("got %q", got)
	}
	d := s.all()[0]
	if d.Msg.Dest.Kind != Topic || !slices.Equal(d.Msg.Dest.Path, []string{"p", "x"}) {
		t.Fatalf("delivered with destination %v, want the topic p/x", d.Msg.Dest)
	}
	for _, d := range s.all() {
		c.Ack(d.Seq)
	}
	if n := r.QueueDepthOf(dsubD); n != 0 {
		t.Fatalf("depth %d after acks", n)
	}
}

// Nobody but its owner attaches to, replaces or destroys a durable subscription.
func TestDurableOwnership(t *testing.T) {
	r := New(Options{})
	f := mustFilter(t, mqttG, "p/#")
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: f, Owner: "alice", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	publishN(t, r, "p/x", 1, 0, 3)
	s := &recSink{}
	if _, err := r.Consume(&Subscription{Filter: dsubFilter(dsubD), Sink: s}, ConsumerOptions{Owner: "bob"}); !errors.Is(err, ErrNotOwner) {
		t.Errorf("bob consumes alice's subscription: %v, want ErrNotOwner", err)
	}
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "q/#"), Owner: "bob"}, nil); !errors.Is(err, ErrNotOwner) {
		t.Errorf("bob replaces alice's subscription: %v, want ErrNotOwner", err)
	}
	if _, err := r.DestroyDurable(dsubD, "bob", nil); !errors.Is(err, ErrNotOwner) {
		t.Errorf("bob destroys alice's subscription: %v, want ErrNotOwner", err)
	}
	if len(s.all()) != 0 {
		t.Fatal("bob received alice's messages")
	}
	if n := r.QueueDepthOf(dsubD); n != 3 {
		t.Fatalf("alice's backlog is %d after bob's attempts, want 3", n)
	}
	if _, err := r.Consume(&Subscription{Filter: dsubFilter(Destination{Kind: DurableSub, Path: []string{"none"}}), Sink: s}, ConsumerOptions{}); !errors.Is(err, ErrNoDurable) {
		t.Errorf("consuming a durable subscription that does not exist: %v, want ErrNoDurable", err)
	}
	// One owned by nobody in particular is open to everyone.
	open := Destination{Kind: DurableSub, Path: []string{"open"}}
	if _, err := r.CreateDurable(open, DurableOptions{Filter: f}, nil); err != nil {
		t.Fatal(err)
	}
	c, _ := consumeDurable(t, r, open, "bob", ConsumerOptions{})
	c.Close()
}

// Subscribing again with the same filter keeps the messages; another filter replaces the subscription
// and discards them.
func TestDurableResubscribeAndReplace(t *testing.T) {
	r := New(Options{})
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), Owner: "alice", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	publishN(t, r, "p/x", 1, 0, 4)
	existed, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), Owner: "alice", QoS: 0}, nil)
	if err != nil || !existed {
		t.Fatalf("resubscribe: existed %v, %v", existed, err)
	}
	if o, _ := r.Durable(dsubD); o.QoS != 0 {
		t.Fatalf("QoS %d after resubscribing at 0", o.QoS)
	}
	if n := r.QueueDepthOf(dsubD); n != 4 {
		t.Fatalf("resubscribing lost messages: depth %d", n)
	}
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "q/#"), Owner: "alice", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	if n := r.QueueDepthOf(dsubD); n != 0 {
		t.Fatalf("a replaced subscription kept %d messages", n)
	}
	if st := r.Stats(); st.Discarded != 4 || st.Durables != 1 {
		t.Fatalf("stats %+v, want 4 discarded and 1 durable", st)
	}
	publishN(t, r, "p/x", 1, 0, 1)
	publishN(t, r, "q/y", 1, 0, 2)
	if n := r.QueueDepthOf(dsubD); n != 2 {
		t.Fatalf("the new filter kept %d messages, want the 2 on q/y", n)
	}
	if _, err := r.DestroyDurable(dsubD, "alice", nil); err != nil {
		t.Fatal(err)
	}
	publishN(t, r, "q/y", 1, 0, 1)
	if r.HasQueue(dsubD) || r.Stats().Durables != 0 || r.Match([]string{"q", "y"}).Empty() != true {
		t.Fatalf("a destroyed subscription lives on: %+v", r.Stats())
	}
}

// An MQTT session keeps no QoS 0 message while its client is away (DropQoS0Offline), but gets them
// while it consumes, acknowledged as delivered (AckQoS0).
func TestDurableQoS0(t *testing.T) {
	r := New(Options{})
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), Owner: "a", QoS: 1, DropQoS0Offline: true}, nil); err != nil {
		t.Fatal(err)
	}
	publishN(t, r, "p/x", 0, 0, 5)
	publishN(t, r, "p/x", 1, 5, 1)
	if n := r.QueueDepthOf(dsubD); n != 1 {
		t.Fatalf("offline depth %d, want only the QoS 1 message", n)
	}
	c, s := consumeDurable(t, r, dsubD, "a", ConsumerOptions{Credit: 10, AckQoS0: true})
	defer c.Close()
	publishN(t, r, "p/x", 0, 6, 3)
	if got := s.bodies(); !slices.Equal(got, []string{"5", "6", "7", "8"}) {
		t.Fatalf("got %q", got)
	}
	if n := c.Unacked(); n != 1 {
		t.Fatalf("%d unacknowledged, want only the QoS 1 message", n)
	}
	// A subscription granted QoS 0 delivers everything at QoS 0.
	d0 := Destination{Kind: DurableSub, Path: []string{"q0"}}
	if _, err := r.CreateDurable(d0, DurableOptions{Filter: mustFilter(t, mqttG, "z"), Owner: "a", QoS: 0, DropQoS0Offline: true}, nil); err != nil {
		t.Fatal(err)
	}
	publishN(t, r, "z", 1, 0, 3)
	if n := r.QueueDepthOf(d0); n != 0 {
		t.Fatalf("a QoS 0 subscription kept %d messages offline", n)
	}
}

// A full durable subscription drops what it cannot keep (counted). With a consumer draining it, the
// publisher is told to wait for room (PublishResult.Pressure); without one waiting would not help. A
// publisher that waited in vain marks it slow: nobody waits for it again until it is down to half.
func TestDurableFull(t *testing.T) {
	r := New(Options{QueuePolicies: []QueuePolicy{{Filter: dsubFilter(dsubD), MaxMessages: 3}}})
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), Owner: "a", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	publishN(t, r, "p/x", 1, 0, 3)
	pr := r.Publish(&Message{Dest: mustName(t, mqttG, "p/x"), Body: []byte("3"), QoS: 1})
	if pr.Dropped != 1 || pr.Pressure != nil || pr.Err != nil {
		t.Fatalf("offline and full: %+v, want one drop and no room to wait for", pr)
	}
	c, s := consumeDurable(t, r, dsubD, "a", ConsumerOptions{Credit: 3})
	defer c.Close()
	pr = r.Publish(&Message{Dest: mustName(t, mqttG, "p/x"), Body: []byte("4"), QoS: 1})
	if pr.Dropped != 1 || pr.Pressure == nil {
		t.Fatalf("online and full: %+v, want one drop and a room channel", pr)
	}
	room := pr.Pressure.Room()
	select {
	case <-room:
		t.Fatal("room before anything was acknowledged")
	default:
	}
	c.Ack(s.all()[0].Seq)
	select {
	case <-room:
	default:
		t.Fatal("no room after an acknowledgement")
	}
	if st := r.Stats(); st.Dropped != 2 {
		t.Fatalf("dropped %d, want 2", st.Dropped)
	}
	// Full again; a publisher waits in vain: the subscription is slow and nobody waits for it again.
	publishN(t, r, "p/x", 1, 5, 1)
	pr = r.Publish(&Message{Dest: mustName(t, mqttG, "p/x"), Body: []byte("6"), QoS: 1})
	if pr.Pressure == nil {
		t.Fatalf("full again: %+v", pr)
	}
	pr.Pressure.Stuck()
	if pr = r.Publish(&Message{Dest: mustName(t, mqttG, "p/x"), Body: []byte("7"), QoS: 1}); pr.Dropped != 1 || pr.Pressure != nil {
		t.Fatalf("slow: %+v, want a drop and nothing to wait for", pr)
	}
	for _, d := range s.all()[1:] {
		c.Ack(d.Seq)
	}
	// Down to half: it is caught up and waited for again when full.
	publishN(t, r, "p/x", 1, 8, 1)
	if r.dur.m[Key(dsubD)].slow.Load() {
		t.Fatal("still slow after catching up")
	}
}

// Creating, changing and destroying are journalled, and so are the persistent messages; destroying
// releases every journalled message, swapped out or not. Restoring journals nothing.
func TestDurableJournal(t *testing.T) {
	j := newMemJournal()
	r := New(Options{Journal: j, SwapMessages: 10})
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), Owner: "a", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	if o, ok := j.durables[jkey(dsubD)]; !ok || o.Owner != "a" || FilterKey(o.Filter) != FilterKey(mustFilter(t, mqttG, "p/#")) {
		t.Fatalf("journalled %+v, %v", o, ok)
	}
	publishN(t, r, "p/x", 1, 0, 100)
	if n := j.count(dsubD); n != 100 {
		t.Fatalf("%d journalled entries, want 100", n)
	}
	if w, sw, _ := inMemory(t, r, dsubD); w != 10 || sw != 90 {
		t.Fatalf("in memory %d, swapped %d; want 10 and 90", w, sw)
	}
	c, s := consumeDurable(t, r, dsubD, "a", ConsumerOptions{Credit: 5})
	acked := 0
	for acked < 20 {
		for _, d := range s.all()[acked:] {
			c.Ack(d.Seq)
			acked++
		}
	}
	if got := s.bodies()[:20]; !slices.Equal(got, seqBodies(0, 20)) {
		t.Fatalf("got %q", got)
	}
	discarded, err := r.DestroyDurable(dsubD, "a", nil)
	if err != nil || discarded != 80 {
		t.Fatalf("destroy: %d discarded, %v; want 80", discarded, err)
	}
	if n := j.count(dsubD); n != 0 {
		t.Fatalf("%d entries left in the journal", n)
	}
	if _, ok := j.durables[jkey(dsubD)]; ok || j.removed != 1 {
		t.Fatal("the removal was not journalled")
	}
	if c.Ack(s.all()[20].Seq) {
		t.Fatal("a consumer of a destroyed subscription acknowledged")
	}
	if err := r.RestoreDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), Owner: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := j.durables[jkey(dsubD)]; ok {
		t.Fatal("RestoreDurable journalled")
	}
}

func TestDurableLimitsAndValidation(t *testing.T) {
	r := New(Options{MaxDurables: 1})
	f := mustFilter(t, mqttG, "p/#")
	if _, err := r.CreateDurable(Destination{Kind: Queue, Path: []string{"x"}}, DurableOptions{Filter: f}, nil); !errors.Is(err, ErrInvalidName) {
		t.Errorf("a queue destination: %v", err)
	}
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: Filter{Kind: Queue, Segs: f.Segs}}, nil); !errors.Is(err, ErrInvalidFilter) {
		t.Errorf("a queue filter: %v", err)
	}
	if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: f}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDurable(Destination{Kind: DurableSub, Path: []string{"two"}}, DurableOptions{Filter: f}, nil); !errors.Is(err, ErrTooManyDurables) {
		t.Errorf("beyond MaxDurables: %v", err)
	}
	if got := r.Durables([]string{"$mqtt", "dev1"}); len(got) != 1 || !slices.Equal(got[0].Dest.Path, dsubD.Path) {
		t.Errorf("Durables(prefix) = %+v", got)
	}
	if got := r.Durables([]string{"$mqtt", "dev2"}); len(got) != 0 {
		t.Errorf("Durables(other prefix) = %+v", got)
	}
}
