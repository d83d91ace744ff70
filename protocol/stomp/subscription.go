package stomp

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
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

// pendingAck is one queue delivery awaiting ACK or NACK.
type pendingAck struct {
	ackID uint64
	msgID uint64
	seq   uint64
	rs    *router.Subscription // which route's consumer delivered it
}

// subscribe handles SUBSCRIBE (STOMP 1.2 "SUBSCRIBE"). Queue destinations get a competing consumer;
// topic filters may use wildcards and regex segments and receive the retained messages they match.
func (s *session) subscribe(f *frame.Frame) error {
	dest, ok := f.Header.Contains(frame.Destination)
	if !ok || dest == "" {
		return protoErr("missing destination", "SUBSCRIBE requires a destination header")
	}
	id, hasID := f.Header.Contains(frame.Id)
	if !hasID || id == "" {
		if s.version >= v11 {
			return protoErr("missing id", "SUBSCRIBE requires an id header in STOMP 1.1 and later")
		}
		id, hasID = dest, false // STOMP 1.0: the destination names the subscription
	}
	if s.subs[id] != nil {
		return protoErr("duplicate subscription", "subscription id %q is already in use", id)
	}
	sub := &subscription{s: s, id: id, dest: dest}
	switch a := f.Header.Get(frame.Ack); a {
	case "", frame.AckAuto:
		sub.mode = ackAuto
	case frame.AckClient:
		sub.mode = ackClient
	case frame.AckClientIndividual:
		if s.version < v11 {
			return protoErr("invalid ack mode", "client-individual needs STOMP 1.1 or later")
		}
		sub.mode = ackClientIndividual
	default:
		return protoErr("invalid ack mode", "ack must be auto, client or client-individual, got %q", a)
	}
	if src, ok := f.Header.Contains("selector"); ok && strings.TrimSpace(src) != "" {
		sel, err := parseSelector(src)
		if err != nil {
			return &frameError{msg: "invalid selector", detail: err.Error(), cause: err}
		}
		sub.sel = sel
	}
	qo, err := s.queueOptions(f, sub)
	if err != nil {
		return err
	}

	persistent := f.Header.Get("persistent") == "true"
	names := s.g.SplitComposite(dest)
	filters := make([]router.Filter, len(names))
	gates := make([]*virtualhost.Gate, len(names))
	for i, name := range names {
		flt, err := s.g.ParseFilter(name)
		if err != nil {
			return &frameError{msg: "invalid destination", detail: err.Error(), cause: err}
		}
		if flt, err = s.tempFilter(name, flt); err != nil {
			return err
		}
		if gates[i], err = s.maySubscribe(name, flt, persistent && flt.Kind == router.Topic); err != nil {
			return err
		}
		if sub.sel != nil && persistent {
			// The subscription's queue keeps every match; messages the selector refused would pile up there.
			return protoErr("invalid selector", "%q: selectors are not supported on durable subscriptions", name)
		}
		if qo.Browser && !queueKind(flt.Kind) {
			return protoErr("invalid browser subscription", "%q: only queues can be browsed", name)
		}
		switch flt.Kind {
		case router.Topic:
			if persistent {
				if !hasID || len(names) != 1 {
					return protoErr("invalid durable subscription", "a persistent SUBSCRIBE needs an id and one topic")
				}
				d, err := s.durable(id, name, flt)
				if err != nil {
					return err
				}
				sub.dsub = &d
				flt = literalFilter(d)
			}
		case router.TempTopic, router.Queue, router.TempQueue:
		case router.DurableSub:
			if !flt.IsLiteral() {
				return protoErr("invalid destination", "%q: a durable subscription is named, not matched", name)
			}
			d := flt.Destination()
			if err := checkDsubName(d.Path); err != nil {
				return &frameError{msg: "invalid durable subscription", detail: err.Error(), cause: err}
			}
			sub.dsub = &d
		default:
			return protoErr("invalid destination", "%q: %s destinations cannot be subscribed to", name, flt.Kind)
		}
		filters[i] = flt
	}
	for i, flt := range filters {
		rs := &router.Subscription{Filter: flt, Sink: virtualhost.SinkFor(sub, gates[i]), QoS: 1, ID: id}
		r := route{rs: rs}
		if queueKind(flt.Kind) {
			r.cons, err = s.rt.Consume(rs, qo)
			if err == nil {
				s.cons.Add(r.cons)
			}
		} else {
			err = s.rt.Subscribe(rs)
		}
		if err != nil {
			sub.close()
			if flt.Kind == router.DurableSub {
				return durableError(names[i], err)
			}
			return &frameError{msg: "subscribe failed", detail: names[i] + ": " + err.Error(), cause: err}
		}
		sub.routes = append(sub.routes, r)
	}
	s.subs[id] = sub
	// Retained messages after the subscription exists, so none published meanwhile is missed. They go
	// through the backlog: all of them are delivered, as fast as the client reads (DESIGN.md §4).
	var items []retainedItem
	for _, r := range sub.routes {
		if r.cons != nil {
			continue
		}
		for _, m := range virtualhost.AllowedRetained(r.rs.Sink, s.rt.Retained(r.rs.Filter)) {
			items = append(items, retainedItem{sub: sub, d: router.Delivery{Msg: m, Sub: r.rs, Retained: true}})
		}
	}
	if len(items) > 0 {
		s.bmu.Lock()
		s.backlog = append(s.backlog, items...)
		s.pumpBacklogLocked()
		s.bmu.Unlock()
	}
	return nil
}

// queueOptions reads the SUBSCRIBE headers that configure queue consumers (Apollo's): prefetch-count
// (or ActiveMQ's activemq.prefetchSize) or credit (count[,bytes]) for the unacknowledged window, selector, browser, exclusive, from-seq and
// include-seq. Topic routes ignore what does not apply to them.
func (s *session) queueOptions(f *frame.Frame, sub *subscription) (router.ConsumerOptions, error) {
	o := router.ConsumerOptions{Credit: DefaultCredit, AutoAck: sub.mode == ackAuto, Owner: protocol.Owner(s.principal)}
	// activemq.prefetchSize is ActiveMQ's name for the same window, so its clients keep their setting.
	for _, name := range []string{"activemq.prefetchSize", "prefetch-count"} {
		if p, ok := f.Header.Contains(name); ok {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 {
				return o, protoErr("invalid "+name, "%s must be a positive integer, got %q", name, p)
			}
			o.Credit = n
		}
	}
	if c, ok := f.Header.Contains("credit"); ok {
		count, size, _ := strings.Cut(c, ",")
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if err != nil || n <= 0 {
			return o, protoErr("invalid credit", "credit must be count[,bytes] with a positive count, got %q", c)
		}
		o.Credit = n
		if size != "" {
			b, err := strconv.ParseInt(strings.TrimSpace(size), 10, 64)
			if err != nil || b < 0 {
				return o, protoErr("invalid credit", "credit must be count[,bytes] with a byte count >= 0, got %q", c)
			}
			o.CreditBytes = b
		}
	}
	if sub.sel != nil {
		o.Match = sub.sel.matches
	}
	o.Browser = f.Header.Get("browser") == "true"
	if o.Browser {
		// A browser consumes nothing: its messages need no acknowledgement.
		sub.mode, o.AutoAck = ackAuto, true
	}
	o.Exclusive = f.Header.Get("exclusive") == "true"
	if v, ok := f.Header.Contains("from-seq"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 {
			return o, protoErr("invalid from-seq", "from-seq must be a sequence number or -1, got %q", v)
		}
		o.FromSeq = n
	}
	if v, ok := f.Header.Contains("include-seq"); ok && v != "" {
		sub.seqHeader = v
	}
	return o, nil
}

func queueKind(k router.Kind) bool {
	return k == router.Queue || k == router.TempQueue || k == router.DurableSub
}

// retainedItem is a retained message waiting for room in the outbound queue.
type retainedItem struct {
	sub *subscription
	d   router.Delivery
}

// pumpBacklogLocked delivers waiting retained messages until the outbound queue is full; the OnDrain
// hook calls it again. s.bmu is held, so deliveries keep their order.
func (s *session) pumpBacklogLocked() {
	for len(s.backlog) > 0 {
		it := s.backlog[0]
		if !it.sub.closed.Load() {
			if ok, full := it.sub.enqueue(it.d); !ok && full {
				return
			}
		}
		s.backlog[0] = retainedItem{}
		s.backlog = s.backlog[1:]
	}
	s.backlog = nil
}

// unsubscribe handles UNSUBSCRIBE (STOMP 1.2 "UNSUBSCRIBE"); 1.0 clients may name the destination instead.
func (s *session) unsubscribe(f *frame.Frame) error {
	id, ok := f.Header.Contains(frame.Id)
	byDest := false
	if !ok || id == "" {
		if s.version >= v11 {
			return protoErr("missing id", "UNSUBSCRIBE requires an id header in STOMP 1.1 and later")
		}
		id, byDest = f.Header.Get(frame.Destination), true
	}
	sub := s.subs[id]
	if sub == nil && byDest {
		// STOMP 1.0 lets UNSUBSCRIBE name the destination of a subscription made with an id.
		for _, c := range s.subs {
			if c.dest == id {
				sub = c
				break
			}
		}
	}
	if sub == nil {
		return protoErr("unknown subscription", "no subscription has id %q", id)
	}
	delete(s.subs, sub.id)
	sub.close()
	if sub.dsub != nil && f.Header.Get("persistent") == "true" {
		return s.destroyDurable(*sub.dsub, sub.dest)
	}
	return nil
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
	sub.routes = nil
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

// Deliver encodes a MESSAGE frame into the connection's outbound queue. It runs on the publisher's
// goroutine, possibly under a router queue lock, so it never blocks and never calls the router. When the
// queue is full it returns false: the router counts a dropped topic message, or keeps a queue message and
// waits for Consumer.Resume, which the session calls once the connection drains.
func (sub *subscription) Deliver(d router.Delivery) bool {
	s := sub.s
	ok, full := sub.enqueue(d)
	if !full {
		if ok && d.Seq == 0 && d.Msg != nil && (d.Msg.Persistent || d.Paced) {
			sub.holdBack(d.Msg)
		}
		return ok
	}
	if d.Seq != 0 || d.QueueSeq != 0 || d.BrowseEnd {
		// A queue keeps what the sink refuses, browsers included: resume it on drain.
		s.cons.Blocked(s.c)
	} else {
		s.h.dropped.Add(1)
	}
	return false
}

// holdBack asks the publisher of a topic message that must not be lost lightly (persistent, or a topic
// whose policy is block) to hold back while this connection is over half its outbound limit: the
// message is taken, the next ones wait for room rather than being dropped at the limit (protocol.Pace).
func (sub *subscription) holdBack(m *router.Message) {
	c := sub.s.c
	if pub, ok := m.Publisher.(protocol.Publisher); ok && any(pub) != any(c) && c.OverWindow() {
		pub.HoldFor(c)
	}
}

// enqueue encodes d unless the subscription has ended or its selector refuses it (ok, not full) or the
// outbound queue is full or closing (not ok, full).
func (sub *subscription) enqueue(d router.Delivery) (ok, full bool) {
	s := sub.s
	if sub.closed.Load() {
		return false, false
	}
	if sub.sel != nil && d.QueueSeq == 0 && !d.BrowseEnd && !sub.sel.matches(d.Msg) {
		return true, false // a topic message filtered out, not dropped; queues apply the selector themselves
	}
	b, ok := s.c.Begin()
	if !ok {
		return false, true
	}
	if d.BrowseEnd {
		s.c.Commit(sub.appendBrowseEnd(b))
		return true, false
	}
	var ackID uint64
	if sub.mode != ackAuto {
		// Under the outbound lock, so ack numbers follow the order frames are queued in.
		s.mu.Lock()
		if sub.closed.Load() {
			s.mu.Unlock()
			s.c.Commit(b)
			return false, false
		}
		s.ackSeq++
		ackID = s.ackSeq
		if d.Seq != 0 {
			sub.pending = append(sub.pending, pendingAck{ackID: ackID, msgID: d.Msg.ID, seq: d.Seq, rs: d.Sub})
		}
		s.mu.Unlock()
	}
	s.c.Commit(sub.appendMessage(b, d, ackID))
	if !s.sent.Load() { // load first: no shared write per delivery on a busy connection
		s.sent.Store(true)
	}
	return true, false
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
		if !reservedHeader(h.Name) && h.Name != s.cfg.AddRedeliveriesHeader && h.Name != sub.seqHeader {
			b = appendHeader(b, v, h.Name, h.Value)
		}
	}
	b = appendHeaderUint(b, frame.ContentLength, uint64(len(m.Body)))
	return appendBody(b, m.Body)
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
