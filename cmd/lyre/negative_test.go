package main

// The negative table's attempts beyond MQTT 3.1.1 and STOMP over plain TCP (security_test.go): MQTT 3.1
// and 5, MQTT and STOMP over WebSocket, and the management HTTP API; and the canaries on each of those
// that must still be served once the table has run.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"github.com/gorilla/websocket"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

// negativeConfig is securityConfig with HTTP (WebSocket and management) and low per-connection bounds
// (transactions, selectors, subscriptions) on the autodetecting connector, a max_message_length on host
// a, and rules giving dave monitor on host a (not admin) and admins monitor on the broker.
func negativeConfig(t *testing.T) string {
	t.Helper()
	edits := []struct{ anchor, with string }{
		{"  detect = [\"mqtt\", \"stomp\"]\n}\n", `  detect     = ["mqtt", "stomp", "http"]
  management = true
  stomp {
    max_transactions       = 3
    max_transaction_frames = 10
    max_selector_length    = "256B"
    max_subscriptions      = 5
  }
  mqtt {
    max_subscriptions = 5
  }
}
`},
		{"  users_file = \"users-a.hcl\"\n", `  users_file = "users-a.hcl"
  max_message_length = "16KB"

  access_rule {
    allow  = ["dave", "admins"]
    action = ["monitor"]
    kind   = "virtual_host"
  }
  access_rule {
    allow  = ["admins"]
    action = ["monitor"]
    kind   = "broker"
  }
`},
	}
	src := securityConfig
	for _, e := range edits {
		if strings.Count(src, e.anchor) != 1 {
			t.Fatalf("securityConfig no longer holds %q once", e.anchor)
		}
		src = strings.Replace(src, e.anchor, e.with, 1)
	}
	return src
}

// stompDialer opens a STOMP connection to the secure broker's autodetecting port.
type stompDialer func(sb *secureBroker, host, login, pass string) (*stomp.Conn, error)

func tcpSTOMP(sb *secureBroker, host, login, pass string) (*stomp.Conn, error) {
	return stompDial(sb.addr, host, login, pass)
}

// wsSTOMPDial is stompDial over a WebSocket to /stomp (sub-protocol v12.stomp).
func wsSTOMPDial(sb *secureBroker, host, login, pass string) (*stomp.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{"v12.stomp"}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("ws://"+sb.addr+"/stomp", nil)
	if err != nil {
		return nil, err
	}
	opts := []func(*stomp.Conn) error{stomp.ConnOpt.Logger(prototest.NopStompLogger{})}
	if host != "" {
		opts = append(opts, stomp.ConnOpt.Host(host))
	}
	if login != "" {
		opts = append(opts, stomp.ConnOpt.Login(login, pass))
	}
	c, err := stomp.Connect(&wsStreamConn{Conn: ws}, opts...)
	if err != nil {
		ws.Close()
		return nil, err
	}
	return c, nil
}

// stomp10 is stompDial speaking STOMP 1.0 only.
func stomp10(sb *secureBroker, host, login, pass string) (*stomp.Conn, error) {
	return stomp.Dial("tcp", sb.addr, stomp.ConnOpt.Host(host), stomp.ConnOpt.Login(login, pass),
		stomp.ConnOpt.AcceptVersion(stomp.V10), stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
}

// negativeExtra holds what the attempts of negativeCases share: a watcher that may receive every topic
// a refused publish aims at, and canaries over MQTT 5, WebSocket and HTTP.
type negativeExtra struct {
	sb       *secureBroker
	watcher  <-chan paho.Message // alice on # and $SYS/#
	wsMQTT   <-chan paho.Message // alice over ws://.../mqtt on news/canary-x
	wsSTOMP  *stomp.Subscription // bob over ws://.../stomp on /topic/news.canary-x
	v5       *v5Client           // bob, MQTT 5, on news/canary-x
	canaryID uint64              // the connection of the MQTT client "canary-sub", which dave may not close
	replier  string              // session id of a STOMP connection that named /temp-queue/replies
}

// newNegativeExtra connects the watcher and the canaries; canaryClient names an MQTT client already
// connected whose connection the table tries to close.
func newNegativeExtra(t *testing.T, sb *secureBroker, canaryClient string) *negativeExtra {
	t.Helper()
	x := &negativeExtra{sb: sb}
	x.watcher = newWatcher(t, sb)
	ws, code := mqttDialURL(t, "ws://"+sb.addr+"/mqtt", 4, "ws-canary", "alice", alicePass)
	if code != connackAccepted {
		t.Fatalf("ws canary CONNACK %#x", code)
	}
	x.wsMQTT = mqttSubscribe(t, ws, "news/canary-x", 1)
	sc, err := wsSTOMPDial(sb, "a", "bob", bobPass)
	if err != nil {
		t.Fatalf("ws stomp canary: %v", err)
	}
	t.Cleanup(func() { _ = sc.Disconnect() })
	if x.wsSTOMP, err = sc.Subscribe("/topic/news.canary-x", stomp.AckAuto); err != nil {
		t.Fatal(err)
	}
	if err := sc.Send("/topic/news.sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil { // SUBSCRIBE done
		t.Fatal(err)
	}
	x.v5 = dialV5(t, sb.addr, &paho5.Connect{ClientID: "v5-canary", CleanStart: true,
		Username: "bob", UsernameFlag: true, Password: []byte(bobPass), PasswordFlag: true})
	x.v5.sub(0, paho5.SubscribeOptions{Topic: "news/canary-x", QoS: 1})
	rep := stompLogin(t, sb.addr, "a", "alice", alicePass)
	if err := rep.Send("/topic/news.req", "text/plain", nil, stomp.SendOpt.Receipt, stomp.SendOpt.Header("reply-to", "/temp-queue/replies")); err != nil {
		t.Fatal(err)
	}
	x.replier = rep.Session()
	for _, c := range sb.b.srv.Connections() {
		if c.Session.ClientID == canaryClient {
			x.canaryID = c.ID
		}
	}
	if x.canaryID == 0 {
		t.Fatalf("no connection of %s", canaryClient)
	}
	return x
}

// newWatcher subscribes alice to # and $SYS/# (which # does not cover [MQTT-4.7.2-1]) and checks that
// both deliver: the broker's retained $SYS/broker/version and a message of her own.
func newWatcher(t *testing.T, sb *secureBroker) <-chan paho.Message {
	t.Helper()
	w := mqttLogin(t, sb.addr, "neg-watcher", "alice", alicePass)
	ch := make(chan paho.Message, 1000)
	tok := w.SubscribeMultiple(map[string]byte{"#": 1, "$SYS/#": 1}, func(_ paho.Client, m paho.Message) { ch <- m })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher: %v", tok.Error())
	}
	mqttPublish(t, w, "news/watcher", 1, "self")
	seen := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for !seen["news/watcher"] || !seen["$SYS/broker/version"] {
		select {
		case m := <-ch:
			seen[m.Topic()] = true
		case <-timeout:
			t.Fatalf("the watcher saw only %v", seen)
		}
	}
	return ch
}

// check publishes over HTTP as alice and expects every canary of x to receive it; alice may still scrape
// /metrics, and the connection dave tried to close is still there.
func (x *negativeExtra) check(t *testing.T) {
	t.Helper()
	if err := httpExpect(x.sb, "POST", "/api/v1/vhosts/a/topics/news.canary-x", "alice", alicePass, "via http", http.StatusCreated); err != nil {
		t.Fatalf("HTTP canary publish: %v", err)
	}
	expectMQTT(t, x.wsMQTT, "news/canary-x", "via http")
	if m := readStomp(t, x.wsSTOMP); string(m.Body) != "via http" {
		t.Errorf("ws stomp canary got %q", m.Body)
	}
	if m := x.v5.next(5 * time.Second); m.Topic != "news/canary-x" || string(m.Payload) != "via http" {
		t.Errorf("MQTT 5 canary got %s %q", m.Topic, m.Payload)
	}
	if err := httpExpect(x.sb, "GET", "/metrics", "alice", alicePass, "", http.StatusOK); err != nil {
		t.Errorf("metrics after the table: %v", err)
	}
	open := false
	for _, c := range x.sb.b.srv.Connections() {
		open = open || c.ID == x.canaryID
	}
	if !open {
		t.Error("the canary connection dave tried to close is gone")
	}
}

// notDelivered checks that the watcher gets nothing on topic for a short while.
func (x *negativeExtra) notDelivered(topic string) error {
	deadline := time.After(150 * time.Millisecond)
	for {
		select {
		case m := <-x.watcher:
			if m.Topic() == topic {
				return fmt.Errorf("refused publish delivered: %s %q", m.Topic(), m.Payload())
			}
		case <-deadline:
			return nil
		}
	}
}

// httpExpect makes a request to the secure broker's management API (basic auth unless user is "") and
// checks its status.
func httpExpect(sb *secureBroker, method, path, user, pass, body string, want int) error {
	req, err := http.NewRequest(method, "http://"+sb.addr+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s as %q: %d %s, want %d", method, path, user, resp.StatusCode, text, want)
	}
	return nil
}

// httpRefused is a management request answered with status want; a publish (POST to a topic) must
// not reach the watcher either.
func (x *negativeExtra) httpRefused(method, path, user, pass string, want int) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		if err := httpExpect(sb, method, path, user, pass, "forged", want); err != nil {
			return err
		}
		if name, ok := strings.CutPrefix(path, "/api/v1/vhosts/a/topics/"); ok && method == "POST" {
			return x.notDelivered(strings.ReplaceAll(name, ".", "/"))
		}
		return nil
	}
}

// mqttURLRefused connects to url with protocol level and expects CONNACK want.
func mqttURLRefused(url func(*secureBroker) string, level uint, user, pass string, want byte) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		if _, code := mqttDialURL(t, url(sb), level, "neg-url", user, pass); code != want {
			return fmt.Errorf("CONNACK %#x, want %#x", code, want)
		}
		return nil
	}
}

func wsURL(sb *secureBroker) string  { return "ws://" + sb.addr + "/mqtt" }
func tcpURL(sb *secureBroker) string { return "tcp://" + sb.addr }

// mqttURLSubscribeRefused logs in over url and expects SUBACK 0x80 for filter.
func mqttURLSubscribeRefused(url func(*secureBroker) string, user, pass, id, filter string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		c, code := mqttDialURL(t, url(sb), 4, id, user, pass)
		if code != connackAccepted {
			return fmt.Errorf("login CONNACK %#x", code)
		}
		if _, code := mqttSubscribeCode(t, c, filter); code != 0x80 {
			return fmt.Errorf("SUBACK %#x, want 0x80", code)
		}
		return nil
	}
}

// mqttURLPublishRefused publishes at qos over url (acknowledged regardless [MQTT-3.3.5-2]), retained if
// asked, and checks that the watcher gets nothing and, for a retained one, that nothing was kept.
func (x *negativeExtra) mqttURLPublishRefused(url func(*secureBroker) string, user, pass, id, topic string, qos byte, retain bool) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		c, code := mqttDialURL(t, url(sb), 4, id, user, pass)
		if code != connackAccepted {
			return fmt.Errorf("login CONNACK %#x", code)
		}
		tok := c.Publish(topic, qos, retain, "forged")
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return fmt.Errorf("QoS %d publish not acknowledged: %v", qos, tok.Error())
		}
		if err := x.notDelivered(topic); err != nil || !retain {
			return err
		}
		late := mqttLogin(t, sb.addr, id+"-late", "alice", alicePass)
		ch, _ := mqttSubscribeCode(t, late, topic)
		select {
		case m := <-ch:
			return fmt.Errorf("refused retained publish kept: %s %q", m.Topic(), m.Payload())
		case <-time.After(150 * time.Millisecond):
			return nil
		}
	}
}

// mqttWillRefused connects (MQTT 3.1.1 over the codec) with a will on topic, then drops the connection
// without DISCONNECT: the will must not be published.
func (x *negativeExtra) mqttWillRefused(user, pass, id, topic string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		nc, err := net.DialTimeout("tcp", sb.addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer nc.Close()
		rd := packet.NewReader(nc, 0)
		rd.SetVersion(packet.Version311)
		cp := &packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311, CleanSession: true, KeepAlive: 30,
			ClientID: id, UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass),
			WillFlag: true, WillQoS: 1, WillTopic: topic, WillPayload: []byte("forged will")}
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(packet.Append(nil, cp, packet.Version311)); err != nil {
			return err
		}
		p, err := rd.ReadPacket()
		if ca, ok := p.(*packet.ConnackPacket); err != nil || !ok || ca.ReturnCode != 0 {
			return fmt.Errorf("CONNACK %v %#v", err, p)
		}
		nc.Close()
		return x.notDelivered(topic)
	}
}

// v5ConnectRefused sends an MQTT 5 CONNECT and expects CONNACK reason want.
func v5ConnectRefused(cp *packet.ConnectPacket, want byte) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		if _, ca := connectRaw5(t, sb.addr, cp); ca.ReturnCode != want {
			return fmt.Errorf("CONNACK %#x, want %#x", ca.ReturnCode, want)
		}
		return nil
	}
}

// v5CP is an MQTT 5 CONNECT with user name and password.
func v5CP(id, user, pass string) *packet.ConnectPacket {
	return &packet.ConnectPacket{ClientID: id, CleanSession: true, UsernameFlag: user != "", Username: user,
		PasswordFlag: pass != "", Password: []byte(pass)}
}

// await reads packets until one of type want arrives.
func (r *raw5) await(want packet.Type) (packet.Packet, error) {
	for {
		p, err := r.next(5 * time.Second)
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", want, err)
		}
		if p.Type() == want {
			return p, nil
		}
	}
}

// v5SubscribeRefused logs in over MQTT 5 and expects SUBACK reason want for filter.
func v5SubscribeRefused(user, pass, id, filter string, want byte) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		r, _ := dialRaw5(t, sb.addr, v5CP(id, user, pass))
		r.send(&packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: filter, QoS: 1}}})
		p, err := r.await(packet.Suback)
		if err != nil {
			return err
		}
		if rc := p.(*packet.SubackPacket).ReturnCodes; len(rc) != 1 || rc[0] != want {
			return fmt.Errorf("SUBACK %#v, want [%#x]", rc, want)
		}
		return nil
	}
}

// v5PublishRefused logs in over MQTT 5 and publishes each of pubs at its QoS (1 or 2): each must be
// answered PUBACK / PUBREC 0x87 and none reach the watcher.
func (x *negativeExtra) v5PublishRefused(user, pass, id string, pubs ...*packet.PublishPacket) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		r, _ := dialRaw5(t, sb.addr, v5CP(id, user, pass))
		for i, p := range pubs {
			p.PacketID, p.Payload = uint16(i+1), []byte("forged")
			r.send(p)
			want := packet.Puback
			if p.QoS == 2 {
				want = packet.Pubrec
			}
			ack, err := r.await(want)
			if err != nil {
				return err
			}
			rc := byte(0)
			switch a := ack.(type) {
			case *packet.PubackPacket:
				rc = a.ReasonCode
			case *packet.PubrecPacket:
				rc = a.ReasonCode
			}
			if rc != packet.ReasonNotAuthorized {
				return fmt.Errorf("publish %d to %q: %s reason %#x, want 0x87", i, p.Topic, want, rc)
			}
		}
		for _, p := range pubs {
			if p.Topic != "" {
				if err := x.notDelivered(p.Topic); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// wsUpgradeRefused asks for a WebSocket with sub-protocols protos (and an Origin when not "") and expects
// HTTP status want. Refused HTTP requests are logged at most once a second per connector (the rest
// counted in the next line), so it first lets a second pass.
func wsUpgradeRefused(path, origin string, want int, protos ...string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		time.Sleep(1100 * time.Millisecond)
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: 5 * time.Second}
		ws, resp, err := d.Dial("ws://"+sb.addr+path, h)
		if err == nil {
			ws.Close()
			return errors.New("upgrade accepted")
		}
		if resp == nil || resp.StatusCode != want {
			return fmt.Errorf("upgrade: %v (%v), want status %d", err, resp, want)
		}
		resp.Body.Close()
		return nil
	}
}

func u16(v uint16) *uint16 { return &v }

// v5AuthMethod is an MQTT 5 CONNECT with an authentication method the broker does not know.
func v5AuthMethod(id string) *packet.ConnectPacket {
	cp := v5CP(id, "alice", "")
	cp.Properties = &packet.Properties{AuthenticationMethod: "KERBEROS-NOPE"}
	return cp
}

// cases are the table's attempts over MQTT 3.1 and 5, STOMP 1.0 and extra STOMP frames, WebSocket and
// HTTP.
func (x *negativeExtra) cases() []negativeCase {
	var cs []negativeCase
	for _, part := range [][]negativeCase{x.mqttCases(), x.v5Cases(), x.stompCases(), x.wsCases(), x.httpCases(),
		x.boundsCases(), x.aclCases()} {
		cs = append(cs, part...)
	}
	return cs
}

func (x *negativeExtra) mqttCases() []negativeCase {
	return []negativeCase{
		{"mqtt 3.1 (MQIsdp) wrong password", mqttURLRefused(tcpURL, 3, "alice", "wrong-pass", connackBadCredentials), "mqtt login refused"},
		{"mqtt 3.1 no credentials", mqttURLRefused(tcpURL, 3, "", "", connackNotAuthorized), "mqtt login refused"},
		{"mqtt client id of another user's live session", func(t *testing.T, sb *secureBroker) error {
			// canary-sub is alice's: bob may neither take it over nor kick her off (checked after the table).
			if _, code := mqttDial(t, sb.addr, "canary-sub", "bob", bobPass); code != connackNotAuthorized {
				return fmt.Errorf("CONNACK %#x, want 0x05", code)
			}
			return nil
		}, "client id in use by another user's session"},
		{"mqtt QoS 2 publish denied by first match", x.mqttURLPublishRefused(tcpURL, "bob", bobPass, "q2", "orders/qos2", 2, false), "mqtt send refused"},
		{"mqtt QoS 0 publish denied by first match", x.mqttURLPublishRefused(tcpURL, "bob", bobPass, "q0", "orders/qos0", 0, false), "mqtt send refused"},
		{"mqtt retained publish to a denied topic is not kept", x.mqttURLPublishRefused(tcpURL, "bob", bobPass, "r1", "orders/retained", 1, true), "mqtt send refused"},
		{"mqtt admin publishing under $SYS", x.mqttURLPublishRefused(tcpURL, "alice", alicePass, "sys1", "$SYS/broker/forged", 1, false), "mqtt send refused"},
		{"mqtt retained publish under $SYS by an admin", x.mqttURLPublishRefused(tcpURL, "alice", alicePass, "sys2", "$SYS/broker/forged-retained", 1, true), "mqtt send refused"},
		{"mqtt explicit deny before an allow (dave, alerts/private)", x.mqttURLPublishRefused(tcpURL, "dave", davePass, "d1", "alerts/private/x", 1, false), "mqtt send refused"},
		{"mqtt will on a denied topic is never published", x.mqttWillRefused("bob", bobPass, "will1", "orders/will"), "mqtt send refused"},
		{"mqtt will under $SYS", x.mqttWillRefused("alice", alicePass, "will2", "$SYS/broker/will"), "mqtt send refused"},
		{"mqtt broker-level deny through a one-level wildcard", mqttSubscribeRefused("alice", alicePass, "n9", "forbidden/+/x"), "subscribe refused"},
	}
}

func (x *negativeExtra) v5Cases() []negativeCase {
	return []negativeCase{
		{"mqtt5 wrong password", v5ConnectRefused(v5CP("v5a", "alice", "wrong-pass"), packet.ReasonBadUserNameOrPassword), "mqtt login refused"},
		{"mqtt5 unknown user", v5ConnectRefused(v5CP("v5b", "mallory", "wrong-pass"), packet.ReasonBadUserNameOrPassword), "mqtt login refused"},
		{"mqtt5 no credentials", v5ConnectRefused(v5CP("v5c", "", ""), packet.ReasonNotAuthorized), "mqtt login refused"},
		{"mqtt5 unknown authentication method", v5ConnectRefused(v5AuthMethod("v5d"), packet.ReasonBadAuthenticationMethod),
			"authentication method not supported"},
		{"mqtt5 client id of another user's live session", v5ConnectRefused(v5CP("canary-sub", "dave", davePass), packet.ReasonNotAuthorized),
			"client id in use by another user's session"},
		{"mqtt5 $SYS/#", v5SubscribeRefused("bob", bobPass, "v5s1", "$SYS/#", packet.ReasonNotAuthorized), "subscribe refused"},
		{"mqtt5 shared subscription over another user's subtree", v5SubscribeRefused("bob", bobPass, "v5s2", "$share/g/users/alice/#", packet.ReasonNotAuthorized), "subscribe refused"},
		{"mqtt5 shared subscription over $SYS", v5SubscribeRefused("bob", bobPass, "v5s3", "$share/g/$SYS/#", packet.ReasonNotAuthorized), "subscribe refused"},
		{"mqtt5 QoS 1 publish denied: PUBACK 0x87", x.v5PublishRefused("bob", bobPass, "v5p1", &packet.PublishPacket{QoS: 1, Topic: "orders/v5"}), "mqtt send refused"},
		{"mqtt5 QoS 2 publish under $SYS: PUBREC 0x87", x.v5PublishRefused("alice", alicePass, "v5p2", &packet.PublishPacket{QoS: 2, Topic: "$SYS/broker/v5"}), "mqtt send refused"},
		{"mqtt5 topic alias set on a denied topic, then used", x.v5PublishRefused("bob", bobPass, "v5p3",
			&packet.PublishPacket{QoS: 1, Topic: "orders/alias", Properties: &packet.Properties{TopicAlias: u16(1)}},
			&packet.PublishPacket{QoS: 1, Properties: &packet.Properties{TopicAlias: u16(1)}}), "mqtt send refused"},
	}
}

func (x *negativeExtra) stompCases() []negativeCase {
	return []negativeCase{
		{"stomp 1.0 wrong passcode", stompConnectRefusedVia(stomp10, "a", "alice", "wrong-pass", "access refused"), "stomp login refused"},
		{"stomp 1.0 send denied by first match", stompSendRefusedVia(stomp10, "a", "bob", bobPass, "/topic/orders.v10", "access refused"), "send refused"},
		{"stomp connect denied by rule", stompConnectRefused("a", "carol", carolPass, "access refused"), "stomp login refused"},
		{"stomp retain:set on a denied topic", stompSendRefusedVia(tcpSTOMP, "a", "bob", bobPass, "/topic/orders.kept", "access refused", "retain", "set"), "send refused"},
		{"stomp explicit deny before an allow (dave, alerts.private)", stompSendRefused("a", "dave", davePass, "/topic/alerts.private.x", "access refused"), "send refused"},
		{"stomp admin sending under $SYS", stompSendRefused("a", "alice", alicePass, "/topic/$SYS.broker.forged", "access refused"), "send refused"},
		{"stomp selector does not widen a denied subscription", stompSubscribeRefusedVia(tcpSTOMP, "a", "bob", bobPass, "/topic/users.alice.**", "access refused",
			"selector", "1 = 1"), "subscribe refused"},
		{"stomp regex level reaching only another user's subtree", stompSubscribeRefused("a", "bob", bobPass, "/topic/users.{al.*}.**", "access refused"), "subscribe refused"},
		{"stomp durable subscription without create on dsub", stompSubscribeRefused("a", "bob", bobPass, "/topic/news.x", "access refused",
			"persistent", "true", "id", "durable-news"), "refused"},
		{"stomp oversized passcode", stompConnectRefused("a", "alice", strings.Repeat("p", 5000), "access refused"), "stomp login refused"},
	}
}

func (x *negativeExtra) wsCases() []negativeCase {
	return []negativeCase{
		{"ws mqtt wrong password", mqttURLRefused(wsURL, 4, "alice", "wrong-pass", connackBadCredentials), "mqtt login refused"},
		{"ws mqtt no credentials", mqttURLRefused(wsURL, 4, "", "", connackNotAuthorized), "mqtt login refused"},
		{"ws mqtt $SYS/#", mqttURLSubscribeRefused(wsURL, "bob", bobPass, "ws1", "$SYS/#"), "subscribe refused"},
		{"ws mqtt another user's subtree", mqttURLSubscribeRefused(wsURL, "bob", bobPass, "ws2", "users/alice/#"), "subscribe refused"},
		{"ws mqtt publish denied by first match", x.mqttURLPublishRefused(wsURL, "bob", bobPass, "ws3", "orders/ws", 1, false), "mqtt send refused"},
		{"ws stomp wrong passcode", stompConnectRefusedVia(wsSTOMPDial, "a", "alice", "wrong-pass", "access refused"), "stomp login refused"},
		{"ws stomp no login", stompConnectRefusedVia(wsSTOMPDial, "a", "", "", "access refused"), "stomp login refused"},
		{"ws stomp send denied by first match", stompSendRefusedVia(wsSTOMPDial, "a", "bob", bobPass, "/topic/orders.ws", "access refused"), "send refused"},
		{"ws stomp send under $SYS", stompSendRefusedVia(wsSTOMPDial, "a", "alice", alicePass, "/topic/$SYS.ws", "access refused"), "send refused"},
		{"ws stomp another user's subtree", stompSubscribeRefusedVia(wsSTOMPDial, "a", "bob", bobPass, "/topic/users.alice.**", "access refused"), "subscribe refused"},
		{"ws upgrade from a foreign origin", wsUpgradeRefused("/mqtt", "http://evil.example", http.StatusForbidden, "mqtt"), "http request refused"},
		{"ws upgrade with an unknown sub-protocol", wsUpgradeRefused("/mqtt", "", http.StatusBadRequest, "amqp"), "http request refused"},
	}
}

func (x *negativeExtra) httpCases() []negativeCase {
	const host = "/api/v1/vhosts/a"
	const log = "management request refused"
	return []negativeCase{
		{"http /metrics without credentials: 401", x.httpRefused("GET", "/metrics", "", "", http.StatusUnauthorized), log},
		{"http /metrics wrong password: 401", x.httpRefused("GET", "/metrics", "alice", "wrong-pass", http.StatusUnauthorized), log},
		{"http /metrics without monitor: 403", x.httpRefused("GET", "/metrics", "bob", bobPass, http.StatusForbidden), log},
		{"http /metrics with monitor on the host only: 403", x.httpRefused("GET", "/metrics", "dave", davePass, http.StatusForbidden), log},
		{"http /metrics as host a's alice on host b: 401", x.httpRefused("GET", "/metrics", "alice@b.example", alicePass, http.StatusUnauthorized), log},
		{"http host listing without monitor: 403", x.httpRefused("GET", "/api/v1/vhosts", "bob", bobPass, http.StatusForbidden), log},
		{"http connections without monitor: 403", x.httpRefused("GET", host+"/connections", "bob", bobPass, http.StatusForbidden), log},
		{"http another host's connections with host a's password: 401", x.httpRefused("GET", "/api/v1/vhosts/b/connections", "alice", alicePass, http.StatusUnauthorized), log},
		{"http broker connections without monitor on the broker: 403", x.httpRefused("GET", "/api/v1/connections", "dave", davePass, http.StatusForbidden), log},
		{"http close a canary's connection as monitor: 403", func(t *testing.T, sb *secureBroker) error {
			return x.httpRefused("DELETE", fmt.Sprintf("%s/connections/%d", host, x.canaryID), "dave", davePass, http.StatusForbidden)(t, sb)
		}, log},
		{"http delete a session as monitor: 403", x.httpRefused("DELETE", host+"/sessions/canary-sub", "dave", davePass, http.StatusForbidden), log},
		{"http delete a queue as monitor: 403", x.httpRefused("DELETE", host+"/queues/jobs.print", "dave", davePass, http.StatusForbidden), log},
		{"http purge a queue as monitor: 403", x.httpRefused("DELETE", host+"/queues/jobs.print/messages", "dave", davePass, http.StatusForbidden), log},
		{"http move messages as monitor: 403", x.httpRefused("POST", host+"/queues/jobs.print/move", "dave", davePass, http.StatusForbidden), log},
		{"http delete a retained message as monitor: 403", x.httpRefused("DELETE", host+"/retained/news.canary", "dave", davePass, http.StatusForbidden), log},
		{"http reload as monitor: 403", x.httpRefused("POST", "/api/v1/reload", "dave", davePass, http.StatusForbidden), log},
		{"http reload without credentials: 401", x.httpRefused("POST", "/api/v1/reload", "", "", http.StatusUnauthorized), log},
		{"http publish without send (first-match deny): 403", x.httpRefused("POST", host+"/topics/orders.http", "bob", bobPass, http.StatusForbidden), log},
		{"http publish under $SYS by an admin: 403", x.httpRefused("POST", host+"/topics/$SYS.broker.http", "alice", alicePass, http.StatusForbidden), log},
		{"http publish to a default-deny queue: 403", x.httpRefused("POST", host+"/queues/payroll", "bob", bobPass, http.StatusForbidden), log},
		{"http publish to a broker-denied topic: 403", x.httpRefused("POST", host+"/topics/forbidden.http", "alice", alicePass, http.StatusForbidden), log},
		{"http publish anonymously: 401", x.httpRefused("POST", host+"/topics/news.http", "", "", http.StatusUnauthorized), log},
	}
}

// boundsCases go past the per-connection and per-host bounds negativeConfig sets low: each is refused
// (ERROR, SUBACK failure, CONNACK or a closed connection) and logged.
func (x *negativeExtra) boundsCases() []negativeCase {
	big := strings.Repeat("b", 20<<10) // over host a's max_message_length (16KB)
	return []negativeCase{
		{"stomp SEND inside a transaction to a denied topic, refused when buffered", stompRawRefused("bob", bobPass, "access refused",
			frame.New(frame.BEGIN, frame.Transaction, "t1"),
			frame.New(frame.SEND, frame.Destination, "/topic/orders.tx", frame.Transaction, "t1")), "send refused"},
		{"stomp transaction over max_transaction_frames", stompRawRefused("bob", bobPass, "transaction too large",
			append([]*frame.Frame{frame.New(frame.BEGIN, frame.Transaction, "t1")},
				repeatFrame(11, frame.SEND, frame.Destination, "/topic/news.tx", frame.Transaction, "t1")...)...), "max_transaction_frames"},
		{"stomp BEGIN beyond max_transactions", stompRawRefused("bob", bobPass, "too many transactions",
			frame.New(frame.BEGIN, frame.Transaction, "t1"), frame.New(frame.BEGIN, frame.Transaction, "t2"),
			frame.New(frame.BEGIN, frame.Transaction, "t3"), frame.New(frame.BEGIN, frame.Transaction, "t4")), "max_transactions"},
		{"stomp selector over max_selector_length", stompRawRefused("bob", bobPass, "invalid selector",
			subscribeFrame("/topic/news.sel", "s1", "selector", "a = '"+strings.Repeat("x", 300)+"'")), "max_selector_length"},
		{"stomp SUBSCRIBE beyond max_subscriptions", stompRawRefused("bob", bobPass, "too many subscriptions",
			subscribeFrame("/topic/news.s1", "s1"), subscribeFrame("/topic/news.s2,/topic/news.s3", "s2"),
			subscribeFrame("/topic/news.s4,/topic/news.s5,/topic/news.s6", "s3")), "max_subscriptions"},
		{"stomp SEND over the host's max_message_length", stompRawRefused("bob", bobPass, "message too large",
			frame.New(frame.SEND, frame.Destination, "/topic/news.big", frame.ContentLength, strconv.Itoa(len(big)))), "max_message_length"},
		{"mqtt sixth subscription beyond max_subscriptions: SUBACK 0x80", mqttSubscriptionsBeyond, ""},
		{"mqtt SUBSCRIBE listing more filters than max_subscriptions: closed unread", mqttTooManyFilters, "max_subscriptions"},
		{"mqtt publish over the host's max_message_length: closed", x.mqttTooLarge(big), "publish refused: larger than the virtual host's max_message_length"},
		{"mqtt5 subscription beyond max_subscriptions: SUBACK 0x97", v5SubscriptionsBeyond, ""},
		{"mqtt5 will over the host's max_message_length: CONNACK 0x95", v5ConnectRefused(&packet.ConnectPacket{ClientID: "v5big",
			CleanSession: true, UsernameFlag: true, Username: "bob", PasswordFlag: true, Password: []byte(bobPass),
			WillFlag: true, WillTopic: "news/will", WillPayload: []byte(big)}, packet.ReasonPacketTooLarge),
			"will refused: larger than the virtual host's max_message_length"},
	}
}

// repeatFrame returns n frames made with frame.New(command, headers...).
func repeatFrame(n int, command string, headers ...string) []*frame.Frame {
	fs := make([]*frame.Frame, n)
	for i := range fs {
		fs[i] = frame.New(command, headers...)
	}
	return fs
}

// stompRawRefused logs in to host a and sends frames, each asking a receipt, until one is answered
// ERROR: it must be the last one, with message want.
func stompRawRefused(login, pass, want string, frames ...*frame.Frame) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		c := rawStompLogin(t, sb.addr, login, pass)
		defer c.nc.Close()
		for i, f := range frames {
			if f.Command == frame.SEND && f.Header.Get(frame.ContentLength) != "" {
				n, _ := strconv.Atoi(f.Header.Get(frame.ContentLength))
				f.Body = []byte(strings.Repeat("b", n))
			}
			a := c.do(f)
			if a.Command != frame.ERROR {
				continue
			}
			if i != len(frames)-1 || a.Header.Get(frame.Message) != want {
				return fmt.Errorf("frame %d (%s): ERROR %q, want the last one refused with %q", i, f.Command, a.Header.Get(frame.Message), want)
			}
			return nil
		}
		return fmt.Errorf("no ERROR, want %q", want)
	}
}

// mqttSubscriptionsBeyond subscribes to 5 filters, as max_subscriptions allows, then a sixth.
func mqttSubscriptionsBeyond(t *testing.T, sb *secureBroker) error {
	c := mqttLogin(t, sb.addr, "subs5", "bob", bobPass)
	for i := range 5 {
		if _, code := mqttSubscribeCode(t, c, fmt.Sprintf("news/n%d", i)); code != 1 {
			return fmt.Errorf("subscription %d: SUBACK %#x", i+1, code)
		}
	}
	if _, code := mqttSubscribeCode(t, c, "news/n5"); code != 0x80 {
		return fmt.Errorf("sixth subscription: SUBACK %#x, want 0x80", code)
	}
	return nil
}

// v5SubscriptionsBeyond is mqttSubscriptionsBeyond over MQTT 5: the sixth is refused 0x97 (quota).
func v5SubscriptionsBeyond(t *testing.T, sb *secureBroker) error {
	r, _ := dialRaw5(t, sb.addr, v5CP("subs5v5", "bob", bobPass))
	var subs []packet.Subscription
	for i := range 6 {
		subs = append(subs, packet.Subscription{Filter: fmt.Sprintf("news/v%d", i), QoS: 1})
	}
	for i := range subs {
		r.send(&packet.SubscribePacket{PacketID: uint16(i + 1), Subscriptions: subs[i : i+1]})
		p, err := r.await(packet.Suback)
		if err != nil {
			return err
		}
		want := byte(1)
		if i == 5 {
			want = packet.ReasonQuotaExceeded
		}
		if rc := p.(*packet.SubackPacket).ReturnCodes; len(rc) != 1 || rc[0] != want {
			return fmt.Errorf("subscription %d: SUBACK %#v, want %#x", i+1, rc, want)
		}
	}
	return nil
}

// mqttTooManyFilters sends one SUBSCRIBE with more filters than max_subscriptions: the broker closes the
// connection without a SUBACK.
func mqttTooManyFilters(t *testing.T, sb *secureBroker) error {
	c, code := mqttDial(t, sb.addr, "filters6", "bob", bobPass)
	if code != connackAccepted {
		return fmt.Errorf("CONNACK %#x", code)
	}
	filters := map[string]byte{}
	for i := range 6 {
		filters[fmt.Sprintf("news/f%d", i)] = 1
	}
	if tok := c.SubscribeMultiple(filters, nil); tok.WaitTimeout(time.Second) && tok.Error() == nil {
		return errors.New("SUBACK for 6 filters")
	}
	prototest.WaitFor(t, 5*time.Second, func() bool { return !c.IsConnectionOpen() })
	return nil
}

// mqttTooLarge publishes body (over host a's max_message_length): the connection is closed and the
// watcher gets nothing.
func (x *negativeExtra) mqttTooLarge(body string) func(*testing.T, *secureBroker) error {
	return func(t *testing.T, sb *secureBroker) error {
		c, code := mqttDial(t, sb.addr, "big1", "bob", bobPass)
		if code != connackAccepted {
			return fmt.Errorf("CONNACK %#x", code)
		}
		c.Publish("news/big", 1, false, body).WaitTimeout(time.Second)
		prototest.WaitFor(t, 5*time.Second, func() bool { return !c.IsConnectionOpen() })
		return x.notDelivered("news/big")
	}
}

// stompAs dials STOMP over TCP with a client-id header.
func stompAs(clientID string) stompDialer {
	return func(sb *secureBroker, host, login, pass string) (*stomp.Conn, error) {
		return stomp.Dial("tcp", sb.addr, stomp.ConnOpt.Host(host), stomp.ConnOpt.Login(login, pass),
			stomp.ConnOpt.Header("client-id", clientID), stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
	}
}

// aclCases are the holes the acl branch closed (issue 13, items 1 to 7) tried once more: client ids a
// user does not claim, temporary destinations, STOMP names MQTT cannot write, shared groups, and answers
// that would tell a refused user or an unknown host from a wrong password.
func (x *negativeExtra) aclCases() []negativeCase {
	tooMany := make([]*frame.Frame, 0, 101)
	for i := range 101 { // stomp.MaxTempDestinations + 1
		tooMany = append(tooMany, frame.New(frame.SEND, frame.Destination, fmt.Sprintf("/topic/news.t%d", i),
			"reply-to", fmt.Sprintf("/temp-queue/r%d", i)))
	}
	return []negativeCase{
		{"stomp %c: a client-id bob does not claim", stompSendRefusedVia(stompAs("sensor1"), "a", "bob", bobPass,
			"/topic/devices.sensor1.cmd", "access refused"), "send refused"},
		{"stomp %c: another user's client id", stompSendRefusedVia(stompAs("dev1"), "a", "alice", alicePass,
			"/topic/devices.dev1.cmd", "access refused"), "send refused"},
		{"mqtt %c: subscribe as a client id bob does not claim", mqttSubscribeRefused("bob", bobPass, "sensor1", "devices/sensor1/#"), "subscribe refused"},
		{"mqtt %c: publish as a client id bob does not claim", x.mqttURLPublishRefused(tcpURL, "bob", bobPass, "sensor2", "devices/sensor2/cmd", 1, false), "mqtt send refused"},
		{"mqtt5 connect denied by rule: answered as a wrong password (0x86)", v5ConnectRefused(v5CP("v5carol", "carol", carolPass), packet.ReasonBadUserNameOrPassword), "mqtt login refused"},
		{"stomp temp queue under a guessed session id", func(t *testing.T, sb *secureBroker) error {
			// A well-formed id (the replier's length and alphabet) that no connection has.
			guess := "lyre-" + strings.Repeat("a", len(x.replier)-len("lyre-"))
			return stompSendRefused("a", "bob", bobPass, "/temp-queue/"+guess+".replies", "invalid destination")(t, sb)
		}, "has gone"},
		{"stomp temp queue its connection never named", func(t *testing.T, sb *secureBroker) error {
			return stompSendRefused("a", "bob", bobPass, "/temp-queue/"+x.replier+".never-named", "invalid destination")(t, sb)
		}, "named no such temporary queue"},
		{"stomp temp topic without a temp_topic rule", stompSendRefused("a", "bob", bobPass, "/temp-topic/t", "access refused"), "send refused"},
		{"stomp more temporary destinations than a connection may name", stompRawRefused("bob", bobPass, "too many temporary destinations", tooMany...),
			"too many temporary destinations"},
		{"stomp %2F: a level MQTT would read as two is not delivered to MQTT", x.separatorInSegment, "MQTT cannot"},
		{"mqtt5 shared group member without rights gets nothing", sharedMemberSkipped, ""},
		{"http unknown vhost without monitor on the broker: the 401 of wrong credentials", x.httpRefused("GET", "/api/v1/vhosts/nowhere/connections", "bob", bobPass, http.StatusUnauthorized),
			"management request refused"},
	}
}

// separatorInSegment has bob SEND /topic/news.x%2Fy (the two levels [news, x/y]): the STOMP subscriber
// gets it, the MQTT subscriber of news/x/y (three levels) does not.
func (x *negativeExtra) separatorInSegment(t *testing.T, sb *secureBroker) error {
	m := mqttLogin(t, sb.addr, "sep-sub", "alice", alicePass)
	ch, _ := mqttSubscribeCode(t, m, "news/x/y")
	s := stompLogin(t, sb.addr, "a", "alice", alicePass)
	sub, err := s.Subscribe("/topic/news.*", stomp.AckAuto)
	if err != nil {
		return err
	}
	stompBarrierAs(t, s)
	bob := stompLogin(t, sb.addr, "a", "bob", bobPass)
	if err := bob.Send("/topic/news.x%2Fy", "text/plain", []byte("two levels"), stomp.SendOpt.Receipt); err != nil {
		return err
	}
	if got := readStomp(t, sub); string(got.Body) != "two levels" {
		return fmt.Errorf("STOMP subscriber got %q", got.Body)
	}
	select {
	case msg := <-ch:
		return fmt.Errorf("MQTT subscriber of news/x/y got %q on %s", msg.Payload(), msg.Topic())
	case <-time.After(150 * time.Millisecond):
		return nil
	}
}

// stompBarrierAs is stompBarrier for a user allowed to send to news.** (to a topic news.* does not match).
func stompBarrierAs(t *testing.T, c *stomp.Conn) {
	t.Helper()
	if err := c.Send("/topic/news.sync.barrier", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("stomp barrier: %v", err)
	}
}

// sharedMemberSkipped puts bob (who may read alerts/public only) and alice (an admin) in one shared group
// on alerts/#: every alerts/private message goes to alice, none to bob.
func sharedMemberSkipped(t *testing.T, sb *secureBroker) error {
	bob := v5Login(t, sb.addr, "share-bob", "bob", bobPass)
	bob.sub(0, paho5.SubscribeOptions{Topic: "$share/g/alerts/#", QoS: 1})
	alice := v5Login(t, sb.addr, "share-alice", "alice", alicePass)
	alice.sub(0, paho5.SubscribeOptions{Topic: "$share/g/alerts/#", QoS: 1})
	pub := mqttLogin(t, sb.addr, "share-pub", "alice", alicePass)
	for i := range 6 {
		mqttPublish(t, pub, "alerts/private/s", 1, strconv.Itoa(i))
	}
	for range 6 {
		if m := alice.next(5 * time.Second); m.Topic != "alerts/private/s" {
			return fmt.Errorf("alice got %s", m.Topic)
		}
	}
	select {
	case m := <-bob.msgs:
		return fmt.Errorf("bob, who may not read it, got %q on %s", m.Payload, m.Topic)
	case <-time.After(150 * time.Millisecond):
		return nil
	}
}
