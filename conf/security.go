package conf

import (
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Access rule vocabulary (Apollo's).
var (
	// Actions an access rule may name.
	Actions = []string{"connect", "send", "receive", "consume", "create", "destroy", "admin", "monitor"}
	// Kinds an access rule may name ("*" or omitted = all).
	Kinds = []string{"connector", "virtual_host", "broker", "topic", "queue", "dsub", "temp_queue", "temp_topic"}
)

// accessRules checks rules stored under key prefix ("a" at top level, "v0.access_rule." in a host).
func (v *validator) accessRules(prefix string, rules []AccessRule) {
	for i := range rules {
		r := &rules[i]
		k := prefix + strconv.Itoa(i)
		switch {
		case r.Allow != nil && r.Deny != nil:
			v.errf(k+".deny", "access_rule sets both allow and deny; use one rule for each")
		case r.Allow == nil && r.Deny == nil:
			v.errf(k, "access_rule needs allow = [...] or deny = [...] (users, groups, \"+\" or \"*\")")
		}
		for _, l := range []struct {
			name string
			list []string
		}{{"allow", r.Allow}, {"deny", r.Deny}} {
			if l.list != nil && len(l.list) == 0 {
				v.errf(k+"."+l.name, "%s must list at least one user or group, \"+\" or \"*\"", l.name)
			}
			for j, n := range l.list {
				if n == "+" || n == "*" {
					continue
				}
				if msg := checkPrincipalName(n); msg != "" {
					v.errf(k+"."+l.name+"."+strconv.Itoa(j), "%s entry %q %s", l.name, n, msg)
				}
			}
		}
		for j, a := range r.Actions {
			if !slices.Contains(Actions, a) {
				v.errf(k+".action."+strconv.Itoa(j), "unknown action %q%s (want one of %s)", a, suggest(a, slices.Clone(Actions)), strings.Join(Actions, ", "))
			}
		}
		if r.Kind != "" && r.Kind != "*" && !slices.Contains(Kinds, r.Kind) {
			v.errf(k+".kind", "unknown kind %q%s (want \"*\" or one of %s)", r.Kind, suggest(r.Kind, slices.Clone(Kinds)), strings.Join(Kinds, ", "))
		}
		if _, set := v.c.pos[k+".id"]; r.ID != "" || set {
			if err := CheckPattern(r.ID, true); err != nil {
				v.errf(k+".id", "invalid id %q: %v", r.ID, err)
			}
		}
	}
}

// hostSecurity checks a host's users file, limits, access rules, policies and shared-subscription strategy.
func (v *validator) hostSecurity(k string, h *VirtualHost) {
	if _, set := v.c.pos[k+".users_file"]; h.UsersFile != "" || set {
		v.usersFile(k+".users_file", h.UsersFile)
	}
	for _, l := range []struct {
		name string
		n    int64
		zero string // what 0 means
	}{
		{"max_connections", int64(h.MaxConnections), "unlimited"},
		{"max_queues", int64(h.MaxQueues), "unlimited"},
		{"max_message_length", h.MaxMessageLength, "the connector's"},
		{"quota", h.Quota, "the default"},
		{"quota_messages", int64(h.QuotaMessages), "the default"},
		{"max_subscriptions", int64(h.MaxSubscriptions), "the default"},
		{"max_durable_subscriptions", int64(h.MaxDurableSubscriptions), "the default"},
		{"max_concurrent_logins", int64(h.MaxConcurrentLogins), "one per CPU"},
		{"max_concurrent_logins_per_address", int64(h.MaxConcurrentLoginsPerAddress), "the default"},
		{"credential_cache", int64(h.CredentialCache), "no cache"},
		{"credential_cache_size", int64(h.CredentialCacheSize), "the default"},
	} {
		if l.n < 0 {
			v.errf(k+"."+l.name, "%s must not be negative (0 means %s)", l.name, l.zero)
		}
	}
	v.shareStrategy(k, h.SharedSubscriptionStrategy)
	for j, p := range h.ClientIDs {
		if err := CheckClientIDPattern(p); err != nil {
			v.errf(k+".client_ids."+strconv.Itoa(j), "client_ids entry %q: %v", p, err)
		}
	}
	v.accessRules(k+".access_rule.", h.AccessRules)
	v.queuePolicies(k, "queue", h.Queues)
	v.queuePolicies(k, "dsub", h.Dsubs)
	patterns := map[string]string{}
	for i := range h.Topics {
		t := &h.Topics[i]
		tk := k + ".topic." + strconv.Itoa(i)
		v.policyPattern(tk, "topic", t.Pattern, patterns)
		switch t.SlowConsumerPolicy {
		case SlowBlock, SlowQueue:
		default:
			v.errf(tk+".slow_consumer_policy", "unknown slow_consumer_policy %q (want \"block\" or \"queue\")", t.SlowConsumerPolicy)
		}
	}
}

// shareStrategy checks the shared_subscription_strategy of the host at k. "" means the default in a
// config built in Go; written in a file it is a mistake.
func (v *validator) shareStrategy(k string, st ShareStrategy) {
	key := k + ".shared_subscription_strategy"
	if _, set := v.c.pos[key]; (st == "" && !set) || slices.Contains(ShareStrategies, st) {
		return
	}
	known := make([]string, len(ShareStrategies))
	for i, s := range ShareStrategies {
		known[i] = string(s)
	}
	v.errf(key, "unknown shared_subscription_strategy %q%s (want %q, %q, %q, %q or %q)", st, suggest(string(st), known),
		ShareRoundRobin, ShareRandom, ShareSticky, ShareHashClientID, ShareHashTopic)
}

// queuePolicies checks the `queue` or `dsub` (what) policy blocks of the host at k.
func (v *validator) queuePolicies(k, what string, policies []QueuePolicy) {
	patterns := map[string]string{}
	for i := range policies {
		q := &policies[i]
		qk := k + "." + what + "." + strconv.Itoa(i)
		v.policyPattern(qk, what, q.Pattern, patterns)
		if q.NakLimit < 0 {
			v.errf(qk+".nak_limit", "nak_limit must not be negative (0 means unlimited)")
		}
		if q.DLQ != "" {
			// "*" stands for the queue's own name; what is left must be a plain queue name.
			if err := CheckPattern(strings.ReplaceAll(q.DLQ, "*", "x"), false); err != nil || strings.Contains(q.DLQ, "{") {
				v.errf(qk+".dlq", "invalid dlq %q: want a queue name such as \"dlq.*\" (\"*\" is the queue's name)", q.DLQ)
			}
		}
		if q.QuotaMessages < 0 {
			v.errf(qk+".quota_messages", "quota_messages must not be negative (0 means the default)")
		}
		switch q.FullPolicy {
		case FullBlock, FullDropHead, FullDropTail:
		default:
			v.errf(qk+".full_policy", "unknown full_policy %q (want \"block\", \"drop_head\" or \"drop_tail\")", q.FullPolicy)
		}
		if q.AutoDeleteAfter < 0 {
			v.errf(qk+".auto_delete_after", "auto_delete_after must not be negative")
		}
	}
}

func (v *validator) policyPattern(k, what, p string, seen map[string]string) {
	if err := CheckPattern(p, false); err != nil {
		v.errf(k+".pattern", "invalid %s pattern %q: %v", what, p, err)
		return
	}
	if first, dup := seen[p]; dup {
		v.errf(k+".pattern", "duplicate %s pattern %q (first at %s); the first matching block wins, so this one never applies", what, p, v.where(first))
		return
	}
	seen[p] = k + ".pattern"
}

// usersFile checks that a users file exists and decodes. Its own problems are reported at the
// users_file attribute, each naming the users file's line, so every position stays in the config file.
func (v *validator) usersFile(k, path string) {
	if path == "" {
		v.errf(k, "users_file must not be empty")
		return
	}
	src, err := os.ReadFile(path)
	if err != nil {
		v.errf(k, "users_file: %v", err)
		return
	}
	if _, errs := parseUsers(src, path); len(errs) > 0 {
		for _, e := range errs {
			v.errf(k, "users_file: %s", e.Error.Error())
		}
	}
}

// fileExists checks one file named in a tls block.
func (v *validator) fileExists(k, attr, path string) {
	if path == "" {
		v.errf(k, "%s is required", attr)
		return
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		v.errf(k+"."+attr, "%s: %v", attr, err)
	case st.IsDir():
		v.errf(k+"."+attr, "%s: %s is a directory", attr, path)
	}
}

// http checks a connector's http block: only where the connector serves HTTP, with paths and origins a
// request can match.
func (v *validator) http(k string, cn *Connector) {
	if cn.Management && !cn.ServesHTTP() {
		v.errf(k+".management", "management on connector %q, which serves no HTTP: bind http:// (or https://), or add \"http\" to detect", cn.Name)
	}
	h := cn.HTTP
	if h == nil {
		return
	}
	hk := k + ".http"
	if !cn.ServesHTTP() {
		v.errf(hk, "http block on connector %q, which neither binds ws://, wss://, http:// or https:// nor lists \"http\" in detect", cn.Name)
	}
	for _, p := range []struct{ name, path string }{{"mqtt_path", h.MQTTPath}, {"stomp_path", h.STOMPPath}} {
		if !strings.HasPrefix(p.path, "/") || strings.ContainsAny(p.path, "?# ") {
			v.errf(hk+"."+p.name, "%s must be a URL path starting with \"/\", not %q", p.name, p.path)
		}
	}
	if h.MQTTPath == h.STOMPPath {
		v.errf(hk+".stomp_path", "mqtt_path and stomp_path are both %q", h.MQTTPath)
	}
	if h.MaxHeaderBytes < 1<<10 {
		v.errf(hk+".max_header_bytes", "max_header_bytes must be at least 1KB, not %d", h.MaxHeaderBytes)
	}
	if h.UpgradeTimeout <= 0 {
		v.errf(hk+".upgrade_timeout", "upgrade_timeout must be positive")
	}
	for j, o := range h.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			v.errf(hk+".allowed_origins."+strconv.Itoa(j), "allowed origin %q: want \"*\" or scheme://host[:port], e.g. \"https://app.example.com\"", o)
		}
	}
}

func (v *validator) tls(k string, cn *Connector) {
	wantTLS := cn.BindsTLS() || cn.DetectsTLS()
	t := cn.TLS
	switch {
	case t == nil && cn.BindsTLS():
		v.errf(k+".bind", "a %s:// connector needs a tls { cert_file = ... key_file = ... } block", cn.scheme())
		return
	case t == nil && cn.DetectsTLS():
		v.errf(k+".detect", "detecting \"tls\" needs a tls { cert_file = ... key_file = ... } block")
		return
	case t == nil:
		return
	case !wantTLS:
		v.errf(k+".tls", "tls block on connector %q, which neither binds tls:// or wss:// nor lists \"tls\" in detect", cn.Name)
	}
	tk := k + ".tls"
	v.fileExists(tk, "cert_file", t.CertFile)
	v.fileExists(tk, "key_file", t.KeyFile)
	if _, set := v.c.pos[tk+".client_ca_file"]; t.ClientCAFile != "" || set {
		v.fileExists(tk, "client_ca_file", t.ClientCAFile)
	}
	switch t.ClientAuth {
	case "none":
	case "request", "require":
		if t.ClientCAFile == "" {
			v.errf(tk+".client_auth", "client_auth = %q needs client_ca_file to verify client certificates", t.ClientAuth)
		}
	default:
		v.errf(tk+".client_auth", "unknown client_auth %q (want \"none\", \"request\" or \"require\")", t.ClientAuth)
	}
	switch t.MinVersion {
	case "1.2", "1.3":
	default:
		v.errf(tk+".min_version", "unsupported min_version %q (want \"1.2\" or \"1.3\")", t.MinVersion)
	}
	switch t.CertIdentity {
	case "":
	case "cn", "dn":
		if t.ClientAuth == "none" {
			v.errf(tk+".cert_identity", "cert_identity = %q needs client_auth = \"request\" or \"require\"", t.CertIdentity)
		}
	default:
		v.errf(tk+".cert_identity", "unknown cert_identity %q (want \"cn\" or \"dn\")", t.CertIdentity)
	}
	v.certIdentityHosts(tk, cn)
}

// certIdentityHosts checks a tls block's cert_identity_hosts: only with cert_identity, each "*" or the
// name of a virtual host. Left out, it becomes the connector's virtual_host, else the first host (a
// certificate proves a name to the CA's tenant, not to every tenant of the broker).
func (v *validator) certIdentityHosts(tk string, cn *Connector) {
	t := cn.TLS
	if _, set := v.c.pos[tk+".cert_identity_hosts"]; set && t.CertIdentity == "" {
		v.errf(tk+".cert_identity_hosts", "cert_identity_hosts without cert_identity: certificates are no identities here")
		return
	}
	for j, name := range t.CertIdentityHosts {
		if name != "*" && v.c.Host(name) == nil {
			v.errf(tk+".cert_identity_hosts."+strconv.Itoa(j), "cert_identity_hosts entry %q names no virtual host", name)
		}
	}
	if t.CertIdentity != "" && len(t.CertIdentityHosts) == 0 {
		if h := v.c.HostFor(cn); h != nil {
			t.CertIdentityHosts = []string{h.Name}
		}
	}
}
