package mqtt

// Helpers for the MQTT 5 end-to-end tests: a third-party MQTT 5 client (github.com/eclipse/paho.golang)
// over a real socket, and the byte-level raw client speaking MQTT 5 where paho cannot say or show what a
// test needs (several subscription identifiers in one PUBLISH, holding acknowledgements back).

import (
	"context"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

// v5got is one PUBLISH a paho MQTT 5 client received.
type v5got struct {
	p *paho5.Publish
	// topic is the topic name with a topic alias resolved [MQTT-3.3.2-12]: the packet's own Topic is empty
	// when the server sent the alias alone.
	topic string
}

// v5client is a paho.golang MQTT 5 client connected to a broker of these tests.
type v5client struct {
	t  *testing.T
	c  *paho5.Client
	ca *paho5.Connack

	mu      sync.Mutex
	got     []v5got
	aliases map[uint16]string
	badTA   []uint16 // aliases received alone before the server set them
}

// v5conf adjusts a paho client's configuration before it connects.
type v5conf func(*paho5.ClientConfig)

// dialV5 connects a paho MQTT 5 client with CONNECT cp (protocol name and level are paho's) and
// disconnects it at cleanup. Every PUBLISH it receives is recorded, in order.
func dialV5(t *testing.T, addr string, cp *paho5.Connect, mods ...v5conf) *v5client {
	t.Helper()
	ca, cl, err := tryDialV5(t, addr, cp, mods...)
	if err != nil {
		t.Fatalf("paho5: connect %q: %v (connack %+v)", cp.ClientID, err, ca)
	}
	return cl
}

// tryDialV5 is dialV5 returning a refused connection's CONNACK and error instead of failing.
func tryDialV5(t *testing.T, addr string, cp *paho5.Connect, mods ...v5conf) (*paho5.Connack, *v5client, error) {
	t.Helper()
	cl := &v5client{t: t, aliases: make(map[uint16]string)}
	cfg := paho5.ClientConfig{
		ClientID:          cp.ClientID,
		Conn:              prototest.Dial(t, addr),
		PacketTimeout:     waitTime,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){cl.record},
	}
	for _, m := range mods {
		m(&cfg)
	}
	cl.c = paho5.NewClient(cfg)
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	ca, err := cl.c.Connect(ctx, cp)
	if err != nil {
		return ca, nil, err
	}
	cl.ca = ca
	t.Cleanup(func() { cl.disconnect() })
	return ca, cl, nil
}

// disconnect sends DISCONNECT (normal) and waits for the client's goroutines to end; repeating it is
// harmless.
func (cl *v5client) disconnect() {
	_ = cl.c.Disconnect(&paho5.Disconnect{ReasonCode: 0})
	<-cl.c.Done()
}

// record is the client's OnPublishReceived callback: paho calls it in the order the PUBLISH packets
// arrived, on one goroutine.
func (cl *v5client) record(pr paho5.PublishReceived) (bool, error) {
	p := pr.Packet
	cl.mu.Lock()
	defer cl.mu.Unlock()
	topic := p.Topic
	if a := p.Properties.TopicAlias; a != nil {
		if topic != "" {
			cl.aliases[*a] = topic
		} else if t, ok := cl.aliases[*a]; ok {
			topic = t
		} else {
			cl.badTA = append(cl.badTA, *a)
		}
	}
	cl.got = append(cl.got, v5got{p: p, topic: topic})
	return true, nil
}

func (cl *v5client) all() []v5got {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]v5got(nil), cl.got...)
}

func (cl *v5client) count() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.got)
}

// waitN waits until the client has received at least n messages and returns them all.
func (cl *v5client) waitN(n int) []v5got {
	cl.t.Helper()
	deadline := time.Now().Add(waitTime)
	for cl.count() < n {
		if time.Now().After(deadline) {
			cl.t.Fatalf("%s: %d of %d messages within %s: %q", cl.c.ClientID(), cl.count(), n, waitTime, cl.payloads())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cl.all()
}

// payloads returns the payloads received so far, in order.
func (cl *v5client) payloads() []string {
	var s []string
	for _, g := range cl.all() {
		s = append(s, string(g.p.Payload))
	}
	return s
}

// subscribe sends SUBSCRIBE s and fails unless every filter is granted (reason code below 0x80).
func (cl *v5client) subscribe(s *paho5.Subscribe) *paho5.Suback {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	sa, err := cl.c.Subscribe(ctx, s)
	if err != nil {
		cl.t.Fatalf("paho5: subscribe: %v", err)
	}
	for i, rc := range sa.Reasons {
		if rc >= 0x80 {
			cl.t.Fatalf("paho5: subscribe %q refused: %#x", s.Subscriptions[i].Topic, rc)
		}
	}
	return sa
}

// sub subscribes to one filter at qos with default options.
func (cl *v5client) sub(filter string, qos byte) {
	cl.t.Helper()
	cl.subscribe(&paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: filter, QoS: qos}}})
}

// publish sends p; for QoS 1 and 2 it returns the server's acknowledgement.
func (cl *v5client) publish(p *paho5.Publish) *paho5.PublishResponse {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	r, err := cl.c.Publish(ctx, p)
	if err != nil {
		cl.t.Fatalf("paho5: publish %q: %v", p.Topic, err)
	}
	return r
}

// pub publishes payload on topic at qos with no properties.
func (cl *v5client) pub(topic, payload string, qos byte) {
	cl.t.Helper()
	cl.publish(&paho5.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
}

// connectV5 is a CONNECT with clean start for client id.
func connectV5(id string) *paho5.Connect {
	return &paho5.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
}

// withProps returns cp with its properties set to p.
func withProps(cp *paho5.Connect, p *paho5.ConnectProperties) *paho5.Connect {
	cp.Properties = p
	return cp
}

func ptr[T any](v T) *T { return &v }

// dialRaw5 connects a byte-level client at MQTT 5 with client id and CONNECT properties props, with
// clean start, and requires acceptance.
func dialRaw5(t *testing.T, addr, id string, props *packet.Properties) (*raw, *packet.ConnackPacket) {
	t.Helper()
	r := dialRaw(t, addr)
	r.version = packet.Version5
	r.rd.SetVersion(packet.Version5)
	ca := r.connectWith(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version5,
		ClientID: id, CleanSession: true, KeepAlive: 60, Properties: props})
	if ca.ReturnCode != 0 {
		t.Fatalf("raw5: CONNACK reason %#x", ca.ReturnCode)
	}
	return r, ca
}

// subscribe5 sends one MQTT 5 SUBSCRIBE with subscription identifier subID (0: none) and requires every
// filter granted.
func (r *raw) subscribe5(id uint16, subID uint32, subs ...packet.Subscription) {
	r.t.Helper()
	sp := &packet.SubscribePacket{PacketID: id, Subscriptions: subs}
	if subID != 0 {
		sp.Properties = &packet.Properties{SubscriptionIdentifiers: []uint32{subID}}
	}
	r.send(sp)
	p := r.next()
	sa, ok := p.(*packet.SubackPacket)
	if !ok || sa.PacketID != id {
		r.t.Fatalf("raw5: got %#v, want SUBACK %d", p, id)
	}
	for i, rc := range sa.ReturnCodes {
		if rc >= 0x80 {
			r.t.Fatalf("raw5: subscription %q refused: %#x", subs[i].Filter, rc)
		}
	}
}

// noPacket fails if a packet arrives within d: the check that something is not sent. d is short; a
// packet the broker would send is already on its way by then, since every test first waits for an
// event that follows it in the broker's order.
func (r *raw) noPacket(d time.Duration) {
	r.t.Helper()
	if p := r.nextWithin(d); p != nil {
		r.t.Fatalf("raw: unexpected %s: %+v", p.Type(), p)
	}
}
