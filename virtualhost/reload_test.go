package virtualhost_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Users of testdata/users.hcl, and carol ("carol", group devices) added by a reload.
const (
	aliceEntry = "user \"alice\" {\n  password = \"$2a$04$KSbLR1x52L4HdjFntm8.NuoQ16xVd4PWGU.SjnZpyNGfov2z2xyei\"\n  groups = [\"admins\", \"devices\"]\n}\n"
	bobEntry   = "user \"bob\" {\n  password = \"$2a$04$EuxCkUyr0fUU28P9SqVYAuU/e8P6mCMi4AsxiYbrUN/blx51Vqm42\"\n}\n"
	carolEntry = "user \"carol\" {\n  password = \"$2a$04$Us9BI/yZmqCegPsTNBVckeSG8c4SgGJglpGn2LLxxMpdiUsJ3ytsi\"\n  groups = [\"devices\"]\n}\n"
)

func writeUsersFile(t *testing.T, path string, entries ...string) {
	t.Helper()
	var b []byte
	for _, e := range entries {
		b = append(b, e...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A reload changes users, groups, access rules, anonymous access, host names and limits of a running
// host in place; What says what changed.
func TestUpdateInPlace(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.hcl")
	writeUsersFile(t, users, aliceEntry, bobEntry)
	c := conf.VirtualHost{Name: "h", UsersFile: users, AccessRules: []conf.AccessRule{
		{Allow: []string{"+"}, Actions: []string{"connect"}},
		{Allow: []string{"admins"}, Actions: []string{"receive"}, Kind: "topic", ID: "a.**"},
	}}
	h := open(t, c)
	alice, err := h.Authenticate("alice", []byte("wonderland"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Authenticate("carol", []byte("carol"), true); !errors.Is(err, virtualhost.ErrBadCredentials) {
		t.Fatalf("carol before the reload: %v", err)
	}
	if h.Authorize(alice, virtualhost.ActionReceive, virtualhost.ObjectTopic, []string{"b", "x"}, "c") {
		t.Fatal("alice may receive b.x before the reload")
	}

	writeUsersFile(t, users, aliceEntry, bobEntry, carolEntry)
	c2 := c
	c2.AccessRules = append(slices.Clone(c.AccessRules), conf.AccessRule{Allow: []string{"devices"}, Actions: []string{"receive"}, Kind: "topic", ID: "b.**"})
	c2.HostNames, c2.Anonymous, c2.MaxConnections, c2.MaxMessageLength = []string{"h.example"}, true, 1, 10
	ch, err := h.Prepare(c2)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"users", "access_rules", "anonymous", "host_names", "limits"}
	if got := ch.What(); !slices.Equal(got, want) {
		t.Fatalf("What = %q, want %q", got, want)
	}
	if _, err := h.Authenticate("carol", []byte("carol"), true); err == nil {
		t.Fatal("Prepare changed the running host")
	}
	ch.Apply()

	carol, err := h.Authenticate("carol", []byte("carol"), true)
	if err != nil {
		t.Fatalf("carol after the reload: %v", err)
	}
	if !h.Authorize(carol, virtualhost.ActionReceive, virtualhost.ObjectTopic, []string{"b", "x"}, "c") ||
		!h.Authorize(alice, virtualhost.ActionReceive, virtualhost.ObjectTopic, []string{"b", "x"}, "c") {
		t.Fatal("the new rule does not apply")
	}
	if !h.Anonymous() || h.MaxConnections() != 1 || h.MaxMessageLength() != 10 || !slices.Equal(h.HostNames(), []string{"h.example"}) {
		t.Fatalf("settings after the reload: anonymous %v, max_connections %d, max_message_length %d, host_names %q",
			h.Anonymous(), h.MaxConnections(), h.MaxMessageLength(), h.HostNames())
	}
	if !h.Acquire() || h.Acquire() {
		t.Fatal("max_connections 1 not applied")
	}
	h.Release()
	if ch, err := h.Prepare(c2); err != nil || len(ch.What()) != 0 {
		t.Fatalf("the same configuration again: %v, changes %q", err, ch.What())
	}
	for _, f := range []func(*conf.VirtualHost){
		func(c *conf.VirtualHost) { c.CredentialCache = time.Minute },
		func(c *conf.VirtualHost) { c.CredentialCacheSize = 5 },
		func(c *conf.VirtualHost) { c.MaxConcurrentLogins = 5 },
		func(c *conf.VirtualHost) { c.MaxConcurrentLoginsPerAddress = 5 },
	} {
		c3 := c2
		f(&c3)
		if ch, err := h.Prepare(c3); err != nil || !slices.Equal(ch.What(), []string{"limits"}) {
			t.Fatalf("a login bound changed: %v, changes %q", err, ch.What())
		}
	}
}

// A configuration the host cannot take is refused by Prepare and changes nothing: a users file that does
// not decode, another name, another store block.
func TestPrepareRefuses(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.hcl")
	writeUsersFile(t, users, aliceEntry)
	c := conf.VirtualHost{Name: "h", UsersFile: users}
	h := open(t, c)
	writeUsersFile(t, users, "user \"x\" {\n  password = \"plain\"\n}\n")
	if _, err := h.Prepare(c); err == nil {
		t.Fatal("a broken users file was accepted")
	}
	if _, err := h.Authenticate("alice", []byte("wonderland"), true); err != nil {
		t.Fatalf("the running users changed: %v", err)
	}
	other := c
	other.Name = "other"
	if _, err := h.Prepare(other); err == nil {
		t.Fatal("a new name was accepted")
	}
	stored := c
	stored.Store = &conf.Store{Directory: t.TempDir()}
	if _, err := h.Prepare(stored); err == nil {
		t.Fatal("a new store block was accepted")
	}
}

// Queue policies and quotas change on the router of a running host.
func TestUpdatePolicies(t *testing.T) {
	c := conf.VirtualHost{Name: "h", QuotaMessages: 1}
	h := open(t, c)
	g, err := router.NewGrammar(router.STOMPGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	q, err := g.ParseName("/queue/orders")
	if err != nil {
		t.Fatal(err)
	}
	pub := func() error { return h.Router.Publish(&router.Message{Dest: q, Body: []byte("x")}).Err }
	if err := pub(); err != nil {
		t.Fatal(err)
	}
	if err := pub(); !errors.Is(err, router.ErrQueueFull) {
		t.Fatalf("second message under quota_messages 1: %v", err)
	}
	c.Queues = []conf.QueuePolicy{{Pattern: "orders", QuotaMessages: 3}}
	if err := h.Update(c); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := pub(); err != nil {
			t.Fatalf("message %d under the new policy: %v", i+2, err)
		}
	}
	if err := pub(); !errors.Is(err, router.ErrQueueFull) {
		t.Fatalf("fourth message under quota_messages 3: %v", err)
	}
}

// Refresh tells whether a connected client may stay after a reload, and who it is now.
func TestRefresh(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.hcl")
	writeUsersFile(t, users, aliceEntry, bobEntry)
	c := conf.VirtualHost{Name: "h", UsersFile: users, Anonymous: true}
	h := open(t, c)
	alice, _ := h.Authenticate("alice", []byte("wonderland"), true)
	bob, _ := h.Authenticate("bob", []byte("builder"), true)
	anonymous, _ := h.Authenticate("", nil, false)
	cert, _, err := h.LoginCert(nil, "device-7", "c")
	if err != nil {
		t.Fatal(err)
	}

	// alice leaves group admins, bob is removed, anonymous access ends, bob may no longer connect.
	writeUsersFile(t, users, "user \"alice\" {\n  password = \"$2a$04$KSbLR1x52L4HdjFntm8.NuoQ16xVd4PWGU.SjnZpyNGfov2z2xyei\"\n  groups = [\"devices\"]\n}\n")
	c.Anonymous = false
	if err := h.Update(c); err != nil {
		t.Fatal(err)
	}
	p, err := h.Refresh(alice, "c")
	if err != nil || !slices.Equal(p.Groups, []string{"devices"}) || !p.Authenticated {
		t.Fatalf("alice: %+v, %v; want groups [devices]", p, err)
	}
	if _, err := h.Refresh(bob, "c"); !errors.Is(err, virtualhost.ErrUserRemoved) {
		t.Fatalf("bob: %v, want ErrUserRemoved", err)
	}
	if _, err := h.Refresh(anonymous, "c"); !errors.Is(err, virtualhost.ErrNotAuthorized) {
		t.Fatalf("anonymous: %v, want ErrNotAuthorized", err)
	}
	if p, err := h.Refresh(cert, "c"); err != nil || p.User != "device-7" {
		t.Fatalf("certificate identity, not a users file entry: %+v, %v", p, err)
	}
	c.AccessRules = []conf.AccessRule{{Deny: []string{"alice"}, Actions: []string{"connect"}}, {Allow: []string{"*"}}}
	if err := h.Update(c); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Refresh(alice, "c"); !errors.Is(err, virtualhost.ErrNotAuthorized) {
		t.Fatalf("alice denied connect: %v, want ErrNotAuthorized", err)
	}
}

// A gate forgets what it decided under rules a reload replaced; decisions stay right while reloads
// and deliveries run together.
func TestGateFollowsReload(t *testing.T) {
	c := conf.VirtualHost{Name: "h", AccessRules: []conf.AccessRule{
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "a.x"},
	}}
	h := open(t, c)
	g := h.Gate(anon, virtualhost.ActionReceive, virtualhost.ObjectTopic, "c")
	if !g.Allows([]string{"a", "x"}) || g.Allows([]string{"a", "y"}) {
		t.Fatal("gate before the reload")
	}
	swapped := conf.VirtualHost{Name: "h", AccessRules: []conf.AccessRule{
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "a.y"},
	}}
	if err := h.Update(swapped); err != nil {
		t.Fatal(err)
	}
	if g.Allows([]string{"a", "x"}) || !g.Allows([]string{"a", "y"}) {
		t.Fatal("gate kept the decisions of the replaced rules")
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 200 {
			next := c
			if i%2 == 0 {
				next = swapped
			}
			if err := h.Update(next); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 2000 {
			if g.Allows([]string{"a", "z"}) {
				t.Error("a.z allowed: no rule set allows it")
				return
			}
		}
	}()
	wg.Wait()
}

// The registry is safe for lookups while a reload adds, removes and renames hosts.
func TestRegistrySet(t *testing.T) {
	a := open(t, conf.VirtualHost{Name: "a", HostNames: []string{"a.example"}})
	b := open(t, conf.VirtualHost{Name: "b"})
	reg := virtualhost.NewRegistry(a)
	if reg.Lookup("B") != nil || reg.Lookup("a.example") != a {
		t.Fatal("initial index")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 1000 {
			if h := reg.Lookup("a"); h != a {
				t.Error("host a missing during Set")
				return
			}
			_ = reg.Default()
		}
	}()
	for range 100 {
		reg.Set(a, b)
		reg.Set(a)
	}
	wg.Wait()
	reg.Set(b, a)
	if reg.Default() != b || reg.Lookup("b") != b || len(reg.Hosts()) != 2 {
		t.Fatal("after Set(b, a)")
	}
	c := a.Config()
	c.HostNames = []string{"a2.example"}
	if err := a.Update(c); err != nil {
		t.Fatal(err)
	}
	reg.Set(reg.Hosts()...)
	if reg.Lookup("a.example") != nil || reg.Lookup("a2.example") != a {
		t.Fatal("host names not indexed again")
	}
}

// A retired host takes no new client; its held slots are released as its clients leave.
func TestRetire(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h"})
	if !h.Acquire() {
		t.Fatal("Acquire")
	}
	h.Retire()
	if h.Acquire() {
		t.Fatal("a retired host gave a slot")
	}
	if h.Connections() != 1 {
		t.Fatalf("Connections = %d, want the one held", h.Connections())
	}
	h.Release()
	if !h.Retired() || h.Connections() != 0 {
		t.Fatal("after Release")
	}
}
