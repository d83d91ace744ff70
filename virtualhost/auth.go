package virtualhost

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/xdg-go/scram"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
)

// Credential bounds: longer input is refused as bad credentials before any lookup or hashing. bcrypt
// reads only the first 72 bytes of a password, so a longer one would be silently truncated.
const (
	MaxUserLength     = conf.MaxUserNameLength
	MaxPasswordLength = 72
)

// user is one entry of the users file.
type user struct {
	hash   []byte
	scram  *scram.StoredCredentials // nil: the user cannot log in with SCRAM-SHA-256
	groups []string
}

// loadUsers reads the users file, and makes what is answered when a user is unknown so that response
// times and messages do not reveal which names exist: the dummy hash compared against on a password
// login has the highest cost found in the file, so an unknown name costs as much time as a wrong
// password; fake makes SCRAM credentials for names without them (scram.go). host is the host's name.
func loadUsers(path, host string) (users map[string]user, dummy []byte, fake fakeSCRAM, file *conf.UsersFile, err error) {
	if path == "" {
		return nil, nil, newFakeSCRAM(host, nil), nil, nil
	}
	file, err = conf.LoadUsersFile(path)
	if err != nil {
		return nil, nil, fakeSCRAM{}, nil, fmt.Errorf("virtualhost: users file: %w", err)
	}
	list := file.Users
	users = make(map[string]user, len(list))
	cost := bcrypt.MinCost
	for _, u := range list {
		e := user{hash: []byte(u.PasswordHash), groups: u.Groups}
		if s := u.SCRAM; s != nil {
			e.scram = &scram.StoredCredentials{
				KeyFactors: scram.KeyFactors{Salt: string(s.Salt), Iters: s.Iterations},
				StoredKey:  s.StoredKey, ServerKey: s.ServerKey,
			}
		}
		users[u.Name] = e
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil && c > cost {
			cost = c
		}
	}
	dummy, err = bcrypt.GenerateFromPassword([]byte("lyre: no such user"), cost)
	if err != nil {
		return nil, nil, fakeSCRAM{}, nil, fmt.Errorf("virtualhost: users file: %w", err)
	}
	return users, dummy, newFakeSCRAM(host, list), file, nil
}

// Authenticate checks credentials by bcrypt; it neither throttles, nor checks the connect permission,
// nor asks or fills the credential cache (see Login).
//
//   - No user name: an anonymous host lets the client in with an empty Principal; other hosts answer
//     ErrNotAuthorized (MQTT CONNACK 0x05).
//   - A user of the users file with the right password: an authenticated Principal with its groups.
//   - A wrong password, an unknown user, or over-long credentials: ErrBadCredentials (CONNACK 0x04).
//   - An anonymous host without a users file accepts any user name, unauthenticated: the name is kept for
//     logs and headers but matches no access rule naming users or "+".
func (h *Host) Authenticate(name string, password []byte, hasUser bool) (Principal, error) {
	return h.authenticate(h.cur.Load(), name, password, hasUser)
}

// authenticate is Authenticate against the settings st, by bcrypt: the credential cache is the caller's.
func (h *Host) authenticate(st *settings, name string, password []byte, hasUser bool) (Principal, error) {
	if !hasUser || name == "" {
		if st.conf.Anonymous {
			return Principal{}, nil
		}
		return Principal{}, ErrNotAuthorized
	}
	if len(name) > MaxUserLength || len(password) > MaxPasswordLength {
		return Principal{}, ErrBadCredentials
	}
	u, ok := st.users[name]
	if !ok {
		if st.users == nil && st.conf.Anonymous {
			return Principal{User: name}, nil
		}
		if st.dummy != nil {
			_ = h.compare(st.dummy, password)
		}
		return Principal{}, ErrBadCredentials
	}
	if h.compare(u.hash, password) != nil {
		return Principal{}, ErrBadCredentials
	}
	return Principal{User: name, Groups: u.groups, Authenticated: true, listed: true}, nil
}

// compare is one bcrypt check, counted (HostCounters.PasswordChecks).
func (h *Host) compare(hash, password []byte) error {
	h.passwordChecks.Add(1)
	return compareHash(hash, password)
}

// passwordLogin is what Login and Verify share: the login's turn under the host's bounds, then its
// credentials checked, by the credential cache when it holds them (credcache.go), else by bcrypt. A
// cache hit costs an HMAC, not bcrypt, so it takes no place among the host's password checks; it still
// waits for its address's turn, so an address paying the delay its failures earned waits as before, and
// a wrong password always costs bcrypt and is throttled as it was without the cache. The caller gives
// the turn back (lt.done) unless err is ErrLoginBusy.
func (h *Host) passwordLogin(remote net.Addr, name string, password []byte, hasUser bool) (p Principal, lt loginTurn, err error) {
	st := h.cur.Load()
	check := hasUser && name != "" && st.dummy != nil // bcrypt work: a name on a host with a users file
	var mac [sha256.Size]byte
	cache := check && st.creds != nil && len(name) <= MaxUserLength && len(password) <= MaxPasswordLength
	if cache {
		mac = credMAC(name, password)
	}
	hit := cache && !h.retired.Load() && st.creds.has(name, mac, h.now())
	if cache && !hit && !h.retired.Load() {
		if wait := st.creds.flight(mac); wait != nil {
			// Another login is checking these very credentials: its answer serves this one too, if it
			// is a success. A failure is not shared: this login then pays its own check, and its own
			// delay, like any other failure.
			select {
			case <-wait:
			case <-time.After(h.loginWait()):
			}
			hit = st.creds.has(name, mac, h.now())
		} else {
			defer st.creds.land(mac)
		}
	}
	if lt, err = h.loginTurn(remote, check && !hit); err != nil {
		return Principal{}, lt, err
	}
	// The turn may have waited: the settings or the entry may have changed since.
	st = h.cur.Load()
	if hit {
		if p, ok := h.cached(st, name, mac); ok {
			return p, lt, nil
		}
		// Gone while waiting: a bcrypt check after all, in turn among the host's checks.
		lt.done(0)
		if lt, err = h.loginTurn(remote, check); err != nil {
			return Principal{}, lt, err
		}
		st = h.cur.Load()
	}
	p, err = h.authenticate(st, name, password, hasUser)
	// Only a success is remembered, in the cache of the settings it was checked against: a reload
	// swaps in settings with an empty cache, so nothing verified under an old users file outlives it.
	if err == nil && cache && p.listed && !h.retired.Load() {
		st.creds.put(name, mac, h.now())
	}
	return p, lt, err
}

// cached returns the principal of name when st's credential cache holds mac for it.
func (h *Host) cached(st *settings, name string, mac [sha256.Size]byte) (Principal, bool) {
	if h.retired.Load() || !st.creds.has(name, mac, h.now()) {
		return Principal{}, false
	}
	u, ok := st.users[name]
	if !ok { // cannot be: the cache belongs to st and holds only its users
		return Principal{}, false
	}
	h.credentialHits.Add(1)
	return Principal{User: name, Groups: u.groups, Authenticated: true, listed: true}, true
}

// now is the credential cache's clock.
func (h *Host) now() time.Time {
	if h.clock != nil {
		return h.clock()
	}
	return time.Now()
}

// Login is what a front-end calls on CONNECT: Authenticate (or the credential cache, when it holds these
// credentials: see passwordLogin), then the connect permission on this host for the client id. On failure it also returns how long the front-end should wait before answering: repeated
// failures from one address are slowed down (see Throttle). It first waits for its turn under the host's
// login bounds (loginlimit.go), or fails with ErrLoginBusy. remote may be nil (no throttling).
func (h *Host) Login(remote net.Addr, name string, password []byte, hasUser bool, clientID string) (Principal, time.Duration, error) {
	p, lt, err := h.passwordLogin(remote, name, password, hasUser)
	if errors.Is(err, ErrLoginBusy) {
		return Principal{}, 0, err
	}
	p, delay, err := h.admit(remote, p, err, clientID)
	lt.done(delay)
	return p, delay, err
}

// LoginCert is Login for a client that presented no user name but a verified TLS client certificate on
// a connector with cert_identity: the certificate's CN or DN (identity) is the user name, authenticated
// by the TLS handshake rather than a password. Groups come from the users file entry of that name, if
// there is one; access rules then apply as for any user.
func (h *Host) LoginCert(remote net.Addr, identity, clientID string) (Principal, time.Duration, error) {
	lt, err := h.loginTurn(remote, false)
	if err != nil {
		return Principal{}, 0, err
	}
	p := Principal{User: identity, CertIdentity: identity, Authenticated: true}
	if len(identity) > MaxUserLength {
		p, err = Principal{}, ErrBadCredentials
	} else if u, ok := h.cur.Load().users[identity]; ok {
		p.Groups = u.groups
	}
	p, delay, err := h.admit(remote, p, err, clientID)
	lt.done(delay)
	return p, delay, err
}

// admit finishes a login: the connect permission on this host for the client id, and the delay owed by
// an address that keeps failing.
// A refusal is counted (Counters): bad credentials as an authentication failure, the rest as a refused
// connect.
func (h *Host) admit(remote net.Addr, p Principal, err error, clientID string) (Principal, time.Duration, error) {
	if err == nil && !h.cur.Load().rules.authorize(p, ActionConnect, ObjectVirtualHost, []string{h.Name}, clientID) {
		err = ErrNotAuthorized
	}
	if err != nil {
		return Principal{}, h.refuse(remote, err), err
	}
	return p, 0, nil
}

// Decoy answers a login to a virtual host that does not exist as this host answers a failed one: the
// same turn under the login bounds (or ErrLoginBusy, as Login), the same bcrypt work (when a user name
// was given, as Authenticate does it), a failure counted against the address, and the delay it has
// earned, which the front-end waits before refusing. It is called on the default host, so that a client
// cannot tell a host name that does not exist from credentials that are wrong, neither by the answer nor
// by the time it takes.
func (h *Host) Decoy(remote net.Addr, name string, password []byte, hasUser bool) (time.Duration, error) {
	lt, err := h.loginTurn(remote, hasUser && name != "")
	if err != nil {
		return 0, err
	}
	if hasUser && name != "" && len(name) <= MaxUserLength && len(password) <= MaxPasswordLength {
		dummy := h.cur.Load().dummy
		if dummy == nil {
			dummy = defaultDummy()
		}
		_ = h.compare(dummy, password)
	}
	delay := h.refuse(remote, ErrBadCredentials)
	lt.done(delay)
	return delay, nil
}

// defaultDummy is the hash Decoy compares against on a host without users: one of bcrypt's default
// cost, made once.
var defaultDummy = sync.OnceValue(func() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte("lyre: no such virtual host"), bcrypt.DefaultCost)
	if err != nil {
		panic("virtualhost: bcrypt: " + err.Error())
	}
	return h
})

// Verify is Login for a management (HTTP) request: the credentials are checked (by the credential cache
// too), and a failure is counted and throttled like a client's, but the connect permission is not asked. A monitoring account
// need not be able to connect as a client; management checks monitor, admin and send itself.
func (h *Host) Verify(remote net.Addr, name string, password []byte, hasUser bool) (Principal, time.Duration, error) {
	p, lt, err := h.passwordLogin(remote, name, password, hasUser)
	if errors.Is(err, ErrLoginBusy) {
		return Principal{}, 0, err
	}
	var delay time.Duration
	if err != nil {
		p, delay = Principal{}, h.refuse(remote, err)
	}
	lt.done(delay)
	return p, delay, err
}

// refuse counts a failed login and returns the delay the address has earned.
func (h *Host) refuse(remote net.Addr, err error) time.Duration {
	if errors.Is(err, ErrBadCredentials) {
		h.authFailures.Add(1)
	} else {
		h.connectRefused.Add(1)
	}
	return h.Throttle.Fail(remote)
}

// Throttle slows down clients that keep failing to log in. It counts failures per IP address in a small
// bounded table; each failure beyond Free doubles the delay from Base up to Max. An address's count is
// forgotten Window after its last failure. When the table is full, the entry with the oldest failure is
// evicted, so an attacker spreading over many addresses loses tracking of the oldest one, never memory.
// The delay is the address's, not the connection's: the next login from the address waits until it is
// over, and the failed attempt keeps its place among its address's attempts until then (loginlimit.go),
// so a client that closes without waiting for its answer gains nothing. Logins wait at most Wait for
// their turn. The zero value uses the defaults; a nil *Throttle never delays and bounds nothing.
type Throttle struct {
	Free   int           // failures without delay; default 3
	Base   time.Duration // first delay; default 100ms
	Max    time.Duration // delay cap; default 2s
	Window time.Duration // default 1m
	Size   int           // addresses tracked; default 1024
	Wait   time.Duration // how long a login waits for its turn; default DefaultLoginWait

	mu    sync.Mutex
	fails map[string]*failures

	// The places of logins under way (loginlimit.go): password checks on the host, attempts per address
	// (a failed one until its delay is over); freed is closed when one is given back.
	gmu      sync.Mutex
	checking int
	attempts map[string]int
	freed    chan struct{}
}

type failures struct {
	n     int
	last  time.Time
	until time.Time // the delay the last failure earned ends
}

// Fail records a failed login from remote and returns the delay to impose before answering it.
func (t *Throttle) Fail(remote net.Addr) time.Duration {
	if t == nil || remote == nil {
		return 0
	}
	ip := addrKey(remote)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fails == nil {
		t.fails = make(map[string]*failures)
	}
	f := t.fails[ip]
	if f != nil && now.Sub(f.last) > or(t.Window, time.Minute) {
		f.n = 0
	}
	if f == nil {
		if len(t.fails) >= or(t.Size, 1024) {
			t.evictOldest(now)
		}
		f = &failures{}
		t.fails[ip] = f
	}
	f.n++
	f.last = now
	extra := f.n - or(t.Free, 3)
	if extra <= 0 {
		return 0
	}
	d, limit := or(t.Base, 100*time.Millisecond), or(t.Max, 2*time.Second)
	for i := 1; i < extra && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	f.until = now.Add(d)
	return d
}

// Failures returns the failure count currently held for an IP address (for tests and monitoring).
func (t *Throttle) Failures(ip string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.fails[ip]; f != nil {
		return f.n
	}
	return 0
}

func (t *Throttle) evictOldest(now time.Time) {
	var oldest string
	var at time.Time
	for ip, f := range t.fails {
		if now.Sub(f.last) > or(t.Window, time.Minute) {
			delete(t.fails, ip)
			continue
		}
		if oldest == "" || f.last.Before(at) {
			oldest, at = ip, f.last
		}
	}
	if len(t.fails) >= or(t.Size, 1024) {
		delete(t.fails, oldest)
	}
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
