package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/virtualhost"
)

// MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2-3].
const (
	connackAccepted       = 0x00
	connackBadCredentials = 0x04
	connackNotAuthorized  = 0x05
)

// securityConfig has two password-protected hosts sharing topic names and an anonymous third one reached
// through its own MQTT connector. Host "a" (the default) holds one rule for each access-rule feature.
const securityConfig = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
connector "anon" {
  bind         = "tcp://127.0.0.1:0"
  protocol     = "mqtt"
  virtual_host = "c"
}

# Broker rules come before every host's.
access_rule {
  deny = ["*"]
  kind = "topic"
  id   = "forbidden.**"
}

virtual_host "a" {
  host_names = ["a.example", "localhost", "127.0.0.1"]
  users_file = "users-a.hcl"

  access_rule {
    deny   = ["carol"]
    action = ["connect"]
  }
  access_rule {
    allow  = ["+"]
    action = "connect"
  }
  access_rule {
    allow = ["admins"]
    kind  = "topic"
    id    = "$SYS.**"
  }
  access_rule {
    deny   = ["bob"]
    action = ["send"]
    kind   = "topic"
    id     = "orders.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "orders.**"
  }
  access_rule {
    allow = ["+"]
    kind  = "topic"
    id    = "users.%u.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "devices.%c.**"
  }
  access_rule {
    deny = ["dave"]
    kind = "topic"
    id   = "alerts.private.**"
  }
  access_rule {
    allow  = ["dave"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "alerts.**"
  }
  access_rule {
    allow = ["admins"]
    kind  = "topic"
    id    = "alerts.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["receive"]
    kind   = "topic"
    id     = "alerts.public.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "news.**"
  }
  access_rule {
    allow = ["+"]
    kind  = "queue"
    id    = "jobs.*"
  }
  access_rule {
    allow = ["+"]
    kind  = "temp_queue"
  }
}

virtual_host "b" {
  host_names = ["b.example"]
  users_file = "users-b.hcl"
  access_rule {
    allow = ["+"]
  }
}

# Broker rules apply here too, and with rules present no match denies: anyone may do the rest.
virtual_host "c" {
  anonymous = true
  access_rule {
    allow = ["*"]
  }
}
`

// Passwords of the users files.
const (
	alicePass  = "wonderland"
	bobPass    = "builder"
	carolPass  = "carol-pass"
	davePass   = "dave-pass"
	zedPass    = "zed-pass"
	alicePassB = "alice-on-b"
)

type secureBroker struct {
	b     *Broker
	addr  string // the autodetecting connector
	anon  string // the MQTT connector of the anonymous host c
	logs  *observer.ObservedLogs
	hostA *virtualhost.Host
}

func hashFor(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// startSecureBroker writes the users files next to the config (which names them relatively) and runs
// the broker with a log observer alongside the test log.
func startSecureBroker(t *testing.T) *secureBroker {
	t.Helper()
	return startSecureBrokerWith(t, securityConfig)
}

// startSecureBrokerWith is startSecureBroker with another configuration naming the same users files.
func startSecureBrokerWith(t *testing.T, config string) *secureBroker {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users-a.hcl"), fmt.Sprintf(`
user "alice" {
  password = %q
  groups   = ["admins"]
}
user "bob" {
  password = %q
  client_ids = ["dev*"] # devices.%%c.** is his for these client ids only
}
user "carol" {
  password = %q
}
user "dave" {
  password = %q
}
`, hashFor(t, alicePass), hashFor(t, bobPass), hashFor(t, carolPass), hashFor(t, davePass)))
	writeFile(t, filepath.Join(dir, "users-b.hcl"), fmt.Sprintf(`
user "zed" {
  password = %q
}
user "alice" {
  password = %q
}
`, hashFor(t, zedPass), hashFor(t, alicePassB)))
	path := filepath.Join(dir, "lyre.hcl")
	writeFile(t, path, config)
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	b, err := Start(cfg, log)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { shutdown(t, b) })
	sb := &secureBroker{b: b, addr: b.Addrs()["auto"].String(), anon: b.Addrs()["anon"].String(), logs: logs,
		hostA: b.Hosts().Lookup("a")}
	// Login failures from 127.0.0.1 add up over a test: keep the imposed delays short.
	for _, h := range b.Hosts().Hosts() {
		h.Throttle = &virtualhost.Throttle{Free: 3, Base: 5 * time.Millisecond, Max: 40 * time.Millisecond}
	}
	t.Cleanup(func() {
		// Never a password in the log, whatever happened.
		for _, e := range logs.All() {
			text := entryText(e)
			for _, pw := range []string{alicePass, bobPass, carolPass, davePass, zedPass, alicePassB, "wrong-pass"} {
				if strings.Contains(text, pw) {
					t.Errorf("log line reveals a password: %s", text)
				}
			}
		}
	})
	return sb
}

func shutdown(t *testing.T, b *Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// entryText renders a log entry's logger name (the protocol, for a connection's lines), message and
// string fields for searching.
func entryText(e observer.LoggedEntry) string {
	var b strings.Builder
	if e.LoggerName != "" {
		b.WriteString(e.LoggerName + " ")
	}
	b.WriteString(e.Message)
	for k, v := range e.ContextMap() {
		fmt.Fprintf(&b, " %s=%v", k, v)
	}
	return b.String()
}

// logged counts log entries whose text contains every one of the snippets.
func (sb *secureBroker) logged(snippets ...string) int {
	n := 0
	for _, e := range sb.logs.All() {
		text := entryText(e)
		all := true
		for _, s := range snippets {
			all = all && strings.Contains(text, s)
		}
		if all {
			n++
		}
	}
	return n
}

// mqttDial connects with credentials (none when user is "") and returns the CONNACK return code.
func mqttDial(t *testing.T, addr, id, user, pass string) (paho.Client, byte) {
	t.Helper()
	return mqttDialURL(t, "tcp://"+addr, 4, id, user, pass)
}

// mqttDialURL is mqttDial to a broker URL (tcp:// or ws://) with protocol level 3 (MQTT 3.1) or 4 (3.1.1).
func mqttDialURL(t *testing.T, url string, level uint, id, user, pass string) (paho.Client, byte) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(id).
		SetProtocolVersion(level).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	if user != "" {
		opts.SetUsername(user).SetPassword(pass)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("mqtt connect %s: no CONNACK", id)
	}
	code := tok.(*paho.ConnectToken).ReturnCode()
	if code == connackAccepted {
		t.Cleanup(func() { c.Disconnect(100) })
	}
	return c, code
}

func mqttLogin(t *testing.T, addr, id, user, pass string) paho.Client {
	t.Helper()
	c, code := mqttDial(t, addr, id, user, pass)
	if code != connackAccepted {
		t.Fatalf("mqtt login %s as %q: CONNACK %#x", id, user, code)
	}
	return c
}

// mqttSubscribeCode subscribes and returns the SUBACK return code.
func mqttSubscribeCode(t *testing.T, c paho.Client, filter string) (<-chan paho.Message, byte) {
	t.Helper()
	ch := make(chan paho.Message, 100)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { ch <- m })
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatalf("subscribe %s: no SUBACK", filter)
	}
	st := tok.(*paho.SubscribeToken)
	return ch, st.Result()[filter]
}

func stompDial(addr, host, login, pass string) (*stomp.Conn, error) {
	opts := []func(*stomp.Conn) error{}
	if host != "" {
		opts = append(opts, stomp.ConnOpt.Host(host))
	}
	if login != "" {
		opts = append(opts, stomp.ConnOpt.Login(login, pass))
	}
	return stomp.Dial("tcp", addr, opts...)
}

func stompLogin(t *testing.T, addr, host, login, pass string) *stomp.Conn {
	t.Helper()
	c, err := stompDial(addr, host, login, pass)
	if err != nil {
		t.Fatalf("stomp login %q on %q: %v", login, host, err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// stompErrorMessage returns the message header of the ERROR frame err carries, or "".
func stompErrorMessage(err error) string {
	var se stomp.Error
	if errors.As(err, &se) && se.Frame != nil {
		return se.Frame.Header.Get("message")
	}
	var sp *stomp.Error
	if errors.As(err, &sp) && sp.Frame != nil {
		return sp.Frame.Header.Get("message")
	}
	return ""
}

// expectNone checks that nothing arrives on ch for a short while.
func expectNone[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case m := <-ch:
		t.Errorf("%s: unexpected delivery %v", what, m)
	case <-time.After(150 * time.Millisecond):
	}
}

func expectMQTT(t *testing.T, ch <-chan paho.Message, topic, body string) {
	t.Helper()
	select {
	case m := <-ch:
		if m.Topic() != topic || string(m.Payload()) != body {
			t.Errorf("got %s %q, want %s %q", m.Topic(), m.Payload(), topic, body)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %s", topic)
	}
}

func TestMQTTAuthenticationOutcomes(t *testing.T) {
	sb := startSecureBroker(t)
	long := strings.Repeat("u", 5000)
	for i, tt := range []struct {
		name, addr, user, pass string
		want                   byte
	}{
		{"valid user and password", sb.addr, "alice", alicePass, connackAccepted},
		{"user without groups", sb.addr, "bob", bobPass, connackAccepted},
		{"wrong password", sb.addr, "alice", "wrong-pass", connackBadCredentials},
		{"password of another user", sb.addr, "alice", bobPass, connackBadCredentials},
		{"unknown user", sb.addr, "mallory", "wrong-pass", connackBadCredentials},
		{"no credentials on a password host", sb.addr, "", "", connackNotAuthorized},
		{"valid password, connect denied by rule: answered as a wrong one", sb.addr, "carol", carolPass, connackBadCredentials},
		{"user@host picks host b", sb.addr, "zed@b.example", zedPass, connackAccepted},
		{"user@host: host b's own password for alice", sb.addr, "alice@b.example", alicePassB, connackAccepted},
		{"user@host: host a's password is not host b's", sb.addr, "alice@b.example", alicePass, connackBadCredentials},
		{"user@host: a user of host a only", sb.addr, "bob@b.example", bobPass, connackBadCredentials},
		{"user@unknown host stays on the default host, as a user name", sb.addr, "alice@nowhere", alicePass, connackBadCredentials},
		{"oversized user name", sb.addr, long, alicePass, connackBadCredentials},
		{"oversized password", sb.addr, "alice", long, connackBadCredentials},
		{"anonymous host by connector, no credentials", sb.anon, "", "", connackAccepted},
		{"anonymous host by connector, any name", sb.anon, "whoever", "x", connackAccepted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := sb.logged("mqtt login refused")
			_, code := mqttDial(t, tt.addr, fmt.Sprintf("auth-%d", i), tt.user, tt.pass)
			if code != tt.want {
				t.Fatalf("CONNACK %#x, want %#x", code, tt.want)
			}
			if tt.want != connackAccepted {
				prototest.WaitFor(t, 5*time.Second, func() bool { return sb.logged("mqtt login refused", "remote=127.0.0.1") > before })
			}
		})
	}
}

func TestSTOMPAuthenticationOutcomes(t *testing.T) {
	sb := startSecureBroker(t)
	for _, tt := range []struct {
		name, host, login, pass string
		wantErr                 string // ERROR message header; "" = CONNECTED
	}{
		{"valid login on the default host", "", "alice", alicePass, ""},
		{"valid login, host by name", "a", "bob", bobPass, ""},
		{"valid login, host by alias", "a.example", "bob", bobPass, ""},
		{"host b by alias with its own users", "b.example", "zed", zedPass, ""},
		{"wrong passcode", "a", "alice", "wrong-pass", "access refused"},
		{"unknown login", "a", "mallory", "wrong-pass", "access refused"},
		{"host a user on host b", "b", "bob", bobPass, "access refused"},
		{"no login on a password host", "a", "", "", "access refused"},
		{"connect denied by rule", "a", "carol", carolPass, "access refused"},
		{"oversized login", "a", strings.Repeat("l", 4000), "x", "access refused"},
		{"oversized passcode", "a", "alice", strings.Repeat("p", 4000), "access refused"},
		{"unknown virtual host: answered as a refused login", "nowhere.example", "alice", alicePass, "access refused"},
		{"anonymous host", "c", "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := stompDial(sb.addr, tt.host, tt.login, tt.pass)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CONNECT: %v", err)
				}
				_ = c.Disconnect()
				return
			}
			if err == nil {
				_ = c.Disconnect()
				t.Fatalf("CONNECT accepted, want ERROR %q", tt.wantErr)
			}
			if got := stompErrorMessage(err); got != tt.wantErr {
				t.Fatalf("CONNECT error %v (message %q), want ERROR %q", err, got, tt.wantErr)
			}
		})
	}
	if sb.logged("stomp login refused", "remote=127.0.0.1") < 7 {
		t.Errorf("refused STOMP logins not logged with the remote address: %d lines", sb.logged("stomp login refused"))
	}
}

// Repeated failures from one address are answered later and later (bounded by the throttle's Max), and
// the broker still answers a good login from the same address.
func TestLoginFloodIsSlowedDown(t *testing.T) {
	sb := startSecureBroker(t)
	sb.hostA.Throttle = &virtualhost.Throttle{Free: 2, Base: 20 * time.Millisecond, Max: 80 * time.Millisecond}
	var last time.Duration
	for i := range 8 {
		start := time.Now()
		if _, code := mqttDial(t, sb.addr, fmt.Sprintf("flood-%d", i), "alice", "wrong-pass"); code != connackBadCredentials {
			t.Fatalf("attempt %d: CONNACK %#x", i, code)
		}
		last = time.Since(start)
	}
	if last < 80*time.Millisecond {
		t.Errorf("the 8th failure was answered after %v, want at least the 80ms cap", last)
	}
	if n := sb.hostA.Throttle.Failures("127.0.0.1"); n != 8 {
		t.Errorf("failures counted = %d, want 8", n)
	}
	if sb.logged("mqtt login refused", "delay=80ms") == 0 {
		t.Error("the imposed delay is not logged")
	}
	mqttLogin(t, sb.addr, "after-flood", "alice", alicePass)
}

func TestMQTTAccessRules(t *testing.T) {
	sb := startSecureBroker(t)
	alice := mqttLogin(t, sb.addr, "alice-1", "alice", alicePass)
	bob := mqttLogin(t, sb.addr, "dev1", "bob", bobPass)

	t.Run("allow: + may receive orders", func(t *testing.T) {
		ch, code := mqttSubscribeCode(t, bob, "orders/#")
		if code != 1 {
			t.Fatalf("SUBACK %#x, want granted QoS 1", code)
		}
		mqttPublish(t, alice, "orders/new", 1, "o1")
		expectMQTT(t, ch, "orders/new", "o1")
	})
	t.Run("deny first: bob may not send orders although + may; PUBACK still sent [MQTT-3.3.5-2]", func(t *testing.T) {
		ch, _ := mqttSubscribeCode(t, alice, "orders/bob")
		before := sb.logged("mqtt send refused", "orders/bob")
		mqttPublish(t, bob, "orders/bob", 1, "forged") // acknowledged
		expectNone(t, ch, "denied publish")
		if sb.logged("mqtt send refused", "orders/bob", "remote=127.0.0.1") <= before {
			t.Error("refused publish not logged")
		}
	})
	t.Run("default deny: no rule names the topic", func(t *testing.T) {
		if _, code := mqttSubscribeCode(t, bob, "elsewhere/x"); code != 0x80 {
			t.Errorf("SUBACK %#x, want 0x80", code)
		}
	})
	t.Run("%u: own subtree only", func(t *testing.T) {
		ch, code := mqttSubscribeCode(t, bob, "users/bob/#")
		if code != 1 {
			t.Fatalf("own subtree SUBACK %#x", code)
		}
		if _, code := mqttSubscribeCode(t, bob, "users/alice/#"); code != 0x80 {
			t.Errorf("another user's subtree SUBACK %#x, want 0x80", code)
		}
		mqttPublish(t, bob, "users/bob/note", 1, "mine")
		expectMQTT(t, ch, "users/bob/note", "mine")
	})
	t.Run("%c: own client id subtree only", func(t *testing.T) {
		ch, code := mqttSubscribeCode(t, bob, "devices/dev1/#")
		if code != 1 {
			t.Fatalf("own device SUBACK %#x", code)
		}
		if _, code := mqttSubscribeCode(t, bob, "devices/dev2/#"); code != 0x80 {
			t.Errorf("another device SUBACK %#x, want 0x80", code)
		}
		mqttPublish(t, bob, "devices/dev1/temp", 1, "20")
		expectMQTT(t, ch, "devices/dev1/temp", "20")
		// alice-1 is not dev1: her publish there is not routed.
		mqttPublish(t, alice, "devices/dev1/temp", 1, "forged")
		expectNone(t, ch, "other client's publish into dev1's subtree")
	})
	t.Run("wildcard subscription delivers only allowed topics", func(t *testing.T) {
		ch, code := mqttSubscribeCode(t, bob, "alerts/#")
		if code != 1 {
			t.Fatalf("SUBACK %#x: a filter reaching some allowed topics is granted", code)
		}
		all, code := mqttSubscribeCode(t, bob, "#")
		if code != 1 {
			t.Fatalf("# SUBACK %#x", code)
		}
		mqttPublish(t, alice, "alerts/private/fire", 1, "secret")
		mqttPublish(t, alice, "$SYS/broker/load", 1, "0.5")
		mqttPublish(t, alice, "alerts/public/fire", 1, "evacuate")
		expectMQTT(t, ch, "alerts/public/fire", "evacuate")
		expectMQTT(t, all, "alerts/public/fire", "evacuate")
		expectNone(t, ch, "alerts/# after the allowed message")
		expectNone(t, all, "# after the allowed message")
	})
	t.Run("$SYS: granted to admins by name only", func(t *testing.T) {
		if _, code := mqttSubscribeCode(t, bob, "$SYS/#"); code != 0x80 {
			t.Errorf("bob $SYS/# SUBACK %#x, want 0x80", code)
		}
		// The broker's own retained value; no client may publish under $SYS, alice neither.
		ch, code := mqttSubscribeCode(t, alice, "$SYS/broker/version")
		if code != 1 {
			t.Fatalf("alice $SYS/broker/version SUBACK %#x", code)
		}
		expectMQTT(t, ch, "$SYS/broker/version", "lyre version "+version) // mosquitto: "mosquitto version 2.0.11"
	})
	t.Run("one SUBSCRIBE, one code per filter [MQTT-3.8.4-5]", func(t *testing.T) {
		tok := bob.SubscribeMultiple(map[string]byte{"news/x": 1, "forbidden/x": 1, "users/alice/x": 0}, func(paho.Client, paho.Message) {})
		if !tok.WaitTimeout(5 * time.Second) {
			t.Fatal("no SUBACK")
		}
		got := tok.(*paho.SubscribeToken).Result()
		if got["news/x"] != 1 || got["forbidden/x"] != 0x80 || got["users/alice/x"] != 0x80 {
			t.Errorf("SUBACK codes %v", got)
		}
	})
}

func TestSTOMPAccessRules(t *testing.T) {
	sb := startSecureBroker(t)
	alice := stompLogin(t, sb.addr, "a", "alice", alicePass)
	bob := stompLogin(t, sb.addr, "a", "bob", bobPass)

	sub, err := bob.Subscribe("/topic/alerts.**", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	// The receipt proves the SUBSCRIBE was processed before alice publishes.
	if err := bob.Send("/topic/news.sync", "text/plain", []byte("x"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/topic/alerts.private.fire", "/topic/alerts.public.fire"} {
		if err := alice.Send(d, "text/plain", []byte(d), stomp.SendOpt.Receipt); err != nil {
			t.Fatalf("alice SEND %s: %v", d, err)
		}
	}
	if m := readStomp(t, sub); m.Destination != "/topic/alerts.public.fire" {
		t.Errorf("wildcard subscription got %s, want only the allowed alerts.public.fire", m.Destination)
	}
	expectNone(t, sub.C, "wildcard STOMP subscription")

	// A refused SEND is an ERROR (and the connection closes).
	err = bob.Send("/topic/orders.new", "text/plain", []byte("forged"), stomp.SendOpt.Receipt)
	if got := stompErrorMessage(err); got != "access refused" {
		t.Errorf("bob SEND orders.new: %v (message %q), want ERROR access refused", err, got)
	}
	// A refused SUBSCRIBE is an ERROR too.
	carolless := stompLogin(t, sb.addr, "a", "bob", bobPass)
	s2, err := carolless.Subscribe("/topic/users.alice.**", stomp.AckAuto)
	if err == nil {
		select {
		case m := <-s2.C:
			err = m.Err
		case <-time.After(5 * time.Second):
		}
	}
	if err == nil || !strings.Contains(err.Error(), "access refused") {
		t.Errorf("bob SUBSCRIBE users.alice.**: %v, want ERROR access refused", err)
	}
	// Queues: + may consume jobs.*.
	q, err := alice.Subscribe("/queue/jobs.print", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Send("/queue/jobs.print", "text/plain", []byte("job"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if m := readStomp(t, q); string(m.Body) != "job" {
		t.Errorf("queue message %q", m.Body)
	}
}

// A NUL inside a segment (STOMP %00) must not make one topic's access decision stand for another's:
// the gate of a wildcard subscription once cached decisions under the segments joined by NUL, so
// "alerts.private%00x" (two levels, allowed) and alerts/private/x (three, denied) shared an entry.
func TestAccessDecisionNotPoisonedByNULSegment(t *testing.T) {
	sb := startSecureBroker(t)
	dave := stompLogin(t, sb.addr, "a", "dave", davePass)
	sub, err := dave.Subscribe("/topic/alerts.**", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := dave.Send("/topic/alerts.private%00x", "text/plain", []byte("own"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("dave SEND alerts.private%%00x: %v", err)
	}
	if m := readStomp(t, sub); string(m.Body) != "own" {
		t.Fatalf("dave got %q, want his own message on the allowed two-level topic", m.Body)
	}
	alice := mqttLogin(t, sb.addr, "alice-nul", "alice", alicePass)
	mqttPublish(t, alice, "alerts/private/x", 1, "secret")
	mqttPublish(t, alice, "alerts/public/y", 1, "public")
	if m := readStomp(t, sub); string(m.Body) != "public" {
		t.Fatalf("dave received %q from %s; the denied alerts/private/x must not reach him", m.Body, m.Destination)
	}
	expectNone(t, sub.C, "dave's alerts.** subscription")
}

// The same topic names on two hosts never cross: STOMP picks the host by its host header, MQTT by
// user@host.
func TestHostsWithSameTopicNamesStayIsolated(t *testing.T) {
	sb := startSecureBroker(t)
	onA := stompLogin(t, sb.addr, "a.example", "alice", alicePass)
	onB := stompLogin(t, sb.addr, "b.example", "zed", zedPass)
	subA, err := onA.Subscribe("/topic/news.x", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	subB, err := onB.Subscribe("/topic/news.x", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*stomp.Conn{onA, onB} {
		if err := c.Send("/topic/news.sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	mqttB := mqttLogin(t, sb.addr, "pub-b", "zed@b.example", zedPass)
	mqttA := mqttLogin(t, sb.addr, "pub-a", "alice", alicePass)
	mqttPublish(t, mqttB, "news/x", 1, "from-b")
	if m := readStomp(t, subB); string(m.Body) != "from-b" {
		t.Errorf("host b got %q", m.Body)
	}
	expectNone(t, subA.C, "host a subscriber, message published on host b")
	mqttPublish(t, mqttA, "news/x", 1, "from-a")
	if m := readStomp(t, subA); string(m.Body) != "from-a" {
		t.Errorf("host a got %q", m.Body)
	}
	expectNone(t, subB.C, "host b subscriber, message published on host a")
}

// negativeCase is one attempt to reach something forbidden. try returns an error when the attempt was
// not refused as it should be; log names a snippet the refusal's log line must hold.
type negativeCase struct {
	name string
	try  func(t *testing.T, sb *secureBroker) error
	log  string
}

func mqttConnectRefused(user, pass string, want byte) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		if _, code := mqttDial(t, sb.addr, "neg", user, pass); code != want {
			return fmt.Errorf("CONNACK %#x, want %#x", code, want)
		}
		return nil
	}
}

func mqttSubscribeRefused(user, pass, clientID, filter string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		c := mqttLogin(t, sb.addr, clientID, user, pass)
		if _, code := mqttSubscribeCode(t, c, filter); code != 0x80 {
			return fmt.Errorf("SUBACK %#x, want 0x80", code)
		}
		return nil
	}
}

// mqttPublishRefused publishes at QoS 1 (acknowledged regardless) and checks that a "#" subscriber that
// may receive the topic (alice, an admin, or the owner of the subtree) gets nothing from it.
func mqttPublishRefused(user, pass, clientID, topic, watcher, watcherPass, watcherID string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		w := mqttLogin(t, sb.addr, watcherID, watcher, watcherPass)
		ch, code := mqttSubscribeCode(t, w, "#")
		if code == 0x80 {
			return errors.New("watcher may not subscribe to #")
		}
		c := mqttLogin(t, sb.addr, clientID, user, pass)
		tok := c.Publish(topic, 1, false, "forged")
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return fmt.Errorf("QoS 1 publish not acknowledged: %v", tok.Error())
		}
		deadline := time.After(100 * time.Millisecond)
		for {
			select {
			case m := <-ch:
				if m.Topic() == topic {
					return fmt.Errorf("refused publish delivered: %s %q", m.Topic(), m.Payload())
				}
			case <-deadline:
				return nil
			}
		}
	}
}

func stompConnectRefused(host, login, pass, want string) func(*testing.T, *secureBroker) error {
	return stompConnectRefusedVia(tcpSTOMP, host, login, pass, want)
}

// stompConnectRefusedVia is stompConnectRefused over the transport dial opens.
func stompConnectRefusedVia(dial stompDialer, host, login, pass, want string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		c, err := dial(sb, host, login, pass)
		if err == nil {
			_ = c.Disconnect()
			return errors.New("CONNECT accepted")
		}
		if got := stompErrorMessage(err); got != want {
			return fmt.Errorf("ERROR %q (%v), want %q", got, err, want)
		}
		return nil
	}
}

func stompSendRefused(host, login, pass, dest, want string) func(*testing.T, *secureBroker) error {
	return stompSendRefusedVia(tcpSTOMP, host, login, pass, dest, want)
}

// stompSendRefusedVia is stompSendRefused over the transport dial opens, with extra SEND headers given
// as name, value pairs.
func stompSendRefusedVia(dial stompDialer, host, login, pass, dest, want string, hdrs ...string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		c, err := dial(sb, host, login, pass)
		if err != nil {
			return err
		}
		defer c.MustDisconnect()
		opts := []func(*frame.Frame) error{stomp.SendOpt.Receipt}
		for i := 0; i+1 < len(hdrs); i += 2 {
			opts = append(opts, stomp.SendOpt.Header(hdrs[i], hdrs[i+1]))
		}
		err = c.Send(dest, "text/plain", []byte("forged"), opts...)
		if got := stompErrorMessage(err); got != want {
			return fmt.Errorf("SEND %s: %v (ERROR %q), want ERROR %q", dest, err, got, want)
		}
		return nil
	}
}

// stompSubscribeRefused subscribes with extra headers given as name, value pairs.
func stompSubscribeRefused(host, login, pass, dest, want string, hdrs ...string) func(*testing.T, *secureBroker) error {
	return stompSubscribeRefusedVia(tcpSTOMP, host, login, pass, dest, want, hdrs...)
}

// stompSubscribeRefusedVia is stompSubscribeRefused over the transport dial opens.
func stompSubscribeRefusedVia(dial stompDialer, host, login, pass, dest, want string, hdrs ...string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		c, err := dial(sb, host, login, pass)
		if err != nil {
			return err
		}
		defer c.MustDisconnect()
		var sopts []func(*frame.Frame) error
		for i := 0; i+1 < len(hdrs); i += 2 {
			sopts = append(sopts, stomp.SubscribeOpt.Header(hdrs[i], hdrs[i+1]))
		}
		sub, err := c.Subscribe(dest, stomp.AckAuto, sopts...)
		if err == nil {
			select {
			case m := <-sub.C:
				err = m.Err
			case <-time.After(5 * time.Second):
				return fmt.Errorf("SUBSCRIBE %s: no ERROR", dest)
			}
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("SUBSCRIBE %s: %v, want ERROR %q", dest, err, want)
		}
		return nil
	}
}

func TestNegativeTable(t *testing.T) {
	sb := startSecureBrokerWith(t, negativeConfig(t))
	// Everyone else: a subscriber and a publisher on each host, checked after the table.
	canarySub := mqttLogin(t, sb.addr, "canary-sub", "alice", alicePass)
	canaryCh, _ := mqttSubscribeCode(t, canarySub, "news/canary")
	canaryPub := mqttLogin(t, sb.addr, "canary-pub", "bob", bobPass)
	canaryB := stompLogin(t, sb.addr, "b", "zed", zedPass)
	canaryBSub, err := canaryB.Subscribe("/topic/news.canary", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}

	// A live STOMP connection's temp queue, for the "other connection's temp queue" cases.
	owner := stompLogin(t, sb.addr, "a", "alice", alicePass)
	if _, err := owner.Subscribe("/temp-queue/replies", stomp.AckAuto); err != nil {
		t.Fatal(err)
	}

	long := strings.Repeat("x", 60000)
	cases := []negativeCase{
		// Authentication.
		{"mqtt wrong password", mqttConnectRefused("alice", "wrong-pass", connackBadCredentials), "mqtt login refused"},
		{"mqtt unknown user", mqttConnectRefused("mallory", "wrong-pass", connackBadCredentials), "mqtt login refused"},
		{"mqtt no credentials", mqttConnectRefused("", "", connackNotAuthorized), "mqtt login refused"},
		{"mqtt connect denied by rule", mqttConnectRefused("carol", carolPass, connackBadCredentials), "mqtt login refused"},
		{"mqtt oversized user name", mqttConnectRefused(long, "x", connackBadCredentials), "mqtt login refused"},
		{"mqtt oversized password", mqttConnectRefused("alice", long, connackBadCredentials), "mqtt login refused"},
		{"mqtt other host's user via user@host", mqttConnectRefused("bob@b.example", bobPass, connackBadCredentials), "mqtt login refused"},
		{"mqtt other host's password via user@host", mqttConnectRefused("alice@b.example", alicePass, connackBadCredentials), "mqtt login refused"},
		{"stomp wrong passcode", stompConnectRefused("a", "alice", "wrong-pass", "access refused"), "stomp login refused"},
		{"stomp no login", stompConnectRefused("a", "", "", "access refused"), "stomp login refused"},
		{"stomp other host's user", stompConnectRefused("b", "bob", bobPass, "access refused"), "stomp login refused"},
		{"stomp oversized login", stompConnectRefused("a", strings.Repeat("l", 5000), "x", "access refused"), "stomp login refused"},
		{"stomp unknown host", stompConnectRefused("evil.example", "alice", alicePass, "access refused"), `no virtual host is named "evil.example"`},
		// Subscriptions.
		{"mqtt $SYS/# without being an admin", mqttSubscribeRefused("bob", bobPass, "n1", "$SYS/#"), "subscribe refused"},
		{"mqtt $SYS literal topic", mqttSubscribeRefused("bob", bobPass, "n2", "$SYS/broker/clients"), "subscribe refused"},
		{"mqtt +/# does not reach $SYS either", mqttSubscribeRefused("bob", bobPass, "n2b", "$SYS/+"), "subscribe refused"},
		{"mqtt broker-level deny", mqttSubscribeRefused("alice", alicePass, "n3", "forbidden/#"), "subscribe refused"},
		{"mqtt another user's subtree", mqttSubscribeRefused("bob", bobPass, "n4", "users/alice/#"), "subscribe refused"},
		{"mqtt another client's subtree", mqttSubscribeRefused("bob", bobPass, "dev1", "devices/dev2/#"), "subscribe refused"},
		{"mqtt wildcard client id is literal in %c", mqttSubscribeRefused("bob", bobPass, "+", "devices/dev2/#"), "subscribe refused"},
		{"mqtt empty level escape attempt", mqttSubscribeRefused("bob", bobPass, "n5", "users//alice/#"), "subscribe refused"},
		{"mqtt dot-dot level stays inside the own subtree", func(t *testing.T, sb *secureBroker) error {
			// Levels are never normalised: users/bob/../alice is granted (it lies under users/bob) and is
			// not users/alice.
			c := mqttLogin(t, sb.addr, "n6", "bob", bobPass)
			ch, code := mqttSubscribeCode(t, c, "users/bob/../alice/#")
			if code == 0x80 {
				return errors.New("own subtree refused")
			}
			a := mqttLogin(t, sb.addr, "n6a", "alice", alicePass)
			mqttPublish(t, a, "users/alice/inbox", 1, "private")
			select {
			case m := <-ch:
				return fmt.Errorf("escaped into %s", m.Topic())
			case <-time.After(100 * time.Millisecond):
			}
			return nil
		}, ""},
		{"mqtt private alerts only", mqttSubscribeRefused("bob", bobPass, "n7", "alerts/private/#"), "subscribe refused"},
		{"mqtt default deny", mqttSubscribeRefused("bob", bobPass, "n8", "payroll/#"), "subscribe refused"},
		{"stomp $SYS", stompSubscribeRefused("a", "bob", bobPass, "/topic/$SYS.**", "access refused"), "subscribe refused"},
		{"stomp another user's subtree", stompSubscribeRefused("a", "bob", bobPass, "/topic/users.alice.**", "access refused"), "subscribe refused"},
		{"stomp default-deny queue", stompSubscribeRefused("a", "bob", bobPass, "/queue/payroll", "access refused"), "subscribe refused"},
		{"stomp composite with one forbidden part", stompSubscribeRefused("a", "bob", bobPass, "/topic/news.x,/topic/forbidden.x", "access refused"), "subscribe refused"},
		{"stomp durable subscription over partly forbidden topics", stompSubscribeRefused("a", "bob", bobPass, "/topic/alerts.**", "access refused",
			"persistent", "true", "id", "durable-1"), "subscribe refused"},
		{"stomp other connection's temp queue", func(t *testing.T, sb *secureBroker) error {
			return stompSubscribeRefused("a", "bob", bobPass, "/temp-queue/"+owner.Session()+".replies", "invalid destination")(t, sb)
		}, "temporary destinations are private to the connection"},
		// Publishing.
		{"mqtt send denied by first match", mqttPublishRefused("bob", bobPass, "p1", "orders/new", "alice", alicePass, "w1"), "mqtt send refused"},
		{"mqtt send to $SYS", mqttPublishRefused("bob", bobPass, "p2", "$SYS/broker/load", "alice", alicePass, "w2"), "mqtt send refused"},
		{"mqtt send to another user's subtree", mqttPublishRefused("bob", bobPass, "p3", "users/alice/inbox", "alice", alicePass, "w3"), "mqtt send refused"},
		{"mqtt send to another client's subtree", mqttPublishRefused("bob", bobPass, "dev2", "devices/dev1/cmd", "bob", bobPass, "dev1"), "mqtt send refused"},
		{"mqtt send to broker-denied topic", mqttPublishRefused("alice", alicePass, "p4", "forbidden/x", "alice", alicePass, "w4"), "mqtt send refused"},
		{"stomp send denied by first match", stompSendRefused("a", "bob", bobPass, "/topic/orders.new", "access refused"), "send refused"},
		{"stomp send to $SYS", stompSendRefused("a", "bob", bobPass, "/topic/$SYS.x", "access refused"), "send refused"},
		{"stomp send with an empty level instead of the user", stompSendRefused("a", "bob", bobPass, "/topic/users..alice", "access refused"), "send refused"},
		{"stomp send to a default-deny queue", stompSendRefused("a", "bob", bobPass, "/queue/payroll", "access refused"), "send refused"},
		{"stomp send to a broker-denied topic", stompSendRefused("a", "alice", alicePass, "/topic/forbidden.x", "access refused"), "send refused"},
		{"stomp composite send with one forbidden part", stompSendRefused("a", "bob", bobPass, "/topic/news.x,/topic/$SYS.y", "access refused"), "send refused"},
		// CONNECT flood: every attempt refused; later ones are slowed down.
		{"mqtt CONNECT flood", func(t *testing.T, sb *secureBroker) error {
			for i := range 15 {
				if _, code := mqttDial(t, sb.addr, fmt.Sprintf("flood%d", i), "alice", "wrong-pass"); code != connackBadCredentials {
					return fmt.Errorf("flood attempt %d: CONNACK %#x", i, code)
				}
			}
			return nil
		}, "delay=40ms"},
	}
	// MQTT 3.1 and 5, WebSocket and the management API, with canaries on each.
	extra := newNegativeExtra(t, sb, "canary-sub")
	cases = append(cases, extra.cases()...)
	if len(cases) < 60 {
		t.Fatalf("only %d negative cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := 0
			if tc.log != "" {
				before = sb.logged(tc.log)
			}
			if err := tc.try(t, sb); err != nil {
				t.Fatal(err)
			}
			if tc.log != "" {
				prototest.WaitFor(t, 5*time.Second, func() bool { return sb.logged(tc.log) > before })
			}
		})
	}

	// The broker kept serving everyone else throughout.
	mqttPublish(t, canaryPub, "news/canary", 1, "still here")
	expectMQTT(t, canaryCh, "news/canary", "still here")
	if err := canaryB.Send("/topic/news.canary", "text/plain", []byte("b too"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("host b canary: %v", err)
	}
	if m := readStomp(t, canaryBSub); string(m.Body) != "b too" {
		t.Errorf("host b canary got %q", m.Body)
	}
	if !canarySub.IsConnectionOpen() || !canaryPub.IsConnectionOpen() {
		t.Error("a canary MQTT connection was dropped")
	}
	extra.check(t)
}

// mqttPersistent connects with clean session off; every message, including those queued while it was
// away, goes to the returned channel.
func mqttPersistent(t *testing.T, addr, id, user, pass string) (paho.Client, byte, <-chan paho.Message) {
	t.Helper()
	ch := make(chan paho.Message, 100)
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetUsername(user).SetPassword(pass).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { ch <- m })
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("mqtt connect %s: no CONNACK", id)
	}
	code := tok.(*paho.ConnectToken).ReturnCode()
	if code == connackAccepted {
		t.Cleanup(func() { c.Disconnect(100) })
	}
	return c, code, ch
}

// A client id names a session of the user who opened it: another user reusing it is refused (0x05)
// rather than taking over that session's subscriptions and messages, or kicking its client off.
func TestSessionBelongsToItsUser(t *testing.T) {
	sb := startSecureBroker(t)
	alice, code, ch := mqttPersistent(t, sb.addr, "shared-id", "alice", alicePass)
	if code != connackAccepted {
		t.Fatalf("alice CONNACK %#x", code)
	}
	if tok := alice.Subscribe("news/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	before := sb.logged("client id in use by another user's session")
	if _, code, _ := mqttPersistent(t, sb.addr, "shared-id", "bob", bobPass); code != connackNotAuthorized {
		t.Errorf("bob resuming alice's session: CONNACK %#x, want 0x05", code)
	}
	if _, code := mqttDial(t, sb.addr, "shared-id", "bob", bobPass); code != connackNotAuthorized {
		t.Errorf("bob with clean session on alice's client id: CONNACK %#x, want 0x05", code)
	}
	if sb.logged("client id in use by another user's session", "remote=127.0.0.1") < before+2 {
		t.Error("refusals not logged")
	}
	if !alice.IsConnectionOpen() {
		t.Fatal("alice was kicked off")
	}
	pub := mqttLogin(t, sb.addr, "pub", "bob", bobPass)
	mqttPublish(t, pub, "news/x", 1, "for alice")
	expectMQTT(t, ch, "news/x", "for alice")
	// The owner herself takes her session over as usual [MQTT-3.1.4-2].
	if _, code, _ := mqttPersistent(t, sb.addr, "shared-id", "alice", alicePass); code != connackAccepted {
		t.Errorf("alice taking over her own session: CONNACK %#x", code)
	}
}

// A session restored after a restart records no gates (its owner it does). When its client comes back
// it is re-checked: messages queued meanwhile from topics the client may not receive are dropped, and its
// wildcard subscription delivers only allowed topics again.
func TestRestoredSessionReauthorized(t *testing.T) {
	start := durableSecurityBroker(t)

	b1, addr := start()
	bob, code, _ := mqttPersistent(t, addr, "bob-dev", "bob", bobPass)
	if code != connackAccepted {
		t.Fatalf("bob CONNACK %#x", code)
	}
	if tok := bob.Subscribe("alerts/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	bob.Disconnect(100)
	shutdown(t, b1)

	b2, addr := start()
	t.Cleanup(func() { shutdown(t, b2) })
	alice := mqttLogin(t, addr, "alice-pub", "alice", alicePass)
	mqttPublish(t, alice, "alerts/private/queued", 1, "secret")
	mqttPublish(t, alice, "alerts/public/queued", 1, "ok")

	_, code, ch := mqttPersistent(t, addr, "bob-dev", "bob", bobPass)
	if code != connackAccepted {
		t.Fatalf("bob back: CONNACK %#x", code)
	}
	expectMQTT(t, ch, "alerts/public/queued", "ok")
	mqttPublish(t, alice, "alerts/private/live", 1, "secret")
	mqttPublish(t, alice, "alerts/public/live", 1, "ok")
	expectMQTT(t, ch, "alerts/public/live", "ok")
	expectNone(t, ch, "restored session after its allowed messages")
}

const limitsConfig = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
virtual_host "small" {
  host_names         = ["localhost", "127.0.0.1"]
  anonymous          = true
  max_connections    = 2
  max_message_length = 10
}
`

// A host's max_connections counts MQTT and STOMP clients together; a slot frees when a client leaves.
func TestHostMaxConnections(t *testing.T) {
	b, addr := startBroker(t, limitsConfig)
	host := b.Hosts().Default()
	m1 := mqttLogin(t, addr, "m1", "", "")
	s1 := stompLogin(t, addr, "", "", "")
	if _, code := mqttDial(t, addr, "m2", "", ""); code != 0x03 {
		t.Errorf("third client (MQTT): CONNACK %#x, want 0x03 server unavailable", code)
	}
	if c, err := stompDial(addr, "", "", ""); err == nil {
		_ = c.Disconnect()
		t.Error("third client (STOMP) accepted")
	} else if got := stompErrorMessage(err); got != "access refused" {
		t.Errorf("third client (STOMP): %v, want ERROR access refused", err)
	}
	m1.Disconnect(100)
	prototest.WaitFor(t, 5*time.Second, func() bool { return host.Connections() == 1 })
	mqttLogin(t, addr, "m3", "", "")
	_ = s1.Disconnect()
	prototest.WaitFor(t, 5*time.Second, func() bool { return host.Connections() == 1 })
	stompLogin(t, addr, "", "", "")
}

// A host's max_message_length applies on top of the connector's: STOMP answers ERROR, MQTT (which cannot
// refuse one PUBLISH) closes the connection.
func TestHostMaxMessageLength(t *testing.T) {
	_, addr := startBroker(t, limitsConfig)
	sc := stompLogin(t, addr, "", "", "")
	if err := sc.Send("/topic/t", "text/plain", []byte("0123456789"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("10 bytes: %v", err)
	}
	err := sc.Send("/topic/t", "text/plain", []byte("0123456789A"), stomp.SendOpt.Receipt)
	if got := stompErrorMessage(err); got != "message too large" {
		t.Errorf("11 bytes: %v, want ERROR message too large", err)
	}
	mc := mqttLogin(t, addr, "big", "", "")
	mqttPublish(t, mc, "t", 1, "0123456789")
	mc.Publish("t", 1, false, "0123456789A").WaitTimeout(time.Second)
	prototest.WaitFor(t, 5*time.Second, func() bool { return !mc.IsConnectionOpen() })
}

// Retained messages reach a new subscription outside the router's delivery path; a wildcard
// subscription still gets only those of topics it may receive.
func TestRetainedMessagesRespectAccessRules(t *testing.T) {
	sb := startSecureBroker(t)
	alice := mqttLogin(t, sb.addr, "alice-r", "alice", alicePass)
	for _, topic := range []string{"alerts/private/r", "alerts/public/r", "$SYS/broker/version"} {
		if tok := alice.Publish(topic, 1, true, topic); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	bob := mqttLogin(t, sb.addr, "bob-r", "bob", bobPass)
	ch, code := mqttSubscribeCode(t, bob, "#")
	if code != 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	expectMQTT(t, ch, "alerts/public/r", "alerts/public/r")
	expectNone(t, ch, "MQTT # after the allowed retained message")

	sc := stompLogin(t, sb.addr, "a", "bob", bobPass)
	sub, err := sc.Subscribe("/topic/alerts.**", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if m := readStomp(t, sub); m.Destination != "/topic/alerts.public.r" {
		t.Errorf("STOMP retained %s, want only alerts.public.r", m.Destination)
	}
	expectNone(t, sub.C, "STOMP alerts.** after the allowed retained message")
}

// durableSecurityBroker writes the security test configuration with users alice and bob and a store for
// host "a" into a temporary directory, and returns a function that starts a broker on it (again after a
// shutdown, on the same store) and the address of its "auto" connector.
func durableSecurityBroker(t *testing.T) func() (*Broker, string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users-a.hcl"), fmt.Sprintf("user \"alice\" {\n  password = %q\n  groups = [\"admins\"]\n}\nuser \"bob\" {\n  password = %q\n}\n",
		hashFor(t, alicePass), hashFor(t, bobPass)))
	writeFile(t, filepath.Join(dir, "users-b.hcl"), "")
	// A store directory is relative to the working directory, not the config: make it absolute.
	src := strings.Replace(securityConfig, "  users_file = \"users-a.hcl\"\n",
		fmt.Sprintf("  users_file = \"users-a.hcl\"\n  store {\n    directory = %q\n  }\n", filepath.Join(dir, "data-a")), 1)
	path := filepath.Join(dir, "lyre.hcl")
	writeFile(t, path, src)
	return func() (*Broker, string) {
		cfg, err := conf.Load(path)
		if err != nil {
			t.Fatalf("config: %v", err)
		}
		b, err := Start(cfg, zaptest.NewLogger(t))
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		return b, b.Addrs()["auto"].String()
	}
}
