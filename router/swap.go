package router

// Swapping: a journalled queue keeps at most Options.SwapMessages waiting messages (and SwapBytes of
// them) in memory. Beyond that, an arriving persistent message is journalled as usual but not kept: the
// queue only counts it (swapped) and remembers where the swapped run starts (swapFrom). Every persistent
// message arriving while a run is swapped out joins it, so the messages in memory are always older than
// the swapped ones; non-persistent ones, which the journal does not hold, are parked in memory until the
// loads reach their position. When the waiting messages in memory fall to half the bound, the next
// window is loaded from the journal (Journal.Load) in sequence order, parked messages merged in.
//
// Consequences, documented in the package doc: priority orders the messages in memory only (a swapped
// backlog is loaded in sequence order); selectors, browsers and FullDropHead see the messages in memory;
// quotas count swapped messages (their bytes too, except for a backlog restored at startup, whose bytes
// are counted as its windows are loaded).

// probeWindow is the first window loaded when the size of the swapped messages is unknown.
const probeWindow = 64

// swapOutLocked keeps it (already journalled and counted in held) in the journal only when it must be:
// a run is swapped out already or the window in memory is full. A non-persistent message arriving while
// a run is swapped out is parked. It reports false when it belongs among the waiting messages in memory.
func (q *queue) swapOutLocked(it *qitem) bool {
	journalled := q.journalsLocked(it)
	switch {
	case q.swapped > 0 && journalled:
	case q.swapped > 0:
		q.parked = append(q.parked, it)
		return true
	case journalled && (q.waiting >= q.r.opts.SwapMessages || q.memBytes+it.size > q.r.opts.SwapBytes):
		q.swapFrom = it.order
	default:
		return false
	}
	q.swapped++
	q.swappedBytes += it.size
	return true
}

// refillLocked loads the next window of swapped-out messages when the waiting messages in memory are at
// most half the bound (in messages and bytes), up to the bound. It reports whether it added any.
func (q *queue) refillLocked() bool {
	if q.swapped <= 0 {
		return false
	}
	lim, limBytes := q.r.opts.SwapMessages, q.r.opts.SwapBytes
	if q.waiting > lim/2 || q.memBytes > limBytes/2 {
		return false
	}
	want := min(lim-q.waiting, maxLoadWindow)
	avg := q.loadAvg
	if q.swappedBytes > 0 {
		avg = max(q.swappedBytes/int64(q.swapped), 1)
	}
	if avg > 0 {
		want = int(min(int64(want), max((limBytes-q.memBytes)/avg, 1)))
	} else {
		want = min(want, probeWindow)
	}
	return q.loadLocked(want)
}

// maxLoadWindow bounds one Journal.Load.
const maxLoadWindow = 8192

// loadLocked loads up to n swapped-out messages from the journal into the waiting messages in memory,
// with the parked messages they pass. A load that comes back short means the journal holds no more:
// whatever the count still says vanished meanwhile (the store's expiry sweep deletes expired messages
// without telling the router) and is forgotten. It reports whether it added any message. A failed load
// leaves everything in place (counted in Stats.SwapLoadErrors); the next dispatch tries again.
func (q *queue) loadLocked(n int) bool {
	added, _ := q.loadErrLocked(n)
	return added
}

// loadErrLocked is loadLocked that also returns the journal's error.
func (q *queue) loadErrLocked(n int) (bool, error) {
	if q.swapped <= 0 || n <= 0 {
		return false, nil
	}
	r := q.r
	got, err := r.opts.Journal.Load(q.dest, q.swapFrom, n)
	if err != nil {
		r.loadErrs.Add(1)
		return false, err
	}
	r.loads.Add(1)
	var bytes int64
	for _, s := range got {
		if s.Seq < q.swapFrom || s.Msg == nil {
			continue // a journal that does not honour from; never loaded twice
		}
		m := s.Msg
		it := &qitem{msg: m, order: s.Seq, size: itemSize(m), redeliveries: s.Redeliveries, prio: min(m.Priority, MaxPriority)}
		if it.order <= q.crashMark && it.redeliveries == 0 {
			it.redeliveries = 1 // it may have been delivered before the crash
		}
		bytes += it.size
		known := min(it.size, q.swappedBytes)
		q.swappedBytes -= known
		q.heldBytes += it.size - known
		if q.swapped > 0 {
			q.swapped--
		} else {
			q.held++ // more than counted: keep the accounts whole
		}
		q.unparkLocked(it.order)
		q.pushWaitingLocked(it)
		q.swapFrom = it.order + 1
	}
	if len(got) > 0 {
		q.loadAvg = max(bytes/int64(len(got)), 1)
	}
	if len(got) < n || q.swapped <= 0 {
		if q.swapped > 0 {
			r.dropExpired.Add(uint64(q.swapped)) // the expiry sweep is what deletes them
			q.held -= q.swapped
			q.heldBytes -= q.swappedBytes
			if q.room != nil {
				close(q.room)
				q.room = nil
			}
		}
		q.swapped, q.swappedBytes = 0, 0
		q.unparkLocked(^uint64(0))
	}
	return len(got) > 0, nil
}

// unparkLocked moves the parked messages older than seq among the waiting ones in memory.
func (q *queue) unparkLocked(seq uint64) {
	i := 0
	for i < len(q.parked) && q.parked[i].order < seq {
		q.pushWaitingLocked(q.parked[i])
		q.parked[i] = nil
		i++
	}
	if i == len(q.parked) {
		q.parked = nil
	} else if i > 0 {
		q.parked = q.parked[i:]
	}
}

// keepSeqFloorLocked remembers, as the queue is forgotten, the sequence number a new queue of the same
// name must start above: its delivered mark may have reached it. Called with qmu and q.mu held.
func (r *Router) keepSeqFloorLocked(q *queue) {
	if q.markSent == 0 {
		return
	}
	if r.seqFloors == nil {
		r.seqFloors = make(map[string]uint64)
	}
	r.seqFloors[q.key] = max(q.arrivals, q.markSent)
}
