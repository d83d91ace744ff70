package cluster

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/nats-io/nats.go"
)

// Flow control across nodes (package doc, "Flow control"). A node whose subscribers cannot keep up with
// what the link brings in tells the nodes the messages came from; they hold their publishers back, by
// the same mechanism that holds a local publisher back for a local subscriber (router.Backpressure on
// Message.Publisher), until the signal stops or the bound runs out.
const (
	// pressureTTL is how long one signal holds a node's publishers back. A receiver that is still over
	// its window repeats it every pressureRepeat, so a lost signal, or a node that went away, costs at
	// most one TTL.
	pressureTTL    = 100 * time.Millisecond
	pressureRepeat = 40 * time.Millisecond
	// inPaceTimeout bounds how long the inbound goroutine waits for one message's subscribers, as
	// protocol.PaceTimeout does for a connection's reader; a subscriber still full then is stuck and
	// pays under its own policy.
	inPaceTimeout = 500 * time.Millisecond
	// maxInBrakes bounds the subscribers the inbound goroutine waits for at once.
	maxInBrakes = 16
)

// flowSubject is where the nodes tell origin id that they are over their windows. Outside "lyre.", so
// no stream or topic subscription ever covers it.
func flowSubject(origin uint64) string { return "lyrefc." + strconv.FormatUint(origin, 16) }

// remotePressure is the brake a node's publishers get while another node says it is over its window
// (Link.remote). Room is open once no signal has arrived for pressureTTL.
type remotePressure struct {
	mu    sync.Mutex
	until time.Time
	room  chan struct{} // closed when the episode ends; nil outside one
	stuck bool          // a publisher waited the whole bound in this episode (counted once)
	timer *time.Timer
	// hold is room != nil, read without the lock on every message going to other nodes.
	hold atomic.Bool
	// episodes and stuckEpisodes count what happened, for Stats.
	episodes, stuckEpisodes uint64
}

// press starts or extends an episode.
func (p *remotePressure) press(ttl time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.until = time.Now().Add(ttl)
	if p.room != nil {
		return // the running timer finds the new deadline
	}
	p.room = make(chan struct{})
	p.stuck = false
	p.hold.Store(true)
	p.episodes++
	if p.timer == nil {
		p.timer = time.AfterFunc(ttl, p.expire)
	} else {
		p.timer.Reset(ttl)
	}
}

func (p *remotePressure) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.room == nil {
		return
	}
	if left := time.Until(p.until); left > 0 {
		p.timer.Reset(left)
		return
	}
	close(p.room)
	p.room = nil
	p.hold.Store(false)
}

// holding reports whether publishers are to be held back now.
func (p *remotePressure) holding() bool { return p.hold.Load() }

// Room implements router.Backpressure.
func (p *remotePressure) Room() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.room == nil {
		return nil
	}
	return p.room
}

// Stuck implements router.Backpressure. It only counts: the episode goes on for as long as the other node
// says it is over its window, and each message's hold stays bounded by the publisher's own bound. A
// subscriber there that is stuck for good is that node's to judge: its inbound pacing marks it stuck
// (and it drops) after inPaceTimeout, and then the node stops asking, so the episode ends within
// pressureTTL.
func (p *remotePressure) Stuck() {
	p.mu.Lock()
	if p.room != nil && !p.stuck {
		p.stuck = true // counted once per episode
		p.stuckEpisodes++
	}
	p.mu.Unlock()
}

func (p *remotePressure) stop() {
	p.mu.Lock()
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.room != nil {
		close(p.room)
		p.room = nil
	}
	p.hold.Store(false)
	p.mu.Unlock()
}

// holder is a message's publisher that can be held back (the front-ends' connections, protocol.Publisher).
type holder interface{ HoldFor(router.Backpressure) }

// holdPublisher asks the publisher of a message going to other nodes to hold back while one of them is
// over its window, or while the link's own outbound queue is: for the messages a local subscriber would
// hold it back for (Delivery.Paced, QoS ≥ 1).
func (l *Link) holdPublisher(d router.Delivery) {
	if !(d.Paced || d.Msg.QoS > 0) {
		return
	}
	remote, full := l.remote.holding(), len(l.out) > outQueue/2
	if !remote && !full {
		return
	}
	p, ok := d.Msg.Publisher.(holder)
	if !ok {
		return
	}
	if remote {
		p.HoldFor(&l.remote)
	}
	if full {
		p.HoldFor(&l.outBrake)
	}
}

// startFlow subscribes to this node's pressure subject.
func (l *Link) startFlow() error {
	_, err := l.nc.Subscribe(flowSubject(l.id), func(m *nats.Msg) {
		ms, err := strconv.Atoi(string(m.Data))
		if err != nil || ms <= 0 || ms > 10_000 {
			return
		}
		l.remote.press(time.Duration(ms) * time.Millisecond)
	})
	return err
}

// inPacer is the inbound goroutine's side: the brakes local subscribers handed the link (as a message's
// Publisher) while it published one message, and when each origin was last told.
type inPacer struct {
	mu     sync.Mutex
	brakes []router.Backpressure
	told   map[uint64]time.Time // owned by the inbound goroutine
}

// HoldFor implements the front-ends' Publisher for messages the link brings in: a local subscriber over
// its window asks the link to hold back.
func (h *host) HoldFor(b router.Backpressure) {
	p := &h.l.inPace
	p.mu.Lock()
	if len(p.brakes) < maxInBrakes {
		p.brakes = append(p.brakes, b)
	}
	p.mu.Unlock()
}

// tell signals origin that this node is over its window, at most once per pressureRepeat.
func (l *Link) tell(origin uint64, now time.Time) {
	p := &l.inPace
	if now.Sub(p.told[origin]) < pressureRepeat {
		return
	}
	if p.told == nil || len(p.told) > 1024 {
		p.told = make(map[uint64]time.Time) // origins of nodes long gone must not accumulate
	}
	p.told[origin] = now
	if err := l.nc.Publish(flowSubject(origin), []byte(strconv.Itoa(int(pressureTTL/time.Millisecond)))); err == nil {
		l.pressureSent.Add(1)
	}
}

// paceIn runs on the inbound goroutine after it published a message from origin (pressure: the router's
// PublishResult.Pressure, a full durable subscription): while a subscriber is over its window it tells
// origin, repeatedly, and waits for room, inPaceTimeout at most; NATS buffers meanwhile (Stats.InDropped
// counts what it cannot). An inbound backlog of more than half the queue tells origin too, without waiting.
func (l *Link) paceIn(origin uint64, pressure router.Backpressure) {
	p := &l.inPace
	p.mu.Lock()
	brakes := p.brakes
	p.brakes = nil
	p.mu.Unlock()
	if pressure != nil {
		brakes = append(brakes, pressure)
	}
	now := time.Now()
	if len(brakes) == 0 {
		if len(l.in) > inQueue/16 {
			l.tell(origin, now)
		}
		return
	}
	deadline := now.Add(inPaceTimeout)
	tick := time.NewTicker(pressureRepeat)
	defer tick.Stop()
	for _, b := range brakes {
		for room := b.Room(); room != nil; {
			if time.Now().After(deadline) {
				b.Stuck()
				break
			}
			l.tell(origin, time.Now())
			select {
			case <-room:
				room = nil
			case <-tick.C:
			case <-l.quit:
				return
			}
		}
	}
}

// outBrake is the link as a local subscriber over its window: while the outbound queue is more than half
// full, publishers feeding it are held back until it is down to a quarter, as for any local subscriber
// (the queue still drops what finds it full: Stats.Dropped).
type outBrake struct {
	l       *Link
	mu      sync.Mutex
	room    chan struct{}
	waiting atomic.Bool
}

// Room implements router.Backpressure.
func (b *outBrake) Room() <-chan struct{} {
	if len(b.l.out) <= outQueue/4 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.room == nil {
		b.room = make(chan struct{})
	}
	b.waiting.Store(true)
	if len(b.l.out) <= outQueue/4 { // drained meanwhile, before the outbound goroutine saw waiting
		b.release()
		return nil
	}
	return b.room
}

// Stuck implements router.Backpressure: the queue drops what finds it full, nothing else to do.
func (b *outBrake) Stuck() {}

// drained is called by the outbound goroutine after each message.
func (b *outBrake) drained() {
	if b.waiting.Load() && len(b.l.out) <= outQueue/4 {
		b.mu.Lock()
		b.release()
		b.mu.Unlock()
	}
}

// release opens the room; with b.mu held.
func (b *outBrake) release() {
	if b.room != nil {
		close(b.room)
		b.room = nil
	}
	b.waiting.Store(false)
}
