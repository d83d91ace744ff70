package router

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

var strategies = []ShareStrategy{ShareRoundRobin, ShareRandom, ShareSticky, ShareHashClientID, ShareHashTopic}

// shareFixture is a router with one shared group on "jobs/#" whose members are gateSinks.
type shareFixture struct {
	t       *testing.T
	r       *Router
	f       Filter
	members []*Subscription
}

func newShareFixture(t *testing.T, st ShareStrategy, n int) *shareFixture {
	t.Helper()
	x := &shareFixture{t: t, r: New(Options{ShareStrategy: st}), f: mustFilter(t, mqttG, "jobs/#")}
	for range n {
		x.join()
	}
	return x
}

func (x *shareFixture) join() *Subscription {
	x.t.Helper()
	s := &Subscription{Filter: x.f, Sink: &gateSink{}, Share: "g"}
	if err := x.r.Subscribe(s); err != nil {
		x.t.Fatal(err)
	}
	x.members = append(x.members, s)
	return s
}

func (x *shareFixture) leave(i int) {
	x.r.Unsubscribe(x.members[i])
	x.members = append(x.members[:i:i], x.members[i+1:]...)
}

func (x *shareFixture) sink(i int) *gateSink { return x.members[i].Sink.(*gateSink) }

// publish sends one message to topic from sender and returns the index in x.members of the member that
// got it, or -1.
func (x *shareFixture) publish(topic, sender string) int {
	x.t.Helper()
	before := make([]int, len(x.members))
	for i := range x.members {
		before[i] = x.sink(i).count()
	}
	pr := x.r.Publish(&Message{Dest: mustName(x.t, mqttG, topic), SenderID: sender})
	got := -1
	for i := range x.members {
		if x.sink(i).count() > before[i] {
			if got >= 0 {
				x.t.Fatalf("%s from %q went to members %d and %d", topic, sender, got, i)
			}
			got = i
		}
	}
	if (got >= 0) != (pr.Delivered == 1) {
		x.t.Fatalf("%s from %q: %+v, but member %d got it", topic, sender, pr, got)
	}
	return got
}

// counts publishes n messages (from sender, to topic) and counts them per member.
func (x *shareFixture) counts(n int, topic, sender string) []int {
	x.t.Helper()
	c := make([]int, len(x.members))
	for range n {
		if i := x.publish(topic, sender); i >= 0 {
			c[i]++
		}
	}
	return c
}

func TestShareStrategyNames(t *testing.T) {
	want := []string{"round_robin", "random", "sticky", "hash_clientid", "hash_topic"}
	for i, st := range strategies {
		if st.String() != want[i] {
			t.Errorf("%d: %q, want %q", st, st, want[i])
		}
	}
}

func TestShareRoundRobin(t *testing.T) {
	x := newShareFixture(t, ShareRoundRobin, 3)
	var seq []int
	for range 6 {
		seq = append(seq, x.publish("jobs/a", "p"))
	}
	if fmt.Sprint(seq) != "[0 1 2 0 1 2]" {
		t.Fatalf("order %v, want each member in turn", seq)
	}
	if c := x.counts(300, "jobs/a", "p"); c[0] != 100 || c[1] != 100 || c[2] != 100 {
		t.Fatalf("300 messages: %v, want 100 each", c)
	}
}

func TestShareRandom(t *testing.T) {
	x := newShareFixture(t, ShareRandom, 4)
	c := x.counts(4000, "jobs/a", "p")
	for i, n := range c {
		// Binomial(4000, 1/4): mean 1000, standard deviation 27; 800..1200 is over 7 of them.
		if n < 800 || n > 1200 {
			t.Fatalf("member %d got %d of 4000 (%v), want about 1000", i, n, c)
		}
	}
	// Not a rotation in disguise: some member gets two in a row within 100 messages.
	prev, twice := -1, false
	for range 100 {
		i := x.publish("jobs/a", "p")
		twice = twice || i == prev
		prev = i
	}
	if !twice {
		t.Fatal("100 random picks never repeated a member")
	}
}

func TestShareSticky(t *testing.T) {
	x := newShareFixture(t, ShareSticky, 3)
	first := x.publish("jobs/a", "p")
	onlyTo := func(what string, want, n int) {
		t.Helper()
		for i := range n {
			if got := x.publish(fmt.Sprintf("jobs/%d", i), fmt.Sprint(i)); got != want {
				t.Fatalf("%s: message %d went to %d, want %d", what, i, got, want)
			}
		}
	}
	onlyTo("sticky", first, 50)
	x.join()
	onlyTo("after a join", first, 20)

	// Full: another member takes the message and stays sticky after the first has room again.
	x.sink(first).full.Store(true)
	second := x.publish("jobs/a", "p")
	if second < 0 || second == first {
		t.Fatalf("sticky member full: went to %d", second)
	}
	x.sink(first).full.Store(false)
	onlyTo("after full", second, 20)

	// A message the sticky member may not receive goes elsewhere; it stays sticky for the rest.
	x.sink(second).deny = []string{"secret"}
	if got := x.publish("jobs/secret", "p"); got < 0 || got == second {
		t.Fatalf("refused by the sticky member: went to %d", got)
	}
	onlyTo("after a refusal", second, 20)

	// Leaving: one other member gets everything from then on.
	x.leave(second)
	third := x.publish("jobs/a", "p")
	if third < 0 {
		t.Fatal("nobody took the message after the sticky member left")
	}
	onlyTo("after leaving", third, 20)
	// The group no longer holds the departed member.
	if p := x.r.Match([]string{"jobs", "a"}).Groups[0].st.sticky.Load(); p != x.members[third] {
		t.Fatalf("sticky member %p, want %p", p, x.members[third])
	}
}

// stableOwners publishes from each key (a sender id or a topic) a few times and returns the member each
// key's messages went to, failing if one key's messages went to two members.
func stableOwners(x *shareFixture, keys []string, byTopic bool) map[string]int {
	x.t.Helper()
	owner := make(map[string]int)
	for range 3 {
		for _, k := range keys {
			topic, sender := "jobs/a", k
			if byTopic {
				topic, sender = "jobs/"+k, fmt.Sprint(len(owner)) // the sender varies, the topic decides
			}
			got := x.publish(topic, sender)
			if prev, ok := owner[k]; ok && prev != got {
				x.t.Fatalf("%q went to member %d, then %d", k, prev, got)
			}
			owner[k] = got
		}
	}
	return owner
}

func TestShareHash(t *testing.T) {
	for _, tc := range []struct {
		st      ShareStrategy
		byTopic bool
	}{{ShareHashClientID, false}, {ShareHashTopic, true}} {
		t.Run(tc.st.String(), func(t *testing.T) {
			x := newShareFixture(t, tc.st, 4)
			var keys []string
			for i := range 64 {
				keys = append(keys, fmt.Sprintf("k%d", i))
			}
			owner := stableOwners(x, keys, tc.byTopic)
			used := map[int]int{}
			for _, m := range owner {
				used[m]++
			}
			if len(used) != 4 {
				t.Fatalf("64 keys over 4 members: %v, want every member used", used)
			}

			// A member leaves: only its keys move, each to one member again.
			x.leave(1)
			after := stableOwners(x, keys, tc.byTopic)
			for _, k := range keys {
				was := owner[k]
				if was == 1 {
					continue
				}
				if was > 1 {
					was-- // indexes after the departed member shifted down
				}
				if after[k] != was {
					t.Fatalf("%q moved from a member that stayed (%d -> %d)", k, was, after[k])
				}
			}

			// A member joins: the keys that move go to it, the others stay.
			x.join()
			joined := stableOwners(x, keys, tc.byTopic)
			moved := 0
			for _, k := range keys {
				if joined[k] != after[k] {
					if joined[k] != 3 {
						t.Fatalf("%q moved between old members (%d -> %d)", k, after[k], joined[k])
					}
					moved++
				}
			}
			if moved == 0 || moved == len(keys) {
				t.Fatalf("%d of %d keys moved to the new member", moved, len(keys))
			}

			// The chosen member full: another takes the message, nothing is dropped.
			k := keys[0]
			m := joined[k]
			x.sink(m).full.Store(true)
			topic, sender := "jobs/a", k
			if tc.byTopic {
				topic, sender = "jobs/"+k, ""
			}
			if got := x.publish(topic, sender); got < 0 || got == m {
				t.Fatalf("chosen member %d full: went to %d", m, got)
			}
			x.sink(m).full.Store(false)
			if got := x.publish(topic, sender); got != m {
				t.Fatalf("chosen member has room again: went to %d, want %d", got, m)
			}
		})
	}
}

// Without a sender id, hash_clientid falls back to round robin.
func TestShareHashClientIDUnknownSender(t *testing.T) {
	x := newShareFixture(t, ShareHashClientID, 3)
	if c := x.counts(30, "jobs/a", ""); c[0] != 10 || c[1] != 10 || c[2] != 10 {
		t.Fatalf("30 messages without a sender: %v, want 10 each", c)
	}
}

// Every strategy passes over members that may not receive a message and members that are full, and
// counts a drop only when a member that may receive it was full.
func TestShareSkipsRefusedAndFull(t *testing.T) {
	for _, st := range strategies {
		t.Run(st.String(), func(t *testing.T) {
			x := newShareFixture(t, st, 3)
			x.sink(0).deny = []string{"secret"}
			x.sink(1).deny = []string{"secret"}
			before := x.r.Stats()
			for i := range 30 {
				if got := x.publish("jobs/secret", fmt.Sprint(i)); got != 2 {
					t.Fatalf("secret went to %d, want 2 (the only member allowed)", got)
				}
			}
			x.sink(2).full.Store(true)
			for i := range 30 {
				if got := x.publish("jobs/open", fmt.Sprint(i)); got != 0 && got != 1 {
					t.Fatalf("open with 2 full went to %d", got)
				}
			}
			// The only member allowed is full: a drop.
			if pr := x.r.Publish(&Message{Dest: mustName(t, mqttG, "jobs/secret"), SenderID: "s"}); pr.Delivered != 0 || pr.Dropped != 1 {
				t.Fatalf("secret with 2 full: %+v, want a drop", pr)
			}
			// No member allowed: neither delivered nor dropped.
			x.sink(2).deny = []string{"secret"}
			if pr := x.r.Publish(&Message{Dest: mustName(t, mqttG, "jobs/secret"), SenderID: "s"}); pr.Delivered != 0 || pr.Dropped != 0 {
				t.Fatalf("secret refused by all: %+v", pr)
			}
			// Everyone full: a drop.
			x.sink(0).full.Store(true)
			x.sink(1).full.Store(true)
			if pr := x.r.Publish(&Message{Dest: mustName(t, mqttG, "jobs/open"), SenderID: "s"}); pr.Delivered != 0 || pr.Dropped != 1 {
				t.Fatalf("all full: %+v", pr)
			}
			s := x.r.Stats()
			if dl, dr := s.Delivered-before.Delivered, s.Dropped-before.Dropped; dl != 60 || dr != 2 {
				t.Fatalf("stats: delivered %d dropped %d, want 60 and 2", dl, dr)
			}
		})
	}
}

// Publishers racing with members joining and leaving: each message reaches exactly one member, since one
// member never leaves. Run with -race.
func TestShareConcurrentMembership(t *testing.T) {
	for _, st := range strategies {
		t.Run(st.String(), func(t *testing.T) {
			r := New(Options{ShareStrategy: st})
			f := mustFilter(t, mqttG, "jobs/+")
			var got atomic.Int64
			sink := countSink{&got}
			if err := r.Subscribe(&Subscription{Filter: f, Sink: sink, Share: "g"}); err != nil {
				t.Fatal(err)
			}
			const pubs, each = 4, 500
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					s := &Subscription{Filter: f, Sink: sink, Share: "g"}
					_ = r.Subscribe(s)
					r.Unsubscribe(s)
				}
			})
			var pw sync.WaitGroup
			for p := range pubs {
				pw.Go(func() {
					for i := range each {
						r.Publish(&Message{Dest: mustName(t, mqttG, fmt.Sprintf("jobs/%d", i%7)), SenderID: fmt.Sprint(p)})
					}
				})
			}
			pw.Wait()
			close(stop)
			wg.Wait()
			if got.Load() != pubs*each {
				t.Fatalf("%d deliveries for %d messages", got.Load(), pubs*each)
			}
		})
	}
}

// count returns how many deliveries s recorded, without copying them.
func (s *recSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

type countSink struct{ n *atomic.Int64 }

func (s countSink) Deliver(Delivery) bool { s.n.Add(1); return true }
