package virtualhost_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdg-go/scram"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/virtualhost"
)

// scramUser is a users file entry for the tests: scram false leaves the user with a password only.
type scramUser struct {
	name, password string
	scram          bool
	iterations     int // 0: 4096
	groups         []string
}

// writeUsers writes a users file of us into a temporary directory and returns its path.
func writeUsers(t *testing.T, us ...scramUser) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.hcl")
	writeUsersTo(t, path, us...)
	return path
}

// writeUsersTo writes a users file of us at path.
func writeUsersTo(t *testing.T, path string, us ...scramUser) {
	t.Helper()
	var src strings.Builder
	for _, u := range us {
		hash, err := bcrypt.GenerateFromPassword([]byte(u.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		cu := conf.User{Name: u.name, PasswordHash: string(hash), Groups: u.groups}
		if u.scram {
			if cu.SCRAM, err = virtualhost.NewSCRAMCredentials(u.password, max(u.iterations, conf.SCRAMIterations)); err != nil {
				t.Fatal(err)
			}
		}
		src.WriteString(cu.Format())
	}
	if err := os.WriteFile(path, []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

var scramUsers = []scramUser{
	{name: "alice", password: "wonderland", scram: true, groups: []string{"admins"}},
	{name: "a,b=c", password: "commas", scram: true},
	{name: "bob", password: "builder"}, // no SCRAM credentials
}

// client runs the library's client side (an implementation independent of the host's checks) against
// x: it returns the server's two answers and the client's error on the server's final message.
type client struct {
	conv *scram.ClientConversation
}

func newClient(t *testing.T, user, password string) *client {
	t.Helper()
	c, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	return &client{conv: c.NewConversation()}
}

func (c *client) first(t *testing.T) []byte {
	t.Helper()
	m, err := c.conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(m)
}

func (c *client) final(t *testing.T, serverFirst []byte) []byte {
	t.Helper()
	m, err := c.conv.Step(string(serverFirst))
	if err != nil {
		t.Fatalf("client on %q: %v", serverFirst, err)
	}
	return []byte(m)
}

// login runs a whole exchange of user with password against h and returns it with its last answer.
func login(t *testing.T, h *virtualhost.Host, user, password string) (virtualhost.AuthExchange, []byte, error) {
	t.Helper()
	x, ok := h.StartAuth(virtualhost.MethodSCRAMSHA256)
	if !ok {
		t.Fatal("SCRAM-SHA-256 not offered")
	}
	c := newClient(t, user, password)
	s1, done, err := x.Step(c.first(t))
	if done || err != nil {
		t.Fatalf("client-first: done %v, %v (%q)", done, err, s1)
	}
	out, done, err := x.Step(c.final(t, s1))
	if !done {
		t.Fatalf("client-final: not done (%q)", out)
	}
	if err == nil {
		if _, cerr := c.conv.Step(string(out)); cerr != nil || !c.conv.Valid() {
			t.Errorf("client does not accept the server's signature %q: %v", out, cerr)
		}
	}
	return x, out, err
}

// RFC 7677 §3: user "user", password "pencil", the RFC's salt and nonces give exactly its messages.
func TestSCRAMRFC7677Example(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	cred, err := virtualhost.DeriveSCRAM("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users.hcl")
	u := conf.User{Name: "user", PasswordHash: "$2a$04$KSbLR1x52L4HdjFntm8.NuoQ16xVd4PWGU.SjnZpyNGfov2z2xyei", SCRAM: cred}
	if err := os.WriteFile(path, []byte(u.Format()), 0o600); err != nil {
		t.Fatal(err)
	}
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: path},
		virtualhost.WithAuthenticator(virtualhost.SCRAMSHA256{Nonce: func() string { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" }}))
	x, ok := h.StartAuth("SCRAM-SHA-256")
	if !ok {
		t.Fatal("not offered")
	}
	for _, step := range []struct{ in, out string }{
		{"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"},
		{"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
	} {
		out, _, err := x.Step([]byte(step.in))
		if err != nil || string(out) != step.out {
			t.Fatalf("Step(%q) = %q, %v; want %q", step.in, out, err, step.out)
		}
	}
	if x.User() != "user" {
		t.Errorf("User() = %q", x.User())
	}
}

func TestSCRAMLogin(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: writeUsers(t, scramUsers...)})
	for _, tt := range []struct {
		user, password string
		groups         []string
	}{
		{"alice", "wonderland", []string{"admins"}},
		{"a,b=c", "commas", nil}, // sent as n=a=2Cb=3Dc
	} {
		x, _, err := login(t, h, tt.user, tt.password)
		if err != nil || x.User() != tt.user {
			t.Fatalf("%s: %v, User() = %q", tt.user, err, x.User())
		}
		p, d, err := h.LoginAuth(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}, x, err, "c1")
		if err != nil || d != 0 || p.User != tt.user || !p.Authenticated || strings.Join(p.Groups, ",") != strings.Join(tt.groups, ",") {
			t.Errorf("LoginAuth = %+v, %v, %v", p, d, err)
		}
		if virtualhost.ClaimedUser(x) != tt.user {
			t.Errorf("ClaimedUser = %q", virtualhost.ClaimedUser(x))
		}
	}
	// The bcrypt password of a user with SCRAM credentials still works.
	if _, err := h.Authenticate("alice", []byte("wonderland"), true); err != nil {
		t.Errorf("password login: %v", err)
	}
}

// A client that supports channel binding but was not offered it says 'y'; that is accepted.
func TestSCRAMAcceptsGS2FlagY(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: writeUsers(t, scramUsers...)})
	c, err := scram.SHA256.NewClient("alice", "wonderland", "")
	if err != nil {
		t.Fatal(err)
	}
	conv := c.NewConversationAdvertisingChannelBinding()
	x, _ := h.StartAuth(virtualhost.MethodSCRAMSHA256)
	c1, _ := conv.Step("")
	if !strings.HasPrefix(c1, "y,,") {
		t.Fatalf("client-first %q", c1)
	}
	s1, _, err := x.Step([]byte(c1))
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := conv.Step(string(s1))
	if _, done, err := x.Step([]byte(c2)); !done || err != nil || x.User() != "alice" {
		t.Errorf("done %v, %v, user %q", done, err, x.User())
	}
}

// A wrong password, an unknown user and a user without SCRAM credentials end alike: the same message,
// the same error; and the unknown names' server-first messages look like a real user's.
func TestSCRAMFailuresLookAlike(t *testing.T) {
	path := writeUsers(t, append(scramUsers, scramUser{name: "carol", password: "x", scram: true, iterations: 4096})...)
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: path})
	var outs []string
	var errs []error
	for _, tt := range []struct{ user, password string }{
		{"alice", "wrong"},
		{"mallory", "wonderland"},
		{"bob", "builder"},
		{strings.Repeat("m", virtualhost.MaxUserLength+1), "x"},
	} {
		x, out, err := login(t, h, tt.user, tt.password)
		if !errors.Is(err, virtualhost.ErrBadCredentials) || x.User() != "" {
			t.Errorf("%.20s: %v, user %q", tt.user, err, x.User())
		}
		if virtualhost.ClaimedUser(x) != tt.user {
			t.Errorf("ClaimedUser = %.20q", virtualhost.ClaimedUser(x))
		}
		if _, _, lerr := h.LoginAuth(nil, x, err, "c"); !errors.Is(lerr, virtualhost.ErrBadCredentials) {
			t.Errorf("LoginAuth: %v", lerr)
		}
		outs = append(outs, string(out))
		errs = append(errs, err)
	}
	for i := range outs {
		if outs[i] != "e=invalid-proof" || errs[i].Error() != errs[0].Error() {
			t.Errorf("failure %d: %q, %v; want e=invalid-proof and %v", i, outs[i], errs[i], errs[0])
		}
	}

	// An unknown name always gets the same salt, also from a host opened anew on the same file, in the
	// shape of a real user's (16 bytes, 4096 iterations here), and a fresh nonce.
	first := func(h *virtualhost.Host, user string) (nonce, salt, iters string) {
		x, _ := h.StartAuth(virtualhost.MethodSCRAMSHA256)
		out, _, err := x.Step([]byte("n,,n=" + user + ",r=clientnonce"))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Split(string(out), ",")
		if len(f) != 3 {
			t.Fatalf("server-first %q", out)
		}
		return f[0], f[1], f[2]
	}
	n1, s1, i1 := first(h, "mallory")
	n2, s2, _ := first(h, "mallory")
	_, s3, _ := first(open(t, conf.VirtualHost{Name: "h", UsersFile: path}), "mallory")
	_, s4, _ := first(h, "trent")
	_, real, _ := first(h, "alice")
	if n1 == n2 || !strings.HasPrefix(n1, "r=clientnonce") || len(n1) < len("r=clientnonce")+24 {
		t.Errorf("nonces %q, %q", n1, n2)
	}
	if s1 != s2 || s1 != s3 || s1 == s4 {
		t.Errorf("fake salts: mallory %q, %q, %q; trent %q", s1, s2, s3, s4)
	}
	if len(s1) != len(real) || i1 != "i=4096" {
		t.Errorf("fake %q %q, real %q", s1, i1, real)
	}
}

// The fake iteration count follows the real users': a host whose users all use 10000 answers 10000.
func TestSCRAMFakeIterationsFollowUsers(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: writeUsers(t,
		scramUser{name: "u1", password: "p", scram: true, iterations: 10000},
		scramUser{name: "u2", password: "p", scram: true, iterations: 10000})})
	for i := range 20 {
		x, _ := h.StartAuth(virtualhost.MethodSCRAMSHA256)
		out, _, err := x.Step([]byte("n,,n=nobody" + strconv.Itoa(i) + ",r=abc"))
		if err != nil || !strings.HasSuffix(string(out), ",i=10000") {
			t.Fatalf("server-first %q, %v", out, err)
		}
	}
}

func TestSCRAMReplayedOrTamperedFinal(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: writeUsers(t, scramUsers...)})
	// A recorded successful exchange.
	x, _ := h.StartAuth(virtualhost.MethodSCRAMSHA256)
	c := newClient(t, "alice", "wonderland")
	c1 := c.first(t)
	s1, _, _ := x.Step(c1)
	c2 := c.final(t, s1)
	if _, _, err := x.Step(c2); err != nil {
		t.Fatal(err)
	}
	proofAt := bytes.Index(c2, []byte(",p=")) + len(",p=")
	proof, _ := base64.StdEncoding.DecodeString(string(c2[proofAt:]))
	proof[0] ^= 1
	flipped := append(bytes.Clone(c2[:proofAt]), base64.StdEncoding.EncodeToString(proof)...)

	for _, tt := range []struct {
		name  string
		final func(s1 []byte) []byte
		out   string
	}{
		// The server's nonce differs in every exchange, so an old client-final does not fit a new one.
		{"replayed", func([]byte) []byte { return c2 }, "e=other-error"},
		{"proof flipped", func(s1 []byte) []byte {
			return bytes.Replace(flipped, nonceOf(c2), nonceOf(s1), 1)
		}, "e=invalid-proof"},
		{"channel binding changed", func(s1 []byte) []byte {
			return bytes.Replace(bytes.Replace(c2, []byte("c=biws"), []byte("c=eSws"), 1), nonceOf(c2), nonceOf(s1), 1)
		}, "e=channel-bindings-dont-match"},
		{"proof too short", func(s1 []byte) []byte {
			return []byte("c=biws,r=" + string(nonceOf(s1)[2:]) + ",p=" + base64.StdEncoding.EncodeToString(proof[:16]))
		}, "e=other-error"},
		{"not a client-final", func([]byte) []byte { return []byte("hello") }, "e=invalid-encoding"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x, _ := h.StartAuth(virtualhost.MethodSCRAMSHA256)
			s1, _, err := x.Step(c1)
			if err != nil {
				t.Fatal(err)
			}
			out, done, err := x.Step(tt.final(s1))
			if !done || !errors.Is(err, virtualhost.ErrBadCredentials) || string(out) != tt.out || x.User() != "" {
				t.Errorf("= %q, done %v, %v, user %q; want %q", out, done, err, x.User(), tt.out)
			}
		})
	}
}

// nonceOf returns the "r=..." field of a server-first or client-final message.
func nonceOf(m []byte) []byte {
	for f := range bytes.SplitSeq(m, []byte(",")) {
		if bytes.HasPrefix(f, []byte("r=")) {
			return f
		}
	}
	return nil
}

func TestSCRAMMalformedClientFirst(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: writeUsers(t, scramUsers...)})
	for _, tt := range []struct{ in, out string }{
		{"", "e=invalid-encoding"},
		{"n,,n=alice", "e=invalid-encoding"},
		{"x,,n=alice,r=abc", "e=invalid-encoding"},
		{"p=tls-server-end-point,,n=alice,r=abc", "e=channel-binding-not-supported"},
		{"p=tls-unique,,n=alice,r=abc", "e=channel-binding-not-supported"},
		{"n,a=bob,n=alice,r=abc", "e=other-error"},
		{"n,,n=al=ice,r=abc", "e=invalid-username-encoding"},
		{"n,,n=alice\xff,r=abc", "e=invalid-encoding"},
		{"n,,m=ext,n=alice,r=abc", "e=invalid-encoding"},
	} {
		x, _ := h.StartAuth(virtualhost.MethodSCRAMSHA256)
		out, done, err := x.Step([]byte(tt.in))
		if !done || !errors.Is(err, virtualhost.ErrBadCredentials) || string(out) != tt.out {
			t.Errorf("Step(%q) = %q, done %v, %v; want %q", tt.in, out, done, err, tt.out)
		}
		if _, d, err := h.LoginAuth(nil, x, err, "c"); d != 0 || !errors.Is(err, virtualhost.ErrBadCredentials) {
			t.Errorf("LoginAuth after %q: %v", tt.in, err)
		}
	}
	// The same authorization identity as the user is no change of identity and is accepted.
	x, _ := h.StartAuth(virtualhost.MethodSCRAMSHA256)
	if _, done, err := x.Step([]byte("n,a=alice,n=alice,r=abc")); done || err != nil {
		t.Errorf("authzid = user: done %v, %v", done, err)
	}
}

func TestSCRAMStepAfterDone(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: writeUsers(t, scramUsers...)})
	ok, _, _ := login(t, h, "alice", "wonderland")
	bad, _, _ := login(t, h, "alice", "nope")
	for _, x := range []virtualhost.AuthExchange{ok, bad} {
		user := x.User()
		out, done, err := x.Step([]byte("c=biws,r=x,p=AAAA"))
		if out != nil || !done || !errors.Is(err, virtualhost.ErrAuthEnded) || !errors.Is(err, virtualhost.ErrBadCredentials) {
			t.Errorf("Step after done = %q, %v, %v", out, done, err)
		}
		if x.User() != user {
			t.Errorf("User() changed from %q to %q", user, x.User())
		}
	}
}

// Re-authentication is a new exchange on the same host; one that proves another user says so through
// User, for the front-end to refuse.
func TestSCRAMReauthentication(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: writeUsers(t, scramUsers...)})
	for range 3 {
		if x, _, err := login(t, h, "alice", "wonderland"); err != nil || x.User() != "alice" {
			t.Fatalf("%v %q", err, x.User())
		}
	}
	if x, _, err := login(t, h, "a,b=c", "commas"); err != nil || x.User() != "a,b=c" {
		t.Fatalf("%v %q", err, x.User())
	}
}

// echoAuth is a one-step method for the registry tests: the client sends a user name, which passes when
// it is in names.
type echoAuth struct{ names []string }

func (echoAuth) Method() string { return "ECHO" }

func (a echoAuth) Start(*virtualhost.Host) virtualhost.AuthExchange { return &echoExchange{a: a} }

type echoExchange struct {
	a    echoAuth
	user string
}

func (x *echoExchange) Step(in []byte) ([]byte, bool, error) {
	for _, n := range x.a.names {
		if n == string(in) {
			x.user = n
			return nil, true, nil
		}
	}
	return nil, true, virtualhost.ErrBadCredentials
}

func (x *echoExchange) User() string { return x.user }

func TestStartAuthMethods(t *testing.T) {
	scramHost := open(t, conf.VirtualHost{Name: "s", UsersFile: writeUsers(t, scramUsers...)})
	passwordsOnly := open(t, conf.VirtualHost{Name: "p", UsersFile: "testdata/users.hcl"})
	noUsers := open(t, conf.VirtualHost{Name: "n", Anonymous: true})
	custom := open(t, conf.VirtualHost{Name: "c", UsersFile: "testdata/users.hcl"}, virtualhost.WithAuthenticator(echoAuth{names: []string{"alice"}}))
	for _, tt := range []struct {
		h      *virtualhost.Host
		method string
		ok     bool
	}{
		{scramHost, "SCRAM-SHA-256", true},
		{scramHost, "scram-sha-256", false},
		{scramHost, "SCRAM-SHA-1", false},
		{scramHost, "SCRAM-SHA-256-PLUS", false},
		{scramHost, "", false},
		{scramHost, "ECHO", false},
		{passwordsOnly, "SCRAM-SHA-256", false}, // no user could ever pass
		{noUsers, "SCRAM-SHA-256", false},
		{custom, "ECHO", true},
		{custom, "SCRAM-SHA-256", false},
	} {
		if x, ok := tt.h.StartAuth(tt.method); ok != tt.ok || (x != nil) != ok {
			t.Errorf("%s: StartAuth(%q) = %v, %v; want ok %v", tt.h.Name, tt.method, x, ok, tt.ok)
		}
	}
	// A method of one's own authenticates users of the users file, with their groups.
	x, _ := custom.StartAuth("ECHO")
	_, _, err := x.Step([]byte("alice"))
	if p, _, err := custom.LoginAuth(nil, x, err, "c"); err != nil || p.User != "alice" || strings.Join(p.Groups, ",") != "admins,devices" {
		t.Errorf("LoginAuth = %+v, %v", p, err)
	}
	if virtualhost.ClaimedUser(x) != "alice" {
		t.Error("ClaimedUser")
	}
	// An exchange that has not ended, or names no user, admits nobody.
	x, _ = scramHost.StartAuth("SCRAM-SHA-256")
	if _, _, err := scramHost.LoginAuth(nil, x, nil, "c"); !errors.Is(err, virtualhost.ErrBadCredentials) {
		t.Errorf("LoginAuth of an unfinished exchange: %v", err)
	}
	if _, _, err := scramHost.LoginAuth(nil, nil, nil, "c"); !errors.Is(err, virtualhost.ErrBadCredentials) {
		t.Errorf("LoginAuth of no exchange: %v", err)
	}
}

// Failed SCRAM logins count towards the throttle like failed passwords, and the connect permission
// applies to SCRAM logins.
func TestLoginAuthChecksConnectAndThrottles(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "h", UsersFile: writeUsers(t, scramUsers...), AccessRules: []conf.AccessRule{
		{Deny: []string{"a,b=c"}, Actions: []string{"connect"}},
		{Allow: []string{"+"}},
	}})
	h.Throttle = &virtualhost.Throttle{Free: 2, Base: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 1234}
	x, _, err := login(t, h, "a,b=c", "commas")
	if _, _, err := h.LoginAuth(addr, x, err, "c1"); !errors.Is(err, virtualhost.ErrNotAuthorized) {
		t.Fatalf("denied connect: %v, want ErrNotAuthorized", err)
	}
	var got []time.Duration
	for i, user := range []string{"alice", "mallory", "bob", "alice", "mallory"} {
		x, _, err := login(t, h, user, "wrong")
		_, d, err := h.LoginAuth(&net.TCPAddr{IP: addr.IP, Port: 2000 + i}, x, err, "c2")
		if !errors.Is(err, virtualhost.ErrBadCredentials) {
			t.Fatalf("%s: %v", user, err)
		}
		got = append(got, d)
	}
	want := []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond}
	if !equalDurations(got, want) {
		t.Errorf("delays = %v, want %v", got, want)
	}
	if n := h.Throttle.Failures("192.0.2.7"); n != 6 {
		t.Errorf("failures = %d, want 6", n)
	}
	// A password login from that address pays the same delay: one throttle for every way in.
	if _, d, _ := h.Login(addr, "alice", []byte("nope"), true, "c3"); d != 40*time.Millisecond {
		t.Errorf("password login delay %v", d)
	}
}

func TestNewSCRAMCredentials(t *testing.T) {
	c1, err := virtualhost.NewSCRAMCredentials("pencil", 4096)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := virtualhost.NewSCRAMCredentials("pencil", 4096)
	if len(c1.Salt) != 16 || bytes.Equal(c1.Salt, c2.Salt) || bytes.Equal(c1.StoredKey, c2.StoredKey) || c1.Iterations != 4096 {
		t.Errorf("credentials %+v, %+v", c1, c2)
	}
	// The same as RFC 5802's derivation with that salt.
	if d, _ := virtualhost.DeriveSCRAM("pencil", c1.Salt, 4096); !bytes.Equal(d.StoredKey, c1.StoredKey) || !bytes.Equal(d.ServerKey, c1.ServerKey) {
		t.Error("derivation differs")
	}
	// SASLprep maps a non-ASCII space to a space, as clients do before hashing.
	nbsp, _ := virtualhost.NewSCRAMCredentials("pen\u00a0cil", 4096)
	if d, _ := virtualhost.DeriveSCRAM("pen cil", nbsp.Salt, 4096); !bytes.Equal(d.StoredKey, nbsp.StoredKey) {
		t.Error("password not SASLprep-normalised")
	}
	for _, tt := range []struct {
		password   string
		iterations int
		msg        string
	}{
		{"bell\a", 4096, "prohibited character"},
		{"pencil", 4095, "from 4096 to 10000000"},
		{"pencil", 10_000_001, "from 4096 to 10000000"},
	} {
		if _, err := virtualhost.NewSCRAMCredentials(tt.password, tt.iterations); err == nil || !strings.Contains(err.Error(), tt.msg) || strings.Contains(err.Error(), "\a") {
			t.Errorf("NewSCRAMCredentials(%q, %d) = %v, want %q", tt.password, tt.iterations, err, tt.msg)
		}
	}
}

// The users file of the older form (no scram_sha_256 blocks) still loads, password logins work, and no
// SCRAM is offered; a file mixing both forms offers SCRAM to the users that have credentials.
func TestUsersFileOldAndNewForm(t *testing.T) {
	old := open(t, conf.VirtualHost{Name: "old", UsersFile: "testdata/users.hcl"})
	if _, err := old.Authenticate("alice", []byte("wonderland"), true); err != nil {
		t.Errorf("old form: %v", err)
	}
	mixed := open(t, conf.VirtualHost{Name: "mixed", UsersFile: writeUsers(t, scramUsers...)})
	for _, u := range scramUsers {
		if _, err := mixed.Authenticate(u.name, []byte(u.password), true); err != nil {
			t.Errorf("password of %s: %v", u.name, err)
		}
	}
	if _, _, err := login(t, mixed, "bob", "builder"); !errors.Is(err, virtualhost.ErrBadCredentials) {
		t.Errorf("SCRAM for a user without credentials: %v", err)
	}
}
