package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// dialWorkers bounds concurrent connection attempts, so that thousands of connections do not hit the
// broker's accept backlog all at once.
const dialWorkers = 16

// runID makes the topics and client identifiers of this run unique on a shared broker.
func runID() string {
	// 40 bits in base 36 is at most 8 characters, which keeps client identifiers within the 23 characters
	// every MQTT 3.1.1 server must accept [MQTT-3.1.3-5] up to 99999 connections of one kind.
	return strconv.FormatUint((uint64(time.Now().UnixNano())^uint64(os.Getpid())<<24)&(1<<40-1), 36)
}

// errList collects errors from many goroutines, keeping the first few.
type errList struct {
	mu   sync.Mutex
	errs []string
	more int
}

func (e *errList) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) < 10 {
		e.errs = append(e.errs, err.Error())
	} else {
		e.more++
	}
}

func (e *errList) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := append([]string(nil), e.errs...)
	if e.more > 0 {
		l = append(l, fmt.Sprintf("and %d more errors", e.more))
	}
	return l
}

// dialAll runs dial(i) for i in [0, n) on up to dialWorkers goroutines and returns the first error; after an
// error no new dial starts.
func dialAll(ctx context.Context, n int, dial func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(n, dialWorkers); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := dial(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// bench runs a fanin, fanout or pairs benchmark. progress gets a line per second unless nil. An error means
// the run could not start; failures during the run are listed in the result.
func bench(ctx context.Context, c *config, progress io.Writer, log *zap.Logger) (*result, error) {
	b := newBenchRun(c, log)
	if err := b.dial(ctx); err != nil {
		return nil, err
	}
	defer b.closeStalled()
	if c.subWait > 0 {
		// Subscriptions on one node of a cluster reach the others' after a while; what is published before
		// is not routed to them.
		select {
		case <-time.After(c.subWait):
		case <-ctx.Done():
		}
	}
	b.start()
	b.sample(ctx, progress)
	sent, expected := b.sumSent(), b.expected()
	b.drain(ctx, expected)
	if err := b.stopSubscribers(); err != nil {
		return nil, err
	}
	b.discardSessions(ctx)
	return b.result(sent, expected), nil
}

// benchRun is one run of bench: its clients, their counters and what was measured. Its fields belong to
// bench's goroutine, except errs and the clients' counters, which the clients' goroutines update.
type benchRun struct {
	c      *config
	log    *zap.Logger
	id     string // runID
	pubDrv driver
	subDrv driver
	// pubDrvs and subDrvs are the drivers of each -pub-addr and -sub-addr: client i uses [i % len].
	pubDrvs []driver
	subDrvs []driver
	ctl     *control

	subs    []client
	subStat []*subStats
	stalled []*mqttConn
	pubs    []client
	pubStat []pubStats

	errs     errList
	subWG    sync.WaitGroup
	pubWG    sync.WaitGroup
	pubsDone chan struct{} // closed when every publisher's run has returned

	pubStart    time.Time
	pubEnd      time.Time
	win         steadyWindow
	interrupted bool // by Ctrl-C: the result is partial
}

func newBenchRun(c *config, log *zap.Logger) *benchRun {
	pubDrv, subDrv := newDrivers(c)
	pubDrvs, subDrvs := []driver{pubDrv}, []driver{subDrv}
	if c.spread() {
		pubDrvs, subDrvs = addrDrivers(c, c.pubAddrs, false), addrDrivers(c, c.subAddrs, true)
	}
	return &benchRun{c: c, log: log, id: runID(), pubDrv: pubDrv, subDrv: subDrv, pubDrvs: pubDrvs, subDrvs: subDrvs, ctl: newControl(),
		subs: make([]client, c.subs), subStat: make([]*subStats, c.subs),
		pubs: make([]client, c.pubs), pubStat: make([]pubStats, c.pubs)}
}

// topic returns the topic of publisher or subscriber i in drv's syntax: its pair's in pairs mode, else the
// run's one topic.
func (b *benchRun) topic(drv driver, i int) string {
	if b.c.mode == "pairs" {
		return drv.topic(b.c.topic, b.id, "pair", strconv.Itoa(i))
	}
	return drv.topic(b.c.topic, b.id, b.c.mode)
}

func (b *benchRun) subTopic(i int) string { return b.topic(b.subDrv, i) }

// dial connects the subscribers, then the stalled subscribers, then the publishers, so that every
// subscription is in place before anything is published. On error it stops what it connected.
func (b *benchRun) dial(ctx context.Context) error {
	if err := b.dialSubscribers(ctx); err != nil {
		stopAll(b.subs)
		return err
	}
	b.log.Debug("subscribed", zap.Int("subs", b.c.subs), zap.String("topic", b.subTopic(0)))
	stalled, err := dialStalled(ctx, b.c, b.id, b.subTopic)
	if err != nil {
		stopAll(b.subs)
		return err
	}
	b.stalled = stalled
	if err := b.dialPublishers(ctx); err != nil {
		stopAll(b.pubs)
		stopAll(b.subs)
		b.closeStalled()
		return err
	}
	b.log.Debug("publishers connected", zap.Int("pubs", b.c.pubs))
	return nil
}

func (b *benchRun) dialSubscribers(ctx context.Context) error {
	c := b.c
	return dialAll(ctx, c.subs, func(ctx context.Context, i int) error {
		st := &subStats{next: make([]uint64, c.pubs)}
		cl, err := b.subDrvs[i%len(b.subDrvs)].dialSubscriber(ctx, fmt.Sprintf("lb-%s-s%d", b.id, i), &subSpec{filter: b.subTopic(i), qos: byte(c.qos), coalesce: c.coalesce}, st)
		if err != nil {
			return err
		}
		b.subs[i], b.subStat[i] = cl, st
		return nil
	})
}

func (b *benchRun) dialPublishers(ctx context.Context) error {
	c := b.c
	return dialAll(ctx, c.pubs, func(ctx context.Context, i int) error {
		spec := &pubSpec{index: i, topic: b.topic(b.pubDrv, i), qos: byte(c.qos), size: c.size, count: c.count,
			rate: c.rate, inflight: c.inflight, drain: c.drain, ctl: b.ctl}
		cl, err := b.pubDrvs[i%len(b.pubDrvs)].dialPublisher(ctx, fmt.Sprintf("lb-%s-p%d", b.id, i), spec, &b.pubStat[i])
		if err != nil {
			return err
		}
		b.pubs[i] = cl
		return nil
	})
}

// stopAll stops the clients that were connected; the others are nil.
func stopAll(clients []client) {
	for _, cl := range clients {
		if cl != nil {
			cl.stop()
		}
	}
}

func (b *benchRun) closeStalled() {
	for _, sc := range b.stalled {
		sc.close()
	}
}

// start runs every subscriber and then every publisher on a goroutine of its own.
func (b *benchRun) start() {
	for _, s := range b.subs {
		b.subWG.Go(func() {
			if err := s.run(); err != nil {
				b.errs.add(fmt.Errorf("subscriber: %w", err))
			}
		})
	}
	b.pubStart = time.Now()
	for _, p := range b.pubs {
		b.pubWG.Go(func() {
			if err := p.run(); err != nil && !b.ctl.interrupted.Load() {
				b.errs.add(fmt.Errorf("publisher: %w", err))
			}
		})
	}
	b.pubsDone = make(chan struct{})
	go func() { b.pubWG.Wait(); close(b.pubsDone) }()
}

// sample follows the run until the publishers are done or ctx ends (Ctrl-C). It stops the publishers after
// -duration, measures the steady window and prints the progress.
func (b *benchRun) sample(ctx context.Context, progress io.Writer) {
	var durationC <-chan time.Time
	warmup := b.c.warmup
	if b.c.duration > 0 {
		t := time.NewTimer(b.c.duration)
		defer t.Stop()
		durationC = t.C
		warmup = min(warmup, b.c.duration/5)
	}

	// Sample the counters: the steady window runs from the first sample after the warm-up to the
	// last sample taken while publishers were still running.
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	pl := progressLine{w: progress, last: b.pubStart}
	for {
		select {
		case <-ctx.Done():
			b.interrupt()
			b.pubEnd = time.Now()
			return
		case <-durationC:
			b.ctl.stopPublishing()
		case <-b.pubsDone:
			b.pubEnd = time.Now()
			return
		case now := <-ticker.C:
			recv := b.sumRecv()
			if now.Sub(b.pubStart) >= warmup {
				b.win.extend(now, recv)
			}
			b.printProgress(&pl, now, recv)
		}
	}
}

// interrupt ends publishing on Ctrl-C. Publishers send nothing more and get a second to collect their
// acknowledgements before their connections are closed under them; then subscribers get a short drain,
// so that the partial figures count what was already on its way.
func (b *benchRun) interrupt() {
	b.interrupted = true
	b.ctl.stopPublishing()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-b.pubsDone:
	case <-t.C:
		b.ctl.interrupt()
		stopAll(b.pubs)
		<-b.pubsDone
	}
}

// steadyWindow is where the received rate is measured, with the subscribers' received total at either end.
type steadyWindow struct {
	start, end   time.Time
	recv0, recv1 uint64
}

// extend ends the window at a sample taken at now; the first sample also starts it.
func (w *steadyWindow) extend(now time.Time, recv uint64) {
	if w.start.IsZero() {
		w.start, w.recv0 = now, recv
	}
	w.end, w.recv1 = now, recv
}

// progressLine remembers the latest progress line, whose rates are since the one before.
type progressLine struct {
	w          io.Writer // nil: no progress lines
	last       time.Time
	sent, recv uint64
}

// printProgress prints a progress line when a second has passed since the latest.
func (b *benchRun) printProgress(pl *progressLine, now time.Time, recv uint64) {
	if pl.w == nil || now.Sub(pl.last) < time.Second {
		return
	}
	sent, dt := b.sumSent(), now.Sub(pl.last).Seconds()
	fmt.Fprintf(pl.w, "%6.1fs  sent %10.0f msg/s  received %10.0f msg/s\n",
		now.Sub(b.pubStart).Seconds(), float64(sent-pl.sent)/dt, float64(recv-pl.recv)/dt)
	pl.last, pl.sent, pl.recv = now, sent, recv
}

func (b *benchRun) sumSent() (n uint64) {
	for i := range b.pubStat {
		n += b.pubStat[i].sent.Load()
	}
	return n
}

func (b *benchRun) sumRecv() (n uint64) {
	for _, s := range b.subStat {
		n += s.received.Load()
	}
	return n
}

// expected returns how many deliveries the messages sent so far make.
func (b *benchRun) expected() uint64 {
	var expected uint64
	for i := range b.pubStat {
		if b.c.subs == 0 {
			break // producers only: nothing is expected anywhere
		}
		if b.c.mode == "pairs" || b.c.mode == "queue" {
			expected += b.pubStat[i].sent.Load() // each message goes to one subscriber
		} else {
			expected += b.pubStat[i].sent.Load() * uint64(b.c.subs)
		}
	}
	return expected
}

// drain waits until everything arrived, nothing arrived for a while, or the drain time ran out.
// The idle limit ends the wait early when messages were lost, but must outlast a broker's pauses:
// ActiveMQ stops delivering for seconds while it pages a slow topic subscriber's backlog to disk.
func (b *benchRun) drain(ctx context.Context, expected uint64) {
	drainFor, idleFor, done := b.c.drain, min(5*time.Second, b.c.drain/2), ctx.Done()
	if b.interrupted {
		drainFor, idleFor, done = time.Second, 200*time.Millisecond, nil
	}
	deadline := time.Now().Add(drainFor)
	lastRecv, lastChange := b.sumRecv(), time.Now()
	for lastRecv < expected && time.Now().Before(deadline) && time.Since(lastChange) < idleFor {
		select {
		case <-done:
			b.interrupted = true
			return
		case <-time.After(20 * time.Millisecond):
		}
		if r := b.sumRecv(); r != lastRecv {
			lastRecv, lastChange = r, time.Now()
		}
	}
}

// discardSessions ends the sessions -keep-session subscribers leave on the broker.
func (b *benchRun) discardSessions(ctx context.Context) {
	if !b.c.keepSession {
		return
	}
	for i := range b.c.subs {
		d, ok := b.subDrvs[i%len(b.subDrvs)].(*mqttDriver)
		if !ok {
			return
		}
		if err := d.discardSession(ctx, fmt.Sprintf("lb-%s-s%d", b.id, i)); err != nil {
			b.errs.add(fmt.Errorf("discarding subscriber %d's session: %w", i, err))
		}
	}
}

// stopSubscribers stops the subscribers and waits for them to return.
func (b *benchRun) stopSubscribers() error {
	stopAll(b.subs)
	subsDone := make(chan struct{})
	go func() { b.subWG.Wait(); close(subsDone) }()
	select {
	case <-subsDone:
		return nil
	case <-time.After(2 * b.c.timeout): // stop gives each subscriber c.timeout to write its DISCONNECT
		return errors.New("lyre-bench: subscribers did not stop")
	}
}
