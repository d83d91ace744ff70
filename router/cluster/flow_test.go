package cluster

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lyremq/lyre/router"
)

// fullSink is a subscriber over its window while room is open: it takes each message and asks its
// publisher to hold back, as the front-ends' sinks do (protocol.HoldPublisher).
type fullSink struct {
	mu   sync.Mutex
	room chan struct{} // nil: there is room
	got  atomic.Int64
}

func (s *fullSink) Room() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.room
}

func (s *fullSink) Stuck() {}

func (s *fullSink) Deliver(d router.Delivery) bool {
	s.got.Add(1)
	if s.Room() != nil {
		if p, ok := d.Msg.Publisher.(holder); ok {
			p.HoldFor(s)
		}
	}
	return true
}

func (s *fullSink) fill() {
	s.mu.Lock()
	s.room = make(chan struct{})
	s.mu.Unlock()
}

func (s *fullSink) drain() {
	s.mu.Lock()
	close(s.room)
	s.room = nil
	s.mu.Unlock()
}

// recPublisher is a local publisher that records what asked it to hold back.
type recPublisher struct {
	mu     sync.Mutex
	brakes []router.Backpressure
}

func (p *recPublisher) HoldFor(b router.Backpressure) {
	p.mu.Lock()
	p.brakes = append(p.brakes, b)
	p.mu.Unlock()
}

func (p *recPublisher) last() router.Backpressure {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.brakes) == 0 {
		return nil
	}
	return p.brakes[len(p.brakes)-1]
}

// TestFlowControlAcrossNodes: a subscriber on node b over its window holds back a QoS 1 publisher on
// node a, through the link (b tells a), and lets it go once it has room, as a subscriber on a's own
// node would (DESIGN.md §5: producers are slowed while a subscriber they feed is over its window).
func TestFlowControlAcrossNodes(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	sink := &fullSink{}
	if err := b.r.Subscribe(&router.Subscription{Filter: lit("fc"), Sink: sink, QoS: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "interest of b on a", func() bool { return a.l.Interest("v", []string{"fc"}) > 0 })
	pub := &recPublisher{}
	send := func() {
		a.r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"fc"}}, QoS: 1,
			Body: []byte("m"), Publisher: pub})
	}

	// With room, nobody is held back.
	send()
	waitFor(t, "the first message on b", func() bool { return sink.got.Load() == 1 })
	send()
	waitFor(t, "the second message on b", func() bool { return sink.got.Load() == 2 })
	if pub.last() != nil {
		t.Fatal("the publisher was held back while the remote subscriber had room")
	}

	sink.fill()
	var brake router.Backpressure
	waitFor(t, "the publisher held back for b's subscriber", func() bool {
		send()
		brake = pub.last()
		return brake != nil && brake.Room() != nil
	})
	room := brake.Room()
	if st := b.l.Stats(); st.PressureSent == 0 {
		t.Fatalf("b sent no pressure signal: %+v", st)
	}
	if st := a.l.Stats(); st.HeldEpisodes == 0 {
		t.Fatalf("a counted no episode: %+v", st)
	}
	sink.drain()
	waitFor(t, "room once b's subscriber drained", func() bool {
		select {
		case <-room:
			return true
		default:
			return false
		}
	})
	if brake.Room() != nil {
		t.Fatal("the brake still holds after its episode ended")
	}
	// A publisher is not held back again by an episode that has ended.
	n := len(pub.brakes)
	send()
	waitFor(t, "the message after the episode on b", func() bool { return sink.got.Load() >= int64(n)+1 })
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.brakes) != n {
		t.Fatalf("held back %d more times after the episode ended", len(pub.brakes)-n)
	}
}
