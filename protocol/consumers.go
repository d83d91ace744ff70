package protocol

import (
	"slices"
	"sync"

	"github.com/lyremq/lyre/router"
)

// Consumers are a connection's queue consumers (router.Consumer), resumed when the connection drains. A
// queue delivery the connection's sink refuses (its outbound queue is full) stays in the queue and the
// consumer waits for Consumer.Resume; the sink calls Blocked, and the front-end's OnDrain hook calls
// Resume. One mechanism for both front-ends. The zero value is ready to use.
type Consumers struct {
	mu      sync.Mutex
	list    []*router.Consumer // copy on write: Resume iterates a snapshot without the lock
	blocked bool
}

// Add registers a consumer, and resumes it once: a delivery refused during Consume's first dispatch may
// have met a drain that ran before the consumer was registered.
func (cs *Consumers) Add(c *router.Consumer) {
	cs.mu.Lock()
	cs.list = append(slices.Clip(cs.list), c)
	cs.mu.Unlock()
	c.Resume()
}

// Remove forgets a consumer (its owner closes it).
func (cs *Consumers) Remove(c *router.Consumer) {
	cs.mu.Lock()
	cs.list = slices.DeleteFunc(slices.Clone(cs.list), func(x *router.Consumer) bool { return x == c })
	cs.mu.Unlock()
}

// Take forgets every consumer and returns them, for closing.
func (cs *Consumers) Take() []*router.Consumer {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	l := cs.list
	cs.list, cs.blocked = nil, false
	return l
}

// Blocked records that a queue delivery to connection c was refused for lack of room. It runs in
// Sink.Deliver (under a queue lock), so it only marks; if c drained between the refusal and the mark,
// no OnDrain call would follow, so it resumes the consumers on a goroutine of its own.
func (cs *Consumers) Blocked(c *Conn) {
	cs.mu.Lock()
	cs.blocked = true
	cs.mu.Unlock()
	if c.Pending() == 0 {
		select {
		case <-c.Done():
		default:
			go cs.Resume()
		}
	}
}

// Held records that a queue delivery was refused for a reason of the front-end's own (a subscription
// whose SUBACK is not sent yet, a full in-flight window); the front-end calls Resume when it ends.
func (cs *Consumers) Held() {
	cs.mu.Lock()
	cs.blocked = true
	cs.mu.Unlock()
}

// Resume lets the consumers dispatch again after a refusal; it does nothing when none was refused. Call
// it from the OnDrain hook, never from Deliver.
func (cs *Consumers) Resume() {
	cs.mu.Lock()
	if !cs.blocked {
		cs.mu.Unlock()
		return
	}
	cs.blocked = false
	l := cs.list
	cs.mu.Unlock()
	for _, c := range l {
		c.Resume()
	}
}
