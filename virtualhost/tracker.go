package virtualhost

import (
	"sync"
	"sync/atomic"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// Tracker implements router.Tracker: it counts the durable writes started for one message (or one
// request) and calls a function once all of them are done, with the first error. Use it for one message:
// set it as the message's Tracker, publish, then call Then.
//
// A tracker made by NewAtomicTracker also gathers writes into one commit, made by Flush, so that they
// are durable together or not at all: an MQTT QoS 2 message's inbound packet id and the copies kept in
// durable subscriptions must never be half written (a resent PUBLISH would be taken for a duplicate while
// a subscription misses the message). The journal adds the writes a publish causes (add); the publisher
// flushes once Publish returns, which seals the tracker. A write about the same state made meanwhile by
// someone else (a consumer acknowledging the new entry at once) joins the tracker too, so the store sees
// the changes in order; after the seal it is committed on its own, behind the tracker's commit.
type Tracker struct {
	mu      sync.Mutex // guards pending, err, then; never held while committing
	pending int
	err     error
	then    func(error)

	p *persistence // where an atomic tracker commits; nil for a plain one
	// seal guards ops and sealed. Flush queues its commit while holding it, so a writer that finds the
	// tracker sealed commits behind it. The committer never takes it.
	seal   sync.Mutex
	ops    []store.Op
	after  []func(error) // run with the commit's outcome, before the tracker learns of it
	sealed bool
}

// NewAtomicTracker returns a tracker whose gathered writes go to h's store in one commit (see Tracker).
func NewAtomicTracker(h *Host) *Tracker { return &Tracker{p: h.persist} }

// add gathers ops into the tracker's commit; it reports false, adding nothing, when the tracker is not
// atomic or is sealed already: the caller commits them itself.
func (t *Tracker) add(ops ...store.Op) bool { return t.addWith(nil, ops...) }

// addWith is add with a function to call with the commit's outcome.
func (t *Tracker) addWith(after func(error), ops ...store.Op) bool {
	if t == nil || t.p == nil {
		return false
	}
	t.seal.Lock()
	defer t.seal.Unlock()
	if t.sealed {
		return false
	}
	t.ops = append(t.ops, ops...)
	if after != nil {
		t.after = append(t.after, after)
	}
	return true
}

// Flush commits what was gathered as one unit and seals the tracker; the tracker waits for the commit.
// Call it once, after Publish. A tracker that is not atomic needs none.
func (t *Tracker) Flush() {
	if t.p == nil {
		return
	}
	t.seal.Lock()
	defer t.seal.Unlock()
	t.sealed = true
	if len(t.ops) == 0 {
		return
	}
	done, after := t.Track(), t.after
	t.p.commit(func(err error) {
		for _, f := range after {
			f(err)
		}
		done(err)
	}, t.ops...)
	t.ops, t.after = nil, nil
}

// Track implements router.Tracker. A nil tracker waits for nothing.
func (t *Tracker) Track() func(error) {
	if t == nil {
		return func(error) {}
	}
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
// then reports true), else on the goroutine finishing the last write. Call it once, after Publish (and
// Flush).
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

// Wait blocks until every tracked write is done and returns the first error. For a reader that must
// not answer before a write (SUBACK after a session's record).
func (t *Tracker) Wait() error {
	ch := make(chan error, 1)
	t.Then(func(err error) { ch <- err })
	return <-ch
}

// TrackFunc is a router.Tracker for one write whose outcome f learns.
type TrackFunc func(error)

// Track implements router.Tracker.
func (f TrackFunc) Track() func(error) { return f }

var (
	_ router.Tracker = (*Tracker)(nil)
	_ router.Tracker = TrackFunc(nil)
)
