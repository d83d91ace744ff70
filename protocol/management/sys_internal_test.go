package management

import (
	"math"
	"testing"

	"github.com/lyremq/lyre/conf"
)

// The load figures follow mosquitto's sys_tree.c: per-minute rates smoothed over 1, 5 and 15 minutes.
func TestLoadAvg(t *testing.T) {
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	var l loadAvg
	// 120 messages in the first 10 s: 720 per minute.
	l.update(120, 10)
	for i, w := range loadWindows {
		if want := 720 * (1 - math.Exp(-10/w)); !near(l[i], want) {
			t.Errorf("%s after one tick = %v, want %v", loadWindowNames[i], l[i], want)
		}
	}
	// A steady rate: every figure converges on it, the 1-minute one first.
	for range 2000 {
		l.update(100, 10) // 600 per minute
	}
	for i := range l {
		if math.Abs(l[i]-600) > 1e-6 {
			t.Errorf("%s at a steady 600/min = %v", loadWindowNames[i], l[i])
		}
	}
	// Silence: the 1-minute figure falls fastest.
	l.update(0, 60)
	if !(l[0] < l[1] && l[1] < l[2] && near(l[0], 600*math.Exp(-1))) {
		t.Errorf("after a silent minute: %v", l)
	}
}

func TestDLQMatcher(t *testing.T) {
	dm := newDLQMatcher(&conf.VirtualHost{
		Queues: []conf.QueuePolicy{{Pattern: "orders.**", DLQ: "dlq.*"}, {Pattern: "jobs", DLQ: "jobs-dead"}, {Pattern: "x"}},
		Dsubs:  []conf.QueuePolicy{{Pattern: "**", DLQ: "*.dead"}},
	})
	for _, c := range []struct {
		path []string
		want bool
	}{
		{[]string{"dlq", "orders"}, true},
		{[]string{"dlq", "orders", "eu"}, true},
		{[]string{"dlq"}, false},
		{[]string{"jobs-dead"}, true},
		{[]string{"jobs-dead", "x"}, false},
		{[]string{"$mqtt", "c1", "a", "dead"}, true},
		{[]string{"dead"}, false},
		{[]string{"orders"}, false},
	} {
		if got := dm.matches(c.path); got != c.want {
			t.Errorf("%q: %v, want %v", c.path, got, c.want)
		}
	}
}
