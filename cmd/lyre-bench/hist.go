package main

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear (HDR style): values below 2*histSub are exact, and every power of two above
// that is split into histSub equal buckets, so a reported value is within 1/histSub (about 3%) of the truth.
// The bucket array has a fixed size covering every uint64, so recording never allocates nor overflows.
const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

// hist records latencies in nanoseconds. It is not safe for concurrent use: each subscriber owns one and the
// results are merged once the subscribers have stopped.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64 // float: a sum of nanoseconds overflows uint64 after ~584 years of latency, unlikely but cheap to avoid
	min    uint64
	max    uint64
}

// histBucket returns the bucket holding v.
func histBucket(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return shift<<histSubBits + int(v>>uint(shift))
}

// histBounds returns the smallest and largest value that falls into bucket b.
func histBounds(b int) (lo, hi uint64) {
	if b < 2*histSub {
		return uint64(b), uint64(b)
	}
	shift := uint(b>>histSubBits - 1)
	m := uint64(b&(histSub-1) + histSub)
	lo = m << shift
	return lo, lo + (uint64(1) << shift) - 1
}

// record adds one observation; negative values (a wall clock stepping back) count as zero.
func (h *hist) record(ns int64) {
	v := uint64(0)
	if ns > 0 {
		v = uint64(ns)
	}
	h.counts[histBucket(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// merge adds o's observations to h.
func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the value at quantile q (0..1): the upper bound of the bucket holding the observation of
// rank ceil(q*n), clamped into [min, max] so that p0 and p100 are the exact extremes. It is 0 for an empty histogram.
func (h *hist) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := histBounds(b)
			return min(max(hi, h.min), h.max)
		}
	}
	return h.max
}

// latencySummary is the report's view of a histogram, in microseconds.
type latencySummary struct {
	Count  uint64  `json:"count"`
	MinUs  float64 `json:"min_us"`
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
}

func (h *hist) summary() latencySummary {
	us := func(ns uint64) float64 { return float64(ns) / float64(time.Microsecond) }
	s := latencySummary{Count: h.n}
	if h.n == 0 {
		return s
	}
	s.MinUs = us(h.min)
	s.MeanUs = h.sum / float64(h.n) / float64(time.Microsecond)
	s.P50Us = us(h.quantile(0.50))
	s.P90Us = us(h.quantile(0.90))
	s.P99Us = us(h.quantile(0.99))
	s.P999Us = us(h.quantile(0.999))
	s.MaxUs = us(h.max)
	return s
}
