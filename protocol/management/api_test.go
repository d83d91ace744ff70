package management_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/prototest"
)

// mqttSession connects an MQTT 3.1.1 client with a persistent session (clean session off) and
// subscribes it to filter at QoS 1.
func (f *fixture) mqttSession(id, user, filter string) paho.Client {
	f.t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + f.addr).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetUsername(user).SetPassword(passwords[user])
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		f.t.Fatalf("mqtt connect %s: %v", id, tok.Error())
	}
	f.t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe(filter, 1, func(paho.Client, paho.Message) {}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		f.t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return c
}

// connID returns the id of the live connection whose client id is clientID.
func (f *fixture) connID(clientID string) uint64 {
	f.t.Helper()
	for _, c := range f.srv.Connections() {
		if c.Session.ClientID == clientID {
			return c.ID
		}
	}
	f.t.Fatalf("no connection of client %q", clientID)
	return 0
}

// Every route, with a user allowed and one refused (403), and without credentials (401); the table
// covers every route the manager registers.
func TestEndpointAuthorization(t *testing.T) {
	f := newFixture(t)
	for i := range 2 {
		f.expect(request{method: "POST", path: "/vhosts/a/queues/jobs.q", user: "pub", body: fmt.Sprint(i)}, http.StatusCreated, nil)
	}
	f.expect(request{method: "POST", path: "/vhosts/a/topics/sensors.r?retain=true", user: "pub", body: "r"}, http.StatusCreated, nil)
	gone := f.mqttSession("gone", "admin", "sensors/#")
	gone.Disconnect(100)
	prototest.WaitFor(t, 5*time.Second, func() bool { return len(f.srv.Connections()) == 0 })
	f.mqttOn("live", "admin")
	live := f.connID("live")

	cases := []struct {
		route, method, path, body string
		allowed                   string
		status                    int
		refused                   string
	}{
		{"GET /api/v1/broker", "GET", "/broker", "", "ops", 200, "tenant"},
		{"POST /api/v1/reload", "POST", "/reload", "", "admin", 501, "ops"},
		{"GET /api/v1/vhosts", "GET", "/vhosts", "", "tenant", 200, "pub"},
		{"GET /api/v1/connections", "GET", "/connections", "", "ops", 200, "tenant"},
		{"GET /api/v1/cluster", "GET", "/cluster", "", "ops", 404, "tenant"},
		{"GET /api/v1/vhosts/{vhost}", "GET", "/vhosts/a", "", "tenant", 200, "pub"},
		{"GET /api/v1/vhosts/{vhost}/connections", "GET", "/vhosts/a/connections", "", "tenant", 200, "pub"},
		{"DELETE /api/v1/vhosts/{vhost}/connections/{id}", "DELETE", fmt.Sprintf("/vhosts/a/connections/%d", live), "", "admin", 204, "tenant"},
		{"GET /api/v1/vhosts/{vhost}/sessions", "GET", "/vhosts/a/sessions", "", "tenant", 200, "pub"},
		{"DELETE /api/v1/vhosts/{vhost}/sessions/{client_id}", "DELETE", "/vhosts/a/sessions/gone", "", "admin", 204, "ops"},
		{"GET /api/v1/vhosts/{vhost}/queues", "GET", "/vhosts/a/queues", "", "tenant", 200, "pub"},
		{"GET /api/v1/vhosts/{vhost}/queues/{name}", "GET", "/vhosts/a/queues/jobs.q", "", "tenant", 200, "pub"},
		{"POST /api/v1/vhosts/{vhost}/queues/{name}/move", "POST", "/vhosts/a/queues/jobs.q/move", `{"to": "jobs.other", "max": 1}`, "admin", 200, "tenant"},
		{"DELETE /api/v1/vhosts/{vhost}/queues/{name}/messages", "DELETE", "/vhosts/a/queues/jobs.q/messages", "", "admin", 200, "ops"},
		{"DELETE /api/v1/vhosts/{vhost}/queues/{name}", "DELETE", "/vhosts/a/queues/jobs.other", "", "admin", 204, "tenant"},
		{"GET /api/v1/vhosts/{vhost}/topics", "GET", "/vhosts/a/topics", "", "tenant", 200, "pub"},
		{"GET /api/v1/vhosts/{vhost}/dsubs", "GET", "/vhosts/a/dsubs", "", "tenant", 200, "pub"},
		{"GET /api/v1/vhosts/{vhost}/retained", "GET", "/vhosts/a/retained", "", "tenant", 200, "pub"},
		{"DELETE /api/v1/vhosts/{vhost}/retained/{name}", "DELETE", "/vhosts/a/retained/sensors.r", "", "admin", 204, "tenant"},
		{"POST /api/v1/vhosts/{vhost}/topics/{name}", "POST", "/vhosts/a/topics/sensors.x", "x", "pub", 201, "ops"},
		{"POST /api/v1/vhosts/{vhost}/queues/{name}", "POST", "/vhosts/a/queues/jobs.x", "x", "pub", 201, "tenant"},
	}
	covered := []string{"GET /api/v1/openapi.json"} // public: TestOpenAPICoversRoutes
	for _, c := range cases {
		covered = append(covered, c.route)
		for _, try := range []struct {
			user   string
			status int
		}{{"", http.StatusUnauthorized}, {c.refused, http.StatusForbidden}, {c.allowed, c.status}} {
			if status, body := f.do(request{method: c.method, path: c.path, user: try.user, body: c.body}); status != try.status {
				t.Errorf("%s %s as %q: status %d, want %d: %s", c.method, c.path, try.user, status, try.status, body)
			}
		}
	}
	slices.Sort(covered)
	if routes := management.APIPatterns(f.m); !slices.Equal(covered, routes) {
		t.Errorf("the table covers %q\nthe manager registers %q", covered, routes)
	}
}

// GET /api/v1/broker: version, uptime, the configuration in short, per-connector counters and totals.
func TestBrokerInfo(t *testing.T) {
	f := newFixture(t)
	f.expect(request{method: "POST", path: "/vhosts/b/topics/t", body: "hello"}, http.StatusCreated, nil)
	mc := f.mqttOn("c1", "admin")
	if tok := mc.Publish("sensors/x", 1, false, "21"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	var b struct {
		Version       string    `json:"version"`
		Started       time.Time `json:"started"`
		UptimeSeconds int64     `json:"uptime_seconds"`
		Config        struct {
			Source     string `json:"source"`
			Connectors []struct {
				Name       string   `json:"name"`
				Protocols  []string `json:"protocols"`
				Management bool     `json:"management"`
			} `json:"connectors"`
			VirtualHosts []string `json:"virtual_hosts"`
			SysInterval  string   `json:"sys_interval"`
		} `json:"config"`
		Connectors []struct {
			Name     string            `json:"name"`
			Active   int               `json:"active"`
			Accepted int               `json:"accepted"`
			Refused  map[string]uint64 `json:"refused"`
			Traffic  []struct {
				Protocol   string `json:"protocol"`
				VHost      string `json:"vhost"`
				MessagesIn uint64 `json:"messages_in"`
				BytesIn    uint64 `json:"bytes_in"`
			} `json:"traffic"`
		} `json:"connectors"`
		Totals struct {
			BytesIn uint64 `json:"bytes_in"`
		} `json:"totals"`
	}
	f.expect(request{method: "GET", path: "/broker", user: "admin"}, http.StatusOK, &b)
	c := b.Config
	if b.Version != "test" || b.Started.IsZero() || b.UptimeSeconds < 0 || !strings.HasSuffix(c.Source, "lyre.hcl") ||
		!slices.Equal(c.VirtualHosts, []string{"a", "b"}) || c.SysInterval != "0s" || len(c.Connectors) != 1 ||
		!c.Connectors[0].Management || !slices.Equal(c.Connectors[0].Protocols, []string{"mqtt", "stomp"}) {
		t.Errorf("broker: %+v", b)
	}
	if len(b.Connectors) != 1 || b.Connectors[0].Name != "web" || b.Connectors[0].Active < 2 ||
		b.Connectors[0].Accepted < 2 || len(b.Connectors[0].Refused) == 0 {
		t.Fatalf("connectors: %+v", b.Connectors)
	}
	var mqttIn, mqttMsgs uint64
	for _, tr := range b.Connectors[0].Traffic {
		if tr.Protocol == "mqtt" && tr.VHost == "a" {
			mqttIn, mqttMsgs = tr.BytesIn, tr.MessagesIn
		}
	}
	if mqttIn == 0 || mqttMsgs != 1 || b.Totals.BytesIn < mqttIn {
		t.Errorf("traffic: %+v, totals %+v", b.Connectors[0].Traffic, b.Totals)
	}
}

// GET /api/v1/vhosts lists every host for monitor on broker, the user's own host for monitor on it
// alone; paging cuts the list.
func TestHostsList(t *testing.T) {
	f := newFixture(t)
	type hostPage struct {
		Items []struct {
			Name      string `json:"name"`
			Durable   bool   `json:"durable"`
			Anonymous bool   `json:"anonymous"`
		} `json:"items"`
		Total int `json:"total"`
	}
	names := func(p hostPage) string {
		var s []string
		for _, h := range p.Items {
			s = append(s, fmt.Sprintf("%s:%v:%v", h.Name, h.Durable, h.Anonymous))
		}
		return strings.Join(s, ",")
	}
	var all, own, second hostPage
	f.expect(request{method: "GET", path: "/vhosts", user: "ops"}, http.StatusOK, &all)
	f.expect(request{method: "GET", path: "/vhosts", user: "tenant"}, http.StatusOK, &own)
	f.expect(request{method: "GET", path: "/vhosts?page=2&page_size=1", user: "admin"}, http.StatusOK, &second)
	if names(all) != "a:false:false,b:true:true" || names(own) != "a:false:false" || names(second) != "b:true:true" || second.Total != 2 {
		t.Errorf("all %s, own %s, page 2: %s of %d", names(all), names(own), names(second), second.Total)
	}
	f.expect(request{method: "GET", path: "/vhosts?page_size=0", user: "admin"}, http.StatusBadRequest, nil)
	f.expect(request{method: "GET", path: "/vhosts/nope", user: "admin"}, http.StatusNotFound, nil)
	// A user named for its host, user@host, as MQTT allows; and a host's alias in the path.
	f.expect(request{method: "GET", path: "/vhosts/a.example", user: "tenant@a", pass: passwords["tenant"]}, http.StatusOK, nil)
	var viaName hostPage
	f.expect(request{method: "GET", path: "/vhosts", user: "tenant@a", pass: passwords["tenant"]}, http.StatusOK, &viaName)
	if names(viaName) != "a:false:false" {
		t.Errorf("tenant@a sees %s", names(viaName))
	}
}

// GET /api/v1/vhosts/{vhost}: counters after known traffic.
func TestHostCounters(t *testing.T) {
	f := newFixture(t)
	st := f.stompOn("b", "")
	if _, err := st.Subscribe("/topic/t.*", 0); err != nil {
		t.Fatal(err)
	}
	f.waitSubscriptions("b", 1)
	f.expect(request{method: "POST", path: "/vhosts/b/topics/t.1?retain", body: "x"}, http.StatusCreated, nil)
	f.expect(request{method: "POST", path: "/vhosts/b/topics/nobody", body: "x"}, http.StatusCreated, nil)
	f.expect(request{method: "POST", path: "/vhosts/b/queues/q", body: "x"}, http.StatusCreated, nil)
	var h map[string]any
	f.expect(request{method: "GET", path: "/vhosts/b"}, http.StatusOK, &h)
	want := map[string]any{"name": "b", "durable": true, "anonymous": true, "connections": 1.0, "subscriptions": 1.0,
		"queues": 1.0, "retained": 1.0, "messages_published": 3.0, "messages_delivered": 1.0, "no_route": 1.0}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("%s = %v, want %v (in %v)", k, h[k], v, h)
		}
	}
	if d, _ := h["drops"].(map[string]any); d["total"] != 0.0 {
		t.Errorf("drops %v", h["drops"])
	}
}

// POST /api/v1/reload: 501 without a reload function, 400 with its error, 200 once applied.
func TestReload(t *testing.T) {
	calls := 0
	fail := true
	f := newFixture(t, func(o *management.Options) {
		o.Reload = func() error {
			calls++
			if fail {
				return fmt.Errorf("lyre.hcl:3:5: unknown attribute \"detct\"; did you mean \"detect\"?")
			}
			return nil
		}
	})
	var e struct {
		Error string `json:"error"`
	}
	f.expect(request{method: "POST", path: "/reload", user: "admin"}, http.StatusBadRequest, &e)
	if !strings.Contains(e.Error, "lyre.hcl:3:5: unknown attribute") {
		t.Errorf("error %q", e.Error)
	}
	fail = false
	f.expect(request{method: "POST", path: "/reload", user: "admin"}, http.StatusOK, nil)
	f.expect(request{method: "POST", path: "/reload", user: "ops"}, http.StatusForbidden, nil)
	if calls != 2 {
		t.Errorf("%d reloads, want 2", calls)
	}
}

// The OpenAPI document is served without login, parses as OpenAPI 3.1, and documents exactly the
// routes the manager registers, each with its methods.
func TestOpenAPICoversRoutes(t *testing.T) {
	f := newFixture(t)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	f.expect(request{method: "GET", path: "/openapi.json"}, http.StatusOK, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				documented = append(documented, strings.ToUpper(method)+" /api/v1"+path)
			}
		}
	}
	slices.Sort(documented)
	routes := management.APIPatterns(f.m)
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not documented", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("documented %s is not a route", d)
		}
	}
}
