package stomp

import (
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
)

// ackMode is a subscription's STOMP ack mode (STOMP 1.2 "SUBSCRIBE ack Header").
type ackMode uint8

const (
	ackAuto             ackMode = iota // the server considers a message acknowledged once sent
	ackClient                          // ACK is cumulative: it covers every earlier message of the subscription
	ackClientIndividual                // ACK covers one message
)

// subscription is one SUBSCRIBE: one router subscription or queue consumer per destination it names.
// It is the router.Sink of all of them.
type subscription struct {
	s      *session
	id     string
	dest   string // as written in SUBSCRIBE
	mode   ackMode
	routes []route // reader goroutine only

	dsub *router.Destination // the durable subscription it consumes, if any
	// held is what a reload's re-check judges: one entry per destination, fixed before the subscription
	// is published in session.subs.
	held []protocol.Held

	closed atomic.Bool // set by UNSUBSCRIBE; late deliveries are refused
	sel    *selector   // nil: every message
	// seqHeader, when set (include-seq), names the MESSAGE header carrying a queue message's sequence number.
	seqHeader string

	// pending holds the unacknowledged queue deliveries in delivery order (ackID ascending); guarded by
	// session.mu. Its length is bounded by the consumer credit the router enforces.
	pending []pendingAck
}

type route struct {
	rs   *router.Subscription
	cons *router.Consumer // nil for a topic subscription
}

// close ends the subscription's routes. Unacknowledged queue messages return to their queues.
func (sub *subscription) close() {
	s := sub.s
	sub.closed.Store(true)
	s.mu.Lock()
	sub.pending = nil
	s.mu.Unlock()
	for _, r := range sub.routes {
		if r.cons != nil {
			s.cons.Remove(r.cons)
			r.cons.Close()
		} else {
			s.rt.Unsubscribe(r.rs)
		}
	}
	s.routes -= len(sub.routes)
	sub.routes = nil
}

// Deliver encodes a MESSAGE frame into the connection's outbound queue. It runs on the publisher's
// goroutine, possibly under a router queue lock, so it never blocks and never calls the router. When the
// queue is full it returns false: the router counts a dropped topic message, or keeps a queue message and
// waits for Consumer.Resume, which the session calls once the connection drains.
func (sub *subscription) Deliver(d router.Delivery) bool {
	s := sub.s
	ok, full, over := sub.enqueue(d)
	if !full {
		if over && d.Seq == 0 && d.Msg != nil && (d.Msg.Persistent || d.Paced) {
			sub.holdBack(d.Msg)
		}
		return ok
	}
	if d.Seq != 0 || d.QueueSeq != 0 || d.BrowseEnd {
		// A queue keeps what the sink refuses, browsers included: resume it on drain.
		s.cons.Blocked(s.c)
	} else {
		s.h.dropped.Add(1)
		s.c.CountDropped(1)
	}
	return false
}

// holdBack asks the publisher of a topic message that must not be lost lightly (persistent, or a topic
// whose policy is block), taken while this connection is over half its outbound limit, to hold back:
// the next ones wait for room rather than being dropped at the limit (protocol.Pace).
func (sub *subscription) holdBack(m *router.Message) {
	c := sub.s.c
	if pub, ok := m.Publisher.(protocol.Publisher); ok && any(pub) != any(c) {
		pub.HoldFor(c)
	}
}

// enqueue encodes d unless the subscription has ended or its selector refuses it (ok, not full) or the
// outbound queue is full or closing (not ok, full); over reports a queue past half its limit.
func (sub *subscription) enqueue(d router.Delivery) (ok, full, over bool) {
	s := sub.s
	if sub.closed.Load() {
		return false, false, false
	}
	if sub.sel != nil && d.QueueSeq == 0 && !d.BrowseEnd && !sub.sel.matches(d.Msg) {
		return true, false, false // a topic message filtered out, not dropped; queues apply the selector themselves
	}
	if d.BrowseEnd {
		b, ok := s.c.Begin()
		if !ok {
			return false, true, false
		}
		s.c.Commit(sub.appendBrowseEnd(b))
		return true, false, false
	}
	var ackID uint64
	if sub.mode != ackAuto {
		// The session lock before the outbound lock (the order in protocol's doc), held across both, so
		// ack numbers follow the order frames are queued in.
		s.mu.Lock()
		defer s.mu.Unlock()
		if sub.closed.Load() {
			return false, false, false
		}
	}
	b, ok := s.c.Begin()
	if !ok {
		return false, true, false
	}
	if sub.mode != ackAuto {
		s.ackSeq++
		ackID = s.ackSeq
		if d.Seq != 0 {
			sub.pending = append(sub.pending, pendingAck{ackID: ackID, msgID: d.Msg.ID, seq: d.Seq, rs: d.Sub})
		}
	}
	over = s.c.CommitOver(sub.appendMessage(b, d, ackID))
	// Every MESSAGE frame but the browse-end marker is counted here: live, retained, redelivered.
	s.c.CountOut(1)
	if !s.sent.Load() { // load first: no shared write per delivery on a busy connection
		s.sent.Store(true)
	}
	return true, false, over
}

// appendMessage encodes d as a MESSAGE frame (STOMP 1.2 "MESSAGE"). The destination is rendered in this
// connector's grammar, so a message published over MQTT reads as a STOMP name.
func (sub *subscription) appendMessage(b []byte, d router.Delivery, ackID uint64) []byte {
	s, m, v := sub.s, d.Msg, sub.s.version
	b = appendCommand(b, frame.MESSAGE)
	b = appendHeader(b, v, frame.Subscription, sub.id)
	b = appendHeaderUint(b, frame.MessageId, m.ID)
	if isTemp(m.Dest.Kind) {
		b = appendHeader(b, v, frame.Destination, s.renderTemp(m.Dest))
	} else {
		b = appendHeader(b, v, frame.Destination, s.g.RenderMessage(m))
	}
	if ackID != 0 && v >= v12 {
		b = appendHeaderUint(b, frame.Ack, ackID)
	}
	if m.ContentType != "" {
		b = appendHeader(b, v, frame.ContentType, m.ContentType)
	}
	if m.Persistent {
		b = append(b, "persistent:true\n"...)
	}
	if m.Expires > 0 {
		b = appendHeaderUint(b, "expires", uint64(m.Expires))
	}
	replyTo := len(m.ReplyTo.Path) > 0
	if replyTo {
		b = sub.appendReplyTo(b, m.ReplyTo)
	}
	// Header values are text: correlation data that is not UTF-8 is left out (see the package doc).
	corr := len(m.CorrelationData) > 0 && utf8.Valid(m.CorrelationData)
	if corr {
		b = appendHeader(b, v, "correlation-id", unsafe.String(&m.CorrelationData[0], len(m.CorrelationData)))
	}
	if d.Redeliveries > 0 {
		b = append(b, "redelivered:true\n"...)
	}
	if n := s.cfg.AddRedeliveriesHeader; n != "" {
		b = appendHeaderUint(b, n, uint64(d.Redeliveries))
	}
	if sub.seqHeader != "" && d.QueueSeq != 0 {
		b = appendHeaderUint(b, sub.seqHeader, d.QueueSeq)
	}
	for _, h := range m.Headers {
		if !reservedHeader(h.Name) && h.Name != s.cfg.AddRedeliveriesHeader && h.Name != sub.seqHeader &&
			!(replyTo && h.Name == "reply-to") && !(corr && h.Name == "correlation-id") {
			b = appendHeader(b, v, h.Name, h.Value)
		}
	}
	b = appendHeaderUint(b, frame.ContentLength, uint64(len(m.Body)))
	return appendBody(b, m.Body)
}

// appendReplyTo appends the reply-to header naming d in this connector's grammar (one of this session's
// temp destinations in its local form, as for destination). It renders through a buffer on the stack, so
// a delivery costs no allocation for it.
func (sub *subscription) appendReplyTo(b []byte, d router.Destination) []byte {
	s := sub.s
	if isTemp(d.Kind) && len(d.Path) > 1 && d.Path[0] == s.id {
		d.Path = d.Path[1:]
	}
	var buf [256]byte
	name := s.g.AppendRender(buf[:0], d)
	if len(name) == 0 {
		return b
	}
	// appendHeader copies the value and keeps no reference to it.
	return appendHeader(b, s.version, "reply-to", unsafe.String(&name[0], len(name)))
}

// appendBrowseEnd encodes the MESSAGE that tells a browser it has seen every message the queue held
// (Apollo's browser:end marker): no message-id, an empty body.
func (sub *subscription) appendBrowseEnd(b []byte) []byte {
	v := sub.s.version
	b = appendCommand(b, frame.MESSAGE)
	b = appendHeader(b, v, frame.Subscription, sub.id)
	b = appendHeader(b, v, frame.Destination, sub.dest)
	b = append(b, "message-id:\nbrowser:end\n"...)
	b = appendHeaderUint(b, frame.ContentLength, 0)
	return appendBody(b, nil)
}

var _ router.Sink = (*subscription)(nil)
