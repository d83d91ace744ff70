package main

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1}, 5},
		{[]float64{-1, 10, 0}, 0},
	} {
		in := append([]float64(nil), c.in...)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slicesEqual(in, c.in) {
			t.Errorf("median reordered its argument: %v, was %v", c.in, in)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSaturated(t *testing.T) {
	for _, c := range []struct {
		offered, achieved float64
		lost              uint64
		want              bool
	}{
		{80000, 80000, 0, false},
		{80000, 79990, 0, false}, // the steady window's edges cost a little
		{80000, 76000, 0, false}, // exactly 95%
		{80000, 75999, 0, true},
		{80000, 80000, 1, true}, // loss is saturation, whatever the rate
		{5000, 0, 0, true},
	} {
		if got := saturated(c.offered, c.achieved, c.lost); got != c.want {
			t.Errorf("saturated(%v, %v, %d) = %v, want %v", c.offered, c.achieved, c.lost, got, c.want)
		}
	}
}

func TestFormatFigures(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{
		{0, "0.00"}, {9.5, "9.50"}, {14.7, "14.7"}, {950, "950"}, {999.4, "999"}, {999.6, "1.00k"},
		{12345, "12.3k"}, {184234, "184k"}, {999_700, "1.00M"}, {1_940_000, "1.94M"}, {math.NaN(), "—"},
	} {
		if got := fmtCount(c.v); got != c.want {
			t.Errorf("fmtCount(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	for _, c := range []struct {
		a, b float64
		want string
	}{
		{156e3, 46.1e3, "3.38"}, {1, 4, "0.25"}, {6.46, 2610, "0.0025"}, {0, 5, "0.00"}, {1, 0, "—"},
		{math.NaN(), 1, "—"}, {1, math.NaN(), "—"},
	} {
		if got := fmtRatio(c.a, c.b); got != c.want {
			t.Errorf("fmtRatio(%v, %v) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
	if got := fmtKiB(0.634); got != "0.63 KiB" {
		t.Errorf("fmtKiB = %q", got)
	}
	for in, want := range map[string]string{
		`password = "$2a$10$CAo.EVsATq0nR1OS2oFO2uCw.mCG9zfj.O/gSoE4402shMTG1HKw6"`: "bcrypt, cost 10",
		"bench:$7$101$iXQ32jQIozc0E85m$aHSbYQunyF3GKJ0OUVrYoK1DSP89HfZNrn==":        "PBKDF2-SHA512, 101 iterations",
		"bench:$6$c2FsdA==$aGFzaA==": "salted SHA-512",
		"bench:plain":                "unknown hash",
	} {
		if got := describeHash(in); got != want {
			t.Errorf("describeHash(%q) = %q, want %q", in, got, want)
		}
	}
}

// The table pads columns by characters, not bytes (→, µ and ≤ are several bytes), left-aligns the first
// and right-aligns the others.
func TestMarkdownTable(t *testing.T) {
	tb := &mdTable{header: []string{"run", "Lyre", "mosquitto", "ratio", "goal"}}
	tb.add("QoS 1 fan-in 8→1", "156k, 0 lost", "46.1k, 0 lost", "3.38", "0 lost ✓")
	tb.add("p50", "412µs", "—", "—", "")
	var b bytes.Buffer
	tb.write(&b)
	want := "" +
		"| run              |         Lyre |     mosquitto | ratio |     goal |\n" +
		"| ---------------- | -----------: | ------------: | ----: | -------: |\n" +
		"| QoS 1 fan-in 8→1 | 156k, 0 lost | 46.1k, 0 lost |  3.38 | 0 lost ✓ |\n" +
		"| p50              |        412µs |             — |     — |          |\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestParsePeer(t *testing.T) {
	for _, c := range []struct {
		in   string
		want peerSpec
	}{
		{"rabbitmq=127.0.0.1:61620,guest,guest", peerSpec{name: "rabbitmq", addr: "127.0.0.1:61620", login: "guest", passcode: "guest", vhost: "/"}},
		{"activemq=127.0.0.1:61621", peerSpec{name: "activemq", addr: "127.0.0.1:61621", vhost: "/"}},
		{"amq=127.0.0.1:31613,admin,admin,vhost=localhost,mqtt=127.0.0.1:31613",
			peerSpec{name: "amq", addr: "127.0.0.1:31613", login: "admin", passcode: "admin", vhost: "localhost", mqtt: "127.0.0.1:31613"}},
		{"x=h:1,mqtt=h:2", peerSpec{name: "x", addr: "h:1", vhost: "/", mqtt: "h:2"}},
	} {
		got, err := parsePeer(c.in)
		if err != nil || got != c.want {
			t.Errorf("parsePeer(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "rabbit", "=h:1", "r=", "r=h:1,guest", "r=h:1,a,b,c", "r=h:1,port=2", "r=vhost=/"} {
		if _, err := parsePeer(in); !errors.Is(err, errUsage) {
			t.Errorf("parsePeer(%q): %v, want a usage error", in, err)
		}
	}
}

func TestCurveLevels(t *testing.T) {
	var got []float64
	for i := range 10 {
		got = append(got, curveLevel(i))
	}
	want := []float64{5e3, 10e3, 20e3, 40e3, 80e3, 120e3, 160e3, 200e3, 240e3, 280e3}
	if !slicesEqual(got, want) {
		t.Errorf("levels %v, want %v", got, want)
	}
	// The medians of three runs decide, and any loss saturates.
	runs := []outcome{{Rate: 79000, P50: 300, P99: 900, P999: 2000}, {Rate: 70000, P50: 500}, {Rate: 78000, P50: 400}}
	p := curvePointOf(80e3, runs)
	if p.saturated || p.achieved != 78000 || p.p50 != 400 || p.err || !p.ran {
		t.Errorf("point %+v", p)
	}
	runs[2].Rate = 60000
	if p := curvePointOf(80e3, runs); !p.saturated || p.achieved != 70000 {
		t.Errorf("two slow runs of three: %+v, want saturated at 70000", p)
	}
	runs[2].Rate, runs[1].Lost = 78000, 1
	if p := curvePointOf(80e3, runs); !p.saturated {
		t.Errorf("a lost message: %+v, want saturated", p)
	}
	runs[1].Err = "boom"
	if p := curvePointOf(80e3, runs); !p.err {
		t.Errorf("a failed run: %+v, want err", p)
	}
}

// A goal relative to the STOMP peers is not judged when no peer ran, and judged against each that did.
func TestJudgeStompPeerGoal(t *testing.T) {
	m := metric{goal: "≥ 10× each STOMP peer", met: atLeastTimes(10, 2), peersFrom: 2}
	nan := math.NaN()
	for _, c := range []struct {
		medians []float64
		want    string
	}{
		{[]float64{500e3, nan}, "≥ 10× each STOMP peer (no peer in this run)"},
		{[]float64{500e3, nan, nan}, "≥ 10× each STOMP peer (no peer in this run)"},
		{[]float64{500e3, nan, 11e3}, "≥ 10× each STOMP peer ✓"},
		{[]float64{500e3, nan, 11e3, 60e3}, "≥ 10× each STOMP peer ✗"},
		{[]float64{nan, nan, 11e3}, "≥ 10× each STOMP peer"},
	} {
		if got := m.judge(c.medians, nil); got != c.want {
			t.Errorf("judge(%v) = %q, want %q", c.medians, got, c.want)
		}
	}
}
