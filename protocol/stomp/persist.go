package stomp

// Receipts. On a durable virtual host (one with a store block) a SEND whose message must persist (a
// persistent queue message, a retained message, a copy kept for a durable subscription) carries a
// virtualhost.Tracker; its RECEIPT leaves only once those writes are durable. Receipts keep the order of
// the frames they answer, so a DISCONNECT receipt still means every earlier frame was processed and its
// writes are durable. The reader goroutine never waits for the store: receipts queue in a
// protocol.AckQueue (the reader waits only when MaxPendingAcks are held, the same policy as MQTT's) and
// leave as their writes complete. A failed write answers with an ERROR frame and closes the connection,
// and the receipt is never sent, so the client knows the message may be lost.

import (
	"errors"
	"fmt"
	"slices"

	"github.com/go-stomp/stomp/v3/frame"
	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/virtualhost"
)

var errStoreWrite = errors.New("stomp: store write failed; message not acknowledged")

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

// receipt answers a frame's receipt header once the writes of the frame's messages are durable, after
// every receipt before it (protocol.AckQueue). Reader goroutine.
func (s *session) receipt(id string) error {
	tr := s.frameTr
	s.frameTr = nil
	q := s.acks.Load()
	if q == nil {
		q = protocol.NewAckQueue(s.c, s.appendReceipt, s.receiptFailed)
		s.acks.Store(q)
	}
	var wait protocol.Durable
	if tr != nil {
		wait = tr // a nil *Tracker must not become a non-nil interface
	}
	return q.Add(wait, id)
}

// appendReceipt encodes a RECEIPT frame.
func (s *session) appendReceipt(b []byte, id string) []byte {
	b = appendCommand(b, frame.RECEIPT)
	b = appendHeader(b, s.version, frame.ReceiptId, id)
	s.sent.Store(true)
	return appendBody(b, nil)
}

// receiptFailed answers a failed write with an ERROR frame; the receipt is never sent, so the client
// knows the message may be lost.
func (s *session) receiptFailed(err error) {
	s.sendError("store write failed", "the message was not stored; it may be lost: "+err.Error(), "", false)
	s.c.CloseAfter(fmt.Errorf("%w: %w", errStoreWrite, err), s.cfg.DieDelay)
}

// frameDone drops the tracker of a frame that asked for no receipt: nothing waits for its writes.
func (s *session) frameDone() { s.frameTr = nil }

// Durable subscriptions on a durable host: the record (id and topic) is stored at the persistent
// SUBSCRIBE (its receipt waits for it) and deleted with the subscription; the persistent messages its
// queue holds are journalled by the router like a queue's. A publisher waiting for its message to be
// durable also waits for the copy the bridge makes into each durable subscription's queue. At startup
// RestoreDurables rebuilds the bridges before any client connects.

// journalDurable stores (put) or deletes d's record on a durable host; the frame's receipt waits for it.
func (s *session) journalDurable(d *durable, put bool) {
	tr := s.tracker()
	if tr == nil {
		return
	}
	var op store.Op = store.DeleteDurableSub{ID: virtualhost.TopicKey(d.queue)}
	if put {
		op = store.PutDurableSub{Sub: store.DurableSub{ID: virtualhost.TopicKey(d.queue), Filter: d.filter}}
	}
	s.host.Commit(tr.Track(), op)
}

// trackCopy starts the wait of m's publisher for the copy a durable bridge will make; nil when nobody
// waits or the copy will not be stored (a non-persistent message).
func trackCopy(m *router.Message) func(error) {
	if m.Tracker == nil || !m.Persistent {
		return nil
	}
	return m.Tracker.Track()
}

// copyTracker gives the bridge's copy q its own tracker relaying to wait; the returned function, called
// once q is published, ends the wait when q's writes are done (at once when there were none).
func copyTracker(q *router.Message, wait func(error)) func() {
	q.Tracker = nil // the original's publisher waits through wait, not through the original tracker
	if wait == nil {
		return func() {}
	}
	tr := &virtualhost.Tracker{}
	q.Tracker = tr
	return func() { tr.Then(wait) }
}

// releaseWaits ends the waits of copies that will never be made (the subscription is gone).
func releaseWaits(waits []func(error)) {
	for _, w := range waits {
		if w != nil {
			w(nil)
		}
	}
}

// RestoreDurables rebuilds the durable subscriptions recovered by host's store (see
// virtualhost.Host.TakeDurableSubs): their topic filters are parsed with connector c's STOMP grammar. It
// returns how many it restored.
func (h *Handler) RestoreDurables(host *virtualhost.Host, c *conf.Connector) (int, error) {
	recs := host.TakeDurableSubs()
	if len(recs) == 0 {
		return 0, nil
	}
	set, err := protocol.NewSettings(*c)
	if err != nil {
		return 0, err
	}
	g := set.STOMPGrammar
	for _, rec := range recs {
		queue, ok := virtualhost.ParseTopicKey(rec.ID)
		if !ok || queue.Kind != router.DurableSub {
			return 0, fmt.Errorf("stomp: restore durable subscription %q: %w", rec.ID, store.ErrCorrupt)
		}
		f, err := g.ParseFilter(rec.Filter)
		if err != nil {
			return 0, fmt.Errorf("stomp: restore durable subscription %q: %w", rec.ID, err)
		}
		key := keyOf(host.Router, queue.Path)
		d := &durable{h: h, key: key, filter: rec.Filter, g: g, queue: queue}
		d.bridge = &router.Subscription{Filter: f, Sink: d, QoS: 1, ID: queue.Path[len(queue.Path)-1]}
		if err := host.Router.Subscribe(d.bridge); err != nil {
			return 0, fmt.Errorf("stomp: restore durable subscription %q: %w", rec.ID, err)
		}
		h.mu.Lock()
		if h.durables == nil {
			h.durables = make(map[durableKey]*durable)
		}
		h.durables[key] = d
		h.mu.Unlock()
	}
	return len(recs), nil
}

// RestoreAll restores every durable host's durable subscriptions (see RestoreDurables), using for each
// host the first connector serving STOMP (or the defaults), and returns the count per host name.
func (h *Handler) RestoreAll(cs []conf.Connector) (map[string]int, error) {
	counts := make(map[string]int)
	for _, host := range h.hosts.Hosts() {
		if !host.Durable() {
			continue
		}
		c := &conf.Connector{}
		for i := range cs {
			if slices.Contains(cs[i].Protocols(), protocol.STOMP) {
				c = &cs[i]
				break
			}
		}
		n, err := h.RestoreDurables(host, c)
		if err != nil {
			return counts, fmt.Errorf("virtual_host %q: %w", host.Name, err)
		}
		counts[host.Name] = n
	}
	return counts, nil
}
