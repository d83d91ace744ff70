package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// monitoringConfig serves MQTT, STOMP and management on one port, with a durable host whose users are
// mon (monitor on the broker, receive on $SYS.**), alice (clients' topics and queues, denied $SYS) and
// plain (connect only).
const monitoringConfig = `
sys_interval = %q
connector "auto" {
  bind       = "tcp://127.0.0.1:0"
  detect     = ["mqtt", "stomp", "http"]
  management = true
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  users_file = "users.hcl"
  store {
    directory = %q
  }
  queue "jobs.**" {
    nak_limit = 1
    dlq       = "dlq.*"
  }
  access_rule {
    allow  = ["mon"]
    action = ["monitor"]
    kind   = "broker"
  }
  access_rule {
    allow  = ["mon"]
    action = ["receive"]
    kind   = "topic"
    id     = "$SYS.**"
  }
  access_rule {
    deny = ["alice"]
    kind = "topic"
    id   = "$SYS.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["connect"]
  }
  access_rule {
    allow  = ["alice"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "**"
  }
  access_rule {
    allow  = ["alice"]
    action = ["send", "consume"]
    kind   = "queue"
    id     = "**"
  }
}
`

type monitoredBroker struct {
	b       *Broker
	config  string // the configuration file
	addr    string
	metrics string // the /metrics URL
	host    *virtualhost.Host
}

// startMonitoredBroker runs monitoringConfig with the given sys_interval in a temporary directory.
func startMonitoredBroker(t *testing.T, sysInterval string) *monitoredBroker {
	t.Helper()
	dir := t.TempDir()
	var users string
	for _, u := range []string{"mon", "alice", "plain"} {
		users += fmt.Sprintf("user %q {\n  password = %q\n}\n", u, hashFor(t, u+"-pass"))
	}
	writeFile(t, filepath.Join(dir, "users.hcl"), users)
	path := filepath.Join(dir, "lyre.hcl")
	writeFile(t, path, fmt.Sprintf(monitoringConfig, sysInterval, filepath.Join(dir, "data")))
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	b, err := Start(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { shutdown(t, b) })
	h := b.Hosts().Lookup("default")
	h.Throttle = &virtualhost.Throttle{Free: 100}
	addr := b.Addrs()["auto"].String()
	return &monitoredBroker{b: b, config: path, addr: addr, metrics: "http://" + addr + "/metrics", host: h}
}

// After known MQTT and STOMP traffic, /metrics (parsed with the Prometheus text parser) reports it
// exactly; a refused connection and a failed login are counted.
func TestMetricsAfterTraffic(t *testing.T) {
	mb := startMonitoredBroker(t, "0s")
	const n, m, q = 5, 4, 3 // MQTT QoS 1 publishes, STOMP topic SENDs, STOMP persistent queue SENDs

	// A persistent session that goes offline: its subscription keeps what arrives meanwhile.
	keeper := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mb.addr).SetClientID("keeper").
		SetUsername("alice").SetPassword("alice-pass").SetCleanSession(false).SetAutoReconnect(false))
	if tok := keeper.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("keeper: %v", tok.Error())
	}
	if tok := keeper.Subscribe("t/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("keeper: %v", tok.Error())
	}
	keeper.Disconnect(100)
	prototest.WaitFor(t, 5*time.Second, func() bool { return mb.host.Connections() == 0 })

	sub := mqttLogin(t, mb.addr, "sub", "alice", "alice-pass")
	got, code := mqttSubscribeCode(t, sub, "t/#")
	if code != 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	pub := mqttLogin(t, mb.addr, "pub", "alice", "alice-pass")
	for i := range n {
		if tok := pub.Publish("t/a", 1, false, fmt.Sprint("mqtt ", i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	for _, topic := range []string{"r/1", "r/2"} { // two retained messages
		if tok := pub.Publish(topic, 1, true, "kept"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	sc := stompLogin(t, mb.addr, "", "alice", "alice-pass")
	for i := range m {
		if err := sc.Send("/topic/t.b", "text/plain", fmt.Appendf(nil, "stomp %d", i), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	for i := range q {
		if err := sc.Send("/queue/work", "text/plain", fmt.Appendf(nil, "job %d", i), stomp.SendOpt.Receipt,
			stomp.SendOpt.Header("persistent", "true")); err != nil {
			t.Fatal(err)
		}
	}
	for range n + m {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("the MQTT subscriber missed a message")
		}
	}
	// A connection that speaks no known protocol, and a login with a wrong password.
	nc := prototest.Dial(t, mb.addr)
	if _, err := nc.Write([]byte{0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	prototest.ExpectClosed(t, nc, 5*time.Second)
	if _, code := mqttDial(t, mb.addr, "intruder", "alice", "wrong"); code != connackBadCredentials {
		t.Fatalf("wrong password: CONNACK %#x", code)
	}

	ms := prototest.Scrape(t, mb.metrics, "mon", "mon-pass")
	vh := []string{"vhost", "default"}
	exact := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lyre_messages_received_total", []string{"connector", "auto", "protocol", "mqtt", "vhost", "default"}, n + 2},
		{"lyre_messages_received_total", []string{"connector", "auto", "protocol", "stomp", "vhost", "default"}, m + q},
		{"lyre_messages_sent_total", []string{"connector", "auto", "protocol", "mqtt", "vhost", "default"}, n + m},
		{"lyre_messages_sent_total", []string{"connector", "auto", "protocol", "stomp", "vhost", "default"}, 0},
		{"lyre_connector_connections_refused_total", []string{"connector", "auto", "reason", "unknown_protocol"}, 1},
		{"lyre_connector_connections_refused_total", []string{"connector", "auto", "reason", "max_connections"}, 0},
		{"lyre_connections", vh, 3}, // sub, pub and the STOMP client
		{"lyre_messages_published_total", vh, n + 2 + m + q},
		{"lyre_messages_delivered_total", vh, 2 * (n + m)}, // sub, and keeper's durable subscription
		{"lyre_retained_messages", vh, 2},
		{"lyre_subscriptions", vh, 2},
		{"lyre_durable_subscriptions", vh, 1},
		{"lyre_mqtt_sessions", []string{"vhost", "default", "state", "online"}, 2},
		{"lyre_mqtt_sessions", []string{"vhost", "default", "state", "offline"}, 1},
		{"lyre_mqtt_session_backlog_messages", []string{"vhost", "default", "state", "offline"}, n + m},
		{"lyre_mqtt_session_backlog_messages", []string{"vhost", "default", "state", "online"}, 0},
		{"lyre_messages_dropped_total", []string{"vhost", "default", "reason", "slow_subscriber"}, 0},
		{"lyre_messages_dropped_total", []string{"vhost", "default", "reason", "no_route"}, 2}, // r/1, r/2
		{"lyre_messages_dropped_total", []string{"vhost", "default", "reason", "queue_full"}, 0},
		{"lyre_auth_failures_total", vh, 1},
		{"lyre_connections_refused_total", []string{"vhost", "default", "reason", "not_authorized"}, 0},
		{"lyre_queues", []string{"vhost", "default", "kind", "queue"}, 1},
		{"lyre_queue_messages", []string{"vhost", "default", "kind", "queue"}, q},
		{"lyre_queues", []string{"vhost", "default", "kind", "dsub"}, 1}, // keeper's
		{"lyre_queue_messages", []string{"vhost", "default", "kind", "dsub"}, n + m},
		{"lyre_queue_consumers", []string{"vhost", "default", "kind", "queue"}, 0},
		{"lyre_dead_letter_queue_messages", vh, 0},
	}
	for _, c := range exact {
		if v := ms.Get(t, c.name, c.labels...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	// Connections: the three clients, the refused one, the failed login and this scrape at least.
	if v := ms.Get(t, "lyre_connector_connections_accepted_total", "connector", "auto"); v < 6 {
		t.Errorf("accepted %v, want at least 6", v)
	}
	if v := ms.Get(t, "lyre_connector_connections", "connector", "auto"); v < 4 {
		t.Errorf("open connections %v, want at least 4 (3 clients and this scrape)", v)
	}
	for _, p := range []string{"mqtt", "stomp"} {
		if in := ms.Sum("lyre_received_bytes_total", "protocol", p); in <= 0 {
			t.Errorf("%s bytes received %v", p, in)
		}
	}
	if out := ms.Sum("lyre_sent_bytes_total", "protocol", "mqtt"); out <= 0 {
		t.Errorf("mqtt bytes sent %v", out)
	}
	if v := ms.Get(t, "lyre_store_journal_failures_total", vh...); v != 0 {
		t.Errorf("journal failures %v", v)
	}
	if v := ms.Get(t, "lyre_queue_bytes", "vhost", "default", "kind", "queue"); v < q*5 {
		t.Errorf("queue bytes %v", v)
	}
	// The store: persistent queue messages, keeper's session and backlog, the retained messages.
	if v := ms.Get(t, "lyre_store_size_bytes", vh...); v <= 0 {
		t.Errorf("store size %v", v)
	}
	commits := ms.Get(t, "lyre_store_commits_total", vh...)
	hist := ms.Histogram("lyre_store_commit_duration_seconds", vh...)
	switch {
	case commits < q+2:
		t.Errorf("%v store commits, want at least %d", commits, q+2)
	case hist == nil:
		t.Error("no commit latency histogram")
	case float64(hist.GetSampleCount()) != commits || hist.GetSampleSum() <= 0 || len(hist.Bucket) != 14: // 0.1 ms to 1 s, and +Inf
		t.Errorf("commit latency: %d samples for %v commits, sum %v, %d buckets", hist.GetSampleCount(), commits,
			hist.GetSampleSum(), len(hist.Bucket))
	}
	if ms["go_goroutines"] == nil || ms["process_resident_memory_bytes"] == nil {
		t.Error("no Go runtime or process metrics")
	}
	if v := ms.Get(t, "lyre_build_info", "version", version); v != 1 {
		t.Errorf("lyre_build_info %v", v)
	}
}

// Queue figures are summed per host and kind; a dead-letter queue (named by a queue policy's dlq) is
// recognised and its depth reported.
func TestMetricsQueuesAndDeadLetters(t *testing.T) {
	mb := startMonitoredBroker(t, "0s")
	sc := stompLogin(t, mb.addr, "", "alice", "alice-pass")
	for _, dest := range []string{"/queue/jobs.a", "/queue/jobs.b", "/queue/jobs.b"} {
		if err := sc.Send(dest, "text/plain", []byte("job"), stomp.SendOpt.Receipt,
			stomp.SendOpt.Header("persistent", "true")); err != nil {
			t.Fatal(err)
		}
	}
	cc := stompLogin(t, mb.addr, "", "alice", "alice-pass")
	sub, err := cc.Subscribe("/queue/jobs.a", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	// NACKed until it reaches its nak_limit and goes to dlq.jobs.a.
	for mb.host.Router.Stats().DeadLettered == 0 {
		msg := readStomp(t, sub)
		if err := cc.Nack(msg); err != nil {
			t.Fatal(err)
		}
		prototest.WaitFor(t, 5*time.Second, func() bool {
			info, _ := mb.host.Router.QueueInfo(router.Destination{Kind: router.Queue, Path: []string{"jobs", "a"}})
			return info.Unacked == 0
		})
	}
	ms := prototest.Scrape(t, mb.metrics, "mon", "mon-pass")
	queue := []string{"vhost", "default", "kind", "queue"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lyre_messages_poisoned_total", []string{"vhost", "default"}, 1},
		{"lyre_messages_dead_lettered_total", []string{"vhost", "default"}, 1},
		{"lyre_messages_dropped_total", []string{"vhost", "default", "reason", "poisoned"}, 0},
		{"lyre_dead_letter_queue_messages", []string{"vhost", "default"}, 1},
		{"lyre_queues", queue, 3}, // jobs.a (its consumer keeps it), jobs.b, dlq.jobs.a
		{"lyre_queue_messages", queue, 3},
		{"lyre_queue_unacked_messages", queue, 0},
		{"lyre_queue_consumers", queue, 1},
		{"lyre_queues", []string{"vhost", "default", "kind", "temp-queue"}, 0},
	} {
		if v := ms.Get(t, c.name, c.labels...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
}

// /metrics is refused without credentials (401) and to a user without monitor on kind broker (403).
func TestMetricsRefused(t *testing.T) {
	mb := startMonitoredBroker(t, "0s")
	for _, c := range []struct {
		user, pass string
		want       int
	}{
		{"", "", 401},
		{"mon", "nope", 401},
		{"plain", "plain-pass", 403},
		{"alice", "alice-pass", 403},
	} {
		if code, _ := prototest.ScrapeStatus(t, mb.metrics, c.user, c.pass); code != c.want {
			t.Errorf("as %q: %d, want %d", c.user, code, c.want)
		}
	}
	// The wrong password counts as an authentication failure, as a client's would.
	ms := prototest.Scrape(t, mb.metrics, "mon", "mon-pass")
	if v := ms.Get(t, "lyre_auth_failures_total", "vhost", "default"); v != 1 {
		t.Errorf("auth failures %v, want 1", v)
	}
}

// $SYS is read by an MQTT and a STOMP subscriber allowed receive on $SYS.**, retained and refreshed every
// sys_interval; a user denied it gets nothing, over either protocol.
func TestSysOverMQTTAndSTOMP(t *testing.T) {
	mb := startMonitoredBroker(t, "1s")

	mon := mqttLogin(t, mb.addr, "mon-mqtt", "mon", "mon-pass")
	ver, code := mqttSubscribeCode(t, mon, "$SYS/broker/version")
	if code > 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	select {
	case msg := <-ver:
		if string(msg.Payload()) != "lyre version "+version || !msg.Retained() || msg.Topic() != "$SYS/broker/version" {
			t.Errorf("version: %q on %q, retained %v", msg.Payload(), msg.Topic(), msg.Retained())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no $SYS/broker/version over MQTT")
	}

	// alice is denied: neither MQTT nor STOMP brings her anything, while mon keeps getting updates.
	alice := mqttLogin(t, mb.addr, "alice-mqtt", "alice", "alice-pass")
	denied, _ := mqttSubscribeCode(t, alice, "$SYS/#")

	sc := stompLogin(t, mb.addr, "", "mon", "mon-pass")
	ssub, err := sc.Subscribe("/topic/$SYS.broker.version", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if msg := readStomp(t, ssub); string(msg.Body) != "lyre version "+version ||
		msg.Header.Get("destination") != "/topic/$SYS.broker.version" {
		t.Errorf("STOMP version: %q on %q", msg.Body, msg.Header.Get("destination"))
	}
	// clients/connected follows: mon twice, alice once.
	csub, err := sc.Subscribe("/topic/$SYS.broker.clients.connected", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for connected := ""; connected != "3"; {
		select {
		case msg := <-csub.C:
			if msg.Err != nil {
				t.Fatal(msg.Err)
			}
			connected = string(msg.Body)
		case <-deadline:
			t.Fatal("clients/connected never reached 3")
		}
	}
	// messages/received counts what the host's clients published, one tick later.
	recv, _ := mqttSubscribeCode(t, mon, "$SYS/broker/messages/received")
	for i := range 3 {
		if tok := alice.Publish("x/y", 1, false, strconv.Itoa(i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	waitPayload(t, recv, "3")
	// A load figure over STOMP: the 1-minute rate of messages received is no longer zero.
	lsub, err := sc.Subscribe("/topic/$SYS.broker.load.messages.received.1min", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.After(5 * time.Second)
	for load := 0.0; load == 0; {
		select {
		case msg := <-lsub.C:
			if msg.Err != nil {
				t.Fatal(msg.Err)
			}
			if load, err = strconv.ParseFloat(string(msg.Body), 64); err != nil {
				t.Fatalf("load %q: %v", msg.Body, err)
			}
		case <-deadline:
			t.Fatal("the load figure stayed 0")
		}
	}

	select {
	case msg := <-denied:
		t.Errorf("alice got %s over MQTT", msg.Topic())
	default:
	}
	// Over STOMP alice's subscription is refused with an ERROR frame (which ends her connection): no
	// MESSAGE either way.
	as, err := stompDial(mb.addr, "", "alice", "alice-pass")
	if err != nil {
		t.Fatal(err)
	}
	asub, err := as.Subscribe("/topic/$SYS.**", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-asub.C:
		if msg.Err == nil {
			t.Errorf("alice got %s over STOMP", msg.Destination)
		}
	case <-time.After(2 * time.Second):
		t.Error("alice's STOMP subscription to $SYS neither refused nor ended")
	}
	_ = as.MustDisconnect()
}

// waitPayload waits for a message with payload want on ch.
func waitPayload(t *testing.T, ch <-chan paho.Message, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	last := "(none)"
	for {
		select {
		case msg := <-ch:
			if last = string(msg.Payload()); last == want {
				return
			}
		case <-deadline:
			t.Fatalf("last payload %q, want %q", last, want)
		}
	}
}

// With sys_interval 0 no $SYS topic exists.
func TestSysIntervalZero(t *testing.T) {
	mb := startMonitoredBroker(t, "0s")
	mon := mqttLogin(t, mb.addr, "mon-mqtt", "mon", "mon-pass")
	ch, code := mqttSubscribeCode(t, mon, "$SYS/#")
	if code > 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	time.Sleep(1500 * time.Millisecond) // past the publisher's first look at sys_interval and an off-poll
	select {
	case msg := <-ch:
		t.Errorf("got %s with sys_interval 0", msg.Topic())
	default:
	}
	if v := prototest.Scrape(t, mb.metrics, "mon", "mon-pass").Get(t, "lyre_retained_messages", "vhost", "default"); v != 0 {
		t.Errorf("%v retained messages", v)
	}
}

// A reload changes sys_interval from the next tick: on, the tree appears; off, it is cleared (current
// subscribers get the empty retained messages that clear it) and a new subscriber finds nothing.
func TestSysIntervalReload(t *testing.T) {
	mb := startMonitoredBroker(t, "0s")
	mon := mqttLogin(t, mb.addr, "mon-mqtt", "mon", "mon-pass")
	ver, code := mqttSubscribeCode(t, mon, "$SYS/broker/version")
	if code > 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	reload := func(interval string) {
		t.Helper()
		writeFile(t, mb.config, fmt.Sprintf(monitoringConfig, interval, filepath.Join(filepath.Dir(mb.config), "data")))
		if err := mb.b.Reload(); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	reload("1s")
	waitPayload(t, ver, "lyre version "+version)
	reload("0s")
	waitPayload(t, ver, "") // cleared within the publisher's off-poll
	late := mqttLogin(t, mb.addr, "mon-late", "mon", "mon-pass")
	ch, _ := mqttSubscribeCode(t, late, "$SYS/#")
	select {
	case msg := <-ch:
		t.Errorf("a new subscriber got %s = %q after sys_interval went to 0", msg.Topic(), msg.Payload())
	case <-time.After(300 * time.Millisecond):
	}
	if mb.b.Hosts().Lookup("default") != mb.host {
		t.Error("the reload replaced the host")
	}
}
