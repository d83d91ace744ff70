package stomp

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
)

// TestIdleSTOMPConnectionMemory is the regression guard of DESIGN.md §1 (≤ 4 KiB of broker memory per idle
// connection) for STOMP: idle sessions with one subscription and heart-beats both ways cost the broker no
// goroutine, and a few KiB of heap (client socket included). It measures memory, not time.
func TestIdleSTOMPConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many sockets")
	}
	// Info level, as in production: debug logging builds each connection's logger.
	b := startBroker(t, func(_ *conf.Connector, h *Handler) { h.log = zap.NewNop() })
	hello := []byte("CONNECT\naccept-version:1.2\nhost:default\nheart-beat:60000,60000\n\n\x00" +
		"SUBSCRIBE\nid:1\ndestination:/topic/idle.*\nreceipt:r\n\n\x00")
	var buf [512]byte
	cost := prototest.MeasureIdle(t, 1000, func() net.Conn {
		// Not prototest.Dial: its per-connection test cleanup would be counted as broker memory.
		nc, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(hello); err != nil {
			t.Fatal(err)
		}
		// CONNECTED and RECEIPT, read without a per-client buffered reader, which would count too.
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		for bytes.Count(got, []byte{0}) < 2 {
			k, err := nc.Read(buf[:])
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			got = append(got, buf[:k]...)
		}
		if !bytes.HasPrefix(got, []byte("CONNECTED")) || !bytes.Contains(got, []byte("RECEIPT")) {
			t.Fatalf("got %q", got)
		}
		return nc
	})
	t.Logf("per idle STOMP connection with one subscription: %d bytes heap (client socket included), %d bytes stack, %.3f goroutines",
		cost.Heap, cost.Stack, cost.Goroutines)
	if cost.Goroutines > 0.01 {
		t.Fatalf("%.3f goroutines per idle connection; want none (parked)", cost.Goroutines)
	}
	// Measured: ~3.3 KiB heap (Conn, session and subscription, the reader's structs, the heart-beat and
	// deadline timers, both sockets), no stack. The bound leaves a margin; a goroutine per connection
	// would add 2 KiB or more.
	if !prototest.RaceEnabled && (cost.Heap+cost.Stack > 4<<10 || cost.Stack > 1<<10) {
		t.Fatalf("%d heap and %d stack bytes per idle connection; want at most 4 KiB together, stack 1 KiB", cost.Heap, cost.Stack)
	}
}

// Heart-beats wake a parked STOMP connection, which consumes them and parks again: a thousand sessions
// beating at once keep no goroutine, and each still answers a frame afterwards.
func TestIdleSTOMPHeartBeatsPark(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many sockets")
	}
	b := startBroker(t, func(_ *conf.Connector, h *Handler) { h.log = zap.NewNop() })
	const n = 1000
	clients := make([]*rawConn, n)
	for i := range clients {
		clients[i] = b.raw(t)
		clients[i].connect("accept-version:1.2", "host:default", "heart-beat:60000,0")
	}
	g0 := runtime.NumGoroutine()
	for range 3 {
		for _, r := range clients {
			r.send("\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Parked again: fewer goroutines than connections (a connection left waiting in a read would keep one).
	prototest.WaitForErr(t, 5*time.Second, func() error {
		if g := runtime.NumGoroutine(); g > g0+n/10 {
			return fmt.Errorf("%d goroutines for %d connections, %d before the heart-beats", g, n, g0)
		}
		return nil
	})
	for i, r := range clients {
		r.send("SEND\ndestination:/topic/beat\nreceipt:r\n\n\x00")
		if f := r.read(); f.Command != frame.RECEIPT {
			t.Fatalf("client %d: got %s after heart-beats", i, f.Command)
		}
	}
}
