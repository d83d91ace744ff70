package mqtt

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

// TestIdleMQTTConnectionMemory is the regression guard of DESIGN.md §1 (≤ 4 KiB of broker memory per idle
// connection) for MQTT: idle clients with a keep-alive cost the broker no goroutine, and a few KiB of heap
// (client side included). It measures memory, not time.
func TestIdleMQTTConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many sockets")
	}
	// Info level, as in production: debug logging builds each connection's logger.
	b := startBrokerLog(t, zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)), nil)
	connect := packet.Append(nil, &packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311,
		CleanSession: true, KeepAlive: 60}, packet.Version311)
	cost := prototest.MeasureIdle(t, 1000, func() net.Conn {
		// Not prototest.Dial: its per-connection test cleanup would be counted as broker memory.
		nc, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(connect); err != nil {
			t.Fatal(err)
		}
		var ack [4]byte
		_ = nc.SetReadDeadline(time.Now().Add(waitTime))
		if _, err := io.ReadFull(nc, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK % x, %v", ack, err)
		}
		return nc
	})
	t.Logf("per idle MQTT connection: %d bytes heap (client side included), %d bytes stack, %.3f goroutines",
		cost.Heap, cost.Stack, cost.Goroutines)
	if cost.Goroutines > 0.01 {
		t.Fatalf("%.3f goroutines per idle connection; want none (parked)", cost.Goroutines)
	}
	// Measured: ~2.5 KiB heap (Conn, client, session, the reader's structs, the keep-alive timer, both
	// sockets), no stack. The bound leaves a margin; a goroutine per connection would add 2 KiB or more.
	if !prototest.RaceEnabled && (cost.Heap+cost.Stack > 4<<10 || cost.Stack > 1<<10) {
		t.Fatalf("%d heap and %d stack bytes per idle connection; want at most 4 KiB together, stack 1 KiB", cost.Heap, cost.Stack)
	}
}

// Parked connections all wake for their input, also when it comes to all of them at once (a sweep of
// keep-alive pings): every PINGREQ of every round is answered, and the connections park again.
func TestIdleConnectionsAllWake(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many sockets")
	}
	b := startBrokerLog(t, zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)), nil)
	const n, rounds = 2000, 3
	connect := packet.Append(nil, &packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311,
		CleanSession: true, KeepAlive: 30}, packet.Version311)
	clients := make([]net.Conn, n)
	for i := range clients {
		clients[i] = prototest.Dial(t, b.addr)
		if _, err := clients[i].Write(connect); err != nil {
			t.Fatal(err)
		}
	}
	var buf [4]byte
	for _, nc := range clients {
		_ = nc.SetReadDeadline(time.Now().Add(waitTime))
		if _, err := io.ReadFull(nc, buf[:4]); err != nil || buf[0] != 0x20 {
			t.Fatalf("CONNACK % x, %v", buf, err)
		}
	}
	ping := packet.Append(nil, &packet.PingreqPacket{}, packet.Version311)
	for r := range rounds {
		for _, nc := range clients {
			if _, err := nc.Write(ping); err != nil {
				t.Fatal(err)
			}
		}
		for i, nc := range clients {
			_ = nc.SetReadDeadline(time.Now().Add(waitTime))
			if _, err := io.ReadFull(nc, buf[:2]); err != nil || buf[0] != 0xd0 {
				t.Fatalf("round %d, client %d: PINGRESP % x, %v", r, i, buf[:2], err)
			}
		}
	}
	g := runtime.NumGoroutine()
	prototest.WaitFor(t, 5*time.Second, func() bool { g = runtime.NumGoroutine(); return g < n/10 })
}
