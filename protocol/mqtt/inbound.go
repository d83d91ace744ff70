package mqtt

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// sharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const sharePrefix = "$share/"

var errBadShare = errors.New("mqtt: invalid shared subscription")

// errTooManySubscriptions refuses a subscription beyond the connector's max_subscriptions.
var errTooManySubscriptions = errors.New("mqtt: too many subscriptions")

// limitReached logs, at most once per connection, that a bound on what the broker holds for clients
// refused this one something: enough for an operator to see which client and which bound, without a
// line per refused filter of a client that keeps asking.
func (cl *client) limitReached(err error) {
	if cl.limitLogged {
		return
	}
	cl.limitLogged = true
	cl.c.Log().Info("subscribe refused: limit reached", zap.String("vhost", cl.host.Name),
		zap.String("client_id", protocol.LoggedName(cl.sess.id)), zap.Error(err))
}

// Step reads and handles one packet (protocol.Stepper). It returns errDisconnectRequest after DISCONNECT,
// else the reason to close with.
func (cl *client) Step() error {
	p, err := cl.rd.ReadPacket()
	if err != nil {
		return cl.readError(err, errKeepAlive)
	}
	if cl.adopt.Load() != nil {
		cl.adoptPrincipal() // a reload changed the user's groups
	}
	if err := cl.handle(p); err != nil {
		return err
	}
	cl.sess.flushLate()
	cl.c.Pace() // subscribers over their windows hold this publisher back (protocol.Pace)
	cl.armKeepAlive()
	return nil
}

// armKeepAlive re-arms the read deadline for the next packet: [MQTT-3.1.2-24] 1.5 × keep-alive without a
// packet closes the connection. It runs after a packet is handled rather than before the next read,
// because the connection may park in between (protocol.Stepper) with the deadline running.
func (cl *client) armKeepAlive() {
	if cl.keep > 0 {
		cl.c.ArmReadDeadline(cl.keep)
	}
}

// Buffered implements protocol.Stepper: the packet Reader keeps nothing between packets.
func (cl *client) Buffered() bool { return false }

// End implements protocol.Stepper: the connection closes for err, and the session is detached (kept or
// ended) and the host's connection slot released.
func (cl *client) End(err error) {
	cl.closeFor(err)
	cl.release(err)
}

func (cl *client) handle(p packet.Packet) error {
	s := cl.sess
	switch p := p.(type) {
	case *packet.PublishPacket:
		return cl.publish(p)
	case *packet.PubackPacket:
		cl.acked(s.complete(p.PacketID, waitPuback))
	case *packet.PubrecPacket:
		if p.ReasonCode >= 0x80 {
			// The client refused the message: its flow ends here, no PUBREL [MQTT-4.3.3-4].
			cl.acked(s.complete(p.PacketID, waitPubrec))
			return nil
		}
		// PUBREL once the release is durable: resent after a crash, the PUBLISH would be a second
		// delivery to a client that received the first (durable.go).
		tr, it, known := s.received(p.PacketID)
		if it.seq != 0 && it.entry.consumer != nil {
			it.entry.consumer.Ack(it.seq) // the client has it: its queue forgets it, after the release record
		}
		// Answered even for an unknown id, so the client can release its state.
		a := mqttAck{t: packet.Pubrel, id: p.PacketID}
		if !known {
			a.rc = packet.ReasonPacketIdentifierNotFound
		}
		return cl.ack(tr, a)
	case *packet.PubcompPacket:
		cl.acked(s.complete(p.PacketID, waitPubcomp))
	case *packet.PubrelPacket:
		var tr *virtualhost.Tracker
		_, known := s.awaitingRel[p.PacketID]
		if known && !s.clean && cl.host.Durable() {
			// PUBCOMP once the id is forgotten for good: a client that got PUBCOMP may reuse the id for
			// a new message, which a stale id would make look like a duplicate.
			tr = &virtualhost.Tracker{}
			cl.host.DeleteInbound(s.id, p.PacketID, tr)
		}
		delete(s.awaitingRel, p.PacketID)
		a := mqttAck{t: packet.Pubcomp, id: p.PacketID, completes: known}
		if !known {
			a.rc = packet.ReasonPacketIdentifierNotFound
		}
		return cl.ack(tr, a) // also after the acknowledgements queued before
	case *packet.SubscribePacket:
		return cl.subscribe(p)
	case *packet.UnsubscribePacket:
		return cl.unsubscribe(p)
	case *packet.PingreqPacket:
		if !cl.writePacket(&packet.PingrespPacket{}) {
			return errOutboundClosed
		}
	case *packet.DisconnectPacket:
		if err := cl.sessionExpiryChange(p); err != nil {
			return err
		}
		if cl.v5 != nil {
			cl.sess.expiry = cl.v5.expiry
			if p.ReasonCode == packet.ReasonDisconnectWithWill {
				return errDisconnectWill
			}
		}
		// [MQTT-3.14.4-3] the will is discarded.
		return errDisconnectRequest
	case *packet.AuthPacket:
		return cl.reauthenticate(p)
	case *packet.ConnectPacket:
		return errSecondConnect
	default:
		return fmt.Errorf("%w: %s from client", errUnexpectedPacket, p.Type())
	}
	return nil
}

// publish routes an inbound PUBLISH and acknowledges it once routed.
func (cl *client) publish(p *packet.PublishPacket) error {
	s := cl.sess
	if cl.v5 != nil {
		if err := cl.inboundV5(p); err != nil {
			return err
		}
	}
	if p.QoS == 2 {
		if _, dup := s.awaitingRel[p.PacketID]; dup {
			// Exactly once: the first copy was routed, only the PUBREC is repeated [MQTT-4.3.3-2].
			return cl.ack(nil, mqttAck{t: packet.Pubrec, id: p.PacketID})
		}
	}
	if p.QoS > 0 && cl.v5 != nil {
		if cl.v5.inflightIn.Add(1) > int32(cl.lim.ReceiveMaximum) {
			return errReceiveMaximum // the client broke [MQTT-3.3.4-7]: DISCONNECT 0x93 (section 3.2.2.3.3)
		}
	}
	d, err := cl.parseTopic(p.Topic)
	if err != nil {
		return err
	}
	if err := cl.checkLength(len(p.Payload), "publish"); err != nil {
		return err
	}
	m, rc, err := cl.message(p, d)
	if err != nil {
		if p.QoS == 0 {
			return err
		}
		return cl.refusePublish(p, rc, err)
	}
	allowed := cl.maySend(d, p.Topic, s.id)
	if !allowed && cl.v5 != nil && p.QoS > 0 {
		// MQTT 5 says why [MQTT-3.3.5-2], before anything (the inbound QoS 2 id) is written for it.
		return cl.refusePublish(p, packet.ReasonNotAuthorized, nil)
	}
	var tr *virtualhost.Tracker
	switch {
	case p.QoS > 0 && cl.host.TracksWrites():
		// A durable host: acknowledge once every write the message causes is durable, the session
		// copies and the inbound QoS 2 id in one commit (ack.go); with clustered queues, once JetStream
		// has the replicas of a queue message.
		tr = virtualhost.NewAtomicTracker(cl.host)
		m.Tracker = tr
		if p.QoS == 2 && !s.clean && cl.host.Durable() {
			cl.host.PutInbound(s.id, p.PacketID, tr)
		}
	case p.QoS > 0 && p.Retain && cl.rt.ConfirmsRetained():
		// A memory host in a cluster: acknowledge once the retained change is replicated.
		tr = &virtualhost.Tracker{}
		m.Tracker = tr
	}
	var res router.PublishResult
	if allowed { // else not routed, yet acknowledged [MQTT-3.3.5-2]
		cl.c.CountIn(1) // a message taken in for routing, whatever the router makes of it
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
		if cl.v5 != nil && errors.Is(res.Err, router.ErrQueueFull) {
			return cl.refusePublish(p, packet.ReasonQuotaExceeded, res.Err)
		}
		return fmt.Errorf("%w: %s: %w", errNotRouted, p.Topic, res.Err)
	}
	var outcome byte // success
	if cl.v5 != nil && res.Delivered == 0 && res.Dropped == 0 && d.Kind == router.Topic {
		outcome = packet.ReasonNoMatchingSubscribers
	}
	return cl.acknowledge(p, tr, outcome)
}

// acknowledge answers a routed QoS 1 or 2 PUBLISH with PUBACK or PUBREC (reason code rc), once tr's
// writes are durable; a QoS 2 packet id then awaits its PUBREL.
func (cl *client) acknowledge(p *packet.PublishPacket, tr *virtualhost.Tracker, rc byte) error {
	if tr != nil {
		tr.Flush()
	}
	switch p.QoS {
	case 1:
		return cl.ack(tr, mqttAck{t: packet.Puback, id: p.PacketID, rc: rc, completes: true})
	case 2:
		s := cl.sess
		if s.awaitingRel == nil {
			s.awaitingRel = make(map[uint16]struct{})
		}
		s.awaitingRel[p.PacketID] = struct{}{}
		return cl.ack(tr, mqttAck{t: packet.Pubrec, id: p.PacketID, rc: rc})
	}
	return nil
}

// message is the router message of PUBLISH p to d; an MQTT 5 property the broker refuses is an error,
// with its reason code.
func (cl *client) message(p *packet.PublishPacket, d router.Destination) (*router.Message, byte, error) {
	m := &router.Message{Dest: d, Body: p.Payload, QoS: p.QoS, Persistent: p.QoS > 0, Retain: p.Retain,
		Origin: p.Topic, OriginGram: cl.g, Publisher: cl.c, SenderID: cl.sess.id}
	if cl.v5 != nil && p.Properties != nil {
		if rc, err := cl.messageProps(m, p.Properties); err != nil {
			return nil, rc, err
		}
	}
	return m, 0, nil
}

// refusePublish answers an MQTT 5 QoS 1 or 2 PUBLISH that was not routed with reason code rc: its flow
// ends with this PUBACK or PUBREC [MQTT-4.3.3-4].
func (cl *client) refusePublish(p *packet.PublishPacket, rc byte, err error) error {
	if err != nil {
		if ce := cl.check("publish refused"); ce != nil {
			ce.Write(zap.String("topic", p.Topic), zap.Uint8("reason", rc), zap.Error(err))
		}
	}
	t := packet.Puback
	if p.QoS == 2 {
		t = packet.Pubrec
	}
	return cl.ack(nil, mqttAck{t: t, id: p.PacketID, rc: rc, completes: true})
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
	s.ownerPump = true
	s.pumpLocked()
	s.ownerPump = false
	return it, true
}

// received moves an outbound QoS 2 message from PUBREC to PUBCOMP wait. For a durable subscription's
// delivery on a durable host it writes the release (tr, nil otherwise, waits for it); it returns the
// delivery to acknowledge to its queue now (seq 0: none), and whether the id was in flight at all.
func (s *session) received(id uint16) (*virtualhost.Tracker, outItem, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	known := false
	for i := range s.inflight {
		f := &s.inflight[i]
		if f.id != id {
			continue
		}
		known = known || f.state == waitPubcomp // a repeated PUBREC
		if f.state != waitPubrec || f.writing {
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
		return tr, it, true
	}
	return nil, outItem{}, known
}

// subscribe handles SUBSCRIBE: one return code per filter [MQTT-3.8.4-5], SUBACK, then the retained
// messages of each new subscription [MQTT-3.3.1-6] (MQTT 5: as its Retain Handling says), then what
// arrived for it meanwhile.
func (cl *client) subscribe(p *packet.SubscribePacket) error {
	var subID uint32
	if pp := p.Properties; pp != nil && len(pp.SubscriptionIdentifiers) > 0 {
		subID = pp.SubscriptionIdentifiers[0] // one per SUBSCRIBE, for each of its filters [MQTT-3.8.2-?]
	}
	codes := make([]byte, len(p.Subscriptions))
	type added struct {
		e        *subEntry
		fresh    bool // the subscription did not exist before this SUBSCRIBE
		retained []*router.Message
	}
	var adds []added
	for i, sp := range p.Subscriptions {
		if sp.NoLocal && strings.HasPrefix(sp.Filter, sharePrefix) {
			return errNoLocalShared // [MQTT-3.8.3-4]
		}
		fresh := cl.sess.subs[sp.Filter] == nil
		e, code := cl.subscribeOne(sp, subID)
		codes[i] = code
		if e != nil && !slices.ContainsFunc(adds, func(a added) bool { return a.e == e }) {
			adds = append(adds, added{e: e, fresh: fresh})
		}
	}
	if len(adds) > 0 {
		if err := cl.saveRecord(); err != nil {
			return err
		}
	}
	// The retained messages are those of when the subscriptions were made [MQTT-3.3.1-6], so they are read
	// before SUBACK: once the client has it, it may replace them, and the replacement would then reach the
	// subscriber only as the live message it also is (release sends that once), the earlier one never.
	for i := range adds {
		e := adds[i].e
		wants := e.rh == 0 || (e.rh == 1 && adds[i].fresh) // [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]
		if e.rs.Filter.Kind == router.Topic && e.rs.Share == "" && wants {
			adds[i].retained = virtualhost.AllowedRetained(e.rs.Sink, cl.rt.Retained(e.rs.Filter))
		}
	}
	if !cl.writePacket(&packet.SubackPacket{PacketID: p.PacketID, ReturnCodes: codes}) {
		return errOutboundClosed
	}
	s := cl.sess
	for _, a := range adds {
		s.release(a.e, a.retained) // after SUBACK, which goes out first
	}
	cl.resumeConsumers()
	return nil
}

// subscribeOne adds or replaces one subscription and returns its entry (holding deliveries until
// release) and its SUBACK return code.
func (cl *client) subscribeOne(sp packet.Subscription, subID uint32) (*subEntry, byte) {
	s := cl.sess
	f, group, err := cl.parseSubscription(sp.Filter)
	if err != nil {
		return cl.subscribeFailed(sp.Filter, err, packet.ReasonTopicFilterInvalid)
	}
	a := cl.access(s.id)
	gate, err := a.MaySubscribe(f, sp.Filter, false)
	if err != nil {
		return nil, cl.subackCode(packet.ReasonNotAuthorized) // logged by MaySubscribe
	}
	opts := subOptions{qos: sp.QoS, noLocal: sp.NoLocal, rap: sp.RetainAsPublished, rh: sp.RetainHandling, subID: subID}
	old := s.subs[sp.Filter]
	switch f.Kind {
	case router.Queue:
		if !f.IsLiteral() || group != "" {
			return cl.subscribeFailed(sp.Filter, fmt.Errorf("%w: a queue subscription names one queue", router.ErrInvalidFilter), packet.ReasonTopicFilterInvalid)
		}
		if old != nil {
			cl.removeEntry(old)
		}
		opts.qos = min(opts.qos, 1)
	case router.Topic:
		if old != nil {
			return cl.resubscribe(old, opts, gate) // [MQTT-3.8.4-3]: replace in place
		}
	default:
		return cl.subscribeFailed(sp.Filter, fmt.Errorf("%w: %s filters are not available over MQTT", router.ErrInvalidFilter, f.Kind), packet.ReasonTopicFilterInvalid)
	}
	if len(s.subs) >= cl.lim.MaxSubscriptions {
		err := fmt.Errorf("%w: a client may hold %d (max_subscriptions)", errTooManySubscriptions, cl.lim.MaxSubscriptions)
		cl.limitReached(err)
		return cl.subscribeFailed(sp.Filter, err, packet.ReasonQuotaExceeded)
	}
	return cl.addEntry(sp.Filter, f, group, opts, gate)
}

// subOptions are what a SUBSCRIBE asks of one subscription: its QoS, and MQTT 5's options and identifier.
type subOptions struct {
	qos, rh      uint8
	noLocal, rap bool
	subID        uint32
}

// set gives entry e the options; the caller holds the session's lock or owns e alone.
func (o subOptions) set(e *subEntry) {
	e.qos, e.noLocal, e.rap, e.rh, e.subID = o.qos, o.noLocal, o.rap, o.rh, o.subID
}

// subackCode is the SUBACK code of a refused subscription: MQTT 5's reason, or 3.1.1's 0x80.
func (cl *client) subackCode(rc byte) byte {
	if cl.v5 == nil {
		return subackFailure
	}
	return rc
}

// subscribeFailed logs a refused subscription (at debug level) and returns its SUBACK failure code
// (rc for an MQTT 5 client).
func (cl *client) subscribeFailed(filter string, err error, rc byte) (*subEntry, byte) {
	if ce := cl.check("subscribe refused"); ce != nil {
		ce.Write(zap.String("filter", filter), zap.Error(err))
	}
	return nil, cl.subackCode(rc)
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
func (cl *client) resubscribe(old *subEntry, opts subOptions, gate *virtualhost.Gate) (*subEntry, byte) {
	s := cl.sess
	s.mu.Lock()
	changed := old.qos != opts.qos
	opts.set(old)
	old.holding = true
	if old.dsub != nil {
		old.gate = gate // createDurable below gates the durable subscription anew; a direct one keeps its sink
	}
	s.mu.Unlock()
	if old.dsub != nil {
		if err := cl.createDurable(old, gate); err != nil {
			return cl.subscribeFailed(old.key, err, packet.ReasonUnspecifiedError)
		}
		if changed && old.consumer != nil {
			// The consumer's QoS changes: attach again (what it held comes back, under its packet ids).
			s.cons.Remove(old.consumer)
			old.consumer.Close()
			old.consumer = nil
			if err := cl.consume(old); err != nil {
				return cl.subscribeFailed(old.key, err, packet.ReasonUnspecifiedError)
			}
		}
	}
	return old, opts.qos
}

// addEntry makes a new subscription to f, filter as the client wrote it: a consumer of its queue, or of
// its durable subscription for a persistent session's topic filter, else a router subscription.
func (cl *client) addEntry(filter string, f router.Filter, group string, opts subOptions, gate *virtualhost.Gate) (*subEntry, byte) {
	s := cl.sess
	qos := opts.qos
	e := &subEntry{key: filter, queue: f.Kind == router.Queue, holding: true, gate: gate}
	opts.set(e)
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
		rc := byte(packet.ReasonUnspecifiedError)
		switch {
		case errors.Is(err, router.ErrNotOwner):
			rc = packet.ReasonNotAuthorized
		case errors.Is(err, router.ErrTooManySubscriptions), errors.Is(err, router.ErrTooManyDurables):
			rc = packet.ReasonQuotaExceeded // the virtual host's max_subscriptions or max_durable_subscriptions
			cl.limitReached(err)
		}
		return cl.subscribeFailed(filter, err, rc)
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
	var gone map[string]struct{}
	for _, f := range p.Filters {
		if e := cl.sess.subs[f]; e != nil {
			cl.removeEntry(e)
			removed = true
			if gone == nil {
				gone = make(map[string]struct{})
			}
			gone[f] = struct{}{}
		}
	}
	if removed {
		if err := cl.saveRecord(); err != nil {
			return err
		}
	}
	if cl.v5 == nil {
		if !cl.writePacket(&packet.UnsubackPacket{PacketID: p.PacketID}) {
			return errOutboundClosed
		}
		return nil
	}
	// MQTT 5: one reason code per filter [MQTT-3.11.3-1].
	codes := make([]byte, len(p.Filters))
	for i, f := range p.Filters {
		if _, ok := gone[f]; !ok {
			codes[i] = packet.ReasonNoSubscriptionExisted
		}
	}
	if !cl.writePacket(&packet.UnsubackPacket{PacketID: p.PacketID, ReasonCodes: codes}) {
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

var _ protocol.Stepper = (*client)(nil)
