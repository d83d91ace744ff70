package router

import (
	"errors"
	"go/build"
	"slices"
	"strings"
	"testing"
)

func mustGrammar(t testing.TB, c GrammarConfig) *Grammar {
	t.Helper()
	g, err := NewGrammar(c)
	if err != nil {
		t.Fatalf("NewGrammar: %v", err)
	}
	return g
}

var (
	mqttG  = func() *Grammar { g, _ := NewGrammar(MQTTGrammarConfig()); return g }()
	stompG = func() *Grammar { g, _ := NewGrammar(STOMPGrammarConfig()); return g }()
)

func TestParseNameMQTT(t *testing.T) {
	cases := []struct {
		name string
		want []string
		err  bool
	}{
		{"a", []string{"a"}, false},
		{"sensors/k1/temp", []string{"sensors", "k1", "temp"}, false},
		{"a//b", []string{"a", "", "b"}, false},
		{"/a", []string{"", "a"}, false},
		{"a/", []string{"a", ""}, false},
		{"/", []string{"", ""}, false},
		{"$SYS/broker", []string{"$SYS", "broker"}, false},
		{"v1.2/x", []string{"v1.2", "x"}, false},
		{"100%/x", []string{"100%", "x"}, false}, // escaping is off in MQTT: '%' is verbatim
		{"a b/ü", []string{"a b", "ü"}, false},
		{"", nil, true},       // [MQTT-4.7.3-1]
		{"a/+", nil, true},    // [MQTT-3.3.2-2] no wildcards in a topic name
		{"a/#", nil, true},    // [MQTT-3.3.2-2]
		{"a+/b", nil, true},   // wildcard inside a level
		{"sport#", nil, true}, // [MQTT-4.7.1-2]
		{"queue/x", []string{"queue", "x"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := mqttG.ParseName(c.name)
			if c.err {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("ParseName(%q) = %v, %v; want ErrInvalidName", c.name, d, err)
				}
				return
			}
			if err != nil || d.Kind != Topic || !slices.Equal(d.Path, c.want) {
				t.Fatalf("ParseName(%q) = %+v, %v; want topic %q", c.name, d, err, c.want)
			}
			if got := mqttG.Render(d); got != c.name {
				t.Fatalf("Render = %q, want %q", got, c.name)
			}
		})
	}
}

func TestParseNameSTOMP(t *testing.T) {
	cases := []struct {
		name string
		kind Kind
		want []string
		err  bool
	}{
		{"/topic/a", Topic, []string{"a"}, false},
		{"/topic/sensors.k1.temp", Topic, []string{"sensors", "k1", "temp"}, false},
		{"/queue/orders.eu", Queue, []string{"orders", "eu"}, false},
		{"/dsub/mine", DurableSub, []string{"mine"}, false},
		{"/temp-queue/r1", TempQueue, []string{"r1"}, false},
		{"/temp-topic/t1", TempTopic, []string{"t1"}, false},
		{"/topic/v1%2E2.x", Topic, []string{"v1.2", "x"}, false},
		{"/topic/a%2ab", Topic, []string{"a*b"}, false}, // lowercase hex is accepted on input
		{"/topic/a..b", Topic, []string{"a", "", "b"}, false},
		{"/topic/.a", Topic, []string{"", "a"}, false},
		{"/topic/a.", Topic, []string{"a", ""}, false},
		{"/topic/a/b", Topic, []string{"a/b"}, false},
		{"/topic/", 0, nil, true},
		{"orders", 0, nil, true},                      // STOMP requires a prefix
		{"/topic/a.*", 0, nil, true},                  // no wildcards in a name
		{"/topic/a.**", 0, nil, true},                 // no wildcards in a name
		{"/topic/{a}", 0, nil, true},                  // no regex in a name
		{"/topic/a%2", 0, nil, true},                  // truncated escape
		{"/topic/a%zz", 0, nil, true},                 // invalid escape
		{"/topic/100%", 0, nil, true},                 // a bare '%' is an invalid escape
		{"/topic/a*b", 0, nil, true},                  // wildcard inside a segment
		{"/topic/a{b", 0, nil, true},                  // regex delimiter inside a segment
		{"/queue/a,b", Queue, []string{"a,b"}, false}, // a single name may hold ','; SplitComposite splits first
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := stompG.ParseName(c.name)
			if c.err {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("ParseName(%q) = %v, %v; want ErrInvalidName", c.name, d, err)
				}
				return
			}
			if err != nil || d.Kind != c.kind || !slices.Equal(d.Path, c.want) {
				t.Fatalf("ParseName(%q) = %+v, %v; want %s %q", c.name, d, err, c.kind, c.want)
			}
			back, err := stompG.ParseName(stompG.Render(d))
			if err != nil || back.Kind != d.Kind || !slices.Equal(back.Path, d.Path) {
				t.Fatalf("round trip of %q via %q = %+v, %v", c.name, stompG.Render(d), back, err)
			}
		})
	}
}

func TestRenderEscapesSTOMPSpecials(t *testing.T) {
	cases := []struct {
		path []string
		want string
	}{
		{[]string{"v1.2", "x"}, "/topic/v1%2E2.x"},
		{[]string{"a*", "**"}, "/topic/a%2A.%2A%2A"},
		{[]string{"{re}", "a,b", "100%"}, "/topic/%7Bre%7D.a%2Cb.100%25"},
		{[]string{"a/b", "$SYS", "+", "#"}, "/topic/a/b.$SYS.+.#"},
		{[]string{"", ""}, "/topic/."},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			got := stompG.Render(Destination{Kind: Topic, Path: c.path})
			if got != c.want {
				t.Fatalf("Render(%q) = %q, want %q", c.path, got, c.want)
			}
			if b := stompG.AppendRender([]byte("x"), Destination{Kind: Topic, Path: c.path}); string(b) != "x"+c.want {
				t.Fatalf("AppendRender = %q", b)
			}
		})
	}
}

// The design's promise: every MQTT topic reaches STOMP and comes back byte for byte.
func TestMQTTTopicsThroughSTOMP(t *testing.T) {
	for _, topic := range []string{"sensors/k1/temp", "v1.2/x", "a//b", "/", "/a", "a/", "$SYS/x.y",
		"100%/%41", "a*b/**/{x}", "a,b/c", "ü/日本"} {
		t.Run(topic, func(t *testing.T) { mqttThroughSTOMP(t, topic) })
	}
}

func mqttThroughSTOMP(t *testing.T, topic string) {
	d, err := mqttG.ParseName(topic)
	if err != nil {
		t.Fatalf("mqtt ParseName(%q): %v", topic, err)
	}
	s := stompG.Render(d)
	d2, err := stompG.ParseName(s)
	if err != nil {
		t.Fatalf("stomp ParseName(%q) from mqtt %q: %v", s, topic, err)
	}
	if d2.Kind != d.Kind || !slices.Equal(d2.Path, d.Path) {
		t.Fatalf("stomp %q parses to %+v, want %+v", s, d2, d)
	}
	if back := mqttG.Render(d2); back != topic {
		t.Fatalf("mqtt %q -> stomp %q -> mqtt %q", topic, s, back)
	}
}

func TestParseFilter(t *testing.T) {
	one, many := Seg{Kind: SegOne}, Seg{Kind: SegMany}
	lit := func(s string) Seg { return Seg{Kind: SegLiteral, Text: s} }
	cases := []struct {
		g      *Grammar
		filter string
		kind   Kind
		want   []Seg
		err    bool
	}{
		{mqttG, "a/+/c", Topic, []Seg{lit("a"), one, lit("c")}, false},
		{mqttG, "#", Topic, []Seg{many}, false},
		{mqttG, "+", Topic, []Seg{one}, false},
		{mqttG, "a/#", Topic, []Seg{lit("a"), many}, false},
		{mqttG, "+/+", Topic, []Seg{one, one}, false},
		{mqttG, "/+", Topic, []Seg{lit(""), one}, false},
		{mqttG, "a/#/b", 0, nil, true},                              // [MQTT-4.7.1-2] '#' last
		{mqttG, "a/b#", 0, nil, true},                               // [MQTT-4.7.1-2] whole level
		{mqttG, "a+/b", 0, nil, true},                               // [MQTT-4.7.1-3] whole level
		{mqttG, "", 0, nil, true},                                   // [MQTT-4.7.3-1]
		{mqttG, "{a}/b", Topic, []Seg{lit("{a}"), lit("b")}, false}, // regex off in MQTT
		{stompG, "/topic/a.*.c", Topic, []Seg{lit("a"), one, lit("c")}, false},
		{stompG, "/topic/a.**", Topic, []Seg{lit("a"), many}, false},
		{stompG, "/queue/a%2Eb", Queue, []Seg{lit("a.b")}, false},
		{stompG, "/topic/**.a", 0, nil, true},
		{stompG, "/topic/a*", 0, nil, true},
		{stompG, "/topic/a.{[0-9]+}", Topic, []Seg{lit("a"), {Kind: SegRegex, Text: "[0-9]+"}}, false},
		{stompG, "/topic/{v1.*}.b", Topic, []Seg{{Kind: SegRegex, Text: "v1.*"}, lit("b")}, false},
		{stompG, "/topic/{a{2}}.b", Topic, []Seg{{Kind: SegRegex, Text: "a{2}"}, lit("b")}, false},
		{stompG, "/topic/{(}", 0, nil, true},  // bad regex
		{stompG, "/topic/{abc", 0, nil, true}, // unterminated
		{stompG, "/topic/{" + strings.Repeat("a", MaxRegexLen+1) + "}", 0, nil, true},
		{stompG, "/topic/" + strings.Repeat("{a}.", MaxRegexSegments) + "{a}", 0, nil, true},
		{stompG, "/topic/" + strings.Repeat("{a}.", MaxRegexSegments-1) + "{a}", Topic, nil, false},
		{stompG, "/topic/a%", 0, nil, true},
		{stompG, "a.b", 0, nil, true},
	}
	for _, c := range cases {
		t.Run(c.filter, func(t *testing.T) {
			f, err := c.g.ParseFilter(c.filter)
			if c.err {
				if !errors.Is(err, ErrInvalidFilter) {
					t.Fatalf("ParseFilter(%q) = %+v, %v; want ErrInvalidFilter", c.filter, f, err)
				}
				return
			}
			if err != nil || f.Kind != c.kind {
				t.Fatalf("ParseFilter(%q) = %+v, %v", c.filter, f, err)
			}
			if c.want != nil {
				if len(f.Segs) != len(c.want) {
					t.Fatalf("ParseFilter(%q) segs = %+v, want %+v", c.filter, f.Segs, c.want)
				}
				for i := range c.want {
					if f.Segs[i].Kind != c.want[i].Kind || f.Segs[i].Text != c.want[i].Text {
						t.Fatalf("seg %d = %+v, want %+v", i, f.Segs[i], c.want[i])
					}
					if (f.Segs[i].Kind == SegRegex) != (f.Segs[i].Re != nil) {
						t.Fatalf("seg %d: Re compiled only for regex segments: %+v", i, f.Segs[i])
					}
				}
			}
			if got := c.g.RenderFilter(f); got != c.filter && c.g == mqttG {
				t.Fatalf("RenderFilter = %q, want %q", got, c.filter)
			}
			f2, err := c.g.ParseFilter(c.g.RenderFilter(f))
			if err != nil || !sameFilter(f, f2) {
				t.Fatalf("re-parse of %q = %+v, %v", c.g.RenderFilter(f), f2, err)
			}
		})
	}
}

func sameFilter(a, b Filter) bool {
	if a.Kind != b.Kind || len(a.Segs) != len(b.Segs) {
		return false
	}
	for i := range a.Segs {
		if a.Segs[i].Kind != b.Segs[i].Kind || a.Segs[i].Text != b.Segs[i].Text {
			return false
		}
	}
	return true
}

func TestFilterTranslation(t *testing.T) {
	for _, c := range []struct{ mqtt, stomp string }{
		{"sensors/k1/temp", "/topic/sensors.k1.temp"},
		{"sensors/+/temp", "/topic/sensors.*.temp"},
		{"sensors/#", "/topic/sensors.**"},
		{"v1.2/+", "/topic/v1%2E2.*"},
	} {
		t.Run(c.mqtt, func(t *testing.T) {
			f, err := mqttG.ParseFilter(c.mqtt)
			if err != nil {
				t.Fatal(err)
			}
			if got := stompG.RenderFilter(f); got != c.stomp {
				t.Fatalf("stomp rendering = %q, want %q", got, c.stomp)
			}
			f2, err := stompG.ParseFilter(c.stomp)
			if err != nil || !sameFilter(f, f2) {
				t.Fatalf("stomp %q parses to %+v, %v", c.stomp, f2, err)
			}
			if got := mqttG.RenderFilter(f2); got != c.mqtt {
				t.Fatalf("back to mqtt = %q", got)
			}
		})
	}
}

func TestPartPattern(t *testing.T) {
	c := STOMPGrammarConfig()
	c.PartPattern = `[a-z0-9-]+`
	g := mustGrammar(t, c)
	for _, ok := range []string{"/queue/orders.eu-1", "/topic/a.*.b", "/topic/a.**", "/topic/{X+}.a"} {
		if _, err := g.ParseFilter(ok); err != nil {
			t.Errorf("ParseFilter(%q): %v", ok, err)
		}
	}
	if _, err := g.ParseName("/queue/orders.eu-1"); err != nil {
		t.Errorf("ParseName: %v", err)
	}
	for _, bad := range []string{"/queue/Orders", "/queue/a..b", "/topic/a.b%2Ec"} {
		_, err := g.ParseName(bad)
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "part pattern") {
			t.Errorf("ParseName(%q) = %v; want a part pattern error", bad, err)
		}
		_, err = g.ParseFilter(bad)
		if !errors.Is(err, ErrInvalidFilter) || !strings.Contains(err.Error(), "part pattern") {
			t.Errorf("ParseFilter(%q) = %v; want a part pattern error", bad, err)
		}
	}
	c.PartPattern = "("
	if _, err := NewGrammar(c); !errors.Is(err, ErrInvalidGrammar) {
		t.Fatalf("bad part pattern: %v", err)
	}
}

func TestPrefixes(t *testing.T) {
	c := STOMPGrammarConfig()
	c.TopicPrefix = "/t/"
	c.TempTopicPrefix = "/t/tmp/" // longer prefix wins
	g := mustGrammar(t, c)
	for _, x := range []struct {
		name string
		kind Kind
		path []string
	}{
		{"/t/a.b", Topic, []string{"a", "b"}},
		{"/t/tmp/a", TempTopic, []string{"a"}},
		{"/t/tm.a", Topic, []string{"tm", "a"}},
		{"/queue/q", Queue, []string{"q"}},
	} {
		d, err := g.ParseName(x.name)
		if err != nil || d.Kind != x.kind || !slices.Equal(d.Path, x.path) {
			t.Errorf("ParseName(%q) = %+v, %v; want %s %q", x.name, d, err, x.kind, x.path)
		}
	}
	// MQTT with a queue prefix: prefixed names are queues, the rest topics.
	mc := MQTTGrammarConfig()
	mc.QueuePrefix = "queue/"
	mg := mustGrammar(t, mc)
	d, err := mg.ParseName("queue/orders/eu")
	if err != nil || d.Kind != Queue || !slices.Equal(d.Path, []string{"orders", "eu"}) {
		t.Fatalf("mqtt queue name = %+v, %v", d, err)
	}
	if got := mg.Render(d); got != "queue/orders/eu" {
		t.Fatalf("Render = %q", got)
	}
	if d, _ := mg.ParseName("queues/x"); d.Kind != Topic {
		t.Fatalf("queues/x kind = %s", d.Kind)
	}
	if _, err := mg.ParseName("queue/"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("empty queue name: %v", err)
	}
	if got := stompG.Render(d); got != "/queue/orders.eu" {
		t.Fatalf("stomp rendering of the mqtt queue = %q", got)
	}
}

// A connector may configure MQTT with "." as separator; names then translate to the default grammar.
func TestTwoMQTTGrammars(t *testing.T) {
	c := MQTTGrammarConfig()
	c.PathSeparator = "."
	dot := mustGrammar(t, c)
	d, err := dot.ParseName("a.b/c.d")
	if err != nil || !slices.Equal(d.Path, []string{"a", "b/c", "d"}) {
		t.Fatalf("ParseName = %+v, %v", d, err)
	}
	if got := mqttG.Render(d); got != "a/b/c/d" {
		t.Fatalf("slash rendering = %q (escape off: verbatim)", got)
	}
	if got := stompG.Render(d); got != "/topic/a.b/c.d" {
		t.Fatalf("stomp rendering = %q", got)
	}
	f, err := dot.ParseFilter("a.+.#")
	if err != nil {
		t.Fatal(err)
	}
	if got := mqttG.RenderFilter(f); got != "a/+/#" {
		t.Fatalf("RenderFilter = %q", got)
	}
	// Same subscription, matched by a topic published through the other grammar.
	r := New(Options{})
	s := &Subscription{Filter: f, Sink: &recSink{}}
	if err := r.Subscribe(s); err != nil {
		t.Fatal(err)
	}
	td, _ := mqttG.ParseName("a/x/y/z")
	if res := r.Match(td.Path); len(res.Subs) != 1 {
		t.Fatalf("match = %+v", res)
	}
}

func TestNewGrammarRejects(t *testing.T) {
	for name, mod := range map[string]func(*GrammarConfig){
		"empty separator":    func(c *GrammarConfig) { c.PathSeparator = "" },
		"same wildcards":     func(c *GrammarConfig) { c.AnyDescendantWildcard = c.AnyChildWildcard },
		"regex start only":   func(c *GrammarConfig) { c.RegexWildcardEnd = "" },
		"token has sep":      func(c *GrammarConfig) { c.AnyChildWildcard = "a.b" },
		"duplicate prefix":   func(c *GrammarConfig) { c.QueuePrefix = c.TopicPrefix },
		"required, none set": func(c *GrammarConfig) { *c = GrammarConfig{PathSeparator: ".", RequirePrefix: true} },
		"percent sep":        func(c *GrammarConfig) { c.PathSeparator = "%" },
	} {
		c := STOMPGrammarConfig()
		mod(&c)
		if _, err := NewGrammar(c); !errors.Is(err, ErrInvalidGrammar) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSplitComposite(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"/queue/a", []string{"/queue/a"}},
		{"/queue/a,/topic/b", []string{"/queue/a", "/topic/b"}},
		{"/topic/{a{1,2}}.x,/queue/c", []string{"/topic/{a{1,2}}.x", "/queue/c"}},
		{"/queue/a,", []string{"/queue/a", ""}},
	} {
		if got := stompG.SplitComposite(c.in); !slices.Equal(got, c.want) {
			t.Errorf("SplitComposite(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := mqttG.SplitComposite("a,b"); !slices.Equal(got, []string{"a,b"}) {
		t.Errorf("mqtt SplitComposite = %q", got)
	}
}

func TestRenderMessage(t *testing.T) {
	d, _ := mqttG.ParseName("a/b")
	m := &Message{Dest: d, Origin: "a/b", OriginGram: mqttG}
	if got := mqttG.RenderMessage(m); got != "a/b" {
		t.Fatalf("same grammar: %q", got)
	}
	if got := stompG.RenderMessage(m); got != "/topic/a.b" {
		t.Fatalf("other grammar: %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = mqttG.RenderMessage(m) }); n != 0 {
		t.Fatalf("RenderMessage with the origin grammar allocates %v", n)
	}
}

func FuzzParseNameMQTT(f *testing.F) {
	for _, s := range []string{"a", "a/b", "a//b", "/", "$SYS/x", "v1.2/x", "100%", "a+", "#", "ü/%2E"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		d, err := mqttG.ParseName(topic)
		if err != nil {
			return
		}
		if got := mqttG.Render(d); got != topic {
			t.Fatalf("mqtt round trip %q -> %q", topic, got)
		}
		mqttThroughSTOMP(t, topic)
	})
}

func FuzzParseNameSTOMP(f *testing.F) {
	for _, s := range []string{"/topic/a", "/queue/a.b", "/topic/v1%2E2.x", "/topic/a..b", "/temp-queue/x", "/dsub/%25"} {
		f.Add(s)
	}
	f.Add("/t/tmp.x")
	f.Add("/t/%74mp/x")
	c := STOMPGrammarConfig()
	c.TopicPrefix, c.TempTopicPrefix = "/t/", "/t/tmp/" // one prefix begins with another
	c.RequirePrefix, c.QueuePrefix = false, ""          // and unprefixed names are topics
	odd := mustGrammar(f, c)
	f.Fuzz(func(t *testing.T, name string) {
		for _, g := range []*Grammar{stompG, odd} {
			d, err := g.ParseName(name)
			if err != nil {
				continue
			}
			s := g.Render(d)
			d2, err := g.ParseName(s)
			if err != nil || d2.Kind != d.Kind || !slices.Equal(d2.Path, d.Path) {
				t.Fatalf("%q -> %+v -> %q -> %+v, %v", name, d, s, d2, err)
			}
			if s2 := g.Render(d2); s2 != s {
				t.Fatalf("rendering not stable: %q vs %q", s, s2)
			}
		}
	})
}

func FuzzParseFilterMQTT(f *testing.F) {
	for _, s := range []string{"a/+/b", "#", "+/#", "a/#/b", "a+", "/", "$SYS/#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		fl, err := mqttG.ParseFilter(filter)
		if err != nil {
			return
		}
		if got := mqttG.RenderFilter(fl); got != filter {
			t.Fatalf("mqtt filter round trip %q -> %q", filter, got)
		}
		s := stompG.RenderFilter(fl)
		f2, err := stompG.ParseFilter(s)
		if err != nil || !sameFilter(fl, f2) {
			t.Fatalf("mqtt %q -> stomp %q -> %+v, %v", filter, s, f2, err)
		}
		if got := mqttG.RenderFilter(f2); got != filter {
			t.Fatalf("mqtt %q -> stomp %q -> mqtt %q", filter, s, got)
		}
	})
}

func FuzzParseFilterSTOMP(f *testing.F) {
	for _, s := range []string{"/topic/a.*.b", "/topic/**", "/queue/x", "/topic/{[0-9]+}.a", "/topic/{a.b}", "/topic/{a{2}}.{b}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		fl, err := stompG.ParseFilter(filter)
		if err != nil {
			return
		}
		s := stompG.RenderFilter(fl)
		f2, err := stompG.ParseFilter(s)
		if err != nil || !sameFilter(fl, f2) {
			t.Fatalf("%q -> %q -> %+v, %v", filter, s, f2, err)
		}
	})
}

// With escaping on, a name never parses under a longer prefix of another kind.
func TestRenderAvoidsLongerPrefix(t *testing.T) {
	c := STOMPGrammarConfig()
	c.TopicPrefix = "/t/"
	c.TempTopicPrefix = "/t/tmp/"
	g := mustGrammar(t, c)
	d := Destination{Kind: Topic, Path: []string{"tmp/x", "y"}}
	s := g.Render(d)
	if s != "/t/%74mp/x.y" {
		t.Fatalf("Render = %q", s)
	}
	back, err := g.ParseName(s)
	if err != nil || back.Kind != Topic || !slices.Equal(back.Path, d.Path) {
		t.Fatalf("ParseName(%q) = %+v, %v", s, back, err)
	}
	// Unprefixed default kind: a topic that looks like a queue name.
	c = STOMPGrammarConfig()
	c.RequirePrefix = false
	c.TopicPrefix = ""
	g = mustGrammar(t, c)
	d = Destination{Kind: Topic, Path: []string{"/queue/a"}}
	s = g.Render(d)
	back, err = g.ParseName(s)
	if err != nil || back.Kind != Topic || !slices.Equal(back.Path, d.Path) {
		t.Fatalf("%q -> %q -> %+v, %v", d.Path, s, back, err)
	}
	if got := string(g.AppendRender(nil, Destination{Kind: Queue, Path: []string{"a"}})); got != "/queue/a" {
		t.Fatalf("queue rendering = %q", got)
	}
}

// Represents agrees with a round trip through Render and ParseName, for MQTT's grammar (no escaping, a
// queue prefix shadowing topic names) and STOMP's (escaping).
func TestRepresents(t *testing.T) {
	mc := MQTTGrammarConfig()
	mc.QueuePrefix = "queue/"
	mq := mustGrammar(t, mc)
	topic := func(p ...string) Destination { return Destination{Kind: Topic, Path: p} }
	for _, tc := range []struct {
		d    Destination
		mqtt bool
	}{
		{topic("sensors", "alice", "temp"), true},
		{topic("sensors", "alice/temp"), false}, // STOMP /topic/sensors.alice%2Ftemp
		{topic("a", "", "b"), true},
		{topic(""), false},
		{topic("a+b"), false},
		{topic("+"), false},
		{topic("a", "#"), false},
		{topic("v1.2", "x"), true},
		{topic("queue", "x"), false}, // would read as the queue "x"
		{topic("queu"), true},
		{topic("queue"), true},
		{topic("queue", ""), false},
		{Destination{Kind: Queue, Path: []string{"x"}}, true},
		{Destination{Kind: DurableSub, Path: []string{"x"}}, false}, // no prefix for it: read as a topic
	} {
		roundTrip := func(g *Grammar) bool {
			back, err := g.ParseName(g.Render(tc.d))
			return err == nil && back.Kind == tc.d.Kind && slices.Equal(back.Path, tc.d.Path)
		}
		if got, round := mq.Represents(tc.d), roundTrip(mq); got != tc.mqtt || got != round {
			t.Errorf("MQTT Represents(%s %q) = %v, want %v (round trip %v)", tc.d.Kind, tc.d.Path, got, tc.mqtt, round)
		}
		if got, round := stompG.Represents(tc.d), roundTrip(stompG); got != round {
			t.Errorf("STOMP Represents(%s %q) = %v, round trip %v", tc.d.Kind, tc.d.Path, got, round)
		}
	}
	if n := testing.AllocsPerRun(100, func() { mq.Represents(topic("queue", "a", "b")) }); n != 0 {
		t.Errorf("Represents allocates %v times", n)
	}
}

// DESIGN.md §2: router imports only the standard library (never protocol, conf or a logger).
func TestImportsOnlyStdlib(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("router imports %q", imp)
		}
	}
}
