package router

// Persistence hooks. The router keeps its state in memory and never imports the store; a virtual host
// that persists implements Journal and passes it in Options, and restores what it recovered with the
// Restore methods below before any client connects.

// Tracker is set on a Message by a publisher that waits for the message to be durable before
// acknowledging it. Whoever starts a durable write for the message (a Journal, a sink keeping it for an
// offline session) calls Track first and the returned function once with the write's outcome. The router
// only passes it on.
type Tracker interface {
	Track() (done func(error))
}

// Journal is told about state changes that must survive a restart. It is called on the publisher's
// goroutine in the order the changes take effect and must not block for long (it queues the write and
// reports the outcome to m.Tracker, when set).
type Journal interface {
	// Retain records that m is the retained message of its topic, or clears the topic's retained
	// message when m's body is empty.
	Retain(m *Message)
}

// retain applies a retained message (or clears one), journalling it. With a journal the change and its
// journal call are made under one lock, so concurrent publishers to one topic journal in the order the
// router applied them and the store ends with the same retained message as the router.
func (r *Router) retain(ri int, m *Message) {
	j := r.opts.Journal
	if j != nil {
		r.retainMu.Lock()
		defer r.retainMu.Unlock()
	}
	if len(m.Body) == 0 {
		r.retained.clear(ri, m.Dest.Path)
	} else {
		r.retained.set(ri, m.Dest.Path, m)
	}
	if j != nil {
		j.Retain(m)
	}
}

// ReserveIDs makes the router assign message IDs above max from now on, so IDs of messages recovered
// from a store are never reused.
func (r *Router) ReserveIDs(max uint64) {
	for {
		cur := r.nextID.Load()
		if cur >= max || r.nextID.CompareAndSwap(cur, max) {
			return
		}
	}
}

// RestoreRetained makes m the retained message of its topic without journalling it (it comes from the
// journal). m.ID must be set.
func (r *Router) RestoreRetained(m *Message) {
	if ri, ok := rootIndex(m.Dest.Kind); ok && len(m.Body) > 0 {
		r.retained.set(ri, m.Dest.Path, m)
	}
}
