package protocol

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"
)

// testBrake is a subscriber over its window until room is closed.
type testBrake struct {
	room  chan struct{}
	stuck atomic.Int32
}

func (b *testBrake) Room() <-chan struct{} { return b.room }
func (b *testBrake) Stuck()                { b.stuck.Add(1) }

// A Pacer holds its publisher back until the subscribers that asked have room, PaceTimeout at most
// (then they are told they are stuck), or until done; with nobody asking it does not wait.
func TestPacer(t *testing.T) {
	var p Pacer
	start := time.Now()
	p.Wait(nil)
	if time.Since(start) > 50*time.Millisecond {
		t.Fatal("waited with no brake")
	}

	b := &testBrake{room: make(chan struct{})}
	p.HoldFor(b)
	p.HoldFor(b) // once per subscriber
	time.AfterFunc(20*time.Millisecond, func() { close(b.room) })
	start = time.Now()
	p.Wait(nil)
	if d := time.Since(start); d < 15*time.Millisecond || d > PaceTimeout || b.stuck.Load() != 0 {
		t.Fatalf("waited %v for room made after 20ms (stuck %d)", d, b.stuck.Load())
	}

	full := &testBrake{room: make(chan struct{})}
	p.HoldFor(full)
	start = time.Now()
	p.Wait(nil)
	if d := time.Since(start); d < PaceTimeout || full.stuck.Load() != 1 {
		t.Fatalf("waited %v for a subscriber that made no room (stuck %d)", d, full.stuck.Load())
	}

	p.HoldFor(full)
	done := make(chan struct{})
	time.AfterFunc(20*time.Millisecond, func() { close(done) })
	start = time.Now()
	p.Wait(done)
	if d := time.Since(start); d >= PaceTimeout {
		t.Fatalf("waited %v after done", d)
	}
}

// A connection's room opens as the socket takes its batch, not only once the whole batch is written: a
// publisher held back for it resumes while it still has up to half its limit to write, so the writer
// does not idle waiting for publishers to wake.
func TestRoomOpensWhileBatchIsWritten(t *testing.T) {
	const limit = 1 << 20
	c, peer := pipeConn(t, func(s *Server) { s.MaxPending = limit })
	msg := bytes.Repeat([]byte("m"), limit/8)
	for range 8 { // the window beyond the largest message: 7/8 of the limit
		if !c.Write(msg) {
			t.Fatal("Write refused")
		}
	}
	room := c.Room()
	if room == nil {
		t.Fatal("room with 7/8 of the limit queued beyond the largest message")
	}
	readN(t, peer, limit/2) // two of the writer's 256 KiB pieces: 3/8 left beyond the largest message
	select {
	case <-room:
	case <-time.After(5 * time.Second):
		t.Fatal("no room while the rest of the batch waits for the peer")
	}
	readN(t, peer, limit/2)
}
