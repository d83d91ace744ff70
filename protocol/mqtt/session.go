package mqtt

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// sender is the outbound side of a connection (*protocol.Conn): append in place, never block; count
// the PUBLISH packets queued and the messages dropped for the client (management's traffic counters).
type sender interface {
	Begin() ([]byte, bool)
	Commit(b []byte)
	CommitDeferred(b []byte) // protocol.Conn.CommitDeferred: from the client's own goroutine only
	CountOut(n int)
	CountDropped(n int)
}

// Inflight states of an outbound QoS ≥ 1 message.
const (
	waitPuback  uint8 = iota // QoS 1 PUBLISH sent
	waitPubrec               // QoS 2 PUBLISH sent
	waitPubcomp              // QoS 2 PUBREL sent
)

// outItem is one message on its way to the client.
type outItem struct {
	msg      *router.Message
	entry    *subEntry
	seq      uint64 // queue delivery sequence for Consumer.Ack; 0 for topics
	qseq     uint64 // the message's sequence in its durable subscription: it finds its packet id again
	qos      uint8
	retained bool // sent because the subscription is new: retain flag set [MQTT-3.3.1-8]
	dup      bool
	// ids are the subscription identifiers of every subscription the message matched, when one copy
	// stands for several (MQTT 5, overlapping subscriptions); nil: the entry's own.
	ids []uint32
}

// live reports a topic message delivered as published: the kind dropped (oldest first) when the session's
// queue is full. Retained snapshots and queue deliveries are bounded elsewhere (by the snapshot the router
// already holds, by consumer credit).
func (it *outItem) live() bool { return it.seq == 0 && !it.retained }

// inflightMsg is an outbound QoS ≥ 1 message awaiting its acknowledgement.
type inflightMsg struct {
	id      uint16
	state   uint8
	unsent  bool // must be (re)sent on the current connection: resumed session
	writing bool // its in-flight record is being written: sent once durable (durable.go)
	// item.msg is nil for a delivery from a durable subscription whose consumer closed (a reconnect or a
	// restart) until the subscription delivers the message again; it is then resent under id.
	item outItem
}

// subEntry is one subscription of a session, keyed by the filter text as the client sent it.
type subEntry struct {
	key   string
	rs    *router.Subscription
	queue bool // a queue consumer
	// dsub is the durable subscription keeping its messages: a persistent session's topic subscription
	// (not shared). Set when the entry is made; the session consumes it while online (durable.go).
	dsub *router.Destination
	// consumer is owned by the attached reader goroutine.
	consumer *router.Consumer
	// gate narrows a subscription its owner may read only in part: in its sink (a direct subscription)
	// or its durable subscription's match. Set under session.mu, where a reload's re-check reads it.
	gate *virtualhost.Gate

	// unrouted is set on a shared subscription restored from the store: it is in no router until its
	// session resumes (reauthorize subscribes it). Reader goroutine.
	unrouted bool

	// MQTT 5 subscription options and identifier, fixed when the entry is made or replaced.
	noLocal bool   // not the messages its own client publishes [MQTT-3.8.3-3]
	rap     bool   // retain as published [MQTT-3.8.3-4]
	rh      uint8  // retain handling: 0 send retained, 1 only for a new subscription, 2 never
	subID   uint32 // subscription identifier; 0 = none

	// Guarded by session.mu.
	qos     uint8
	gone    bool      // unsubscribed: later deliveries are refused
	holding bool      // SUBACK not yet sent: deliveries wait in held
	held    []outItem // bounded by max_queued_messages (oldest live dropped) or consumer credit
}

// consumes reports whether the entry takes its messages from a router queue: a queue, or its durable
// subscription.
func (e *subEntry) consumes() bool { return e.queue || e.dsub != nil }

// outQueue is a FIFO of messages waiting for the inflight window or outbound room.
type outQueue struct {
	items []outItem
	head  int
	live  int // live items, bounded by max_queued_messages
	live0 int // live QoS 0 items among them: dropped before any QoS ≥ 1 one
	qos0  int // QoS 0 items, live or not: a new QoS 0 message may overtake the queue only when it is 0
}

func (q *outQueue) len() int { return len(q.items) - q.head }

func (q *outQueue) count(it *outItem, n int) {
	if it.qos == 0 {
		q.qos0 += n
	}
	if it.live() {
		q.live += n
		if it.qos == 0 {
			q.live0 += n
		}
	}
}

func (q *outQueue) push(it outItem) {
	if len(q.items) == cap(q.items) && q.head > 0 && q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, it)
	q.count(&it, 1)
}

func (q *outQueue) peek() *outItem { return &q.items[q.head] }

func (q *outQueue) pop() {
	q.count(&q.items[q.head], -1)
	q.items[q.head] = outItem{}
	q.head++
	if q.head == len(q.items) {
		q.head = 0
		q.items = q.items[:0]
		if cap(q.items) > 256 {
			q.items = nil // give a burst's memory back; idle sessions stay small
		}
	}
}

// dropOldestLive removes the oldest live QoS 0 item, or when there is none the oldest live item, so a
// QoS 0 message never pushes out a QoS 1 or 2 one.
func (q *outQueue) dropOldestLive() (outItem, bool) {
	for i := q.head; i < len(q.items); i++ {
		if it := &q.items[i]; it.live() && (q.live0 == 0 || it.qos == 0) {
			dropped := *it
			if i == q.head {
				q.pop() // the common case under overload: O(1), no shifting of the whole queue
				return dropped, true
			}
			q.count(it, -1)
			copy(q.items[i:], q.items[i+1:])
			q.items[len(q.items)-1] = outItem{}
			q.items = q.items[:len(q.items)-1]
			return dropped, true
		}
	}
	return outItem{}, false
}

// filter keeps the items for which keep returns true.
func (q *outQueue) filter(keep func(*outItem) bool) {
	kept := q.items[:0]
	q.live, q.live0, q.qos0 = 0, 0, 0
	for i := q.head; i < len(q.items); i++ {
		if keep(&q.items[i]) {
			kept = append(kept, q.items[i])
			q.count(&q.items[i], 1)
		}
	}
	clear(q.items[len(kept):])
	q.items, q.head = kept, 0
}

// seenMsg remembers a message matched by several of the session's subscriptions, so it is sent once.
type seenMsg struct {
	id   uint64
	left int // deliveries of the same message still expected
}

// maxSeen bounds the overlap table; an entry whose expected deliveries never come is evicted oldest first.
const maxSeen = 64

// session is an MQTT session: subscriptions, inflight and queued messages. It outlives its connection
// when clean session is off; its topic subscriptions are then durable subscriptions of the router
// (durable.go). It is the router.Sink of every one of its subscriptions.
type session struct {
	id   string
	host *virtualhost.Host
	att  *attachment // guarded by registry.mu
	// owner is the authenticated user who opened the session, "" when unknown (anonymous, or restored
	// from a record without one); kept in the session's store record. Written under registry.mu by the
	// connection attaching the session, whose reader also reads it for the record. Another user may not
	// take the session over.
	owner string
	// Offline only, guarded by registry.mu: the timer that expires the session, and a will waiting for
	// its delay (MQTT 5) with its timer.
	expiryTimer *time.Timer
	expiresAt   int64 // Unix ms when expiryTimer fires; 0 while it is not armed (management lists it)
	will        *willMsg
	willTimer   *time.Timer

	// mu guards the fields below. Deliver takes it on publishers' goroutines; it is never held while
	// calling the router.
	mu          sync.Mutex
	out         sender // nil while offline
	ownerPump   bool   // the client's own goroutine is pumping (complete): commits are deferred
	conn        *protocol.Conn
	g           *router.Grammar
	log         *zap.Logger // the handler's; entries name the client id
	maxInflight int
	maxQueued   int
	inflight    []inflightMsg // in send order, for resends in order [MQTT-4.6.0-1]
	unsent      int           // inflight entries marked unsent
	queue       outQueue
	dropped     uint64
	dropLogged  int64                // Unix ns of the last drop logged
	wilds       []*subEntry          // non-shared topic subscriptions with wildcards: overlap detection
	literals    map[string]*subEntry // non-shared literal topic subscriptions by router.Key
	seen        []seenMsg
	scratch     []byte  // topic rendering for the message being encoded
	v5          *sessV5 // the connected MQTT 5 client's limits and aliases; nil otherwise
	// late are queue deliveries completed without being sent (too large for the client, expired): their
	// consumers are acknowledged outside the lock (flushLate), since the router is never called under it.
	late    []outItem
	hasLate atomic.Bool
	// The small fields together, so the struct has no padding between them (idle sessions must be small).
	// expiry is the session expiry interval in seconds (maxExpiry: never; 0: it ends with its
	// connection). Set by the attaching connection under registry.mu, read by its reader.
	expiry  uint32
	lastID  uint16
	version byte
	// idsInOrder: inflight holds its ids in the order nextIDLocked gave them, all within one turn of the
	// id space, so the next id can be checked against the oldest alone (nextIDLocked).
	idsInOrder bool
	discarded  bool
	overlap    bool // two topic subscriptions may match one message
	// slow is set when a publisher waited protocol.PaceTimeout without the queue making room: until the
	// queue is down to half again, live messages past max_queued_messages drop the oldest instead of
	// holding publishers back.
	slow bool
	// clean: the session ends with its connection. The attached reader reads it freely and changes it
	// under mu (end), where management reads it.
	clean bool
	// room is closed (and reset) when the queue makes room; made by Room for a waiting publisher.
	room chan struct{}

	// cons are the queue consumers, resumed when the connection drains or the window opens.
	cons protocol.Consumers

	// Owned by the attached reader goroutine. subs is changed under mu too (setEntryLocked), so
	// management may read it under mu (Describe, Handler.Sessions).
	subs        map[string]*subEntry // nil until the first SUBSCRIBE
	awaitingRel map[uint16]struct{}  // inbound QoS 2 packet ids between PUBREC and PUBREL
}

// newSession returns an offline session of host; log is the handler's logger (shared: a per-session
// child logger would cost about 1 KiB per idle client).
func newSession(id string, clean bool, host *virtualhost.Host, log *zap.Logger) *session {
	return &session{id: id, clean: clean, host: host, log: log, maxInflight: 1, maxQueued: 1}
}

// Deliver implements router.Sink. It runs on the publisher's goroutine, never blocks and never calls the
// router. QoS 0 is sent now or dropped (counted); QoS ≥ 1 is sent when the inflight window and the
// outbound queue have room, else queued (bounded, oldest dropped).
func (s *session) Deliver(d router.Delivery) bool {
	e, _ := d.Sub.Opaque.(*subEntry)
	if e == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.discarded || e.gone {
		return false
	}
	if e.noLocal && d.Msg.SenderID == s.id && !e.consumes() {
		return true // [MQTT-3.8.3-3]; a durable subscription leaves them out itself (durableOptions)
	}
	it := outItem{msg: d.Msg, entry: e, seq: d.Seq, qseq: d.QueueSeq, qos: min(d.Msg.QoS, e.qos), retained: d.Retained}
	if e.consumes() {
		it.dup = d.Redeliveries > 0 && it.qos > 0
		return s.deliverQueueLocked(&it, d.Redeliveries > 0)
	}
	if s.overlap && e.rs.Share == "" {
		qos, ids, first := s.overlapLocked(d.Msg)
		if !first {
			return true // another subscription of this session already took the message
		}
		it.qos, it.ids = min(d.Msg.QoS, qos), ids // one copy at the highest granted QoS
	}
	switch {
	case s.out == nil:
		// Offline: what a persistent session keeps is in its durable subscriptions; a shared
		// subscription's group gives the message to a member that is online.
		return false
	case e.holding:
		s.holdLocked(e, it)
		return true
	case s.caughtUpLocked() && s.sendLocked(&it):
		return true
	case it.qos == 0 && s.queue.qos0 == 0 && !s.caughtUpLocked() && s.sendLocked(&it):
		// Only QoS 1 and 2 messages wait (for the client's Receive Maximum or max_inflight, or for room):
		// they must not hold QoS 0 back [MQTT-3.3.4-10]. A topic is ordered per QoS [MQTT-4.6.0-6], so
		// a QoS 0 message may pass them, never another QoS 0 message.
		return true
	case it.qos == 0 && !d.Paced && s.caughtUpLocked():
		if e.rs.Share == "" {
			// A shared subscription's group offers the message to another member; the router counts it
			// when none takes it.
			s.slowDropLocked("outbound full")
		}
		return false
	}
	if (it.qos > 0 || d.Paced) && s.queue.live >= s.maxQueued && !s.slow {
		// Over its window: the publisher holds back after this message (protocol.Pace) rather than the
		// subscriber dropping; a subscriber that makes no room in time is marked slow (Stuck).
		if protocol.HoldPublisher(d.Msg, s.out, s) {
			s.queue.push(it) // beyond max_queued_messages by what publishers send before they pause
			return true
		}
	}
	s.queueLocked(it)
	return true
}

// Room implements protocol.Brake: nil while the session's queue is under max_queued_messages, else a
// channel closed once it is.
func (s *session) Room() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queue.live < s.maxQueued || s.out == nil || s.discarded {
		return nil
	}
	if s.room == nil {
		s.room = make(chan struct{})
	}
	return s.room
}

// Stuck implements protocol.Brake: a publisher waited protocol.PaceTimeout in vain. Until the session
// is down to half its queue, live messages past max_queued_messages drop the oldest instead of holding
// publishers back.
func (s *session) Stuck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.slow {
		s.slow = true
		s.log.Warn("slow subscriber: dropping its oldest messages instead of holding publishers back",
			zap.String("client_id", s.id), zap.Int("queued", s.queue.len()))
	}
}

// wakeLocked releases held publishers once the queue is down to three quarters of max_queued_messages,
// and clears the slow mark once the subscriber has caught up with half of it. Waking them at the first
// free slot instead would let each publisher send one message per wake-up, and answer it with a write
// of its own: fan-in throughput fell by a tenth, with three times the write calls.
func (s *session) wakeLocked() {
	if s.queue.live <= s.maxQueued/2 {
		s.slow = false
	}
	if s.room != nil && (s.queue.live <= s.maxQueued-max(s.maxQueued/4, 1) || s.out == nil || s.discarded) {
		close(s.room)
		s.room = nil
	}
}

// deliverQueueLocked takes one delivery from a queue or a durable subscription. The consumer's credit
// (max_inflight) bounds what is held. A redelivery may be a message in flight under a packet id before
// the consumer closed: it goes out again under that id.
func (s *session) deliverQueueLocked(it *outItem, redelivery bool) bool {
	if s.out == nil {
		return false // the router keeps it for another consumer
	}
	if redelivery && it.entry.dsub != nil && s.resumeInflightLocked(it) {
		return true
	}
	if it.qos == 0 {
		// Acknowledged when we return true: only accept what is queued on the socket now.
		if it.entry.holding {
			s.cons.Held() // resumed once the SUBACK is out
			return false
		}
		if s.sendLocked(it) {
			return true
		}
		s.cons.Blocked(s.conn)
		return false
	}
	switch {
	case it.entry.holding:
		it.entry.held = append(it.entry.held, *it)
	case s.caughtUpLocked() && s.sendLocked(it):
	default:
		s.queue.push(*it)
		if it.qos == 2 && s.recordsInflight(it) {
			s.pumpLocked() // its record may start now, beside those being written
		}
	}
	return true
}

// caughtUpLocked reports whether nothing waits to go out before a new message: no queued message and no
// resend pending.
func (s *session) caughtUpLocked() bool { return s.queue.len() == 0 && s.unsent == 0 }

// overlapLocked reports, for a message matched by one of the session's topic subscriptions, the highest
// QoS granted by all of them that match, their subscription identifiers when several match and some
// have one (MQTT 5), and whether this is the first delivery of the message.
func (s *session) overlapLocked(m *router.Message) (uint8, []uint32, bool) {
	for i := range s.seen {
		if s.seen[i].id == m.ID {
			if s.seen[i].left--; s.seen[i].left <= 0 {
				s.seen = slices.Delete(s.seen, i, i+1)
			}
			return 0, nil, false
		}
	}
	n, qos := 0, uint8(0)
	var ids []uint32
	match := func(e *subEntry) {
		n++
		qos = max(qos, e.qos)
		if e.subID != 0 {
			ids = append(ids, e.subID)
		}
	}
	for _, e := range s.wilds {
		if e.rs.Filter.Matches(m.Dest) {
			match(e)
		}
	}
	// The map index with string(bytes) does not allocate.
	s.scratch = router.AppendKey(s.scratch[:0], m.Dest)
	if e := s.literals[string(s.scratch)]; e != nil {
		match(e)
	}
	if n > 1 {
		if len(s.seen) >= maxSeen {
			s.seen = slices.Delete(s.seen, 0, 1)
		}
		s.seen = append(s.seen, seenMsg{id: m.ID, left: n - 1})
	} else {
		ids = nil // one match: its entry's own identifier goes out
	}
	return qos, ids, true
}

// holdLocked keeps a delivery for a subscription whose SUBACK is not sent yet.
func (s *session) holdLocked(e *subEntry, it outItem) {
	if len(e.held) >= s.maxQueued {
		e.held = slices.Delete(e.held, 0, 1)
		s.slowDropLocked("session queue full")
	}
	e.held = append(e.held, it)
}

// queueLocked queues a message behind the ones already waiting. When max_queued_messages live messages
// wait, the oldest is dropped, counted and logged.
func (s *session) queueLocked(it outItem) {
	s.queue.push(it)
	for it.live() && s.queue.live > s.maxQueued {
		if _, ok := s.queue.dropOldestLive(); !ok {
			break
		}
		s.slowDropLocked("session queue full")
	}
}

// slowDropLocked counts a message dropped because the client does not keep up (its outbound queue or
// the session's queue is full), on the connection too (protocol.Traffic.Dropped).
func (s *session) slowDropLocked(why string) {
	if s.out != nil {
		s.out.CountDropped(1)
	}
	s.countDropLocked(why)
}

// dropLogInterval spaces the warnings about one session's dropped messages.
const dropLogInterval = 10 * time.Second

// countDropLocked counts a dropped message. The first drop is logged, then at most one line per
// dropLogInterval with the running total, so a flood cannot flood the log too.
func (s *session) countDropLocked(why string) {
	s.dropped++
	if s.dropped > 1 && s.dropped&63 != 0 {
		return // read the clock only now and then
	}
	if now := time.Now().UnixNano(); s.dropped == 1 || time.Duration(now-s.dropLogged) >= dropLogInterval {
		s.dropLogged = now
		s.log.Warn("messages dropped", zap.String("client_id", s.id), zap.String("reason", why),
			zap.Uint64("dropped", s.dropped))
	}
}

// sendLocked encodes it as PUBLISH into the outbound queue. It reports false, changing nothing, when
// the inflight window (QoS ≥ 1) or the outbound queue is full.
func (s *session) sendLocked(it *outItem) bool {
	if it.qos > 0 && len(s.inflight) >= s.maxInflight {
		return false
	}
	if it.qos == 2 && s.recordsInflight(it) {
		// Exactly once across a crash: the packet id goes to the store before the PUBLISH goes out.
		id := s.nextIDLocked()
		s.inflight = append(s.inflight, inflightMsg{id: id, state: waitPubrec, unsent: true, writing: true, item: *it})
		s.unsent++
		s.writeInflightLocked(id, it, false, nil)
		return true
	}
	b, ok := s.out.Begin()
	if !ok {
		return false
	}
	var id uint16
	if it.qos > 0 {
		id = s.nextIDLocked()
	}
	b, skip := s.appendPublishLocked(b, it, id, false)
	if skip == "" {
		s.out.CountOut(1) // before the commit: once written, the client may ask for the count
	}
	s.commitLocked(b)
	if skip != "" {
		s.skipLocked(it, skip) // as if the client had acknowledged it [MQTT-3.1.2-25]
		return true
	}
	if it.qos > 0 {
		st := waitPuback
		if it.qos == 2 {
			st = waitPubrec
		}
		s.inflight = append(s.inflight, inflightMsg{id: id, state: st, item: *it})
		if s.recordsInflight(it) {
			s.writeInflightLocked(id, it, false, nil) // QoS 1: lost in a crash, it is resent under a new id
		}
	}
	return true
}

// topicLocked renders m's topic for this session's grammar. A message published with the same grammar
// carries its own text; otherwise the name is rendered into scratch. The returned string aliases scratch:
// it is valid only until the next call, which is enough to encode one packet.
func (s *session) topicLocked(m *router.Message) string {
	if m.OriginGram == s.g {
		return m.Origin
	}
	s.scratch = s.g.AppendRender(s.scratch[:0], m.Dest)
	return unsafe.String(unsafe.SliceData(s.scratch), len(s.scratch))
}

// nextIDLocked returns a packet id not used by an inflight message [MQTT-2.3.1-2]. The window is smaller
// than the id space, so the loop ends.
//
// Ids are given in turn and inflight keeps them in that order, so while the id space has not come round
// to the oldest inflight id (idsInOrder) no other can be taken: the check is one comparison, not a scan of
// a window of max_inflight messages per PUBLISH. Sessions restored from the store, and any that come
// round to their oldest id, scan until their window empties.
func (s *session) nextIDLocked() uint16 {
	if len(s.inflight) == 0 {
		s.idsInOrder = true
	}
	for {
		prev := s.lastID
		s.lastID++
		if s.lastID == 0 {
			s.lastID = 1
		}
		if s.idsInOrder {
			if len(s.inflight) == 0 {
				return s.lastID
			}
			// Ids run 1..65535: how far prev is past the oldest inflight id, going round.
			if d := (int(prev) - int(s.inflight[0].id) + 65535) % 65535; d < 65534 {
				return s.lastID
			}
			s.idsInOrder = false // the next id is the oldest's: scan from now on
		}
		if !slices.ContainsFunc(s.inflight, func(f inflightMsg) bool { return f.id == s.lastID }) {
			return s.lastID
		}
	}
}

// commitLocked commits a packet encoded into s.out.Begin's buffer: deferred while the client's own
// goroutine pumps (ownerPump), so the deliveries its acknowledgements released go out in one write with
// the rest of its answers.
func (s *session) commitLocked(b []byte) {
	if s.ownerPump {
		s.out.CommitDeferred(b)
	} else {
		s.out.Commit(b)
	}
}

// pumpLocked sends what waits: first resends of a resumed session's inflight messages, then queued
// messages in order, until the window or the outbound queue is full.
func (s *session) pumpLocked() {
	if s.out == nil {
		return
	}
	defer s.wakeLocked()
	blocked := false
	for i := 0; s.unsent > 0 && i < len(s.inflight); i++ {
		f := &s.inflight[i]
		if !f.unsent {
			continue
		}
		if f.writing || f.state != waitPubcomp && f.item.msg == nil {
			// Its record is being written, or its durable subscription has not delivered it again: what
			// follows waits, so resends keep their order [MQTT-4.6.0-1] and a topic stays ordered.
			blocked = true
			break
		}
		b, ok := s.out.Begin()
		if !ok {
			return
		}
		skip := ""
		if f.state == waitPubcomp {
			b = packet.AppendAck(b, packet.Pubrel, f.id, s.version)
		} else {
			// [MQTT-4.4.0-1] a resend carries DUP [MQTT-3.3.1-1] (attach sets it)
			b, skip = s.appendPublishLocked(b, &f.item, f.id, true)
		}
		if skip == "" && f.state != waitPubcomp {
			s.out.CountOut(1) // a resent PUBLISH, counted before the client can see it
		}
		s.commitLocked(b)
		f.unsent = false
		s.unsent--
		if skip != "" {
			// Too large for the client that resumed the session: completed as if acknowledged.
			it, id := f.item, f.id
			s.inflight = slices.Delete(s.inflight, i, i+1)
			i--
			if s.recordsInflight(&it) {
				s.host.DeleteInflight(s.id, id, nil)
			}
			s.skipLocked(&it, skip)
		}
	}
	for s.queue.len() > 0 {
		it := s.queue.peek()
		if it.seq != 0 && it.entry.gone {
			s.queue.pop() // the consumer is closed: the queue redelivers the message elsewhere
			continue
		}
		if it.seq == 0 && it.msg.Expires != 0 && it.msg.Expires <= time.Now().UnixMilli() {
			s.queue.pop() // expired while waiting (a STOMP message's expires header)
			continue
		}
		if blocked && !(it.qos == 2 && s.recordsInflight(it)) {
			return // only a delivery that waits for its record too may take its place in line now
		}
		if !s.sendLocked(it) {
			return
		}
		s.queue.pop()
	}
}

// drained runs on c's writer goroutine when its outbound queue is empty: send what waits and let refused
// queue deliveries come again.
func (s *session) drained(c *protocol.Conn) {
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock()
		return
	}
	s.pumpLocked()
	s.mu.Unlock()
	s.flushLate()
	s.cons.Resume()
}

// skipLocked completes a delivery that is not sent for reason why (appendPublishLocked): a queue's is
// acknowledged to its consumer, later and outside the lock (flushLate); a topic's is counted as dropped.
// One MQTT cannot name is counted either way: it is a message the client was not told of.
func (s *session) skipLocked(it *outItem, why string) {
	if it.seq != 0 {
		s.late = append(s.late, *it)
		s.hasLate.Store(true)
		if why != skipUnrepresented {
			return
		}
	}
	s.countDropLocked(why)
}

// flushLate acknowledges the queue deliveries skipLocked completed. It takes s.mu, then calls the router
// without it.
func (s *session) flushLate() {
	if !s.hasLate.Load() {
		return
	}
	s.mu.Lock()
	late := s.late
	s.late = nil
	s.hasLate.Store(false)
	s.mu.Unlock()
	for _, it := range late {
		if c := it.entry.consumer; c != nil {
			c.Ack(it.seq)
		}
	}
}

// window is the number of QoS 1 and 2 messages the session may have in flight to the client: the
// connector's max_inflight, or less when an MQTT 5 client's Receive Maximum says so [MQTT-3.3.4-7].
func window(lim *conf.MQTT, v *v5conn) int {
	if v != nil {
		return min(lim.MaxInflight, int(v.recvMax))
	}
	return lim.MaxInflight
}

// attach makes c the session's connection: inflight messages are resent (PUBLISH with DUP, or PUBREL) in
// their original order, then what queued while offline.
func (s *session) attach(c *protocol.Conn, version byte, g *router.Grammar, lim *conf.MQTT, v *v5conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out, s.conn, s.version, s.g = c, c, version, g
	s.maxInflight, s.maxQueued = window(lim, v), lim.MaxQueuedMessages
	s.v5 = nil
	if v != nil {
		s.v5 = &sessV5{maxPacket: v.maxPacket, aliasMax: v.aliasMax}
	}
	for i := range s.inflight {
		s.inflight[i].unsent = true
		s.inflight[i].item.dup = true
	}
	s.unsent = len(s.inflight)
	s.pumpLocked()
}

// detach takes the session offline (its queue consumers are closed already, so their messages went back
// to their queues); a clean session is discarded. A persistent session keeps its in-flight messages'
// packet ids: a durable subscription's message forgets its delivery, and is resent under its id when the
// subscription delivers it again [MQTT-4.4.0-1]; a queue's may go to another consumer and is forgotten.
func (s *session) detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out, s.conn = nil, nil
	defer s.wakeLocked()
	if s.clean {
		s.discardLocked()
		return
	}
	s.inflight = slices.DeleteFunc(s.inflight, func(f inflightMsg) bool {
		e := f.item.entry
		switch {
		case f.item.seq != 0 && e.dsub == nil:
			return true
		case e != nil && e.dsub != nil && s.host.Router.Claimed(*e.dsub):
			// The cluster keeps the subscription's messages: one that was in flight comes back from it
			// under a new sequence number, marked redelivered, and goes out under a new packet id, so
			// only a released id (its PUBREL) stays, matching no message (below).
			return f.state != waitPubcomp
		}
		return false
	})
	for i := range s.inflight {
		if e := s.inflight[i].item.entry; e != nil && e.dsub != nil && s.host.Router.Claimed(*e.dsub) {
			s.inflight[i].item.qseq = 0
		}
	}
	for i := range s.inflight {
		if it := &s.inflight[i].item; it.seq != 0 {
			it.msg, it.seq = nil, 0 // redelivered by its durable subscription, found by qseq
		}
	}
	s.queue.filter(func(it *outItem) bool { return it.seq == 0 && it.qos > 0 })
	for _, e := range s.subs {
		e.held, e.holding = nil, false
	}
}

// discardLocked drops everything the session holds; later deliveries are refused.
func (s *session) discardLocked() {
	s.discarded = true
	s.inflight, s.queue, s.seen, s.wilds, s.literals = nil, outQueue{}, nil, nil, nil
	for _, e := range s.subs {
		e.gone, e.held = true, nil
	}
	s.wakeLocked()
}

// setEntryLocked adds or removes e and recomputes the overlap index.
func (s *session) setEntryLocked(e *subEntry, add bool) {
	if add {
		if s.subs == nil {
			s.subs = make(map[string]*subEntry) // made on first use: many clients only publish
		}
		s.subs[e.key] = e
	} else {
		delete(s.subs, e.key)
		e.gone, e.held, e.holding = true, nil, false
	}
	// The overlap index: only a clean session's non-shared topic subscriptions take part (a persistent
	// session's come from their durable subscriptions, one copy each, as [MQTT-3.3.5-1] allows).
	if e.consumes() || e.rs.Share != "" {
		return
	}
	if e.rs.Filter.IsLiteral() {
		key := router.Key(e.rs.Filter.Destination())
		switch {
		case add:
			if s.literals == nil {
				s.literals = make(map[string]*subEntry)
			}
			s.literals[key] = e
		case s.literals[key] == e:
			delete(s.literals, key)
		}
	} else if add {
		s.wilds = append(s.wilds, e)
	} else {
		s.wilds = slices.DeleteFunc(s.wilds, func(x *subEntry) bool { return x == e })
	}
	// Distinct literal filters never match the same topic: an overlap needs a wildcard filter.
	s.overlap = len(s.wilds) > 0 && len(s.wilds)+len(s.literals) > 1
}

var _ router.Sink = (*session)(nil)
