package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Payload layout shared by every protocol: send time, then publisher number and sequence.
const (
	payloadHeader = 16
	seqBits       = 40
	seqMask       = 1<<seqBits - 1
	maxPubs       = 1 << (64 - seqBits)
)

// dialWorkers bounds concurrent connection attempts, so that thousands of connections do not hit the
// broker's accept backlog all at once.
const dialWorkers = 16

var (
	errStopped = errors.New("lyre-bench: stopped")
	errUsage   = errors.New("lyre-bench: bad usage")
)

// config is the parsed command line.
type config struct {
	stalled   int
	proto     string
	mode      string
	addr      string
	qos       int
	pubs      int
	subs      int
	size      int
	duration  time.Duration
	count     uint64
	rate      float64
	topic     string
	inflight  int
	conns     int
	pid       int
	user      string
	pass      string
	keepAlive time.Duration
	timeout   time.Duration
	drain     time.Duration
	warmup    time.Duration
	settle    time.Duration
	coalesce  time.Duration
	cpuProf   string
	json      bool
	// STOMP
	stompAddr    string
	login        string
	passcode     string
	vhost        string
	destPrefix   string
	ack          string
	ackEvery     int
	prefetch     int
	persistent   bool
	receiptEvery int
	// producersOnly: an explicit -subs 0 in queue mode
	producersOnly bool
	quiet         bool
	verbose       bool
}

func parseFlags(args []string, out io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("lyre-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.proto, "proto", "mqtt", "protocol: mqtt or stomp (-mode mqtt2stomp uses both)")
	fs.StringVar(&c.mode, "mode", "fanin", "fanin | fanout | pairs | queue (STOMP) | mqtt2stomp | idle (MQTT)")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:1883", "broker address host:port")
	fs.IntVar(&c.qos, "qos", 0, "QoS of publications and subscriptions: 0, 1 or 2")
	fs.IntVar(&c.pubs, "pubs", 0, "publishers (0 = mode default: fanin 8, fanout 1, pairs 8)")
	fs.IntVar(&c.subs, "subs", 0, "subscribers (0 = mode default: fanin 1, fanout 8, pairs = -pubs, queue 4; an explicit -subs 0 in queue mode: producers only)")
	fs.IntVar(&c.size, "size", 64, "payload bytes, at least 16 (send time + sequence)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "publishing time (idle: how long to hold the connections)")
	fs.Uint64Var(&c.count, "count", 0, "messages per publisher; when set without -duration, no time limit")
	fs.Float64Var(&c.rate, "rate", 0, "messages per second per publisher (0 = as fast as possible)")
	fs.StringVar(&c.topic, "topic", "lyre-bench", "topic prefix")
	fs.IntVar(&c.inflight, "inflight", 64, "MQTT QoS 1/2: unacknowledged messages per publisher; STOMP: outstanding receipts per producer")
	fs.IntVar(&c.stalled, "stalled", 0, "MQTT: extra subscribers to the same topic(s) that never read after SUBACK (a slow-subscriber run)")
	fs.IntVar(&c.conns, "conns", 1000, "idle: connections to open")
	fs.IntVar(&c.pid, "pid", 0, "idle: broker process whose VmRSS to sample before and after connecting")
	fs.StringVar(&c.user, "user", "", "user name for CONNECT")
	fs.StringVar(&c.pass, "pass", "", "password for CONNECT (needs -user)")
	fs.DurationVar(&c.keepAlive, "keepalive", 30*time.Second, "keep-alive announced in CONNECT; pings every half of it")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "dial + CONNECT/CONNACK + SUBSCRIBE/SUBACK timeout")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "after publishing: longest wait for acknowledgements and deliveries")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "start of the steady window after the first publish")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "idle: wait after the last CONNACK before sampling RSS")
	fs.DurationVar(&c.coalesce, "coalesce", time.Millisecond, "QoS 0 subscribers without -rate: pause this long after small back-to-back reads, to read in batches (0 = off)")
	fs.StringVar(&c.stompAddr, "stomp-addr", "", "mqtt2stomp: the STOMP subscribers' address, when the broker has separate ports (default: -addr)")
	fs.StringVar(&c.login, "login", "", "STOMP login (default: -user)")
	fs.StringVar(&c.passcode, "passcode", "", "STOMP passcode (default: -pass)")
	fs.StringVar(&c.vhost, "vhost", "", "STOMP CONNECT host header, the virtual host (default: the host of -addr; RabbitMQ wants /)")
	fs.StringVar(&c.destPrefix, "dest-prefix", "", "STOMP destination prefix (default: /queue/ in -mode queue, else /topic/); topic levels are joined with '.'")
	fs.StringVar(&c.ack, "ack", "", "STOMP subscribers' ack mode: auto, client or client-individual (default: client-individual in -mode queue, else auto)")
	fs.IntVar(&c.ackEvery, "ack-every", 100, "STOMP -ack client: one cumulative ACK per this many messages")
	fs.IntVar(&c.prefetch, "prefetch", 0, "STOMP consumer window, sent as credit, prefetch-count and activemq.prefetchSize (0 = broker default)")
	fs.BoolVar(&c.persistent, "persistent", false, "STOMP SEND with persistent:true")
	fs.IntVar(&c.receiptEvery, "receipt-every", 0, "STOMP: ask a receipt every this many SENDs, with -inflight receipts outstanding at most (0 = none)")
	fs.StringVar(&c.cpuProf, "cpuprofile", "", "write lyre-bench's own CPU profile to this file")
	fs.BoolVar(&c.json, "json", false, "print the result as JSON")
	fs.BoolVar(&c.quiet, "q", false, "no per-second progress on stderr")
	fs.BoolVar(&c.verbose, "v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.producersOnly = set["subs"] && c.subs == 0 && c.mode == "queue"
	if c.count > 0 && !set["duration"] {
		c.duration = 0
	}
	err := c.normalize()
	if err == nil && (c.rate > 0 || c.qos > 0 || c.ack != ackAuto) && !set["coalesce"] {
		// A paced run measures latency: add none. At QoS >= 1 or with STOMP client acks the broker's
		// window of unacknowledged deliveries (mosquitto: 20) would stall while a subscriber waits to read.
		c.coalesce = 0
	}
	return c, err
}

// normalize applies the mode defaults and rejects impossible combinations.
func (c *config) normalize() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
	}
	switch c.proto {
	case "mqtt", "stomp":
	default:
		return bad("-proto %q: want mqtt or stomp", c.proto)
	}
	if err := c.normalizeSTOMP(); err != nil {
		return err
	}
	switch c.mode {
	case "fanin", "mqtt2stomp":
		c.pubs, c.subs = orDefault(c.pubs, 8), orDefault(c.subs, 1)
	case "queue":
		c.pubs, c.subs = orDefault(c.pubs, 4), orDefault(c.subs, 4)
		if c.producersOnly {
			c.subs = 0 // measures the producers' side alone, e.g. persistent SENDs; messages stay queued
		}
	case "fanout":
		c.pubs, c.subs = orDefault(c.pubs, 1), orDefault(c.subs, 8)
	case "pairs":
		c.pubs = orDefault(c.pubs, 8)
		if c.subs != 0 && c.subs != c.pubs {
			return bad("-mode pairs needs -subs equal to -pubs (or unset)")
		}
		c.subs = c.pubs
	case "idle":
		if c.proto != "mqtt" {
			return bad("-mode idle is MQTT only")
		}
		if c.conns < 1 {
			return bad("-conns must be at least 1")
		}
		if c.pid < 0 {
			return bad("-pid must be a process id")
		}
		return nil
	default:
		return bad("-mode %q: want fanin, fanout, pairs, queue, mqtt2stomp or idle", c.mode)
	}
	switch {
	case c.qos < 0 || c.qos > 2:
		return bad("-qos %d: want 0, 1 or 2", c.qos)
	case c.pubs < 1 || c.pubs >= maxPubs:
		return bad("-pubs %d out of range", c.pubs)
	case c.subs < 1 && !c.producersOnly:
		return bad("-subs %d out of range", c.subs)
	case c.size < payloadHeader || c.size > mqttMaxRemaining-len(c.topic)-64:
		return bad("-size %d: want %d to %d bytes", c.size, payloadHeader, mqttMaxRemaining-len(c.topic)-64)
	case c.inflight < 1 || c.inflight > 65535:
		return bad("-inflight %d: want 1 to 65535", c.inflight)
	case c.rate < 0:
		return bad("-rate must not be negative")
	case c.count == 0 && c.duration <= 0:
		return bad("set -duration or -count")
	case c.count > seqMask:
		return bad("-count over %d", uint64(seqMask))
	}
	return nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// client is one benchmark connection of any protocol. run blocks until the role is done: a publisher when it
// has sent its messages and got them acknowledged, a subscriber after stop. stop ends run early.
type client interface {
	run() error
	stop()
}

// idleConn is a connection that only keeps itself alive.
type idleConn interface {
	sendPing(deadline time.Time) error
	awaitPong(deadline time.Time) error
	close() error
}

// driver opens connections of one protocol.
type driver interface {
	topic(parts ...string) string
	dialPublisher(ctx context.Context, clientID string, spec *pubSpec, st *pubStats) (client, error)
	dialSubscriber(ctx context.Context, clientID string, spec *subSpec, st *subStats) (client, error)
	dialIdle(ctx context.Context, clientID string) (idleConn, error)
}

func newDriver(c *config) driver {
	if c.proto == "stomp" {
		return newSTOMPDriver(c)
	}
	return &mqttDriver{opt: mqttOptions{
		addr: c.addr, user: c.user, pass: c.pass, keepAlive: c.keepAlive, timeout: c.timeout,
		maxPacket: max(c.size+1024, 1<<20),
	}}
}

// newDrivers returns the publishers' and the subscribers' drivers: one protocol, or for mqtt2stomp MQTT
// publishers and STOMP subscribers on the same broker address.
func newDrivers(c *config) (pub, sub driver) {
	if c.mode == "mqtt2stomp" {
		mc := *c
		mc.proto = "mqtt"
		return newDriver(&mc), newSTOMPDriver(c)
	}
	d := newDriver(c)
	return d, d
}

// control is shared by all publishers of a run.
type control struct {
	stop        atomic.Bool   // publishers send no further message
	stopCh      chan struct{} // closed when stop is set
	stopOnce    sync.Once
	interrupted atomic.Bool   // Ctrl-C: connections are being closed under the clients
	interruptCh chan struct{} // closed when interrupted is set
	intOnce     sync.Once
}

func newControl() *control {
	return &control{stopCh: make(chan struct{}), interruptCh: make(chan struct{})}
}

func (c *control) stopPublishing() {
	c.stopOnce.Do(func() { c.stop.Store(true); close(c.stopCh) })
}

func (c *control) interrupt() {
	c.intOnce.Do(func() { c.interrupted.Store(true); close(c.interruptCh) })
	c.stopPublishing()
}

// pubSpec says what one publisher sends.
type pubSpec struct {
	index    int // carried in every payload's tag
	topic    string
	qos      byte
	size     int
	count    uint64  // messages to send; 0 = until ctl.stop
	rate     float64 // messages per second; 0 = unlimited
	inflight int
	drain    time.Duration // longest wait for the last acknowledgements
	ctl      *control
}

// pubStats are one publisher's counters, read by the progress sampler while it runs.
type pubStats struct {
	sent       atomic.Uint64
	acked      atomic.Uint64 // PUBACK at QoS 1, PUBCOMP at QoS 2
	unexpected atomic.Uint64 // acknowledgements for identifiers not in flight
	_          [40]byte      // keep publishers' counters on separate cache lines
}

// subSpec says what one subscriber subscribes to.
type subSpec struct {
	filter string
	qos    byte
	// coalesce: after a small read that closely followed the previous one, wait this long before
	// reading again (0 = never). It trades up to that much latency for far fewer system calls when a
	// broker streams packets one write at a time.
	coalesce time.Duration
}

// subStats are one subscriber's results. Only received is read while the subscriber runs; the other fields
// belong to its goroutine until run returns.
type subStats struct {
	received   atomic.Uint64
	_          [56]byte
	granted    int
	bytes      uint64
	outOfOrder uint64   // tag sequence lower than one already seen from that publisher
	foreign    uint64   // payload without a valid tag (not from this run)
	next       []uint64 // per publisher: next expected sequence number
	last       int64    // Unix nanoseconds of the latest delivery
	lat        hist
}

// observe accounts one delivered payload received at now (Unix nanoseconds). It does not allocate.
func (s *subStats) observe(payload []byte, now int64) {
	if len(payload) < payloadHeader {
		s.foreign++
		return
	}
	sent := int64(binary.BigEndian.Uint64(payload))
	tag := binary.BigEndian.Uint64(payload[8:])
	pub, seq := tag>>seqBits, tag&seqMask
	if pub >= uint64(len(s.next)) {
		s.foreign++
		return
	}
	if seq < s.next[pub] {
		s.outOfOrder++
	} else {
		s.next[pub] = seq + 1
	}
	s.lat.record(now - sent)
	s.bytes += uint64(len(payload))
	s.last = now
	s.received.Add(1)
}

// result is the outcome of a fanin, fanout or pairs run.
type result struct {
	Proto          string         `json:"proto"`
	Mode           string         `json:"mode"`
	Addr           string         `json:"addr"`
	QoS            int            `json:"qos"`
	GrantedQoS     int            `json:"granted_qos"`
	Pubs           int            `json:"pubs"`
	Subs           int            `json:"subs"`
	Size           int            `json:"size"`
	Ack            string         `json:"ack,omitempty"`
	Prefetch       int            `json:"prefetch,omitempty"`
	Persistent     bool           `json:"persistent,omitempty"`
	ReceiptEvery   int            `json:"receipt_every,omitempty"`
	Rate           float64        `json:"rate_per_pub"`
	PublishSeconds float64        `json:"publish_seconds"`
	Sent           uint64         `json:"sent"`
	Acked          uint64         `json:"acked"`
	SendRate       float64        `json:"sent_per_sec"`
	Expected       uint64         `json:"expected"`
	Received       uint64         `json:"received"`
	Lost           uint64         `json:"lost"`
	OutOfOrder     uint64         `json:"out_of_order"`
	Foreign        uint64         `json:"foreign"`
	WindowSeconds  float64        `json:"window_seconds"`
	RecvRate       float64        `json:"received_per_sec"`
	RecvMBps       float64        `json:"received_mb_per_sec"`
	Latency        latencySummary `json:"latency"`
	Interrupted    bool           `json:"interrupted"`
	Errors         []string       `json:"errors,omitempty"`
}

// failed reports whether the run should exit non-zero: errors, or any loss at QoS >= 1.
func (r *result) failed() bool { return len(r.Errors) > 0 || (r.reliable() && r.Lost > 0) }

// reliable says whether the run's messages must all arrive: MQTT at QoS >= 1 to MQTT subscribers, and STOMP
// queues. Topic subscribers may lose messages when they fall behind (brokers drop rather than block).
func (r *result) reliable() bool {
	return r.QoS > 0 && r.Mode != "mqtt2stomp" || r.Mode == "queue"
}

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

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "%s %s  ", r.Proto, r.Mode)
	switch {
	case r.Mode == "mqtt2stomp":
		fmt.Fprintf(w, "qos %d  ", r.QoS) // of the publishers; STOMP subscribers have none
	case r.Proto != "stomp":
		fmt.Fprintf(w, "qos %d (granted %d)  ", r.QoS, r.GrantedQoS)
	}
	if r.Ack != "" {
		fmt.Fprintf(w, "ack %s  ", r.Ack)
	}
	if r.Prefetch > 0 {
		fmt.Fprintf(w, "prefetch %d  ", r.Prefetch)
	}
	if r.Persistent {
		fmt.Fprint(w, "persistent  ")
	}
	if r.ReceiptEvery > 0 {
		fmt.Fprintf(w, "receipt every %d  ", r.ReceiptEvery)
	}
	fmt.Fprintf(w, "pubs %d  subs %d  size %d B  addr %s\n", r.Pubs, r.Subs, r.Size, r.Addr)
	if r.Interrupted {
		fmt.Fprintln(w, "  INTERRUPTED: partial results")
	}
	fmt.Fprintf(w, "  sent       %d msgs in %.2fs (%.0f msg/s)", r.Sent, r.PublishSeconds, r.SendRate)
	if r.QoS > 0 || r.ReceiptEvery > 0 {
		fmt.Fprintf(w, ", %d acknowledged", r.Acked)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  received   %d of %d expected, lost %d, out of order %d", r.Received, r.Expected, r.Lost, r.OutOfOrder)
	if r.Foreign > 0 {
		fmt.Fprintf(w, ", foreign %d", r.Foreign)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  throughput %.0f msg/s received, %.2f MB/s payload (steady window %.2fs)\n",
		r.RecvRate, r.RecvMBps, r.WindowSeconds)
	l := r.Latency
	fmt.Fprintf(w, "  latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s\n",
		fmtUs(l.P50Us), fmtUs(l.P90Us), fmtUs(l.P99Us), fmtUs(l.P999Us), fmtUs(l.MaxUs), fmtUs(l.MeanUs))
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error      %s\n", e)
	}
}

func fmtUs(us float64) string {
	switch {
	case us >= 1e6:
		return strconv.FormatFloat(us/1e6, 'f', 2, 64) + "s"
	case us >= 1e3:
		return strconv.FormatFloat(us/1e3, 'f', 2, 64) + "ms"
	default:
		return strconv.FormatFloat(us, 'f', 0, 64) + "µs"
	}
}

func newLogger(verbose bool) *zap.Logger {
	cfg := zap.NewDevelopmentConfig()
	cfg.DisableStacktrace = true
	cfg.DisableCaller = true
	cfg.EncoderConfig.TimeKey = ""
	cfg.OutputPaths = []string{"stderr"}
	if !verbose {
		cfg.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	}
	log, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return log
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// exitCode is 130 after Ctrl-C, as a shell reports for SIGINT, else 1.
func exitCode(ctx context.Context) int {
	if ctx.Err() != nil {
		return 130
	}
	return 1
}

func realMain(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintln(stderr, err)
		}
		return 2
	}
	log := newLogger(c.verbose)
	defer log.Sync()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	// After the first Ctrl-C the signal handler is removed, so a second one kills a stuck run.
	context.AfterFunc(ctx, cancel)
	if c.cpuProf != "" {
		f, err := os.Create(c.cpuProf)
		if err != nil {
			log.Error("cpu profile", zap.Error(err))
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Error("cpu profile", zap.Error(err))
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	var progress io.Writer
	if !c.quiet {
		progress = stderr
	}

	type report interface {
		print(io.Writer)
		failed() bool
	}
	var rep report
	interrupted := false
	if c.mode == "idle" {
		r, err := idle(ctx, c, progress)
		if err != nil {
			log.Error("idle run failed", zap.Error(err))
			return exitCode(ctx)
		}
		rep, interrupted = r, r.Interrupted
	} else {
		r, err := bench(ctx, c, progress, log)
		if err != nil {
			log.Error("benchmark failed to start", zap.Error(err))
			return exitCode(ctx)
		}
		rep, interrupted = r, r.Interrupted
	}
	if c.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.print(stdout)
	}
	switch {
	case interrupted:
		return 130
	case rep.failed():
		return 1
	}
	return 0
}
