package store

import (
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of a Histogram's buckets: 0.1 ms to 1 s, 1-2.5-5 per decade (the
// shape of Prometheus' default buckets, from a synced commit on fast flash to a stalled disk).
var latencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second,
}

// LatencyBounds returns the upper bounds of a Histogram's buckets, ascending.
func LatencyBounds() []time.Duration { return append([]time.Duration(nil), latencyBounds[:]...) }

// Histogram is a latency distribution over fixed buckets (LatencyBounds, and one above the last bound).
// Observe is a few atomic adds and allocates nothing; it is safe for concurrent use. The zero value is
// empty and ready.
type Histogram struct {
	buckets [len(latencyBounds) + 1]atomic.Uint64
	sum     atomic.Int64 // nanoseconds
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot returns the distribution so far. The buckets are read one by one while observations may go
// on, so Sum may include an observation the counts do not yet (or the reverse); Count is always the sum
// of the buckets read.
func (h *Histogram) Snapshot() Distribution {
	d := Distribution{Bounds: LatencyBounds(), Cumulative: make([]uint64, len(latencyBounds))}
	for i := range h.buckets {
		d.Count += h.buckets[i].Load()
		if i < len(d.Cumulative) {
			d.Cumulative[i] = d.Count
		}
	}
	d.Sum = time.Duration(h.sum.Load())
	return d
}

// Distribution is a Histogram's content at one moment, in the form a Prometheus histogram takes.
type Distribution struct {
	// Bounds are the buckets' upper bounds, ascending (LatencyBounds).
	Bounds []time.Duration
	// Cumulative[i] counts the observations of at most Bounds[i] (Prometheus' "le" buckets).
	Cumulative []uint64
	// Count counts every observation, those above the last bound included (the "+Inf" bucket).
	Count uint64
	// Sum is the total of the observed durations.
	Sum time.Duration
}
