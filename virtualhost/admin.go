package virtualhost

import (
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// Batch implements router.AtomicJournal: the router's administrative operations (PurgeQueue,
// MoveMessages) journal through it, so that a moved message's new entry and the removal of its old one
// reach the store in one commit (store.Commit applies its ops all or none). The batch gathers its writes
// in an atomic Tracker of its own, which Commit flushes: a write about one of its entries made
// meanwhile (a consumer of the target acknowledging a moved message at once) joins the same commit, as
// for a publisher's tracker. A message whose own put still gathers in a publisher's atomic tracker (moved
// within microseconds of its publish) has its move added to that tracker instead, so its put, move and
// removal stay one commit; tr then waits for that commit too.
func (p *persistence) Batch(tr router.Tracker) router.JournalBatch {
	return &journalBatch{p: p, at: &Tracker{p: p}, tr: tr}
}

type journalBatch struct {
	p  *persistence
	at *Tracker
	tr router.Tracker
}

// gatheringIn returns the atomic tracker other than the batch's own in which the put of entry
// (owner, seq) still gathers, or nil.
func (b *journalBatch) gatheringIn(owner string, seq uint64) *Tracker {
	b.p.pendMu.Lock()
	pe := b.p.pending[owner][seq]
	b.p.pendMu.Unlock()
	if pe.tr == nil || pe.tr == b.at {
		return nil
	}
	return pe.tr
}

// add gathers ops in t, when given and still gathering (tr then waits for it too, and after runs with
// its outcome), else in the batch. It reports the tracker that took them.
func (b *journalBatch) add(t *Tracker, after func(error), ops ...store.Op) *Tracker {
	if t != nil {
		var done func(error)
		if b.tr != nil {
			done = b.tr.Track()
		}
		both := func(err error) {
			if after != nil {
				after(err)
			}
			if done != nil {
				done(err)
			}
		}
		if t.addWith(both, ops...) {
			return t
		}
		// Sealed meanwhile: its commit is queued, so the batch's comes after it. tr's write is the batch's.
		after = both
	}
	b.at.addWith(after, ops...)
	return b.at
}

// Dequeue implements router.JournalBatch.
func (b *journalBatch) Dequeue(d router.Destination, seq uint64) {
	owner := router.Key(d)
	b.add(b.gatheringIn(owner, seq), nil, store.DeleteEntry{Ref: store.Ref{List: listOf(d.Kind), Owner: owner, Seq: seq}})
}

// Move implements router.JournalBatch: the new entry's put and the old entry's removal in one commit.
// The new entry is pending (Load finds it) until that commit is done.
func (b *journalBatch) Move(from router.Destination, fromSeq uint64, to router.Destination, toSeq uint64, redeliveries uint32, m *router.Message) {
	var ops []store.Op
	var t *Tracker
	toOwner := router.Key(to)
	if toSeq > 0 {
		ops = append(ops, store.PutEntry{Entry: store.Entry{List: listOf(to.Kind), Owner: toOwner, Seq: toSeq,
			Redeliveries: redeliveries, Msg: storeMessage(m)}})
	}
	if fromSeq > 0 {
		fromOwner := router.Key(from)
		t = b.gatheringIn(fromOwner, fromSeq)
		ops = append(ops, store.DeleteEntry{Ref: store.Ref{List: listOf(from.Kind), Owner: fromOwner, Seq: fromSeq}})
	}
	if toSeq == 0 {
		b.add(t, nil, ops...)
		return
	}
	// Registered before the ops are gathered: a publisher may flush t at any moment, and the commit's
	// dropPending must find the entry. Nobody else writes about the new entry meanwhile (the router
	// holds its queue's lock), so correcting the tracker after a refusal by a sealed t is safe.
	pend := t
	if pend == nil {
		pend = b.at
	}
	b.p.addPending(toOwner, toSeq, pendingEntry{m: m, tr: pend})
	if took := b.add(t, func(error) { b.p.dropPending(toOwner, toSeq, m) }, ops...); took != pend {
		b.p.addPending(toOwner, toSeq, pendingEntry{m: m, tr: took})
	}
}

// Commit implements router.JournalBatch: one store commit for what the batch gathered; tr learns its
// outcome (at once when there was nothing to write).
func (b *journalBatch) Commit() {
	var done func(error)
	if b.tr != nil {
		done = b.tr.Track()
	}
	b.at.Flush()
	if done != nil {
		b.at.Then(done)
	}
}

var _ router.AtomicJournal = (*persistence)(nil)
