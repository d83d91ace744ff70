package router

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recSink records deliveries; full makes it refuse them.
type recSink struct {
	mu   sync.Mutex
	got  []Delivery
	full atomic.Bool
}

func (s *recSink) Deliver(d Delivery) bool {
	if s.full.Load() {
		return false
	}
	s.mu.Lock()
	s.got = append(s.got, d)
	s.mu.Unlock()
	return true
}

func (s *recSink) all() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.got...)
}

func (s *recSink) bodies() []string {
	var out []string
	for _, d := range s.all() {
		out = append(out, string(d.Msg.Body))
	}
	return out
}

type nopSink struct{}

func (nopSink) Deliver(Delivery) bool { return true }

func mustFilter(t testing.TB, g *Grammar, s string) Filter {
	t.Helper()
	f, err := g.ParseFilter(s)
	if err != nil {
		t.Fatalf("ParseFilter(%q): %v", s, err)
	}
	return f
}

func mustName(t testing.TB, g *Grammar, s string) Destination {
	t.Helper()
	d, err := g.ParseName(s)
	if err != nil {
		t.Fatalf("ParseName(%q): %v", s, err)
	}
	return d
}

type matchCase struct {
	filter, topic string
	match         bool
}

var mqttMatchCases = []matchCase{
	{"a/b/c", "a/b/c", true},
	{"a/b/c", "a/b", false},
	{"a/b", "a/b/c", false},
	{"a/+/c", "a/b/c", true},
	{"a/+/c", "a//c", true}, // '+' matches an empty level
	{"a/+", "a/", true},
	{"a/+", "a", false},
	{"+", "a", true},
	{"+", "/a", false},
	{"+/+", "/a", true},
	{"/+", "/a", true},
	{"#", "a", true},
	{"#", "a/b/c", true},
	{"#", "/", true},
	{"a/#", "a", true}, // [MQTT-4.7.1-2] '#' includes the parent level
	{"a/#", "a/", true},
	{"a/#", "a/b/c", true},
	{"a/#", "ab", false},
	{"a/+/#", "a/b", true},
	{"a/+/#", "a", false},
	{"a//b", "a//b", true},
	{"a//b", "a/b", false},
	{"/a", "/a", true},
	{"/a", "a", false},
	{"a/", "a/", true},
	{"a/", "a", false},
	{"#", "$SYS/x", false},     // [MQTT-4.7.2-1]
	{"+/x", "$SYS/x", false},   // [MQTT-4.7.2-1]
	{"+/#", "$SYS/x", false},   // [MQTT-4.7.2-1]
	{"$SYS/#", "$SYS/x", true}, // [MQTT-4.7.2-1] explicit '$' level matches
	{"$SYS/+", "$SYS/x", true},
	{"$SYS/#", "$SYS", true},
	{"a/#", "a/$x", true}, // only the first level is special
	{"+/+", "a/$x", true},
	{"#", "a$/x", true},
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
}

var stompMatchCases = []matchCase{
	{"/topic/a.b.c", "/topic/a.b.c", true},
	{"/topic/a.*.c", "/topic/a.b.c", true},
	{"/topic/a.*.c", "/topic/a..c", true},
	{"/topic/a.**", "/topic/a", true},
	{"/topic/a.**", "/topic/a.b.c", true},
	{"/topic/**", "/topic/$SYS.x", false},
	{"/topic/v1%2E2.*", "/topic/v1%2E2.x", true},
	{"/topic/v1.*", "/topic/v1%2E2.x", false},
	{"/topic/{v[0-9]+}.x", "/topic/v12.x", true},
	{"/topic/{v[0-9]+}.x", "/topic/v12a.x", false}, // anchored
	{"/topic/{v[0-9]+}.x", "/topic/av12.x", false}, // anchored
	{"/topic/{v1.*}", "/topic/v1%2E2", true},       // the regex sees the raw segment "v1.2"
	{"/topic/{.*}", "/topic/$SYS", false},          // [MQTT-4.7.2-1] regex is a wildcard too
	{"/topic/{a|b}.**", "/topic/b.c.d", true},
	{"/topic/{}", "/topic/.x", false},
	{"/topic/{}.x", "/topic/.x", true},
	{"/temp-topic/a", "/topic/a", false}, // separate namespaces
	{"/topic/a", "/temp-topic/a", false},
	{"/temp-topic/a.*", "/temp-topic/a.b", true},
}

func runMatchCases(t *testing.T, g *Grammar, cases []matchCase) {
	for _, cache := range []int{-1, 0} {
		t.Run(fmt.Sprintf("cache=%v", cache >= 0), func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.filter+" "+c.topic, func(t *testing.T) {
					r := New(Options{CacheSize: cache})
					s := &Subscription{Filter: mustFilter(t, g, c.filter), Sink: nopSink{}}
					if err := r.Subscribe(s); err != nil {
						t.Fatal(err)
					}
					d := mustName(t, g, c.topic)
					for range 2 { // second time from the cache
						res := r.MatchDest(d)
						if got := len(res.Subs) == 1; got != c.match {
							t.Fatalf("filter %q topic %q: match = %v, want %v", c.filter, c.topic, got, c.match)
						}
					}
					// The retained store applies the same rules.
					r.Publish(&Message{Dest: d, Body: []byte("x"), Retain: true})
					if got := len(r.Retained(s.Filter)) == 1; got != c.match {
						t.Fatalf("retained: filter %q topic %q: match = %v, want %v", c.filter, c.topic, got, c.match)
					}
					r.Unsubscribe(s)
					if res := r.MatchDest(d); !res.Empty() {
						t.Fatalf("after Unsubscribe: %+v", res)
					}
				})
			}
		})
	}
}

func TestMatchMQTT(t *testing.T)  { runMatchCases(t, mqttG, mqttMatchCases) }
func TestMatchSTOMP(t *testing.T) { runMatchCases(t, stompG, stompMatchCases) }

// All filters at once in one router: each topic gets exactly the subscriptions that match on their own.
func TestMatchManyFilters(t *testing.T) {
	for _, cache := range []int{-1, 16} {
		r := New(Options{CacheSize: cache})
		subs := map[string]*Subscription{}
		for _, c := range mqttMatchCases {
			if subs[c.filter] == nil {
				subs[c.filter] = &Subscription{ID: c.filter, Filter: mustFilter(t, mqttG, c.filter), Sink: nopSink{}}
				if err := r.Subscribe(subs[c.filter]); err != nil {
					t.Fatal(err)
				}
			}
		}
		for range 3 {
			for _, c := range mqttMatchCases {
				d := mustName(t, mqttG, c.topic)
				var want []string
				for f, s := range subs {
					if refMatch(s.Filter.Segs, d.Path) {
						want = append(want, f)
					}
				}
				var got []string
				for _, s := range r.Match(d.Path).Subs {
					got = append(got, s.ID)
				}
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("cache %d topic %q: got %q, want %q", cache, c.topic, got, want)
				}
			}
		}
	}
}

// refMatch is the plain reference matcher: recursion over segments, written for clarity, not speed.
func refMatch(f []Seg, path []string) bool {
	if len(path) > 0 && strings.HasPrefix(path[0], "$") && len(f) > 0 && f[0].Kind != SegLiteral {
		return false
	}
	var rec func(f []Seg, p []string) bool
	rec = func(f []Seg, p []string) bool {
		if len(f) == 0 {
			return len(p) == 0
		}
		switch f[0].Kind {
		case SegMany:
			return true
		case SegOne:
			return len(p) > 0 && rec(f[1:], p[1:])
		case SegRegex:
			return len(p) > 0 && f[0].Re.MatchString(p[0]) && rec(f[1:], p[1:])
		default:
			return len(p) > 0 && f[0].Text == p[0] && rec(f[1:], p[1:])
		}
	}
	return rec(f, path)
}

func TestDollarTopicsAndRetained(t *testing.T) {
	r := New(Options{})
	for _, topic := range []string{"$SYS/uptime", "$SYS/clients/count", "a/b", "a", "$x"} {
		r.Publish(&Message{Dest: mustName(t, mqttG, topic), Body: []byte(topic), Retain: true})
	}
	got := func(filter string) []string {
		var out []string
		for _, m := range r.Retained(mustFilter(t, mqttG, filter)) {
			out = append(out, string(m.Body))
		}
		slices.Sort(out)
		return out
	}
	for filter, want := range map[string][]string{
		"#":        {"a", "a/b"},                          // [MQTT-4.7.2-1]
		"+":        {"a"},                                 // [MQTT-4.7.2-1]
		"+/+":      {"a/b"},                               // [MQTT-4.7.2-1]
		"$SYS/#":   {"$SYS/clients/count", "$SYS/uptime"}, // explicit $ level
		"$SYS/+":   {"$SYS/uptime"},                       //
		"$x":       {"$x"},                                //
		"a/#":      {"a", "a/b"},                          // a/# includes a
		"+/#":      {"a", "a/b"},                          //
		"$SYS/+/#": {"$SYS/clients/count", "$SYS/uptime"}, // "#" includes the parent level
	} {
		if g := got(filter); !slices.Equal(g, want) {
			t.Errorf("Retained(%q) = %q, want %q", filter, g, want)
		}
	}
}

func TestRetainedSetReplaceClear(t *testing.T) {
	r := New(Options{})
	d := mustName(t, mqttG, "a/b")
	f := mustFilter(t, mqttG, "a/+")
	r.Publish(&Message{Dest: d, Body: []byte("one"), Retain: true})
	r.Publish(&Message{Dest: d, Body: []byte("live")}) // not retained: keeps "one"
	if m := r.Retained(f); len(m) != 1 || string(m[0].Body) != "one" {
		t.Fatalf("after set: %v", m)
	}
	r.Publish(&Message{Dest: d, Body: []byte("two"), Retain: true})
	if m := r.Retained(f); len(m) != 1 || string(m[0].Body) != "two" {
		t.Fatalf("after replace: %v", m)
	}
	// [MQTT-3.3.1-10] a zero-length retained message clears, and [MQTT-3.3.1-11] is still delivered.
	sink := &recSink{}
	if err := r.Subscribe(&Subscription{Filter: f, Sink: sink}); err != nil {
		t.Fatal(err)
	}
	if pr := r.Publish(&Message{Dest: d, Retain: true}); pr.Delivered != 1 {
		t.Fatalf("clear publish: %+v", pr)
	}
	if m := r.Retained(f); len(m) != 0 {
		t.Fatalf("after clear: %v", m)
	}
	if st := r.Stats(); st.Retained != 0 {
		t.Fatalf("stats after clear: %+v", st)
	}
	// Expired retained messages are not handed out.
	r.Publish(&Message{Dest: d, Body: []byte("old"), Retain: true, Expires: 1})
	if m := r.Retained(f); len(m) != 0 {
		t.Fatalf("expired retained returned: %v", m)
	}
	// No cap and oldest first.
	for i := range 3000 {
		r.Publish(&Message{Dest: Destination{Kind: Topic, Path: []string{"many", fmt.Sprint(i)}}, Body: []byte{1}, Retain: true})
	}
	ms := r.Retained(mustFilter(t, mqttG, "many/#"))
	if len(ms) != 3000 {
		t.Fatalf("retained many/# = %d, want 3000", len(ms))
	}
	for i := 1; i < len(ms); i++ {
		if ms[i-1].ID >= ms[i].ID {
			t.Fatalf("not oldest first at %d", i)
		}
	}
	// Regex filters reach retained messages too.
	if ms := r.Retained(mustFilter(t, stompG, "/topic/many.{1[0-9]}")); len(ms) != 10 {
		t.Fatalf("regex retained = %d, want 10", len(ms))
	}
	// Topics and temporary topics do not share retained messages.
	if ms := r.Retained(mustFilter(t, stompG, "/temp-topic/many.**")); len(ms) != 0 {
		t.Fatalf("temp-topic retained = %d", len(ms))
	}
}

func TestSharedSubscriptions(t *testing.T) {
	r := New(Options{})
	f := mustFilter(t, mqttG, "jobs/+")
	a, b, c := &recSink{}, &recSink{}, &recSink{}
	plain := &recSink{}
	sa := &Subscription{Filter: f, Sink: a, Share: "g"}
	sb := &Subscription{Filter: f, Sink: b, Share: "g"}
	sc := &Subscription{Filter: f, Sink: c, Share: "h"} // another group: gets everything
	for _, s := range []*Subscription{sa, sb, sc, {Filter: f, Sink: plain}} {
		if err := r.Subscribe(s); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		pr := r.Publish(&Message{Dest: mustName(t, mqttG, "jobs/x"), Body: []byte(fmt.Sprint(i))})
		if pr.Delivered != 3 {
			t.Fatalf("publish %d: %+v", i, pr)
		}
	}
	if len(a.all()) != 5 || len(b.all()) != 5 || len(c.all()) != 10 || len(plain.all()) != 10 {
		t.Fatalf("round robin: a=%d b=%d c=%d plain=%d", len(a.all()), len(b.all()), len(c.all()), len(plain.all()))
	}
	// A full member is skipped while another can take the message.
	a.full.Store(true)
	for range 4 {
		r.Publish(&Message{Dest: mustName(t, mqttG, "jobs/x"), Body: []byte("y")})
	}
	if len(b.all()) != 9 {
		t.Fatalf("b after a full: %d, want 9", len(b.all()))
	}
	// All members full: a drop.
	b.full.Store(true)
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "jobs/x")}); pr.Dropped != 1 || pr.Delivered != 2 {
		t.Fatalf("all members full: %+v", pr)
	}
	// Leaving the group: the rest gets everything.
	a.full.Store(false)
	r.Unsubscribe(sb)
	for range 3 {
		r.Publish(&Message{Dest: mustName(t, mqttG, "jobs/x")})
	}
	if len(a.all()) != 8 {
		t.Fatalf("a alone: %d, want 8", len(a.all()))
	}
	r.Unsubscribe(sa)
	r.Unsubscribe(sc)
	if res := r.Match([]string{"jobs", "x"}); len(res.Groups) != 0 || len(res.Subs) != 1 {
		t.Fatalf("after leaving: %+v", res)
	}
}

func TestUnsubscribePrunes(t *testing.T) {
	r := New(Options{})
	var subs []*Subscription
	for _, f := range []string{"a/b/c", "a/+/c", "a/#", "x/{y}", "x/{y}/z"} {
		g := mqttG
		if strings.Contains(f, "{") {
			f = "/topic/" + strings.ReplaceAll(f, "/", ".")
			g = stompG
		}
		s := &Subscription{Filter: mustFilter(t, g, f), Sink: nopSink{}}
		if err := r.Subscribe(s); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if got := r.Stats().Subscriptions; got != 5 {
		t.Fatalf("subscriptions = %d", got)
	}
	// The two regex filters share one edge.
	if n := len(r.topics.roots[0].lits["x"].res); n != 1 {
		t.Fatalf("regex edges = %d, want 1 (deduplicated)", n)
	}
	for _, s := range subs {
		r.Unsubscribe(s)
		r.Unsubscribe(s) // twice is harmless
	}
	if root := r.topics.roots[0]; !root.isEmpty() {
		t.Fatalf("root not pruned: %+v", root)
	}
	if got := r.Stats().Subscriptions; got != 0 {
		t.Fatalf("subscriptions = %d", got)
	}
}

func TestSubscribeRejects(t *testing.T) {
	r := New(Options{})
	for name, s := range map[string]*Subscription{
		"no sink":    {Filter: mustFilter(t, mqttG, "a")},
		"queue kind": {Filter: mustFilter(t, stompG, "/queue/a"), Sink: nopSink{}},
		"no segs":    {Filter: Filter{Kind: Topic}, Sink: nopSink{}},
		"many first": {Filter: Filter{Kind: Topic, Segs: []Seg{{Kind: SegMany}, {Kind: SegLiteral, Text: "a"}}}, Sink: nopSink{}},
		"bad regex":  {Filter: Filter{Kind: Topic, Segs: []Seg{{Kind: SegRegex, Text: "("}}}, Sink: nopSink{}},
	} {
		if err := r.Subscribe(s); err == nil {
			t.Errorf("%s: Subscribe accepted %+v", name, s.Filter)
		}
	}
	// A hand-built regex segment without Re gets compiled.
	s := &Subscription{Filter: Filter{Kind: Topic, Segs: []Seg{{Kind: SegRegex, Text: "a+"}}}, Sink: nopSink{}}
	if err := r.Subscribe(s); err != nil || len(r.Match([]string{"aaa"}).Subs) != 1 {
		t.Fatalf("hand-built regex: %v", err)
	}
	r.Close()
	if err := r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, "a"), Sink: nopSink{}}); err != ErrClosed {
		t.Fatalf("after Close: %v", err)
	}
	if pr := r.Publish(&Message{Dest: mustName(t, mqttG, "a")}); pr.Err != ErrClosed {
		t.Fatalf("publish after Close: %+v", pr)
	}
}

// Cache: literal changes evict one key, wildcard changes stale everything; a hit allocates nothing.
func TestMatchCache(t *testing.T) {
	r := New(Options{CacheSize: 8})
	path := []string{"a", "b"}
	if res := r.Match(path); !res.Empty() || res != emptyResult {
		t.Fatalf("empty trie: %+v", res)
	}
	lit := &Subscription{Filter: mustFilter(t, mqttG, "a/b"), Sink: nopSink{}}
	r.Subscribe(lit)
	if res := r.Match(path); len(res.Subs) != 1 {
		t.Fatalf("after literal subscribe: %+v", res)
	}
	wild := &Subscription{Filter: mustFilter(t, mqttG, "a/#"), Sink: nopSink{}}
	r.Subscribe(wild)
	if res := r.Match(path); len(res.Subs) != 2 {
		t.Fatalf("after wildcard subscribe: %+v", res)
	}
	first := r.Match(path)
	if n := testing.AllocsPerRun(1000, func() { r.Match(path) }); n != 0 {
		t.Fatalf("cache hit allocates %v", n)
	}
	if r.Match(path) != first {
		t.Fatal("cache hit returned a different snapshot")
	}
	r.Unsubscribe(lit)
	if res := r.Match(path); len(res.Subs) != 1 || res.Subs[0] != wild {
		t.Fatalf("after literal unsubscribe: %+v", res)
	}
	r.Unsubscribe(wild)
	if res := r.Match(path); !res.Empty() {
		t.Fatalf("after wildcard unsubscribe: %+v", res)
	}
	// Bounded: many distinct topics never grow it past its size.
	r.Subscribe(wild)
	for i := range 100 {
		if res := r.Match([]string{"a", fmt.Sprint(i)}); len(res.Subs) != 1 {
			t.Fatalf("topic %d: %+v", i, res)
		}
	}
	if n := r.Stats().CachedTopics; n > 8 {
		t.Fatalf("cache holds %d entries, limit 8", n)
	}
	// Snapshots are not modified by later changes.
	before := r.Match(path)
	r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, "+/b"), Sink: nopSink{}})
	if len(before.Subs) != 1 || len(r.Match(path).Subs) != 2 {
		t.Fatalf("snapshot changed: before=%d now=%d", len(before.Subs), len(r.Match(path).Subs))
	}
}

// Publish fan-out on a cache hit allocates nothing either (the message has its ID already).
func TestPublishNoAllocs(t *testing.T) {
	r := New(Options{})
	for _, f := range []string{"a/b", "a/+", "#"} {
		r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, f), Sink: nopSink{}})
	}
	m := &Message{Dest: mustName(t, mqttG, "a/b"), Body: []byte("x")}
	r.Publish(m)
	if n := testing.AllocsPerRun(1000, func() { r.Publish(m) }); n != 0 {
		t.Fatalf("Publish allocates %v", n)
	}
}

// Run with -race: subscribers come and go while publishers match; every match must still contain the one
// subscription that is always present.
func TestConcurrentSubscribeMatch(t *testing.T) {
	r := New(Options{CacheSize: 64})
	stable := &Subscription{Filter: mustFilter(t, mqttG, "s/#"), Sink: nopSink{}}
	r.Subscribe(stable)
	filters := []string{"s/+", "s/a", "s/+/b", "s/#", "+/a", "#", "s/a/b"}
	var subsWG, matchWG sync.WaitGroup
	for w := range 4 {
		subsWG.Add(1)
		go func() {
			defer subsWG.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for range 2000 {
				s := &Subscription{Filter: mustFilter(t, mqttG, filters[rng.Intn(len(filters))]), Sink: nopSink{}, Share: []string{"", "g"}[rng.Intn(2)]}
				r.Subscribe(s)
				r.Match([]string{"s", "a"})
				r.Unsubscribe(s)
			}
		}()
	}
	stop := make(chan struct{})
	var bad atomic.Int32
	for range 2 {
		matchWG.Add(1)
		go func() {
			defer matchWG.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, p := range [][]string{{"s", "a"}, {"s", "a", "b"}, {"s"}} {
					if !slices.Contains(r.Match(p).Subs, stable) {
						bad.Add(1)
					}
					r.Publish(&Message{Dest: Destination{Kind: Topic, Path: p}})
				}
			}
		}()
	}
	subsWG.Wait()
	close(stop)
	matchWG.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d matches missed the stable subscription", bad.Load())
	}
	if res := r.Match([]string{"s", "a"}); len(res.Subs) != 1 || len(res.Groups) != 0 {
		t.Fatalf("final match: %+v", res)
	}
	if n := r.Stats().Subscriptions; n != 1 {
		t.Fatalf("subscriptions = %d", n)
	}
}

// FuzzTrie compares the trie and Filter.Match with the reference matcher on random filter sets and topics, subscribing them
// one by one and then unsubscribing them one by one, checking after every change. With stomp set the
// filters and topic are STOMP names (prefix added), so regex segments take part.
func FuzzTrie(f *testing.F) {
	f.Add([]byte("a/+/c\x00a/#\x00+\x00#"), "a/b/c", true, false)
	f.Add([]byte("$SYS/#\x00#\x00+/x"), "$SYS/x", false, false)
	f.Add([]byte("/+\x00+/+\x00a//b"), "a//b", true, false)
	f.Add([]byte("a.{b+}.c\x00a.**\x00{.*}.**\x00*.*.c"), "a.bb.c", true, true)
	f.Add([]byte("{[$].*}\x00**\x00$x.{y|z}"), "$x.y", false, true)
	f.Fuzz(func(t *testing.T, filters []byte, topic string, cache, stomp bool) {
		size := -1
		if cache {
			size = 4
		}
		g, prefix := mqttG, ""
		if stomp {
			g, prefix = stompG, "/topic/"
		}
		r := New(Options{CacheSize: size})
		d, err := g.ParseName(prefix + topic)
		if err != nil {
			return
		}
		var subs []*Subscription
		for i, fs := range strings.Split(string(filters), "\x00") {
			if i >= 32 {
				break
			}
			fl, err := g.ParseFilter(prefix + fs)
			if err != nil {
				continue
			}
			s := &Subscription{ID: fmt.Sprint(i), Filter: fl, Sink: nopSink{}}
			if err := r.Subscribe(s); err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
			check(t, r, subs, d.Path)
		}
		for len(subs) > 0 {
			r.Unsubscribe(subs[0])
			subs = subs[1:]
			check(t, r, subs, d.Path)
		}
	})
}

func check(t *testing.T, r *Router, subs []*Subscription, path []string) {
	t.Helper()
	var want, got []string
	for _, s := range subs {
		ref := refMatch(s.Filter.Segs, path)
		if ref {
			want = append(want, s.ID)
		}
		if one := s.Filter.Match(path); one != ref {
			t.Fatalf("path %q, filter %s: Filter.Match %v, reference %v", path, s.ID, one, ref)
		}
	}
	for _, s := range r.Match(path).Subs {
		got = append(got, s.ID)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("path %q: trie %q, reference %q", path, got, want)
	}
}
