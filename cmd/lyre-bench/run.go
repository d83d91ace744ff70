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
	pubDrv, subDrv := newDrivers(c)
	id := runID()
	ctl := newControl()
	topicOf := func(drv driver, i int) string {
		if c.mode == "pairs" {
			return drv.topic(c.topic, id, "pair", strconv.Itoa(i))
		}
		return drv.topic(c.topic, id, c.mode)
	}
	subTopic := func(i int) string { return topicOf(subDrv, i) }

	subs := make([]client, c.subs)
	subStat := make([]*subStats, c.subs)
	stopSubs := func() {
		for _, s := range subs {
			if s != nil {
				s.stop()
			}
		}
	}
	err := dialAll(ctx, c.subs, func(ctx context.Context, i int) error {
		st := &subStats{next: make([]uint64, c.pubs)}
		cl, err := subDrv.dialSubscriber(ctx, fmt.Sprintf("lb-%s-s%d", id, i), &subSpec{filter: subTopic(i), qos: byte(c.qos), coalesce: c.coalesce}, st)
		if err != nil {
			return err
		}
		subs[i], subStat[i] = cl, st
		return nil
	})
	if err != nil {
		stopSubs()
		return nil, err
	}
	log.Debug("subscribed", zap.Int("subs", c.subs), zap.String("topic", subTopic(0)))
	stalled, err := dialStalled(ctx, c, id, subTopic)
	if err != nil {
		stopSubs()
		return nil, err
	}
	defer func() {
		for _, sc := range stalled {
			sc.close()
		}
	}()

	pubs := make([]client, c.pubs)
	pubStat := make([]pubStats, c.pubs)
	err = dialAll(ctx, c.pubs, func(ctx context.Context, i int) error {
		spec := &pubSpec{index: i, topic: topicOf(pubDrv, i), qos: byte(c.qos), size: c.size, count: c.count,
			rate: c.rate, inflight: c.inflight, drain: c.drain, ctl: ctl}
		cl, err := pubDrv.dialPublisher(ctx, fmt.Sprintf("lb-%s-p%d", id, i), spec, &pubStat[i])
		if err != nil {
			return err
		}
		pubs[i] = cl
		return nil
	})
	if err != nil {
		for _, p := range pubs {
			if p != nil {
				p.stop()
			}
		}
		stopSubs()
		return nil, err
	}
	log.Debug("publishers connected", zap.Int("pubs", c.pubs))

	var errs errList
	var subWG, pubWG sync.WaitGroup
	for _, s := range subs {
		subWG.Go(func() {
			if err := s.run(); err != nil {
				errs.add(fmt.Errorf("subscriber: %w", err))
			}
		})
	}
	pubStart := time.Now()
	for _, p := range pubs {
		pubWG.Go(func() {
			if err := p.run(); err != nil && !ctl.interrupted.Load() {
				errs.add(fmt.Errorf("publisher: %w", err))
			}
		})
	}
	pubsDone := make(chan struct{})
	go func() { pubWG.Wait(); close(pubsDone) }()

	// On Ctrl-C publishers send nothing more and get a second to collect their acknowledgements before
	// their connections are closed under them; then subscribers get a short drain, so that the partial
	// figures count what was already on its way.
	interrupted := false
	interrupt := func() {
		interrupted = true
		ctl.stopPublishing()
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-pubsDone:
		case <-t.C:
			ctl.interrupt()
			for _, p := range pubs {
				p.stop()
			}
			<-pubsDone
		}
	}
	var durationC <-chan time.Time
	warmup := c.warmup
	if c.duration > 0 {
		t := time.NewTimer(c.duration)
		defer t.Stop()
		durationC = t.C
		warmup = min(warmup, c.duration/5)
	}

	sumSent := func() (n uint64) {
		for i := range pubStat {
			n += pubStat[i].sent.Load()
		}
		return n
	}
	sumRecv := func() (n uint64) {
		for _, s := range subStat {
			n += s.received.Load()
		}
		return n
	}

	// Sample the counters: the steady window runs from the first sample after the warm-up to the
	// last sample taken while publishers were still running.
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var winStart, winEnd time.Time
	var winRecv0, winRecv1 uint64
	lastPrint, lastSent, lastRecv := pubStart, uint64(0), uint64(0)
	var pubEnd time.Time
sampling:
	for {
		select {
		case <-ctx.Done():
			interrupt()
			pubEnd = time.Now()
			break sampling
		case <-durationC:
			ctl.stopPublishing()
		case <-pubsDone:
			pubEnd = time.Now()
			break sampling
		case now := <-ticker.C:
			recv := sumRecv()
			if now.Sub(pubStart) >= warmup {
				if winStart.IsZero() {
					winStart, winRecv0 = now, recv
				}
				winEnd, winRecv1 = now, recv
			}
			if progress != nil && now.Sub(lastPrint) >= time.Second {
				sent, dt := sumSent(), now.Sub(lastPrint).Seconds()
				fmt.Fprintf(progress, "%6.1fs  sent %10.0f msg/s  received %10.0f msg/s\n",
					now.Sub(pubStart).Seconds(), float64(sent-lastSent)/dt, float64(recv-lastRecv)/dt)
				lastPrint, lastSent, lastRecv = now, sent, recv
			}
		}
	}
	sent := sumSent()
	var expected uint64
	for i := range pubStat {
		if c.subs == 0 {
			break // producers only: nothing is expected anywhere
		}
		if c.mode == "pairs" || c.mode == "queue" {
			expected += pubStat[i].sent.Load() // each message goes to one subscriber
		} else {
			expected += pubStat[i].sent.Load() * uint64(c.subs)
		}
	}

	// Drain: wait until everything arrived, nothing arrived for a while, or the drain time ran out.
	// The idle limit ends the wait early when messages were lost, but must outlast a broker's pauses:
	// ActiveMQ stops delivering for seconds while it pages a slow topic subscriber's backlog to disk.
	drainFor, idleFor, done := c.drain, min(5*time.Second, c.drain/2), ctx.Done()
	if interrupted {
		drainFor, idleFor, done = time.Second, 200*time.Millisecond, nil
	}
	deadline := time.Now().Add(drainFor)
	lastRecv, lastChange := sumRecv(), time.Now()
drain:
	for lastRecv < expected && time.Now().Before(deadline) && time.Since(lastChange) < idleFor {
		select {
		case <-done:
			interrupted = true
			break drain
		case <-time.After(20 * time.Millisecond):
		}
		if r := sumRecv(); r != lastRecv {
			lastRecv, lastChange = r, time.Now()
		}
	}
	stopSubs()
	subsDone := make(chan struct{})
	go func() { subWG.Wait(); close(subsDone) }()
	select {
	case <-subsDone:
	case <-time.After(2 * c.timeout): // stop gives each subscriber c.timeout to write its DISCONNECT
		return nil, errors.New("lyre-bench: subscribers did not stop")
	}

	r := &result{Proto: c.proto, Mode: c.mode, Addr: c.addr, QoS: c.qos, GrantedQoS: 2, Pubs: c.pubs, Subs: c.subs,
		Size: c.size, Rate: c.rate, Sent: sent, Expected: expected, Interrupted: interrupted}
	if c.proto == "stomp" || c.mode == "mqtt2stomp" {
		r.Ack, r.Prefetch = c.ack, c.prefetch
	}
	if c.proto == "stomp" {
		r.QoS, r.GrantedQoS, r.Persistent, r.ReceiptEvery = 0, 0, c.persistent, c.receiptEvery
	}
	r.PublishSeconds = pubEnd.Sub(pubStart).Seconds()
	if r.PublishSeconds > 0 {
		r.SendRate = float64(sent) / r.PublishSeconds
	}
	var unexpected uint64
	for i := range pubStat {
		r.Acked += pubStat[i].acked.Load()
		unexpected += pubStat[i].unexpected.Load()
	}
	if unexpected > 0 {
		errs.add(fmt.Errorf("%d acknowledgements for packets not in flight", unexpected))
	}
	var lat hist
	var bytes uint64
	var last int64
	for _, s := range subStat {
		last = max(last, s.last)
		r.Received += s.received.Load()
		r.OutOfOrder += s.outOfOrder
		r.Foreign += s.foreign
		r.GrantedQoS = min(r.GrantedQoS, s.granted)
		bytes += s.bytes
		lat.merge(&s.lat)
	}
	// A sequence number lower than one already seen is a duplicate (redelivery) for a topic subscriber.
	// A queue consumer may also see a legitimate reordering (ActiveMQ re-dispatches this way with
	// cumulative client acks) while each message still arrives exactly once, so a queue's loss is counted.
	inOrder := r.Received - r.OutOfOrder
	if c.mode == "queue" {
		inOrder = r.Received
	}
	if inOrder < expected {
		r.Lost = expected - inOrder
	}
	r.Latency = lat.summary()
	if w := winEnd.Sub(winStart); w >= 500*time.Millisecond {
		r.WindowSeconds = w.Seconds()
		r.RecvRate = float64(winRecv1-winRecv0) / r.WindowSeconds
	} else if last > pubStart.UnixNano() {
		// Too short for a steady window (a small -count): use first publish to last delivery.
		r.WindowSeconds = time.Duration(last - pubStart.UnixNano()).Seconds()
		r.RecvRate = float64(r.Received) / r.WindowSeconds
	}
	if r.Received > 0 {
		r.RecvMBps = r.RecvRate * float64(bytes) / float64(r.Received) / 1e6
	}
	if r.reliable() && r.Lost > 0 && !r.Interrupted {
		errs.add(fmt.Errorf("lost %d messages", r.Lost))
	}
	if r.GrantedQoS < r.QoS {
		log.Warn("broker granted a lower QoS", zap.Int("requested", r.QoS), zap.Int("granted", r.GrantedQoS))
	}
	r.Errors = errs.list()
	return r, nil
}
