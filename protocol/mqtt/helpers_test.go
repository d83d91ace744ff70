package mqtt

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTime = 5 * time.Second

// broker is a running Lyre MQTT server on loopback.
type broker struct {
	addr  string
	host  *virtualhost.Host
	hosts *virtualhost.Registry
	h     *Handler
	srv   *protocol.Server
}

// startBroker starts a server with one anonymous host "default" and one MQTT connector; mod adjusts the
// connector, extra adds hosts after the default one.
func startBroker(t *testing.T, mod func(*conf.Connector), extra ...*virtualhost.Host) *broker {
	t.Helper()
	return startBrokerLog(t, zaptest.NewLogger(t), mod, extra...)
}

// startBrokerLog is startBroker with the handler logging to log.
func startBrokerLog(t testing.TB, log *zap.Logger, mod func(*conf.Connector), extra ...*virtualhost.Host) *broker {
	t.Helper()
	return startBrokerRouter(t, log, router.Options{}, mod, extra...)
}

// startBrokerRouter is startBrokerLog with the default host's router options ro.
func startBrokerRouter(t testing.TB, log *zap.Logger, ro router.Options, mod func(*conf.Connector), extra ...*virtualhost.Host) *broker {
	t.Helper()
	host := virtualhost.New(conf.VirtualHost{Name: "default", Anonymous: true}, ro)
	hosts := virtualhost.NewRegistry(append([]*virtualhost.Host{host}, extra...)...)
	h := NewHandler(hosts, log)
	c := testConnector(mod)
	srv, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.MQTT: h}, c)
	return &broker{addr: addrs[0], host: host, hosts: hosts, h: h, srv: srv}
}

// testConnector is the MQTT connector the brokers of these tests serve, adjusted by mod if it is not nil.
func testConnector(mod func(*conf.Connector)) conf.Connector {
	c := conf.Connector{Name: "mqtt", Protocol: protocol.MQTT, MQTT: conf.MQTT{Grammar: conf.MQTTGrammarDefaults}}
	if mod != nil {
		mod(&c)
	}
	return c
}

// pahoClient connects a paho client (MQTT 3.1.1, no auto-reconnect) and disconnects it at cleanup.
func pahoClient(t *testing.T, addr, id string, mod func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetKeepAlive(30 * time.Second).
		SetConnectTimeout(waitTime).SetWriteTimeout(waitTime).SetOrderMatters(true)
	if mod != nil {
		mod(o)
	}
	c := paho.NewClient(o)
	waitToken(t, c.Connect())
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func waitToken(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(waitTime) {
		t.Fatalf("paho: token timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("paho: %v", err)
	}
}

// got is one message a paho subscriber received.
type got struct {
	topic    string
	payload  string
	qos      byte
	retained bool
	dup      bool
}

// inbox collects messages for a paho subscription.
type inbox struct {
	mu   sync.Mutex
	msgs []got
}

func (b *inbox) handler(_ paho.Client, m paho.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, got{m.Topic(), string(m.Payload()), m.Qos(), m.Retained(), m.Duplicate()})
}

func (b *inbox) all() []got {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]got(nil), b.msgs...)
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

func (b *inbox) waitN(t *testing.T, n int) []got {
	t.Helper()
	prototest.WaitFor(t, waitTime, func() bool { return b.len() >= n })
	return b.all()
}

func subscribe(t *testing.T, c paho.Client, filter string, qos byte) *inbox {
	t.Helper()
	b := &inbox{}
	waitToken(t, c.Subscribe(filter, qos, b.handler))
	return b
}

// raw is a byte-level MQTT client for cases paho cannot produce.
type raw struct {
	t       *testing.T
	nc      net.Conn
	rd      *packet.Reader
	version byte
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	nc := prototest.Dial(t, addr)
	rd := packet.NewReader(nc, 0)
	rd.SetVersion(packet.Version311)
	return &raw{t: t, nc: nc, rd: rd, version: packet.Version311}
}

func (r *raw) send(p packet.Packet) {
	r.t.Helper()
	r.sendBytes(packet.Append(nil, p, r.version))
}

func (r *raw) sendBytes(b []byte) {
	r.t.Helper()
	_ = r.nc.SetWriteDeadline(time.Now().Add(waitTime))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("raw: write: %v", err)
	}
}

// next reads one packet within waitTime.
func (r *raw) next() packet.Packet {
	r.t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(waitTime))
	p, err := r.rd.ReadPacket()
	if err != nil {
		r.t.Fatalf("raw: read: %v", err)
	}
	return p
}

// nextWithin reads one packet, reporting nil when none arrives within d.
func (r *raw) nextWithin(d time.Duration) packet.Packet {
	r.t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(d))
	p, err := r.rd.ReadPacket()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		r.t.Fatalf("raw: read: %v", err)
	}
	return p
}

// expectClosed reads until the server closes the connection, failing on any packet not in allowed.
func (r *raw) expectClosed(allowed ...packet.Type) {
	r.t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(waitTime))
	for {
		p, err := r.rd.ReadPacket()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("raw: connection still open after %s", waitTime)
			}
			return
		}
		ok := false
		for _, a := range allowed {
			ok = ok || p.Type() == a
		}
		if !ok {
			r.t.Fatalf("raw: got %s, want the connection closed", p.Type())
		}
	}
}

func (r *raw) connectWith(cp *packet.ConnectPacket) *packet.ConnackPacket {
	r.t.Helper()
	if cp.ProtocolName == "" {
		cp.ProtocolName, cp.ProtocolLevel = "MQTT", packet.Version311
	}
	r.send(cp)
	p := r.next()
	ca, ok := p.(*packet.ConnackPacket)
	if !ok {
		r.t.Fatalf("raw: got %s, want CONNACK", p.Type())
	}
	return ca
}

// connect connects with client id and clean session, requiring acceptance.
func (r *raw) connect(id string, clean bool) *packet.ConnackPacket {
	r.t.Helper()
	ca := r.connectWith(&packet.ConnectPacket{ClientID: id, CleanSession: clean, KeepAlive: 60})
	if ca.ReturnCode != 0 {
		r.t.Fatalf("raw: CONNACK code %#x", ca.ReturnCode)
	}
	return ca
}

func (r *raw) subscribe(id uint16, qos byte, filters ...string) []byte {
	r.t.Helper()
	sp := &packet.SubscribePacket{PacketID: id}
	for _, f := range filters {
		sp.Subscriptions = append(sp.Subscriptions, packet.Subscription{Filter: f, QoS: qos})
	}
	r.send(sp)
	p := r.next()
	sa, ok := p.(*packet.SubackPacket)
	if !ok || sa.PacketID != id {
		r.t.Fatalf("raw: got %#v, want SUBACK %d", p, id)
	}
	return sa.ReturnCodes
}

// nextPublish reads the next packet and requires a PUBLISH.
func (r *raw) nextPublish() *packet.PublishPacket {
	r.t.Helper()
	p := r.next()
	pp, ok := p.(*packet.PublishPacket)
	if !ok {
		r.t.Fatalf("raw: got %s, want PUBLISH", p.Type())
	}
	return pp
}

// publish sends a PUBLISH and, for QoS 1, waits for its PUBACK.
func (r *raw) publish(topic, payload string, qos byte, retain bool, id uint16) {
	r.t.Helper()
	r.send(&packet.PublishPacket{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain, PacketID: id})
	if qos == 1 {
		if pa, ok := r.next().(*packet.PubackPacket); !ok || pa.PacketID != id {
			r.t.Fatalf("raw: want PUBACK %d, got %#v", id, pa)
		}
	}
}
