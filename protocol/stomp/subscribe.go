package stomp

import (
	"strconv"
	"strings"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

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
