package protocol

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdg-go/scram"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// scramHost opens a host whose users file has alice ("wonderland") with SCRAM credentials.
func scramHost(t *testing.T, maxConns int) *virtualhost.Host {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := virtualhost.NewSCRAMCredentials("wonderland", conf.SCRAMIterations)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users.hcl")
	u := conf.User{Name: "alice", PasswordHash: string(hash), SCRAM: cred}
	if err := os.WriteFile(path, []byte(u.Format()), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := virtualhost.Open(conf.VirtualHost{Name: "h", UsersFile: path, MaxConnections: maxConns}, router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// scramExchange runs user's SCRAM-SHA-256 exchange with password against h with the library's client and
// returns the exchange and Step's final error.
func scramExchange(t *testing.T, h *virtualhost.Host, user, password string) (virtualhost.AuthExchange, error) {
	t.Helper()
	c, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := c.NewConversation()
	x, ok := h.StartAuth(virtualhost.MethodSCRAMSHA256)
	if !ok {
		t.Fatal("SCRAM-SHA-256 not offered")
	}
	c1, _ := conv.Step("")
	s1, done, err := x.Step([]byte(c1))
	if done || err != nil {
		t.Fatalf("client-first: %v", err)
	}
	c2, err := conv.Step(string(s1))
	if err != nil {
		t.Fatal(err)
	}
	_, done, err = x.Step([]byte(c2))
	if !done {
		t.Fatal("not done after client-final")
	}
	return x, err
}

// LoginAuth takes a slot, counts and logs refusals and waits the throttle's delay, as Login does.
func TestLoginAuth(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	c, _ := pipeConn(t, func(s *Server) { s.log = zap.New(core) })
	h := scramHost(t, 1)
	h.Throttle = &virtualhost.Throttle{Free: 1, Base: 50 * time.Millisecond}
	var r Refusals

	x, err := scramExchange(t, h, "alice", "wonderland")
	p, err := LoginAuth(c, h, x, err, "c1", &r)
	if err != nil || p.User != "alice" || !p.Authenticated || h.Connections() != 1 {
		t.Fatalf("LoginAuth = %+v, %v; connections %d", p, err, h.Connections())
	}
	// The host's only slot is taken.
	x, err = scramExchange(t, h, "alice", "wonderland")
	if _, err := LoginAuth(c, h, x, err, "c2", &r); !errors.Is(err, ErrHostFull) || h.Connections() != 1 {
		t.Fatalf("second login: %v, connections %d", err, h.Connections())
	}
	h.Release()

	// The first failure is free, the second waits 50 ms.
	for i, want := range []time.Duration{0, 50 * time.Millisecond} {
		x, err := scramExchange(t, h, "mallory", "wonderland")
		start := time.Now()
		_, err = LoginAuth(c, h, x, err, "c3", &r)
		if took := time.Since(start); !errors.Is(err, virtualhost.ErrBadCredentials) || took < want || (want == 0 && took > 40*time.Millisecond) {
			t.Errorf("failure %d: %v after %v, want a wait of %v", i, err, took, want)
		}
	}
	if n := r.Logins.Load(); n != 3 {
		t.Errorf("refusals = %d, want 3", n)
	}
	refused := logs.FilterMessage("login refused").All()
	if len(refused) != 3 {
		t.Fatalf("log lines: %v", logs.All())
	}
	if f := refused[2].ContextMap(); f["user"] != "mallory" || f["client_id"] != "c3" || f["vhost"] != "h" || f["delay"] != 50*time.Millisecond {
		t.Errorf("log fields %v", f)
	}
	if h.Connections() != 0 {
		t.Errorf("connections = %d after refusals", h.Connections())
	}
}

// A refused login's delay ends when the connection closes.
func TestLoginAuthDelayEndsWithConnection(t *testing.T) {
	c, _ := pipeConn(t, nil)
	h := scramHost(t, 0)
	h.Throttle = &virtualhost.Throttle{Free: -1, Base: time.Minute, Max: time.Minute} // no free failure (0 means the default)
	x, err := scramExchange(t, h, "alice", "nope")
	time.AfterFunc(20*time.Millisecond, func() { c.Close(errTest) })
	start := time.Now()
	if _, err := LoginAuth(c, h, x, err, "c", &Refusals{}); !errors.Is(err, virtualhost.ErrBadCredentials) || time.Since(start) > 10*time.Second {
		t.Errorf("%v after %v", err, time.Since(start))
	}
}
