package main

// Access rules that hold (issue 13, items 1-7): each test is named after the hole it closes and drives
// the broker with real clients over real sockets.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/go-stomp/stomp/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
	pstomp "github.com/lyremq/lyre/protocol/stomp"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// aclConfig is the host of the access-rule tests. It is a format string: %s is where a test adds
// attributes or rules of its own to host "a", before the others.
const aclConfig = `
connector "auto" {
  bind       = "tcp://127.0.0.1:0"
  detect     = ["mqtt", "stomp", "http"]
  management = true
  mqtt { queue_prefix = "queue/" }
}

virtual_host "a" {
  host_names = ["a.example", "localhost", "127.0.0.1"]
  users_file = "users-a.hcl"
%s
  access_rule {
    deny   = ["carol"]
    action = ["connect"]
  }
  access_rule {
    allow  = ["+"]
    action = ["connect"]
  }
  access_rule {
    allow = ["admins"]
  }
  access_rule {
    deny = ["bob"]
    kind = "topic"
    id   = "news.private.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "news.**"
  }
  access_rule {
    allow  = ["+"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "devices.%%c.**"
  }
}

virtual_host "b" {
  host_names = ["b.example"]
  users_file = "users-b.hcl"
  access_rule {
    allow = ["+"]
  }
}
`

// aclUsers is host a's users file; %s adds to bob's entry.
const aclUsers = `
user "alice" {
  password = %q
  groups   = ["admins"]
}
user "bob" {
  password = %q
%s
}
user "carol" {
  password = %q
}
user "dave" {
  password = %q
  groups   = ["sensors"]
}
group "sensors" {
  client_ids = ["sensor-*"]
}
`

// aclBroker is a running broker of aclConfig with its log.
type aclBroker struct {
	*secureBroker
	dir  string
	path string // the configuration file
}

// startACLBroker writes aclConfig with hostExtra in host a and bobExtra in bob's users entry, and runs
// it with a log observer.
func startACLBroker(t *testing.T, hostExtra, bobExtra string) *aclBroker {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users-a.hcl"), fmt.Sprintf(aclUsers, hashFor(t, alicePass), hashFor(t, bobPass), bobExtra, hashFor(t, carolPass), hashFor(t, davePass)))
	writeFile(t, filepath.Join(dir, "users-b.hcl"), fmt.Sprintf("user \"zed\" {\n  password = %q\n}\n", hashFor(t, zedPass)))
	path := filepath.Join(dir, "lyre.hcl")
	writeFile(t, path, fmt.Sprintf(aclConfig, hostExtra))
	ab := &aclBroker{dir: dir, path: path}
	ab.secureBroker = ab.start(t)
	return ab
}

// start runs a broker on the configuration file (again, after a shutdown).
func (ab *aclBroker) start(t *testing.T) *secureBroker {
	t.Helper()
	cfg, err := conf.Load(ab.path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	b, err := Start(cfg, zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { shutdown(t, b) })
	for _, h := range b.Hosts().Hosts() {
		h.Throttle = &virtualhost.Throttle{Free: 3, Base: 5 * time.Millisecond, Max: 40 * time.Millisecond}
	}
	return &secureBroker{b: b, addr: b.Addrs()["auto"].String(), logs: logs, hostA: b.Hosts().Lookup("a")}
}

// v5Login connects an MQTT 5 client with a user name and password.
func v5Login(t *testing.T, addr, id, user, pass string) *v5Client {
	t.Helper()
	return dialV5(t, addr, &paho5.Connect{ClientID: id, CleanStart: true, UsernameFlag: true, Username: user,
		PasswordFlag: true, Password: []byte(pass)})
}

// pubReason publishes p at QoS 1 and returns the PUBACK's reason code.
func (v *v5Client) pubReason(p *paho5.Publish) byte {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := v.c.Publish(ctx, p)
	if err != nil {
		v.t.Fatalf("publish %s: %v", p.Topic, err)
	}
	return r.ReasonCode
}

// A shared group whose members may read different parts of its filter: every message goes to a member
// that may read it, none to one that may not, and none is lost on the way. The publisher's PUBACK says a
// message reached someone entitled to it: one that no subscriber may read is "no matching subscribers"
// (0x10), also when the only subscriber is a persistent session whose gate keeps it out.
func TestSharedMemberWithoutRightsSkipped(t *testing.T) {
	ab := startACLBroker(t, "", "")
	pub := v5Login(t, ab.addr, "pub", "alice", alicePass)
	t.Run("shared group", func(t *testing.T) {
		alice := v5Login(t, ab.addr, "alice-m", "alice", alicePass)
		bob := v5Login(t, ab.addr, "bob-m", "bob", bobPass)
		for _, m := range []*v5Client{alice, bob} {
			m.sub(0, paho5.SubscribeOptions{Topic: "$share/g/news/#", QoS: 1})
		}
		const n = 20
		for i := range n {
			pub.pub(&paho5.Publish{Topic: "news/private/x", QoS: 1, Payload: []byte(fmt.Sprint(i))})
		}
		for i := range n {
			if m := alice.next(5 * time.Second); m.Topic != "news/private/x" {
				t.Fatalf("message %d: alice got %s", i, m.Topic)
			}
		}
		bob.none(200*time.Millisecond, "bob may not read news/private")
		// Public news goes round the group as usual.
		for i := range 4 {
			pub.pub(&paho5.Publish{Topic: "news/public", QoS: 1, Payload: []byte(fmt.Sprint(i))})
		}
		for got := 0; got < 4; got++ {
			select {
			case <-alice.msgs:
			case <-bob.msgs:
			case <-time.After(5 * time.Second):
				t.Fatalf("public news: %d of 4 delivered", got)
			}
		}
	})
	t.Run("group of members without rights", func(t *testing.T) {
		bob := v5Login(t, ab.addr, "bob-g", "bob", bobPass)
		bob.sub(0, paho5.SubscribeOptions{Topic: "$share/h/news/#", QoS: 1})
		if rc := pub.pubReason(&paho5.Publish{Topic: "news/private/g", QoS: 1, Payload: []byte("x")}); rc != 0x10 {
			t.Errorf("PUBACK 0x%02x, want 0x10 no matching subscribers", rc)
		}
		bob.none(100*time.Millisecond, "bob's group")
	})
	t.Run("persistent session's gate", func(t *testing.T) {
		bob := dialV5(t, ab.addr, &paho5.Connect{ClientID: "bob-p", UsernameFlag: true, Username: "bob",
			PasswordFlag: true, Password: []byte(bobPass), Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(60)}})
		bob.sub(0, paho5.SubscribeOptions{Topic: "news/#", QoS: 1})
		if rc := pub.pubReason(&paho5.Publish{Topic: "news/private/p", QoS: 1, Payload: []byte("x")}); rc != 0x10 {
			t.Errorf("PUBACK 0x%02x, want 0x10 no matching subscribers", rc)
		}
		bob.none(100*time.Millisecond, "bob's persistent session")
	})
}

// queueRule lets every user consume (and send to) the jobs.* queues.
const queueRule = `
  access_rule {
    allow = ["+"]
    kind  = "queue"
    id    = "jobs.*"
  }
`

// A persistent session's queue subscription is checked again when the session resumes: after a restart
// or a reload that took the right to consume away, the client gets nothing from the queue and the
// subscription is gone.
func TestResumedQueueSubscriptionReauthorized(t *testing.T) {
	for _, how := range []string{"reload", "restart"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			store := fmt.Sprintf("  store {\n    directory = %q\n  }\n", filepath.Join(dir, "data"))
			ab := startACLBroker(t, store+queueRule, "")
			bob, code, _ := mqttPersistent(t, ab.addr, "bob-q", "bob", bobPass)
			if code != connackAccepted {
				t.Fatalf("bob CONNACK %#x", code)
			}
			if tok := bob.Subscribe("queue/jobs/print", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			bob.Disconnect(100)

			writeFile(t, ab.path, fmt.Sprintf(aclConfig, store)) // the queue rule is gone
			sb := ab.secureBroker
			if how == "reload" {
				if err := sb.b.Reload(); err != nil {
					t.Fatal(err)
				}
			} else {
				shutdown(t, sb.b)
				sb = ab.start(t)
			}
			alice := mqttLogin(t, sb.addr, "alice-q", "alice", alicePass)
			mqttPublish(t, alice, "queue/jobs/print", 1, "for a consumer allowed to take it")

			_, code, ch := mqttPersistent(t, sb.addr, "bob-q", "bob", bobPass)
			if code != connackAccepted {
				t.Fatalf("bob back: CONNACK %#x", code)
			}
			expectNone(t, ch, "bob's resumed queue subscription")
			prototest.WaitFor(t, 5*time.Second, func() bool {
				return sb.logged("resumed subscription removed: not authorized", "queue/jobs/print") > 0
			})
			// The message waits in the queue for a consumer that may take it.
			admin, code, ach := mqttPersistent(t, sb.addr, "alice-c", "alice", alicePass)
			if code != connackAccepted {
				t.Fatalf("alice CONNACK %#x", code)
			}
			if tok := admin.Subscribe("queue/jobs/print", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			expectMQTT(t, ach, "queue/jobs/print", "for a consumer allowed to take it")
		})
	}
}

// stompRefusal connects and returns the ERROR frame's message header and body; it fails the test when the
// broker accepts the client.
func stompRefusal(t *testing.T, addr, host, login, pass string) (msg, body string) {
	t.Helper()
	c, err := stompDial(addr, host, login, pass)
	if err == nil {
		_ = c.Disconnect()
		t.Fatalf("CONNECT to %q as %q accepted", host, login)
	}
	var se stomp.Error
	if !errors.As(err, &se) || se.Frame == nil {
		t.Fatalf("CONNECT to %q as %q: %v, want an ERROR frame", host, login, err)
	}
	return se.Frame.Header.Get("message"), string(se.Frame.Body)
}

// v5Refusal connects an MQTT 5 client and returns the CONNACK's reason code and reason string.
func v5Refusal(t *testing.T, addr, id, user, pass string) (byte, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := paho5.NewClient(paho5.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho5.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, UsernameFlag: true,
		Username: user, PasswordFlag: true, Password: []byte(pass)})
	if err == nil || ca == nil {
		t.Fatalf("mqtt 5 connect as %q: %v, want a refusing CONNACK", user, err)
	}
	reason := ""
	if ca.Properties != nil {
		reason = ca.Properties.ReasonString
	}
	return ca.ReasonCode, reason
}

// Before authentication a client learns nothing it could not guess: a STOMP CONNECT naming a host that
// does not exist is answered as a wrong passcode is (same frame, after the same bcrypt work, counted by
// the throttle), and a user whose password is right but who may not connect gets the answer of a wrong
// password, in MQTT 3.1.1 (0x04), MQTT 5 (0x86 and its reason string) and STOMP. A full host answers
// before checking any password.
func TestUnknownHostAndRefusedUserAnsweredAlike(t *testing.T) {
	ab := startACLBroker(t, "", "")
	t.Run("stomp", func(t *testing.T) {
		wantMsg, wantBody := stompRefusal(t, ab.addr, "a", "alice", "wrong-pass")
		before := ab.hostA.Throttle.Failures("127.0.0.1")
		for _, c := range []struct{ name, host, login, pass string }{
			{"unknown host, a real user's password", "evil.example", "alice", alicePass},
			{"unknown host, no login", "evil.example", "", ""},
			{"right password, connect denied", "a", "carol", carolPass},
			{"no login on a password host", "a", "", ""},
			{"user of another host", "b", "alice", alicePass},
		} {
			if msg, body := stompRefusal(t, ab.addr, c.host, c.login, c.pass); msg != wantMsg || body != wantBody {
				t.Errorf("%s: ERROR %q %q, want %q %q as for a wrong passcode", c.name, msg, body, wantMsg, wantBody)
			}
		}
		if n := ab.hostA.Throttle.Failures("127.0.0.1"); n < before+2 {
			t.Errorf("unknown-host attempts not counted by the throttle: %d failures, want at least %d", n, before+2)
		}
		prototest.WaitFor(t, 5*time.Second, func() bool {
			return ab.logged("stomp login refused", `no virtual host is named \"evil.example\"`) > 0 ||
				ab.logged("stomp login refused", `evil.example`) > 0
		})
	})
	t.Run("mqtt 3.1.1", func(t *testing.T) {
		_, wrong := mqttDial(t, ab.addr, "w", "alice", "wrong-pass")
		if _, code := mqttDial(t, ab.addr, "c", "carol", carolPass); code != wrong {
			t.Errorf("carol (right password, connect denied): CONNACK %#x, a wrong password gets %#x", code, wrong)
		}
	})
	t.Run("mqtt 5", func(t *testing.T) {
		wantCode, wantReason := v5Refusal(t, ab.addr, "w5", "alice", "wrong-pass")
		if code, reason := v5Refusal(t, ab.addr, "c5", "carol", carolPass); code != wantCode || reason != wantReason {
			t.Errorf("carol: CONNACK 0x%02x %q, a wrong password gets 0x%02x %q", code, reason, wantCode, wantReason)
		}
	})
	t.Run("management api", func(t *testing.T) {
		get := func(host, user, pass string) (int, string) {
			req, err := http.NewRequest("GET", "http://"+ab.addr+"/api/v1/vhosts/"+host+"/connections", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth(user, pass)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		wantCode, wantBody := get("a", "bob", "wrong-pass")
		if code, body := get("evil.example", "bob", bobPass); code != wantCode || body != wantBody {
			t.Errorf("unknown host: %d %q, a wrong password gets %d %q", code, body, wantCode, wantBody)
		}
		// Someone who may monitor the broker lists the hosts anyway: to alice it is a 404.
		if code, _ := get("evil.example", "alice", alicePass); code != http.StatusNotFound {
			t.Errorf("unknown host for a broker monitor: %d, want 404", code)
		}
	})
	t.Run("full host", func(t *testing.T) {
		full := startACLBroker(t, "  max_connections = 1\n", "")
		mqttLogin(t, full.addr, "first", "alice", alicePass)
		_, right := mqttDial(t, full.addr, "right", "bob", bobPass)
		_, wrong := mqttDial(t, full.addr, "wrong", "bob", "wrong-pass")
		if right != 0x03 || wrong != 0x03 {
			t.Errorf("full host: CONNACK %#x for the right password, %#x for a wrong one; want 0x03 for both", right, wrong)
		}
	})
}

// A STOMP name MQTT cannot write (a segment holding "/", "+", "#" or NUL, as STOMP's %XX escapes allow)
// is not delivered to MQTT subscribers under another topic: /topic/sensors.alice%2Ftemp is the
// two-level topic [sensors, alice/temp], which MQTT would read as sensors/alice/temp, three levels and
// someone else's topic. MQTT subscribers, live and persistent, skip such a message (counted and logged);
// STOMP subscribers get it; an MQTT 5 subscriber gets no response topic MQTT cannot name.
func TestSTOMPSeparatorInSegmentNotAnotherMQTTTopic(t *testing.T) {
	ab := startACLBroker(t, "", "")
	all := mqttLogin(t, ab.addr, "m-all", "alice", alicePass)
	allCh, _ := mqttSubscribeCode(t, all, "sensors/#")
	exact := mqttLogin(t, ab.addr, "m-exact", "alice", alicePass)
	exactCh, _ := mqttSubscribeCode(t, exact, "sensors/alice/temp")
	pers, code, persCh := mqttPersistent(t, ab.addr, "m-pers", "alice", alicePass)
	if code != connackAccepted {
		t.Fatalf("CONNACK %#x", code)
	}
	if tok := pers.Subscribe("sensors/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	v5 := v5Login(t, ab.addr, "m-v5", "alice", alicePass)
	v5.sub(0, paho5.SubscribeOptions{Topic: "sensors/#", QoS: 1})
	sc := stompLogin(t, ab.addr, "a", "alice", alicePass)
	ssub, err := sc.Subscribe("/topic/sensors.**", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	bad := []string{"/topic/sensors.alice%2Ftemp", "/topic/sensors.alice/temp", "/topic/sensors.a+b", "/topic/sensors.%23",
		"/topic/sensors.x%00y", "/topic/sensors.%FF"}
	for _, d := range bad {
		if err := sc.Send(d, "text/plain", []byte(d), stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
			t.Fatalf("SEND %s: %v", d, err)
		}
	}
	if err := sc.Send("/topic/sensors.ok", "text/plain", []byte("ok"), stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Header("reply-to", "/topic/replies.a%2Fb")); err != nil {
		t.Fatal(err)
	}
	for range bad {
		readStomp(t, ssub) // STOMP names them all
	}
	if m := readStomp(t, ssub); string(m.Body) != "ok" {
		t.Fatalf("STOMP subscriber got %q", m.Body)
	}
	expectMQTT(t, allCh, "sensors/ok", "ok")
	expectMQTT(t, persCh, "sensors/ok", "ok")
	expectNone(t, exactCh, "sensors/alice/temp")
	m := v5.next(5 * time.Second)
	if m.Topic != "sensors/ok" {
		t.Fatalf("MQTT 5 subscriber got %s %q first", m.Topic, m.Payload)
	}
	if m.Properties != nil && m.Properties.ResponseTopic != "" {
		t.Errorf("response topic %q: MQTT cannot name /topic/replies.a%%2Fb", m.Properties.ResponseTopic)
	}
	prototest.WaitFor(t, 5*time.Second, func() bool { return ab.logged("messages dropped", "MQTT cannot") > 0 })
}

// %c stands for a client id its user claims, never for one any client may pick: bob naming his STOMP
// connection or MQTT client "dev1" does not make devices.dev1.** his. He claims client ids through his
// users file entry (client_ids), dave through his group's block, everyone through the host's client_ids.
func TestClientIDSpoofingRefused(t *testing.T) {
	ab := startACLBroker(t, "  client_ids = [\"%u-web\"]\n", "  client_ids = [\"bob-*\"]")
	stompAs := func(t *testing.T, login, pass, clientID string) *stomp.Conn {
		c, err := stomp.Dial("tcp", ab.addr, stomp.ConnOpt.Host("a"), stomp.ConnOpt.Login(login, pass),
			stomp.ConnOpt.Header("client-id", clientID))
		if err != nil {
			t.Fatalf("stomp %s as %s: %v", login, clientID, err)
		}
		t.Cleanup(func() { _ = c.Disconnect() })
		return c
	}
	t.Run("stomp client-id header", func(t *testing.T) {
		before := ab.logged("send refused", "devices.dev1.cmd")
		err := stompAs(t, "bob", bobPass, "dev1").Send("/topic/devices.dev1.cmd", "text/plain", []byte("forged"), stomp.SendOpt.Receipt)
		if got := stompErrorMessage(err); got != "access refused" {
			t.Errorf("bob as dev1: SEND %v (message %q), want ERROR access refused", err, got)
		}
		prototest.WaitFor(t, 5*time.Second, func() bool { return ab.logged("send refused", "devices.dev1.cmd") > before })
		for _, c := range []struct{ login, pass, id string }{
			{"bob", bobPass, "bob-phone"},  // his users file entry
			{"dave", davePass, "sensor-7"}, // his group's block
			{"dave", davePass, "dave-web"}, // the host's pattern, %u
		} {
			if err := stompAs(t, c.login, c.pass, c.id).Send("/topic/devices."+c.id+".cmd", "text/plain", []byte("own"), stomp.SendOpt.Receipt); err != nil {
				t.Errorf("%s as %s, a client id he claims: %v", c.login, c.id, err)
			}
		}
		err = stompAs(t, "bob", bobPass, "dave-web").Send("/topic/devices.dave-web.cmd", "text/plain", []byte("forged"), stomp.SendOpt.Receipt)
		if got := stompErrorMessage(err); got != "access refused" {
			t.Errorf("bob as dave-web: SEND %v, want ERROR access refused", err)
		}
	})
	t.Run("mqtt client id", func(t *testing.T) {
		w := mqttLogin(t, ab.addr, "watcher", "alice", alicePass)
		watch, _ := mqttSubscribeCode(t, w, "devices/#")
		bob := mqttLogin(t, ab.addr, "dev1", "bob", bobPass)
		if _, code := mqttSubscribeCode(t, bob, "devices/dev1/#"); code != 0x80 {
			t.Errorf("bob as dev1: SUBACK %#x, want 0x80", code)
		}
		mqttPublish(t, bob, "devices/dev1/cmd", 1, "forged") // acknowledged, not routed [MQTT-3.3.5-2]
		expectNone(t, watch, "bob's publish as dev1")
		own := mqttLogin(t, ab.addr, "bob-car", "bob", bobPass)
		ch, code := mqttSubscribeCode(t, own, "devices/bob-car/#")
		if code != 1 {
			t.Fatalf("bob as bob-car: SUBACK %#x", code)
		}
		mqttPublish(t, own, "devices/bob-car/cmd", 1, "own")
		expectMQTT(t, ch, "devices/bob-car/cmd", "own")
		expectMQTT(t, watch, "devices/bob-car/cmd", "own")
	})
}

// testCA is a certificate authority for client certificates, with a server certificate for 127.0.0.1.
type testCA struct {
	t    *testing.T
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acl test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{t: t, key: key, pool: x509.NewCertPool()}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	ca.pool.AddCert(ca.cert)
	writeFile(t, filepath.Join(dir, "ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	srv := ca.issue(&x509.Certificate{Subject: pkix.Name{CommonName: "lyre"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	kder, err := x509.MarshalECPrivateKey(srv.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "server.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate[0]})))
	writeFile(t, filepath.Join(dir, "server-key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	return ca
}

// issue signs tmpl (its key made here) with the CA.
func (ca *testCA) issue(tmpl *x509.Certificate) tls.Certificate {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = serial, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// stompCert connects to host over TLS with a client certificate for cn and no login.
func (ca *testCA) stompCert(addr, host, cn string) (*stomp.Conn, error) {
	cert := ca.issue(&x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	c, err := stomp.Connect(nc, stomp.ConnOpt.Host(host))
	if err != nil {
		_ = nc.Close()
	}
	return c, err
}

// certConnector is a TLS connector whose client certificates are identities (CN); %s adds to its tls block.
const certConnector = `
connector "tls" {
  bind   = "tls://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
  tls {
    cert_file      = "server.pem"
    key_file       = "server-key.pem"
    client_ca_file = "ca.pem"
    client_auth    = "require"
    cert_identity  = "cn"
%s
  }
}
`

// A certificate identity is a user on the hosts its connector's cert_identity_hosts names (by default
// the connector's host, else the first one), nowhere else: a certificate naming zed is not host b's zed
// when the connector vouches for host a. And a certificate naming a group (CN=admins) is a user called
// admins, not a member of the group.
func TestCertIdentityStaysOnItsHosts(t *testing.T) {
	ab := startACLBroker(t, "", "")
	ca := newTestCA(t, ab.dir)
	base := strings.Replace(fmt.Sprintf(aclConfig, ""), "connector \"auto\"", strings.TrimSpace(fmt.Sprintf(certConnector, ""))+"\nconnector \"auto\"", 1)
	writeFile(t, ab.path, base)
	shutdown(t, ab.b)
	sb := ab.start(t)
	addr := sb.b.Addrs()["tls"].String()

	alice, err := ca.stompCert(addr, "a", "alice")
	if err != nil {
		t.Fatalf("alice's certificate on host a: %v", err)
	}
	if err := alice.Send("/topic/payroll.x", "text/plain", []byte("admin"), stomp.SendOpt.Receipt); err != nil {
		t.Errorf("alice (group admins) by certificate: %v", err)
	}
	_ = alice.Disconnect()
	if c, err := ca.stompCert(addr, "b", "zed"); err == nil {
		_ = c.Disconnect()
		t.Error("a certificate for zed logged in on host b, which the connector does not vouch for")
	} else if got := stompErrorMessage(err); got != "access refused" {
		t.Errorf("zed's certificate on host b: %v, want ERROR access refused", err)
	}
	prototest.WaitFor(t, 5*time.Second, func() bool { return sb.logged("login refused", "not valid on virtual host b") > 0 })

	admins, err := ca.stompCert(addr, "a", "admins")
	if err != nil {
		t.Fatalf("CN=admins on host a (any authenticated user may connect): %v", err)
	}
	err = admins.Send("/topic/payroll.x", "text/plain", []byte("forged"), stomp.SendOpt.Receipt)
	if got := stompErrorMessage(err); got != "access refused" {
		t.Errorf("CN=admins SEND payroll: %v, want ERROR access refused (a user named admins is not the group)", err)
	}

	// cert_identity_hosts lets the connector vouch for host b too.
	writeFile(t, ab.path, strings.Replace(fmt.Sprintf(aclConfig, ""), "connector \"auto\"",
		strings.TrimSpace(fmt.Sprintf(certConnector, `    cert_identity_hosts = ["a", "b"]`))+"\nconnector \"auto\"", 1))
	shutdown(t, sb.b)
	sb = ab.start(t)
	zed, err := ca.stompCert(sb.b.Addrs()["tls"].String(), "b", "zed")
	if err != nil {
		t.Fatalf("zed's certificate on host b, listed in cert_identity_hosts: %v", err)
	}
	_ = zed.Disconnect()
}

// stompRefusedLater logs in on host a for a test that expects an ERROR: the connection is closed without
// waiting for a DISCONNECT receipt that will not come.
func stompRefusedLater(t *testing.T, addr, login, pass string) *stomp.Conn {
	t.Helper()
	c, err := stompDial(addr, "a", login, pass)
	if err != nil {
		t.Fatalf("stomp login %q: %v", login, err)
	}
	t.Cleanup(func() { _ = c.MustDisconnect() })
	return c
}

// tempRule lets every user use temporary destinations.
const tempRule = `
  access_rule {
    allow = ["+"]
    kind  = "temp_queue"
  }
  access_rule {
    allow = ["+"]
    kind  = "temp_topic"
  }
`

// tempQueues returns host a's temporary queues.
func tempQueues(sb *secureBroker) []router.QueueInfo {
	var out []router.QueueInfo
	for _, q := range sb.hostA.Router.Queues() {
		if q.Dest.Kind == router.TempQueue {
			out = append(out, q)
		}
	}
	return out
}

// Temporary destinations: their session's id is unguessable and never comes back after a restart;
// access rules apply to them (kinds temp_queue and temp_topic, by the name without the session); a
// connection names at most stomp.MaxTempDestinations of them, queues and topics alike; a temporary queue
// holds at most virtualhost.TempQueueQuota bytes (beyond, what arrives is dropped: the owner that does
// not read pays, not the responder); and every temporary queue of a connection, also one it only named
// in a reply-to, goes when the connection does.
func TestTempDestinationsBounded(t *testing.T) {
	ab := startACLBroker(t, "", "")
	t.Run("access rules apply", func(t *testing.T) {
		bob := stompRefusedLater(t, ab.addr, "bob", bobPass)
		sub, err := bob.Subscribe("/temp-queue/replies", stomp.AckAuto)
		if err == nil {
			select {
			case m := <-sub.C: // the ERROR frame, or the channel closed by it
				if err = errors.New("subscription closed"); m != nil && m.Err != nil {
					err = m.Err
				}
			case <-time.After(5 * time.Second):
			}
		}
		if err == nil || !strings.Contains(err.Error(), "access refused") {
			t.Errorf("bob's temp queue on a host whose rules say nothing of them: %v, want ERROR access refused", err)
		}
	})
	writeFile(t, ab.path, fmt.Sprintf(aclConfig, tempRule))
	if err := ab.b.Reload(); err != nil {
		t.Fatal(err)
	}
	t.Run("session ids", func(t *testing.T) {
		seen := map[string]bool{}
		for range 3 {
			id := stompLogin(t, ab.addr, "a", "bob", bobPass).Session()
			rest, ok := strings.CutPrefix(id, "lyre-")
			if !ok || len(rest) < 26 || strings.Trim(rest, "0123456789") == "" || seen[id] {
				t.Fatalf("session id %q: want lyre- and at least 128 random bits, never repeated", id)
			}
			seen[id] = true
		}
	})
	t.Run("per-connection limit", func(t *testing.T) {
		bob := stompRefusedLater(t, ab.addr, "bob", bobPass)
		var err error
		for i := 0; i <= pstomp.MaxTempDestinations && err == nil; i++ {
			err = bob.Send(fmt.Sprintf("/temp-topic/t%d", i), "text/plain", nil, stomp.SendOpt.Receipt)
		}
		if got := stompErrorMessage(err); got != "too many temporary destinations" {
			t.Errorf("temp topic %d: %v, want ERROR too many temporary destinations", pstomp.MaxTempDestinations+1, err)
		}
	})
	t.Run("byte quota and lifetime", func(t *testing.T) {
		bob := stompLogin(t, ab.addr, "a", "bob", bobPass)
		alice := stompRefusedLater(t, ab.addr, "alice", alicePass)
		// bob names two reply queues in reply-to headers and reads neither.
		for _, q := range []string{"big", "named-only"} {
			if err := bob.Send("/topic/news.req", "text/plain", nil, stomp.SendOpt.Receipt,
				stomp.SendOpt.Header("reply-to", "/temp-queue/"+q)); err != nil {
				t.Fatal(err)
			}
		}
		body := make([]byte, virtualhost.TempQueueQuota*6/10)
		for range 3 {
			if err := alice.Send("/temp-queue/"+bob.Session()+".big", "text/plain", body, stomp.SendOpt.Receipt); err != nil {
				t.Fatalf("alice answering bob: %v", err)
			}
		}
		if err := alice.Send("/temp-queue/"+bob.Session()+".named-only", "text/plain", []byte("x"), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
		for _, q := range tempQueues(ab.secureBroker) {
			if q.Bytes > virtualhost.TempQueueQuota {
				t.Errorf("temp queue %q holds %d bytes, over the %d quota", q.Dest.Path, q.Bytes, virtualhost.TempQueueQuota)
			}
		}
		if err := alice.Send("/temp-queue/"+bob.Session()+".never-named", "text/plain", []byte("x"), stomp.SendOpt.Receipt); err == nil {
			t.Error("alice created a temp queue bob never named")
		}
		_ = bob.Disconnect()
		prototest.WaitFor(t, 5*time.Second, func() bool { return len(tempQueues(ab.secureBroker)) == 0 })
	})
}

// A persistent session's shared subscriptions are not durable (the group serves members that are
// online), but they are part of the session: after a restart they are checked again and subscribed again
// when the session resumes. Before, a restored shared subscription its owner could read whole was never
// put back in the router and delivered nothing.
func TestRestoredSharedSubscriptionResumes(t *testing.T) {
	dir := t.TempDir()
	ab := startACLBroker(t, fmt.Sprintf("  store {\n    directory = %q\n  }\n", filepath.Join(dir, "data")), "")
	connect := func(id, user, pass string) *paho5.Connect {
		return &paho5.Connect{ClientID: id, UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass),
			Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(600)}}
	}
	for _, c := range []*paho5.Connect{connect("alice-s", "alice", alicePass), connect("bob-s", "bob", bobPass)} {
		v := dialV5(t, ab.addr, c)
		v.sub(0, paho5.SubscribeOptions{Topic: "$share/" + c.ClientID + "/news/#", QoS: 1})
		v.drop()
	}
	shutdown(t, ab.b)
	sb := ab.start(t)
	alice := dialV5(t, sb.addr, connect("alice-s", "alice", alicePass))
	bob := dialV5(t, sb.addr, connect("bob-s", "bob", bobPass))
	if !alice.ack.SessionPresent || !bob.ack.SessionPresent {
		t.Fatal("sessions not restored")
	}
	pub := v5Login(t, sb.addr, "pub", "alice", alicePass)
	pub.pub(&paho5.Publish{Topic: "news/private/x", QoS: 1, Payload: []byte("private")})
	pub.pub(&paho5.Publish{Topic: "news/public", QoS: 1, Payload: []byte("public")})
	for _, want := range []string{"private", "public"} {
		if m := alice.next(5 * time.Second); string(m.Payload) != want {
			t.Fatalf("alice got %q, want %q", m.Payload, want)
		}
	}
	if m := bob.next(5 * time.Second); string(m.Payload) != "public" {
		t.Fatalf("bob got %q from %s, want only the public news", m.Payload, m.Topic)
	}
	bob.none(200*time.Millisecond, "bob's restored shared subscription, gated again")
}
