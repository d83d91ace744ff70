package router

// Hooks for a component that keeps this router in step with other nodes (the cluster link): it learns
// of retained changes and applies the other nodes' ones without delivering them, and it may take over
// the dispatch of shared-subscription groups. The router knows nothing about what is on the other side.

// WatchRetained tells fn about every retained change a Publish or DeleteRetained makes in the Topic
// namespace, set or cleared (an empty Body), except Internal messages ($SYS is each node's own), in the
// order the router applies them. Changes made by ApplyRetained are not reported (they came from the
// watcher's side). fn runs on the publisher's goroutine with the retained lock held: it must not block
// and must not call the router. It may call m.Tracker.Track (when set) to make the publisher's
// acknowledgement wait for its write, as a Journal does. One watcher at a time: a second call replaces
// the first. The returned stop ends the watch; after it returns fn is not called again.
//
// While a watcher is set, ConfirmsRetained reports true, so that front-ends that set no Tracker on a
// memory host set one on a retained publish that they acknowledge.
func (r *Router) WatchRetained(fn func(m *Message)) (stop func()) {
	r.retainMu.Lock()
	r.retainWatch.Store(&fn)
	r.retainMu.Unlock()
	return func() {
		r.retainMu.Lock()
		if r.retainWatch.Load() == &fn {
			r.retainWatch.Store(nil)
		}
		r.retainMu.Unlock()
	}
}

// ConfirmsRetained reports whether a watcher (WatchRetained) may make a retained publish wait for a
// write: a publisher acknowledging a retained message should then set a Tracker even when it would not
// otherwise (no store).
func (r *Router) ConfirmsRetained() bool { return r.retainWatch.Load() != nil }

// ApplyRetained makes m (kind Topic) the retained message of its topic, or clears the topic's retained
// message when m.Body is empty, without delivering it to anyone and without telling the watcher: it is
// another node's change, delivered live there. It is journalled as a publish would be (without a
// Tracker), so a node with a store keeps the cluster's value over a restart. It assigns m.ID when zero;
// after that m must not be modified.
func (r *Router) ApplyRetained(m *Message) {
	if m.Dest.Kind != Topic || len(m.Dest.Path) == 0 || r.closed.Load() {
		return
	}
	if m.ID == 0 {
		m.ID = r.nextID.Add(1)
	}
	r.retainMu.Lock()
	defer r.retainMu.Unlock()
	if len(m.Body) == 0 {
		r.retained.clear(0, m.Dest.Path)
	} else {
		r.retained.set(0, m.Dest.Path, m)
	}
	if j := r.opts.Journal; j != nil && !m.Internal {
		j.Retain(m)
	}
}

// notifyRetainedLocked tells the watcher of retained change m. Called with retainMu held.
func (r *Router) notifyRetainedLocked(ri int, m *Message) {
	if w := r.retainWatch.Load(); w != nil && ri == 0 && !m.Internal {
		(*w)(m)
	}
}

// SetSharedDispatch with external true makes Publish leave the shared-subscription groups of Topic
// messages to the caller, who delivers them with DeliverShared (the cluster link: NATS queue groups pick
// one node, then this router one member there). Internal messages and topics whose first level starts
// with '$' are still dispatched here: they stay on their node. With external false (the default) Publish
// dispatches every group itself.
func (r *Router) SetSharedDispatch(external bool) { r.shareExternal.Store(external) }

// sharedElsewhere reports whether Publish leaves m's groups to DeliverShared (SetSharedDispatch).
func (r *Router) sharedElsewhere(ri int, m *Message) bool {
	if ri != 0 || m.Internal || !r.shareExternal.Load() {
		return false
	}
	first := m.Dest.Path[0]
	return len(first) == 0 || first[0] != '$'
}

// DeliverShared hands m (kind Topic) to the shared group named group whose filter is f, if this router
// has one and it matches m: one member takes it, picked by Options.ShareStrategy. Other subscriptions
// and groups do not see it, and nothing is retained. With group "" every group m matches gets it (f is
// ignored): a message that cannot leave this node still reaches its groups here. It assigns m.ID when zero; m is not counted as
// published (the node it was published on counted it). Delivered is 1 when a member took it; Dropped 1
// when every member that may receive it was full.
func (r *Router) DeliverShared(m *Message, group string, f Filter) PublishResult {
	if r.closed.Load() {
		return PublishResult{Err: ErrClosed}
	}
	if m.Dest.Kind != Topic || len(m.Dest.Path) == 0 {
		return PublishResult{Err: ErrInvalidName}
	}
	if m.ID == 0 {
		m.ID = r.nextID.Add(1)
	}
	res := r.topics.match(0, m.Dest.Path)
	var pr PublishResult
	for _, g := range res.Groups {
		if group != "" && (g.Name != group || len(g.Members) == 0 || !equalFilter(g.Members[0].Filter, f)) {
			continue
		}
		pol := r.pol.Load()
		d := Delivery{Msg: m, Paced: len(pol.topics) == 0 || pol.slowBlocks(m.Dest)}
		switch g.deliver(d, pol.share, r.seed) {
		case groupTook:
			pr.Delivered++
			r.delivered.Add(1)
		case groupFull:
			pr.Dropped++
			r.dropSink.Add(1)
		}
	}
	return pr
}

// WatchDurables tells fn about every durable subscription a client creates or changes (CreateDurable; o
// its options) or destroys (DestroyDurable; o nil), in order, so that the other nodes can keep copies for
// it (ApplyDurable). Restores, DropDurable and ApplyDurable's own changes are not reported. fn runs with
// the durable subscriptions' lock held: it must not block and must not call the router. One watcher at a
// time; the returned stop ends the watch.
func (r *Router) WatchDurables(fn func(d Destination, o *DurableOptions)) (stop func()) {
	r.dur.mu.Lock()
	r.dur.watch = fn
	r.dur.mu.Unlock()
	return func() {
		r.dur.mu.Lock()
		r.dur.watch = nil
		r.dur.mu.Unlock()
	}
}

// watchDurable reports a client's change to the watcher. r.dur.mu is held.
func (r *Router) watchDurable(d Destination, o *DurableOptions) {
	if r.dur.watch != nil {
		r.dur.watch(d, o)
	}
}

// ApplyDurable applies another node's durable subscription change: with o, a subscription d made there
// is kept here too, as a mirror (not journalled, MaxDurables aside), so that a message published here
// is kept for it (its QueueBackend stores the copy, and the publisher's acknowledgement waits for it). A
// mirror here takes the new options (another filter replaces it, keeping the backend's messages, which
// the changing node purged); a client's subscription d here is left as it is. With o nil, d was
// destroyed there, and d is removed here (with DropDurable's semantics: what the backend keeps is the
// destroying node's to purge). The watcher hears of neither.
func (r *Router) ApplyDurable(d Destination, o *DurableOptions) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if o == nil {
		r.dur.mu.Lock()
		defer r.dur.mu.Unlock()
		if old := r.dur.m[Key(d)]; old != nil {
			r.removeLocked(old, nil, r.opts.Journal, true)
		}
		return nil
	}
	mo := *o
	if err := prepareDurable(d, &mo); err != nil {
		return err
	}
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	if old := r.dur.m[Key(d)]; old != nil {
		if !old.mirror {
			return nil
		}
		if cur := old.opts.Load(); !equalFilter(cur.Filter, mo.Filter) || cur.Owner != mo.Owner {
			r.removeLocked(old, nil, nil, true)
		}
	}
	if _, err := r.createDurableLocked(d, mo, nil, nil, false); err != nil {
		return err
	}
	r.dur.m[Key(d)].mirror = true
	return nil
}

// RemoveMirror removes durable subscription d when it is a mirror (ApplyDurable), keeping the backend's
// messages for it: the other node changed it into one that no node but its own can keep copies for.
func (r *Router) RemoveMirror(d Destination) {
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	if old := r.dur.m[Key(d)]; old != nil && old.mirror {
		r.removeLocked(old, nil, nil, true)
	}
}

// IsMirror reports whether durable subscription d is another node's, kept here by ApplyDurable.
func (r *Router) IsMirror(d Destination) bool {
	r.dur.mu.Lock()
	defer r.dur.mu.Unlock()
	ds := r.dur.m[Key(d)]
	return ds != nil && ds.mirror
}
