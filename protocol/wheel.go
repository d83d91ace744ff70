package protocol

import (
	"sync"
	"time"
)

// A deadlineWheel wakes parked connections at their read deadlines (keep-alive, heart-beats). A timer per
// connection cost about 160 B of heap each (time.Timer and its function value), which is 7% of an idle
// connection's live heap and twice that in RSS; the wheel costs three words in the Conn and one sweep
// every wheelTick per Server. A deadline fires at most one tick late, never early: the sweep of a tick
// runs once the tick has ended, and wakes the entries due within it.
//
// Entries are linked through the Conns themselves (wheelLink), one list per slot; a slot holds the
// deadlines of every wheelSlots'th tick, so one further away than a revolution waits in its slot for
// the sweeps that pass it by.
type deadlineWheel struct {
	mu    sync.Mutex
	slots [wheelSlots]*Conn
	// swept is where the next sweep starts: every tick before it has been swept (since clockStart).
	swept time.Duration
	fire  func(*Conn) // wakes a connection whose deadline has come (Conn.deadlineWake)
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once // close may be called again (Shutdown after Shutdown)
}

const (
	wheelTick  = 50 * time.Millisecond
	wheelSlots = 1024 // a revolution is 51.2 s
)

// wheelLink is a Conn's entry in its Server's deadlineWheel, guarded by the wheel's mutex.
type wheelLink struct {
	next, prev *Conn
	at         time.Duration // the deadline, since clockStart; 0: not in the wheel
}

func newDeadlineWheel(fire func(*Conn)) *deadlineWheel {
	w := &deadlineWheel{fire: fire, stop: make(chan struct{}), done: make(chan struct{})}
	w.swept = time.Since(clockStart) / wheelTick * wheelTick
	return w
}

// run sweeps the wheel every tick until close.
func (w *deadlineWheel) run() {
	defer close(w.done)
	t := time.NewTicker(wheelTick)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.sweep(time.Since(clockStart))
		}
	}
}

func (w *deadlineWheel) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// insert puts c in the wheel (or moves it there) to fire at deadline at; a deadline in a tick already
// swept fires at once. The goroutine that parked c calls it after c's state changed, so another may have
// woken c already: a connection no longer parked is not inserted, lest an entry outlive its session
// (that goroutine's remove may have run before this insert).
func (w *deadlineWheel) insert(c *Conn, at time.Duration) {
	w.mu.Lock()
	if c.wheel.at != 0 {
		w.unlinkLocked(c)
	}
	if c.state.Load() != readerParked {
		w.mu.Unlock()
		return
	}
	if at < w.swept {
		w.mu.Unlock()
		w.fire(c)
		return
	}
	i := slotOf(at)
	c.wheel = wheelLink{next: w.slots[i], at: at}
	if c.wheel.next != nil {
		c.wheel.next.wheel.prev = c
	}
	w.slots[i] = c
	w.mu.Unlock()
}

// remove takes c out of the wheel, if it is there.
func (w *deadlineWheel) remove(c *Conn) {
	w.mu.Lock()
	if c.wheel.at != 0 {
		w.unlinkLocked(c)
	}
	w.mu.Unlock()
}

func (w *deadlineWheel) unlinkLocked(c *Conn) {
	l := &c.wheel
	if l.prev != nil {
		l.prev.wheel.next = l.next
	} else {
		w.slots[slotOf(l.at)] = l.next
	}
	if l.next != nil {
		l.next.wheel.prev = l.prev
	}
	*l = wheelLink{}
}

// sweep fires the entries of every tick that ended by now.
func (w *deadlineWheel) sweep(now time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if behind := now - w.swept; behind > wheelSlots*wheelTick {
		// Asleep for more than a revolution: a whole number of revolutions fewer sweeps the same slots.
		w.swept += (behind/(wheelSlots*wheelTick) - 1) * wheelSlots * wheelTick
	}
	for w.swept+wheelTick <= now {
		end := w.swept + wheelTick
		for c := w.slots[slotOf(w.swept)]; c != nil; {
			next := c.wheel.next
			if c.wheel.at < end {
				w.unlinkLocked(c)
				w.fire(c) // starts a goroutine at most: cheap under the lock
			}
			c = next
		}
		w.swept = end
	}
}

func slotOf(at time.Duration) int { return int(at/wheelTick) % wheelSlots }
