package stomp

import (
	"fmt"
	"strings"
	"sync"

	"github.com/lyremq/lyre/router"
)

// Durable topic subscriptions (DESIGN.md §5), as in Apollo: SUBSCRIBE to a topic with persistent:true and
// an id creates, or re-attaches to, a subscription that outlives the connection. A bridge subscribed to
// the topic copies every match into the queue /dsub/<id>; the client consumes that queue with the usual
// ack modes, so what arrives while it is offline waits there (bounded by the router's queue limits).
// SUBSCRIBE /dsub/<id> attaches to an existing one; UNSUBSCRIBE with persistent:true destroys it and
// discards what it holds. Durable subscriptions live in memory, per virtual host and id; on a durable
// virtual host they and their persistent messages are also stored and survive a restart (persist.go).

// MaxDurables bounds the durable subscriptions a Handler keeps across all hosts; a persistent SUBSCRIBE
// beyond it is an ERROR.
const MaxDurables = 10000

// maxDurablePending bounds the matches waiting for the bridge's pump; beyond it matches are dropped (and
// counted by the router as refused deliveries).
const maxDurablePending = 10000

// durableKey names a durable subscription: its host's router and its queue's key.
type durableKey struct {
	host *router.Router
	path string
}

func keyOf(rt *router.Router, path []string) durableKey {
	return durableKey{host: rt, path: router.Key(router.Destination{Kind: router.DurableSub, Path: path})}
}

// dsubDest is the queue of the durable subscription id: what /dsub/<id> names in this grammar.
func (s *session) dsubDest(id string) (router.Destination, error) {
	prefix := strings.TrimSuffix(s.g.Render(router.Destination{Kind: router.DurableSub, Path: []string{"x"}}), "x")
	d, err := s.g.ParseName(prefix + id)
	if err == nil && d.Kind != router.DurableSub {
		err = fmt.Errorf("%w: %q is not a durable subscription name", router.ErrInvalidName, id)
	}
	return d, err
}

// durable is one durable subscription. It is the router.Sink of its topic bridge.
type durable struct {
	h      *Handler
	key    durableKey
	filter string // the destination as first subscribed
	g      *router.Grammar
	queue  router.Destination
	bridge *router.Subscription

	// mu guards the hand-off from Deliver (publisher goroutines) to the pump goroutine, which publishes
	// into the queue: a sink must not call the router from Deliver.
	mu      sync.Mutex
	pending []*router.Message
	waits   []func(error) // per pending message: its publisher's wait for the copy's write, or nil (persist.go)
	pumping bool
	closed  bool
}

// Deliver queues a topic match for the pump; it never blocks.
func (d *durable) Deliver(dl router.Delivery) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || len(d.pending) >= maxDurablePending {
		return false
	}
	d.pending = append(d.pending, dl.Msg)
	d.waits = append(d.waits, trackCopy(dl.Msg))
	if !d.pumping {
		d.pumping = true
		go d.pump()
	}
	return true
}

// pump copies pending matches into the durable queue, then exits: it runs only while there is work.
func (d *durable) pump() {
	for {
		d.mu.Lock()
		batch, waits := d.pending, d.waits
		d.pending, d.waits = nil, nil
		if len(batch) == 0 || d.closed {
			d.pumping = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		for i, m := range batch {
			q := *m
			q.Dest = d.queue
			// Subscribers see the topic the message was published to, in STOMP syntax.
			q.Origin, q.OriginGram = d.g.RenderMessage(m), d.g
			done := copyTracker(&q, waits[i])
			if res := d.key.host.Publish(&q); res.Err != nil {
				d.h.dropped.Add(1)
			}
			done()
		}
	}
}

// close detaches the bridge from its topic and stops the pump.
func (d *durable) close() {
	d.key.host.Unsubscribe(d.bridge)
	d.mu.Lock()
	d.closed = true
	waits := d.waits
	d.pending, d.waits = nil, nil
	d.mu.Unlock()
	releaseWaits(waits)
}

// durableFor returns the durable subscription id of the session's host, creating it on filter when absent.
// An existing one subscribed to another destination is replaced, discarding what it held.
func (s *session) durableFor(id, name string, f router.Filter) (*durable, error) {
	h := s.h
	queue, err := s.dsubDest(id)
	if err != nil {
		return nil, err
	}
	key := keyOf(s.rt, queue.Path)
	h.mu.Lock()
	old := h.durables[key]
	if old != nil && old.filter == name {
		h.mu.Unlock()
		return old, nil
	}
	if old != nil {
		delete(h.durables, key)
	} else if len(h.durables) >= MaxDurables {
		h.mu.Unlock()
		return nil, fmt.Errorf("stomp: the broker holds %d durable subscriptions, its limit", MaxDurables)
	}
	h.mu.Unlock()
	if old != nil {
		old.destroy()
	}
	d := &durable{h: h, key: key, filter: name, g: s.g, queue: queue}
	d.bridge = &router.Subscription{Filter: f, Sink: d, QoS: 1, ID: id}
	if err := s.rt.Subscribe(d.bridge); err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.durables == nil {
		h.durables = make(map[durableKey]*durable)
	}
	if cur := h.durables[key]; cur != nil {
		// Another connection created it meanwhile: use theirs.
		h.mu.Unlock()
		d.close()
		return cur, nil
	}
	h.durables[key] = d
	h.mu.Unlock()
	s.journalDurable(d, true)
	return d, nil
}

// lookupDurable returns the durable subscription of the session's host whose queue is at path, or nil.
func (s *session) lookupDurable(path []string) *durable {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.h.durables[keyOf(s.rt, path)]
}

// dropDurable destroys the durable subscription key, if it still exists.
func (s *session) dropDurable(key durableKey) {
	s.h.mu.Lock()
	d := s.h.durables[key]
	delete(s.h.durables, key)
	s.h.mu.Unlock()
	if d != nil {
		d.destroy()
		s.journalDurable(d, false)
	}
}

// destroy closes the bridge and discards the queued messages: a consumer that accepts everything drains
// the queue, and the router forgets a queue that is empty and has no consumer.
func (d *durable) destroy() {
	d.close()
	rs := &router.Subscription{Filter: literalFilter(d.queue), Sink: discard{}}
	if c, err := d.key.host.Consume(rs, router.ConsumerOptions{AutoAck: true}); err == nil {
		c.Close()
	}
}

// discard is a sink that accepts and forgets every message.
type discard struct{}

func (discard) Deliver(router.Delivery) bool { return true }

// literalFilter is the filter naming exactly destination d.
func literalFilter(d router.Destination) router.Filter {
	segs := make([]router.Seg, len(d.Path))
	for i, p := range d.Path {
		segs[i] = router.Seg{Kind: router.SegLiteral, Text: p}
	}
	return router.Filter{Kind: d.Kind, Segs: segs}
}
