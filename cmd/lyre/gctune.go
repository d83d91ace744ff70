package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The garbage collector's headroom. With GOGC's default of 100 the heap grows to twice the live heap
// before each collection, which fits neither end of a broker's life. Tens of thousands of idle
// connections are a large live heap that changes slowly (keep-alive pings make a little garbage): doubling
// it turns an idle connection's 2 KiB into 4 KiB of RSS, for collections that would be rare anyway. A few
// busy connections are a small live heap through which messages churn: a headroom of a few MiB means a
// collection every few milliseconds. So the headroom follows the allocation rate:
//   - rate × gcSpan, but at least a quarter of the live heap and at most all of it (GOGC's 100, so a
//     large heap under heavy churn, a backlog being delivered, costs what it costs by default);
//   - and at least rate × 1 s, within gcMinHeadroom..gcMaxHeadroom, so a small busy heap collects at
//     most about once a second's allocation, and an idle one keeps gcMinHeadroom.
//
// GOGC (gcMinPercent..gcMaxPercent) is recomputed every gcTuneEvery from the runtime's metrics. A GOGC or
// GOMEMLIMIT set in the environment turns this off: the operator's choice stands.
const (
	gcMinHeadroom = 4 << 20
	gcMaxHeadroom = 64 << 20
	gcSpan        = 10 // seconds of allocation the headroom holds, within live/4..live
	gcMinPercent  = 25
	gcMaxPercent  = 400
	gcTuneEvery   = time.Second
)

// gcPercentFor returns the GOGC for a live heap of live bytes allocating rate bytes a second.
func gcPercentFor(live, rate uint64) int {
	live = max(live, 1)
	headroom := min(max(rate*gcSpan, live/4), live)
	headroom = max(headroom, min(max(rate, gcMinHeadroom), gcMaxHeadroom))
	return int(min(max(headroom*100/live, gcMinPercent), gcMaxPercent))
}

// tuneGC adjusts GOGC every gcTuneEvery until stop is closed, unless the environment sets GOGC or
// GOMEMLIMIT. It runs for the process (main), not for run's tests. The rate rises at once and decays by
// half a tick, so a burst of traffic widens the headroom before its first collections, and a pause
// does not make it swing back and forth.
func tuneGC(stop <-chan struct{}) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	var allocs, rate uint64
	set := 0
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 && sample[1].Value.Kind() == metrics.KindUint64 {
			a := sample[1].Value.Uint64()
			if allocs != 0 {
				rate = max((a-allocs)*uint64(time.Second/gcTuneEvery), rate/2)
			}
			allocs = a
			if pct := gcPercentFor(sample[0].Value.Uint64(), rate); pct != set {
				debug.SetGCPercent(pct)
				set = pct
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
