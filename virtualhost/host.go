package virtualhost

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// Authentication outcomes. Front-ends map them onto CONNACK codes / STOMP ERROR frames.
var (
	ErrBadCredentials = errors.New("virtualhost: bad user name or password")
	ErrNotAuthorized  = errors.New("virtualhost: not authorized")
)

// Principal is an authenticated (or anonymous) client identity.
type Principal struct {
	User   string // "" for anonymous
	Groups []string
	// Authenticated is true when User was proven (password, later a client certificate). A name claimed
	// on an anonymous host without users is kept in User but matches no rule naming users or "+".
	Authenticated bool
	// CertIdentity is the CN or DN of a verified client certificate on a connector with cert_identity
	// set; "" otherwise.
	CertIdentity string
	// listed is true when User was proven against an entry of the users file (a password, SCRAM, or an
	// enhanced method naming a listed user): removing that entry ends the user's connections (Refresh).
	listed bool
}

// Host is one virtual host. Name and Router are fixed at Open. What a configuration reload changes in
// place (users, access rules, policies, limits, host names, anonymous access: see Prepare) is one
// immutable snapshot behind an atomic pointer, read through the accessor methods.
type Host struct {
	Name   string
	Router *router.Router
	// Throttle slows down repeated login failures from one address (see Login). Tests may tune it
	// before clients connect.
	Throttle *Throttle

	cur atomic.Pointer[settings]
	// base are the router options Open was given, under the host's policies again on each reload.
	base router.Options
	// extraAuth are the WithAuthenticator methods, offered again by every reload.
	extraAuth []Authenticator
	conns     atomic.Int64
	retired   atomic.Bool
	// Refusals by kind (Counters).
	authFailures, connectRefused, hostFull, accessDenied, gateDenied atomic.Uint64
	// Password logins by how they were checked (Counters): bcrypt, or the credential cache.
	passwordChecks, credentialHits atomic.Uint64
	// clock is what the credential cache reads as now; nil is time.Now. Tests set it (export_test.go).
	clock func() time.Time
	// persist is the host's store and what it recovered (store.go).
	persist *persistence
	drops   dropLog
}

// settings are what a reload changes in place (Prepare, Apply). Immutable once stored in Host.cur: a
// login, an access check or a gate reads one snapshot with one atomic load and takes no lock for it.
type settings struct {
	conf      conf.VirtualHost // what it was built from
	brokerAR  []conf.AccessRule
	users     map[string]user // nil without a users file
	groups    []conf.Group    // the users file's group blocks
	dummy     []byte          // bcrypt hash compared against for unknown users
	creds     *credCache      // passwords bcrypt verified against these users lately; nil: no cache
	fake      fakeSCRAM       // SCRAM credentials answered for names without any (scram.go)
	auth      map[string]Authenticator
	rules     *rules
	hostNames []string
}

// HostNames returns the host's aliases (host_names).
func (h *Host) HostNames() []string { return h.cur.Load().hostNames }

// Anonymous reports whether clients may use the host without credentials.
func (h *Host) Anonymous() bool { return h.cur.Load().conf.Anonymous }

// MaxConnections caps concurrent clients of this host (Acquire/Release); 0 = unlimited.
func (h *Host) MaxConnections() int { return h.cur.Load().conf.MaxConnections }

// MaxQueues caps the queues this host holds; 0 = unlimited. The router enforces it.
func (h *Host) MaxQueues() int { return h.cur.Load().conf.MaxQueues }

// MaxMessageLength caps a message body on this host on top of the connector's limit; 0 = none.
func (h *Host) MaxMessageLength() int64 { return h.cur.Load().conf.MaxMessageLength }

// Config returns the configuration the host runs with now (its last Apply, else Open's).
func (h *Host) Config() conf.VirtualHost { return h.cur.Load().conf }

// Option adjusts a host at construction.
type Option func(*options)

type options struct {
	log         *zap.Logger
	brokerRules []conf.AccessRule
	brokerSet   bool // WithBrokerRules was given
	store       store.Store
	auth        []Authenticator
}

// WithLogger gives the host a logger for what it reports itself, such as messages dropped by full
// queues and durable subscriptions. Without it the host logs nothing.
func WithLogger(l *zap.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithBrokerRules puts the broker-level access rules (conf.Config.AccessRules) before the host's own.
func WithBrokerRules(r []conf.AccessRule) Option {
	return func(o *options) { o.brokerRules, o.brokerSet = r, true }
}

// New is Open for configurations known to be good, such as those tests build in Go; it panics where
// Open returns an error, like regexp.MustCompile. The broker uses Open.
func New(c conf.VirtualHost, o router.Options, opts ...Option) *Host {
	h, err := Open(c, o, opts...)
	if err != nil {
		panic(err)
	}
	return h
}

// Open builds a host from its configuration. A host whose configuration has a store block is durable: its
// store, opened by the caller (cmd/lyre opens badger in the block's directory), comes with WithStore and
// is recovered here. It fails when the users file cannot be read or an access rule id does not parse
// (conf.Load has checked both already, but the file may have changed since), when a store block has no
// store, or when recovery fails.
func Open(c conf.VirtualHost, o router.Options, opts ...Option) (h *Host, err error) {
	var opt options
	for _, f := range opts {
		f(&opt)
	}
	defer func() {
		if err != nil && opt.store != nil {
			_ = opt.store.Close() // the host owns its store from here on, failing or not
		}
	}()
	h = &Host{Name: c.Name, Throttle: &Throttle{}, base: o, extraAuth: opt.auth}
	st, err := h.build(c, opt.brokerRules)
	if err != nil {
		return nil, err
	}
	h.cur.Store(st)
	if c.Store != nil && opt.store == nil {
		return nil, fmt.Errorf("virtualhost %s: a store block but no store (WithStore)", c.Name)
	}
	// The store last: nothing after it can fail but its own recovery, which closes it.
	h.persist = newPersistence(opt.store)
	h.drops.log = opt.log
	if h.drops.log == nil {
		h.drops.log = zap.NewNop()
	}
	ro := routerOptions(c, o)
	if ro.Dropped == nil {
		ro.Dropped = h.drops.dropped
	}
	if h.persist.durable() {
		ro.Journal = h.persist
	}
	h.Router = router.New(ro)
	if err := h.persist.recover(h.Router); err != nil {
		h.persist.stop()
		return nil, err
	}
	return h, nil
}

// build reads the users file and compiles the access rules of configuration c (broker rules first).
func (h *Host) build(c conf.VirtualHost, brokerRules []conf.AccessRule) (*settings, error) {
	users, dummy, fake, file, err := loadUsers(c.UsersFile, c.Name)
	if err != nil {
		return nil, err
	}
	rs, err := compileRules(groupNames(file), newClaims(file, c.ClientIDs), brokerRules, c.AccessRules)
	if err != nil {
		return nil, err
	}
	var groups []conf.Group
	if file != nil {
		groups = file.Groups
	}
	var creds *credCache
	if dummy != nil { // a users file: passwords to check
		creds = newCredCache(c)
	}
	return &settings{conf: c, brokerAR: brokerRules, users: users, groups: groups, dummy: dummy, creds: creds,
		fake: fake, auth: authenticators(users, h.extraAuth), rules: rs, hostNames: c.HostNames}, nil
}

// Acquire takes one of the host's connection slots; false when MaxConnections are in use, or the host
// is retired (Retire). Each true must be paired with one Release.
func (h *Host) Acquire() bool {
	n := h.conns.Add(1)
	// Retired is read after the Add, and Retire's caller reads Connections after setting it: either it
	// sees this slot and waits for its Release, or this sees the host retired and gives the slot back.
	if h.retired.Load() {
		h.conns.Add(-1)
		return false
	}
	if max := h.MaxConnections(); max > 0 && n > int64(max) {
		h.conns.Add(-1)
		h.hostFull.Add(1)
		return false
	}
	return true
}

// HasRoom reports whether Acquire would find a slot now, without taking one; a host without room counts
// the refusal (HostCounters.HostFull). Front-ends ask it before checking credentials, so a full host
// answers every client alike whatever its password (a refusal after a correct password only would tell
// the password was right).
func (h *Host) HasRoom() bool {
	if h.retired.Load() {
		return false
	}
	if max := h.MaxConnections(); max > 0 && h.conns.Load() >= int64(max) {
		h.hostFull.Add(1)
		return false
	}
	return true
}

// Release returns a slot taken by Acquire.
func (h *Host) Release() { h.conns.Add(-1) }

// Connections returns the number of slots held.
func (h *Host) Connections() int { return int(h.conns.Load()) }

// HostCounters are a host's refusals, counted since it opened.
type HostCounters struct {
	// AuthFailures counts logins refused for bad credentials (ErrBadCredentials from Login, LoginCert
	// or LoginAuth: unknown user, wrong password, failed SCRAM exchange, over-long credentials),
	// re-authentications included.
	AuthFailures uint64
	// ConnectRefused counts logins refused with ErrNotAuthorized: no user name on a host without
	// anonymous access, or no connect permission for a client whose identity was accepted.
	ConnectRefused uint64
	// HostFull counts connection slots refused at MaxConnections (Acquire).
	HostFull uint64
	// AccessDenied counts the Authorize calls that denied (a SEND, a SUBSCRIBE or a consumer refused,
	// a retained message withheld) and the AuthorizeFilter calls that allowed nothing (a subscription
	// refused). The connect permission checked at login counts in ConnectRefused instead.
	AccessDenied uint64
	// GateDenied counts the messages a Gate kept from a wildcard subscriber it partly denies: one per
	// message withheld, whether its decision was cached or not.
	GateDenied uint64
	// JournalFailures counts store writes that failed with nobody waiting for them (JournalFailures).
	JournalFailures uint64
	// PasswordChecks counts the bcrypt comparisons run for password logins (Login, Verify, and Decoy on
	// the default host): wrong passwords and unknown users (the dummy hash) included, cache hits not.
	PasswordChecks uint64
	// CredentialCacheHits counts the password logins the credential cache answered without bcrypt.
	CredentialCacheHits uint64
}

// Counters returns the host's refusal counters. The counting is an atomic add on the refusal paths
// only, so an allowed request costs nothing more.
func (h *Host) Counters() HostCounters {
	return HostCounters{
		AuthFailures:    h.authFailures.Load(),
		ConnectRefused:  h.connectRefused.Load(),
		HostFull:        h.hostFull.Load(),
		AccessDenied:    h.accessDenied.Load(),
		GateDenied:      h.gateDenied.Load(),
		JournalFailures: h.persist.failed.Load(),
		PasswordChecks:  h.passwordChecks.Load(),

		CredentialCacheHits: h.credentialHits.Load(),
	}
}

// Close releases the host's resources: the router, then the store, which writes what is queued.
func (h *Host) Close() {
	h.cur.Load().creds.clear()
	h.Router.Close()
	h.drops.close()
	_ = h.persist.close()
}

// Retire marks the host as leaving (a reload removes or replaces it): Acquire refuses every new client,
// and the front-ends' re-check (protocol.Server.Recheck) says goodbye to those connected. Close it once
// Connections is 0. Its credential cache is forgotten and no longer used.
func (h *Host) Retire() {
	h.retired.Store(true)
	h.cur.Load().creds.clear()
}

// Retired reports whether Retire was called.
func (h *Host) Retired() bool { return h.retired.Load() }

// Registry finds hosts by name or alias. Lookups are safe while a reload changes it (Set): they read one
// immutable index with an atomic load and take no lock.
type Registry struct {
	mu  sync.Mutex // serialises Set
	idx atomic.Pointer[hostIndex]
}

type hostIndex struct {
	hosts  []*Host
	byName map[string]*Host
}

// NewRegistry indexes hosts by name and host names, case-insensitively. The first host is the default.
func NewRegistry(hosts ...*Host) *Registry {
	r := &Registry{}
	r.Set(hosts...)
	return r
}

// Set replaces the registry's hosts, in configuration order (the first is the default), indexing each by
// its name and its current host names. A reload calls it to add and remove hosts, and after changing
// hosts' names in place. It closes nothing.
func (r *Registry) Set(hosts ...*Host) {
	idx := &hostIndex{hosts: slices.Clone(hosts), byName: make(map[string]*Host)}
	for _, h := range hosts {
		idx.byName[strings.ToLower(h.Name)] = h
		for _, n := range h.HostNames() {
			idx.byName[strings.ToLower(n)] = h
		}
	}
	r.mu.Lock()
	r.idx.Store(idx)
	r.mu.Unlock()
}

// Lookup returns the host with the given name or alias, or nil.
func (r *Registry) Lookup(name string) *Host { return r.idx.Load().byName[strings.ToLower(name)] }

// Default returns the first configured host.
func (r *Registry) Default() *Host {
	hosts := r.idx.Load().hosts
	if len(hosts) == 0 {
		return nil
	}
	return hosts[0]
}

// Hosts returns every host in configuration order. The slice must not be modified.
func (r *Registry) Hosts() []*Host { return r.idx.Load().hosts }

// Close closes every host.
func (r *Registry) Close() {
	for _, h := range r.Hosts() {
		h.Close()
	}
}
