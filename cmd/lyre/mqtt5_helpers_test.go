package main

// An MQTT 5 client for the whole-broker tests: github.com/eclipse/paho.golang, with what it receives
// collected on a channel.

import (
	"context"
	"net"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
)

// v5Client is one MQTT 5 connection.
type v5Client struct {
	t    *testing.T
	c    *paho5.Client
	ack  *paho5.Connack
	msgs chan *paho5.Publish
	// gone receives the server's DISCONNECT, if it sends one.
	gone chan *paho5.Disconnect
}

// u32 returns a pointer to v, for optional properties.
func u32(v uint32) *uint32 { return &v }

// dialV5 connects an MQTT 5 client with CONNECT cp (keep-alive 30 s unless set) and fails the test
// unless the broker accepts it. The test's end closes the connection.
func dialV5(t *testing.T, addr string, cp *paho5.Connect) *v5Client {
	t.Helper()
	v, err := tryV5(t, addr, cp)
	if err != nil {
		t.Fatalf("mqtt 5 connect %s: %v", cp.ClientID, err)
	}
	return v
}

func tryV5(t *testing.T, addr string, cp *paho5.Connect) (*v5Client, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	v := &v5Client{t: t, msgs: make(chan *paho5.Publish, 4096), gone: make(chan *paho5.Disconnect, 1)}
	v.c = paho5.NewClient(paho5.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){func(pr paho5.PublishReceived) (bool, error) {
			v.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho5.Disconnect) {
			select {
			case v.gone <- d:
			default:
			}
		},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := v.c.Connect(ctx, cp)
	if err != nil {
		return nil, err
	}
	v.ack = ack
	t.Cleanup(v.drop)
	return v, nil
}

// drop closes the network connection without DISCONNECT, as a client that dies does, and waits for the
// client's goroutines.
func (v *v5Client) drop() {
	v.c.TerminateConnectionForTest()
	<-v.c.Done()
}

// bye sends DISCONNECT d and closes the connection.
func (v *v5Client) bye(d *paho5.Disconnect) {
	v.t.Helper()
	if err := v.c.Disconnect(d); err != nil {
		v.t.Fatalf("disconnect: %v", err)
	}
}

// sub subscribes with the given options and, when id is not 0, subscription identifier id; every filter
// must be granted.
func (v *v5Client) sub(id int, opts ...paho5.SubscribeOptions) {
	v.t.Helper()
	s := &paho5.Subscribe{Subscriptions: opts}
	if id != 0 {
		s.Properties = &paho5.SubscribeProperties{SubscriptionIdentifier: &id}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := v.c.Subscribe(ctx, s)
	if err != nil {
		v.t.Fatalf("subscribe: %v", err)
	}
	for i, rc := range sa.Reasons {
		if rc >= 0x80 {
			v.t.Fatalf("subscribe %s refused: 0x%02x", opts[i].Topic, rc)
		}
	}
}

// pub publishes p and, at QoS 1 or 2, waits for its acknowledgement.
func (v *v5Client) pub(p *paho5.Publish) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := v.c.Publish(ctx, p)
	if err != nil {
		v.t.Fatalf("publish %s: %v", p.Topic, err)
	}
	if r != nil && r.ReasonCode >= 0x80 {
		v.t.Fatalf("publish %s refused: 0x%02x", p.Topic, r.ReasonCode)
	}
}

// next returns the next message received, failing the test after d.
func (v *v5Client) next(d time.Duration) *paho5.Publish {
	v.t.Helper()
	select {
	case m := <-v.msgs:
		return m
	case <-time.After(d):
		v.t.Fatalf("no message within %v", d)
		return nil
	}
}

// none fails the test if a message arrives within d.
func (v *v5Client) none(d time.Duration, why string) {
	v.t.Helper()
	select {
	case m := <-v.msgs:
		v.t.Fatalf("%s: got %q on %s", why, m.Payload, m.Topic)
	case <-time.After(d):
	}
}

// sessionDurables returns the durable subscriptions of client id's MQTT session in the default host.
func sessionDurables(b *Broker, id string) []router.DurableInfo {
	return b.Hosts().Default().Router.Durables([]string{"$mqtt", id})
}

// userProp returns the value of the first user property named key, and whether there is one.
func userProp(ps paho5.UserProperties, key string) (string, bool) {
	for _, p := range ps {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// raw5 is an MQTT 5 connection over the packet codec, for what a real client does not send or does not
// show (a DISCONNECT the server answers with its own).
type raw5 struct {
	t  *testing.T
	nc net.Conn
	rd *packet.Reader
}

// dialRaw5 sends CONNECT cp (MQTT 5) and fails the test unless CONNACK accepts it.
func dialRaw5(t *testing.T, addr string, cp *packet.ConnectPacket) (*raw5, *packet.ConnackPacket) {
	t.Helper()
	r, ca := connectRaw5(t, addr, cp)
	if ca.ReturnCode != 0 {
		t.Fatalf("connack: %#v", ca)
	}
	return r, ca
}

// connectRaw5 sends CONNECT cp (MQTT 5) and returns the CONNACK, whatever its reason code; it fails the
// test if none comes.
func connectRaw5(t *testing.T, addr string, cp *packet.ConnectPacket) (*raw5, *packet.ConnackPacket) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r := &raw5{t: t, nc: nc, rd: packet.NewReader(nc, 0)}
	r.rd.SetVersion(packet.Version5)
	cp.ProtocolName, cp.ProtocolLevel = "MQTT", packet.Version5
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	r.send(cp)
	p, err := r.next(5 * time.Second)
	ca, ok := p.(*packet.ConnackPacket)
	if err != nil || !ok {
		t.Fatalf("connack: %v %#v", err, p)
	}
	return r, ca
}

func (r *raw5) send(p packet.Packet) {
	r.t.Helper()
	_ = r.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.nc.Write(packet.Append(nil, p, packet.Version5)); err != nil {
		r.t.Fatalf("send %s: %v", p.Type(), err)
	}
}

func (r *raw5) next(d time.Duration) (packet.Packet, error) {
	_ = r.nc.SetReadDeadline(time.Now().Add(d))
	return r.rd.ReadPacket()
}
