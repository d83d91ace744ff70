package router

// Handing a queue's backlog to another node: what an MQTT session taken over across a cluster takes
// with it (router/cluster, protocol/mqtt). The router knows nothing of nodes; these are two plain queue
// operations.

// DrainQueue removes every message waiting in the queue d names, oldest first, in memory or swapped out
// to the journal, and returns them with their queue sequence numbers and redelivery counts. Each
// departure is journalled as an acknowledgement would be. Messages in flight to a consumer stay (close
// the consumers first: their messages go back among the waiting ones). It returns nil when the router
// holds no queue d, and what it drained so far with the journal's error when a swapped-out window does
// not load.
func (r *Router) DrainQueue(d Destination) ([]Stored, error) {
	q := r.lockedQueue(d, false)
	if q == nil {
		return nil, nil
	}
	var out []Stored
	var err error
	for {
		if q.waiting == 0 {
			if q.swapped == 0 {
				break
			}
			before := q.swapped
			if _, err = q.loadErrLocked(maxLoadWindow); err != nil {
				break
			}
			if q.waiting == 0 && q.swapped == before {
				break // a journal that returns nothing usable
			}
			continue
		}
		p := q.oldestLevelLocked()
		it := q.levels[p].at(0)
		q.levels[p].removeAt(0)
		q.waiting--
		q.memBytes -= it.size
		out = append(out, Stored{Seq: it.order, Redeliveries: it.redeliveries, Msg: it.msg})
		q.releaseLocked(it)
	}
	idle := q.idleLocked()
	q.mu.Unlock()
	if idle {
		r.queueIdle(q)
	}
	return out, err
}

// Adopt puts m into the queue d names (kind Queue or DurableSub) as a new arrival that was already
// delivered redeliveries times elsewhere, journalled like a publish (m.Tracker, when set, learns when it
// is durable) under a new message ID, and returns its sequence number in d. Unlike Publish it keeps m's destination: a durable
// subscription's message names the topic it was published on. The queue's quota applies
// (ErrQueueFull, under every full policy: what is handed over is not the queue's to drop).
func (r *Router) Adopt(d Destination, m *Message, redeliveries uint32) (uint64, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	if !queueKind(d.Kind) || d.Kind == TempQueue || len(d.Path) == 0 {
		return 0, ErrInvalidName
	}
	// IDs are this router's: another node's could name a message of ours in the store.
	m.ID = r.nextID.Add(1)
	q, err := r.lockedQueueLimit(d, true, true)
	if err != nil {
		return 0, err
	}
	defer q.mu.Unlock()
	it := &qitem{msg: m, size: itemSize(m)}
	if q.fullFor(it.size) {
		r.full.Add(1)
		return 0, ErrQueueFull
	}
	it = q.admitLocked(m, redeliveries)
	q.journalEnqueueLocked(it)
	q.dispatchLocked()
	return it.order, nil
}
