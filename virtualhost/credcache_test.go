package virtualhost_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/virtualhost"
)

// fakeClock is a credential cache clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// cachedHost opens a closed host with the users file users and a credential cache of ttl, reading the
// time from a fake clock it returns.
func cachedHost(t *testing.T, users string, ttl time.Duration, size int) (*virtualhost.Host, *fakeClock) {
	t.Helper()
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: users, CredentialCache: ttl, CredentialCacheSize: size})
	clk := &fakeClock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	virtualhost.SetClock(h, clk.Now)
	return h, clk
}

// loginCounts is what a host counted of its password logins.
type loginCounts struct{ checks, hits uint64 }

func counts(h *virtualhost.Host) loginCounts {
	c := h.Counters()
	return loginCounts{c.PasswordChecks, c.CredentialCacheHits}
}

// cacheLogin logs in from addr and fails the test unless the outcome is want (nil: success); it returns
// how the password was checked: "bcrypt" or "cache".
func cacheLogin(t *testing.T, h *virtualhost.Host, addr net.Addr, name, password string, want error) string {
	t.Helper()
	before := counts(h)
	p, _, err := h.Login(addr, name, []byte(password), true, "c")
	if !errors.Is(err, want) || (want != nil) != (err != nil) {
		t.Fatalf("Login(%q, %q) = %v, want %v", name, password, err, want)
	}
	if err == nil && (p.User != name || !p.Authenticated) {
		t.Fatalf("Login(%q) gave principal %+v", name, p)
	}
	after := counts(h)
	switch {
	case after.checks == before.checks+1 && after.hits == before.hits:
		return "bcrypt"
	case after.checks == before.checks && after.hits == before.hits+1:
		return "cache"
	}
	t.Fatalf("Login(%q, %q): counters went from %+v to %+v, want one check or one hit", name, password, before, after)
	return ""
}

var addr1 = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}

// The second login with the same credentials is the cache's, with the same principal; management's
// Verify shares it.
func TestCredentialCacheHit(t *testing.T) {
	h, _ := cachedHost(t, "testdata/users.hcl", time.Minute, 0)
	if got := cacheLogin(t, h, addr1, "alice", "wonderland", nil); got != "bcrypt" {
		t.Fatalf("first login: %s", got)
	}
	p, _, err := h.Login(addr1, "alice", []byte("wonderland"), true, "c")
	if err != nil || p.User != "alice" || !p.Authenticated || !slices.Equal(p.Groups, []string{"admins", "devices"}) {
		t.Fatalf("cached login: %+v, %v", p, err)
	}
	if c := counts(h); c != (loginCounts{checks: 1, hits: 1}) {
		t.Fatalf("counters %+v after a cached login, want 1 check and 1 hit", c)
	}
	if p, _, err := h.Verify(addr1, "alice", []byte("wonderland"), true); err != nil || p.User != "alice" {
		t.Fatalf("Verify: %+v, %v", p, err)
	}
	if c := counts(h); c.hits != 2 || c.checks != 1 {
		t.Fatalf("Verify ran bcrypt again: %+v", c)
	}
	// Removing a user's entry from the file ends its connections (Refresh): the cached principal is
	// one of the users file, as bcrypt's is.
	if _, err := h.Refresh(p, "c"); err != nil {
		t.Fatalf("Refresh of a cached login: %v", err)
	}
	if got := cacheLogin(t, h, addr1, "bob", "builder", nil); got != "bcrypt" {
		t.Fatalf("another user: %s", got)
	}
	if n := virtualhost.CredentialCacheLen(h); n != 2 {
		t.Fatalf("cache holds %d entries, want one per user", n)
	}
}

// A cached entry never lets a wrong password in: each one is checked by bcrypt (or the dummy hash),
// counted and throttled, and the entry for the right one stays.
func TestCredentialCacheWrongPasswordAfterHit(t *testing.T) {
	h, _ := cachedHost(t, "testdata/users.hcl", time.Minute, 0)
	h.Throttle = &virtualhost.Throttle{Free: 100}
	cacheLogin(t, h, addr1, "alice", "wonderland", nil)
	if got := cacheLogin(t, h, addr1, "alice", "wonderland", nil); got != "cache" {
		t.Fatalf("second login: %s", got)
	}
	wrong := []struct{ name, password string }{
		{"alice", "wonderlan"},
		{"alice", "wonderland!"},
		{"alice", "wonderland\x00"},
		{"alice", "Wonderland"},
		{"alice", ""},
		{"bob", "wonderland"},       // alice's password for another user
		{"alicf", "wonderland"},     // an unknown user: the dummy hash
		{"alice\x00", "wonderland"}, // unknown too, though alice's name is a prefix
	}
	for i, w := range wrong {
		if got := cacheLogin(t, h, addr1, w.name, w.password, virtualhost.ErrBadCredentials); got != "bcrypt" {
			t.Fatalf("%q/%q: %s", w.name, w.password, got)
		}
		if c := h.Counters().AuthFailures; c != uint64(i+1) {
			t.Fatalf("after %d wrong passwords %d authentication failures", i+1, c)
		}
	}
	if n := h.Throttle.Failures("192.0.2.1"); n != len(wrong) {
		t.Fatalf("throttle counts %d failures from the address, want %d", n, len(wrong))
	}
	if got := cacheLogin(t, h, addr1, "alice", "wonderland", nil); got != "cache" {
		t.Fatalf("right password after wrong ones: %s, want the entry still there", got)
	}
}

// An entry is trusted for the TTL from the bcrypt check that made it, however often it is used.
func TestCredentialCacheExpiry(t *testing.T) {
	const ttl = time.Minute
	h, clk := cachedHost(t, "testdata/users.hcl", ttl, 0)
	cacheLogin(t, h, addr1, "alice", "wonderland", nil)
	clk.Add(ttl - time.Second)
	if got := cacheLogin(t, h, addr1, "alice", "wonderland", nil); got != "cache" {
		t.Fatalf("within the TTL: %s", got)
	}
	clk.Add(time.Second)
	if got := cacheLogin(t, h, addr1, "alice", "wonderland", nil); got != "bcrypt" {
		t.Fatalf("at the TTL: %s, want the entry expired (a hit does not extend it)", got)
	}
	if got := cacheLogin(t, h, addr1, "alice", "wonderland", nil); got != "cache" {
		t.Fatalf("after a new check: %s", got)
	}
}

// credential_cache 0 (a host built in Go without it) checks every login by bcrypt.
func TestCredentialCacheOff(t *testing.T) {
	h, _ := cachedHost(t, "testdata/users.hcl", 0, 0)
	for range 3 {
		if got := cacheLogin(t, h, addr1, "alice", "wonderland", nil); got != "bcrypt" {
			t.Fatalf("without a cache: %s", got)
		}
	}
	if n := virtualhost.CredentialCacheLen(h); n != 0 {
		t.Fatalf("no cache, %d entries", n)
	}
}

// A reload forgets the cache: a password changed in the users file is refused at once, even one
// verified a moment before; the new one is accepted.
func TestCredentialCacheReload(t *testing.T) {
	path := writeUsers(t, scramUser{name: "alice", password: "old"}, scramUser{name: "bob", password: "builder"})
	h, _ := cachedHost(t, path, time.Hour, 0)
	c := h.Config()
	cacheLogin(t, h, addr1, "alice", "old", nil)
	cacheLogin(t, h, addr1, "bob", "builder", nil)
	if got := cacheLogin(t, h, addr1, "alice", "old", nil); got != "cache" {
		t.Fatalf("before the reload: %s", got)
	}

	// The same file again: nothing changed, and still the cache starts empty (it belongs to the
	// settings a reload replaces).
	if err := h.Update(c); err != nil {
		t.Fatal(err)
	}
	if got := cacheLogin(t, h, addr1, "bob", "builder", nil); got != "bcrypt" {
		t.Fatalf("after a reload: %s, want the cache forgotten", got)
	}

	cacheLogin(t, h, addr1, "alice", "old", nil)
	writeUsersTo(t, path, scramUser{name: "alice", password: "new"}, scramUser{name: "bob", password: "builder"})
	if err := h.Update(c); err != nil {
		t.Fatal(err)
	}
	if got := cacheLogin(t, h, addr1, "alice", "old", virtualhost.ErrBadCredentials); got != "bcrypt" {
		t.Fatalf("old password after the change: %s", got)
	}
	cacheLogin(t, h, addr1, "alice", "new", nil)
	if got := cacheLogin(t, h, addr1, "alice", "new", nil); got != "cache" {
		t.Fatalf("new password: %s", got)
	}
	if got := cacheLogin(t, h, addr1, "alice", "old", virtualhost.ErrBadCredentials); got != "bcrypt" {
		t.Fatalf("old password while the new one is cached: %s", got)
	}

	// A reload that turns the cache off drops it.
	c.CredentialCache = 0
	if err := h.Update(c); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := cacheLogin(t, h, addr1, "alice", "new", nil); got != "bcrypt" {
			t.Fatalf("cache turned off by a reload: %s", got)
		}
	}
}

// A retired host (a reload removes or replaces it) forgets its cache and uses it no more.
func TestCredentialCacheRetire(t *testing.T) {
	h, _ := cachedHost(t, "testdata/users.hcl", time.Hour, 0)
	cacheLogin(t, h, addr1, "alice", "wonderland", nil)
	h.Retire()
	if n := virtualhost.CredentialCacheLen(h); n != 0 {
		t.Fatalf("a retired host's cache holds %d entries", n)
	}
	for range 2 {
		if got := cacheLogin(t, h, addr1, "alice", "wonderland", nil); got != "bcrypt" {
			t.Fatalf("retired host: %s", got)
		}
	}
}

// The cache holds at most credential_cache_size users; a full one makes room for a new one by dropping
// an expired entry if it sees one, else any.
func TestCredentialCacheSize(t *testing.T) {
	var us []scramUser
	for i := range 5 {
		us = append(us, scramUser{name: fmt.Sprint("u", i), password: fmt.Sprint("p", i)})
	}
	path := writeUsers(t, us...)
	const ttl = time.Minute
	h, clk := cachedHost(t, path, ttl, 2)
	cacheLogin(t, h, addr1, "u0", "p0", nil)
	clk.Add(ttl / 2)
	cacheLogin(t, h, addr1, "u1", "p1", nil)
	clk.Add(ttl / 2) // u0 expires, u1 does not
	cacheLogin(t, h, addr1, "u2", "p2", nil)
	if n := virtualhost.CredentialCacheLen(h); n != 2 {
		t.Fatalf("size 2, %d entries", n)
	}
	if got := cacheLogin(t, h, addr1, "u1", "p1", nil); got != "cache" {
		t.Fatalf("u1, unexpired, should have stayed when u2 came and u0 had expired: %s", got)
	}
	if got := cacheLogin(t, h, addr1, "u2", "p2", nil); got != "cache" {
		t.Fatalf("u2, the newest: %s", got)
	}
	for _, u := range us {
		cacheLogin(t, h, addr1, u.name, u.password, nil)
		if n := virtualhost.CredentialCacheLen(h); n > 2 {
			t.Fatalf("size 2, %d entries", n)
		}
	}
}

// A cache hit still asks the connect permission, and a refusal is counted as one.
func TestCredentialCacheHitAdmits(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl", CredentialCache: time.Hour,
		AccessRules: []conf.AccessRule{
			{Deny: []string{"alice"}, Actions: []string{"connect"}},
			{Allow: []string{"*"}, Actions: []string{"connect"}},
		}})
	for i, want := range []string{"bcrypt", "cache"} {
		if got := cacheLogin(t, h, addr1, "alice", "wonderland", virtualhost.ErrNotAuthorized); got != want {
			t.Fatalf("login %d: %s, want %s", i, got, want)
		}
	}
	if c := h.Counters(); c.ConnectRefused != 2 || c.AuthFailures != 0 {
		t.Fatalf("counters %+v, want 2 refused connects", c)
	}
	// Verify asks no connect permission: the cached credentials are good.
	if _, _, err := h.Verify(addr1, "alice", []byte("wonderland"), true); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// A cache hit takes no place among the host's password checks: it is answered while they are all
// busy, where a login that needs bcrypt waits and, past Throttle.Wait, is refused busy.
func TestCredentialCacheHitNeedsNoCheck(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl", CredentialCache: time.Hour, MaxConcurrentLogins: 1})
	if _, _, err := h.Login(addr1, "alice", []byte("wonderland"), true, "c"); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var blocked atomic.Int32
	defer virtualhost.WatchPasswordChecks(func(check func() error) {
		blocked.Add(1)
		<-release
		_ = check()
	})()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	wg.Go(func() {
		_, _, _ = h.Login(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 9)}, "bob", []byte("builder"), true, "c")
	})
	for blocked.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	h.Throttle.Wait = 50 * time.Millisecond
	addr2 := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2)}
	if _, _, err := h.Login(addr2, "bob", []byte("builder"), true, "c"); !errors.Is(err, virtualhost.ErrLoginBusy) {
		t.Fatalf("a bcrypt login while the only check is busy: %v, want ErrLoginBusy", err)
	}
	if p, _, err := h.Login(addr2, "alice", []byte("wonderland"), true, "c"); err != nil || p.User != "alice" {
		t.Fatalf("a cached login while the only check is busy: %+v, %v", p, err)
	}
	if _, _, err := h.Login(addr2, "alice", []byte("wrong"), true, "c"); !errors.Is(err, virtualhost.ErrLoginBusy) {
		t.Fatalf("a wrong password for a cached user while the only check is busy: %v, want ErrLoginBusy", err)
	}
}

// An address paying the delay its failures earned waits for it even when its credentials are cached.
func TestCredentialCacheHitWaitsForAddress(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl", CredentialCache: time.Hour})
	const delay = 200 * time.Millisecond
	h.Throttle = &virtualhost.Throttle{Free: 1, Base: delay, Max: delay, Wait: delay / 4}
	if _, _, err := h.Login(addr1, "alice", []byte("wonderland"), true, "c"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, _, _ = h.Login(addr1, "alice", []byte("nope"), true, "c")
	}
	if _, _, err := h.Login(addr1, "alice", []byte("wonderland"), true, "c"); !errors.Is(err, virtualhost.ErrLoginBusy) {
		t.Fatalf("cached credentials from an address within its delay: %v, want ErrLoginBusy", err)
	}
	if c := counts(h); c.hits != 0 {
		t.Fatalf("a cache hit counted for a login refused busy: %+v", c)
	}
}

// Logins, cached and not, right and wrong, while reloads swap the settings (run with -race).
func TestCredentialCacheConcurrentReload(t *testing.T) {
	path := writeUsers(t, scramUser{name: "alice", password: "wonderland"})
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: path, CredentialCache: time.Hour})
	h.Throttle = nil
	c := h.Config()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad atomic.Value
	for i := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				pw, want := "wonderland", error(nil)
				if (n+i)%3 == 0 {
					pw, want = "nope", virtualhost.ErrBadCredentials
				}
				if _, _, err := h.Login(nil, "alice", []byte(pw), true, "c"); !errors.Is(err, want) || (want == nil) != (err == nil) {
					bad.Store(fmt.Sprintf("%q: %v, want %v", pw, err, want))
				}
			}
		})
	}
	for range 20 {
		if err := h.Update(c); err != nil {
			t.Error(err)
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	if counts(h).hits == 0 {
		t.Fatal("no login was the cache's")
	}
}

// Logins with the same credentials while bcrypt checks them share that one check: a fleet of clients on
// one account reconnecting at once pays one bcrypt. A wrong password is not shared: each login with it
// pays its own check (and its own failure).
func TestCredentialCacheSharesCheckInFlight(t *testing.T) {
	h, _ := cachedHost(t, "testdata/users.hcl", time.Minute, 100)
	release := make(chan struct{})
	var checks atomic.Int32
	restore := virtualhost.WatchPasswordChecks(func(check func() error) {
		checks.Add(1)
		<-release // held until every login has arrived
		_ = check()
	})
	defer restore()
	const n = 16
	login := func(password string, errs chan<- error) {
		for i := range n {
			addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, byte(i+1)), Port: 1}
			go func() {
				_, _, err := h.Login(addr, "alice", []byte(password), true, fmt.Sprintf("c%d", i))
				errs <- err
			}()
		}
	}
	errs := make(chan error, n)
	login("wonderland", errs)
	for deadline := time.Now().Add(5 * time.Second); checks.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no password check started")
		}
	}
	time.Sleep(50 * time.Millisecond) // the others arrive and wait for the check in flight
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if c := checks.Load(); c != 1 {
		t.Fatalf("%d logins with one account at once ran %d bcrypt checks; want 1", n, c)
	}

	checks.Store(0)
	login("not-it", errs)
	for range n {
		if err := <-errs; !errors.Is(err, virtualhost.ErrBadCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if c := checks.Load(); c != n {
		t.Fatalf("%d logins with a wrong password ran %d checks; want one each", n, c)
	}
}
