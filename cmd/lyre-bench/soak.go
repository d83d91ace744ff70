package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
)

// A soak run (-mode soak) keeps well-behaved QoS 1 traffic flowing (the fanin clients: -pubs publishers at
// -rate to -subs subscribers, every message counted) while -storms storms each open -conns connections at
// once, hold them for -hold and close them, -pause apart. Half of a storm's connections behave (MQTT 3.1.1,
// MQTT 5, MQTT over WebSocket and STOMP clients that send themselves stormMsgs QoS 1 messages and count
// them back); the other half misbehave (see stormKind: silent TCP, slowloris CONNECTs, garbage, subscribers
// that never read, half-open peers, resets). The broker is sampled every second (-pid: its RSS and open
// files from /proc; -metrics: goroutines and connections from its Prometheus endpoint). After the storms
// the run waits up to -recover for the broker to come back to the baseline it measured at the end of the
// -warmup. The run fails when a well-behaved message is lost, a well-behaved client fails, a silent,
// slowloris, garbage or half-open connection is still open reapWait after it connected, or the broker
// does not come back.

// Recovery tolerances: after the storms the broker counts as back at its baseline once its goroutines
// are within max(goroutineSlack, 10%) of the baseline's, its connections within connSlack, and its RSS
// within max(rssSlackKiB, 25%).
const (
	goroutineSlack = 20
	connSlack      = 2
	rssSlackKiB    = 32 << 10
)

// soakResult is the outcome of a soak run.
type soakResult struct {
	Addr            string          `json:"addr"`
	Storms          int             `json:"storms"`
	ConnsPerStorm   int             `json:"conns_per_storm"`
	HoldSeconds     float64         `json:"hold_seconds"`
	DurationSeconds float64         `json:"duration_seconds"`
	Kinds           []stormKindFigs `json:"storm_kinds"`
	Traffic         *result         `json:"traffic"`
	Baseline        brokerSample    `json:"baseline"`
	Peak            brokerSample    `json:"peak"`
	Final           brokerSample    `json:"final"`
	Recovered       bool            `json:"recovered"`
	RecoverSeconds  float64         `json:"recover_seconds"`
	Samples         []brokerSample  `json:"samples"`
	Interrupted     bool            `json:"interrupted"`
	Errors          []string        `json:"errors,omitempty"`
	// Misbehaving clients' own failures (a refused connection, say): the broker defending itself, not
	// a failure of the run.
	Notes []string `json:"notes,omitempty"`
}

// stormKindFigs are the totals of one kind of storm connection over every storm.
type stormKindFigs struct {
	Kind     string  `json:"kind"`
	Good     bool    `json:"well_behaved"`
	Opened   uint64  `json:"opened"`
	Failed   uint64  `json:"failed"`
	Sent     uint64  `json:"sent,omitempty"`
	Received uint64  `json:"received,omitempty"`
	Reaped   uint64  `json:"reaped_by_broker,omitempty"`
	ReapMax  float64 `json:"reap_max_seconds,omitempty"`
}

// soak runs a soak (see above). An error means the traffic could not start.
func soak(ctx context.Context, c *config, progress io.Writer, log *zap.Logger) (*soakResult, error) {
	tc := *c
	tc.mode, tc.duration, tc.count = "fanin", 0, 0 // the traffic runs until the storms are over
	b := newBenchRun(&tc, log)
	if err := b.dial(ctx); err != nil {
		return nil, err
	}
	defer b.closeStalled()
	b.start()
	sampled := make(chan struct{})
	go func() { b.sample(ctx, nil); close(sampled) }()

	r := &soakResult{Addr: c.addr, Storms: c.storms, ConnsPerStorm: c.conns, HoldSeconds: c.hold.Seconds()}
	mon := &soakMonitor{probe: newBrokerProbe(c.pid, c.metricsURL), start: time.Now(), progress: progress, traffic: b.sumRecv}
	defer mon.probe.close()
	monCtx, stopMon := context.WithCancel(ctx)
	monDone := make(chan struct{})
	go func() { mon.run(monCtx); close(monDone) }()

	st := newStorm(c, b.id, b.subTopic(0))
	r.storms(ctx, c, st, mon)
	stopMon()
	<-monDone

	b.ctl.stopPublishing()
	<-sampled
	sent, expected := b.sumSent(), b.expected()
	b.drain(ctx, expected)
	if err := b.stopSubscribers(); err != nil {
		return nil, err
	}
	b.discardSessions(ctx)
	r.Traffic = b.result(sent, expected)
	r.finish(st, mon, ctx.Err() != nil || b.interrupted)
	return r, nil
}

// storms runs the warm-up, the storms and the recovery, telling the monitor the phase.
func (r *soakResult) storms(ctx context.Context, c *config, st *storm, mon *soakMonitor) {
	mon.setPhase("warm-up")
	if !waitUntil(ctx, time.Now().Add(c.warmup)) {
		return
	}
	r.Baseline = mon.last()
	for i := range c.storms {
		mon.setPhase(fmt.Sprintf("storm %d", i+1))
		st.run(ctx, i, c.conns, c.hold)
		mon.setPhase("pause")
		if !waitUntil(ctx, time.Now().Add(c.pause)) {
			return
		}
	}
	mon.setPhase("recovery")
	start := time.Now()
	for !r.Baseline.near(mon.last()) && time.Since(start) < c.recover && waitUntil(ctx, time.Now().Add(time.Second)) {
	}
	r.Recovered = r.Baseline.near(mon.last())
	r.RecoverSeconds = time.Since(start).Seconds()
	mon.setPhase("done")
}

// near reports whether s is within the recovery tolerances of baseline b. Figures not sampled pass.
func (b brokerSample) near(s brokerSample) bool {
	within := func(v, base, slack int64) bool { return v < 0 || base < 0 || v <= base+slack }
	return within(s.Goroutines, b.Goroutines, max(goroutineSlack, b.Goroutines/10)) &&
		within(s.Conns, b.Conns, connSlack) &&
		within(s.RSSKiB, b.RSSKiB, max(rssSlackKiB, b.RSSKiB/4))
}

// soakMonitor samples the broker every second while the soak runs, and prints a progress line each time.
type soakMonitor struct {
	probe    *brokerProbe
	start    time.Time
	progress io.Writer     // nil: no progress lines
	traffic  func() uint64 // the traffic's received total
	mu       sync.Mutex    // guards what follows
	phase    string
	samples  []brokerSample
	errs     []string
}

func (m *soakMonitor) setPhase(p string) {
	m.mu.Lock()
	m.phase = p
	m.mu.Unlock()
}

// run samples the broker every second until ctx ends.
func (m *soakMonitor) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastRecv, lastAt := m.traffic(), time.Now()
	for {
		s, err := m.probe.sample(ctx)
		now, recv := time.Now(), m.traffic()
		m.mu.Lock()
		s.AtSeconds, s.Phase = now.Sub(m.start).Seconds(), m.phase
		if err != nil && ctx.Err() == nil && len(m.errs) < 10 {
			m.errs = append(m.errs, fmt.Sprintf("sampling the broker: %v", err))
		}
		m.samples = append(m.samples, s)
		m.mu.Unlock()
		if m.progress != nil {
			rate := float64(recv-lastRecv) / now.Sub(lastAt).Seconds()
			fmt.Fprintf(m.progress, "%6.1fs  %-9s  %s  traffic %6.0f msg/s\n", s.AtSeconds, s.Phase, s.describe(), rate)
		}
		lastRecv, lastAt = recv, now
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// last returns the latest sample.
func (m *soakMonitor) last() brokerSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) == 0 {
		return unsampled()
	}
	return m.samples[len(m.samples)-1]
}

// finish fills in the totals once every client has stopped.
func (r *soakResult) finish(st *storm, mon *soakMonitor, interrupted bool) {
	r.DurationSeconds = time.Since(mon.start).Seconds()
	r.Interrupted = interrupted
	for k := range numStormKinds {
		t := &st.tally[k]
		r.Kinds = append(r.Kinds, stormKindFigs{Kind: k.String(), Good: int(k) < numGood, Opened: t.opened.Load(),
			Failed: t.failed.Load(), Sent: t.sent.Load(), Received: t.received.Load(), Reaped: t.reaped.Load(),
			ReapMax: time.Duration(t.reapMax.Load()).Seconds()})
	}
	r.Errors = append(mon.errs, st.errs.list()...)
	r.Notes = st.badErrs.list()
	r.Samples = mon.samples
	r.Peak = unsampled()
	r.Peak.Phase = "peak"
	for _, s := range r.Samples {
		r.Peak.RSSKiB, r.Peak.Goroutines = max(r.Peak.RSSKiB, s.RSSKiB), max(r.Peak.Goroutines, s.Goroutines)
		r.Peak.HeapKiB = max(r.Peak.HeapKiB, s.HeapKiB)
		r.Peak.Conns, r.Peak.OpenFDs = max(r.Peak.Conns, s.Conns), max(r.Peak.OpenFDs, s.OpenFDs)
		r.Peak.BenchFDs = max(r.Peak.BenchFDs, s.BenchFDs)
	}
	r.Final = mon.last()
}

// unreaped counts the misbehaving connections the broker should have closed within reapWait but did not.
func (r *soakResult) unreaped() (n uint64) {
	for i, k := range r.Kinds {
		if stormKind(i).reaping() {
			n += k.Opened - k.Reaped
		}
	}
	return n
}

// stormTotals sums the well-behaved storm clients' messages and failures.
func (r *soakResult) stormTotals() (sent, received, failed uint64) {
	for _, k := range r.Kinds {
		if k.Good {
			sent, received, failed = sent+k.Sent, received+k.Received, failed+k.Failed
		}
	}
	return sent, received, failed
}

// failed reports a lost well-behaved message, a failed well-behaved client, a broker that did not come
// back to its baseline, or errors.
func (r *soakResult) failed() bool {
	sent, received, failedGood := r.stormTotals()
	return r.Traffic == nil || r.Traffic.failed() || sent != received || failedGood > 0 || !r.Recovered ||
		r.unreaped() > 0 || len(r.Errors) > 0
}

func (r *soakResult) print(w io.Writer) {
	fmt.Fprintf(w, "soak  %d storms of %d connections (held %.0fs), %.1fs in all  addr %s\n",
		r.Storms, r.ConnsPerStorm, r.HoldSeconds, r.DurationSeconds, r.Addr)
	if r.Interrupted {
		fmt.Fprintln(w, "  INTERRUPTED: partial results")
	}
	if t := r.Traffic; t != nil {
		session := "clean sessions"
		if t.KeepSession {
			session = "persistent sessions"
		}
		fmt.Fprintf(w, "  traffic    MQTT QoS %d, %d publishers -> %d subscribers (%s): sent %d (%d acknowledged), received %d of %d, lost %d\n",
			t.QoS, t.Pubs, t.Subs, session, t.Sent, t.Acked, t.Received, t.Expected, t.Lost)
	}
	sent, received, _ := r.stormTotals()
	fmt.Fprintf(w, "  storms     well-behaved clients' QoS 1 messages: sent %d, received %d, lost %d\n", sent, received, sent-received)
	fmt.Fprintf(w, "  %-12s %8s %7s %6s %8s %7s %9s\n", "kind", "opened", "failed", "sent", "received", "reaped", "reap max")
	for _, k := range r.Kinds {
		reap := ""
		if !k.Good {
			reap = fmt.Sprintf("%7d %8.1fs", k.Reaped, k.ReapMax)
		}
		fmt.Fprintf(w, "  %-12s %8d %7d %6d %8d %s\n", k.Kind, k.Opened, k.Failed, k.Sent, k.Received, reap)
	}
	if n := r.unreaped(); n > 0 {
		fmt.Fprintf(w, "  NOT REAPED %d misbehaving connections still open %v after they connected\n", n, reapWait)
	}
	fmt.Fprintf(w, "  broker     baseline  %s\n", r.Baseline.describe())
	fmt.Fprintf(w, "             peak      %s\n", r.Peak.describe())
	back := fmt.Sprintf("back at the baseline after %.0fs", r.RecoverSeconds)
	if !r.Recovered {
		back = fmt.Sprintf("NOT back at the baseline after %.0fs", r.RecoverSeconds)
	}
	fmt.Fprintf(w, "             final     %s  (%s)\n", r.Final.describe(), back)
	errs := r.Errors
	if r.Traffic != nil {
		errs = append(append([]string(nil), r.Traffic.Errors...), errs...)
	}
	for _, e := range errs {
		fmt.Fprintf(w, "  error      %s\n", e)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note       %s\n", n)
	}
}
