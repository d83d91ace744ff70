package protocol

import (
	"testing"
	"time"
)

// wheelConns makes n parked connections for a wheel test: nothing but their state and wheel link.
func wheelConns(n int) []*Conn {
	cs := make([]*Conn, n)
	for i := range cs {
		cs[i] = &Conn{}
		cs[i].state.Store(readerParked)
	}
	return cs
}

// The wheel fires each deadline in the first sweep at or after it, never before, including deadlines
// more than a revolution away and deadlines sharing a slot one revolution apart.
func TestDeadlineWheelFiresOnTimeNeverEarly(t *testing.T) {
	fired := map[*Conn]time.Duration{}
	var now time.Duration
	w := &deadlineWheel{swept: 0}
	w.fire = func(c *Conn) { fired[c] = now }
	rev := wheelSlots * wheelTick
	ats := []time.Duration{1, wheelTick - 1, wheelTick, 3*wheelTick + 7, rev - 1, rev + 3*wheelTick + 7, 5*rev + wheelTick/2}
	cs := wheelConns(len(ats))
	for i, c := range cs {
		w.insert(c, ats[i])
	}
	for now = 0; now <= 6*rev; now += wheelTick / 3 {
		w.sweep(now)
	}
	for i, c := range cs {
		at, ok := fired[c]
		if !ok {
			t.Fatalf("deadline %v never fired", ats[i])
		}
		if at < ats[i] || at > ats[i]+wheelTick+wheelTick/3 {
			t.Errorf("deadline %v fired at %v, want within a tick (and a sweep interval) after it", ats[i], at)
		}
		if c.wheel != (wheelLink{}) {
			t.Errorf("deadline %v still linked after firing: %+v", ats[i], c.wheel)
		}
	}
}

// Moving, removing, inserting a deadline already swept, and a connection woken before its parking
// goroutine inserted it.
func TestDeadlineWheelRemoveAndMove(t *testing.T) {
	var fired []*Conn
	w := &deadlineWheel{swept: 10 * wheelTick}
	w.fire = func(c *Conn) { fired = append(fired, c) }
	cs := wheelConns(4)
	w.insert(cs[0], 20*wheelTick)
	w.insert(cs[1], 20*wheelTick)
	w.insert(cs[2], 20*wheelTick)
	w.remove(cs[1])               // the middle of a slot's list
	w.insert(cs[2], 40*wheelTick) // moved
	w.insert(cs[3], 5*wheelTick)  // swept already: fires at once
	if len(fired) != 1 || fired[0] != cs[3] {
		t.Fatalf("fired %v, want the already-swept deadline at once", fired)
	}
	w.sweep(21 * wheelTick)
	if len(fired) != 2 || fired[1] != cs[0] {
		t.Fatalf("fired %d, want cs[0] at its tick, not the removed or the moved one", len(fired))
	}
	w.sweep(41 * wheelTick)
	if len(fired) != 3 || fired[2] != cs[2] {
		t.Fatalf("the moved deadline did not fire at its new time")
	}
	woken := wheelConns(1)[0]
	woken.state.Store(readerRunning)
	w.insert(woken, 50*wheelTick)
	if woken.wheel.at != 0 {
		t.Fatalf("a connection no longer parked was inserted")
	}
	w.sweep(100 * wheelTick)
	if len(fired) != 3 {
		t.Fatalf("fired %d, want nothing more", len(fired))
	}
	for i := range w.slots {
		if w.slots[i] != nil {
			t.Fatalf("slot %d not empty", i)
		}
	}
}

// A sweep after a long sleep (more than a revolution) fires everything due without walking every
// tick it missed.
func TestDeadlineWheelLongSleep(t *testing.T) {
	n := 0
	w := &deadlineWheel{}
	w.fire = func(*Conn) { n++ }
	cs := wheelConns(3)
	w.insert(cs[0], wheelTick)
	w.insert(cs[1], 700*wheelTick)
	w.insert(cs[2], 100*wheelSlots*wheelTick) // far ahead: stays
	w.sweep(10 * wheelSlots * wheelTick)
	if n != 2 || cs[2].wheel.at == 0 {
		t.Fatalf("fired %d, want the 2 due, the far one kept", n)
	}
	if w.swept > 10*wheelSlots*wheelTick || 10*wheelSlots*wheelTick-w.swept >= wheelTick {
		t.Fatalf("swept up to %v, want the last tick ended", w.swept)
	}
}
