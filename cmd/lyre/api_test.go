package main

// The management REST API of a whole broker: HTTP publish reaching MQTT 5 and STOMP clients, a dead-letter
// queue replayed through the API, a client kicked and its session deleted, persistent publishes that
// survive a restart.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
)

// apiConfig: one autodetecting port with management on, a durable host with users (%s: the store
// directory) whose rules give each user one role.
const apiConfig = `
connector "auto" {
  bind       = "tcp://127.0.0.1:0"
  detect     = ["mqtt", "stomp", "http"]
  management = true
  stomp { max_message_length = "1KB" }
}
virtual_host "main" {
  host_names = ["localhost", "127.0.0.1"]
  users_file = "users.hcl"
  store { directory = %q }
  queue "work.*" {
    nak_limit = 1
    dlq       = "dlq.*"
  }
  access_rule {
    allow = ["ops"]
  }
  access_rule {
    allow  = ["backend"]
    action = ["send"]
    kind   = "topic"
    id     = "sensors.**"
  }
  access_rule {
    allow  = ["backend"]
    action = ["send"]
    kind   = "queue"
    id     = "work.*"
  }
  access_rule {
    allow  = ["watcher"]
    action = ["monitor"]
    kind   = "virtual_host"
  }
  access_rule {
    allow  = ["+"]
    action = ["send"]
    kind   = "topic"
    id     = "status.%%u.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["connect", "receive", "consume"]
  }
}
`

// apiUsers and their passwords: alice operates (everything), bob publishes, carol watches, dave
// connects, reads and sends his status.
var apiUsers = map[string]struct{ pass, group string }{
	"alice": {"alice-api", "ops"},
	"bob":   {"bob-api", "backend"},
	"carol": {"carol-api", "watcher"},
	"dave":  {"dave-api", "devices"},
}

type apiBroker struct {
	t    *testing.T
	b    *Broker
	addr string
	dir  string
}

// startAPIBroker writes the users file and runs a broker with apiConfig in dir (a new one when "").
func startAPIBroker(t *testing.T, dir string) *apiBroker {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
		var users strings.Builder
		for name, u := range apiUsers {
			fmt.Fprintf(&users, "user %q {\n  password = %q\n  groups = [%q]\n}\n", name, hashFor(t, u.pass), u.group)
		}
		writeFile(t, filepath.Join(dir, "users.hcl"), users.String())
		writeFile(t, filepath.Join(dir, "lyre.hcl"), fmt.Sprintf(apiConfig, filepath.Join(dir, "data")))
	}
	cfg, err := conf.Load(filepath.Join(dir, "lyre.hcl"))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	b, err := Start(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	ab := &apiBroker{t: t, b: b, addr: b.Addrs()["auto"].String(), dir: dir}
	t.Cleanup(func() { ab.stop() })
	return ab
}

// stop shuts the broker down (once).
func (ab *apiBroker) stop() {
	if ab.b != nil {
		shutdown(ab.t, ab.b)
		ab.b = nil
	}
}

// call makes an API request as user (none when "") and decodes the JSON answer (an error's too) into out
// when not nil; it returns the status.
func (ab *apiBroker) call(method, path, user, body string, out any, headers ...string) int {
	ab.t.Helper()
	req, err := http.NewRequest(method, "http://"+ab.addr+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		ab.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, apiUsers[user].pass)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ab.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ab.t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			ab.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// must is call failing the test unless the status is want.
func (ab *apiBroker) must(want int, method, path, user, body string, out any, headers ...string) {
	ab.t.Helper()
	if got := ab.call(method, path, user, body, out, headers...); got != want {
		ab.t.Fatalf("%s %s as %q: status %d, want %d", method, path, user, got, want)
	}
}

func (ab *apiBroker) stomp(user string) *stomp.Conn {
	ab.t.Helper()
	return stompLogin(ab.t, ab.addr, "", user, apiUsers[user].pass)
}

// An HTTP publish reaches an MQTT 5 subscriber (QoS, content type, X-Lyre-* headers as user properties,
// expiry) and a STOMP queue consumer; who may publish, and how large, is enforced.
func TestAPIPublishReachesMQTTAndSTOMP(t *testing.T) {
	ab := startAPIBroker(t, "")
	sub := dialV5(t, ab.addr, &paho5.Connect{ClientID: "sub5", CleanStart: true, UsernameFlag: true, Username: "dave",
		PasswordFlag: true, Password: []byte(apiUsers["dave"].pass)})
	sub.sub(0, paho5.SubscribeOptions{Topic: "sensors/+/temp", QoS: 2})
	st := ab.stomp("dave")
	q, err := st.Subscribe("/queue/work.a", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}

	ab.must(201, "POST", "/vhosts/main/topics/sensors.k1.temp?qos=1&ttl=60s", "bob", `{"c": 21.5}`, nil,
		"Content-Type: application/json", "X-Lyre-Order-Id: 7", "X-Lyre-Site: north")
	m := sub.next(5 * time.Second)
	if m.Topic != "sensors/k1/temp" || string(m.Payload) != `{"c": 21.5}` || m.QoS != 1 || m.Properties.ContentType != "application/json" {
		t.Errorf("MQTT 5 message: %s %q qos %d content type %q", m.Topic, m.Payload, m.QoS, m.Properties.ContentType)
	}
	if v, _ := userProp(m.Properties.User, "order-id"); v != "7" {
		t.Errorf("user properties %v", m.Properties.User)
	}
	if e := m.Properties.MessageExpiry; e == nil || *e < 55 || *e > 60 {
		t.Errorf("message expiry %v, want about 60 s", e)
	}

	var ans struct {
		MessageID uint64 `json:"message_id"`
	}
	ab.must(201, "POST", "/vhosts/main/queues/work.a?persistent=true", "bob", "job 1", &ans, "X-Lyre-Priority: 4")
	got := readStomp(t, q)
	if string(got.Body) != "job 1" || got.Header.Get("message-id") != fmt.Sprint(ans.MessageID) ||
		got.Header.Get("persistent") != "true" || got.Header.Get("priority") != "4" {
		t.Errorf("STOMP message %q %v", got.Body, got.Header)
	}
	if err := st.Ack(got); err != nil {
		t.Fatal(err)
	}

	ab.must(403, "POST", "/vhosts/main/topics/alerts.x", "bob", "x", nil)                     // no send there
	ab.must(403, "POST", "/vhosts/main/queues/work.a", "carol", "x", nil)                     // monitor is not send
	ab.must(401, "POST", "/vhosts/main/queues/work.a", "", "x", nil)                          // not an anonymous host
	ab.must(413, "POST", "/vhosts/main/queues/work.a", "bob", strings.Repeat("x", 1025), nil) // stomp's 1KB
	ab.must(201, "POST", "/vhosts/main/queues/work.a", "bob", strings.Repeat("x", 1024), nil)
	ab.must(401, "POST", "/vhosts/other/queues/work.a", "bob", "x", nil) // no such host: as wrong credentials
	sub.none(100*time.Millisecond, "refused publishes")
}

// A dead-letter queue replayed through the API: exactly the messages a consumer refused go back, once.
func TestAPIReplayDeadLetters(t *testing.T) {
	ab := startAPIBroker(t, "")
	for i := range 6 {
		ab.must(201, "POST", "/vhosts/main/queues/work.jobs?persistent=true", "bob", fmt.Sprint("job", i), nil)
	}
	st := ab.stomp("dave")
	sub, err := st.Subscribe("/queue/work.jobs", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	// The consumer refuses the odd ones; nak_limit 1 sends them to dlq.work.jobs at once. Acks and nacks
	// from another goroutine than the reader of sub.C (go-stomp).
	acks := make(chan func() error, 16)
	done := make(chan error, 1)
	go func() {
		var err error
		for f := range acks {
			if e := f(); e != nil && err == nil {
				err = e
			}
		}
		done <- err
	}()
	for range 6 {
		m := readStomp(t, sub)
		if b := string(m.Body); b == "job1" || b == "job3" || b == "job5" {
			acks <- func() error { return st.Nack(m) }
		} else {
			acks <- func() error { return st.Ack(m) }
		}
	}
	close(acks)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var dlq struct{ Depth int }
	prototest.WaitForErr(t, 5*time.Second, func() error {
		if s := ab.call("GET", "/vhosts/main/queues/dlq.work.jobs", "carol", "", &dlq); s != 200 || dlq.Depth != 3 {
			return fmt.Errorf("dead-letter queue: status %d, %+v", s, dlq)
		}
		return nil
	})
	ab.must(403, "POST", "/vhosts/main/queues/dlq.work.jobs/move", "carol", `{"to": "work.jobs"}`, nil)
	var moved struct{ Moved int }
	ab.must(200, "POST", "/vhosts/main/queues/dlq.work.jobs/move", "alice", `{"to": "work.jobs"}`, &moved)
	if moved.Moved != 3 {
		t.Fatalf("moved %d, want 3", moved.Moved)
	}
	var replayed []string
	for range 3 {
		m := readStomp(t, sub)
		replayed = append(replayed, string(m.Body))
		if err := st.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	if slices.Sort(replayed); !slices.Equal(replayed, []string{"job1", "job3", "job5"}) {
		t.Errorf("replayed %q, want the three dead ones", replayed)
	}
	select {
	case m := <-sub.C:
		t.Errorf("one more message after the replay: %q", m.Body)
	case <-time.After(200 * time.Millisecond):
	}
	// Emptied, with a consumer: work.jobs is listed; the dead-letter queue, empty with none, is forgotten.
	var work struct{ Depth, Unacked, Consumers int }
	prototest.WaitForErr(t, 5*time.Second, func() error {
		ab.must(200, "GET", "/vhosts/main/queues/work.jobs", "carol", "", &work)
		if s := ab.call("GET", "/vhosts/main/queues/dlq.work.jobs", "carol", "", nil); work.Depth != 0 || work.Unacked != 0 || s != 404 {
			return fmt.Errorf("after the replay: work %+v, dlq status %d", work, s)
		}
		return nil
	})
}

// An operator kicks an MQTT client (its will is published, as for a dropped connection), then deletes
// its offline session; a persistent message published over HTTP is still there after a restart.
func TestAPIKickDeleteSessionRestart(t *testing.T) {
	ab := startAPIBroker(t, "")
	watch := mqttLogin(t, ab.addr, "watch", "dave", apiUsers["dave"].pass)
	wills, code := mqttSubscribeCode(t, watch, "status/#")
	if code > 2 {
		t.Fatalf("subscribe refused: %#x", code)
	}
	opts := paho.NewClientOptions().AddBroker("tcp://"+ab.addr).SetClientID("dev1").SetProtocolVersion(4).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).SetUsername("dave").
		SetPassword(apiUsers["dave"].pass).SetWill("status/dave/dev1", "gone", 1, false)
	dev := paho.NewClient(opts)
	if tok := dev.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer dev.Disconnect(0)
	if tok := dev.Subscribe("cmd/dev1", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	var conns struct {
		Items []struct {
			ID       uint64 `json:"id"`
			ClientID string `json:"client_id"`
		} `json:"items"`
	}
	ab.must(200, "GET", "/vhosts/main/connections", "carol", "", &conns)
	var id uint64
	for _, c := range conns.Items {
		if c.ClientID == "dev1" {
			id = c.ID
		}
	}
	if id == 0 {
		t.Fatalf("dev1 not listed: %+v", conns.Items)
	}
	ab.must(403, "DELETE", fmt.Sprintf("/vhosts/main/connections/%d", id), "carol", "", nil)
	ab.must(409, "DELETE", "/vhosts/main/sessions/dev1", "alice", "", nil)
	ab.must(204, "DELETE", fmt.Sprintf("/vhosts/main/connections/%d", id), "alice", "", nil)
	waitPayloadAPI(t, wills, "gone")
	prototest.WaitFor(t, 5*time.Second, func() bool {
		return ab.call("DELETE", "/vhosts/main/sessions/dev1", "alice", "", nil) == http.StatusNoContent
	})
	ab.must(404, "DELETE", "/vhosts/main/sessions/dev1", "alice", "", nil)

	ab.must(201, "POST", "/vhosts/main/queues/work.keep?persistent=true", "bob", "kept", nil)
	ab.must(201, "POST", "/vhosts/main/queues/work.gone", "bob", "not kept", nil)
	watch.Disconnect(100)
	ab.stop()
	ab = startAPIBroker(t, ab.dir)
	var q struct{ Depth int }
	ab.must(200, "GET", "/vhosts/main/queues/work.keep", "carol", "", &q)
	ab.must(404, "GET", "/vhosts/main/queues/work.gone", "carol", "", nil)
	var sessions struct {
		Total int `json:"total"`
	}
	ab.must(200, "GET", "/vhosts/main/sessions", "carol", "", &sessions)
	if q.Depth != 1 || sessions.Total != 0 {
		t.Errorf("after a restart: work.keep %+v, %d sessions", q, sessions.Total)
	}
}

// waitPayloadAPI waits for a message with payload want on ch.
func waitPayloadAPI(t *testing.T, ch <-chan paho.Message, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-ch:
			if string(m.Payload()) == want {
				return
			}
		case <-deadline:
			t.Fatalf("no %q", want)
		}
	}
}

// POST /api/v1/reload applies an edited configuration (a user added to the users file can publish at
// once), refuses a broken one whole with its file:line:col, and is for admins on kind broker only.
func TestAPIReload(t *testing.T) {
	ab := startAPIBroker(t, "")
	ab.must(403, "POST", "/reload", "carol", "", nil)
	ab.must(200, "POST", "/reload", "alice", "", nil)

	users := filepath.Join(ab.dir, "users.hcl")
	writeFile(t, users, readFileAPI(t, users)+fmt.Sprintf("user \"erin\" {\n  password = %q\n  groups = [\"backend\"]\n}\n", hashFor(t, "erin-api")))
	apiUsers["erin"] = struct{ pass, group string }{"erin-api", "backend"}
	t.Cleanup(func() { delete(apiUsers, "erin") })
	ab.must(401, "POST", "/vhosts/main/topics/sensors.x", "erin", "before", nil)
	ab.must(200, "POST", "/reload", "alice", "", nil)
	ab.must(201, "POST", "/vhosts/main/topics/sensors.x", "erin", "after", nil)

	cfg := filepath.Join(ab.dir, "lyre.hcl")
	good := readFileAPI(t, cfg)
	writeFile(t, cfg, strings.Replace(good, "detect ", "detct  ", 1))
	var refused struct {
		Error string `json:"error"`
	}
	ab.must(400, "POST", "/reload", "alice", "", &refused)
	if !strings.Contains(refused.Error, cfg+":4:3: unknown attribute") || !strings.Contains(refused.Error, `"detct"`) {
		t.Errorf("refusal %q, want the file:line:col of the typo", refused.Error)
	}
	ab.must(201, "POST", "/vhosts/main/topics/sensors.x", "erin", "still running", nil)
}

func readFileAPI(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
