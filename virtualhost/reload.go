package virtualhost

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

// ErrUserRemoved is the reason a connection's user no longer exists after a reload (Refresh).
var ErrUserRemoved = errors.New("virtualhost: user removed")

// Change is a host's new configuration, read and checked by Prepare, put in place by Apply.
type Change struct {
	h   *Host
	st  *settings
	pol router.Policies
}

// Prepare reads and checks configuration c for the running host without changing it: the users file
// is read again (it may have changed even when c has not) and the access rules compiled, after the
// broker's rules given with WithBrokerRules, else those the host has (other options are ignored). c must name the same host with the
// same store block: a host whose store changes is a new host, to open beside and swap in the Registry.
// A reload prepares every host before it applies any, so a configuration that fails is refused whole.
func (h *Host) Prepare(c conf.VirtualHost, opts ...Option) (*Change, error) {
	var opt options
	for _, f := range opts {
		f(&opt)
	}
	old := h.cur.Load().conf
	if !strings.EqualFold(c.Name, h.Name) {
		return nil, fmt.Errorf("virtualhost %s: cannot become %q", h.Name, c.Name)
	}
	if !reflect.DeepEqual(c.Store, old.Store) {
		return nil, fmt.Errorf("virtualhost %s: its store block changed: open the host again", h.Name)
	}
	if err := CheckPolicies(c); err != nil {
		return nil, err
	}
	if !opt.brokerSet {
		opt.brokerRules = h.cur.Load().brokerAR
	}
	st, err := h.build(c, opt.brokerRules)
	if err != nil {
		return nil, err
	}
	return &Change{h: h, st: st, pol: routerPolicies(c, h.base)}, nil
}

// Apply puts the change in place: users, groups and SCRAM credentials, access rules (broker and host),
// anonymous access, host names (the caller indexes them again: Registry.Set), limits, and the router's
// policies and quotas (router.SetPolicies). Connections keep going: what they do next is decided under
// the new settings, and gates forget what they decided under the old rules. Nothing here ends a
// connection whose rights were narrowed; the front-ends re-check their connections (protocol.Server.Recheck).
func (ch *Change) Apply() {
	ch.h.cur.Store(ch.st)
	ch.h.Router.SetPolicies(ch.pol)
}

// What lists what the change alters, for the reload's log line: "users", "access_rules", "anonymous",
// "host_names", "limits", "policies", "shared_subscription_strategy"; empty when nothing does.
func (ch *Change) What() []string {
	old, c := ch.h.cur.Load(), ch.st.conf
	var out []string
	add := func(what string, changed bool) {
		if changed {
			out = append(out, what)
		}
	}
	add("users", !reflect.DeepEqual(old.users, ch.st.users) || !reflect.DeepEqual(old.groups, ch.st.groups) ||
		!reflect.DeepEqual(old.rules.claims, ch.st.rules.claims))
	add("access_rules", !reflect.DeepEqual(old.brokerAR, ch.st.brokerAR) || !reflect.DeepEqual(old.conf.AccessRules, c.AccessRules) ||
		!slices.Equal(old.conf.ClientIDs, c.ClientIDs))
	add("anonymous", old.conf.Anonymous != c.Anonymous)
	add("host_names", !slices.Equal(old.conf.HostNames, c.HostNames))
	add("limits", old.conf.MaxConnections != c.MaxConnections || old.conf.MaxQueues != c.MaxQueues ||
		old.conf.MaxMessageLength != c.MaxMessageLength || old.conf.Quota != c.Quota || old.conf.QuotaMessages != c.QuotaMessages ||
		old.conf.MaxSubscriptions != c.MaxSubscriptions || old.conf.MaxDurableSubscriptions != c.MaxDurableSubscriptions ||
		old.conf.MaxConcurrentLogins != c.MaxConcurrentLogins || old.conf.MaxConcurrentLoginsPerAddress != c.MaxConcurrentLoginsPerAddress ||
		old.conf.CredentialCache != c.CredentialCache || old.conf.CredentialCacheSize != c.CredentialCacheSize)
	add("policies", !reflect.DeepEqual(old.conf.Queues, c.Queues) || !reflect.DeepEqual(old.conf.Dsubs, c.Dsubs) ||
		!reflect.DeepEqual(old.conf.Topics, c.Topics))
	add("shared_subscription_strategy", old.conf.SharedSubscriptionStrategy != c.SharedSubscriptionStrategy)
	return out
}

// Update is Prepare then Apply.
func (h *Host) Update(c conf.VirtualHost, opts ...Option) error {
	ch, err := h.Prepare(c, opts...)
	if err != nil {
		return err
	}
	ch.Apply()
	return nil
}

// routerPolicies are the router policies of host configuration c on top of base (Open's options).
func routerPolicies(c conf.VirtualHost, base router.Options) router.Policies {
	o := routerOptions(c, base)
	return router.Policies{MaxQueueMessages: o.MaxQueueMessages, MaxQueueBytes: o.MaxQueueBytes, MaxQueues: o.MaxQueues,
		QueuePolicies: o.QueuePolicies, TopicPolicies: o.TopicPolicies, ShareStrategy: o.ShareStrategy,
		MaxDurables: o.MaxDurables, MaxSubscriptions: o.MaxSubscriptions}
}

// Refresh checks a connected client's principal again under the host's settings now (after Apply): who
// it is now (its groups as the users file says today) and whether it may still be connected. It fails
// with ErrUserRemoved when the users file no longer lists a user that logged in against it, and with an
// error wrapping ErrNotAuthorized when the client may no longer connect: anonymous access turned off, a
// name claimed on an anonymous host that now has users, or the connect permission revoked. A client
// authenticated otherwise (a TLS certificate, an enhanced method whose user the file does not list) is
// not removed with the file's entries, only given the groups the file has for its name. A password
// change does not end a connection.
func (h *Host) Refresh(p Principal, clientID string) (Principal, error) {
	st := h.cur.Load()
	u, listed := st.users[p.User]
	switch {
	case p.listed && !listed:
		return Principal{}, fmt.Errorf("%w: %q is no longer in the users file", ErrUserRemoved, p.User)
	case p.Authenticated:
		p.Groups, p.listed = u.groups, listed
	case p.User == "" && !st.conf.Anonymous:
		return Principal{}, fmt.Errorf("%w: anonymous access to %s is off", ErrNotAuthorized, h.Name)
	case p.User != "" && (!st.conf.Anonymous || st.users != nil):
		return Principal{}, fmt.Errorf("%w: %s no longer takes unproven user names", ErrNotAuthorized, h.Name)
	}
	if !st.rules.authorize(p, ActionConnect, ObjectVirtualHost, []string{h.Name}, clientID) {
		return Principal{}, fmt.Errorf("%w: may no longer connect to %s", ErrNotAuthorized, h.Name)
	}
	return p, nil
}
