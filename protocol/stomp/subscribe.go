package stomp

import (
	"errors"
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
	sub, hasID, err := s.newSubscription(f)
	if err != nil {
		return err
	}
	qo, err := s.queueOptions(f, sub)
	if err != nil {
		return err
	}
	names := uniqueNames(s.g.SplitComposite(sub.dest))
	if s.routes+len(names) > s.cfg.MaxSubscriptions {
		return protoErr("too many subscriptions", "a connection may subscribe to at most %d destinations, each destination of a composite counting (max_subscriptions)", s.cfg.MaxSubscriptions)
	}
	req := subscribeRequest{
		sub:        sub,
		persistent: f.Header.Get("persistent") == "true",
		durableOK:  hasID && len(names) == 1,
		browser:    qo.Browser,
	}
	targets := make([]subTarget, len(names))
	for i, name := range names {
		if targets[i], err = s.resolveTarget(&req, name); err != nil {
			return err
		}
	}
	targets = uniqueTargets(targets)
	if err := s.attachRoutes(sub, targets, qo); err != nil {
		return err
	}
	for _, t := range targets {
		sub.held = append(sub.held, protocol.Held{Name: t.name, ID: sub.id, Filter: t.access, Whole: t.whole, Gated: t.gate != nil})
	}
	s.mu.Lock()
	s.subs[sub.id] = sub // under mu for Describe and a reload's re-check
	s.mu.Unlock()
	// Retained messages after the subscription exists, so none published meanwhile is missed.
	s.queueRetained(sub)
	return nil
}

// newSubscription reads the SUBSCRIBE headers that make the subscription: destination, id (hasID is
// false when a STOMP 1.0 destination names it), ack mode and selector.
func (s *session) newSubscription(f *frame.Frame) (sub *subscription, hasID bool, err error) {
	dest, ok := f.Header.Contains(frame.Destination)
	if !ok || dest == "" {
		return nil, false, protoErr("missing destination", "SUBSCRIBE requires a destination header")
	}
	id, hasID := f.Header.Contains(frame.Id)
	if !hasID || id == "" {
		if s.version >= v11 {
			return nil, false, protoErr("missing id", "SUBSCRIBE requires an id header in STOMP 1.1 and later")
		}
		id, hasID = dest, false // STOMP 1.0: the destination names the subscription
	}
	if s.subs[id] != nil {
		return nil, false, protoErr("duplicate subscription", "subscription id %q is already in use", id)
	}
	sub = &subscription{s: s, id: id, dest: dest}
	if sub.mode, err = s.parseAckMode(f.Header.Get(frame.Ack)); err != nil {
		return nil, false, err
	}
	if src, ok := f.Header.Contains("selector"); ok && strings.TrimSpace(src) != "" {
		if max := s.cfg.MaxSelectorLength; int64(len(src)) > max {
			return nil, false, protoErr("invalid selector", "a selector may hold at most %d bytes (max_selector_length)", max)
		}
		sel, err := parseSelector(src)
		if err != nil {
			return nil, false, &frameError{msg: "invalid selector", detail: err.Error(), cause: err}
		}
		sub.sel = sel
	}
	return sub, hasID, nil
}

// parseAckMode reads a SUBSCRIBE ack header.
func (s *session) parseAckMode(a string) (ackMode, error) {
	switch a {
	case "", frame.AckAuto:
		return ackAuto, nil
	case frame.AckClient:
		return ackClient, nil
	case frame.AckClientIndividual:
		if s.version < v11 {
			return ackAuto, protoErr("invalid ack mode", "client-individual needs STOMP 1.1 or later")
		}
		return ackClientIndividual, nil
	}
	return ackAuto, protoErr("invalid ack mode", "ack must be auto, client or client-individual, got %q", a)
}

// uniqueNames drops the repeats of a composite destination's names: each name makes one route, and a
// route per repeat would deliver each message once per repeat.
func uniqueNames(names []string) []string {
	if len(names) < 2 {
		return names
	}
	seen := make(map[string]bool, len(names))
	out := names[:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// uniqueTargets drops the targets whose route filter an earlier one has already: names written
// differently (escapes, a temporary destination's local and global names) may resolve to one filter.
func uniqueTargets(targets []subTarget) []subTarget {
	if len(targets) < 2 {
		return targets
	}
	seen := make(map[string]bool, len(targets))
	out := targets[:0]
	for _, t := range targets {
		if k := router.FilterKey(t.flt); !seen[k] {
			seen[k] = true
			out = append(out, t)
		}
	}
	return out
}

// subscribeRequest is what one SUBSCRIBE asks of each destination it names.
type subscribeRequest struct {
	sub        *subscription
	persistent bool // persistent:true: a topic gets a durable subscription
	durableOK  bool // named by an id header, with one destination: as a durable subscription must be
	browser    bool
}

// subTarget is one destination of a SUBSCRIBE, resolved: the name as written, the filter its route
// subscribes with and the gate access control puts on it (nil: everything it reaches may be read); the
// filter access control judged, and whether it had to allow it whole (a durable subscription), which a
// reload's re-check judges again (recheck.go).
type subTarget struct {
	name   string
	flt    router.Filter
	gate   *virtualhost.Gate
	access router.Filter
	whole  bool
}

// resolveTarget parses one destination of a SUBSCRIBE and checks it may be subscribed to as asked.
func (s *session) resolveTarget(req *subscribeRequest, name string) (subTarget, error) {
	t := subTarget{name: name}
	flt, err := s.g.ParseFilter(name)
	if err != nil {
		return t, &frameError{msg: "invalid destination", detail: err.Error(), cause: err}
	}
	if flt, err = s.tempFilter(name, flt); err != nil {
		return t, err
	}
	t.access, t.whole = flt, req.persistent && flt.Kind == router.Topic
	if t.gate, err = s.maySubscribe(name, flt, t.whole); err != nil {
		return t, err
	}
	if req.sub.sel != nil && req.persistent {
		// The subscription's queue keeps every match; messages the selector refused would pile up there.
		return t, protoErr("invalid selector", "%q: selectors are not supported on durable subscriptions", name)
	}
	if req.browser && !queueKind(flt.Kind) {
		return t, protoErr("invalid browser subscription", "%q: only queues can be browsed", name)
	}
	t.flt, err = s.routeFilter(req, name, flt)
	return t, err
}

// routeFilter checks that destinations of flt's kind can be subscribed to and returns the filter the
// route subscribes with. A persistent SUBSCRIBE to a topic creates, or attaches to, its durable
// subscription here, and the route consumes that.
func (s *session) routeFilter(req *subscribeRequest, name string, flt router.Filter) (router.Filter, error) {
	switch flt.Kind {
	case router.Topic:
		if req.persistent {
			if !req.durableOK {
				return flt, protoErr("invalid durable subscription", "a persistent SUBSCRIBE needs an id and one topic")
			}
			d, err := s.durable(req.sub.id, name, flt)
			if err != nil {
				return flt, err
			}
			req.sub.dsub = &d
			flt = literalFilter(d)
		}
	case router.TempTopic, router.Queue, router.TempQueue:
	case router.DurableSub:
		if !flt.IsLiteral() {
			return flt, protoErr("invalid destination", "%q: a durable subscription is named, not matched", name)
		}
		d := flt.Destination()
		if err := checkDsubName(d.Path); err != nil {
			return flt, &frameError{msg: "invalid durable subscription", detail: err.Error(), cause: err}
		}
		req.sub.dsub = &d
	default:
		return flt, protoErr("invalid destination", "%q: %s destinations cannot be subscribed to", name, flt.Kind)
	}
	return flt, nil
}

// attachRoutes makes sub's routes: a queue consumer for each queue target, a router subscription for
// each topic one. When one fails, the routes made so far end.
func (s *session) attachRoutes(sub *subscription, targets []subTarget, qo router.ConsumerOptions) error {
	for _, t := range targets {
		rs := &router.Subscription{Filter: t.flt, Sink: virtualhost.SinkFor(sub, t.gate), QoS: 1, ID: sub.id}
		r := route{rs: rs}
		var err error
		if queueKind(t.flt.Kind) {
			r.cons, err = s.rt.Consume(rs, qo)
			if err == nil {
				s.cons.Add(r.cons)
			}
		} else {
			err = s.rt.Subscribe(rs)
		}
		if err != nil {
			sub.close()
			if t.flt.Kind == router.DurableSub {
				return durableError(t.name, err)
			}
			return subscribeError(t.name, err)
		}
		sub.routes = append(sub.routes, r)
		s.routes++
	}
	return nil
}

// subscribeError is the ERROR frame for a route to name the router refused.
func subscribeError(name string, err error) error {
	if errors.Is(err, router.ErrTooManySubscriptions) {
		return &frameError{msg: "too many subscriptions", detail: name + ": the virtual host holds as many subscriptions as it may (max_subscriptions)", cause: err}
	}
	return &frameError{msg: "subscribe failed", detail: name + ": " + err.Error(), cause: err}
}

// queueRetained queues the retained messages sub's topic routes match. They go through the backlog:
// all of them are delivered, as fast as the client reads (DESIGN.md §4).
func (s *session) queueRetained(sub *subscription) {
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
			if ok, full, _ := it.sub.enqueue(it.d); !ok && full {
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
	s.mu.Lock()
	delete(s.subs, sub.id)
	s.mu.Unlock()
	sub.close()
	if sub.dsub != nil && f.Header.Get("persistent") == "true" {
		return s.destroyDurable(*sub.dsub, sub.dest)
	}
	return nil
}
