package mqtt

import (
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
)

// BenchmarkDurablePublishQoS1 measures QoS 1 publishes acknowledged only once durable: each message is
// kept for an offline persistent session, so each PUBACK waits for its store commit. Several publishers
// pipeline a window each, so concurrent commits share one transaction and one sync (group commit).
// "sync" syncs every batch (the default); "nosync" is `sync = false`.
func BenchmarkDurablePublishQoS1(b *testing.B) {
	for _, mode := range []struct {
		name string
		sync bool
	}{{"sync", true}, {"nosync", false}} {
		b.Run(mode.name, func(b *testing.B) {
			br := startDurableWith(b, zap.NewNop(), conf.Store{Directory: b.TempDir(), Sync: mode.sync},
				func(c *conf.Connector) { c.MQTT.MaxQueuedMessages = 1 << 30 })
			sub := benchDial(b, br.addr, "offline", false)
			sub.do(b, &packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "bench", QoS: 1}}}, packet.Suback)
			_ = sub.nc.Close()

			const publishers, window = 8, 64
			payload := make([]byte, 256)
			var conns []*benchClient
			for i := range publishers {
				conns = append(conns, benchDial(b, br.addr, "pub"+string(rune('a'+i)), true))
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i, p := range conns {
				n := b.N / publishers
				if i < b.N%publishers {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					publishWindowed(b, p, payload, n, window)
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// benchClient is a bare MQTT 3.1.1 connection for benchmarks.
type benchClient struct {
	nc net.Conn
	rd *packet.Reader
}

func benchDial(b *testing.B, addr, id string, clean bool) *benchClient {
	b.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	c := &benchClient{nc: nc, rd: packet.NewReader(nc, 0)}
	c.rd.SetVersion(packet.Version311)
	c.do(b, &packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311, ClientID: id,
		CleanSession: clean, KeepAlive: 60}, packet.Connack)
	return c
}

// do sends p and reads one packet of type want.
func (c *benchClient) do(b *testing.B, p packet.Packet, want packet.Type) {
	b.Helper()
	if _, err := c.nc.Write(packet.Append(nil, p, packet.Version311)); err != nil {
		b.Fatal(err)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(waitTime))
	got, err := c.rd.ReadPacket()
	if err != nil || got.Type() != want {
		b.Fatalf("got %v %v, want %s", got, err, want)
	}
}

// publishWindowed publishes n QoS 1 messages keeping up to window unacknowledged.
func publishWindowed(b *testing.B, p *benchClient, payload []byte, n, window int) {
	var buf []byte
	sent, acked := 0, 0
	for acked < n {
		buf = buf[:0]
		for sent < n && sent-acked < window {
			sent++
			buf = packet.Append(buf, &packet.PublishPacket{Topic: "bench", QoS: 1, PacketID: uint16(sent%60000 + 1), Payload: payload}, packet.Version311)
		}
		if len(buf) > 0 {
			_ = p.nc.SetWriteDeadline(time.Now().Add(waitTime))
			if _, err := p.nc.Write(buf); err != nil {
				b.Error(err)
				return
			}
		}
		_ = p.nc.SetReadDeadline(time.Now().Add(waitTime))
		pk, err := p.rd.ReadPacket()
		if err != nil {
			b.Error(err)
			return
		}
		if _, ok := pk.(*packet.PubackPacket); ok {
			acked++
		}
	}
}
