// Package engine implements store.Store over any ordered key-value backend: the key layout, the op
// semantics (reference counting, cascading deletes, the expiry index), group commit and the reads. The
// memory and badger stores differ only in their KV.
package engine

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lyremq/lyre/store"
)

// Reader reads committed state. Values passed to Scan's fn are valid only during the call; Get returns a
// copy.
type Reader interface {
	Get(key []byte) ([]byte, bool, error)
	// Scan calls fn for each key with prefix, from start (>= prefix) upward, until fn returns false.
	// With keysOnly, values are nil.
	Scan(prefix, start []byte, keysOnly bool, fn func(key, val []byte) (bool, error)) error
}

// Mutation is a set (Delete false) or a delete of one key.
type Mutation struct {
	Key, Value []byte
	Delete     bool
}

// KV is an ordered key-value backend.
type KV interface {
	// View runs fn on a consistent snapshot of committed state.
	View(fn func(r Reader) error) error
	// Write applies muts atomically and durably: one transaction, one sync. On error none is applied.
	// A transaction too big for the backend fails with an error wrapping store.ErrBatchTooBig.
	Write(muts []Mutation) error
	Close() error
}

// Options configure an Engine.
type Options struct {
	// FlushDelay, when > 0, holds the first commit of a batch up to this long to gather more; a put
	// cancelled by a delete within the batch is then never written.
	FlushDelay time.Duration
	// QueueLength bounds commits waiting for the committer; Commit blocks while it is full. Default 4096.
	QueueLength int
	// MaxBatchOps caps the ops gathered into one transaction (a commit is never cut). Default 4096, well
	// inside badger's default transaction limits for queue entries.
	MaxBatchOps int
	// BeforeWrite, when set, is called with each batch's mutations staged and not yet written; an error
	// fails the batch as a backend error would. For fault-injection tests.
	BeforeWrite func() error
}

// Engine is a store.Store over a KV.
type Engine struct {
	kv  KV
	opt Options

	mu     sync.RWMutex // guards closed and sends on queue
	closed bool
	queue  chan *request
	done   chan struct{}

	// readMu keeps the KV open while a read runs; Close takes it to close the KV.
	readMu   sync.RWMutex
	kvClosed bool

	commits, ops, batches, failed, writes atomic.Uint64
	latency                               store.Histogram
}

type request struct {
	ops    []store.Op
	done   func(error)
	queued time.Time // for Stats.CommitLatency
	// removed, when set, receives the entries its conditional deletes removed (RemoveExpired).
	removed *[]store.Ref
}

// New checks kv's format version (writing it into an empty KV) and starts the committer.
func New(kv KV, o Options) (*Engine, error) {
	if o.QueueLength <= 0 {
		o.QueueLength = 4096
	}
	if o.MaxBatchOps <= 0 {
		o.MaxBatchOps = 4096
	}
	if err := checkVersion(kv); err != nil {
		return nil, err
	}
	e := &Engine{kv: kv, opt: o, queue: make(chan *request, o.QueueLength), done: make(chan struct{})}
	go e.run()
	return e, nil
}

func checkVersion(kv KV) error {
	var v []byte
	var found, empty = false, true
	err := kv.View(func(r Reader) error {
		var err error
		if v, found, err = r.Get([]byte(keyVersion)); err != nil || found {
			return err
		}
		return r.Scan(nil, nil, true, func([]byte, []byte) (bool, error) {
			empty = false
			return false, nil
		})
	})
	if err != nil {
		return err
	}
	want := strconv.Itoa(store.FormatVersion)
	switch {
	case found && string(v) == want:
		return nil
	case found && string(v) == "1":
		return fmt.Errorf("%w %q (this build reads %s: export the store with the Lyre build that wrote it, "+
			"`lyre store export`, then import the file with this one, `lyre store import`, which converts it)",
			store.ErrVersion, v, want)
	case found:
		return fmt.Errorf("%w %q (this build reads %s; export with the matching build, then import)",
			store.ErrVersion, v, want)
	case !empty:
		return fmt.Errorf("%w: data without a version key (not a Lyre store?)", store.ErrVersion)
	}
	return kv.Write([]Mutation{{Key: []byte(keyVersion), Value: []byte(want)}})
}

// Commit implements store.Store.
func (e *Engine) Commit(ops ...store.Op) <-chan error {
	ch := make(chan error, 1)
	e.CommitFunc(func(err error) { ch <- err }, ops...)
	return ch
}

// CommitFunc implements store.Store. It blocks while the commit queue is full.
func (e *Engine) CommitFunc(done func(error), ops ...store.Op) {
	if done == nil {
		done = func(error) {}
	}
	for _, op := range ops {
		if err := store.Validate(op); err != nil {
			done(err)
			return
		}
	}
	e.submit(&request{ops: ops, done: done})
}

func (e *Engine) submit(r *request) {
	r.queued = time.Now()
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		r.done(store.ErrClosed)
		return
	}
	e.queue <- r
	e.mu.RUnlock()
}

// run is the committer: it gathers queued commits into batches, applies each batch in one transaction
// and tells every caller the outcome.
func (e *Engine) run() {
	defer close(e.done)
	var reqs []*request
	for first := range e.queue {
		reqs = append(reqs[:0], first)
		n := len(first.ops)
		if e.opt.FlushDelay > 0 {
			n = e.gatherDelayed(&reqs, n)
		}
		// Whatever queued while the previous batch was syncing joins this one.
	drain:
		for n < e.opt.MaxBatchOps {
			select {
			case r, ok := <-e.queue:
				if !ok {
					break drain
				}
				reqs = append(reqs, r)
				n += len(r.ops)
			default:
				break drain
			}
		}
		applied, err := e.applyRequests(reqs)
		now := time.Now()
		for i, r := range reqs {
			e.latency.Observe(now.Sub(r.queued))
			e.commits.Add(1)
			e.ops.Add(uint64(len(r.ops)))
			if i < applied {
				r.done(nil)
			} else {
				e.failed.Add(1)
				r.done(err)
			}
		}
		clear(reqs)
	}
}

func (e *Engine) gatherDelayed(reqs *[]*request, n int) int {
	t := time.NewTimer(e.opt.FlushDelay)
	defer t.Stop()
	for n < e.opt.MaxBatchOps {
		select {
		case r, ok := <-e.queue:
			if !ok {
				return n
			}
			*reqs = append(*reqs, r)
			n += len(r.ops)
		case <-t.C:
			return n
		}
	}
	return n
}

// applyRequests commits reqs and returns how many leading ones are durable; the rest failed with err.
// A batch too big for one transaction is split at commit boundaries.
func (e *Engine) applyRequests(reqs []*request) (int, error) {
	err := e.applyBatch(reqs)
	if err == nil {
		return len(reqs), nil
	}
	if !errors.Is(err, store.ErrBatchTooBig) || len(reqs) == 1 {
		return 0, err
	}
	h := len(reqs) / 2
	n, err := e.applyRequests(reqs[:h])
	if err != nil {
		return n, err
	}
	n, err = e.applyRequests(reqs[h:])
	return h + n, err
}

func (e *Engine) applyBatch(reqs []*request) error {
	var muts []Mutation
	err := e.kv.View(func(r Reader) error {
		b := newBatch(r)
		for _, req := range reqs {
			b.removed = req.removed
			if req.removed != nil {
				*req.removed = (*req.removed)[:0] // a split batch is applied again
			}
			for _, op := range req.ops {
				if err := b.apply(op); err != nil {
					return err
				}
			}
		}
		var err error
		muts, err = b.finish()
		return err
	})
	if err != nil {
		return fmt.Errorf("store: apply: %w", err)
	}
	if len(muts) == 0 {
		return nil
	}
	if e.opt.BeforeWrite != nil {
		if err := e.opt.BeforeWrite(); err != nil {
			return fmt.Errorf("store: write: %w", err)
		}
	}
	e.batches.Add(1)
	if err := e.kv.Write(muts); err != nil {
		return fmt.Errorf("store: write: %w", err)
	}
	e.writes.Add(uint64(len(muts)))
	return nil
}

// Stats implements store.Store.
func (e *Engine) Stats() store.Stats {
	return store.Stats{Commits: e.commits.Load(), Ops: e.ops.Load(), Batches: e.batches.Load(),
		Failed: e.failed.Load(), Writes: e.writes.Load(), Queued: len(e.queue),
		CommitLatency: e.latency.Snapshot()}
}

// Close implements store.Store: queued commits are written first.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return store.ErrClosed
	}
	e.closed = true
	close(e.queue)
	e.mu.Unlock()
	<-e.done
	e.readMu.Lock()
	defer e.readMu.Unlock()
	e.kvClosed = true
	return e.kv.Close()
}

// view runs a read on committed state, or fails with store.ErrClosed once the store is closed.
func (e *Engine) view(fn func(r Reader) error) error {
	e.readMu.RLock()
	defer e.readMu.RUnlock()
	if e.kvClosed {
		return store.ErrClosed
	}
	return e.kv.View(fn)
}
