package virtualhost

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

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
}

// Host is one virtual host. Its exported fields are fixed at New; front-ends only read them.
type Host struct {
	Name      string
	HostNames []string
	Router    *router.Router
	Anonymous bool
	// MaxConnections caps concurrent clients of this host (Acquire/Release); 0 = unlimited.
	MaxConnections int
	// MaxQueues caps the queues this host holds; 0 = unlimited.
	MaxQueues int
	// MaxMessageLength caps a message body on this host on top of the connector's limit; 0 = none.
	MaxMessageLength int64
	// Throttle slows down repeated login failures from one address (see Login). Tests may tune it
	// before clients connect.
	Throttle *Throttle

	users map[string]user // nil without a users file
	dummy []byte          // bcrypt hash compared against for unknown users
	fake  fakeSCRAM       // SCRAM credentials answered for names without any (scram.go)
	// auth holds the enhanced-authentication methods by name (enhanced.go).
	auth  map[string]Authenticator
	rules *rules
	conns atomic.Int64
	// Refusals by kind (Counters).
	authFailures, connectRefused, hostFull, accessDenied, gateDenied atomic.Uint64
	// persist is the host's store and what it recovered (store.go).
	persist *persistence
	drops   dropLog
}

// Option adjusts a host at construction.
type Option func(*options)

type options struct {
	log         *zap.Logger
	brokerRules []conf.AccessRule
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
	return func(o *options) { o.brokerRules = r }
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
	users, dummy, fake, err := loadUsers(c.UsersFile, c.Name)
	if err != nil {
		return nil, err
	}
	h = &Host{
		Name: c.Name, HostNames: c.HostNames, Anonymous: c.Anonymous,
		MaxConnections: c.MaxConnections, MaxQueues: c.MaxQueues, MaxMessageLength: c.MaxMessageLength,
		Throttle: &Throttle{}, users: users, dummy: dummy, fake: fake,
		auth: authenticators(users, opt.auth),
	}
	if h.rules, err = compileRules(opt.brokerRules, c.AccessRules); err != nil {
		return nil, err
	}
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

// Acquire takes one of the host's connection slots; false when MaxConnections are in use. Each true
// must be paired with one Release.
func (h *Host) Acquire() bool {
	if n := h.conns.Add(1); h.MaxConnections > 0 && n > int64(h.MaxConnections) {
		h.conns.Add(-1)
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
	}
}

// Close releases the host's resources: the router, then the store, which writes what is queued.
func (h *Host) Close() {
	h.Router.Close()
	h.drops.close()
	_ = h.persist.close()
}

// Registry finds hosts by name or alias. It is immutable after construction.
type Registry struct {
	hosts  []*Host
	byName map[string]*Host
}

// NewRegistry indexes hosts by name and host names, case-insensitively. The first host is the default.
func NewRegistry(hosts ...*Host) *Registry {
	r := &Registry{hosts: hosts, byName: make(map[string]*Host)}
	for _, h := range hosts {
		r.byName[strings.ToLower(h.Name)] = h
		for _, n := range h.HostNames {
			r.byName[strings.ToLower(n)] = h
		}
	}
	return r
}

// Lookup returns the host with the given name or alias, or nil.
func (r *Registry) Lookup(name string) *Host { return r.byName[strings.ToLower(name)] }

// Default returns the first configured host.
func (r *Registry) Default() *Host {
	if len(r.hosts) == 0 {
		return nil
	}
	return r.hosts[0]
}

// Hosts returns every host in configuration order.
func (r *Registry) Hosts() []*Host { return r.hosts }

// Close closes every host.
func (r *Registry) Close() {
	for _, h := range r.hosts {
		h.Close()
	}
}
