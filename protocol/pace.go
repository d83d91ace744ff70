package protocol

import (
	"slices"
	"sync"
	"time"

	"github.com/lyremq/lyre/router"
)

// Back-pressure on publishers (DESIGN.md §5), one mechanism for both front-ends. Delivery never blocks:
// a subscriber over its window that takes a message asks the publisher's connection to hold back
// (HoldFor, from its Sink.Deliver on the publisher's goroutine, or the front-end itself for a full
// durable subscription, router.PublishResult.Pressure). The publisher's reader calls Pace after each
// message it handled: it waits, not reading the socket (so TCP pushes back on the client), until every
// subscriber that asked has room, for at most PaceTimeout. A subscriber still without room then is told
// (Brake.Stuck) and pays under its own policy from then on (drops), until it has caught up; so one stuck
// subscriber costs a publisher PaceTimeout once, not on every message.

// PaceTimeout bounds how long a publisher is held back for one message.
const PaceTimeout = 500 * time.Millisecond

// maxBrakes bounds the subscribers one connection waits for at once; more are not waited for (they pay).
const maxBrakes = 16

// Brake is a subscriber over its window: Room returns a channel closed once there is room (nil when there
// is room now), Stuck tells it a publisher waited PaceTimeout in vain. It is router.Backpressure itself,
// so a publisher outside the front-ends (the cluster link) can be held back without importing them.
type Brake = router.Backpressure

// Publisher is what a sink asks to hold back: the publishing connection, router.Message.Publisher
// (*Conn implements it).
type Publisher interface {
	HoldFor(b Brake)
}

// pacer is a connection's pending brakes, made by the first HoldFor: most connections never publish
// into a full subscriber, and an idle connection must stay small.
type pacer struct {
	mu     sync.Mutex
	brakes []Brake
	// timer is reused by wait, which only the publisher's own goroutine runs: a paced publisher waits
	// thousands of times a second, and a new timer each time was most of the allocations left on its path.
	timer *time.Timer
}

// HoldFor asks the connection's reader to hold back until b has room (see Pace). Safe from any
// goroutine; it never blocks.
func (c *Conn) HoldFor(b Brake) {
	p := c.pace.Load()
	if p == nil {
		c.pace.CompareAndSwap(nil, &pacer{})
		p = c.pace.Load()
	}
	p.hold(b)
}

// HoldPublisher is what a sink over its window does with a topic message it took, in both front-ends: it
// asks the message's publisher to hold back until b has room (HoldFor), unless the publisher is conn, the
// subscriber's own connection (a client is never held back for its own subscription), or is none (a
// message the router or a store replays). It reports whether it asked. Which messages hold publishers
// back is the router's rule (router.Delivery.Paced, the topic's slow_consumer_policy) plus those that
// must not be lost lightly (MQTT QoS ≥ 1, STOMP persistent); where the window is, each front-end knows.
func HoldPublisher(m *router.Message, conn any, b Brake) bool {
	pub, ok := m.Publisher.(Publisher)
	if !ok || any(pub) == conn {
		return false
	}
	pub.HoldFor(b)
	return true
}

// Pace waits until every subscriber that asked this connection to hold back has room, PaceTimeout at
// most, telling those still full that they are stuck. The reader calls it between the messages it
// handles, holding no lock. It returns at once when nobody asked, and when the connection closes. It
// reports whether it waited.
func (c *Conn) Pace() bool {
	if p := c.pace.Load(); p != nil {
		return p.wait(c, c.Done(), c.srv.paceTimeout())
	}
	return false
}

// SetPaceTimeout changes how long this server's connections hold a publisher back for one message
// (default PaceTimeout); d <= 0 restores the default. Tests on a loaded machine raise it, so a
// subscriber that is slow but keeps up is not taken for a stuck one because it was descheduled.
func (s *Server) SetPaceTimeout(d time.Duration) { s.pace.Store(int64(max(d, 0))) }

func (s *Server) paceTimeout() time.Duration {
	if d := time.Duration(s.pace.Load()); d > 0 {
		return d
	}
	return PaceTimeout
}

// Pacer holds back a publisher that is not a connection, such as an HTTP request: set it as the
// message's Publisher (and give it a publish's router.PublishResult.Pressure with HoldFor), publish,
// then Wait before answering. The zero value is ready; use it for one request.
type Pacer struct{ p pacer }

// HoldFor implements Publisher.
func (p *Pacer) HoldFor(b Brake) { p.p.hold(b) }

// Wait is Conn.Pace for the publisher: it returns once every subscriber that asked has room, after
// PaceTimeout at most, or when done is closed.
func (p *Pacer) Wait(done <-chan struct{}) { p.p.wait(nil, done, PaceTimeout) }

func (p *pacer) hold(b Brake) {
	p.mu.Lock()
	if len(p.brakes) < maxBrakes && !slices.Contains(p.brakes, b) {
		p.brakes = append(p.brakes, b)
	}
	p.mu.Unlock()
}

// wait waits for the pending brakes as Pace says, timeout at most, until done is closed. A publishing
// connection (owner, else nil) first flushes its deferred output: its client may be waiting for it.
func (p *pacer) wait(owner *Conn, done <-chan struct{}, timeout time.Duration) (waited bool) {
	p.mu.Lock()
	brakes := p.brakes
	p.brakes = nil
	p.mu.Unlock()
	if len(brakes) == 0 {
		return false
	}
	deadline := time.Now().Add(timeout)
	armed := false
	defer func() {
		if armed {
			p.timer.Stop()
		}
	}()
	for _, b := range brakes {
		room := b.Room()
		if room == nil {
			continue
		}
		left := time.Until(deadline)
		if left <= 0 {
			b.Stuck() // the bound is for the message, not per subscriber
			continue
		}
		if owner != nil {
			owner.Flush()
		}
		waited = true
		if p.timer == nil {
			p.timer = time.NewTimer(left)
		} else {
			p.timer.Reset(left) // since Go 1.23 no stale tick survives a Stop or Reset
		}
		armed = true
		select {
		case <-room:
		case <-p.timer.C:
			b.Stuck()
		case <-done:
			return true
		}
	}
	return waited
}

var (
	_ Brake     = (*Conn)(nil)
	_ Publisher = (*Conn)(nil)
	_ Publisher = (*Pacer)(nil)
)
