package router

import (
	"sync"
	"sync/atomic"
)

// matchCache is the router's L2 cache: topic key -> match Result. It has its own lock so a miss never
// waits for the trie's write lock, and a hit takes only a read lock and allocates nothing.
//
// Entries carry the trie generation they were computed under; a wildcard subscribe or unsubscribe bumps
// the generation, which stales every entry at once without touching the map. Stale entries are swept out
// when the cache is full; if that is not enough, arbitrary entries (Go's map order) are evicted until a
// quarter of the cache is free.
type matchCache struct {
	mu   sync.RWMutex
	m    map[string]cacheEntry
	size int
}

type cacheEntry struct {
	res *Result
	gen uint64
}

func newMatchCache(size int) *matchCache {
	return &matchCache{m: make(map[string]cacheEntry, size), size: size}
}

// get returns the cached result for key if it is of generation gen.
func (c *matchCache) get(key []byte, gen uint64) *Result {
	c.mu.RLock()
	e, ok := c.m[string(key)] // no allocation: the compiler recognises the lookup conversion
	c.mu.RUnlock()
	if ok && e.gen == gen {
		return e.res
	}
	return nil
}

// put stores r unless the trie changed (ver moved) since r was computed: that change may already have
// tried to evict this key, and the stale result must not outlive it.
func (c *matchCache) put(key []byte, r *Result, gen, ver uint64, cur *atomic.Uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur.Load() != ver {
		return
	}
	if _, ok := c.m[string(key)]; !ok && len(c.m) >= c.size {
		c.makeRoomLocked(gen)
	}
	c.m[string(key)] = cacheEntry{res: r, gen: gen}
}

func (c *matchCache) makeRoomLocked(gen uint64) {
	for k, e := range c.m {
		if e.gen != gen {
			delete(c.m, k)
		}
	}
	target := c.size - c.size/4
	if target >= c.size {
		target = c.size - 1
	}
	for k := range c.m {
		if len(c.m) <= target {
			break
		}
		delete(c.m, k)
	}
}

func (c *matchCache) evict(key []byte) {
	c.mu.Lock()
	delete(c.m, string(key))
	c.mu.Unlock()
}

func (c *matchCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
