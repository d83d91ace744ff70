package mqtt

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// sharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const sharePrefix = "$share/"

var errBadShare = errors.New("mqtt: invalid shared subscription")

// loop reads and handles packets until the connection ends. It returns errDisconnectRequest after
// DISCONNECT, else the reason to close with.
func (cl *client) loop() error {
	if cl.keep == 0 {
		_ = cl.c.SetReadDeadline(time.Time{})
	}
	for {
		if cl.keep > 0 {
			// [MQTT-3.1.2-24] 1.5 × keep-alive without a packet closes the connection.
			_ = cl.c.SetReadDeadline(time.Now().Add(cl.keep))
		}
		p, err := cl.rd.ReadPacket()
		if err != nil {
			return cl.readError(err, errKeepAlive)
		}
		if err := cl.handle(p); err != nil {
			return err
		}
		cl.c.Pace() // subscribers over their windows hold this publisher back (protocol.Pace)
	}
}

func (cl *client) handle(p packet.Packet) error {
	s := cl.sess
	switch p := p.(type) {
	case *packet.PublishPacket:
		return cl.publish(p)
	case *packet.PubackPacket:
		cl.acked(s.complete(p.PacketID, waitPuback))
	case *packet.PubrecPacket:
		// PUBREL once the release is durable: resent after a crash, the PUBLISH would be a second
		// delivery to a client that received the first (durable.go).
		tr, it := s.received(p.PacketID)
		if it.seq != 0 && it.entry.consumer != nil {
			it.entry.consumer.Ack(it.seq) // the client has it: its queue forgets it, after the release record
		}
		// Answered even for an unknown id, so the client can release its state.
		return cl.ack(tr, packet.Pubrel, p.PacketID)
	case *packet.PubcompPacket:
		cl.acked(s.complete(p.PacketID, waitPubcomp))
	case *packet.PubrelPacket:
		var tr *virtualhost.Tracker
		if _, ok := s.awaitingRel[p.PacketID]; ok && !s.clean && cl.host.Durable() {
			// PUBCOMP once the id is forgotten for good: a client that got PUBCOMP may reuse the id for
			// a new message, which a stale id would make look like a duplicate.
			tr = &virtualhost.Tracker{}
			cl.host.DeleteInbound(s.id, p.PacketID, tr)
		}
		delete(s.awaitingRel, p.PacketID)
		return cl.ack(tr, packet.Pubcomp, p.PacketID) // also after the acknowledgements queued before
	case *packet.SubscribePacket:
		return cl.subscribe(p)
	case *packet.UnsubscribePacket:
		return cl.unsubscribe(p)
	case *packet.PingreqPacket:
		if !cl.writePacket(&packet.PingrespPacket{}) {
			return errOutboundClosed
		}
	case *packet.DisconnectPacket:
		// [MQTT-3.14.4-3] the will is discarded.
		return errDisconnectRequest
	case *packet.ConnectPacket:
		return errSecondConnect
	default:
		return fmt.Errorf("%w: %s from client", errUnexpectedPacket, p.Type())
	}
	return nil
}

// publish routes an inbound PUBLISH and acknowledges it once routed.
func (cl *client) publish(p *packet.PublishPacket) error {
	d, err := cl.parseTopic(p.Topic)
	if err != nil {
		return err
	}
	if err := cl.checkLength(len(p.Payload)); err != nil {
		return err
	}
	s := cl.sess
	if p.QoS == 2 {
		if _, dup := s.awaitingRel[p.PacketID]; dup {
			// Exactly once: the first copy was routed, only the PUBREC is repeated [MQTT-4.3.3-2].
			return cl.ack(nil, packet.Pubrec, p.PacketID)
		}
	}
	m := &router.Message{Dest: d, Body: p.Payload, QoS: p.QoS, Persistent: p.QoS > 0, Retain: p.Retain,
		Origin: p.Topic, OriginGram: cl.g, Publisher: cl.c}
	var tr *virtualhost.Tracker
	if p.QoS > 0 && cl.host.Durable() {
		// A durable host: acknowledge once every write the message causes is durable, the session
		// copies and the inbound QoS 2 id in one commit (ack.go).
		tr = virtualhost.NewAtomicTracker(cl.host)
		m.Tracker = tr
		if p.QoS == 2 && !s.clean {
			cl.host.PutInbound(s.id, p.PacketID, tr)
		}
	}
	var res router.PublishResult
	if cl.maySend(d, p.Topic, s.id) { // else not routed, yet acknowledged below [MQTT-3.3.5-2]
		res = cl.rt.Publish(m)
		if res.Pressure != nil {
			cl.c.HoldFor(res.Pressure) // a full durable subscription with a consumer draining it
		}
	}
	if res.Err != nil {
		if p.QoS == 0 {
			if ce := cl.check("publish dropped"); ce != nil {
				ce.Write(zap.String("topic", p.Topic), zap.Error(res.Err))
			}
			return nil
		}
		return fmt.Errorf("%w: %s: %w", errNotRouted, p.Topic, res.Err)
	}
	if tr != nil {
		tr.Flush()
	}
	switch p.QoS {
	case 1:
		return cl.ack(tr, packet.Puback, p.PacketID)
	case 2:
		if s.awaitingRel == nil {
			s.awaitingRel = make(map[uint16]struct{})
		}
		s.awaitingRel[p.PacketID] = struct{}{}
		return cl.ack(tr, packet.Pubrec, p.PacketID)
	}
	return nil
}

// acked finishes an outbound delivery: a queue message is acknowledged to its consumer.
func (cl *client) acked(it outItem, ok bool) {
	if ok && it.seq != 0 && it.entry.consumer != nil {
		it.entry.consumer.Ack(it.seq)
	}
	cl.resumeConsumers()
}

// resumeConsumers lets queue consumers whose deliveries were refused try again.
func (cl *client) resumeConsumers() { cl.sess.cons.Resume() }

// complete removes the inflight message id in state st and sends what the freed window allows.
func (s *session) complete(id uint16, st uint8) (outItem, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.inflight, func(f inflightMsg) bool { return f.id == id && f.state == st })
	if i < 0 {
		return outItem{}, false
	}
	it := s.inflight[i].item
	if s.recordsInflight(&it) {
		s.host.DeleteInflight(s.id, id, nil)
	}
	if s.inflight[i].unsent {
		s.unsent--
	}
	s.inflight = slices.Delete(s.inflight, i, i+1)
	s.pumpLocked()
	return it, true
}

// received moves an outbound QoS 2 message from PUBREC to PUBCOMP wait. For a durable subscription's
// delivery on a durable host it writes the release (tr, nil otherwise, waits for it); it returns the
// delivery to acknowledge to its queue now (seq 0: none).
func (s *session) received(id uint16) (*virtualhost.Tracker, outItem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.inflight {
		f := &s.inflight[i]
		if f.id != id || f.state != waitPubrec || f.writing {
			continue
		}
		var tr *virtualhost.Tracker
		if s.recordsInflight(&f.item) {
			tr = &virtualhost.Tracker{}
			s.writeInflightLocked(id, &f.item, true, tr)
		}
		f.state = waitPubcomp
		if f.unsent {
			f.unsent = false
			s.unsent--
		}
		it := f.item
		f.item.seq = 0 // acknowledged now, not again at PUBCOMP
		return tr, it
	}
	return nil, outItem{}
}

// subscribe handles SUBSCRIBE: one return code per filter [MQTT-3.8.4-5], SUBACK, then the retained
// messages of each new subscription [MQTT-3.3.1-6], then what arrived for it meanwhile.
func (cl *client) subscribe(p *packet.SubscribePacket) error {
	codes := make([]byte, len(p.Subscriptions))
	var added []*subEntry
	for i, sp := range p.Subscriptions {
		e, code := cl.subscribeOne(sp)
		codes[i] = code
		if e != nil && !slices.Contains(added, e) {
			added = append(added, e)
		}
	}
	if len(added) > 0 {
		if err := cl.saveRecord(); err != nil {
			return err
		}
	}
	if !cl.writePacket(&packet.SubackPacket{PacketID: p.PacketID, ReturnCodes: codes}) {
		return errOutboundClosed
	}
	s := cl.sess
	for _, e := range added {
		var retained []*router.Message
		if e.rs.Filter.Kind == router.Topic && e.rs.Share == "" {
			retained = virtualhost.AllowedRetained(e.rs.Sink, cl.rt.Retained(e.rs.Filter))
		}
		s.release(e, retained)
	}
	cl.resumeConsumers()
	return nil
}

// subscribeOne adds or replaces one subscription and returns its entry (holding deliveries until
// release) and its SUBACK return code.
func (cl *client) subscribeOne(sp packet.Subscription) (*subEntry, byte) {
	s := cl.sess
	f, group, err := cl.parseSubscription(sp.Filter)
	if err != nil {
		return cl.subscribeFailed(sp.Filter, err)
	}
	a := cl.access(s.id)
	gate, err := a.MaySubscribe(f, sp.Filter, false)
	if err != nil {
		return nil, subackFailure // logged by MaySubscribe
	}
	qos := sp.QoS
	old := s.subs[sp.Filter]
	switch f.Kind {
	case router.Queue:
		if !f.IsLiteral() || group != "" {
			return cl.subscribeFailed(sp.Filter, fmt.Errorf("%w: a queue subscription names one queue", router.ErrInvalidFilter))
		}
		if old != nil {
			cl.removeEntry(old)
		}
		qos = min(qos, 1)
	case router.Topic:
		if old != nil {
			return cl.resubscribe(old, qos, gate) // [MQTT-3.8.4-3]: replace in place
		}
	default:
		return cl.subscribeFailed(sp.Filter, fmt.Errorf("%w: %s filters are not available over MQTT", router.ErrInvalidFilter, f.Kind))
	}
	if cl.lim.MaxSubscriptions > 0 && len(s.subs) >= cl.lim.MaxSubscriptions {
		return cl.subscribeFailed(sp.Filter, fmt.Errorf("mqtt: more than %d subscriptions", cl.lim.MaxSubscriptions))
	}
	return cl.addEntry(sp.Filter, f, group, qos, gate)
}

// subscribeFailed logs a refused subscription (at debug level) and returns its SUBACK failure code.
func (cl *client) subscribeFailed(filter string, err error) (*subEntry, byte) {
	if ce := cl.check("subscribe refused"); ce != nil {
		ce.Write(zap.String("filter", filter), zap.Error(err))
	}
	return nil, subackFailure
}

// parseSubscription parses a SUBSCRIBE filter, with its share group if it is "$share/group/filter":
// at most max_topic_levels levels.
func (cl *client) parseSubscription(filter string) (router.Filter, string, error) {
	text, group, err := splitShare(filter)
	if err != nil {
		return router.Filter{}, "", err
	}
	f, err := cl.g.ParseFilter(text)
	if err != nil {
		return f, "", err
	}
	if len(f.Segs) > cl.lim.MaxTopicLevels {
		return f, "", fmt.Errorf("%w: more than %d levels", router.ErrInvalidFilter, cl.lim.MaxTopicLevels)
	}
	return f, group, nil
}

// resubscribe replaces topic subscription old with one at qos [MQTT-3.8.4-3]: in place, so the flow of
// messages is not interrupted; retained messages are sent again.
func (cl *client) resubscribe(old *subEntry, qos byte, gate *virtualhost.Gate) (*subEntry, byte) {
	s := cl.sess
	s.mu.Lock()
	changed := old.qos != qos
	old.qos, old.holding = qos, true
	s.mu.Unlock()
	if old.dsub != nil {
		if err := cl.createDurable(old, gate); err != nil {
			return cl.subscribeFailed(old.key, err)
		}
		if changed && old.consumer != nil {
			// The consumer's QoS changes: attach again (what it held comes back, under its packet ids).
			s.cons.Remove(old.consumer)
			old.consumer.Close()
			old.consumer = nil
			if err := cl.consume(old); err != nil {
				return cl.subscribeFailed(old.key, err)
			}
		}
	}
	return old, qos
}

// addEntry makes a new subscription to f, filter as the client wrote it: a consumer of its queue, or of
// its durable subscription for a persistent session's topic filter, else a router subscription.
func (cl *client) addEntry(filter string, f router.Filter, group string, qos byte, gate *virtualhost.Gate) (*subEntry, byte) {
	s := cl.sess
	e := &subEntry{key: filter, qos: qos, queue: f.Kind == router.Queue, holding: true}
	e.rs = &router.Subscription{Filter: f, Sink: virtualhost.SinkFor(s, gate), QoS: qos, ID: filter, Share: group, Opaque: e}
	if f.Kind == router.Topic && group == "" && !s.clean {
		d := dsubOf(s.id, filter) // a persistent session's subscription keeps its messages (durable.go)
		e.dsub = &d
	}
	s.mu.Lock()
	s.setEntryLocked(e, true)
	s.mu.Unlock()
	var err error
	switch {
	case e.dsub != nil:
		if err = cl.createDurable(e, gate); err == nil {
			if err = cl.consume(e); err != nil {
				cl.destroyDurable(e)
			}
		}
	case e.queue:
		err = cl.consume(e)
	default:
		err = cl.rt.Subscribe(e.rs)
	}
	if err != nil {
		s.mu.Lock()
		s.setEntryLocked(e, false)
		s.mu.Unlock()
		return cl.subscribeFailed(filter, err)
	}
	if ce := cl.check("subscribe"); ce != nil {
		ce.Write(zap.String("filter", filter), zap.Uint8("qos", qos))
	}
	return e, qos
}

// consume attaches e as a consumer of its queue or durable subscription, with credit max_inflight.
func (cl *client) consume(e *subEntry) error {
	cons, err := cl.rt.Consume(consumerSub(e, cl.sess), cl.consumeOptions(e))
	if err != nil {
		return err
	}
	e.consumer = cons
	cl.sess.cons.Add(cons)
	return nil
}

// removeEntry ends one subscription; a durable one is destroyed with what it holds.
func (cl *client) removeEntry(e *subEntry) {
	s := cl.sess
	s.mu.Lock()
	s.setEntryLocked(e, false)
	s.mu.Unlock()
	if e.consumer != nil {
		s.cons.Remove(e.consumer)
		e.consumer.Close()
		e.consumer = nil
	}
	switch {
	case e.dsub != nil:
		cl.destroyDurable(e)
	case !e.queue:
		cl.rt.Unsubscribe(e.rs)
	}
}

// release ends the hold on a subscription after its SUBACK: its retained messages go first, then what
// was delivered to it meanwhile.
func (s *session) release(e *subEntry, retained []*router.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.gone || s.discarded {
		return
	}
	var live map[uint64]struct{}
	if len(e.held) > 0 && len(retained) > 0 {
		live = make(map[uint64]struct{}, len(e.held))
		for _, it := range e.held {
			live[it.msg.ID] = struct{}{}
		}
	}
	for _, m := range retained {
		if _, dup := live[m.ID]; dup {
			// Published while the SUBSCRIBE was handled: it goes out once, as the live message it is.
			continue
		}
		s.queue.push(outItem{msg: m, entry: e, qos: min(m.QoS, e.qos), retained: true})
	}
	for _, it := range e.held {
		s.queueLocked(it)
	}
	e.held, e.holding = nil, false
	s.pumpLocked()
}

// unsubscribe handles UNSUBSCRIBE; UNSUBACK is sent even when no filter matched [MQTT-3.10.4-5].
func (cl *client) unsubscribe(p *packet.UnsubscribePacket) error {
	removed := false
	for _, f := range p.Filters {
		if e := cl.sess.subs[f]; e != nil {
			cl.removeEntry(e)
			removed = true
		}
	}
	if removed {
		if err := cl.saveRecord(); err != nil {
			return err
		}
	}
	if !cl.writeAck(packet.Unsuback, p.PacketID) {
		return errOutboundClosed
	}
	return nil
}

// splitShare splits "$share/group/filter" into filter and group; other filters have no group.
func splitShare(filter string) (string, string, error) {
	rest, ok := strings.CutPrefix(filter, sharePrefix)
	if !ok {
		return filter, "", nil
	}
	group, f, ok := strings.Cut(rest, "/")
	if !ok || group == "" || f == "" || strings.ContainsAny(group, "+#") {
		return "", "", fmt.Errorf("%w: %q", errBadShare, filter)
	}
	return f, group, nil
}
