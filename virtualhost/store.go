package virtualhost

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// WithStore makes the host durable with st as its store: cmd/lyre opens the store a host's
// `store { }` block names and passes it here (virtualhost imports no store implementation), tests pass
// an in-memory one. The host closes st on Close.
func WithStore(st store.Store) Option {
	return func(o *options) { o.store = st }
}

// persistence is a host's store and what its recovery found. It is the router's Journal, and the only
// place that builds store operations: front-ends hand it messages, acknowledgements and session state
// through the host's methods.
type persistence struct {
	st store.Store // nil on a memory host: nothing is written

	mu       sync.Mutex // guards sessions and closed
	closed   bool
	sessions []RecoveredSession
	counts   store.Counts

	// failed counts writes that failed with nobody waiting for them.
	failed atomic.Uint64

	// pending holds the queue entries journalled and not yet written, by owner and seq, so that Load
	// sees them without waiting for the committer, and so that a later write of the same entry joins the
	// atomic tracker still gathering its put (see Tracker).
	pendMu  sync.Mutex
	pending map[string]map[uint64]pendingEntry

	stopSweep chan struct{} // closed by close; nil without a sweeper
	sweepDone chan struct{}
}

type pendingEntry struct {
	m  *router.Message
	tr *Tracker // the atomic tracker its put waits in; nil when committed on its own
}

// sweepInterval is how often a durable host deletes expired messages from its store, so messages
// nobody consumes do not hold disk space forever. The router drops them from memory when it reaches them.
var sweepInterval = time.Minute

// sweepLimit bounds the entries one sweep deletes (one commit); the rest wait for the next sweep.
const sweepLimit = 10000

func (p *persistence) durable() bool { return p.st != nil }

// sweep deletes expired entries every interval until close.
func (p *persistence) sweep(every time.Duration) {
	defer close(p.sweepDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stopSweep:
			return
		case <-t.C:
			if _, err := p.st.RemoveExpired(time.Now().UnixMilli(), sweepLimit); err != nil {
				p.failed.Add(1)
			}
		}
	}
}

// newPersistence wraps st (nil for a memory host) and starts its expiry sweeper.
func newPersistence(st store.Store) *persistence {
	p := &persistence{st: st}
	if st != nil {
		p.stopSweep, p.sweepDone = make(chan struct{}), make(chan struct{})
		go p.sweep(sweepInterval)
	}
	return p
}

// commit queues ops; done (when the writer waits) or the failure counter learns the outcome. A memory
// host writes nothing: done succeeds at once.
func (p *persistence) commit(done func(error), ops ...store.Op) {
	if done == nil {
		done = p.countFailure
	}
	if p.st == nil {
		done(nil)
		return
	}
	p.st.CommitFunc(done, ops...)
}

func (p *persistence) countFailure(err error) {
	if err != nil {
		p.failed.Add(1)
	}
}

// write commits ops for a writer waiting on tr (nil: nobody waits): into tr's single commit when tr is
// an atomic tracker still gathering, else on their own.
func (p *persistence) write(tr router.Tracker, ops ...store.Op) {
	if at, ok := tr.(*Tracker); ok && at.add(ops...) {
		return
	}
	var done func(error)
	if tr != nil {
		done = tr.Track()
	}
	p.commit(done, ops...)
}

// recover loads what the store holds into rt (retained messages, durable subscriptions, queue and
// durable subscription backlogs as counts the router loads in windows as they are consumed, so a backlog
// of millions costs neither startup time nor memory) and keeps session records for TakeSessions. It runs
// in Open, before the host is published to any front-end.
func (p *persistence) recover(rt *router.Router) error {
	if p.st == nil {
		return nil
	}
	type backlog struct {
		d    router.Destination
		info store.ListInfo
	}
	var backlogs []backlog
	marks := make(map[string]uint64)
	corrupt := func(what, key string) error { return fmt.Errorf("%w: %s %q", store.ErrCorrupt, what, key) }
	counts, err := p.st.Recover(store.Visitor{
		Retained: func(r store.Retained) error {
			d, ok := router.ParseKey(r.Topic)
			if !ok {
				return corrupt("retained topic", r.Topic)
			}
			m := routerMessage(r.Msg)
			m.Dest = d // the key is authoritative
			rt.RestoreRetained(m)
			return nil
		},
		Session: func(s store.SessionState) error {
			rs, err := recoveredSession(s)
			if err != nil {
				return err
			}
			p.sessions = append(p.sessions, rs)
			return nil
		},
		Queue: func(q store.Queue, l store.ListInfo) error {
			d, ok := router.ParseKey(q.Name)
			if !ok {
				return corrupt("queue", q.Name)
			}
			if q.Delivered > 0 {
				marks[q.Name] = q.Delivered
			}
			if l.Count > 0 {
				if d.Kind != router.Queue {
					return corrupt("queue", q.Name)
				}
				backlogs = append(backlogs, backlog{d, l})
			}
			return nil
		},
		DurableSub: func(ds store.DurableSub, l store.ListInfo) error {
			d, err := restoreDurable(rt, ds)
			if err == nil {
				backlogs = append(backlogs, backlog{d, l})
			}
			return err
		},
	})
	if err != nil {
		return fmt.Errorf("recover store: %w", err)
	}
	for _, b := range backlogs {
		key := router.Key(b.d)
		rt.RestoreBacklog(b.d, b.info.Count, b.info.First, b.info.Last, marks[key])
		delete(marks, key)
	}
	restoreMarks(rt, marks)
	rt.ReserveIDs(counts.MaxMessageID)
	p.counts = counts
	return nil
}

// restoreMarks gives the router the delivered marks of queues holding nothing now: their new sequence
// numbers start above them.
func restoreMarks(rt *router.Router, marks map[string]uint64) {
	for key, mark := range marks {
		if d, ok := router.ParseKey(key); ok {
			rt.RestoreBacklog(d, 0, 0, 0, mark)
		}
	}
}

// restoreDurable gives the router a durable subscription recovered from the store.
func restoreDurable(rt *router.Router, ds store.DurableSub) (router.Destination, error) {
	d, ok := router.ParseKey(ds.ID)
	if !ok || d.Kind != router.DurableSub {
		return d, fmt.Errorf("%w: durable subscription %q", store.ErrCorrupt, ds.ID)
	}
	f, err := router.ParseFilterKey(ds.Filter)
	if err != nil {
		return d, fmt.Errorf("%w: durable subscription %q: %w", store.ErrCorrupt, ds.ID, err)
	}
	o := router.DurableOptions{Filter: f, Owner: ds.Owner, QoS: ds.QoS, DropQoS0Offline: ds.Flags&flagDropQoS0 != 0}
	if err := rt.RestoreDurable(d, o); err != nil {
		return d, fmt.Errorf("durable subscription %q: %w", ds.ID, err)
	}
	return d, nil
}

// flagDropQoS0 is store.DurableSub.Flags' bit for router.DurableOptions.DropQoS0Offline.
const flagDropQoS0 = 1

// Load implements router.Journal: up to limit messages of queue d from seq from on, read from the store
// and merged with those journalled and not yet written (pending), so a window loaded while writes are
// queued misses none of them and never waits for the committer. The pending ones are taken first: a
// write that completes in between is then found in one or the other.
func (p *persistence) Load(d router.Destination, from uint64, limit int) ([]router.Stored, error) {
	owner := router.Key(d)
	var out []router.Stored
	p.pendMu.Lock()
	for seq, pe := range p.pending[owner] {
		if seq >= from {
			out = append(out, router.Stored{Seq: seq, Msg: pe.m})
		}
	}
	p.pendMu.Unlock()
	es, err := p.st.Entries(listOf(d.Kind), owner, from, limit)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		out = make([]router.Stored, 0, len(es))
	}
	for _, e := range es {
		m := routerMessage(e.Msg)
		if d.Kind == router.Queue {
			// A queue's messages are its own; a dead-lettered copy shares its original's stored body. A
			// durable subscription's messages keep the topic they were published to.
			m.Dest = d
		}
		out = append(out, router.Stored{Seq: e.Seq, Redeliveries: e.Redeliveries, Msg: m})
	}
	slices.SortStableFunc(out, func(a, b router.Stored) int { return cmp.Compare(a.Seq, b.Seq) })
	out = slices.CompactFunc(out, func(a, b router.Stored) bool { return a.Seq == b.Seq }) // pending first
	if len(out) > limit {
		clear(out[limit:])
		out = out[:limit]
	}
	return out, nil
}

// Delivered implements router.Journal: the mark goes in the queue's record (for a durable subscription
// too, under its name), replacing the previous one. The record outlives its queue (a few bytes), so a
// queue or subscription of the same name made later starts its sequence numbers above the mark.
func (p *persistence) Delivered(d router.Destination, mark uint64) {
	p.commit(nil, store.PutQueue{Queue: store.Queue{Name: router.Key(d), Kind: uint8(d.Kind), Delivered: mark}})
}

// Enqueue implements router.Journal: a persistent queue message is stored under its queue sequence
// number (again when its redelivery count changes); a publisher waiting on the message's Tracker learns
// the outcome, or gathers the write into its single commit (an atomic tracker).
func (p *persistence) Enqueue(d router.Destination, seq uint64, redeliveries uint32, m *router.Message) {
	owner := router.Key(d)
	op := store.PutEntry{Entry: store.Entry{List: listOf(d.Kind), Owner: owner, Seq: seq, Redeliveries: redeliveries,
		Msg: storeMessage(m)}}
	if redeliveries > 0 {
		// A redelivery count for a message in memory: its publisher was answered long ago. If its put is
		// still gathering in a tracker, the new count must follow it there.
		p.entryWrite(owner, seq, nil, op)
		return
	}
	if at, ok := m.Tracker.(*Tracker); ok && at.p != nil {
		// Registered first: a write of the same entry made before the tracker's commit joins it.
		p.addPending(owner, seq, pendingEntry{m: m, tr: at})
		if at.addWith(func(error) { p.dropPending(owner, seq, m) }, op) {
			return
		}
	}
	var done func(error)
	if m.Tracker != nil {
		done = m.Tracker.Track()
	}
	// Until written, Load finds it in pending.
	p.addPending(owner, seq, pendingEntry{m: m})
	inner := done
	p.commit(func(err error) {
		p.dropPending(owner, seq, m)
		if inner != nil {
			inner(err)
		} else {
			p.countFailure(err)
		}
	}, op)
}

func (p *persistence) addPending(owner string, seq uint64, pe pendingEntry) {
	p.pendMu.Lock()
	defer p.pendMu.Unlock()
	if p.pending == nil {
		p.pending = make(map[string]map[uint64]pendingEntry)
	}
	byseq := p.pending[owner]
	if byseq == nil {
		byseq = make(map[uint64]pendingEntry)
		p.pending[owner] = byseq
	}
	byseq[seq] = pe
}

func (p *persistence) dropPending(owner string, seq uint64, m *router.Message) {
	p.pendMu.Lock()
	defer p.pendMu.Unlock()
	if byseq := p.pending[owner]; byseq != nil && byseq[seq].m == m {
		delete(byseq, seq)
		if len(byseq) == 0 {
			delete(p.pending, owner)
		}
	}
}

// entryWrite commits op, a write about entry (owner, seq), for a writer waiting on tr (nil: nobody):
// into the atomic tracker the entry's put is still gathering in, when there is one, so the store sees
// the two in order; else on its own, behind it.
func (p *persistence) entryWrite(owner string, seq uint64, tr router.Tracker, op store.Op) {
	p.pendMu.Lock()
	pe := p.pending[owner][seq]
	p.pendMu.Unlock()
	var done func(error)
	if tr != nil {
		done = tr.Track()
	}
	if pe.tr != nil && pe.tr.addWith(done, op) {
		return
	}
	p.commit(done, op)
}

// listOf is the store list of a journalled queue kind.
func listOf(k router.Kind) store.List {
	if k == router.DurableSub {
		return store.ListDurableSub
	}
	return store.ListQueue
}

// Dequeue implements router.Journal: the entry is deleted (its body with its last reference).
func (p *persistence) Dequeue(d router.Destination, seq uint64) {
	owner := router.Key(d)
	p.entryWrite(owner, seq, nil, store.DeleteEntry{Ref: store.Ref{List: listOf(d.Kind), Owner: owner, Seq: seq}})
}

// Durable implements router.Journal: a durable subscription's record, with its filter and owner in
// canonical form; its removal deletes the record, its (by then empty) list and its delivered mark.
func (p *persistence) Durable(d router.Destination, o *router.DurableOptions, tr router.Tracker) {
	key := router.Key(d)
	if o == nil {
		p.write(tr, store.DeleteDurableSub{ID: key}, store.DeleteQueue{Name: key})
		return
	}
	var flags uint8
	if o.DropQoS0Offline {
		flags |= flagDropQoS0
	}
	p.write(tr, store.PutDurableSub{Sub: store.DurableSub{ID: key, Filter: router.FilterKey(o.Filter),
		Owner: o.Owner, QoS: o.QoS, Flags: flags}})
}

// Retain implements router.Journal: the retained message of a topic is stored (or cleared) in the order
// the router applied it; a publisher waiting on the message's Tracker learns the outcome.
func (p *persistence) Retain(m *router.Message) {
	key := router.Key(m.Dest)
	var op store.Op = store.DeleteRetained{Topic: key}
	if len(m.Body) > 0 {
		op = store.PutRetained{Retained: store.Retained{Topic: key, Msg: storeMessage(m)}}
	}
	p.write(m.Tracker, op)
}

// stop ends the sweeper without closing the store (Open's failure path closes it).
func (p *persistence) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st != nil && !p.closed {
		p.closed = true
		close(p.stopSweep)
		<-p.sweepDone
	}
}

func (p *persistence) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil || p.closed {
		return nil
	}
	p.closed = true
	close(p.stopSweep)
	<-p.sweepDone
	return p.st.Close()
}

// Durable reports whether the host has a store: then front-ends acknowledge publishers only once what
// must persist is written. A memory host persists nothing.
func (h *Host) Durable() bool { return h.persist.durable() }

// TracksWrites reports whether a publisher's acknowledgement waits for the writes its message causes
// (Message.Tracker): on a host with a store, and on one whose queues a cluster replicates
// (router.Router.Replicated), where the acknowledgement waits for the replicas.
func (h *Host) TracksWrites() bool { return h.persist.durable() || h.Router.Replicated() }

// Recovered returns what the store held when the host opened (zero for a memory host).
func (h *Host) Recovered() store.Counts { return h.persist.counts }

// StoreStats returns the counters of the host's store (see store.Stats: commits, commit latency, size);
// ok is false for a memory host, which has none.
func (h *Host) StoreStats() (st store.Stats, ok bool) {
	if !h.persist.durable() {
		return store.Stats{}, false
	}
	return h.persist.st.Stats(), true
}

// JournalFailures counts writes that failed with nobody waiting for them.
func (h *Host) JournalFailures() uint64 { return h.persist.failed.Load() }

// storeMessage converts a routed message for the store (sharing its body, paths and correlation data).
func storeMessage(m *router.Message) *store.Message {
	sm := &store.Message{
		ID: m.ID, DestKind: uint8(m.Dest.Kind), DestPath: m.Dest.Path, Origin: m.Origin, QoS: m.QoS,
		Persistent: m.Persistent, Retain: m.Retain, Priority: m.Priority, Expires: m.Expires,
		ContentType: m.ContentType, Group: m.Group, Body: m.Body,
		CorrelationData: m.CorrelationData, UTF8: m.UTF8,
	}
	if len(m.ReplyTo.Path) > 0 {
		sm.ReplyToKind, sm.ReplyToPath = uint8(m.ReplyTo.Kind), m.ReplyTo.Path
	}
	if len(m.Headers) > 0 {
		sm.Headers = make([]store.Header, len(m.Headers))
		for i, h := range m.Headers {
			sm.Headers[i] = store.Header(h)
		}
	}
	return sm
}

// routerMessage converts a stored message back. The origin text is kept but not its grammar, so
// subscribers render the destination.
func routerMessage(sm *store.Message) *router.Message {
	m := &router.Message{
		ID: sm.ID, Dest: router.Destination{Kind: router.Kind(sm.DestKind), Path: sm.DestPath},
		Body: sm.Body, QoS: sm.QoS, Persistent: sm.Persistent, Retain: sm.Retain, Priority: sm.Priority,
		Expires: sm.Expires, ContentType: sm.ContentType, Origin: sm.Origin, Group: sm.Group,
		CorrelationData: sm.CorrelationData, UTF8: sm.UTF8,
	}
	if len(sm.ReplyToPath) > 0 {
		m.ReplyTo = router.Destination{Kind: router.Kind(sm.ReplyToKind), Path: sm.ReplyToPath}
	}
	if len(sm.Headers) > 0 {
		m.Headers = make([]router.Header, len(sm.Headers))
		for i, h := range sm.Headers {
			m.Headers[i] = router.Header(h)
		}
	}
	return m
}

var _ router.Journal = (*persistence)(nil)
