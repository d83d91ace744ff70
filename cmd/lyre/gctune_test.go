package main

import "testing"

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name       string
		live, rate uint64
		want       int
	}{
		// 19,000 idle connections: 45 MiB live, pings make 0.5 MiB/s: a quarter, not 45 MiB.
		{"idle connections", 45 * mib, mib / 2, gcMinPercent},
		// 5,000 idle connections: 10 MiB live, 10 s of allocation above a quarter.
		{"fewer idle connections", 10 * mib, mib / 2, 50},
		// An idle broker: the 4 MiB floor.
		{"idle broker", 2 * mib, 0, 200},
		// 200,000 idle connections: a quarter of the live heap.
		{"many idle connections", 450 * mib, mib / 2, gcMinPercent},
		// A small heap with messages churning: 64 MiB of headroom, capped at 400%.
		{"busy small heap", 10 * mib, 150 * mib, gcMaxPercent},
		{"busy medium heap", 40 * mib, 150 * mib, 160},
		// A backlog of 1 GiB being delivered: GOGC's default.
		{"busy large heap", 1024 * mib, 150 * mib, 100},
		// The same backlog at rest: a quarter.
		{"quiet large heap", 1024 * mib, mib, gcMinPercent},
		// Between: 10 s of allocation.
		{"moderate", 400 * mib, 20 * mib, 50},
		{"empty", 0, 0, gcMaxPercent},
	} {
		if got := gcPercentFor(c.live, c.rate); got != c.want {
			t.Errorf("%s: gcPercentFor(%d MiB, %d MiB/s) = %d, want %d", c.name, c.live/mib, c.rate/mib, got, c.want)
		}
	}
}
