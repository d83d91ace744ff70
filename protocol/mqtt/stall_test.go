package mqtt

import (
	"testing"
	"time"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
)

// fullSession returns a session whose outbound queue refuses everything and whose message queue already
// holds max_queued_messages (2) live QoS 1 messages.
func fullSession(t *testing.T) (*session, *router.Subscription, *router.Grammar, *discardSender) {
	out := &discardSender{full: true}
	s, sub, g := benchSession(t, "t", 1, out)
	s.maxQueued = 2
	for i := 0; i < 2; i++ {
		s.Deliver(router.Delivery{Msg: benchMessage(t, g, "t", 1), Sub: sub})
	}
	if s.queue.live != 2 {
		t.Fatalf("queue holds %d, want 2", s.queue.live)
	}
	return s, sub, g, out
}

// holdRecorder stands for the publisher's connection: it records what asked it to hold back.
type holdRecorder struct{ brakes []protocol.Brake }

func (h *holdRecorder) HoldFor(b protocol.Brake) { h.brakes = append(h.brakes, b) }

// A QoS 1 publisher facing a subscriber whose queue is full is held back (protocol.Pace) instead of the
// subscriber's oldest message being pushed out: a subscriber that keeps up on average loses nothing
// acknowledged. Deliver itself never waits.
func TestFullQueueHoldsPublisherBack(t *testing.T) {
	s, sub, g, out := fullSession(t)
	pub := &holdRecorder{}
	m := benchMessage(t, g, "t", 1)
	m.Publisher = pub
	start := time.Now()
	if !s.Deliver(router.Delivery{Msg: m, Sub: sub}) {
		t.Fatal("Deliver refused a QoS 1 message over the window")
	}
	if waited := time.Since(start); waited > protocol.PaceTimeout/10 {
		t.Fatalf("Deliver took %v: it must not wait", waited)
	}
	if len(pub.brakes) != 1 || pub.brakes[0] != protocol.Brake(s) {
		t.Fatalf("publisher asked to hold back for %v, want the session", pub.brakes)
	}
	room := s.Room()
	if room == nil {
		t.Fatal("no room to wait for while the queue is full")
	}
	s.mu.Lock()
	out.full = false // the subscriber's socket drained
	s.pumpLocked()
	s.mu.Unlock()
	select {
	case <-room:
	default:
		t.Fatal("the waiting publisher was not released when the queue made room")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped != 0 || s.slow {
		t.Errorf("dropped %d slow %v, want nothing dropped and not slow", s.dropped, s.slow)
	}
}

// Held publishers are released once the queue is down to three quarters of max_queued_messages, not at
// the first free slot: released one slot at a time, each publisher would send one message per wake-up.
func TestHeldPublishersReleasedAtThreeQuarters(t *testing.T) {
	out := &discardSender{full: true}
	s, sub, g := benchSession(t, "t", 1, out)
	s.maxQueued = 8
	for range 8 {
		s.Deliver(router.Delivery{Msg: benchMessage(t, g, "t", 1), Sub: sub})
	}
	room := s.Room()
	if room == nil {
		t.Fatal("no room to wait for while the queue is full")
	}
	drainTo := func(inflight int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		out.full, s.maxInflight = false, inflight // the window bounds what the pump sends
		s.pumpLocked()
	}
	drainTo(1)
	select {
	case <-room:
		t.Fatal("released at 7 of 8 queued; want at 6")
	default:
	}
	drainTo(2)
	select {
	case <-room:
	default:
		t.Fatalf("not released at %d of 8 queued", s.queue.live)
	}
}

// A subscriber that stays full is marked slow when a publisher waited for it in vain (Stuck); from then
// on publishers are not held back for it and its oldest messages are dropped (counted).
func TestStuckSubscriberMarkedSlow(t *testing.T) {
	s, sub, g, _ := fullSession(t)
	pub := &holdRecorder{}
	m := benchMessage(t, g, "t", 1)
	m.Publisher = pub
	s.Deliver(router.Delivery{Msg: m, Sub: sub})
	pub.brakes[0].Stuck()
	for i := 0; i < 10; i++ {
		m := benchMessage(t, g, "t", 1)
		m.Publisher = pub
		s.Deliver(router.Delivery{Msg: m, Sub: sub})
	}
	if len(pub.brakes) != 1 {
		t.Errorf("held back %d times, want once before the subscriber was slow", len(pub.brakes))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.slow || s.dropped != 11 || s.queue.live != 2 {
		t.Errorf("slow %v dropped %d queued %d, want slow, 11 dropped, 2 queued", s.slow, s.dropped, s.queue.live)
	}
}

// A client subscribed to its own topic is never held back for itself: its reader is the one that would
// make room.
func TestOwnMessagesNeverHeldBack(t *testing.T) {
	s, sub, g, out := fullSession(t)
	m := benchMessage(t, g, "t", 1)
	m.Publisher = out // the session's own connection
	s.Deliver(router.Delivery{Msg: m, Sub: sub})
	if len(out.held) != 0 {
		t.Errorf("the session's own connection was asked to hold back for it")
	}
}

// A retained message published while a SUBSCRIBE is being handled reaches the new subscription both live
// (held until the SUBACK) and in the retained snapshot: it must go out once, as a live message with
// RETAIN 0 [MQTT-3.3.1-9], not twice.
func TestRetainedPublishedDuringSubscribeGoesOutOnce(t *testing.T) {
	out := &discardSender{buf: make([]byte, 0, 256)}
	s, sub, g := benchSession(t, "r/+", 1, out)
	e := sub.Opaque.(*subEntry)
	e.holding = true
	m := benchMessage(t, g, "r/1", 1)
	m.Retain = true
	s.Deliver(router.Delivery{Msg: m, Sub: sub})
	if out.n != 0 {
		t.Fatalf("%d packets sent before the SUBACK", out.n)
	}
	s.release(e, []*router.Message{m})
	if out.n != 1 {
		t.Fatalf("%d PUBLISH packets sent, want 1", out.n)
	}
	if out.buf[0]&0x01 != 0 {
		t.Errorf("the one copy has RETAIN set (first byte %#x); a live delivery has RETAIN 0", out.buf[0])
	}
}
