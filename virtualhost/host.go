// Package virtualhost isolates tenants: each Host has its own router, store, users and access rules.
// Front-ends pick a Host at CONNECT time (STOMP by the `host` header, MQTT by the connector or user name)
// and from then on talk only to that Host.
package virtualhost

import (
	"errors"
	"strings"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
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
}

// Host is one virtual host.
type Host struct {
	Name      string
	HostNames []string
	Router    *router.Router
	Anonymous bool
}

// New builds a host from its configuration with an in-memory router.
func New(c conf.VirtualHost, o router.Options) *Host {
	return &Host{Name: c.Name, HostNames: c.HostNames, Router: router.New(routerOptions(c, o)), Anonymous: c.Anonymous}
}

// Authenticate checks credentials. With anonymous access on, a client without a user name is let in;
// users are added by the security issue, so any user name is refused until then.
func (h *Host) Authenticate(user string, password []byte, hasUser bool) (Principal, error) {
	if !hasUser || user == "" {
		if h.Anonymous {
			return Principal{}, nil
		}
		return Principal{}, ErrNotAuthorized
	}
	if h.Anonymous {
		// No user database yet: an anonymous-access host accepts the name as given.
		return Principal{User: user}, nil
	}
	return Principal{}, ErrBadCredentials
}

// Close releases the host's resources.
func (h *Host) Close() { h.Router.Close() }

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
