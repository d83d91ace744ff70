package router

import (
	"slices"
	"testing"
)

func TestKeyRoundTripAndUnambiguous(t *testing.T) {
	dests := []Destination{
		{Kind: Topic, Path: []string{"a", "b"}},
		{Kind: Topic, Path: []string{"a\x00b"}}, // one segment holding a NUL is not two segments
		{Kind: Topic, Path: []string{"a", "", "b"}},
		{Kind: Queue, Path: []string{"a", "b"}},
		{Kind: DurableSub, Path: []string{"$mqtt", "dev/1", "p/#"}},
		{Kind: TempTopic, Path: []string{string(make([]byte, 300))}},
	}
	seen := map[string]Destination{}
	for _, d := range dests {
		k := Key(d)
		if prev, dup := seen[k]; dup {
			t.Fatalf("%v and %v share key %q", prev, d, k)
		}
		seen[k] = d
		back, ok := ParseKey(k)
		if !ok || back.Kind != d.Kind || !slices.Equal(back.Path, d.Path) {
			t.Fatalf("ParseKey(Key(%v)) = %v, %v", d, back, ok)
		}
	}
	for _, bad := range []string{"", "\x09", "\x00\x05ab"} {
		if _, ok := ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestFilterKeyRoundTrip(t *testing.T) {
	for _, text := range []string{"/topic/a.*.{b+}.**", "/queue/x", "/topic/a.%2A"} {
		f := mustFilter(t, stompG, text)
		back, err := ParseFilterKey(FilterKey(f))
		if err != nil {
			t.Fatal(err)
		}
		if got := stompG.RenderFilter(back); got != text {
			t.Errorf("round trip of %q gives %q", text, got)
		}
		for i, s := range back.Segs {
			if s.Kind == SegRegex && s.Re == nil {
				t.Errorf("%q: segment %d not compiled", text, i)
			}
		}
	}
	// A literal '*' segment and the one-level wildcard differ.
	lit := Filter{Kind: Topic, Segs: []Seg{{Kind: SegLiteral, Text: "*"}}}
	one := Filter{Kind: Topic, Segs: []Seg{{Kind: SegOne, Text: "*"}}}
	if FilterKey(lit) == FilterKey(one) {
		t.Fatal("a literal and a wildcard segment share a filter key")
	}
	if _, err := ParseFilterKey("\x00\x07\x01a"); err == nil {
		t.Error("an unknown segment kind was accepted")
	}
}

func TestMatchAllocatesNothing(t *testing.T) {
	f := mustFilter(t, mqttG, "a/+/c/#")
	path := []string{"a", "b", "c", "d"}
	if n := testing.AllocsPerRun(100, func() { f.Match(path) }); n != 0 {
		t.Fatalf("Filter.Match allocates %v times", n)
	}
}

// The MQTT rules of one filter against one topic name, through the MQTT grammar.
func TestMatchSegmentsMQTT(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true}, // [MQTT-4.7.1-2]
		{"a/#", "a/b/c", true},
		{"#", "$SYS/x", false}, // [MQTT-4.7.2-1]
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"+", "", true},
		{"a/+/c", "a//c", true},
		{"a/b", "a/b/c", false},
	}
	for _, c := range cases {
		f := mustFilter(t, mqttG, c.filter)
		d, err := mqttG.ParseName(c.topic)
		if err != nil {
			// "" is not a valid topic name; build its one-empty-segment destination by hand.
			d = Destination{Kind: Topic, Path: []string{""}}
		}
		if got := f.Matches(d); got != c.want {
			t.Errorf("%q ~ %q = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}
