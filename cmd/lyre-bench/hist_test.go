package main

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestHistBucketBounds(t *testing.T) {
	values := []uint64{math.MaxUint64, math.MaxUint64 - 1, 1 << 63}
	for v := uint64(0); v < 5000; v++ {
		values = append(values, v)
	}
	for s := 6; s < 64; s++ {
		values = append(values, 1<<s-1, 1<<s, 1<<s+1)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		values = append(values, r.Uint64()>>r.IntN(64))
	}
	for _, v := range values {
		b := histBucket(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucket(%d) = %d, out of [0,%d)", v, b, histBuckets)
		}
		lo, hi := histBounds(b)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d with bounds [%d,%d]", v, b, lo, hi)
		}
		if lo > 0 && float64(hi-lo)/float64(lo) > 1.0/histSub {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its value", b, lo, hi, histSub)
		}
		if v < math.MaxUint64 && histBucket(v+1) < b {
			t.Fatalf("bucket(%d) < bucket(%d): not monotone", v+1, v)
		}
	}
	// Consecutive buckets tile the value range without gaps.
	for b := 1; b < histBuckets; b++ {
		_, prevHi := histBounds(b - 1)
		lo, _ := histBounds(b)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", b, lo, prevHi)
		}
	}
	if _, hi := histBounds(histBuckets - 1); hi != math.MaxUint64 {
		t.Fatalf("last bucket ends at %d, want MaxUint64", hi)
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	// 1..100000 µs, uniform: quantile q is q*100000 µs.
	for i := int64(1); i <= 100000; i++ {
		h.record(i * 1000)
	}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.5, 50000e3}, {0.9, 90000e3}, {0.99, 99000e3}, {0.999, 99900e3}} {
		got := float64(h.quantile(c.q))
		if got < c.want || got > c.want*(1+1.0/histSub) {
			t.Errorf("quantile(%v) = %v, want %v within +1/%d", c.q, got, c.want, histSub)
		}
	}
	if got := h.quantile(1); got != 100000e3 {
		t.Errorf("quantile(1) = %d, want the exact max", got)
	}
	if got := h.quantile(0); got != 1000 {
		t.Errorf("quantile(0) = %d, want the exact min 1000", got)
	}
	s := h.summary()
	if s.Count != 100000 || s.MinUs != 1 || s.MaxUs != 100000 || math.Abs(s.MeanUs-50000.5) > 1e-6 {
		t.Errorf("summary = %+v", s)
	}
	if s.P50Us < 50000 || s.P50Us > 50000*1.04 || s.P99Us < 99000 || s.P99Us > 100000 {
		t.Errorf("summary percentiles = %+v", s)
	}
}

func TestHistSkewed(t *testing.T) {
	var h hist
	// 990 fast deliveries and 10 slow ones: p50/p90 are fast, p99.9 is slow.
	for range 990 {
		h.record(200e3)
	}
	for range 10 {
		h.record(50e6)
	}
	if p := h.quantile(0.9); p < 200e3 || p > 200e3*(1+1.0/histSub) {
		t.Errorf("p90 = %d, want about 200µs", p)
	}
	if p := h.quantile(0.99); p > 200e3*(1+1.0/histSub) {
		t.Errorf("p99 = %d: rank 990 is still fast", p)
	}
	if p := h.quantile(0.995); p != 50e6 {
		t.Errorf("p99.5 = %d, want 50ms", p)
	}
}

func TestHistMergeAndEdges(t *testing.T) {
	var a, b, all hist
	for i := int64(0); i < 1000; i++ {
		a.record(i * 7)
		all.record(i * 7)
		b.record(i*13 + 5)
		all.record(i*13 + 5)
	}
	a.merge(&b)
	if a != all {
		t.Fatalf("merge differs from recording everything in one histogram")
	}
	var empty hist
	a.merge(&empty)
	if a != all {
		t.Fatalf("merging an empty histogram changed it")
	}
	if empty.quantile(0.5) != 0 || empty.summary() != (latencySummary{}) {
		t.Fatalf("empty histogram reports values")
	}
	var neg hist
	neg.record(-5) // wall clock stepped back: counted as zero latency
	if neg.n != 1 || neg.max != 0 || neg.quantile(0.5) != 0 {
		t.Fatalf("negative latency: %+v", neg.summary())
	}
}

func TestHistRecordDoesNotAllocate(t *testing.T) {
	var h hist
	v := int64(1)
	if n := testing.AllocsPerRun(1000, func() { h.record(v); v = v*3 + 1 }); n != 0 {
		t.Fatalf("record allocates %v times", n)
	}
}

func BenchmarkHistRecord(b *testing.B) {
	var h hist
	for i := range b.N {
		h.record(int64(i) * 1013)
	}
}
