package mqtt

import (
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// BenchmarkConnect measures a new client's whole visit over loopback: dial, CONNECT (MQTT 3.1.1, clean
// session), CONNACK, DISCONNECT, close; the client's side is counted too, as it is in connects/s.
// anonymous is the plain path; password a user of a users file at bcrypt cost 4 whose credentials the
// host's cache holds after the first connect.
func BenchmarkConnect(b *testing.B) {
	b.Run("anonymous", func(b *testing.B) {
		benchConnect(b, quietBroker(b, "default"), &packet.ConnectPacket{CleanSession: true, KeepAlive: 60})
	})
	b.Run("password/cached", func(b *testing.B) {
		benchConnect(b, quietBroker(b, "secure"), &packet.ConnectPacket{CleanSession: true, KeepAlive: 60,
			UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("wonderland")})
	})
}

// quietBroker starts an MQTT server logging nothing, with an anonymous host "default" and cachedHost
// "secure", whose connector serves host.
func quietBroker(b *testing.B, host string) string {
	secure := cachedHost(b)
	secure.Throttle = nil // one address, many clients at once: the per-address bound is not what is measured
	def := virtualhost.New(conf.VirtualHost{Name: "default", Anonymous: true}, router.Options{})
	b.Cleanup(def.Close)
	h := NewHandler(virtualhost.NewRegistry(def, secure), zap.NewNop())
	c := testConnector(func(c *conf.Connector) { c.VirtualHost = host })
	_, addrs := prototest.StartServerLog(b, zap.NewNop(), map[string]protocol.Handler{protocol.MQTT: h}, nil, c)
	return addrs[0]
}

// benchConnect connects b.N clients to addr with CONNECT cp, each with a client id of its own.
func benchConnect(b *testing.B, addr string, cp *packet.ConnectPacket) {
	cp.ProtocolName, cp.ProtocolLevel = "MQTT", packet.Version311
	disconnect := packet.Append(nil, &packet.DisconnectPacket{}, packet.Version311)
	var ids atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ack [4]byte
		cp := *cp
		var connect []byte
		for pb.Next() {
			cp.ClientID = "bench-" + strconv.FormatInt(ids.Add(1), 10)
			connect = packet.Append(connect[:0], &cp, packet.Version311)
			nc, err := net.DialTimeout("tcp", addr, waitTime)
			if err != nil {
				b.Error(err)
				return
			}
			_ = nc.SetDeadline(time.Now().Add(waitTime))
			_, err = nc.Write(connect)
			if err == nil {
				_, err = io.ReadFull(nc, ack[:])
			}
			if err == nil && (ack[0] != 0x20 || ack[3] != 0) {
				b.Errorf("CONNACK % x", ack)
			}
			if err == nil {
				_, err = nc.Write(disconnect)
			}
			_ = nc.Close()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
}
