package cluster

import (
	"slices"
	"strings"
	"testing"

	"github.com/lyremq/lyre/router"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, l := range []string{"", "a", "k.1", "*", ">", "~", "~7E", "a b", "\x00", "é", "$SYS", "A-z_9"} {
		tok := string(appendToken(nil, l))
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") && tok != "*" {
			t.Errorf("level %q: token %q is not a plain NATS token", l, tok)
		}
		got, err := decodeToken(tok)
		if err != nil || got != l {
			t.Errorf("level %q: token %q decodes to %q, %v", l, tok, got, err)
		}
	}
	for _, bad := range []string{"", "~4", "~41", "~zz", "a.b", "~7e", "*"} {
		if _, err := decodeToken(bad); err == nil {
			t.Errorf("decodeToken(%q) accepted it", bad)
		}
	}
}

func TestSubjects(t *testing.T) {
	p := topicPrefix("v.1")
	if p != "lyre.v~2E1.t." {
		t.Fatalf("prefix %q", p)
	}
	subj := topicSubject(p, []string{"a", "", "b c"})
	if subj != "lyre.v~2E1.t.a.~.b~20c" {
		t.Fatalf("subject %q", subj)
	}
	tok, path, err := parseTopicSubject(subj)
	if err != nil || tok != "v~2E1" || !slices.Equal(path, []string{"a", "", "b c"}) {
		t.Fatalf("parse: %q %q %v", tok, path, err)
	}
	re := router.Seg{Kind: router.SegRegex, Text: "x.*"}
	for _, c := range []struct {
		f    router.Filter
		want []string
	}{
		{lit("a", "+", "c"), []string{p + "a.*.c"}},
		{lit("#"), []string{p + ">"}},
		{lit("a", "#"), []string{p + "a", p + "a.>"}},
		{router.Filter{Kind: router.Topic, Segs: []router.Seg{{Text: "a"}, re}}, []string{p + "a.*"}},
	} {
		if got := filterSubjects(p, c.f); !slices.Equal(got, c.want) {
			t.Errorf("filter %+v: %q, want %q", c.f, got, c.want)
		}
	}
}
