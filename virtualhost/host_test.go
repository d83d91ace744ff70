package virtualhost_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/virtualhost"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testdata/users.hcl: alice "wonderland" (groups admins, devices), bob "builder".
func open(t *testing.T, c conf.VirtualHost, opts ...virtualhost.Option) *virtualhost.Host {
	t.Helper()
	h, err := openHost(c, router.Options{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// openHost is virtualhost.Open with, for a host with a store block, a badger store in its directory, as
// cmd/lyre opens it.
func openHost(c conf.VirtualHost, ro router.Options, opts ...virtualhost.Option) (*virtualhost.Host, error) {
	if c.Store != nil {
		st, err := badgerstore.Open(c.Store.Directory, badgerstore.Options{NoSync: !c.Store.Sync, FlushDelay: c.Store.FlushDelay})
		if err != nil {
			return nil, err
		}
		opts = append(opts, virtualhost.WithStore(st))
	}
	return virtualhost.Open(c, ro, opts...)
}

func TestAuthenticate(t *testing.T) {
	closed := open(t, conf.VirtualHost{Name: "closed", UsersFile: "testdata/users.hcl"})
	anonUsers := open(t, conf.VirtualHost{Name: "anon-users", UsersFile: "testdata/users.hcl", Anonymous: true})
	anon := open(t, conf.VirtualHost{Name: "anon", Anonymous: true})
	noUsers := open(t, conf.VirtualHost{Name: "nobody"})
	long := strings.Repeat("x", virtualhost.MaxUserLength+1)
	for _, tt := range []struct {
		name     string
		h        *virtualhost.Host
		user     string
		password string
		hasUser  bool
		want     virtualhost.Principal
		err      error
	}{
		{"good password", closed, "alice", "wonderland", true, virtualhost.Principal{User: "alice", Groups: []string{"admins", "devices"}, Authenticated: true}, nil},
		{"good password, no groups", closed, "bob", "builder", true, virtualhost.Principal{User: "bob", Authenticated: true}, nil},
		{"wrong password", closed, "alice", "builder", true, virtualhost.Principal{}, virtualhost.ErrBadCredentials},
		{"empty password", closed, "alice", "", true, virtualhost.Principal{}, virtualhost.ErrBadCredentials},
		{"unknown user", closed, "mallory", "wonderland", true, virtualhost.Principal{}, virtualhost.ErrBadCredentials},
		{"no user on a closed host", closed, "", "", false, virtualhost.Principal{}, virtualhost.ErrNotAuthorized},
		{"user flag with an empty name", closed, "", "x", true, virtualhost.Principal{}, virtualhost.ErrNotAuthorized},
		{"over-long user name", closed, long, "wonderland", true, virtualhost.Principal{}, virtualhost.ErrBadCredentials},
		{"over-long password", closed, "alice", "wonderland" + strings.Repeat("!", 70), true, virtualhost.Principal{}, virtualhost.ErrBadCredentials},
		{"anonymous host, no user", anonUsers, "", "", false, virtualhost.Principal{}, nil},
		{"anonymous host with users, unknown user", anonUsers, "mallory", "x", true, virtualhost.Principal{}, virtualhost.ErrBadCredentials},
		{"anonymous host with users, wrong password", anonUsers, "alice", "x", true, virtualhost.Principal{}, virtualhost.ErrBadCredentials},
		{"anonymous host with users, good password", anonUsers, "bob", "builder", true, virtualhost.Principal{User: "bob", Authenticated: true}, nil},
		{"anonymous host without users keeps a claimed name, unauthenticated", anon, "carol", "", true, virtualhost.Principal{User: "carol"}, nil},
		{"host without users or anonymous access", noUsers, "carol", "x", true, virtualhost.Principal{}, virtualhost.ErrBadCredentials},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.h.Authenticate(tt.user, []byte(tt.password), tt.hasUser)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if p.User != tt.want.User || p.Authenticated != tt.want.Authenticated || strings.Join(p.Groups, ",") != strings.Join(tt.want.Groups, ",") {
				t.Errorf("principal = %+v, want %+v", p, tt.want)
			}
		})
	}
}

func TestOpenBadUsersFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "users.hcl")
	if err := os.WriteFile(bad, []byte("user \"a\" {\n  password = \"plain\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{bad, filepath.Join(t.TempDir(), "missing.hcl")} {
		if h, err := virtualhost.Open(conf.VirtualHost{Name: "h", UsersFile: f}, router.Options{}); err == nil {
			h.Close()
			t.Errorf("Open with users file %s succeeded", f)
		}
	}
}

func TestLoginChecksConnectAndThrottles(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: "testdata/users.hcl", AccessRules: []conf.AccessRule{
		{Deny: []string{"bob"}, Actions: []string{"connect"}},
		{Allow: []string{"+"}},
	}})
	h.Throttle = &virtualhost.Throttle{Free: 2, Base: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}
	if p, d, err := h.Login(addr, "alice", []byte("wonderland"), true, "c1"); err != nil || d != 0 || p.User != "alice" {
		t.Fatalf("alice: %+v %v %v", p, d, err)
	}
	// Right password, but connect is denied: not authorized (MQTT 0x05), not bad credentials.
	if _, _, err := h.Login(addr, "bob", []byte("builder"), true, "c2"); !errors.Is(err, virtualhost.ErrNotAuthorized) {
		t.Fatalf("bob: %v, want ErrNotAuthorized", err)
	}
	// Failures 2..6 from the same IP (another port): free, then 10, 20, 40, 40 (capped).
	var got []time.Duration
	for i := range 5 {
		_, d, err := h.Login(&net.TCPAddr{IP: addr.IP, Port: 2000 + i}, "alice", []byte("nope"), true, "c3")
		if !errors.Is(err, virtualhost.ErrBadCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
		got = append(got, d)
	}
	want := []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond}
	if !equalDurations(got, want) {
		t.Errorf("delays = %v, want %v", got, want)
	}
	if n := h.Throttle.Failures("192.0.2.1"); n != 6 {
		t.Errorf("failures = %d, want 6", n)
	}
	// Another address is not slowed down by this one's failures.
	if _, d, _ := h.Login(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 2)}, "alice", []byte("nope"), true, "c4"); d != 0 {
		t.Errorf("other address delayed %v", d)
	}
}

func TestThrottleTableIsBounded(t *testing.T) {
	th := &virtualhost.Throttle{Size: 4, Free: 1, Base: time.Millisecond}
	for i := range 100 {
		th.Fail(&net.TCPAddr{IP: net.IPv4(10, 0, 0, byte(i))})
	}
	tracked := 0
	for i := range 100 {
		if th.Failures(net.IPv4(10, 0, 0, byte(i)).String()) > 0 {
			tracked++
		}
	}
	if tracked != 4 {
		t.Errorf("%d addresses tracked, want the table size 4", tracked)
	}
	// The newest are kept.
	if th.Failures("10.0.0.99") != 1 {
		t.Error("the latest address was evicted")
	}
	var nilThrottle *virtualhost.Throttle
	if d := nilThrottle.Fail(&net.TCPAddr{}); d != 0 {
		t.Errorf("nil throttle delayed %v", d)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAcquireRelease(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", MaxConnections: 2})
	for i := range 2 {
		if !h.Acquire() {
			t.Fatalf("slot %d of 2 refused with max_connections = 2", i+1)
		}
	}
	if h.Acquire() {
		t.Fatal("third slot granted with max_connections = 2")
	}
	h.Release()
	if !h.Acquire() || h.Connections() != 2 {
		t.Fatalf("slot not reusable after Release; connections = %d", h.Connections())
	}
	unlimited := open(t, conf.VirtualHost{Name: "u"})
	for range 100 {
		if !unlimited.Acquire() {
			t.Fatal("unlimited host refused a slot")
		}
	}
}
