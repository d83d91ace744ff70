package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
)

// Passwords of the users the reload tests write.
const (
	alicePw = "alice-pw"
	bobPw   = "bob-pw"
)

// watchedClient is an MQTT 3.1.1 client (paho) that records losing its connection.
type watchedClient struct {
	paho.Client
	lost atomic.Pointer[error]
}

// dialWatched connects a watched client with a user name (none when user is "") and returns the
// CONNACK code; the test's end disconnects an accepted one.
func dialWatched(t *testing.T, addr, id, user, pass string, handler paho.MessageHandler) (*watchedClient, byte) {
	t.Helper()
	w := &watchedClient{}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { w.lost.Store(&err) })
	if user != "" {
		opts.SetUsername(user).SetPassword(pass)
	}
	if handler != nil {
		opts.SetDefaultPublishHandler(handler)
	}
	w.Client = paho.NewClient(opts)
	tok := w.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("mqtt connect %s: no CONNACK", id)
	}
	code := tok.(*paho.ConnectToken).ReturnCode()
	if code == connackAccepted {
		t.Cleanup(func() { w.Disconnect(100) })
	}
	return w, code
}

// subscribeCode subscribes c to filter at QoS 1 and returns the granted QoS, 0x80 when refused.
func subscribeCode(t *testing.T, c paho.Client, filter string, h paho.MessageHandler) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, h)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// listening returns the address each connector was bound to, from run's JSON log.
func listening(log string) map[string]string {
	addrs := make(map[string]string)
	for _, line := range strings.Split(log, "\n") {
		var e struct{ Msg, Connector, Address string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "listening" {
			addrs[e.Connector] = e.Address
		}
	}
	return addrs
}

// reloadUsers writes the users file of the reload tests: the named users among alice and bob.
func reloadUsers(t *testing.T, path string, names ...string) {
	t.Helper()
	pw := map[string]string{"alice": alicePw, "bob": bobPw}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "user %q {\n  password = %q\n}\n", n, hashFor(t, pw[n]))
	}
	writeFile(t, path, b.String())
}

const reloadBefore = `
connector "main" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
connector "old" {
  bind     = "tcp://127.0.0.1:0"
  protocol = "mqtt"
}
virtual_host "default" {
  host_names = ["localhost"]
  anonymous  = true
}
virtual_host "secure" {
  users_file = "users.hcl"
  access_rule {
    allow  = ["+"]
    action = ["connect"]
  }
  access_rule {
    allow  = ["alice"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "data.**"
  }
}
`

// After: a user (bob, in the users file), a rule (extra.** for alice and bob), a virtual host (tenant)
// and a connector serving it (new) added, the connector "old" removed; main and default unchanged.
const reloadAfter = `
connector "main" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
connector "new" {
  bind         = "tcp://127.0.0.1:0"
  protocol     = "mqtt"
  virtual_host = "tenant"
}
virtual_host "default" {
  host_names = ["localhost"]
  anonymous  = true
}
virtual_host "secure" {
  users_file = "users.hcl"
  access_rule {
    allow  = ["+"]
    action = ["connect"]
  }
  access_rule {
    allow  = ["alice"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "data.**"
  }
  access_rule {
    allow  = ["alice", "bob"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "extra.**"
  }
}
virtual_host "tenant" {
  anonymous = true
}
`

// qos1Flow publishes QoS 1 messages one after another (each waits for its PUBACK) until stop, and
// counts what a subscriber receives.
type qos1Flow struct {
	mu       sync.Mutex
	got      map[string]int
	sent     int
	failures []error
}

func (f *qos1Flow) receive(_ paho.Client, m paho.Message) {
	f.mu.Lock()
	f.got[string(m.Payload())]++
	f.mu.Unlock()
}

func (f *qos1Flow) publish(pub paho.Client, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		tok := pub.Publish("flow/seq", 1, false, fmt.Sprintf("m%06d", i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			f.mu.Lock()
			f.failures = append(f.failures, fmt.Errorf("publish m%06d: %v", i, tok.Error()))
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		f.sent = i + 1
		f.mu.Unlock()
		time.Sleep(time.Millisecond) // a steady flow across the reload, not a flood
	}
}

// missing returns the messages sent and acknowledged that the subscriber has not received.
func (f *qos1Flow) missing() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for i := range f.sent {
		if f.got[fmt.Sprintf("m%06d", i)] == 0 {
			out = append(out, fmt.Sprintf("m%06d", i))
		}
	}
	return out
}

// A running broker (run, the real process entry) gets SIGHUP after its file gained a user, an access
// rule, a virtual host and a connector and lost another connector. Meanwhile an MQTT client of the
// unchanged host and connector publishes QoS 1 to a subscriber that receives every message, and neither
// connection drops. Afterwards the new user logs in, the new rule applies, the new host is reachable on
// the new connector, and the removed connector refuses connections (its client was told goodbye).
func TestReloadOnSIGHUPAddsAndRemoves(t *testing.T) {
	guard := make(chan os.Signal, 16) // a SIGHUP before run registers must not end the test process
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	dir := t.TempDir()
	path, users := filepath.Join(dir, "lyre.hcl"), filepath.Join(dir, "users.hcl")
	reloadUsers(t, users, "alice")
	writeFile(t, path, reloadBefore)
	errb := runFromFile(t, path)
	addrs := listening(errb.String())
	main, old := addrs["main"], addrs["old"]

	// Before: bob is unknown, alice may not use extra.**, an MQTT client is on "old".
	if _, code := dialWatched(t, main, "bob-0", "bob@secure", bobPw, nil); code != connackBadCredentials {
		t.Fatalf("bob before the reload: CONNACK %#x, want bad credentials", code)
	}
	alice, code := dialWatched(t, main, "alice-1", "alice@secure", alicePw, nil)
	if code != connackAccepted {
		t.Fatalf("alice: CONNACK %#x", code)
	}
	if rc := subscribeCode(t, alice, "extra/#", nil); rc != 0x80 {
		t.Fatalf("alice subscribing extra/# before the reload: %#x, want 0x80", rc)
	}
	onOld, code := dialWatched(t, old, "on-old", "", "", nil)
	if code != connackAccepted {
		t.Fatalf("client on old: CONNACK %#x", code)
	}

	// The QoS 1 flow on the unchanged host and connector, running across the reload.
	flow := &qos1Flow{got: make(map[string]int)}
	sub, _ := dialWatched(t, main, "flow-sub", "", "", nil)
	if rc := subscribeCode(t, sub, "flow/#", flow.receive); rc != 1 {
		t.Fatalf("flow subscriber: %#x", rc)
	}
	pub, _ := dialWatched(t, main, "flow-pub", "", "", nil)
	stop, flowDone := make(chan struct{}), make(chan struct{})
	go flow.publish(pub, stop, flowDone)
	prototest.WaitFor(t, 5*time.Second, func() bool { flow.mu.Lock(); defer flow.mu.Unlock(); return flow.sent > 50 })

	reloadUsers(t, users, "alice", "bob")
	writeFile(t, path, reloadAfter)
	prototest.WaitFor(t, 10*time.Second, func() bool {
		_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
		time.Sleep(50 * time.Millisecond)
		return strings.Contains(errb.String(), "configuration reloaded")
	})
	flow.mu.Lock()
	atReload := flow.sent
	flow.mu.Unlock()
	prototest.WaitFor(t, 5*time.Second, func() bool { flow.mu.Lock(); defer flow.mu.Unlock(); return flow.sent > atReload+50 })
	close(stop)
	<-flowDone
	if len(flow.failures) > 0 {
		t.Fatalf("publisher: %v", flow.failures)
	}
	prototest.WaitFor(t, 5*time.Second, func() bool { return len(flow.missing()) == 0 })
	for _, w := range []*watchedClient{sub, pub, alice} {
		if err := w.lost.Load(); err != nil || !w.IsConnectionOpen() {
			t.Fatalf("a connection of an unchanged connector was dropped: %v", err)
		}
	}
	t.Logf("%d QoS 1 messages across the reload, all received", flow.sent)
	checkReloaded(t, errb.String(), main, old, alice, onOld)
}

// checkReloaded checks what TestReloadOnSIGHUPAddsAndRemoves's reload changed.
func checkReloaded(t *testing.T, log, main, old string, alice *watchedClient, onOld *watchedClient) {
	t.Helper()
	for _, want := range []string{`"hosts_added":["tenant"]`, `"connectors_added":["new"]`, `"connectors_removed":["old"]`,
		`"hosts_changed":["secure (users, access_rules)"]`} {
		if !strings.Contains(log, want) {
			t.Errorf("the reload's summary line lacks %s", want)
		}
	}
	// The new user logs in, and the new rule applies to alice and bob alike.
	bob, code := dialWatched(t, main, "bob-1", "bob@secure", bobPw, nil)
	if code != connackAccepted {
		t.Fatalf("bob after the reload: CONNACK %#x", code)
	}
	got := make(chan string, 4)
	if rc := subscribeCode(t, bob, "extra/#", func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); rc != 1 {
		t.Fatalf("bob subscribing extra/#: %#x", rc)
	}
	if rc := subscribeCode(t, bob, "data/#", nil); rc != 0x80 {
		t.Fatalf("bob subscribing data/#: %#x, want 0x80 (only the new rule names him)", rc)
	}
	if rc := subscribeCode(t, alice, "extra/#", nil); rc != 1 {
		t.Fatalf("alice subscribing extra/# after the reload: %#x", rc)
	}
	mqttPublish(t, alice, "extra/x", 1, "hello bob")
	if m := <-got; m != "hello bob" {
		t.Fatalf("bob got %q", m)
	}
	// The new host, on the new connector, is not the default host.
	newAddr := listening(log)["new"]
	tenant, code := dialWatched(t, newAddr, "tenant-1", "", "", nil)
	if code != connackAccepted {
		t.Fatalf("client on the new connector: CONNACK %#x", code)
	}
	onTenant := make(chan string, 4)
	subscribeCode(t, tenant, "t/#", func(_ paho.Client, m paho.Message) { onTenant <- string(m.Payload()) })
	onDefault := make(chan string, 4)
	dflt, _ := dialWatched(t, main, "default-1", "", "", nil)
	subscribeCode(t, dflt, "t/#", func(_ paho.Client, m paho.Message) { onDefault <- string(m.Payload()) })
	mqttPublish(t, tenant, "t/1", 1, "tenant only")
	if m := <-onTenant; m != "tenant only" {
		t.Fatalf("tenant got %q", m)
	}
	select {
	case m := <-onDefault:
		t.Fatalf("the default host got %q published on tenant", m)
	case <-time.After(100 * time.Millisecond):
	}
	// The removed connector: its client was told goodbye, and it refuses connections.
	prototest.WaitFor(t, 5*time.Second, func() bool { return onOld.lost.Load() != nil })
	if nc, err := net.DialTimeout("tcp", old, time.Second); err == nil {
		_ = nc.Close()
		t.Fatalf("the removed connector %s still accepts connections", old)
	}
}

// A configuration with an error is refused whole: Reload returns, and the log shows, the same
// file:line:col messages as --check; nothing of the broken file is applied and the broker keeps serving.
func TestReloadRefusesBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lyre.hcl")
	writeFile(t, path, testConfig)
	b, logs := startFileBroker(t, path)
	addr := b.Addrs()["auto"].String()

	broken := strings.Replace(testConfig, `virtual_host "default" {`, `connector "extra" {
  bind   = "tcp://127.0.0.1:0"
  protocol = "mqtt"
}
virtual_host "default" {
  max_conections = 5`, 1)
	writeFile(t, path, broken)
	err := b.Reload()
	if err == nil {
		t.Fatal("a broken configuration was applied")
	}
	var check, stderr syncBuffer
	if code := run(context.Background(), []string{"--config", path, "--check"}, &check, &stderr); code != 1 {
		t.Fatalf("--check exit %d", code)
	}
	want := strings.TrimSpace(stderr.String()) // e.g. .../lyre.hcl:12:3: unknown attribute "max_conections"; did you mean ...
	if !strings.Contains(want, path+":") || !strings.Contains(err.Error(), want) {
		t.Fatalf("Reload error %q does not carry --check's %q", err, want)
	}
	if n := logs.FilterMessage("reload refused: the configuration has errors; the running configuration is kept").Len(); n != 1 {
		t.Fatalf("%d refusal log lines", n)
	}
	if e := logs.FilterMessage("reload refused: the configuration has errors; the running configuration is kept").All()[0]; !strings.Contains(entryText(e), want) {
		t.Fatalf("the refusal log line %q lacks %q", entryText(e), want)
	}
	if _, ok := b.Addrs()["extra"]; ok {
		t.Fatal("part of the broken configuration was applied")
	}
	c := mqttClient(t, addr, "still-served")
	ch := mqttSubscribe(t, c, "k/#", 1)
	mqttPublish(t, c, "k/1", 1, "ok")
	if m := <-ch; string(m.Payload()) != "ok" {
		t.Fatalf("got %q", m.Payload())
	}
	// Fixed, the file applies.
	writeFile(t, path, strings.Replace(broken, "max_conections", "max_connections", 1))
	if err := b.Reload(); err != nil {
		t.Fatalf("reload of the fixed file: %v", err)
	}
	if _, ok := b.Addrs()["extra"]; !ok {
		t.Fatal("the fixed configuration's connector is not bound")
	}
	if got := b.Hosts().Default().MaxConnections(); got != 5 {
		t.Fatalf("max_connections = %d, want 5", got)
	}
}

// expectDisconnect waits for the server's MQTT 5 DISCONNECT to v and checks its reason code and that its
// reason string holds snippet.
func expectDisconnect(t *testing.T, v *v5Client, rc byte, snippet string) {
	t.Helper()
	select {
	case d := <-v.gone:
		if d.ReasonCode != rc || d.Properties == nil || !strings.Contains(d.Properties.ReasonString, snippet) {
			t.Fatalf("DISCONNECT %#x %+v, want %#x with %q", d.ReasonCode, d.Properties, rc, snippet)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no DISCONNECT (want %#x)", rc)
	}
}

// expectStompError waits for the ERROR frame go-stomp hands to sub and returns it, checking its message.
func expectStompError(t *testing.T, sub *stomp.Subscription, message string) *stomp.Error {
	t.Helper()
	select {
	case m := <-sub.C:
		e, ok := m.Err.(*stomp.Error)
		if !ok || e.Frame == nil || e.Message != message {
			t.Fatalf("STOMP got %+v, want an ERROR %q", m, message)
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatalf("no ERROR frame (want %q)", message)
		return nil
	}
}

// runFromFile runs the broker through run, the process's entry, from the file at path with JSON logs; it
// returns the log once the broker has started. The test's end stops it and checks its exit code.
func runFromFile(t *testing.T, path string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"--config", path, "--log-format", "json"}, &out, &errb) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit code %d", code)
		}
	})
	prototest.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(errb.String(), "lyre started") })
	return &errb
}

// settleStomp waits until the broker has handled every frame c sent so far: go-stomp's Subscribe returns
// before its SUBSCRIBE is written, and a SEND with a receipt is answered after the frames before it.
func settleStomp(t *testing.T, c *stomp.Conn) {
	t.Helper()
	if err := c.Send("/topic/settle", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
}

// startFileBroker runs a broker in-process from the configuration file at path, as run does, logging to
// the test and to an observer; the test's end shuts it down.
func startFileBroker(t *testing.T, path string) (*Broker, *observer.ObservedLogs) {
	t.Helper()
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	b, err := Start(cfg, zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)))
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
	return b, logs
}

const revokeBefore = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
virtual_host "default" {
  host_names = ["localhost"]
  users_file = "users.hcl"
  access_rule {
    allow  = ["+"]
    action = ["connect", "send"]
  }
  access_rule {
    allow  = ["alice", "bob"]
    action = ["receive"]
    kind   = "topic"
    id     = "news.**"
  }
  access_rule {
    allow  = ["alice"]
    action = ["receive"]
    kind   = "topic"
    id     = "other.**"
  }
}
`

// A reload that revokes alice's right to receive news.** and removes bob from the users file: alice's
// MQTT 5 connection gets DISCONNECT 0x87 naming its filter, and the subscription is gone from its
// persistent session as an UNSUBSCRIBE would take it (its durable subscription destroyed); her STOMP
// connection gets an ERROR frame naming the subscription, then is closed; bob's MQTT 3.1.1 connection is
// closed. A client whose rights did not change stays connected.
func TestReloadRevokes(t *testing.T) {
	dir := t.TempDir()
	path, users := filepath.Join(dir, "lyre.hcl"), filepath.Join(dir, "users.hcl")
	reloadUsers(t, users, "alice", "bob")
	writeFile(t, path, revokeBefore)
	b, logs := startFileBroker(t, path)
	addr := b.Addrs()["auto"].String()

	v5 := dialV5(t, addr, &paho5.Connect{ClientID: "alice-5", CleanStart: true, UsernameFlag: true, Username: "alice",
		PasswordFlag: true, Password: []byte(alicePw), Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	v5.sub(0, paho5.SubscribeOptions{Topic: "news/#", QoS: 1}, paho5.SubscribeOptions{Topic: "other/#", QoS: 1})
	if n := len(sessionDurables(b, "alice-5")); n != 2 {
		t.Fatalf("alice-5 holds %d durable subscriptions, want 2", n)
	}
	st, err := stomp.Dial("tcp", addr, stomp.ConnOpt.Login("alice", alicePw), stomp.ConnOpt.Host("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.MustDisconnect() })
	news, err := st.Subscribe("/topic/news.**", stomp.AckAuto, stomp.SubscribeOpt.Id("news-sub"))
	if err != nil {
		t.Fatal(err)
	}
	settleStomp(t, st)
	bob, code := dialWatched(t, addr, "bob-3", "bob", bobPw, nil)
	if code != connackAccepted {
		t.Fatalf("bob: CONNACK %#x", code)
	}
	stays, _ := dialWatched(t, addr, "alice-3", "alice", alicePw, nil)
	if rc := subscribeCode(t, stays, "other/#", nil); rc != 1 {
		t.Fatalf("alice-3 subscribing other/#: %#x", rc)
	}

	reloadUsers(t, users, "alice")
	writeFile(t, path, strings.Replace(revokeBefore, `allow  = ["alice", "bob"]`, `allow  = ["bob"]`, 1))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}

	expectDisconnect(t, v5, 0x87, "news/#")
	prototest.WaitFor(t, 5*time.Second, func() bool { return len(sessionDurables(b, "alice-5")) == 1 })
	if ds := sessionDurables(b, "alice-5"); ds[0].Dest.Path[2] != "other/#" {
		t.Fatalf("alice-5 kept %v, want other/# only", ds[0].Dest.Path)
	}
	e := expectStompError(t, news, "subscription revoked")
	if id, body := e.Frame.Header.Get("subscription"), string(e.Frame.Body); id != "news-sub" || !strings.Contains(body, "/topic/news.**") {
		t.Fatalf("ERROR names subscription %q, body %q; want news-sub and its destination", id, body)
	}
	prototest.WaitFor(t, 5*time.Second, func() bool { return bob.lost.Load() != nil })
	if stays.lost.Load() != nil || !stays.IsConnectionOpen() {
		t.Fatal("a client whose rights did not change was disconnected")
	}
	for _, want := range []string{"user removed", "not authorized any more to receive news/#"} {
		if n := logs.FilterMessage("connection re-checked after reload: closing").FilterFieldKey("error").Filter(func(e observer.LoggedEntry) bool {
			return strings.Contains(entryText(e), want)
		}).Len(); n == 0 {
			t.Errorf("no re-check log line with %q", want)
		}
	}
	checkRevokedAfter(t, addr)
}

// checkRevokedAfter checks what TestReloadRevokes's reload left: bob can no longer log in, and alice
// resumes her session without news/#.
func checkRevokedAfter(t *testing.T, addr string) {
	t.Helper()
	if _, code := dialWatched(t, addr, "bob-4", "bob", bobPw, nil); code != connackBadCredentials {
		t.Fatalf("bob after the reload: CONNACK %#x", code)
	}
	again := dialV5(t, addr, &paho5.Connect{ClientID: "alice-5", UsernameFlag: true, Username: "alice",
		PasswordFlag: true, Password: []byte(alicePw), Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(3600)}})
	if !again.ack.SessionPresent {
		t.Fatal("alice-5's session is gone")
	}
	pub, _ := dialWatched(t, addr, "publisher", "alice", alicePw, nil)
	mqttPublish(t, pub, "news/1", 1, "not for alice")
	mqttPublish(t, pub, "other/1", 1, "for alice")
	if m := again.next(5 * time.Second); string(m.Payload) != "for alice" {
		t.Fatalf("alice-5 got %q on %s", m.Payload, m.Topic)
	}
	again.none(200*time.Millisecond, "news/# was revoked")
}

const hostsBefore = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
virtual_host "a" {
  host_names = ["localhost"]
  anonymous  = true
  store {
    directory = %q
  }
}
virtual_host "b" {
  anonymous = true
}
`

const hostsAfter = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
virtual_host "a" {
  host_names = ["localhost"]
  anonymous  = true
  store {
    directory = %q
  }
}
`

// A reload that removes host b and moves host a's store: the clients of both are told (MQTT 5
// DISCONNECT 0x98, STOMP ERROR) and closed, b is gone, and a is opened again on its new store. Moved back,
// a restores the persistent MQTT session its first store kept, with its backlog.
func TestReloadRemovesAndReplacesHosts(t *testing.T) {
	dir := t.TempDir()
	path, store1, store2 := filepath.Join(dir, "lyre.hcl"), filepath.Join(dir, "a1"), filepath.Join(dir, "a2")
	writeFile(t, path, fmt.Sprintf(hostsBefore, store1))
	b, logs := startFileBroker(t, path)
	addr := b.Addrs()["auto"].String()

	keep := &paho5.Connect{ClientID: "keeper", Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(3600)}}
	keeper := dialV5(t, addr, keep)
	keeper.sub(0, paho5.SubscribeOptions{Topic: "k/#", QoS: 1})
	keeper.drop()
	pub := mqttClient(t, addr, "pub")
	for i := range 3 {
		mqttPublish(t, pub, "k/x", 1, fmt.Sprint("kept-", i))
	}
	onA := dialV5(t, addr, &paho5.Connect{ClientID: "on-a", CleanStart: true})
	onB := dialV5(t, addr, &paho5.Connect{ClientID: "on-b", CleanStart: true, UsernameFlag: true, Username: "dev@b"})
	st, err := stomp.Dial("tcp", addr, stomp.ConnOpt.Host("b"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.MustDisconnect() })
	stSub, err := st.Subscribe("/topic/x", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	settleStomp(t, st)

	writeFile(t, path, fmt.Sprintf(hostsAfter, store2))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	expectDisconnect(t, onA, 0x98, "virtual host removed")
	expectDisconnect(t, onB, 0x98, "virtual host removed")
	expectStompError(t, stSub, "virtual host removed")
	if _, err := stomp.Dial("tcp", addr, stomp.ConnOpt.Host("b")); err == nil {
		t.Fatal("the removed host b still takes clients")
	}
	if e := logs.FilterMessage("configuration reloaded").All(); len(e) != 1 ||
		!strings.Contains(entryText(e[0]), "hosts_removed=[b]") || !strings.Contains(entryText(e[0]), "hosts_replaced=[a (store changed)]") {
		t.Fatalf("summary %v", e)
	}
	// The new store has no session; back on the first one, the session returns with its backlog.
	fresh := dialV5(t, addr, &paho5.Connect{ClientID: "keeper", Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(0)}})
	if fresh.ack.SessionPresent {
		t.Fatal("a's new store holds the session of the old one")
	}
	fresh.drop()
	writeFile(t, path, fmt.Sprintf(hostsAfter, store1))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	back := dialV5(t, addr, keep)
	if !back.ack.SessionPresent {
		t.Fatal("the session was not restored from a's first store")
	}
	for i := range 3 {
		if m := back.next(5 * time.Second); string(m.Payload) != fmt.Sprint("kept-", i) {
			t.Fatalf("backlog message %d: %q", i, m.Payload)
		}
	}
}

// A rule that narrows a subscription made when all of it was allowed (it has no gate) ends the
// connection with 0x98: the client subscribes again under the new rules. A user whose groups changed
// and holds nothing they affect stays connected, and the new groups decide its next publish.
func TestReloadNarrowsAndRegroups(t *testing.T) {
	dir := t.TempDir()
	path, users := filepath.Join(dir, "lyre.hcl"), filepath.Join(dir, "users.hcl")
	usersWith := func(groups string) string {
		return fmt.Sprintf("user \"alice\" {\n  password = %q\n  groups = [%s]\n}\n", hashFor(t, alicePw), groups)
	}
	writeFile(t, users, usersWith(`"writers"`))
	const cfg = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
virtual_host "default" {
  users_file = "users.hcl"
  access_rule {
    allow  = ["+"]
    action = ["connect"]
  }
  access_rule {
    allow  = ["writers"]
    action = ["send"]
    kind   = "topic"
    id     = "w.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["receive", "send"]
    kind   = "topic"
    id     = "n.**"
  }
}
`
	writeFile(t, path, cfg)
	b, _ := startFileBroker(t, path)
	addr := b.Addrs()["auto"].String()
	login := func(id string) *paho5.Connect {
		return &paho5.Connect{ClientID: id, CleanStart: true, UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte(alicePw)}
	}
	reader := dialV5(t, addr, login("reader"))
	reader.sub(0, paho5.SubscribeOptions{Topic: "n/#", QoS: 1})
	writer := dialV5(t, addr, login("writer"))
	writer.pub(&paho5.Publish{Topic: "w/1", QoS: 1, Payload: []byte("allowed")})

	writeFile(t, users, usersWith(""))
	writeFile(t, path, strings.Replace(cfg, `  access_rule {
    allow  = ["+"]
    action = ["receive", "send"]`, `  access_rule {
    deny   = ["*"]
    action = ["receive"]
    kind   = "topic"
    id     = "n.secret.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["receive", "send"]`, 1))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	expectDisconnect(t, reader, 0x98, "n/#")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := writer.c.Publish(ctx, &paho5.Publish{Topic: "w/1", QoS: 1, Payload: []byte("not any more")})
	if r == nil || r.ReasonCode != 0x87 { // paho also returns the refusal as an error
		t.Fatalf("publish after leaving writers: %+v, %v; want PUBACK 0x87", r, err)
	}
	select {
	case d := <-writer.gone:
		t.Fatalf("the writer was disconnected: %#x", d.ReasonCode)
	default:
	}
	// Subscribed again, the filter is gated: n/secret stays out.
	again := dialV5(t, addr, login("reader"))
	again.sub(0, paho5.SubscribeOptions{Topic: "n/#", QoS: 1})
	writer.pub(&paho5.Publish{Topic: "n/secret/x", QoS: 1, Payload: []byte("secret")})
	writer.pub(&paho5.Publish{Topic: "n/open", QoS: 1, Payload: []byte("open")})
	if m := again.next(5 * time.Second); string(m.Payload) != "open" {
		t.Fatalf("got %q on %s", m.Payload, m.Topic)
	}
}

// A certificate file that no longer loads refuses the reload whole, like a configuration error: the
// connector added in the same file is not bound, and the running certificate is still served.
func TestReloadRefusesBrokenCertificate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lyre.hcl")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 7)
	const tlsConfig = `
connector "tls" {
  bind     = "tls://127.0.0.1:0"
  protocol = "mqtt"
  tls {
    cert_file = "cert.pem"
    key_file  = "key.pem"
  }
}
virtual_host "default" {
  anonymous = true
}
`
	writeFile(t, path, tlsConfig)
	b, logs := startFileBroker(t, path)
	addr := b.Addrs()["tls"].String()
	writeFile(t, certFile, "not a certificate")
	writeFile(t, path, tlsConfig+"connector \"extra\" {\n  bind     = \"tcp://127.0.0.1:0\"\n  protocol = \"mqtt\"\n}\n")
	err := b.Reload()
	if err == nil || !strings.Contains(err.Error(), "cert_file") {
		t.Fatalf("Reload = %v, want a refusal naming the certificate", err)
	}
	if _, ok := b.Addrs()["extra"]; ok {
		t.Fatal("the refused file's connector was bound")
	}
	if logs.FilterMessage("reload refused: the configuration has errors; the running configuration is kept").Len() != 1 {
		t.Fatal("the refusal was not logged")
	}
	if got := servedSerial(t, addr); got != 7 {
		t.Fatalf("served serial %d, want the running certificate's 7", got)
	}
}
