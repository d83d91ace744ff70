package protocol

import (
	"errors"
	"sync"
	"time"
)

// MaxPendingAcks bounds the acknowledgements one connection holds (waiting for their writes, or for room
// in the outbound queue). At the bound the reader waits before reading on: a client that outruns the
// store, or that does not read its acknowledgements, is held back by its own socket.
const MaxPendingAcks = 4096

// ErrAckFailed ends AckQueue.Add after a write an acknowledgement waited for failed: the connection is
// closing without acknowledging, so the client sends again after it reconnects.
var ErrAckFailed = errors.New("protocol: acknowledgement withheld: a write it waited for failed")

// Durable is what an acknowledgement waits for: the writes one packet caused (virtualhost.Tracker). Then
// calls f once they are all done, with the first error, at once when none is pending.
type Durable interface {
	Then(f func(error)) (now bool)
}

// AckQueue sends a connection's acknowledgements (MQTT PUBACK, PUBREC, PUBREL, PUBCOMP; STOMP RECEIPT) in
// the order of the packets they answer, each once the writes it waits for are durable. The reader never
// waits for the store: an acknowledgement is queued and leaves when it and every one before it are
// ready. Both front-ends use it, so both apply one policy when acknowledgements pile up (MaxPendingAcks:
// the reader waits) and when a write fails (Failed is called once; later Adds return ErrAckFailed).
//
// A is the front-end's acknowledgement (a packet type and id, a receipt id); Encode appends its wire form.
// The zero value is not usable: use NewAckQueue.
type AckQueue[A any] struct {
	c      *Conn
	encode func(b []byte, a A) []byte
	failed func(err error)

	mu     sync.Mutex
	items  []pendingAck[A]
	first  uint64 // the number of items[0] in arrival order
	err    error  // set once a write failed
	room   chan struct{}
	drains chan struct{} // made by Wait
}

type pendingAck[A any] struct {
	a     A
	ready bool
}

// NewAckQueue returns the acknowledgement queue of c. encode appends one acknowledgement's wire form;
// failed is called once, off the reader goroutine, when a write an acknowledgement waited for fails (the
// front-end tells the client if it can, and closes c). The caller calls Flush from its OnDrain hook.
func NewAckQueue[A any](c *Conn, encode func(b []byte, a A) []byte, failed func(err error)) *AckQueue[A] {
	return &AckQueue[A]{c: c, encode: encode, failed: failed}
}

// Add queues acknowledgement a, sent once d's writes are done (d nil: nothing to wait for, only the
// order). It waits only while MaxPendingAcks are queued, and returns an error when the connection closed
// meanwhile or a write failed earlier. Reader goroutine.
func (q *AckQueue[A]) Add(d Durable, a A) error {
	q.mu.Lock()
	for len(q.items) >= MaxPendingAcks && q.err == nil {
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-q.c.Done():
			return ErrOutboundClosed
		}
		q.mu.Lock()
	}
	if q.err != nil {
		q.mu.Unlock()
		return ErrAckFailed
	}
	n := q.first + uint64(len(q.items))
	q.items = append(q.items, pendingAck[A]{a: a, ready: d == nil})
	q.mu.Unlock()
	if d == nil || d.Then(func(err error) { q.done(n, err) }) {
		q.Flush()
	}
	return nil
}

// done marks acknowledgement n ready, or fails the queue when its writes failed.
func (q *AckQueue[A]) done(n uint64, err error) {
	q.mu.Lock()
	if err != nil {
		first := q.err == nil
		if first {
			q.err = err
			q.wakeLocked()
		}
		q.mu.Unlock()
		if first {
			q.failed(err)
		}
		return
	}
	if n >= q.first && n-q.first < uint64(len(q.items)) {
		q.items[n-q.first].ready = true
	}
	q.mu.Unlock()
	q.Flush()
}

// Flush writes the ready acknowledgements at the head of the queue, in one outbound append. When the
// outbound queue is over its limit they stay until the next drain: call Flush from the OnDrain hook.
func (q *AckQueue[A]) Flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	n := 0
	for n < len(q.items) && q.items[n].ready {
		n++
	}
	if n == 0 {
		return
	}
	b, ok := q.c.Begin()
	if !ok {
		return
	}
	for i := range q.items[:n] {
		b = q.encode(b, q.items[i].a)
		q.items[i] = pendingAck[A]{}
	}
	q.c.Commit(b)
	q.items = q.items[n:]
	q.first += uint64(n)
	if len(q.items) == 0 {
		q.items = nil // a burst's memory goes back; an idle connection holds none
	}
	q.wakeLocked()
}

// wakeLocked releases a reader waiting for room, and Wait when the queue is empty.
func (q *AckQueue[A]) wakeLocked() {
	if q.room != nil && (len(q.items) < MaxPendingAcks || q.err != nil) {
		close(q.room)
		q.room = nil
	}
	if q.drains != nil && (len(q.items) == 0 || q.err != nil) {
		close(q.drains)
		q.drains = nil
	}
}

// Len returns the acknowledgements queued.
func (q *AckQueue[A]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Wait waits, up to d, until every queued acknowledgement has been written to the outbound queue (or a
// write failed): a STOMP DISCONNECT's receipt, then the close, must not overtake them. Reader goroutine.
func (q *AckQueue[A]) Wait(d time.Duration) {
	q.mu.Lock()
	if len(q.items) == 0 || q.err != nil {
		q.mu.Unlock()
		return
	}
	if q.drains == nil {
		q.drains = make(chan struct{})
	}
	ch := q.drains
	q.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-q.c.Done():
	}
}
