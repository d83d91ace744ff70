package virtualhost_test

import (
	"errors"
	"net"
	"testing"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Each refusal counts once, under its kind; what is allowed counts nothing, but for the password checks
// (PasswordChecks), which count the bcrypt work whatever its outcome.
func TestHostCounters(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl", MaxConnections: 1, AccessRules: []conf.AccessRule{
		{Allow: []string{"alice"}, Actions: []string{"connect"}},
		{Allow: []string{"alice"}, Actions: []string{"send"}, Kind: "queue", ID: "orders.**"},
		{Allow: []string{"alice"}, Actions: []string{"receive"}, Kind: "topic", ID: "public.**"},
	}})
	h.Throttle = nil
	addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
	want := virtualhost.HostCounters{}
	check := func(step string) {
		t.Helper()
		if got := h.Counters(); got != want {
			t.Fatalf("%s: counters %+v, want %+v", step, got, want)
		}
	}
	alice, _, err := h.Login(addr, "alice", []byte("wonderland"), true, "c")
	if err != nil {
		t.Fatal(err)
	}
	want.PasswordChecks = 1
	check("a good login")
	h.Login(addr, "alice", []byte("nope"), true, "c")
	h.Login(addr, "nobody", []byte("x"), true, "c") // the dummy hash
	want.AuthFailures = 2
	want.PasswordChecks += 2
	check("bad credentials")
	h.Login(addr, "bob", []byte("builder"), true, "c") // right password, no connect permission
	h.Login(addr, "", nil, false, "c")                 // no user on a host without anonymous access
	want.ConnectRefused = 2
	want.PasswordChecks++
	check("refused connects")
	h.LoginCert(addr, "bob", "c")
	want.ConnectRefused++
	check("a certificate identity without connect permission")

	path := func(s ...string) []string { return s }
	if !h.Authorize(alice, virtualhost.ActionSend, virtualhost.ObjectQueue, path("orders", "eu"), "c") {
		t.Fatal("alice may send to orders")
	}
	check("an allowed send")
	h.Authorize(alice, virtualhost.ActionSend, virtualhost.ObjectQueue, path("payroll"), "c")
	want.AccessDenied++
	check("a denied send")
	segs := func(p string) []router.Seg {
		s, err := virtualhost.ParsePattern(p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if some, all := h.AuthorizeFilter(alice, virtualhost.ActionReceive, virtualhost.ObjectTopic, segs("**"), "c"); !some || all {
		t.Fatalf("** for alice: some %v all %v", some, all)
	}
	check("a filter allowed in part")
	h.AuthorizeFilter(alice, virtualhost.ActionReceive, virtualhost.ObjectTopic, segs("secret.**"), "c")
	want.AccessDenied++
	check("a filter allowing nothing")

	g := h.Gate(alice, virtualhost.ActionReceive, virtualhost.ObjectTopic, "c")
	if !g.Allows(path("public", "news")) {
		t.Fatal("the gate refuses public.news")
	}
	g.Allows(path("secret", "x"))
	g.Allows(path("secret", "x")) // cached this time, withheld all the same
	want.GateDenied = 2
	check("a gate withholding two messages")

	if !h.Acquire() {
		t.Fatal("no first slot")
	}
	defer h.Release()
	if h.Acquire() {
		t.Fatal("a second slot beyond MaxConnections 1")
	}
	want.HostFull = 1
	check("a full host")
}

func TestStoreStats(t *testing.T) {
	if _, ok := open(t, conf.VirtualHost{Name: "m", Anonymous: true}).StoreStats(); ok {
		t.Fatal("a memory host reports store stats")
	}
	h := open(t, durableConf(t.TempDir()))
	qd := router.Destination{Kind: router.Queue, Path: []string{"q"}}
	if err := publishWait(t, h, &router.Message{Dest: qd, Body: []byte("x"), QoS: 1, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	st, ok := h.StoreStats()
	if !ok || st.Commits == 0 || st.CommitLatency.Count != st.Commits || st.SizeBytes == 0 {
		t.Fatalf("store stats %+v, %v", st, ok)
	}
}

// Verify checks credentials without the connect permission (bob has none), and counts a failure as
// Login does.
func TestVerifyCountsFailures(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl", AccessRules: []conf.AccessRule{
		{Allow: []string{"alice"}, Actions: []string{"connect"}},
	}})
	h.Throttle = nil
	if p, _, err := h.Verify(nil, "bob", []byte("builder"), true); err != nil || p.User != "bob" || !p.Authenticated {
		t.Fatalf("Verify bob = %+v, %v; want bob authenticated without the connect permission", p, err)
	}
	if _, _, err := h.Verify(nil, "alice", []byte("wrong"), true); !errors.Is(err, virtualhost.ErrBadCredentials) {
		t.Fatalf("Verify with a wrong password: %v", err)
	}
	if got := h.Counters(); got.AuthFailures != 1 || got.ConnectRefused != 0 {
		t.Errorf("counters %+v, want one auth failure", got)
	}
}

// No rule lets a client publish under $SYS, the broker's own tree; reading it is up to the rules
// [MQTT 3.1.1 §4.7.2].
func TestSysTopicsAreTheBrokers(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", Anonymous: true})
	p := virtualhost.Principal{}
	if h.Authorize(p, virtualhost.ActionSend, virtualhost.ObjectTopic, []string{"$SYS", "broker", "uptime"}, "") {
		t.Error("a send to $SYS/broker/uptime was allowed on a host without rules")
	}
	if !h.Authorize(p, virtualhost.ActionReceive, virtualhost.ObjectTopic, []string{"$SYS", "broker", "uptime"}, "") {
		t.Error("receiving $SYS/broker/uptime was refused on a host without rules")
	}
	if !h.Authorize(p, virtualhost.ActionSend, virtualhost.ObjectTopic, []string{"SYS", "x"}, "") ||
		!h.Authorize(p, virtualhost.ActionSend, virtualhost.ObjectQueue, []string{"$SYS", "x"}, "") {
		t.Error("a send elsewhere was refused")
	}
}
