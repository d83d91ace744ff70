package main

// Durable subscriptions are owned (issue 9, DESIGN.md §5): one belongs to the principal that created it
// (the user, and for an MQTT session the client id too). Nobody else attaches to it, replaces it or
// destroys it: STOMP answers ERROR, MQTT refuses the CONNECT; what it holds stays for its owner. Creating
// and destroying one are the access-rule actions create and destroy on kind dsub.

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/protocol/prototest"
)

// dsubAllowed lets every authenticated user of host "a" create, consume and destroy durable
// subscriptions, so that ownership alone keeps one user's from another's.
const dsubAllowed = `
  access_rule {
    allow  = ["+"]
    action = ["create", "consume", "destroy"]
    kind   = "dsub"
  }
`

// dsubSecurityConfig is securityConfig with rules put first among host "a"'s (first match wins).
func dsubSecurityConfig(t *testing.T, rules string) string {
	t.Helper()
	const anchor = "  users_file = \"users-a.hcl\"\n"
	if !strings.Contains(securityConfig, anchor) {
		t.Fatal("securityConfig changed: no users_file line for host a")
	}
	return strings.Replace(securityConfig, anchor, anchor+rules, 1)
}

// rawStomp is a STOMP 1.2 client over go-stomp's frame codec, for requests whose outcome a test checks
// exactly: each carries a receipt, answered by RECEIPT (done) or ERROR (refused, and the connection
// closes). go-stomp's Conn reports a refused SUBSCRIBE only through the subscription's channel and waits
// for an UNSUBSCRIBE's receipt without a bound.
type rawStomp struct {
	t    *testing.T
	nc   net.Conn
	w    *frame.Writer
	r    *frame.Reader
	n    int            // receipts requested
	msgs []*frame.Frame // MESSAGE frames received
}

// rawStompLogin connects to host "a" as login.
func rawStompLogin(t *testing.T, addr, login, pass string) *rawStomp {
	t.Helper()
	nc := prototest.Dial(t, addr)
	c := &rawStomp{t: t, nc: nc, w: frame.NewWriter(nc), r: frame.NewReader(nc)}
	if err := c.w.Write(frame.New(frame.CONNECT, frame.AcceptVersion, "1.2", frame.Host, "a",
		frame.Login, login, frame.Passcode, pass)); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := c.r.Read(); err != nil || f == nil || f.Command != frame.CONNECTED {
		t.Fatalf("stomp login %q: %v %v", login, err, f)
	}
	return c
}

// do sends f with a receipt header and returns the broker's answer: the RECEIPT or an ERROR frame.
// MESSAGE frames arriving meanwhile go to c.msgs.
func (c *rawStomp) do(f *frame.Frame) *frame.Frame {
	c.t.Helper()
	c.n++
	id := "r" + strconv.Itoa(c.n)
	f.Header.Set(frame.Receipt, id)
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.w.Write(f); err != nil {
		c.t.Fatalf("%s: %v", f.Command, err)
	}
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		a, err := c.r.Read()
		if err != nil {
			c.t.Fatalf("%s %s: no RECEIPT or ERROR: %v", f.Command, f.Header.Get(frame.Destination), err)
		}
		switch {
		case a == nil: // heart-beat
		case a.Command == frame.MESSAGE:
			c.msgs = append(c.msgs, a)
		case a.Command == frame.ERROR, a.Command == frame.RECEIPT && a.Header.Get(frame.ReceiptId) == id:
			return a
		}
	}
}

// settle keeps reading for a short while (as expectNone waits) to collect MESSAGE frames that follow an
// answer, such as a durable subscription's backlog after the RECEIPT of its SUBSCRIBE.
func (c *rawStomp) settle() {
	_ = c.nc.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	for {
		f, err := c.r.Read()
		if err != nil {
			return // timed out, or the connection is closed
		}
		if f != nil && f.Command == frame.MESSAGE {
			c.msgs = append(c.msgs, f)
		}
	}
}

// bye disconnects (DISCONNECT with a receipt, when the connection is still open) and closes.
func (c *rawStomp) bye() {
	_ = c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if c.w.Write(frame.New(frame.DISCONNECT, frame.Receipt, "bye")) == nil {
		for {
			f, err := c.r.Read()
			if err != nil || f != nil && (f.Command == frame.RECEIPT || f.Command == frame.ERROR) {
				break
			}
		}
	}
	_ = c.nc.Close()
}

// bodies lists the bodies of the MESSAGE frames received.
func (c *rawStomp) bodies() []string {
	var out []string
	for _, m := range c.msgs {
		out = append(out, string(m.Body))
	}
	return out
}

// describe renders an answer for a failure message.
func describe(f *frame.Frame) string {
	if f.Command == frame.ERROR {
		return "ERROR " + f.Header.Get(frame.Message)
	}
	return f.Command
}

func subscribeFrame(dest, id string, hdrs ...string) *frame.Frame {
	return frame.New(frame.SUBSCRIBE, append([]string{frame.Destination, dest, frame.Id, id}, hdrs...)...)
}

// stompPersistentSend sends each body to dest as a persistent message with a receipt.
func stompPersistentSend(t *testing.T, c *stomp.Conn, dest string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if err := c.Send(dest, "text/plain", []byte(b), stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
			t.Fatalf("SEND %s: %v", dest, err)
		}
	}
}

// stompDurableCatchUp attaches login to the durable subscription id on dest (SUBSCRIBE with
// persistent:true, ack client-individual; the first one creates it), checks that exactly want arrives,
// in order, acknowledges each, and disconnects. It returns once the broker has let the connection go, so
// that what is published next waits in the subscription rather than chase a closing connection.
func stompDurableCatchUp(t *testing.T, sb *secureBroker, login, pass, dest, id string, want ...string) {
	t.Helper()
	others := sb.hostA.Connections()
	c, err := stomp.Dial("tcp", sb.addr, stomp.ConnOpt.Host("a"), stomp.ConnOpt.Login(login, pass),
		stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
	if err != nil {
		t.Fatalf("stomp login %q: %v", login, err)
	}
	defer func() {
		_ = c.Disconnect() // the subscription stays: no UNSUBSCRIBE
		prototest.WaitFor(t, 5*time.Second, func() bool { return sb.hostA.Connections() <= others })
	}()
	sub, err := c.Subscribe(dest, stomp.AckClientIndividual, stomp.SubscribeOpt.Id(id), stomp.SubscribeOpt.Header("persistent", "true"))
	if err != nil {
		t.Fatalf("%s SUBSCRIBE %s id %s persistent: %v", login, dest, id, err)
	}
	// The receipt of a later frame on the same connection proves the SUBSCRIBE was processed.
	if err := c.Send("/topic/news.sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("%s after SUBSCRIBE %s id %s persistent: %v", login, dest, id, err)
	}
	for i, w := range want {
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatalf("%s's durable subscription %s: message %d of %d: %v", login, id, i+1, len(want), m.Err)
			}
			if string(m.Body) != w {
				t.Errorf("%s's durable subscription %s: message %d is %q, want %q (want %q in order)", login, id, i+1, m.Body, w, want)
			}
			if err := c.Ack(m); err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s's durable subscription %s: got %d of %q; the rest never came", login, id, i, want)
		}
	}
	expectNone(t, sub.C, login+"'s durable subscription "+id+" after what was published while away")
}

// Another user can neither consume from, replace nor destroy alice's STOMP durable subscription: each
// attempt is an ERROR, and every message published while she is away waits for her.
func TestDurableSubscriptionOwnedSTOMP(t *testing.T) {
	sb := startSecureBrokerWith(t, dsubSecurityConfig(t, dsubAllowed))
	const dest, id = "/topic/news.x", "shared-name"
	pub := stompLogin(t, sb.addr, "a", "dave", davePass)
	// alice creates it, then goes away until each step's end.
	stompDurableCatchUp(t, sb, "alice", alicePass, dest, id)

	t.Run("same id and destination: ERROR, not a competing consumer", func(t *testing.T) {
		stompPersistentSend(t, pub, dest, "m1", "m2")
		bob := rawStompLogin(t, sb.addr, "bob", bobPass)
		a := bob.do(subscribeFrame(dest, id, "persistent", "true"))
		bob.settle()
		if len(bob.msgs) > 0 {
			t.Errorf("bob received %q from alice's durable subscription: he joined it as a competing consumer", bob.bodies())
		}
		if a.Command != frame.ERROR {
			t.Errorf("bob SUBSCRIBE %s id %s persistent:true: %s, want ERROR", dest, id, describe(a))
		}
		stompDurableCatchUp(t, sb, "alice", alicePass, dest, id, "m1", "m2")
	})
	t.Run("same id, another destination: ERROR, and hers is intact", func(t *testing.T) {
		stompPersistentSend(t, pub, dest, "m3")
		bob := rawStompLogin(t, sb.addr, "bob", bobPass)
		a := bob.do(subscribeFrame("/topic/news.y", id, "persistent", "true"))
		bob.settle()
		if a.Command != frame.ERROR {
			t.Errorf("bob SUBSCRIBE /topic/news.y id %s persistent:true: %s, want ERROR", id, describe(a))
		}
		// Still subscribed to news.x, not news.y.
		stompPersistentSend(t, pub, "/topic/news.y", "y1")
		stompPersistentSend(t, pub, dest, "m4")
		if len(bob.msgs) > 0 {
			t.Errorf("bob received %q", bob.bodies())
		}
		stompDurableCatchUp(t, sb, "alice", alicePass, dest, id, "m3", "m4")
	})
	t.Run("SUBSCRIBE /dsub/ by its id: ERROR", func(t *testing.T) {
		stompPersistentSend(t, pub, dest, "m5")
		bob := rawStompLogin(t, sb.addr, "bob", bobPass)
		a := bob.do(subscribeFrame("/dsub/"+id, "mine"))
		bob.settle()
		if len(bob.msgs) > 0 {
			t.Errorf("bob consumed %q from alice's durable subscription through /dsub/%s", bob.bodies(), id)
		}
		if a.Command != frame.ERROR {
			t.Errorf("bob SUBSCRIBE /dsub/%s: %s, want ERROR", id, describe(a))
		}
		stompDurableCatchUp(t, sb, "alice", alicePass, dest, id, "m5")
	})
	t.Run("UNSUBSCRIBE persistent:true does not destroy it", func(t *testing.T) {
		stompPersistentSend(t, pub, dest, "m6")
		// By its id alone, with no subscription of that id on bob's connection: Apollo treats this as
		// destroying the durable subscription id; here it is someone else's, so ERROR.
		bob := rawStompLogin(t, sb.addr, "bob", bobPass)
		a := bob.do(frame.New(frame.UNSUBSCRIBE, frame.Id, id, "persistent", "true"))
		if a.Command != frame.ERROR {
			t.Errorf("bob UNSUBSCRIBE id %s persistent:true (not subscribed): %s, want ERROR", id, describe(a))
		}
		// After a plain subscription of his own with that id: the UNSUBSCRIBE may end his own
		// subscription (RECEIPT) or be refused (ERROR), but it must not destroy alice's.
		bob = rawStompLogin(t, sb.addr, "bob", bobPass)
		if a := bob.do(subscribeFrame("/topic/news.z", id)); a.Command != frame.RECEIPT {
			t.Fatalf("bob's own plain SUBSCRIBE /topic/news.z id %s: %s, want RECEIPT (ids are per connection)", id, describe(a))
		}
		a = bob.do(frame.New(frame.UNSUBSCRIBE, frame.Id, id, "persistent", "true"))
		t.Logf("bob UNSUBSCRIBE id %s persistent:true of his plain subscription: %s", id, describe(a))
		stompPersistentSend(t, pub, dest, "m7")
		bob.settle()
		if len(bob.msgs) > 0 {
			t.Errorf("bob received %q", bob.bodies())
		}
		stompDurableCatchUp(t, sb, "alice", alicePass, dest, id, "m6", "m7")
	})
	// After all of it alice's subscription still collects what is published while she is away.
	stompPersistentSend(t, pub, dest, "m8", "m9")
	stompDurableCatchUp(t, sb, "alice", alicePass, dest, id, "m8", "m9")
}

// mqttResume connects user with clean session off as client id and returns the CONNACK return code, the
// session present flag and every message delivered to it.
func mqttResume(t *testing.T, addr, id, user, pass string) (code byte, present bool, ch <-chan paho.Message) {
	t.Helper()
	msgs := make(chan paho.Message, 100)
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetUsername(user).SetPassword(pass).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m })
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("mqtt connect %s: no CONNACK", id)
	}
	ct := tok.(*paho.ConnectToken)
	if ct.ReturnCode() == connackAccepted {
		t.Cleanup(func() { c.Disconnect(100) })
	}
	return ct.ReturnCode(), ct.SessionPresent(), msgs
}

// An MQTT persistent session belongs to the user who opened it under its client id: while it is offline
// another user reusing the client id is refused (0x05), with clean session off (which would take it
// over) or on (which would discard it [MQTT-3.1.2-6]), and cannot reach its durable subscription from
// STOMP; its owner resumes it with every message queued meanwhile [MQTT-3.1.2-5], in order.
func TestDurableSessionOwnedMQTT(t *testing.T) {
	sb := startSecureBrokerWith(t, dsubSecurityConfig(t, dsubAllowed))
	const clientID = "dev-1"
	alice, code, _ := mqttPersistent(t, sb.addr, clientID, "alice", alicePass)
	if code != connackAccepted {
		t.Fatalf("alice CONNACK %#x", code)
	}
	if _, rc := mqttSubscribeCode(t, alice, "news/dev/#"); rc != 1 {
		t.Fatalf("alice SUBACK %#x, want granted QoS 1", rc)
	}
	alice.Disconnect(100)
	// Offline for certain before anything is published: her connection is gone.
	prototest.WaitFor(t, 5*time.Second, func() bool { return sb.hostA.Connections() == 0 })

	pub := mqttLogin(t, sb.addr, "dave-pub", "dave", davePass)
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("queued-%d", i))
		mqttPublish(t, pub, "news/dev/x", 1, want[i]) // one topic: delivered in order [MQTT-4.6.0-6]
	}

	before := sb.logged("client id in use by another user's session")
	if code, _, _ := mqttResume(t, sb.addr, clientID, "bob", bobPass); code != connackNotAuthorized {
		t.Errorf("bob resuming alice's offline session %s: CONNACK %#x, want 0x05", clientID, code)
	}
	if _, code := mqttDial(t, sb.addr, clientID, "bob", bobPass); code != connackNotAuthorized {
		t.Errorf("bob with clean session on alice's client id %s: CONNACK %#x, want 0x05 (not a discarded session)", clientID, code)
	}
	t.Logf("refusals logged: %d", sb.logged("client id in use by another user's session")-before)
	// From STOMP, by the name of the session's durable subscription ("$mqtt.<client id>.<filter>").
	bob := rawStompLogin(t, sb.addr, "bob", bobPass)
	a := bob.do(subscribeFrame("/dsub/$mqtt."+clientID+".news.dev.**", "steal"))
	bob.settle()
	t.Logf("bob SUBSCRIBE /dsub/$mqtt.%s.news.dev.**: %s", clientID, describe(a))
	if len(bob.msgs) > 0 {
		t.Errorf("bob received %q from alice's session over STOMP", bob.bodies())
	}

	code, present, ch := mqttResume(t, sb.addr, clientID, "alice", alicePass)
	if code != connackAccepted {
		t.Fatalf("alice back: CONNACK %#x", code)
	}
	if !present {
		t.Error("alice back: session present 0, want 1 [MQTT-3.2.2-2]")
	}
	for i, w := range want {
		select {
		case m := <-ch:
			if string(m.Payload()) != w {
				t.Fatalf("alice's message %d is %s %q, want %q (all of %d queued, in order [MQTT-4.6.0-6])", i, m.Topic(), m.Payload(), w, len(want))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("alice got %d of the %d messages queued for her session", i, len(want))
		}
	}
	expectNone(t, ch, "alice's session after the queued messages")
}

// The access-rule actions create and destroy on kind dsub: dave may receive news.** but not create a
// durable subscription; bob may create one but not destroy it.
const dsubRules = `
  access_rule {
    deny   = ["dave"]
    action = ["create"]
    kind   = "dsub"
  }
  access_rule {
    deny   = ["bob"]
    action = ["destroy"]
    kind   = "dsub"
  }
` + dsubAllowed

func TestDurableSubscriptionCreateDestroyRules(t *testing.T) {
	sb := startSecureBrokerWith(t, dsubSecurityConfig(t, dsubRules))
	pub := stompLogin(t, sb.addr, "a", "dave", davePass)

	t.Run("create denied: ERROR, though the topic may be received", func(t *testing.T) {
		dave := rawStompLogin(t, sb.addr, "dave", davePass)
		if a := dave.do(subscribeFrame("/topic/news.d", "plain")); a.Command != frame.RECEIPT {
			t.Fatalf("dave plain SUBSCRIBE /topic/news.d: %s, want RECEIPT", describe(a))
		}
		dave = rawStompLogin(t, sb.addr, "dave", davePass)
		// Ack client-individual: were it created, what it delivered here would go back to it.
		if a := dave.do(subscribeFrame("/topic/news.d", "d1", "persistent", "true", frame.Ack, frame.AckClientIndividual)); a.Command != frame.ERROR {
			t.Errorf("dave SUBSCRIBE /topic/news.d id d1 persistent:true: %s, want ERROR (create denied on kind dsub)", describe(a))
		}
		dave.bye()
		// Nothing was created that keeps messages for him.
		stompPersistentSend(t, pub, "/topic/news.d", "not kept")
		dave = rawStompLogin(t, sb.addr, "dave", davePass)
		a := dave.do(subscribeFrame("/dsub/d1", "d1"))
		dave.settle()
		if len(dave.msgs) > 0 {
			t.Errorf("dave received %q from /dsub/d1 (%s): the refused SUBSCRIBE created a durable subscription", dave.bodies(), describe(a))
		}
	})
	t.Run("destroy denied: UNSUBSCRIBE persistent:true is an ERROR and the subscription stays", func(t *testing.T) {
		stompDurableCatchUp(t, sb, "bob", bobPass, "/topic/news.b", "b1") // creates it
		bob := rawStompLogin(t, sb.addr, "bob", bobPass)
		if a := bob.do(subscribeFrame("/topic/news.b", "b1", "persistent", "true")); a.Command != frame.RECEIPT {
			t.Fatalf("bob SUBSCRIBE /topic/news.b id b1 persistent:true (his own): %s, want RECEIPT", describe(a))
		}
		if a := bob.do(frame.New(frame.UNSUBSCRIBE, frame.Id, "b1", "persistent", "true")); a.Command != frame.ERROR {
			t.Errorf("bob UNSUBSCRIBE id b1 persistent:true: %s, want ERROR (destroy denied on kind dsub)", describe(a))
		}
		stompPersistentSend(t, pub, "/topic/news.b", "kept")
		stompDurableCatchUp(t, sb, "bob", bobPass, "/topic/news.b", "b1", "kept")
	})
	t.Run("destroy allowed: UNSUBSCRIBE persistent:true ends it", func(t *testing.T) {
		stompDurableCatchUp(t, sb, "alice", alicePass, "/topic/news.a", "a1") // creates it
		alice := rawStompLogin(t, sb.addr, "alice", alicePass)
		if a := alice.do(subscribeFrame("/topic/news.a", "a1", "persistent", "true")); a.Command != frame.RECEIPT {
			t.Fatalf("alice SUBSCRIBE /topic/news.a id a1 persistent:true: %s, want RECEIPT", describe(a))
		}
		if a := alice.do(frame.New(frame.UNSUBSCRIBE, frame.Id, "a1", "persistent", "true")); a.Command != frame.RECEIPT {
			t.Fatalf("alice UNSUBSCRIBE id a1 persistent:true: %s, want RECEIPT", describe(a))
		}
		// Published while none exists: a new one, created next, does not hold it.
		stompPersistentSend(t, pub, "/topic/news.a", "gone")
		stompDurableCatchUp(t, sb, "alice", alicePass, "/topic/news.a", "a1")
	})
}
