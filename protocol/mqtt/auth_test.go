package mqtt

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/xdg-go/scram"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// The enhanced-authentication tests run paho.golang's AUTH flow with xdg-go/scram's client side, so
// both ends of SCRAM-SHA-256 are independent of Lyre's own code.

const scramMethod = virtualhost.MethodSCRAMSHA256

// scramHost is a host "secure" whose users alice and bob have SCRAM-SHA-256 credentials and carol only a
// password.
func scramHost(t *testing.T) *virtualhost.Host {
	t.Helper()
	var src strings.Builder
	for _, u := range []struct {
		name, password string
		scram          bool
	}{{"alice", "wonderland", true}, {"bob", "builder", true}, {"carol", "singer", false}} {
		hash, err := bcrypt.GenerateFromPassword([]byte(u.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		cu := conf.User{Name: u.name, PasswordHash: string(hash)}
		if u.scram {
			if cu.SCRAM, err = virtualhost.NewSCRAMCredentials(u.password, conf.SCRAMIterations); err != nil {
				t.Fatal(err)
			}
		}
		src.WriteString(cu.Format())
	}
	path := filepath.Join(t.TempDir(), "users.hcl")
	if err := os.WriteFile(path, []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := virtualhost.Open(conf.VirtualHost{Name: "secure", UsersFile: path}, router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// scramAuther is paho's AuthHandler: it answers each AUTH 0x18 with the next SCRAM client message.
type scramAuther struct {
	mu   sync.Mutex
	conv *scram.ClientConversation
	errs []error
}

// start begins a conversation for user and returns the client-first message.
func (a *scramAuther) start(t *testing.T, user, password string) []byte {
	t.Helper()
	c, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conv = c.NewConversation()
	first, err := a.conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(first)
}

func (a *scramAuther) Authenticate(in *paho5.Auth) *paho5.Auth {
	a.mu.Lock()
	defer a.mu.Unlock()
	msg, err := a.conv.Step(string(in.Properties.AuthData))
	if err != nil {
		a.errs = append(a.errs, err)
	}
	return &paho5.Auth{ReasonCode: packet.ReasonContinueAuthentication,
		Properties: &paho5.AuthProperties{AuthMethod: scramMethod, AuthData: []byte(msg)}}
}

func (a *scramAuther) Authenticated() {}

// verifyServer checks the server-final message: the server proved it holds the user's key.
func (a *scramAuther) verifyServer(t *testing.T, final []byte) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.conv.Step(string(final)); err != nil || !a.conv.Valid() {
		t.Fatalf("server-final %q: %v (valid %v)", final, err, a.conv.Valid())
	}
	if len(a.errs) > 0 {
		t.Fatalf("client steps: %v", a.errs)
	}
}

// scramConnect connects a paho.golang client with enhanced authentication as user; method "" sends no
// Authentication Method. It returns the client (nil when refused), the CONNACK and Connect's error.
func scramConnect(t *testing.T, addr string, a *scramAuther, method, user, password string, onDisconnect func(*paho5.Disconnect)) (*paho5.Client, *paho5.Connack, error) {
	t.Helper()
	c := paho5.NewClient(paho5.ClientConfig{Conn: prototest.Dial(t, addr), AuthHandler: a, OnServerDisconnect: onDisconnect})
	cp := &paho5.Connect{ClientID: "dev-" + user, CleanStart: true, KeepAlive: 30}
	if method != "" {
		cp.Properties = &paho5.ConnectProperties{AuthMethod: method, AuthData: a.start(t, user, password)}
	} else {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte(password), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho5.Disconnect{}) })
	return c, ca, nil
}

func scramBroker(t *testing.T) *broker {
	t.Helper()
	return startBroker(t, func(c *conf.Connector) { c.VirtualHost = "secure" }, scramHost(t))
}

// [MQTT-4.12.0-1] [MQTT-4.12.0-2]: CONNECT with an Authentication Method starts an exchange of AUTH 0x18
// packets; CONNACK ends it with the same method and the method's last data, here SCRAM's server-final
// message, which the client checks.
func TestEnhancedAuthSCRAM_MQTT_4_12_0_1(t *testing.T) {
	b := scramBroker(t)
	a := &scramAuther{}
	c, ca, err := scramConnect(t, b.addr, a, scramMethod, "alice", "wonderland", nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if ca.Properties == nil || ca.Properties.AuthMethod != scramMethod {
		t.Fatalf("CONNACK properties %+v: want the authentication method", ca.Properties)
	}
	a.verifyServer(t, ca.Properties.AuthData)

	// The session works: what alice publishes, she receives.
	got := make(chan string, 1)
	c.AddOnPublishReceived(func(pr paho5.PublishReceived) (bool, error) { got <- string(pr.Packet.Payload); return true, nil })
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "a/b", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, &paho5.Publish{Topic: "a/b", QoS: 1, Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "hi" {
		t.Fatalf("got %q", s)
	}
}

// A wrong password fails at the proof: CONNACK 0x86 (bad user name or password), as for a plain
// CONNECT; a user without SCRAM credentials and an unknown user fail the same way, telling nothing.
func TestEnhancedAuthRefused(t *testing.T) {
	b := scramBroker(t)
	for _, tc := range []struct{ user, password string }{
		{"alice", "looking-glass"}, {"carol", "singer"}, {"nobody", "x"},
	} {
		_, ca, err := scramConnect(t, b.addr, &scramAuther{}, scramMethod, tc.user, tc.password, nil)
		if err == nil || ca == nil || ca.ReasonCode != packet.ReasonBadUserNameOrPassword {
			t.Errorf("%s: connack %+v, err %v; want 0x86", tc.user, ca, err)
		}
	}
}

// An Authentication Method the host does not offer gets CONNACK 0x8C [MQTT-4.12.0-4] (3.2.2.2 lists it).
func TestEnhancedAuthUnknownMethod_MQTT_4_12_0_4(t *testing.T) {
	b := scramBroker(t)
	_, ca, err := scramConnect(t, b.addr, &scramAuther{}, "KERBEROS", "alice", "wonderland", nil)
	if err == nil || ca == nil || ca.ReasonCode != packet.ReasonBadAuthenticationMethod {
		t.Fatalf("connack %+v, err %v; want 0x8C", ca, err)
	}
}

// reauth starts a re-authentication (AUTH 0x19) of c as user and waits for its outcome.
func reauth(t *testing.T, c *paho5.Client, a *scramAuther, method, user, password string) *paho5.AuthResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	r, err := c.Authenticate(ctx, &paho5.Auth{ReasonCode: packet.ReasonReAuthenticate,
		Properties: &paho5.AuthProperties{AuthMethod: method, AuthData: a.start(t, user, password)}})
	if err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	return r
}

// [MQTT-4.12.1-1]: a client re-authenticates with the method it connected with; success is AUTH 0x00
// with the server-final message, and the connection goes on as before [MQTT-4.12.1-2].
func TestReauthentication_MQTT_4_12_1_1(t *testing.T) {
	b := scramBroker(t)
	a := &scramAuther{}
	c, _, err := scramConnect(t, b.addr, a, scramMethod, "alice", "wonderland", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // any number may follow each other
		r := reauth(t, c, a, scramMethod, "alice", "wonderland")
		if !r.Success || r.ReasonCode != packet.ReasonSuccess {
			t.Fatalf("re-authentication %d: %+v", i, r)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	if _, err := c.Publish(ctx, &paho5.Publish{Topic: "x", QoS: 1, Payload: []byte("still here")}); err != nil {
		t.Fatalf("publish after re-authentication: %v", err)
	}
}

// A re-authentication that fails, proves another user, uses another method, or comes on a connection
// that did not authenticate with a method ends the connection with DISCONNECT: 0x87 for the first two,
// 0x82 (protocol error) for the others [MQTT-4.12.1-1]; AUTH
// without a method at CONNECT is a protocol error as well (4.12: only a client that gave one may re-authenticate).
func TestReauthenticationRefused(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		connectMethod          string
		method, user, password string
		want                   byte
	}{
		{"wrong password", scramMethod, scramMethod, "alice", "looking-glass", packet.ReasonNotAuthorized},
		{"another user", scramMethod, scramMethod, "bob", "builder", packet.ReasonNotAuthorized},
		{"another method", scramMethod, "SCRAM-SHA-1", "alice", "wonderland", packet.ReasonProtocolError},
		{"no method at CONNECT", "", scramMethod, "alice", "wonderland", packet.ReasonProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := scramBroker(t)
			a := &scramAuther{}
			gone := make(chan *paho5.Disconnect, 1)
			c, _, err := scramConnect(t, b.addr, a, tc.connectMethod, "alice", "wonderland", func(d *paho5.Disconnect) { gone <- d })
			if err != nil {
				t.Fatal(err)
			}
			r := reauth(t, c, a, tc.method, tc.user, tc.password)
			if r.Success || r.ReasonCode != tc.want {
				t.Fatalf("outcome %+v, want DISCONNECT 0x%02X", r, tc.want)
			}
			select {
			case d := <-gone:
				if d.ReasonCode != tc.want {
					t.Fatalf("DISCONNECT 0x%02X, want 0x%02X", d.ReasonCode, tc.want)
				}
			case <-time.After(waitTime):
				t.Fatal("no DISCONNECT")
			}
		})
	}
}
