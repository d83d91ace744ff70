package virtualhost

import (
	"strings"

	"github.com/lyremq/lyre/conf"
)

// claims says which client ids each principal of a host claims (see the package doc, "Client ids"): the
// patterns of its users file entry, of the group blocks of its groups, and the host's own client_ids. It
// is immutable, part of a host's settings.
type claims struct {
	host   []idPattern
	users  map[string][]idPattern
	groups map[string][]idPattern
}

// idPattern is a compiled client_ids pattern: the pieces between its "*"s, in each of which "%u" stands
// for the user name. It is split on "*" before "%u" is replaced, so a "*" in a user name stays a
// character.
type idPattern []string

func compileIDPatterns(ps []string) []idPattern {
	var out []idPattern
	for _, p := range ps {
		out = append(out, strings.Split(p, "*"))
	}
	return out
}

// newClaims compiles the client id patterns of a users file (nil: none) and of the host.
func newClaims(f *conf.UsersFile, host []string) *claims {
	c := &claims{host: compileIDPatterns(host), users: map[string][]idPattern{}, groups: map[string][]idPattern{}}
	if f == nil {
		return c
	}
	for _, u := range f.Users {
		if len(u.ClientIDs) > 0 {
			c.users[u.Name] = compileIDPatterns(u.ClientIDs)
		}
	}
	for _, g := range f.Groups {
		if len(g.ClientIDs) > 0 {
			c.groups[g.Name] = compileIDPatterns(g.ClientIDs)
		}
	}
	return c
}

// claimed reports whether p claims client id: some pattern of its user, of one of its groups or of the
// host matches it whole. Patterns holding "%u" apply only to a proven user name; the host's other
// patterns apply to anyone, anonymous clients included.
func (c *claims) claimed(p Principal, id string) bool {
	user := ""
	if p.Authenticated {
		user = p.User
	}
	if matchAny(c.host, id, user) {
		return true
	}
	if user == "" {
		return false
	}
	if matchAny(c.users[user], id, user) {
		return true
	}
	for _, g := range p.Groups {
		if matchAny(c.groups[g], id, user) {
			return true
		}
	}
	return false
}

func matchAny(ps []idPattern, id, user string) bool {
	for _, p := range ps {
		if p.match(id, user) {
			return true
		}
	}
	return false
}

// match reports whether the pattern matches id whole, user filling "%u" ("" makes a pattern holding it
// match nothing). The first piece must start id, the last end it, the others are found left to right,
// each at its first place: the time is linear in len(id) for each piece, with no backtracking.
func (p idPattern) match(id, user string) bool {
	piece := func(s string) (string, bool) {
		if !strings.Contains(s, "%u") {
			return s, true
		}
		return strings.ReplaceAll(s, "%u", user), user != ""
	}
	first, ok := piece(p[0])
	if !ok || !strings.HasPrefix(id, first) {
		return false
	}
	if len(p) == 1 {
		return id == first
	}
	rest := id[len(first):]
	last, ok := piece(p[len(p)-1])
	if !ok || len(last) > len(rest) || !strings.HasSuffix(rest, last) {
		return false
	}
	rest = rest[:len(rest)-len(last)]
	for _, s := range p[1 : len(p)-1] {
		mid, ok := piece(s)
		if !ok {
			return false
		}
		i := strings.Index(rest, mid)
		if i < 0 {
			return false
		}
		rest = rest[i+len(mid):]
	}
	return true
}
