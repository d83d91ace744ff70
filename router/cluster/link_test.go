package cluster

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/router"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recSink records what a subscription receives.
type recSink struct {
	mu   sync.Mutex
	msgs []*router.Message
}

func (s *recSink) Deliver(d router.Delivery) bool {
	s.mu.Lock()
	s.msgs = append(s.msgs, d.Msg)
	s.mu.Unlock()
	return true
}

func (s *recSink) got() []*router.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

func waitFor(t *testing.T, what string, fn func() bool) {
	t.Helper()
	waitForIn(t, 10*time.Second, what, fn)
}

func waitForIn(t *testing.T, d time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type node struct {
	l *Link
	r *router.Router
}

// startNodes starts n linked nodes, each with one virtual host "v"; the later ones route to the first and
// NATS gossip completes the mesh.
func startNodes(t *testing.T, n int) []node {
	t.Helper()
	var seed string
	return startNodesWith(t, n, func(i int, c *Config) {
		if seed != "" {
			c.Routes = []string{seed}
		}
	}, &seed)
}

// startNodesWith starts n nodes named a, b, ..., each configured by conf; the first one's route address
// goes to *seed when seed is given.
func startNodesWith(t *testing.T, n int, conf func(i int, c *Config), seed ...*string) []node {
	t.Helper()
	var nodes []node
	for i := range n {
		c := Config{Name: "test", Node: string(rune('a' + i)), Listen: "127.0.0.1:0"}
		conf(i, &c)
		l, err := Start(c, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && len(seed) > 0 {
			*seed[0] = l.RouteAddr().String()
		}
		r := router.New(router.Options{})
		if _, err := l.Attach("v", r); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node{l, r})
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.l.Close()
			nd.r.Close()
		}
	})
	return nodes
}

func subscribe(t *testing.T, r *router.Router, f router.Filter) (*router.Subscription, *recSink) {
	t.Helper()
	s := &recSink{}
	sub := &router.Subscription{Filter: f, Sink: s, QoS: 2}
	if err := r.Subscribe(sub); err != nil {
		t.Fatal(err)
	}
	return sub, s
}

func lit(ss ...string) router.Filter {
	f := router.Filter{Kind: router.Topic}
	for _, s := range ss {
		switch s {
		case "+":
			f.Segs = append(f.Segs, router.Seg{Kind: router.SegOne})
		case "#":
			f.Segs = append(f.Segs, router.Seg{Kind: router.SegMany})
		default:
			f.Segs = append(f.Segs, router.Seg{Text: s})
		}
	}
	return f
}

func TestLinkTopicAcrossNodes(t *testing.T) {
	nodes := startNodes(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	// Overlapping filters on b: one NATS subscription each, one delivery per subscription, no duplicate.
	_, bExact := subscribe(t, b.r, lit("s", "k.1", ""))
	_, bWild := subscribe(t, b.r, lit("s", "#"))
	_, bWild2 := subscribe(t, b.r, lit("s", "#")) // same filter: no second NATS subscription
	// Regex levels subscribe wider ('*'); b's router keeps only what the regex matches.
	reF := func(re string) router.Filter {
		return router.Filter{Kind: router.Topic, Segs: []router.Seg{{Text: "s"}, {Kind: router.SegRegex, Text: re}, {Kind: router.SegOne}}}
	}
	_, bRe := subscribe(t, b.r, reF(`k\..*`))
	_, bReNo := subscribe(t, b.r, reF(`z.*`))
	_, cOther := subscribe(t, c.r, lit("other", "+"))
	path := []string{"s", "k.1", ""}
	// Interest counts subscribers (servers and clients), not subscriptions: a's own subscription below
	// would satisfy it, so it comes after.
	waitFor(t, "interest of b on a", func() bool { return a.l.Interest("v", path) > 0 })
	waitFor(t, "interest of c on a", func() bool { return a.l.Interest("v", []string{"other", "x"}) > 0 })
	_, aLocal := subscribe(t, a.r, lit("s", "+", "+"))

	m := &router.Message{Dest: router.Destination{Kind: router.Topic, Path: path}, Body: []byte("hi"), QoS: 1,
		Headers: []router.Header{{Name: "x", Value: "1"}, {Name: "y", Value: "2"}, {Name: "x", Value: "3"}}, ContentType: "text/plain",
		Expires: time.Now().Add(time.Hour).UnixMilli()}
	a.r.Publish(m)
	waitFor(t, "deliveries on b", func() bool {
		return len(bExact.got()) == 1 && len(bWild.got()) == 1 && len(bWild2.got()) == 1 && len(bRe.got()) == 1
	})
	got := bExact.got()[0]
	if string(got.Body) != "hi" || got.QoS != 1 || got.ContentType != "text/plain" ||
		!slices.Equal(got.Headers, m.Headers) || got.Expires < time.Now().Add(59*time.Minute).UnixMilli() {
		t.Fatalf("message changed on the way: %+v", got)
	}
	if n := len(bReNo.got()); n != 0 {
		t.Fatalf("a regex that does not match got %d messages", n)
	}
	if n := len(aLocal.got()); n != 1 {
		t.Fatalf("local subscriber on the publishing node got %d copies, want 1", n)
	}
	// A marker message on a topic c is interested in: once it arrived, the first one would have too.
	c.r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"other", "x"}}})
	waitFor(t, "marker on c", func() bool { return len(cOther.got()) == 1 })
	if st := c.l.Stats(); st.Received != 0 {
		t.Fatalf("c received %d messages from NATS without interest in them", st.Received)
	}
	// The copy b brought in is not sent back out (b would count it as sent).
	// b's subjects s.k~2E1.~, s.> and s.*.* all match: NATS brought three copies, b kept one.
	if st := b.l.Stats(); st.Sent != 0 || st.Received != 1 || st.Duplicates != 2 {
		t.Fatalf("b stats %+v: want 1 received, 2 duplicates dropped, none sent", st)
	}
	if st := a.l.Stats(); st.Received != 0 || st.Sent != 1 {
		t.Fatalf("a stats %+v: want its 1 message sent and none received back", st)
	}
}

func TestLinkUnsubscribeRemovesInterest(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	topic := func(p ...string) *router.Message {
		return &router.Message{Dest: router.Destination{Kind: router.Topic, Path: p}}
	}
	s1, _ := subscribe(t, b.r, lit("u", "+"))
	s2, rec2 := subscribe(t, b.r, lit("u", "+"))
	waitFor(t, "interest", func() bool { return a.l.Interest("v", []string{"u", "1"}) > 0 })
	b.r.Unsubscribe(s1)
	// One local subscription is left: the NATS subscription must stay.
	a.r.Publish(topic("u", "2"))
	waitFor(t, "delivery to the remaining subscription", func() bool { return len(rec2.got()) == 1 })
	b.r.Unsubscribe(s2)
	waitFor(t, "interest gone", func() bool { return a.l.Interest("v", []string{"u", "2"}) == 0 })
	_, marker := subscribe(t, b.r, lit("m"))
	waitFor(t, "marker interest", func() bool { return a.l.Interest("v", []string{"m"}) > 0 })
	a.r.Publish(topic("u", "3"))
	a.r.Publish(topic("m"))
	waitFor(t, "marker", func() bool { return len(marker.got()) == 1 })
	if st := b.l.Stats(); st.Received != 2 {
		t.Fatalf("b received %d messages, want 2 (u/2 and the marker; nothing after unsubscribing)", st.Received)
	}
}
