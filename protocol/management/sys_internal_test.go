package management

import (
	"math"
	"testing"
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
