package mqtt

import (
	"testing"
	"time"

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

// A QoS 1 publisher facing a subscriber whose queue is full waits for room instead of pushing out the
// subscriber's oldest message: a subscriber that keeps up on average loses nothing acknowledged.
func TestFullQueueStallsPublisherUntilRoom(t *testing.T) {
	s, sub, g, out := fullSession(t)
	done := make(chan struct{})
	go func() {
		s.Deliver(router.Delivery{Msg: benchMessage(t, g, "t", 1), Sub: sub})
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Deliver returned while the queue was full: the publisher was not stalled")
	case <-time.After(50 * time.Millisecond):
	}
	s.mu.Lock()
	out.full = false // the subscriber's socket drained
	s.pumpLocked()
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(stallTimeout / 2):
		t.Fatal("the stalled publisher was not released when the queue made room")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped != 0 || s.slow {
		t.Errorf("dropped %d slow %v, want nothing dropped and not slow", s.dropped, s.slow)
	}
}

// A subscriber that stays full is marked slow after stallTimeout; from then on publishers are not
// stalled and its oldest messages are dropped (counted), so it cannot hold publishers back.
func TestStalledSubscriberMarkedSlow(t *testing.T) {
	s, sub, g, _ := fullSession(t)
	start := time.Now()
	s.Deliver(router.Delivery{Msg: benchMessage(t, g, "t", 1), Sub: sub})
	if waited := time.Since(start); waited < stallTimeout {
		t.Fatalf("first delivery returned after %v, want a stall of %v", waited, stallTimeout)
	}
	start = time.Now()
	for i := 0; i < 10; i++ {
		s.Deliver(router.Delivery{Msg: benchMessage(t, g, "t", 1), Sub: sub})
	}
	if waited := time.Since(start); waited > stallTimeout/2 {
		t.Errorf("deliveries to a slow subscriber took %v: publishers are still stalled", waited)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.slow || s.dropped != 11 || s.queue.live != 2 {
		t.Errorf("slow %v dropped %d queued %d, want slow, 11 dropped, 2 queued", s.slow, s.dropped, s.queue.live)
	}
}

// A client subscribed to its own topic must not stall on itself: its reader is the one that would make
// room.
func TestOwnMessagesNeverStall(t *testing.T) {
	s, sub, g, _ := fullSession(t)
	m := benchMessage(t, g, "t", 1)
	m.Publisher = s
	start := time.Now()
	s.Deliver(router.Delivery{Msg: m, Sub: sub})
	if waited := time.Since(start); waited > stallTimeout/2 {
		t.Errorf("delivery of the session's own message took %v", waited)
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
