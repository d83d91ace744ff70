package stomp

import (
	"errors"
	"fmt"

	"github.com/go-stomp/stomp/v3/frame"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// errStoreWrite closes a connection whose receipt waited for a write that failed.
var errStoreWrite = errors.New("stomp: store write failed; message not acknowledged")

// tracker returns the tracker of the frame being handled, made on first use, on a durable host; nil
// elsewhere. Reader goroutine.
func (s *session) tracker() *virtualhost.Tracker {
	if s.host == nil || !s.host.TracksWrites() {
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
