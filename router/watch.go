package router

// WatchTopics tells fn about every subscription in the Topic namespace (plain, shared members and durable
// subscriptions' own entries): first those present now, each with added true, then each one added or
// removed afterwards, in the order the trie changes. It is how a cluster link learns which filters this
// router has interest in without the router knowing about the link.
//
// fn runs with the trie's lock held, on the subscriber's goroutine: it must not block and must not call
// the router (it would deadlock); a watcher queues the change and acts on it elsewhere. One watcher at a
// time: a second call replaces the first. The returned stop ends the watch; after it returns fn is not
// called again.
func (r *Router) WatchTopics(fn func(s *Subscription, added bool)) (stop func()) {
	t := r.topics
	t.mu.Lock()
	walkSubs(t.roots[0], func(s *Subscription) { fn(s, true) })
	t.watch = fn
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		t.watch = nil
		t.mu.Unlock()
	}
}

// walkSubs calls fn for every subscription at or below n, shared members included. Called with the trie's
// lock held; the explicit stack keeps a deep trie from growing the goroutine stack.
func walkSubs(n *node, fn func(*Subscription)) {
	stack := []*node{n}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, s := range n.subs {
			fn(s)
		}
		for _, g := range n.groups {
			for _, s := range g.Members {
				fn(s)
			}
		}
		for _, c := range n.lits {
			stack = append(stack, c)
		}
		if n.one != nil {
			stack = append(stack, n.one)
		}
		if n.many != nil {
			stack = append(stack, n.many)
		}
		for _, e := range n.res {
			stack = append(stack, e.next)
		}
	}
}
