package stomp

// Receipts on a durable virtual host (one with a store block). A SEND whose message must persist (a
// persistent queue message, a retained message, a copy kept for an offline MQTT session) carries a
// virtualhost.Tracker; its RECEIPT leaves only once those writes are durable. Receipts keep the order of
// the frames they answer, so a DISCONNECT receipt still means every earlier frame was processed and its
// writes are durable. The reader goroutine never waits for the store: receipts queue (bounded by
// maxHeldReceipts) and leave as their writes complete. A failed write answers with an ERROR frame and
// closes the connection, and the receipt is never sent, so the client knows the message may be lost.

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lyremq/lyre/virtualhost"
)

var errStoreWrite = errors.New("stomp: store write failed; message not acknowledged")

// durableReceipts orders a session's receipts behind the writes they wait for.
type durableReceipts struct {
	mu     sync.Mutex
	items  []pendingReceipt
	first  uint64 // number of items[0]
	failed bool
}

type pendingReceipt struct {
	id    string
	ready bool
}

// tracker returns the tracker of the frame being handled, made on first use, on a durable host; nil
// elsewhere. Reader goroutine.
func (s *session) tracker() *virtualhost.Tracker {
	if s.host == nil || !s.host.Durable() {
		return nil
	}
	if s.frameTr == nil {
		s.frameTr = &virtualhost.Tracker{}
	}
	return s.frameTr
}

// receipt answers a frame's receipt header once the writes of the frame's messages are durable, in
// frame order. Reader goroutine.
func (s *session) receipt(id string) {
	tr := s.frameTr
	s.frameTr = nil
	dr := s.durable
	if dr == nil {
		if tr == nil {
			s.sendReceipt(id)
			return
		}
		dr = &durableReceipts{}
		s.durable = dr
	}
	dr.mu.Lock()
	if dr.failed {
		dr.mu.Unlock()
		return
	}
	if tr == nil && len(dr.items) == 0 {
		dr.mu.Unlock()
		s.sendReceipt(id)
		return
	}
	if len(dr.items) >= maxHeldReceipts {
		dr.mu.Unlock()
		s.c.Close(ErrOutboundFull)
		return
	}
	n := dr.first + uint64(len(dr.items))
	dr.items = append(dr.items, pendingReceipt{id: id, ready: tr == nil})
	dr.mu.Unlock()
	if tr == nil {
		s.flushDurable()
		return
	}
	tr.Then(func(err error) { s.receiptDone(n, err) })
}

// frameDone drops the tracker of a frame that asked for no receipt: nothing waits for its writes.
func (s *session) frameDone() { s.frameTr = nil }

func (s *session) receiptDone(n uint64, err error) {
	dr := s.durable
	dr.mu.Lock()
	if err != nil {
		dr.failed = true
		dr.mu.Unlock()
		s.sendError("store write failed", "the message was not stored; it may be lost: "+err.Error(), "", false)
		s.c.CloseAfter(fmt.Errorf("%w: %w", errStoreWrite, err), s.cfg.DieDelay)
		return
	}
	if n >= dr.first && n-dr.first < uint64(len(dr.items)) {
		dr.items[n-dr.first].ready = true
	}
	dr.mu.Unlock()
	s.flushDurable()
}

// flushDurable sends the ready receipts at the head of the queue, in order.
func (s *session) flushDurable() {
	dr := s.durable
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.failed {
		return
	}
	n := 0
	for n < len(dr.items) && dr.items[n].ready {
		s.sendReceipt(dr.items[n].id)
		n++
	}
	dr.items = dr.items[n:]
	dr.first += uint64(n)
}

// waitReceipts waits, up to d, until no receipt waits for its writes: DISCONNECT closes the connection
// right after its own receipt, which must not overtake them. Reader goroutine.
func (s *session) waitReceipts(d time.Duration) {
	dr := s.durable
	if dr == nil {
		return
	}
	deadline := time.Now().Add(d)
	for wait := 100 * time.Microsecond; time.Now().Before(deadline); wait = min(2*wait, 10*time.Millisecond) {
		dr.mu.Lock()
		done := len(dr.items) == 0 || dr.failed
		dr.mu.Unlock()
		if done {
			return
		}
		time.Sleep(wait)
	}
}
