package protocol

import (
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
