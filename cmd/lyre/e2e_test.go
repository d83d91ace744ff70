package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// paho's and go-stomp's clients leave a few goroutines finishing after Disconnect returns.
		goleak.IgnoreTopFunction("github.com/eclipse/paho.mqtt.golang.(*client).startCommsWorkers.func1"),
		goleak.IgnoreAnyFunction("github.com/go-stomp/stomp/v3.readLoop"),
	)
}

// testConfig is one autodetecting connector, as the acceptance tests of the foundation describe it.
const testConfig = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
  mqtt  { queue_prefix = "queue/" }
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
}
`

// testLogger logs to t, without the embedded NATS server's informational lines: a failing cluster
// test's own message must not drown in them.
func testLogger(t *testing.T) *zap.Logger {
	return zap.New(quietNATS{zaptest.NewLogger(t).Core()})
}

type quietNATS struct{ zapcore.Core }

func (c quietNATS) With(fields []zapcore.Field) zapcore.Core { return quietNATS{c.Core.With(fields)} }

func (c quietNATS) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level < zapcore.WarnLevel && e.LoggerName == "cluster.nats" {
		return ce
	}
	return c.Core.Check(e, ce)
}

// startBroker runs a broker in-process on loopback and returns the address of its connector.
func startBroker(t *testing.T, hcl string) (*Broker, string) {
	t.Helper()
	cfg, err := conf.Parse([]byte(hcl), "test.hcl")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	b, err := Start(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return b, b.Addrs()[cfg.Connectors[0].Name].String()
}

func mqttClient(t *testing.T, addr, id string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func stompClient(t *testing.T, addr string) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("stomp connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// stompBarrier returns once the broker has handled every frame c sent before: a SEND with a receipt, to
// a topic nobody reads, answered in order. go-stomp's Subscribe does not wait for the SUBSCRIBE.
func stompBarrier(t *testing.T, c *stomp.Conn) {
	t.Helper()
	if err := c.Send("/topic/lyre-test.barrier", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("stomp barrier: %v", err)
	}
}

func mqttSubscribe(t *testing.T, c paho.Client, filter string, qos byte) <-chan paho.Message {
	t.Helper()
	ch := make(chan paho.Message, 100)
	tok := c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) { ch <- m })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return ch
}

func mqttPublish(t *testing.T, c paho.Client, topic string, qos byte, body string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, body)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

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

func TestMQTTPublishReachesSTOMPWildcardSubscriber(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	sc := stompClient(t, addr)
	sub, err := sc.Subscribe("/topic/sensors.*.temp", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	// A receipt on a later frame proves the SUBSCRIBE was processed before the MQTT publish.
	if err := sc.Send("/topic/unrelated", "text/plain", []byte("x"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	mc := mqttClient(t, addr, "device-k1")
	mqttPublish(t, mc, "sensors/k1/temp", 1, "21.5")

	m := readStomp(t, sub)
	if got := m.Destination; got != "/topic/sensors.k1.temp" {
		t.Errorf("destination = %q, want STOMP rendering /topic/sensors.k1.temp", got)
	}
	if string(m.Body) != "21.5" {
		t.Errorf("body = %q, want 21.5", m.Body)
	}
}

func TestSTOMPSendReachesMQTTWildcardSubscriberBodyOnly(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	mc := mqttClient(t, addr, "dashboard")
	ch := mqttSubscribe(t, mc, "sensors/+/temp", 1)
	sc := stompClient(t, addr)
	err := sc.Send("/topic/sensors.k2.temp", "text/plain", []byte("19.0"),
		stomp.SendOpt.Header("x-app", "thermo"), stomp.SendOpt.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		if m.Topic() != "sensors/k2/temp" {
			t.Errorf("topic = %q, want MQTT rendering sensors/k2/temp", m.Topic())
		}
		// DESIGN §4: STOMP → MQTT carries the body only, no headers folded into the payload.
		if !bytes.Equal(m.Payload(), []byte("19.0")) {
			t.Errorf("payload = %q, want exactly the STOMP body", m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("MQTT subscriber got nothing")
	}
}

func TestMQTTQueuePrefixReachesSTOMPQueueConsumer(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	mc := mqttClient(t, addr, "producer")
	// Queued before anyone consumes: a queue keeps it.
	mqttPublish(t, mc, "queue/jobs", 1, "job-1")
	sc := stompClient(t, addr)
	sub, err := sc.Subscribe("/queue/jobs", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	m := readStomp(t, sub)
	if string(m.Body) != "job-1" || m.Destination != "/queue/jobs" {
		t.Fatalf("got %q on %q, want job-1 on /queue/jobs", m.Body, m.Destination)
	}
	if err := sc.Ack(m); err != nil {
		t.Fatal(err)
	}
}

func TestQueueConsumersShareRoundRobin(t *testing.T) {
	_, addr := startBroker(t, testConfig)
	const n = 20
	var (
		mu  sync.Mutex
		got = map[string][]string{}
		wg  sync.WaitGroup
	)
	wg.Add(n)
	for _, name := range []string{"a", "b"} {
		sc := stompClient(t, addr)
		sub, err := sc.Subscribe("/queue/work", stomp.AckAuto)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for m := range sub.C {
				if m.Err != nil {
					return
				}
				mu.Lock()
				got[name] = append(got[name], string(m.Body))
				mu.Unlock()
				wg.Done()
			}
		}()
		// Make sure the consumer is registered before publishing.
		if err := sc.Send("/topic/sync", "", nil, stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	mc := mqttClient(t, addr, "producer")
	for i := 0; i < n; i++ {
		mqttPublish(t, mc, "queue/work", 1, fmt.Sprintf("m%02d", i))
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("not every message consumed: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got["a"]) != n/2 || len(got["b"]) != n/2 {
		t.Errorf("round-robin split = a:%d b:%d, want %d each", len(got["a"]), len(got["b"]), n/2)
	}
	seen := map[string]bool{}
	for _, ms := range got {
		for _, m := range ms {
			if seen[m] {
				t.Errorf("message %s delivered twice", m)
			}
			seen[m] = true
		}
	}
}

func TestTwoConnectorsWithDifferentGrammarsShareTopics(t *testing.T) {
	// A second MQTT connector uses "." as its separator: its devices write sensors.k3.temp.
	const cfg = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
connector "dotted" {
  bind     = "tcp://127.0.0.1:0"
  protocol = "mqtt"
  mqtt { path_separator = "." }
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
}
`
	b, addr := startBroker(t, cfg)
	dotted := b.Addrs()["dotted"].String()
	slash := mqttClient(t, addr, "slash")
	ch := mqttSubscribe(t, slash, "sensors/#", 0)
	dc := mqttClient(t, dotted, "dot")
	mqttPublish(t, dc, "sensors.k3.temp", 1, "7")
	select {
	case m := <-ch:
		if m.Topic() != "sensors/k3/temp" {
			t.Errorf("topic = %q, want sensors/k3/temp", m.Topic())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing crossed between connectors")
	}
}

func TestShutdownSaysGoodbyeToSTOMPClients(t *testing.T) {
	cfg, err := conf.Parse([]byte(testConfig), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addrs()["auto"].String()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprint(nc, "CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
	buf := make([]byte, 4096)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := nc.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "CONNECTED") {
		t.Fatalf("connect: %q %v", buf[:n], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	var all bytes.Buffer
	for {
		n, err := nc.Read(buf)
		all.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.HasPrefix(all.String(), "ERROR") {
		t.Errorf("after shutdown the client read %q, want an ERROR frame then EOF", all.String())
	}
}

func TestRunFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &out, &errb); code != 0 ||
		!strings.HasPrefix(out.String(), "lyre ") {
		t.Errorf("--version: code %d, out %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"--check"}, &out, &errb); code != 0 {
		t.Errorf("--check of the embedded config: code %d, stderr %q", code, errb.String())
	}

	bad := t.TempDir() + "/bad.hcl"
	writeFile(t, bad, "connector \"x\" {\n  bind = \"tcp://127.0.0.1:1\"\n  protocol = \"amqp\"\n  colour = 1\n}\n")
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"--check", "--config", bad}, &out, &errb); code == 0 {
		t.Errorf("--check of a bad config exited 0")
	}
	for _, want := range []string{"bad.hcl:3", "bad.hcl:4"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("--check output %q does not name %s", errb.String(), want)
		}
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/lyre.hcl"
	writeFile(t, path, testConfig)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"--config", path, "--log-format", "json"}, &out, &errb) }()
	prototest.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(errb.String(), "listening") })
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after cancel, want 0; log:\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRunDispatchesStoreCommand(t *testing.T) {
	var out, errb bytes.Buffer
	// Without a subcommand the store command prints its usage and fails; reaching it proves the dispatch.
	if code := run(context.Background(), []string{"store"}, &out, &errb); code == 0 ||
		!strings.Contains(errb.String()+out.String(), "export") {
		t.Errorf("lyre store: code %d, output %q", code, errb.String()+out.String())
	}
}
