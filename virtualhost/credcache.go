package virtualhost

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"

	"github.com/lyremq/lyre/conf"
)

// credMACKey keys the MACs the credential caches keep instead of passwords. It is drawn once per
// process and never leaves memory: without it a MAC cannot be checked against guesses at all, and with
// it (a memory dump) each guess still costs an HMAC per user, bounded by what the caches hold and for
// how long (see the package doc).
var credMACKey = func() []byte {
	k := make([]byte, sha256.Size)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (it crashes the program instead)
	return k
}()

// credMACs recycles keyed HMAC states with a scratch buffer: hmac.New costs a few allocations, Reset
// none, and the buffer spares the conversions an interface call would make escape.
var credMACs = sync.Pool{New: func() any { return &credHasher{h: hmac.New(sha256.New, credMACKey)} }}

type credHasher struct {
	h   hash.Hash
	buf []byte
}

// credMAC is the MAC a cache keeps for name and password: HMAC-SHA-256 under credMACKey of the name,
// length-prefixed, then the password, so two users with the same password get different MACs.
func credMAC(name string, password []byte) (mac [sha256.Size]byte) {
	c := credMACs.Get().(*credHasher)
	c.h.Reset()
	c.buf = binary.BigEndian.AppendUint32(c.buf[:0], uint32(len(name)))
	c.buf = append(c.buf, name...)
	c.h.Write(c.buf)
	c.h.Write(password)
	c.buf = c.h.Sum(c.buf[:0])
	copy(mac[:], c.buf)
	credMACs.Put(c)
	return mac
}

// credCache remembers, for one host's settings snapshot, the users whose password bcrypt verified
// lately: the MAC of that password and until when it is trusted. One entry per user, since a user has
// one password (bcrypt reads at most MaxPasswordLength bytes, and longer ones are refused before).
// Only a success is put; a lookup whose MAC differs finds nothing and leaves the entry in place, so a
// wrong password neither gets in nor evicts the right one.
type credCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]credEntry
	// checking holds the credentials bcrypt is checking now, each with a channel closed when the check is
	// over: a login with the same credentials waits for that check rather than run its own (flight). A
	// fleet of clients sharing one account, reconnecting at once, costs one bcrypt, not one each.
	checking map[[sha256.Size]byte]chan struct{}
}

type credEntry struct {
	mac     [sha256.Size]byte
	expires time.Time
}

// newCredCache returns the cache a host configuration asks for, nil for none (credential_cache 0).
func newCredCache(c conf.VirtualHost) *credCache {
	if c.CredentialCache <= 0 {
		return nil
	}
	return &credCache{ttl: c.CredentialCache, max: or(c.CredentialCacheSize, conf.DefaultCredentialCacheSize),
		m: make(map[string]credEntry)}
}

// has reports whether name's entry holds mac and has not expired at now. An expired entry is dropped.
func (c *credCache) has(name string, mac [sha256.Size]byte, now time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	e, ok := c.m[name]
	if ok && !now.Before(e.expires) {
		delete(c.m, name)
		ok = false
	}
	c.mu.Unlock()
	// Constant time, though a MAC that differs tells nothing usable without the key.
	return ok && hmac.Equal(e.mac[:], mac[:])
}

// put trusts mac for name until now plus the TTL (not longer for being found again: a password bcrypt
// verified is trusted for at most the TTL). A full cache makes room by dropping one entry: an expired one
// if the first few it looks at hold one, else the first it found. Go starts a map's iteration at a random
// place, so that is an arbitrary entry, found in constant time; its user pays one bcrypt at its next login.
func (c *credCache) put(name string, mac [sha256.Size]byte, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[name]; !ok && len(c.m) >= c.max {
		c.evictLocked(now)
	}
	c.m[name] = credEntry{mac: mac, expires: now.Add(c.ttl)}
}

// flight registers a check of the credentials mac stands for. The first login to ask leads: it gets a
// nil channel and must call land once its check is over, whatever its outcome. The others get the
// leader's channel, to wait on before looking the credentials up again.
func (c *credCache) flight(mac [sha256.Size]byte) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.checking[mac]; ok {
		return ch
	}
	if c.checking == nil {
		c.checking = make(map[[sha256.Size]byte]chan struct{})
	}
	c.checking[mac] = make(chan struct{})
	return nil
}

// land ends the leader's check of mac: its followers look the credentials up again.
func (c *credCache) land(mac [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.checking[mac]; ok {
		close(ch)
		delete(c.checking, mac)
	}
}

// evictLocked drops one entry of a full cache (see put).
func (c *credCache) evictLocked(now time.Time) {
	const look = 8
	victim, i := "", 0
	for name, e := range c.m {
		if !now.Before(e.expires) {
			victim = name
			break
		}
		if i == 0 {
			victim = name
		}
		if i++; i == look {
			break
		}
	}
	delete(c.m, victim)
}

// clear forgets every entry (the host is retired or closed).
func (c *credCache) clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// len returns the number of entries held, expired ones included.
func (c *credCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
