package management_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"

	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/prototest"
)

// mqttOn connects an MQTT 3.1.1 client to the fixture's connector, which serves host "a" (the first).
func (f *fixture) mqttOn(id, user string) paho.Client {
	f.t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + f.addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetUsername(user).SetPassword(passwords[user])
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		f.t.Fatalf("mqtt connect %s: %v", id, tok.Error())
	}
	f.t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// A publish to a topic reaches an MQTT and a STOMP subscriber: body, QoS, content type and X-Lyre-*
// headers, under the destination each one's grammar names.
func TestPublishTopicReachesSubscribers(t *testing.T) {
	f := newFixture(t)
	st := f.stompOn("a", "admin")
	sub, err := st.Subscribe("/topic/sensors.k1.temp", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	mc := f.mqttOn("sub1", "admin")
	got := make(chan paho.Message, 1)
	if tok := mc.Subscribe("sensors/k1/temp", 2, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	f.waitSubscriptions("a", 2) // STOMP's SUBSCRIBE has no answer
	var ans struct {
		MessageID uint64 `json:"message_id"`
	}
	f.expect(request{method: "POST", path: "/vhosts/a/topics/sensors.k1.temp?qos=1", user: "pub", body: "21.5",
		headers: []string{"Content-Type: text/plain", "X-Lyre-Order-Id: 7", "X-Lyre-Unit: C", "X-Lyre-Unit: K"}},
		http.StatusCreated, &ans)
	if ans.MessageID == 0 {
		t.Error("no message id")
	}
	m := readStomp(t, sub)
	if string(m.Body) != "21.5" || m.ContentType != "text/plain" || m.Header.Get("order-id") != "7" ||
		m.Header.Get("persistent") != "true" || m.Header.Get("message-id") != strconv.FormatUint(ans.MessageID, 10) {
		t.Errorf("STOMP message: body %q, headers %v", m.Body, m.Header)
	}
	if units := m.Header.GetAll("unit"); strings.Join(units, ",") != "C,K" {
		t.Errorf("repeated header: %q", units)
	}
	select {
	case pm := <-got:
		if string(pm.Payload()) != "21.5" || pm.Qos() != 1 || pm.Topic() != "sensors/k1/temp" {
			t.Errorf("MQTT message: %q qos %d topic %q", pm.Payload(), pm.Qos(), pm.Topic())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no MQTT message")
	}
}

// The query and the headers the broker reads: retain, ttl (a duration or milliseconds) and expires,
// priority, reply-to and correlation-id, as a STOMP consumer of a queue sees them.
func TestPublishQueryAndHeaders(t *testing.T) {
	f := newFixture(t)
	f.expect(request{method: "POST", path: "/vhosts/b/topics/status.door?retain=true", body: "open"}, http.StatusCreated, nil)
	before := time.Now()
	f.expect(request{method: "POST", path: "/vhosts/b/queues/work.1?ttl=30s", body: "job",
		headers: []string{"X-Lyre-Priority: 7", "X-Lyre-Reply-To: replies.me", "X-Lyre-Correlation-Id: c-42",
			"X-Lyre-Message_group: g1"}}, http.StatusCreated, nil)
	st := f.stompOn("b", "")
	retained, err := st.Subscribe("/topic/status.door", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if m := readStomp(t, retained); string(m.Body) != "open" {
		t.Errorf("retained: %q", m.Body)
	}
	q, err := st.Subscribe("/queue/work.1", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	m := readStomp(t, q)
	exp, _ := strconv.ParseInt(m.Header.Get("expires"), 10, 64)
	if want := before.Add(30 * time.Second).UnixMilli(); exp < want || exp > want+5000 {
		t.Errorf("expires %d, want about %d", exp, want)
	}
	if m.Header.Get("reply-to") != "/topic/replies.me" || m.Header.Get("correlation-id") != "c-42" ||
		m.Header.Get("priority") != "7" || m.Header.Get("message_group") != "g1" || m.Header.Get("persistent") != "" {
		t.Errorf("headers: %v", m.Header)
	}
	// Clearing the retained message with an empty one.
	f.expect(request{method: "POST", path: "/vhosts/b/topics/status.door?retain", body: ""}, http.StatusCreated, nil)
	if n := f.hosts.Lookup("b").Router.Stats().Retained; n != 0 {
		t.Errorf("%d retained after clearing", n)
	}
}

// What a publish is refused for, and with which status.
func TestPublishRefused(t *testing.T) {
	f := newFixture(t)
	pub := func(path, user, body string, headers ...string) request {
		return request{method: "POST", path: path, user: user, body: body, headers: headers}
	}
	cases := []struct {
		name   string
		req    request
		status int
	}{
		{"no credentials", pub("/vhosts/a/topics/sensors.x", "", "x"), http.StatusUnauthorized},
		{"wrong password", pub("/vhosts/a/topics/sensors.x", "intruder", "x"), http.StatusUnauthorized},
		{"topic not allowed", pub("/vhosts/a/topics/other.x", "pub", "x"), http.StatusForbidden},
		{"queue not allowed", pub("/vhosts/a/queues/jobs.a.b", "pub", "x"), http.StatusForbidden},
		{"monitor is not send", pub("/vhosts/a/topics/sensors.x", "ops", "x"), http.StatusForbidden},
		{"unknown vhost: answered as wrong credentials to a user who may not monitor the broker", pub("/vhosts/nope/topics/sensors.x", "pub", "x"), http.StatusUnauthorized},
		{"wildcard name", pub("/vhosts/a/topics/sensors.*", "pub", "x"), http.StatusBadRequest},
		{"qos 3", pub("/vhosts/a/topics/sensors.x?qos=3", "pub", "x"), http.StatusBadRequest},
		{"bad persistent", pub("/vhosts/a/topics/sensors.x?persistent=maybe", "pub", "x"), http.StatusBadRequest},
		{"retain on a queue", pub("/vhosts/a/queues/jobs.x?retain=true", "pub", "x"), http.StatusBadRequest},
		{"bad ttl", pub("/vhosts/a/topics/sensors.x?ttl=-5s", "pub", "x"), http.StatusBadRequest},
		{"reserved header", pub("/vhosts/a/topics/sensors.x", "pub", "x", "X-Lyre-Persistent: true"), http.StatusBadRequest},
		{"message-id header", pub("/vhosts/a/topics/sensors.x", "pub", "x", "X-Lyre-Message-Id: 5"), http.StatusBadRequest},
		{"bad priority", pub("/vhosts/a/queues/jobs.x", "pub", "x", "X-Lyre-Priority: high"), http.StatusBadRequest},
		{"bad expires", pub("/vhosts/a/queues/jobs.x", "pub", "x", "X-Lyre-Expires: soon"), http.StatusBadRequest},
	}
	st := f.hosts.Lookup("a").Router.Stats
	before := st().Published
	for _, c := range cases {
		if status, body := f.do(c.req); status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, status, c.status, body)
		}
	}
	if n := st().Published - before; n != 0 {
		t.Errorf("%d refused messages were published", n)
	}
}

// A body over max_message_length is answered 413 and never routed: the connector's limit (the smallest
// of its protocols') on one host, the host's own where it is smaller, with or without a Content-Length.
func TestPublishTooLarge(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		path  string
		limit int
	}{
		{"/vhosts/a/queues/jobs.big", connectorLimit},
		{"/vhosts/b/queues/big", hostBLimit},
	}
	for _, c := range cases {
		for _, chunked := range []bool{false, true} {
			f.expect(request{method: "POST", path: c.path, user: "pub", body: strings.Repeat("x", c.limit)}, http.StatusCreated, nil)
			r, err := http.NewRequest("POST", f.base+c.path, strings.NewReader(strings.Repeat("x", c.limit+1)))
			if err != nil {
				t.Fatal(err)
			}
			if chunked {
				r.Body = io.NopCloser(struct{ io.Reader }{r.Body}) // no length known: read until the bound
				r.ContentLength = 0
			}
			r.SetBasicAuth("pub", passwords["pub"])
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("%s, %d bytes (chunked %v): status %d, want 413", c.path, c.limit+1, chunked, resp.StatusCode)
			}
		}
	}
	for _, h := range []string{"a", "b"} {
		if n := f.hosts.Lookup(h).Router.Stats().Published; n != 2 {
			t.Errorf("host %s: %d published, want the 2 at the limit", h, n)
		}
	}
}

// A persistent message is answered 201 only once the store has its write, as a PUBACK is; a
// non-persistent one does not wait for the store.
func TestPublishPersistentWaitsForStore(t *testing.T) {
	f := newFixture(t)
	f.held.hold()
	answered := make(chan int, 1)
	go func() {
		r, err := http.NewRequest("POST", f.base+"/vhosts/b/queues/work.durable?persistent=true", strings.NewReader("kept"))
		if err != nil {
			answered <- -1
			return
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			answered <- -1
			return
		}
		_ = resp.Body.Close()
		answered <- resp.StatusCode
	}()
	prototest.WaitFor(t, 5*time.Second, func() bool { return f.held.heldCommits() > 0 })
	// The message is routed and its write queued: the answer must still wait for the store.
	f.expect(request{method: "POST", path: "/vhosts/b/queues/work.volatile", body: "not kept"}, http.StatusCreated, nil)
	select {
	case s := <-answered:
		t.Fatalf("answered %d before the store committed", s)
	case <-time.After(200 * time.Millisecond):
	}
	f.held.release()
	select {
	case s := <-answered:
		if s != http.StatusCreated {
			t.Fatalf("status %d, want 201", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after the commit")
	}
	q, err := f.stompOn("b", "").Subscribe("/queue/work.durable", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if m := readStomp(t, q); string(m.Body) != "kept" || m.Header.Get("persistent") != "true" {
		t.Errorf("message %q %v", m.Body, m.Header)
	}
}

// A full queue (full policy block) holds a publish back until it has room, for a bounded time, then
// answers 503.
func TestPublishQueueFull(t *testing.T) {
	f := newFixture(t)
	management.SetQueueFullWait(t, 100*time.Millisecond)
	f.expect(request{method: "POST", path: "/vhosts/b/queues/small.q", body: "1"}, http.StatusCreated, nil)
	resp := f.send(request{method: "POST", path: "/vhosts/b/queues/small.q", body: "2"})
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("full queue: status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	management.SetQueueFullWait(t, 5*time.Second)
	answered := make(chan int, 1)
	go func() {
		r, _ := http.NewRequest("POST", f.base+"/vhosts/b/queues/small.q", strings.NewReader("3"))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			answered <- -1
			return
		}
		_ = resp.Body.Close()
		answered <- resp.StatusCode
	}()
	st := f.stompOn("b", "")
	sub, err := st.Subscribe("/queue/small.q", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	m := readStomp(t, sub)
	if string(m.Body) != "1" {
		t.Fatalf("first message %q", m.Body)
	}
	select {
	case s := <-answered:
		t.Fatalf("answered %d while the queue was full", s)
	case <-time.After(100 * time.Millisecond):
	}
	if err := st.Ack(m); err != nil {
		t.Fatal(err)
	}
	if s := <-answered; s != http.StatusCreated {
		t.Fatalf("after room was made: status %d", s)
	}
	if m := readStomp(t, sub); string(m.Body) != "3" {
		t.Errorf("second message %q", m.Body)
	}
}
