package management_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/mqtt"
	"github.com/lyremq/lyre/protocol/prototest"
	lstomp "github.com/lyremq/lyre/protocol/stomp"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/memstore"
	"github.com/lyremq/lyre/virtualhost"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-stomp's reader finishes after Disconnect returns.
		goleak.IgnoreAnyFunction("github.com/go-stomp/stomp/v3.readLoop"),
		goleak.IgnoreTopFunction("github.com/eclipse/paho.mqtt.golang.(*client).startCommsWorkers.func1"),
	)
}

// The users of host "a" and their passwords; each user's name is its group too.
var passwords = map[string]string{
	"admin":  "admin-pw",  // everything, broker-wide too
	"ops":    "ops-pw",    // monitor on kind broker and on the host
	"tenant": "tenant-pw", // monitor on the host only
	"pub":    "pub-pw",    // send to topics sensors.** and queues jobs.*
	"nobody": "nobody-pw", // connect only
}

// fixtureConfig is the fixture's configuration: one autodetecting connector with management on (its
// STOMP max_message_length the smaller of its two), host "a" with users and one rule per role (first match
// wins, no match denies), host "b" anonymous and durable (its store held at will) with a smaller
// max_message_length and a queue policy holding one message. %s: b's store directory. $SYS is off: its
// retained values would be in every count and listing of retained messages (sys_test.go tests it).
const fixtureConfig = `
sys_interval = "0s"
connector "web" {
  bind       = "tcp://127.0.0.1:0"
  detect     = ["mqtt", "stomp", "http"]
  management = true
  mqtt  { max_message_length = "4KB" }
  stomp { max_message_length = "2KB" }
}
virtual_host "a" {
  host_names = ["a.example"]
  users_file = "users.hcl"
  access_rule {
    allow = ["admin"]
  }
  access_rule {
    allow  = ["ops"]
    action = ["monitor"]
    kind   = "broker"
  }
  access_rule {
    allow  = ["ops", "tenant"]
    action = ["monitor"]
    kind   = "virtual_host"
  }
  access_rule {
    allow  = ["pub"]
    action = ["send"]
    kind   = "topic"
    id     = "sensors.**"
  }
  access_rule {
    allow  = ["pub"]
    action = ["send"]
    kind   = "queue"
    id     = "jobs.*"
  }
  access_rule {
    allow  = ["+"]
    action = ["connect"]
  }
}
virtual_host "b" {
  anonymous          = true
  max_message_length = 512
  store { directory = %q }
  queue "small.*" {
    quota_messages = 1
  }
}
`

// Limits of the fixture: the connector's STOMP max_message_length is the smaller of its two, host b's
// own limit smaller still.
const (
	connectorLimit = 2048
	hostBLimit     = 512
)

// fixture is a broker in miniature serving the management API the way cmd/lyre does: a protocol.Server
// with the MQTT and STOMP front-ends and one autodetecting connector with management on. Host "a" has
// users and rules; host "b" is anonymous and durable, its store held at will (holdStore).
type fixture struct {
	t     *testing.T
	addr  string // the connector: MQTT, STOMP and HTTP
	base  string // http://addr/api/v1
	hosts *virtualhost.Registry
	srv   *protocol.Server
	m     *management.Manager
	held  *holdStore
}

func newFixture(t *testing.T, opts ...func(*management.Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	var users strings.Builder
	for u, pw := range passwords {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&users, "user %q {\n  password = %q\n  groups = [%q]\n}\n", u, h, u)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.hcl"), []byte(users.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lyre.hcl")
	if err := os.WriteFile(path, fmt.Appendf(nil, fixtureConfig, filepath.Join(dir, "b")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a := virtualhost.New(cfg.VirtualHosts[0], router.Options{})
	held := &holdStore{Store: memstore.New(memstore.Options{})}
	b := virtualhost.New(cfg.VirtualHosts[1], router.Options{}, virtualhost.WithStore(held))
	for _, h := range []*virtualhost.Host{a, b} {
		h.Throttle = &virtualhost.Throttle{Free: 3, Base: time.Millisecond, Max: 5 * time.Millisecond}
	}
	hosts := virtualhost.NewRegistry(a, b)
	log := zaptest.NewLogger(t)
	mh, sh := mqtt.NewHandler(hosts, log), lstomp.NewHandler(hosts, log)
	t.Cleanup(func() { mh.Close(); hosts.Close() }) // after the server's shutdown (cleanups run last first)
	c := cfg.Connectors[0]
	f := &fixture{t: t, hosts: hosts, held: held}
	o := management.Options{Version: "test", Hosts: hosts, Sessions: mh, Config: func() *conf.Config { return cfg },
		Log: log.Named("management")}
	for _, fn := range opts {
		fn(&o)
	}
	// The server is made before it listens, so the manager can be given it.
	srv, addrs := startWithManager(t, map[string]protocol.Handler{"mqtt": mh, "stomp": sh}, c, &o, &f.m)
	f.srv, f.addr, f.base = srv, addrs, "http://"+addrs+"/api/v1"
	return f
}

// startWithManager starts a server with connector c whose management handler is a Manager made from o
// (with Server set), stored in *m.
func startWithManager(t *testing.T, handlers map[string]protocol.Handler, c conf.Connector, o *management.Options, m **management.Manager) (*protocol.Server, string) {
	t.Helper()
	var mgr *management.Manager
	srv, addrs := prototest.StartServerWith(t, handlers, func(s *protocol.Server) {
		o.Server = s
		mgr = management.New(*o)
		s.SetManagement(mgr)
	}, c)
	t.Cleanup(mgr.Close)
	*m = mgr
	return srv, addrs[0]
}

// holdStore is a store whose commits can be held back until the test releases them, to see what waits
// for the store.
type holdStore struct {
	store.Store
	mu      sync.Mutex
	holding bool
	held    []func()
}

func (s *holdStore) CommitFunc(done func(error), ops ...store.Op) {
	s.mu.Lock()
	if s.holding {
		s.held = append(s.held, func() { s.Store.CommitFunc(done, ops...) })
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.Store.CommitFunc(done, ops...)
}

func (s *holdStore) Commit(ops ...store.Op) <-chan error {
	ch := make(chan error, 1)
	s.CommitFunc(func(err error) { ch <- err }, ops...)
	return ch
}

// hold starts holding commits back.
func (s *holdStore) hold() {
	s.mu.Lock()
	s.holding = true
	s.mu.Unlock()
}

// heldCommits is the number of commits waiting.
func (s *holdStore) heldCommits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// release commits what was held, in order, and stops holding.
func (s *holdStore) release() {
	s.mu.Lock()
	held := s.held
	s.held, s.holding = nil, false
	s.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// request is one API call: method, path under /api/v1, credentials ("" user: none), body and headers
// ("Name: value").
type request struct {
	method, path, user string
	pass               string // the password when not the user's own (a name like "user@host")
	body               string
	headers            []string
}

// do runs req and returns the status and body; it fails the test when the request cannot be made.
func (f *fixture) do(req request) (int, []byte) {
	f.t.Helper()
	resp := f.send(req)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	return resp.StatusCode, b
}

func (f *fixture) send(req request) *http.Response {
	f.t.Helper()
	r, err := http.NewRequest(req.method, f.base+req.path, strings.NewReader(req.body))
	if err != nil {
		f.t.Fatal(err)
	}
	if req.user != "" {
		pw, ok := passwords[req.user]
		if !ok {
			pw = "wrong"
		}
		if req.pass != "" {
			pw = req.pass
		}
		r.SetBasicAuth(req.user, pw)
	}
	for _, h := range req.headers {
		k, v, _ := strings.Cut(h, ":")
		r.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	return resp
}

// expect runs req, checks its status and decodes a JSON answer into out (when not nil).
func (f *fixture) expect(req request, status int, out any) {
	f.t.Helper()
	got, body := f.do(req)
	if got != status {
		f.t.Fatalf("%s %s as %q: status %d, want %d: %s", req.method, req.path, req.user, got, status, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			f.t.Fatalf("%s %s: %v in %s", req.method, req.path, err, body)
		}
	}
}

// stompOn connects a STOMP client to host vhost (anonymous when user is "").
func (f *fixture) stompOn(vhost, user string) *stomp.Conn {
	f.t.Helper()
	opts := []func(*stomp.Conn) error{stomp.ConnOpt.Host(vhost), stomp.ConnOpt.Logger(prototest.NopStompLogger{})}
	if user != "" {
		opts = append(opts, stomp.ConnOpt.Login(user, passwords[user]))
	}
	c, err := stomp.Dial("tcp", f.addr, opts...)
	if err != nil {
		f.t.Fatalf("stomp connect to %s: %v", vhost, err)
	}
	f.t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// readStomp waits for the next message of sub.
func readStomp(t *testing.T, sub *stomp.Subscription) *stomp.Message {
	t.Helper()
	select {
	case m := <-sub.C:
		if m.Err != nil {
			t.Fatalf("stomp read: %v", m.Err)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no STOMP message on %s", sub.Destination())
	}
	return nil
}

// waitSubscriptions waits until host vhost has n topic subscriptions (a STOMP SUBSCRIBE is not answered).
func (f *fixture) waitSubscriptions(vhost string, n int) {
	f.t.Helper()
	prototest.WaitFor(f.t, 5*time.Second, func() bool { return f.hosts.Lookup(vhost).Router.Stats().Subscriptions == n })
}
