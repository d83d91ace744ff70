package virtualhost

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

// maxPatternCache bounds the per-host cache of patterns compiled after %u/%c substitution; when it is
// full the cache is emptied and refills with what is in use.
const maxPatternCache = 4096

// patternGrammar parses access rule ids and policy patterns: the STOMP grammar with no prefixes.
var patternGrammar = func() *router.Grammar {
	c := router.STOMPGrammarConfig()
	c.QueuePrefix, c.TopicPrefix, c.DsubPrefix, c.TempQueuePrefix, c.TempTopicPrefix = "", "", "", "", ""
	c.DestinationSeparator = ""
	c.RequirePrefix = false
	g, err := router.NewGrammar(c)
	if err != nil {
		panic("virtualhost: pattern grammar: " + err.Error())
	}
	return g
}()

// ParsePattern parses a pattern in the STOMP default grammar without prefix into filter segments.
func ParsePattern(p string) ([]router.Seg, error) {
	f, err := patternGrammar.ParseFilter(p)
	if err != nil {
		return nil, err
	}
	return f.Segs, nil
}

// PatternGrammar returns the grammar of access rule ids and policy patterns, the STOMP default grammar
// without prefixes, in which the management API names destinations too. It is immutable.
func PatternGrammar() *router.Grammar { return patternGrammar }

type accessRule struct {
	allow   bool
	who     []principalRef
	actions []string // nil = every action
	kind    string   // "" = every kind
	id      string   // "" = every id
	static  []router.Seg
	dynamic bool // id holds %u or %c
}

// principalRef is one entry of a rule's allow or deny list: "*", "+", or a name, which stands for a user
// unless it is a group of the host's users file (listed in some user's groups, or declared by a group
// block). conf refuses a user named like a group it is not in, so a certificate or an enhanced method
// naming a user "admins" is not taken for the group admins.
type principalRef struct {
	name  string
	group bool
}

// rules is a compiled, ordered access rule list with its substitution cache.
type rules struct {
	list   []accessRule
	claims *claims // which client ids each principal claims, for "%c"
	mu     sync.Mutex
	// compiled caches patterns after %u/%c substitution, keyed by the substituted text.
	compiled map[string][]router.Seg
}

// groupNames returns the groups of a users file (nil: none): those its users list and its group blocks.
func groupNames(f *conf.UsersFile) map[string]bool {
	set := map[string]bool{}
	if f == nil {
		return set
	}
	for _, g := range f.Groups {
		set[g.Name] = true
	}
	for _, u := range f.Users {
		for _, g := range u.Groups {
			set[g] = true
		}
	}
	return set
}

func compileRules(groups map[string]bool, cl *claims, confRules ...[]conf.AccessRule) (*rules, error) {
	rs := &rules{compiled: make(map[string][]router.Seg), claims: cl}
	for _, list := range confRules {
		for _, c := range list {
			r := accessRule{allow: c.Allow != nil, actions: c.Actions, kind: c.Kind, id: c.ID}
			names := c.Allow
			if !r.allow {
				names = c.Deny
			}
			for _, n := range names {
				r.who = append(r.who, principalRef{name: n, group: groups[n]})
			}
			if r.kind == "*" {
				r.kind = ""
			}
			r.dynamic = strings.Contains(c.ID, "%u") || strings.Contains(c.ID, "%c")
			if c.ID != "" && !r.dynamic {
				segs, err := ParsePattern(c.ID)
				if err != nil {
					return nil, fmt.Errorf("virtualhost: access rule id: %w", err)
				}
				r.static = segs
			}
			rs.list = append(rs.list, r)
		}
	}
	return rs, nil
}

// Action is what an access rule allows or denies (conf.AccessRule.Actions).
type Action string

// Access rule actions.
const (
	ActionConnect Action = "connect" // log in to a virtual host (or through a connector)
	ActionSend    Action = "send"    // publish to a topic or queue
	ActionReceive Action = "receive" // subscribe to a topic
	ActionConsume Action = "consume" // take messages from a queue or durable subscription
	ActionCreate  Action = "create"  // create a durable subscription
	ActionDestroy Action = "destroy" // destroy a durable subscription
	ActionAdmin   Action = "admin"
	ActionMonitor Action = "monitor"
)

// Object is the kind of thing an access rule is about (conf.AccessRule.Kind).
type Object string

// Access rule object kinds.
const (
	ObjectConnector   Object = "connector"
	ObjectVirtualHost Object = "virtual_host"
	// ObjectBroker is the broker as a whole: monitor reads broker-wide views (metrics, every connection),
	// admin changes them (reload). Checked with id "broker".
	ObjectBroker Object = "broker"
	ObjectTopic  Object = "topic"
	ObjectQueue  Object = "queue"
	ObjectDsub   Object = "dsub"
	// ObjectTempQueue and ObjectTempTopic are temporary destinations, matched by their name without the
	// owner's session (RulePath).
	ObjectTempQueue Object = "temp_queue"
	ObjectTempTopic Object = "temp_topic"
)

// Authorize reports whether p may perform action on the destination or object of kind obj at path
// (canonical segments; [name] for a connector or host). clientID fills "%c" in rule ids. A denial is
// counted (Counters.AccessDenied).
func (h *Host) Authorize(p Principal, action Action, obj Object, path []string, clientID string) bool {
	if !reservedForBroker(action, obj, path) && h.cur.Load().rules.authorize(p, action, obj, path, clientID) {
		return true
	}
	h.accessDenied.Add(1)
	return false
}

// SysRoot is the first level of the broker's own status topics ($SYS/broker/..., published by management).
const SysRoot = "$SYS"

// reservedForBroker reports a send no rule may allow: to a topic under $SYS, whose values only the broker
// publishes. "The Server SHOULD prevent Clients from using such Topic Names to exchange messages with
// other Clients" [MQTT 3.1.1 §4.7.2]; mosquitto refuses it too. Reading them is left to the rules.
func reservedForBroker(action Action, obj Object, path []string) bool {
	return action == ActionSend && obj == ObjectTopic && len(path) > 0 && path[0] == SysRoot
}

// authorize is Authorize under one rule set, without counting: the connect permission and gates count
// their own denials.
func (rs *rules) authorize(p Principal, action Action, obj Object, path []string, clientID string) bool {
	if len(rs.list) == 0 {
		return true
	}
	for i := range rs.list {
		r := &rs.list[i]
		if !r.applies(p, action, obj) {
			continue
		}
		if r.id != "" && !rs.matchID(r, p, clientID, path) {
			continue
		}
		return r.allow
	}
	return false
}

// applies reports whether the rule is about action on obj and names p.
func (r *accessRule) applies(p Principal, action Action, obj Object) bool {
	return (r.actions == nil || slices.Contains(r.actions, string(action))) && (r.kind == "" || r.kind == string(obj)) && r.covers(p)
}

// covers reports whether the rule's user and group list names p: by one of p's groups (which only the
// users file gives), or by p's user name when the entry is no group of the host.
func (r *accessRule) covers(p Principal) bool {
	for _, w := range r.who {
		switch {
		case w.name == "*":
			return true
		case !p.Authenticated:
		case w.name == "+", slices.Contains(p.Groups, w.name), !w.group && w.name == p.User:
			return true
		}
	}
	return false
}

func (rs *rules) matchID(r *accessRule, p Principal, clientID string, path []string) bool {
	segs, ok := rs.pattern(r, p, clientID)
	return ok && router.MatchSegments(segs, path)
}

// pattern returns the rule's id pattern for p and clientID, substituting %u and %c; ok is false when the
// rule cannot apply (a placeholder p or clientID cannot fill).
func (rs *rules) pattern(r *accessRule, p Principal, clientID string) ([]router.Seg, bool) {
	if !r.dynamic {
		return r.static, true
	}
	id := r.id
	if strings.Contains(id, "%u") {
		if !p.Authenticated || p.User == "" {
			return nil, false
		}
		id = strings.ReplaceAll(id, "%u", patternGrammar.Render(router.Destination{Path: []string{p.User}}))
	}
	if strings.Contains(id, "%c") {
		if clientID == "" || !rs.claims.claimed(p, clientID) {
			return nil, false // a client id anyone may pick is no identity (see the package doc)
		}
		id = strings.ReplaceAll(id, "%c", patternGrammar.Render(router.Destination{Path: []string{clientID}}))
	}
	rs.mu.Lock()
	segs, ok := rs.compiled[id]
	rs.mu.Unlock()
	if !ok {
		var err error
		if segs, err = ParsePattern(id); err != nil {
			segs = nil // a substituted value that cannot form a pattern matches nothing
		}
		rs.mu.Lock()
		if len(rs.compiled) >= maxPatternCache {
			clear(rs.compiled)
		}
		rs.compiled[id] = segs
		rs.mu.Unlock()
	}
	return segs, segs != nil
}

// AuthorizeFilter decides a subscription filter (canonical segments, possibly with wildcards) against
// the rules: some reports whether at least one destination the filter matches may be allowed, all
// whether every one is. A front-end refuses a subscription when !some, and when !all filters each
// delivery through a Gate. The answer is conservative in one direction only: some may be true for a
// filter that in fact reaches nothing allowed (regex levels are not compared), never false for one that
// does; all is true only when certain. A filter that allows nothing is counted as a denial
// (Counters.AccessDenied); one allowed in part is not.
func (h *Host) AuthorizeFilter(p Principal, action Action, obj Object, filter []router.Seg, clientID string) (some, all bool) {
	some, all = h.authorizeFilter(p, action, obj, filter, clientID)
	if !some {
		h.accessDenied.Add(1)
	}
	return some, all
}

func (h *Host) authorizeFilter(p Principal, action Action, obj Object, filter []router.Seg, clientID string) (some, all bool) {
	rs := h.cur.Load().rules
	if len(rs.list) == 0 {
		return true, true
	}
	partialDeny := false // an earlier deny rule took some of the filter's destinations
	for i := range rs.list {
		r := &rs.list[i]
		if !r.applies(p, action, obj) {
			continue
		}
		var pat []router.Seg
		if r.id != "" {
			var ok bool
			if pat, ok = rs.pattern(r, p, clientID); !ok {
				continue
			}
			if !intersects(pat, filter) {
				continue
			}
		}
		whole := r.id == "" || subsumes(pat, filter)
		switch {
		case r.allow && whole:
			return true, !partialDeny
		case r.allow:
			some = true
		case whole:
			return some, false
		default:
			partialDeny = true
		}
	}
	return some, false
}

// isDollar reports whether a first-level literal names a '$' topic, which wildcards at the first level do
// not match [MQTT-4.7.2-1].
func isDollar(i int, s router.Seg) bool {
	return i == 0 && s.Kind == router.SegLiteral && strings.HasPrefix(s.Text, "$")
}

// subsumes reports whether every path filter f matches is matched by pattern p. It answers false when
// unsure (regex levels other than identical ones).
func subsumes(p, f []router.Seg) bool {
	for i, ps := range p {
		if i < len(f) && ps.Kind != router.SegLiteral && isDollar(i, f[i]) {
			return false
		}
		if ps.Kind == router.SegMany {
			return true
		}
		if i >= len(f) {
			return false
		}
		fs := f[i]
		switch fs.Kind {
		case router.SegMany:
			return false
		case router.SegOne:
			if ps.Kind != router.SegOne {
				return false
			}
		case router.SegRegex:
			if ps.Kind != router.SegOne && !(ps.Kind == router.SegRegex && ps.Text == fs.Text) {
				return false
			}
		case router.SegLiteral:
			switch ps.Kind {
			case router.SegLiteral:
				if ps.Text != fs.Text {
					return false
				}
			case router.SegRegex:
				if !ps.Re.MatchString(fs.Text) {
					return false
				}
			}
		}
	}
	return len(p) == len(f)
}

// intersects reports whether some path is matched by both pattern p and filter f. It answers true when
// unsure (two regex levels, a regex against a one-level wildcard).
func intersects(p, f []router.Seg) bool {
	for i := 0; ; i++ {
		switch {
		case i == len(p) && i == len(f):
			return true
		case i == len(p):
			return f[i].Kind == router.SegMany && i > 0 // "a.**" also matches "a"
		case i == len(f):
			return p[i].Kind == router.SegMany && i > 0
		}
		ps, fs := p[i], f[i]
		if isDollar(i, fs) && ps.Kind != router.SegLiteral || isDollar(i, ps) && fs.Kind != router.SegLiteral {
			return false // [MQTT-4.7.2-1]
		}
		if ps.Kind == router.SegMany || fs.Kind == router.SegMany {
			return true
		}
		switch {
		case ps.Kind == router.SegLiteral && fs.Kind == router.SegLiteral:
			if ps.Text != fs.Text {
				return false
			}
		case ps.Kind == router.SegLiteral && fs.Kind == router.SegRegex:
			if !fs.Re.MatchString(ps.Text) {
				return false
			}
		case fs.Kind == router.SegLiteral && ps.Kind == router.SegRegex:
			if !ps.Re.MatchString(fs.Text) {
				return false
			}
		}
	}
}

// ObjectOf names a router kind for access rules: every kind of destination has one, temporary ones
// included (ObjectTempQueue, ObjectTempTopic). ok is false for a kind rules do not know.
func ObjectOf(k router.Kind) (obj Object, ok bool) {
	switch k {
	case router.Topic:
		return ObjectTopic, true
	case router.Queue:
		return ObjectQueue, true
	case router.DurableSub:
		return ObjectDsub, true
	case router.TempQueue:
		return ObjectTempQueue, true
	case router.TempTopic:
		return ObjectTempTopic, true
	}
	return "", false
}

// RulePath is the path access rules match for a destination of kind k at path: path itself, except for
// a temporary destination, whose first level is its owner's session id (unguessable, different on each
// connection): rules see the name after it, as its owner wrote it ("replies" for /temp-queue/replies).
func RulePath[S any](k router.Kind, path []S) []S {
	if (k == router.TempQueue || k == router.TempTopic) && len(path) > 0 {
		return path[1:]
	}
	return path
}

// ReadAction is the action that reading from a destination of kind k needs: receive for a topic, consume
// for a queue, a temporary queue or a durable subscription (their messages are taken, not copied). One
// rule for every front-end.
func ReadAction(k router.Kind) Action {
	if k == router.Queue || k == router.TempQueue || k == router.DurableSub {
		return ActionConsume
	}
	return ActionReceive
}

// maxGateCache bounds the per-subscription cache of decisions by topic; past it decisions are computed
// each time without being stored.
const maxGateCache = 256

// Gate remembers, for one wildcard subscription, which topics its subscriber may receive, so that a
// wildcard never delivers a message from a topic the subscriber may not read. It is safe for concurrent
// use (Deliver runs on publishers' goroutines). A nil *Gate allows everything. A gate follows its host's
// access rules: the decisions it remembers were made under one rule set, and are forgotten when a reload
// replaces it.
type Gate struct {
	h        *Host
	p        Principal
	clientID string
	action   Action
	obj      Object
	mu       sync.Mutex
	rules    *rules // the rule set seen's decisions were made under
	seen     map[string]bool
}

// Gate returns a gate deciding action on destinations of kind for p, or nil when this host has no access
// rules (everything is allowed).
func (h *Host) Gate(p Principal, action Action, obj Object, clientID string) *Gate {
	rs := h.cur.Load().rules
	if len(rs.list) == 0 {
		return nil
	}
	return &Gate{h: h, p: p, clientID: clientID, action: action, obj: obj, rules: rs, seen: make(map[string]bool)}
}

// Allows reports whether the gate's subscriber may receive from path. A refusal is counted
// (Counters.GateDenied), once per call: a message withheld.
func (g *Gate) Allows(path []string) bool {
	if g.allows(path) {
		return true
	}
	g.h.gateDenied.Add(1)
	return false
}

func (g *Gate) allows(path []string) bool {
	if g == nil {
		return true
	}
	if (g.obj == ObjectTempQueue || g.obj == ObjectTempTopic) && len(path) > 0 {
		path = path[1:] // RulePath: the owner's session is not part of the name
	}
	rs := g.h.cur.Load().rules
	// The router's key, never a join: a segment may hold any byte, so "a\x00b" and ["a" "b"] must differ.
	var kb [128]byte
	key := router.AppendKey(kb[:0], router.Destination{Path: path})
	g.mu.Lock()
	if g.rules != rs {
		clear(g.seen) // made under rules a reload replaced
		g.rules = rs
	}
	ok, hit := g.seen[string(key)]
	g.mu.Unlock()
	if hit {
		return ok
	}
	ok = rs.authorize(g.p, g.action, g.obj, path, g.clientID)
	g.mu.Lock()
	if g.rules == rs && len(g.seen) < maxGateCache {
		g.seen[string(key)] = ok
	}
	g.mu.Unlock()
	return ok
}

// GatedSink is the sink of a wildcard subscription that reaches forbidden topics too: the router asks
// Accepts (router.Acceptor) before each delivery, so Sink gets only what Gate allows, and a message Gate
// refuses counts neither as delivered nor as dropped. In a shared group the message goes to another
// member instead. Deliver itself does not filter: the router never calls it with a refused message.
type GatedSink struct {
	Sink router.Sink
	Gate *Gate
}

// Accepts implements router.Acceptor.
func (g GatedSink) Accepts(m *router.Message) bool { return g.Gate.Allows(m.Dest.Path) }

// Deliver implements router.Sink.
func (g GatedSink) Deliver(d router.Delivery) bool { return g.Sink.Deliver(d) }

// SinkFor returns the sink of a new subscription or queue consumer: sink itself when gate is nil, else
// sink behind gate (a GatedSink).
func SinkFor(sink router.Sink, gate *Gate) router.Sink {
	if gate == nil {
		return sink
	}
	return GatedSink{Sink: sink, Gate: gate}
}

// AllowedRetained keeps the retained messages a subscription's sink may receive. Front-ends send retained
// messages directly rather than through the router, so the sink's gate (any router.Acceptor) must be
// applied to them here. msgs is filtered in place.
func AllowedRetained(sink router.Sink, msgs []*router.Message) []*router.Message {
	a, ok := sink.(router.Acceptor)
	if !ok {
		return msgs
	}
	kept := msgs[:0]
	for _, m := range msgs {
		if a.Accepts(m) {
			kept = append(kept, m)
		}
	}
	return kept
}

// Interface guards.
var (
	_ router.Sink     = GatedSink{}
	_ router.Acceptor = GatedSink{}
)
