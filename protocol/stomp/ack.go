package stomp

import (
	"slices"
	"sort"
	"strconv"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/router"
)

// pendingAck is one queue delivery awaiting ACK or NACK.
type pendingAck struct {
	ackID uint64
	msgID uint64
	seq   uint64
	rs    *router.Subscription // which route's consumer delivered it
}

// ack handles ACK and NACK (STOMP 1.2 "ACK", "NACK"). 1.2 names the delivery by the MESSAGE's ack header
// (id); 1.1 by message-id and subscription; 1.0 by message-id. In client mode an ACK or NACK covers
// every earlier unacknowledged message of the subscription too.
func (s *session) ack(f *frame.Frame, nack bool) error {
	var sub *subscription
	var idx int
	if s.version >= v12 {
		ackID, err := s.parseAckID(f)
		if err != nil {
			return err
		}
		s.mu.Lock()
		sub, idx = s.findAckIDLocked(ackID)
	} else {
		var one [1]*subscription
		msgID, cands, err := s.parseMessageID(f, one[:0])
		if err != nil {
			return err
		}
		s.mu.Lock()
		sub, idx = findMessageIDLocked(cands, msgID)
	}
	if sub == nil {
		s.mu.Unlock()
		return nil // already acknowledged, or a topic delivery: nothing to settle
	}
	// s.mu is held from the search to here, so the delivery found is still pending.
	var settled []pendingAck
	if sub.mode == ackClient {
		settled = slices.Clone(sub.pending[:idx+1])
		sub.pending = slices.Delete(sub.pending, 0, idx+1)
	} else {
		settled = []pendingAck{sub.pending[idx]}
		sub.pending = slices.Delete(sub.pending, idx, idx+1)
	}
	s.mu.Unlock()
	sub.settle(settled, nack)
	return nil
}

// parseAckID reads the id header of a STOMP 1.2 ACK or NACK: an ack number this session issued.
func (s *session) parseAckID(f *frame.Frame) (uint64, error) {
	raw, ok := f.Header.Contains(frame.Id)
	if !ok {
		return 0, protoErr("missing id", "%s requires an id header in STOMP 1.2", f.Command)
	}
	ackID, err := strconv.ParseUint(raw, 10, 64)
	s.mu.Lock()
	issued := s.ackSeq
	s.mu.Unlock()
	if err != nil || ackID == 0 || ackID > issued {
		return 0, protoErr("unknown ack id", "%s id %q does not name a message sent in this session", f.Command, raw)
	}
	return ackID, nil
}

// findAckIDLocked finds the pending delivery numbered ackID: its subscription (nil when none holds it)
// and its index there. s.mu is held.
func (s *session) findAckIDLocked(ackID uint64) (*subscription, int) {
	for _, cand := range s.subs {
		i := sort.Search(len(cand.pending), func(i int) bool { return cand.pending[i].ackID >= ackID })
		if i < len(cand.pending) && cand.pending[i].ackID == ackID {
			return cand, i
		}
	}
	return nil, 0
}

// parseMessageID reads the message-id header of a STOMP 1.0 or 1.1 ACK or NACK, and appends to cands the
// subscriptions that may hold the delivery: the one its subscription header names (required in 1.1),
// else every subscription.
func (s *session) parseMessageID(f *frame.Frame, cands []*subscription) (uint64, []*subscription, error) {
	raw, ok := f.Header.Contains(frame.MessageId)
	if !ok {
		return 0, nil, protoErr("missing message-id", "%s requires a message-id header before STOMP 1.2", f.Command)
	}
	msgID, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return 0, nil, protoErr("unknown message-id", "%s message-id %q does not name a message of this server", f.Command, raw)
	}
	if sid, ok := f.Header.Contains(frame.Subscription); ok {
		sub := s.subs[sid]
		if sub == nil {
			return 0, nil, protoErr("unknown subscription", "no subscription has id %q", sid)
		}
		return msgID, append(cands, sub), nil
	}
	if s.version >= v11 {
		return 0, nil, protoErr("missing subscription", "%s requires a subscription header in STOMP 1.1", f.Command)
	}
	for _, c := range s.subs {
		cands = append(cands, c)
	}
	return msgID, cands, nil
}

// findMessageIDLocked finds the first pending delivery of message msgID among cands: its subscription
// (nil when none holds it) and its index there. session.mu is held.
func findMessageIDLocked(cands []*subscription, msgID uint64) (*subscription, int) {
	for _, cand := range cands {
		for i := range cand.pending {
			if cand.pending[i].msgID == msgID {
				return cand, i
			}
		}
	}
	return nil, 0
}

// settle acknowledges settled deliveries to the queue consumers that delivered them, or refuses them
// for a NACK (the queue counts a redelivery).
func (sub *subscription) settle(settled []pendingAck, nack bool) {
	for _, p := range settled {
		cons := sub.consumer(p.rs)
		if cons == nil {
			continue
		}
		if nack {
			cons.Nack(p.seq)
		} else {
			cons.Ack(p.seq)
		}
	}
}

// consumer returns the queue consumer of the route rs; reader goroutine only.
func (sub *subscription) consumer(rs *router.Subscription) *router.Consumer {
	for _, r := range sub.routes {
		if r.rs == rs {
			return r.cons
		}
	}
	return nil
}
