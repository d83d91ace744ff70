package virtualhost_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

var (
	alice = virtualhost.Principal{User: "alice", Groups: []string{"admins", "devices"}, Authenticated: true}
	bob   = virtualhost.Principal{User: "bob", Authenticated: true}
	anon  = virtualhost.Principal{}
	// claimed is a user name given on an anonymous host without users: not proven.
	claimed = virtualhost.Principal{User: "alice"}
)

func path(s string) []string { return strings.Split(s, ".") }

func TestAuthorize(t *testing.T) {
	broker := []conf.AccessRule{
		{Deny: []string{"*"}, Kind: "topic", ID: "forbidden.**"},
	}
	h := open(t, conf.VirtualHost{Name: "h", AccessRules: []conf.AccessRule{
		{Allow: []string{"*"}, Actions: []string{"connect"}},
		{Allow: []string{"admins"}, Kind: "topic", ID: "$SYS.**"},
		{Deny: []string{"bob"}, Actions: []string{"send"}, Kind: "topic", ID: "orders.**"},
		{Allow: []string{"+"}, Actions: []string{"send", "receive"}, Kind: "topic", ID: "orders.**"},
		{Allow: []string{"+"}, Kind: "topic", ID: "users.%u.**"},
		{Allow: []string{"*"}, Actions: []string{"send", "receive"}, Kind: "topic", ID: "devices.%c.**"},
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "public.*"},
		{Allow: []string{"devices"}, Kind: "queue", ID: "jobs.{[a-z]+}"},
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "**"},
	}, ClientIDs: []string{"*"}}, virtualhost.WithBrokerRules(broker)) // any client id is its client's (TestClientIDClaims)
	for _, tt := range []struct {
		name     string
		p        virtualhost.Principal
		action   virtualhost.Action
		kind     virtualhost.Object
		path     string
		clientID string
		want     bool
	}{
		{"connect allowed to anyone", anon, "connect", "virtual_host", "h", "", true},
		{"allow by group", alice, "send", "topic", "orders.new", "c", true},
		{"allow by + (any authenticated)", bob, "receive", "topic", "orders.new", "c", true},
		{"deny by name, first match wins over a later allow", bob, "send", "topic", "orders.new", "c", false},
		{"+ does not cover anonymous", anon, "send", "topic", "orders.new", "c", false},
		{"+ does not cover a claimed, unproven name", claimed, "send", "topic", "orders.new", "c", false},
		{"broker rules come first", alice, "receive", "topic", "forbidden.x", "c", false},
		{"no matching rule denies", alice, "send", "topic", "elsewhere", "c", false},
		{"action outside the rule's list falls through to default deny", alice, "destroy", "topic", "orders.new", "c", false},
		{"%u: own subtree", bob, "send", "topic", "users.bob.inbox", "c", true},
		{"%u: another user's subtree", bob, "send", "topic", "users.alice.inbox", "c", false},
		{"%u: anonymous has no user", anon, "send", "topic", "users..inbox", "c", false},
		{"%c: own client id", anon, "send", "topic", "devices.dev1.temp", "dev1", true},
		{"%c: another client's id", anon, "send", "topic", "devices.dev2.temp", "dev1", false},
		{"%c: empty client id matches nothing", anon, "send", "topic", "devices..temp", "", false},
		{"%c: a client id with a dot stays one level", anon, "send", "topic", "devices.a.b.temp", "a.b", false},
		{"%c: a wildcard client id is literal", anon, "send", "topic", "devices.dev9.temp", "*", false},
		{"%c: a ** client id is literal", anon, "send", "topic", "devices.dev9.temp", "**", false},
		{"* at the first level skips $ topics", anon, "receive", "topic", "$SYS.broker.load", "c", false},
		{"$SYS granted by name", alice, "receive", "topic", "$SYS.broker.load", "c", true},
		{"catch-all receive", anon, "receive", "topic", "weather.paris", "c", true},
		{"catch-all receive does not grant send", anon, "send", "topic", "weather.paris", "c", false},
		{"kind must match: queue rule", alice, "consume", "queue", "jobs.print", "c", true},
		{"regex level", alice, "consume", "queue", "jobs.Print1", "c", false},
		{"kind must match: topic rules do not cover queues", anon, "receive", "queue", "weather.paris", "c", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := path(tt.path)
			if got := h.Authorize(tt.p, tt.action, tt.kind, p, tt.clientID); got != tt.want {
				t.Errorf("Authorize(%+v, %s, %s, %q, %q) = %v, want %v", tt.p, tt.action, tt.kind, p, tt.clientID, got, tt.want)
			}
		})
	}
}

func TestNoRulesAllowEverything(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h"})
	if !h.Authorize(anon, "send", "topic", []string{"x"}, "") || h.Gate(anon, "receive", "topic", "") != nil {
		t.Error("a host without access rules must allow everything")
	}
	var g *virtualhost.Gate
	if !g.Allows([]string{"a"}) {
		t.Error("nil gate refused")
	}
}

// A wildcard subscription's gate filters the topics it may deliver, and caches each decision.
func TestGateFiltersWildcardSubscriptions(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", AccessRules: []conf.AccessRule{
		{Deny: []string{"*"}, Kind: "topic", ID: "sensors.secret.**"},
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "sensors.**"},
	}})
	g := h.Gate(anon, "receive", "topic", "c1")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if !g.Allows([]string{"sensors", "k1", "temp"}) || g.Allows([]string{"sensors", "secret", "door"}) || g.Allows([]string{"other"}) {
					t.Error("gate decision wrong")
					return
				}
			}
		}()
	}
	wg.Wait()
	// Beyond the cache bound decisions stay correct.
	for i := range 1000 {
		if g.Allows([]string{"sensors", "secret", string(rune('a' + i%26)), "x"}) {
			t.Fatal("secret topic allowed")
		}
	}
}

func TestObjectOf(t *testing.T) {
	for k, want := range map[router.Kind]virtualhost.Object{router.Topic: "topic", router.Queue: "queue", router.DurableSub: "dsub",
		router.TempQueue: "temp_queue", router.TempTopic: "temp_topic"} {
		if got, ok := virtualhost.ObjectOf(k); !ok || got != want {
			t.Errorf("ObjectOf(%v) = %q, %v", k, got, ok)
		}
	}
	// One rule for both front-ends: reading a queue, a temporary queue or a durable subscription takes
	// its messages.
	for k, want := range map[router.Kind]virtualhost.Action{router.Topic: "receive", router.TempTopic: "receive",
		router.Queue: "consume", router.DurableSub: "consume", router.TempQueue: "consume"} {
		if got := virtualhost.ReadAction(k); got != want {
			t.Errorf("ReadAction(%v) = %q, want %q", k, got, want)
		}
	}
	// Rules see a temporary destination's name without its owner's session.
	if got := virtualhost.RulePath(router.TempQueue, []string{"lyre-x", "replies"}); len(got) != 1 || got[0] != "replies" {
		t.Errorf("RulePath(temp queue) = %q", got)
	}
	if got := virtualhost.RulePath(router.Queue, []string{"lyre-x", "replies"}); len(got) != 2 {
		t.Errorf("RulePath(queue) = %q", got)
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tt := range []struct {
		pattern, path string
		want          bool
	}{
		{"a.**", "a", true},
		{"a.**", "a.b.c", true},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.*", "a", false},
		{"**", "$SYS.x", false},
		{"*.x", "$SYS.x", false},
		{"$SYS.**", "$SYS.x", true},
		{"a.{b+}.c", "a.bbb.c", true},
		{"a.{b+}.c", "a.bc.c", false},
		{"a%2Eb", "a.b", false},
	} {
		segs, err := virtualhost.ParsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.pattern, err)
		}
		if got := router.MatchSegments(segs, path(tt.path)); got != tt.want {
			t.Errorf("MatchSegments(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
	// A client id holding the separator is one level: it reaches its own level only.
	h := open(t, conf.VirtualHost{Name: "h", AccessRules: []conf.AccessRule{{Allow: []string{"*"}, ID: "devices.%c.**"}}, ClientIDs: []string{"*"}})
	if !h.Authorize(anon, "send", "topic", []string{"devices", "a.b", "temp"}, "a.b") {
		t.Error("a client id with a dot did not match its own level")
	}
	segs, _ := virtualhost.ParsePattern("a%2Eb")
	if !router.MatchSegments(segs, []string{"a.b"}) {
		t.Error("an escaped dot is one level")
	}
}

func TestAuthorizeFilter(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", AccessRules: []conf.AccessRule{
		{Deny: []string{"*"}, Kind: "topic", ID: "sensors.secret.**"},
		{Allow: []string{"admins"}, Kind: "topic", ID: "$SYS.**"},
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "sensors.**"},
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "devices.%c.**"},
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "weather.{[a-z]+}.temp"},
	}, ClientIDs: []string{"*"}})
	mqtt, err := router.NewGrammar(router.MQTTGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		filter    string
		p         virtualhost.Principal
		clientID  string
		some, all bool
	}{
		{"sensors/k1/temp", anon, "c", true, true},
		{"sensors/+/temp", anon, "c", true, false}, // sensors/secret/temp is denied
		{"sensors/#", anon, "c", true, false},
		{"sensors/secret/#", anon, "c", false, false},
		{"sensors/secret/door", anon, "c", false, false},
		{"sensors/public/#", anon, "c", true, true},
		{"#", anon, "c", true, false},
		{"+/k1/temp", anon, "c", true, false},
		{"$SYS/#", anon, "c", false, false},
		{"$SYS/#", alice, "c", true, true},
		{"devices/c1/#", anon, "c1", true, true},
		{"devices/c2/#", anon, "c1", false, false},
		{"devices/+/temp", anon, "c1", true, false},
		{"weather/paris/temp", anon, "c", true, true},
		{"weather/Paris/temp", anon, "c", false, false},
		{"weather/+/temp", anon, "c", true, false},
		{"orders/#", anon, "c", false, false},
	} {
		f, err := mqtt.ParseFilter(tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		some, all := h.AuthorizeFilter(tt.p, "receive", "topic", f.Segs, tt.clientID)
		if some != tt.some || all != tt.all {
			t.Errorf("AuthorizeFilter(%q, %s) = %v, %v; want %v, %v", tt.filter, tt.p.User, some, all, tt.some, tt.all)
		}
	}
}

// recordSink records the bodies delivered to it.
type recordSink struct {
	mu     sync.Mutex
	bodies []string
}

func (s *recordSink) Deliver(d router.Delivery) bool {
	s.mu.Lock()
	s.bodies = append(s.bodies, string(d.Msg.Body))
	s.mu.Unlock()
	return true
}

func (s *recordSink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// In a shared group, a member whose gate refuses a message does not swallow it: another member gets it.
func TestGatedGroupMemberIsSkipped(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", AccessRules: []conf.AccessRule{
		{Allow: []string{"alice"}, Actions: []string{"receive"}, Kind: "topic", ID: "sensors.**"},
		{Allow: []string{"bob"}, Actions: []string{"receive"}, Kind: "topic", ID: "sensors.public.**"},
	}})
	segs, err := virtualhost.ParsePattern("sensors.**")
	if err != nil {
		t.Fatal(err)
	}
	f := router.Filter{Kind: router.Topic, Segs: segs}
	// As the front-ends do: a gate only for a subscriber allowed part of its filter.
	sinkFor := func(p virtualhost.Principal, s router.Sink) router.Sink {
		some, all := h.AuthorizeFilter(p, virtualhost.ActionReceive, virtualhost.ObjectTopic, segs, "")
		if !some {
			t.Fatalf("%s may not subscribe", p.User)
		}
		var g *virtualhost.Gate
		if !all {
			g = h.Gate(p, virtualhost.ActionReceive, virtualhost.ObjectTopic, "")
		}
		return virtualhost.SinkFor(s, g)
	}
	a, b := &recordSink{}, &recordSink{}
	sa := &router.Subscription{Filter: f, Sink: sinkFor(alice, a), Share: "g"}
	sb := &router.Subscription{Filter: f, Sink: sinkFor(bob, b), Share: "g"}
	if _, gated := sb.Sink.(virtualhost.GatedSink); !gated {
		t.Fatal("bob's subscription is not gated")
	}
	for _, s := range []*router.Subscription{sb, sa} {
		if err := h.Router.Subscribe(s); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		pr := h.Router.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: path("sensors.secret.door")}, Body: []byte("s")})
		if pr.Delivered != 1 || pr.Dropped != 0 {
			t.Fatalf("secret %d: %+v", i, pr)
		}
	}
	for range 10 {
		h.Router.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: path("sensors.public.x")}, Body: []byte("p")})
	}
	for _, s := range b.got() {
		if s != "p" {
			t.Fatalf("bob got a message he may not receive: %q", b.got())
		}
	}
	if na, nb := len(a.got()), len(b.got()); na != 15 || nb != 5 {
		t.Fatalf("alice got %d, bob %d; want 15 and 5 (all secrets to alice, public ones round-robin)", na, nb)
	}
	// Without alice, a secret reaches no one and is not counted a drop.
	h.Router.Unsubscribe(sa)
	before := h.Router.Stats()
	if pr := h.Router.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: path("sensors.secret.door")}}); pr.Delivered != 0 || pr.Dropped != 0 {
		t.Fatalf("secret, bob alone: %+v", pr)
	}
	if s := h.Router.Stats(); s.Dropped != before.Dropped {
		t.Fatalf("dropped %d -> %d", before.Dropped, s.Dropped)
	}
	// Retained messages go through the same gate.
	msgs := []*router.Message{
		{Dest: router.Destination{Kind: router.Topic, Path: path("sensors.secret.door")}},
		{Dest: router.Destination{Kind: router.Topic, Path: path("sensors.public.x")}},
	}
	if kept := virtualhost.AllowedRetained(sb.Sink, msgs); len(kept) != 1 || kept[0].Dest.Path[1] != "public" {
		t.Fatalf("AllowedRetained kept %d", len(kept))
	}
}

// %c in a rule stands only for a client id the principal claims: by its users file entry, the group
// blocks of its groups, or the host's client_ids ("%u" is the user's proven name, "*" any run of
// characters). Names in allow and deny lists are a group or a user, never both: a user (a certificate
// identity, say) named like a group is not given the group's rules.
func TestClientIDClaims(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.hcl")
	hash := `"$2a$04$KSbLR1x52L4HdjFntm8.NuoQ16xVd4PWGU.SjnZpyNGfov2z2xyei"`
	src := "user \"bob\" {\n  password = " + hash + "\n  client_ids = [\"bob-*\", \"x*y*z\"]\n}\n" +
		"user \"dave\" {\n  password = " + hash + "\n  groups = [\"sensors\"]\n}\n" +
		"user \"st*r\" {\n  password = " + hash + "\n}\n" +
		"group \"sensors\" {\n  client_ids = [\"sensor-%u-*\"]\n}\n" +
		"group \"ops\" {\n}\n"
	if err := os.WriteFile(users, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: users, ClientIDs: []string{"%u", "shared-*"}, AccessRules: []conf.AccessRule{
		{Allow: []string{"ops"}, Kind: "topic", ID: "ops.**"},
		{Allow: []string{"*"}, Kind: "topic", ID: "devices.%c.**"},
	}})
	bob := virtualhost.Principal{User: "bob", Authenticated: true}
	dave := virtualhost.Principal{User: "dave", Groups: []string{"sensors"}, Authenticated: true}
	star := virtualhost.Principal{User: "st*r", Authenticated: true}
	for _, tt := range []struct {
		name     string
		p        virtualhost.Principal
		clientID string
		want     bool
	}{
		{"user pattern", bob, "bob-phone", true},
		{"user pattern, empty tail", bob, "bob-", true},
		{"an id its user does not claim", bob, "dev1", false},
		{"another user's pattern", dave, "bob-phone", false},
		{"several stars", bob, "x1y2z", true},
		{"several stars, in order only", bob, "xzy", false},
		{"stars, suffix must end it", bob, "xyzq", false},
		{"group pattern with %u", dave, "sensor-dave-1", true},
		{"group pattern, another user's name", dave, "sensor-bob-1", false},
		{"host pattern %u", bob, "bob", true},
		{"host pattern for anyone", anon, "shared-9", true},
		{"%u never fills in for an anonymous client", anon, "", false},
		{"a '*' in a user name is a character", star, "st*r", true},
		{"a '*' in a user name matches only itself", star, "stXr", false},
		{"an unproven name claims nothing by %u", claimed, "alice", false},
	} {
		id := tt.clientID
		if got := h.Authorize(tt.p, "send", "topic", []string{"devices", id, "x"}, id); got != tt.want {
			t.Errorf("%s: %s as %q: %v, want %v", tt.name, tt.p.User, id, got, tt.want)
		}
	}
	// A principal named like a group (a certificate CN, say) is not its member.
	if h.Authorize(virtualhost.Principal{User: "ops", Authenticated: true}, "send", "topic", []string{"ops", "x"}, "c") {
		t.Error("a user named ops was taken for the group ops")
	}
	if !h.Authorize(virtualhost.Principal{User: "zed", Groups: []string{"ops"}, Authenticated: true}, "send", "topic", []string{"ops", "x"}, "c") {
		t.Error("a member of ops was refused")
	}
}
