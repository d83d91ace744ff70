package management_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// monitoredHost is a host with a monitoring user "mon" (monitor on the broker, receive on $SYS.**) and
// a user "plain" allowed nothing but connect.
func monitoredHost(t *testing.T, opts ...virtualhost.Option) *virtualhost.Host {
	t.Helper()
	dir := t.TempDir()
	var users string
	for _, u := range []string{"mon", "plain"} {
		h, err := bcrypt.GenerateFromPassword([]byte(u+"-pass"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		users += fmt.Sprintf("user %q {\n  password = %q\n}\n", u, h)
	}
	path := filepath.Join(dir, "users.hcl")
	if err := os.WriteFile(path, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	h := virtualhost.New(conf.VirtualHost{Name: "v", UsersFile: path, AccessRules: []conf.AccessRule{
		{Allow: []string{"mon"}, Actions: []string{"monitor"}, Kind: "broker"},
		{Allow: []string{"mon"}, Actions: []string{"receive"}, Kind: "topic", ID: "$SYS.**"},
		{Allow: []string{"+"}, Actions: []string{"connect"}},
	}}, router.Options{}, opts...)
	h.Throttle = &virtualhost.Throttle{Free: 100}
	t.Cleanup(h.Close)
	return h
}

func newManager(t *testing.T, cfg func() *conf.Config, hosts ...*virtualhost.Host) (*management.Manager, string) {
	t.Helper()
	m := management.New(management.Options{Version: "test", Hosts: virtualhost.NewRegistry(hosts...), Config: cfg})
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv.URL
}

func sysOff() *conf.Config { return &conf.Config{} }

// /metrics needs monitor on kind broker: 401 without credentials or with a wrong password, 403 for a
// user without it.
func TestMetricsNeedMonitorOnBroker(t *testing.T) {
	h := monitoredHost(t)
	_, url := newManager(t, sysOff, h)
	for _, c := range []struct {
		user, pass string
		want       int
	}{
		{"", "", http.StatusUnauthorized},
		{"mon", "wrong", http.StatusUnauthorized},
		{"plain", "plain-pass", http.StatusForbidden},
		{"mon", "mon-pass", http.StatusOK},
		{"mon@v", "mon-pass", http.StatusOK},
	} {
		if code, _ := prototest.ScrapeStatus(t, url+"/metrics", c.user, c.pass); code != c.want {
			t.Errorf("%q/%q: status %d, want %d", c.user, c.pass, code, c.want)
		}
	}
	resp, err := http.Post(url+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", resp.StatusCode)
	}
}

// Without a protocol server the host metrics come from the router alone; the Go and process
// collectors are there too.
func TestMetricsFromRouter(t *testing.T) {
	h := monitoredHost(t)
	_, url := newManager(t, sysOff, h)
	g, err := router.NewGrammar(router.MQTTGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	f, err := g.ParseFilter("a/#")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Router.Subscribe(&router.Subscription{Filter: f, Sink: nopSink{}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		h.Router.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"a", fmt.Sprint(i)}},
			Body: []byte("x"), Retain: true})
	}
	ms := prototest.Scrape(t, url+"/metrics", "mon", "mon-pass")
	for _, c := range []struct {
		name string
		want float64
	}{
		{"lyre_messages_published_total", 3},
		{"lyre_messages_delivered_total", 3},
		{"lyre_retained_messages", 3},
		{"lyre_subscriptions", 1},
		{"lyre_connections", 0},
	} {
		if got := ms.Get(t, c.name, "vhost", "v"); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if got := ms.Get(t, "lyre_build_info", "version", "test"); got != 1 {
		t.Errorf("lyre_build_info = %v", got)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "lyre_start_time_seconds"} {
		if ms[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if _, ok := ms["lyre_mqtt_sessions"]; ok {
		t.Error("session metrics without a Sessions source")
	}
}

type nopSink struct{}

func (nopSink) Deliver(router.Delivery) bool { return true }

// chanSink hands deliveries to the test.
type chanSink chan router.Delivery

func (s chanSink) Deliver(d router.Delivery) bool {
	select {
	case s <- d:
		return true
	default:
		return false
	}
}

// waitRetained waits until the retained message of $SYS/broker/<name> on h satisfies ok.
func waitRetained(t *testing.T, h *virtualhost.Host, name string, ok func(body string, found bool) bool) {
	t.Helper()
	g, err := router.NewGrammar(router.MQTTGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	f, err := g.ParseFilter("$SYS/broker/" + name)
	if err != nil {
		t.Fatal(err)
	}
	prototest.WaitForErr(t, 5*time.Second, func() error {
		rm := h.Router.Retained(f)
		body := ""
		if len(rm) > 0 {
			body = string(rm[0].Body)
		}
		if !ok(body, len(rm) > 0) {
			return fmt.Errorf("$SYS/broker/%s retained %q (%d)", name, body, len(rm))
		}
		return nil
	})
}
