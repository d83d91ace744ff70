package stomp

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/lyremq/lyre/router"
)

func msgWith(hdrs ...string) *router.Message {
	m := &router.Message{}
	for i := 0; i+1 < len(hdrs); i += 2 {
		m.Headers = append(m.Headers, router.Header{Name: hdrs[i], Value: hdrs[i+1]})
	}
	return m
}

func TestSelector_Eval(t *testing.T) {
	m := msgWith("type", "car", "color", "blue", "price", "12.5", "qty", "3", "flag", "true", "name", "a_b%c")
	for _, tc := range []struct {
		sel  string
		want bool
	}{
		{"type = 'car'", true},
		{"type = 'bike'", false},
		{"type <> 'bike'", true},
		{"type = 'car' AND color = 'blue'", true},
		{"type = 'car' AND color = 'red'", false},
		{"type = 'bike' OR color = 'blue'", true},
		{"NOT type = 'car'", false},
		{"price > 10", true},
		{"price > 10 AND price < 12", false},
		{"price * qty >= 37.5", true},
		{"-price < 0", true},
		{"(qty + 1) / 2 = 2", true},
		{"qty BETWEEN 1 AND 3", true},
		{"qty NOT BETWEEN 1 AND 3", false},
		{"color IN ('red', 'blue')", true},
		{"color NOT IN ('red', 'blue')", false},
		{"qty IN (1, 2, 3)", true},
		{"type LIKE 'c%'", true},
		{"type LIKE '_a_'", true},
		{"type LIKE 'c_'", false},
		{"type NOT LIKE '%r'", false},
		{"name LIKE 'a\\_b\\%%' ESCAPE '\\'", true},
		{"name LIKE 'a\\_c%' ESCAPE '\\'", false},
		{"missing IS NULL", true},
		{"type IS NOT NULL", true},
		{"missing = 'x'", false},
		{"NOT missing = 'x'", false}, // unknown stays unknown under NOT
		{"missing = 'x' OR type = 'car'", true},
		{"missing = 'x' AND type = 'bike'", false},
		{"flag = TRUE", true},
		{"flag = FALSE", false},
		{"color > 5", false}, // not a number: unknown
		{"qty / 0 = 1", false},
		{"type = 'it''s'", false},
		{"1 = 1", true},
		{"1.5e1 = 15", true},
	} {
		s, err := parseSelector(tc.sel)
		if err != nil {
			t.Errorf("%q: %v", tc.sel, err)
			continue
		}
		if got := s.matches(m); got != tc.want {
			t.Errorf("%q = %v, want %v", tc.sel, got, tc.want)
		}
	}
}

func TestSelector_SyntaxErrors(t *testing.T) {
	for _, src := range []string{
		"", "type =", "type = 'x", "(a = 1", "a = 1)", "a LIKE 5", "a IN 1", "a IN ()", "a IS 5",
		"a NOT = 1", "AND", "a = 1 b", "a # 1", "a LIKE 'x' ESCAPE 'ab'", "1..2 = 1",
		strings.Repeat("(", 200) + "a = 1" + strings.Repeat(")", 200),
		strings.Repeat("NOT ", 200) + "a = 1",
	} {
		if _, err := parseSelector(src); !errors.Is(err, ErrSelector) {
			t.Errorf("%q: err = %v, want ErrSelector", src, err)
		}
	}
}

func TestSelector_NoAllocs(t *testing.T) {
	s, err := parseSelector("type = 'car' AND price * qty > 10 AND color IN ('red','blue') AND name LIKE 'a%'")
	if err != nil {
		t.Fatal(err)
	}
	m := msgWith("type", "car", "color", "blue", "price", "12.5", "qty", "3", "name", "abc")
	if n := testing.AllocsPerRun(100, func() { s.matches(m) }); n != 0 {
		t.Fatalf("%v allocs per evaluation", n)
	}
}

func FuzzSelector(f *testing.F) {
	for _, s := range []string{"type = 'car' AND price > 10", "a LIKE '%x_' ESCAPE '!'", "x IN (1,'a')", "NOT (a IS NULL) OR -b*2 <= 3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		s, err := parseSelector(src)
		if err != nil {
			if !errors.Is(err, ErrSelector) {
				t.Fatalf("error %v does not wrap ErrSelector", err)
			}
			return
		}
		s.matches(msgWith("a", "1", "b", "x", "type", "car"))
	})
}

// TestSUBSCRIBE_Selector: a subscription with a selector header receives only matching messages.
func TestSUBSCRIBE_Selector(t *testing.T) {
	b := startBroker(t, nil)
	c := b.dial(t)
	sub := subscribe(t, c, "/topic/cars", stomp.AckAuto, stomp.SubscribeOpt.Header("selector", "color = 'blue' AND price < 100"))
	pub := b.dial(t)
	for _, hdr := range [][2]string{{"red", "10"}, {"blue", "500"}, {"blue", "50"}} {
		if err := pub.Send("/topic/cars", "", []byte(hdr[0]+hdr[1]), stomp.SendOpt.Receipt,
			stomp.SendOpt.Header("color", hdr[0]), stomp.SendOpt.Header("price", hdr[1])); err != nil {
			t.Fatal(err)
		}
	}
	if m := recv(t, sub); string(m.Body) != "blue50" {
		t.Fatalf("got %q", m.Body)
	}
	expectNone(t, sub, 50*time.Millisecond)

	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:1\ndestination:/topic/cars\nselector:color = \n\n\x00")
	r.expectError("invalid selector")
}
