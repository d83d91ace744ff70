package store_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/store"
)

// A duration equal to a bound counts in that bucket (Prometheus' "le"); one above the last bound counts
// only in Count.
func TestHistogramBuckets(t *testing.T) {
	var h store.Histogram
	bounds := store.LatencyBounds()
	if len(bounds) != 13 || bounds[0] != 100*time.Microsecond || bounds[12] != time.Second {
		t.Fatalf("bounds %v", bounds)
	}
	for _, d := range []time.Duration{0, 100 * time.Microsecond, 100*time.Microsecond + 1, 3 * time.Millisecond, time.Second, 2 * time.Second} {
		h.Observe(d)
	}
	got := h.Snapshot()
	want := []uint64{2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5}
	if !slices.Equal(got.Cumulative, want) || got.Count != 6 || !slices.Equal(got.Bounds, bounds) {
		t.Fatalf("snapshot %+v, want cumulative %v and count 6", got, want)
	}
	if wantSum := 200*time.Microsecond + 1 + 3*time.Millisecond + 3*time.Second; got.Sum != wantSum {
		t.Fatalf("sum %v, want %v", got.Sum, wantSum)
	}
	got.Bounds[0] = time.Hour
	if store.LatencyBounds()[0] != 100*time.Microsecond {
		t.Fatal("a snapshot shares the bounds")
	}
}

func TestHistogramObserveAllocatesNothing(t *testing.T) {
	var h store.Histogram
	if n := testing.AllocsPerRun(100, func() { h.Observe(7 * time.Millisecond) }); n != 0 {
		t.Fatalf("Observe allocates %v times", n)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h store.Histogram
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				h.Observe(time.Duration(g*1000+i) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if s := h.Snapshot(); s.Count != 4000 || s.Cumulative[len(s.Cumulative)-1] != 1001 {
		t.Fatalf("%+v", s)
	}
}
