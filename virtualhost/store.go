package virtualhost

// Persistence of a virtual host. A host with a `store { directory }` block opens a badger store there at
// Open, recovers it before any client can connect (retained messages into the router; queue and durable
// subscription backlogs as counts the router loads in windows as they are consumed, so a backlog of
// millions costs neither startup time nor memory; MQTT sessions kept for the MQTT front-end, see
// TakeSessions) and journals what must survive a restart. A host without a
// store block keeps everything in memory: it is not Durable, nothing is journalled, and Store opens an
// in-memory store only when someone asks for it (so a memory host starts no goroutine).

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/store/memstore"
)

// WithStore makes the host durable with st as its store, whatever its configuration says: for tests
// (a memory store with injected write failures, say). The host closes st on Close.
func WithStore(st store.Store) Option {
	return func(o *options) { o.store = st }
}

// WithStoreLogger sends the store's warnings and errors (badger's) to l; *zap.SugaredLogger fits.
func WithStoreLogger(l badgerstore.Logger) Option {
	return func(o *options) { o.storeLog = l }
}

// persistence is a host's store and what its recovery found.
type persistence struct {
	durable bool

	mu       sync.Mutex // guards st (opened lazily on a memory host) and sessions
	st       store.Store
	closed   bool
	sessions []store.SessionState
	durables []store.DurableSub
	counts   store.Counts

	// failed counts journal writes that failed with nobody waiting for them (see Journal).
	failed atomic.Uint64

	// pending holds the queue messages journalled and not yet written, by store owner and seq, so that
	// Load sees them without waiting for the committer (see Load).
	pendMu  sync.Mutex
	pending map[string]map[uint64]*router.Message

	stopSweep chan struct{} // closed by close; nil without a sweeper
	sweepDone chan struct{}
}

// sweepInterval is how often a durable host deletes expired messages from its store, so messages
// nobody consumes do not hold disk space forever. The router and sessions drop them from memory when
// they reach them.
var sweepInterval = time.Minute

// sweepLimit bounds the entries one sweep deletes (one commit); the rest wait for the next sweep.
const sweepLimit = 10000

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

// openPersistence opens the store c configures (or uses given, see WithStore); a memory host gets no
// store until Store is called.
func openPersistence(c conf.VirtualHost, given store.Store, log badgerstore.Logger) (*persistence, error) {
	p := &persistence{}
	if given != nil {
		p.st, p.durable = given, true
		return p, nil
	}
	if c.Store == nil {
		return p, nil
	}
	st, err := badgerstore.Open(c.Store.Directory, badgerstore.Options{
		NoSync: !c.Store.Sync, FlushDelay: c.Store.FlushDelay, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("store %q: %w", c.Store.Directory, err)
	}
	p.st, p.durable = st, true
	p.stopSweep, p.sweepDone = make(chan struct{}), make(chan struct{})
	go p.sweep(sweepInterval)
	return p, nil
}

// recover loads what the store holds into rt (retained messages) and keeps MQTT sessions for
// TakeSessions. It runs in Open, before the host is published to any front-end.
func (p *persistence) recover(rt *router.Router) error {
	if !p.durable {
		return nil
	}
	type backlog struct {
		name string
		info store.ListInfo
	}
	var queues, subs []backlog
	marks := make(map[string]uint64)
	counts, err := p.st.Recover(store.Visitor{
		Retained: func(r store.Retained) error {
			m := RouterMessage(r.Msg)
			if d, ok := ParseTopicKey(r.Topic); ok {
				m.Dest = d // the key is authoritative
			}
			rt.RestoreRetained(m)
			return nil
		},
		Session: func(s store.SessionState) error {
			p.sessions = append(p.sessions, s)
			return nil
		},
		Queue: func(q store.Queue, l store.ListInfo) error {
			if q.Delivered > 0 {
				marks[q.Name] = q.Delivered
			}
			if l.Count > 0 {
				queues = append(queues, backlog{q.Name, l})
			}
			return nil
		},
		DurableSub: func(d store.DurableSub, l store.ListInfo) error {
			p.durables = append(p.durables, d)
			subs = append(subs, backlog{d.ID, l})
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("recover store: %w", err)
	}
	restore := func(b backlog, kind router.Kind) error {
		d, ok := ParseTopicKey(b.name)
		if !ok || d.Kind != kind {
			return fmt.Errorf("%w: %s name %q", store.ErrCorrupt, listOf(kind), b.name)
		}
		rt.RestoreBacklog(d, b.info.Count, b.info.First, b.info.Last, marks[b.name])
		delete(marks, b.name)
		return nil
	}
	for _, b := range queues {
		if err := restore(b, router.Queue); err != nil {
			return fmt.Errorf("recover queue: %w", err)
		}
	}
	for _, b := range subs {
		if err := restore(b, router.DurableSub); err != nil {
			return fmt.Errorf("recover durable subscription: %w", err)
		}
	}
	// The marks of queues holding nothing now: their new sequence numbers start above them.
	for name, mark := range marks {
		if d, ok := ParseTopicKey(name); ok {
			rt.RestoreBacklog(d, 0, 0, 0, mark)
		}
	}
	rt.ReserveIDs(counts.MaxMessageID)
	p.counts = counts
	return nil
}

// Load implements router.Journal: up to limit messages of queue d from seq from on, read from the store
// and merged with those journalled and not yet written (pending), so a window loaded while writes are
// queued misses none of them and never waits for the committer. The pending ones are taken first: a
// write that completes in between is then found in one or the other.
func (p *persistence) Load(d router.Destination, from uint64, limit int) ([]router.Stored, error) {
	owner := TopicKey(d)
	var out []router.Stored
	p.pendMu.Lock()
	for seq, m := range p.pending[owner] {
		if seq >= from {
			out = append(out, router.Stored{Seq: seq, Msg: m})
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
		m := RouterMessage(e.Msg)
		m.Dest = d
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
// too, under its TopicKey, which no queue name can take), replacing the previous one. The record
// outlives its queue (a few bytes), so a queue or subscription of the same name made later starts its
// sequence numbers above the mark.
func (p *persistence) Delivered(d router.Destination, mark uint64) {
	p.st.CommitFunc(p.doneFor(nil), store.PutQueue{Queue: store.Queue{Name: TopicKey(d), Kind: uint8(d.Kind), Delivered: mark}})
}

// Enqueue implements router.Journal: a persistent queue message is stored under its queue sequence
// number (again when its redelivery count changes); a publisher waiting on the message's Tracker learns
// the outcome.
func (p *persistence) Enqueue(d router.Destination, seq uint64, redeliveries uint32, m *router.Message) {
	tr := m.Tracker
	if redeliveries > 0 {
		tr = nil // a redelivery count: the publisher was answered long ago
	}
	owner := TopicKey(d)
	done := p.doneFor(tr)
	if redeliveries == 0 {
		// Until written, Load finds it here. A redelivery count is for a message in memory, never loaded.
		p.pendMu.Lock()
		if p.pending == nil {
			p.pending = make(map[string]map[uint64]*router.Message)
		}
		byseq := p.pending[owner]
		if byseq == nil {
			byseq = make(map[uint64]*router.Message)
			p.pending[owner] = byseq
		}
		byseq[seq] = m
		p.pendMu.Unlock()
		inner := done
		done = func(err error) {
			p.pendMu.Lock()
			if byseq := p.pending[owner]; byseq != nil && byseq[seq] == m {
				delete(byseq, seq)
				if len(byseq) == 0 {
					delete(p.pending, owner)
				}
			}
			p.pendMu.Unlock()
			inner(err)
		}
	}
	p.st.CommitFunc(done, store.PutEntry{Entry: store.Entry{List: listOf(d.Kind),
		Owner: owner, Seq: seq, Redeliveries: redeliveries, Msg: StoreMessage(m)}})
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
	p.st.CommitFunc(p.doneFor(nil), store.DeleteEntry{Ref: store.Ref{List: listOf(d.Kind), Owner: TopicKey(d), Seq: seq}})
}

func (p *persistence) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil || p.closed {
		return nil
	}
	p.closed = true
	if p.stopSweep != nil {
		close(p.stopSweep)
		<-p.sweepDone
	}
	return p.st.Close()
}

// Retain implements router.Journal: the retained message of a topic is stored (or cleared) in the order
// the router applied it; a publisher waiting on the message's Tracker learns the outcome.
func (p *persistence) Retain(m *router.Message) {
	key := TopicKey(m.Dest)
	var op store.Op = store.DeleteRetained{Topic: key}
	if len(m.Body) > 0 {
		op = store.PutRetained{Retained: store.Retained{Topic: key, Msg: StoreMessage(m)}}
	}
	p.st.CommitFunc(p.doneFor(m.Tracker), op)
}

// doneFor returns the completion of a write started for a message: tr's when someone waits, else one
// that counts failures.
func (p *persistence) doneFor(tr router.Tracker) func(error) {
	if tr != nil {
		return tr.Track()
	}
	return func(err error) {
		if err != nil {
			p.failed.Add(1)
		}
	}
}

// Durable reports whether the host has a store block: then front-ends persist what the store package
// describes and acknowledge publishers only once it is written. A memory host persists nothing.
func (h *Host) Durable() bool { return h.persist.durable }

// Store returns the host's store. A memory host gets an in-memory store, opened on first call.
func (h *Host) Store() store.Store {
	p := h.persist
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil {
		p.st = memstore.New(memstore.Options{})
	}
	return p.st
}

// Recovered returns what the store held when the host opened (zero for a memory host).
func (h *Host) Recovered() store.Counts { return h.persist.counts }

// JournalFailures counts journal writes that failed with no publisher waiting for them.
func (h *Host) JournalFailures() uint64 { return h.persist.failed.Load() }

// TakeSessions returns the MQTT sessions recovered at Open, once: the MQTT front-end restores them before
// any client connects. Later calls return nil.
func (h *Host) TakeSessions() []store.SessionState {
	p := h.persist
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sessions
	p.sessions = nil
	return s
}

// TakeDurableSubs returns the durable subscription records recovered at Open (their backlogs are known to
// the router already, loaded as consumed), once: the STOMP front-end rebuilds their topic bridges before any client connects.
// Each ID is the TopicKey of the subscription's queue. Later calls return nil.
func (h *Host) TakeDurableSubs() []store.DurableSub {
	p := h.persist
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.durables
	p.durables = nil
	return d
}

// Commit queues ops on the host's store; done (never nil) learns the outcome, on the store's committer
// goroutine. A memory host has nothing to write: done(nil) is called at once.
func (h *Host) Commit(done func(error), ops ...store.Op) {
	if !h.persist.durable {
		done(nil)
		return
	}
	h.persist.st.CommitFunc(done, ops...)
}

// Tracker implements router.Tracker: it counts the durable writes started for one message and calls a
// function once all of them are done, with the first error. Use it for one message: set it as the
// message's Tracker, publish, then call Then.
//
// A tracker made by NewAtomicTracker also gathers writes (Add) into one commit, made by Flush, so that
// they are durable together or not at all: an MQTT QoS 2 message's inbound packet id and the copies kept
// for sessions, which must never be half written (a resent PUBLISH would be taken for a duplicate while a
// session misses the message). A writer that adds to it must Flush it before committing a later change
// of the same state, so the store sees the changes in order.
type Tracker struct {
	mu      sync.Mutex
	pending int
	err     error
	then    func(error)
	host    *Host      // set for an atomic tracker
	ops     []store.Op // added, not yet flushed
}

// NewAtomicTracker returns a tracker whose added writes go to h's store in one commit (see Tracker).
func NewAtomicTracker(h *Host) *Tracker { return &Tracker{host: h} }

// Atomic reports whether the tracker gathers writes (Add) into one commit.
func (t *Tracker) Atomic() bool { return t.host != nil }

// Add gathers ops into the tracker's commit. Only for an atomic tracker.
func (t *Tracker) Add(ops ...store.Op) {
	t.mu.Lock()
	t.ops = append(t.ops, ops...)
	t.mu.Unlock()
}

// Unflushed reports whether writes were added since the last Flush.
func (t *Tracker) Unflushed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ops) > 0
}

// Flush commits what was added since the last Flush as one unit; the tracker waits for it. Several
// writers may flush one tracker; each commit holds what was added before it.
func (t *Tracker) Flush() {
	t.mu.Lock()
	ops := t.ops
	t.ops = nil
	t.mu.Unlock()
	if len(ops) > 0 {
		t.host.Commit(t.Track(), ops...)
	}
}

// Track implements router.Tracker.
func (t *Tracker) Track() func(error) {
	t.mu.Lock()
	t.pending++
	t.mu.Unlock()
	var once atomic.Bool
	return func(err error) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		t.mu.Lock()
		if err != nil && t.err == nil {
			t.err = err
		}
		t.pending--
		var f func(error)
		if t.pending == 0 && t.then != nil {
			f, t.then = t.then, nil
		}
		ferr := t.err
		t.mu.Unlock()
		if f != nil {
			f(ferr)
		}
	}
}

// Then calls f once every tracked write is done: at once, on this goroutine, when none is pending (it
// then reports true), else on the goroutine finishing the last write. Call it once, after Publish.
func (t *Tracker) Then(f func(error)) (now bool) {
	t.mu.Lock()
	if t.pending > 0 {
		t.then = f
		t.mu.Unlock()
		return false
	}
	err := t.err
	t.mu.Unlock()
	f(err)
	return true
}

// StoreMessage converts a routed message for the store (sharing its body and path).
func StoreMessage(m *router.Message) *store.Message {
	sm := &store.Message{
		ID: m.ID, DestKind: uint8(m.Dest.Kind), DestPath: m.Dest.Path, Origin: m.Origin, QoS: m.QoS,
		Persistent: m.Persistent, Retain: m.Retain, Priority: m.Priority, Expires: m.Expires,
		ContentType: m.ContentType, Group: m.Group, Body: m.Body,
	}
	if len(m.Headers) > 0 {
		sm.Headers = make([]store.Header, len(m.Headers))
		for i, h := range m.Headers {
			sm.Headers[i] = store.Header(h)
		}
	}
	return sm
}

// RouterMessage converts a stored message back. The origin text is kept but not its grammar, so
// subscribers render the destination.
func RouterMessage(sm *store.Message) *router.Message {
	m := &router.Message{
		ID: sm.ID, Dest: router.Destination{Kind: router.Kind(sm.DestKind), Path: sm.DestPath},
		Body: sm.Body, QoS: sm.QoS, Persistent: sm.Persistent, Retain: sm.Retain, Priority: sm.Priority,
		Expires: sm.Expires, ContentType: sm.ContentType, Origin: sm.Origin, Group: sm.Group,
	}
	if len(sm.Headers) > 0 {
		m.Headers = make([]router.Header, len(sm.Headers))
		for i, h := range sm.Headers {
			m.Headers[i] = router.Header(h)
		}
	}
	return m
}

// TopicKey is a destination's canonical text in the store: the kind, ':', then the path segments joined
// by '/', each with '%' and '/' escaped as %25 and %2F, so any path maps to one key and back.
func TopicKey(d router.Destination) string {
	var b strings.Builder
	b.WriteString(d.Kind.String())
	b.WriteByte(':')
	for i, s := range d.Path {
		if i > 0 {
			b.WriteByte('/')
		}
		for j := 0; j < len(s); j++ {
			switch s[j] {
			case '%':
				b.WriteString("%25")
			case '/':
				b.WriteString("%2F")
			default:
				b.WriteByte(s[j])
			}
		}
	}
	return b.String()
}

// ParseTopicKey is the inverse of TopicKey.
func ParseTopicKey(key string) (router.Destination, bool) {
	kindText, rest, ok := strings.Cut(key, ":")
	if !ok {
		return router.Destination{}, false
	}
	var d router.Destination
	for k := router.Topic; k <= router.TempTopic; k++ {
		if k.String() == kindText {
			d.Kind, ok = k, true
			break
		}
		ok = false
	}
	if !ok {
		return d, false
	}
	for _, s := range strings.Split(rest, "/") {
		if strings.Contains(s, "%") {
			s = strings.ReplaceAll(strings.ReplaceAll(s, "%2F", "/"), "%25", "%")
		}
		d.Path = append(d.Path, s)
	}
	return d, true
}

var (
	_ router.Journal = (*persistence)(nil)
	_ router.Tracker = (*Tracker)(nil)
)
