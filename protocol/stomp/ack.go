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
	found := false
	if s.version >= v12 {
		raw, ok := f.Header.Contains(frame.Id)
		if !ok {
			return protoErr("missing id", "%s requires an id header in STOMP 1.2", f.Command)
		}
		ackID, err := strconv.ParseUint(raw, 10, 64)
		s.mu.Lock()
		issued := s.ackSeq
		s.mu.Unlock()
		if err != nil || ackID == 0 || ackID > issued {
			return protoErr("unknown ack id", "%s id %q does not name a message sent in this session", f.Command, raw)
		}
		s.mu.Lock()
		for _, cand := range s.subs {
			i := sort.Search(len(cand.pending), func(i int) bool { return cand.pending[i].ackID >= ackID })
			if i < len(cand.pending) && cand.pending[i].ackID == ackID {
				sub, idx, found = cand, i, true
				break
			}
		}
		if !found {
			s.mu.Unlock()
			return nil // already acknowledged, or a topic delivery: nothing to settle
		}
	} else {
		raw, ok := f.Header.Contains(frame.MessageId)
		if !ok {
			return protoErr("missing message-id", "%s requires a message-id header before STOMP 1.2", f.Command)
		}
		msgID, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return protoErr("unknown message-id", "%s message-id %q does not name a message of this server", f.Command, raw)
		}
		var cands []*subscription
		if sid, ok := f.Header.Contains(frame.Subscription); ok {
			if sub := s.subs[sid]; sub != nil {
				cands = []*subscription{sub}
			} else {
				return protoErr("unknown subscription", "no subscription has id %q", sid)
			}
		} else if s.version >= v11 {
			return protoErr("missing subscription", "%s requires a subscription header in STOMP 1.1", f.Command)
		} else {
			for _, c := range s.subs {
				cands = append(cands, c)
			}
		}
		s.mu.Lock()
		for _, cand := range cands {
			for i := range cand.pending {
				if cand.pending[i].msgID == msgID {
					sub, idx, found = cand, i, true
					break
				}
			}
			if found {
				break
			}
		}
		if !found {
			s.mu.Unlock()
			return nil
		}
	}
	// s.mu is held here.
	var settled []pendingAck
	if sub.mode == ackClient {
		settled = slices.Clone(sub.pending[:idx+1])
		sub.pending = slices.Delete(sub.pending, 0, idx+1)
	} else {
		settled = []pendingAck{sub.pending[idx]}
		sub.pending = slices.Delete(sub.pending, idx, idx+1)
	}
	s.mu.Unlock()
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
	return nil
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
