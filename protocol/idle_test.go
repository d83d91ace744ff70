package protocol_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
)

// Idle connections must be cheap (DESIGN.md §1: target ≤ 4 KiB of broker memory each). This measures
// heap and stack growth for idle STOMP connections parked in a read after their CONNECT, client sockets
// included, so it is an upper bound for the server side.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many sockets")
	}
	const n = 1000
	parked := make(chan struct{}, n)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		var hdr [16]byte
		if _, err := io.ReadFull(c.Reader(), hdr[:len("CONNECT\n\n\x00")]); err != nil {
			return
		}
		c.Write([]byte("CONNECTED\nversion:1.2\n\n\x00"))
		parked <- struct{}{}
		_, _ = c.Reader().Read(hdr[:]) // idle until the client goes away
	})
	_, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: h, protocol.MQTT: h},
		conf.Connector{Detect: []string{protocol.MQTT, protocol.STOMP}})

	heapBefore, stackBefore := prototest.MemInUse()
	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, nc := range clients {
			_ = nc.Close()
		}
	}()
	for i := 0; i < n; i++ {
		nc, err := net.Dial("tcp", addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, nc)
		if _, err := nc.Write([]byte("CONNECT\n\n\x00")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case <-parked:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d connections parked", i, n)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the writers of CONNECTED exit
	heapAfter, stackAfter := prototest.MemInUse()
	per := (heapAfter + stackAfter - heapBefore - stackBefore) / n
	t.Logf("%d bytes per idle connection (client side included), %d of them stack", per, (stackAfter-stackBefore)/n)
	// Measured: ~4.5-5.2 KiB, a 2-4 KiB goroutine stack plus ~1.6 KiB of heap (Conn, the reader's struct with
	// its inline buffer, the socket on both sides); the bound leaves a margin for the runtime's choices.
	if !prototest.RaceEnabled && per > 6<<10+512 {
		t.Fatalf("%d bytes per idle connection; want at most 6.5 KiB", per)
	}
}

// TLS adds crypto/tls's per-connection state (the tls.Conn, its record buffers, the handshake's stack
// growth until the garbage collector shrinks it). This measures an idle STOMP connection inside TLS on the
// autodetecting port, client side included.
func TestIdleTLSConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many sockets")
	}
	const n = 200
	p := newPKI(t)
	parked := make(chan struct{}, n)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		var hdr [16]byte
		if _, err := io.ReadFull(c.Reader(), hdr[:len("CONNECT\n\n\x00")]); err != nil {
			return
		}
		c.Write([]byte("CONNECTED\nversion:1.2\n\n\x00"))
		parked <- struct{}{}
		_, _ = c.Reader().Read(hdr[:])
	})
	_, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: h, protocol.MQTT: h},
		detectConnector(p.tlsConf("none")))
	cfg := p.client("localhost")
	// Warm up crypto/tls's lazily built tables so they are not counted per connection.
	warm := tlsDial(t, addrs[0], cfg)
	_, _ = warm.Write([]byte("CONNECT\n\n\x00"))
	<-parked

	heapBefore, stackBefore := prototest.MemInUse()
	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, nc := range clients {
			_ = nc.Close()
		}
	}()
	for i := 0; i < n; i++ {
		nc, err := tls.Dial("tcp", addrs[0], cfg)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, nc)
		if _, err := nc.Write([]byte("CONNECT\n\n\x00")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case <-parked:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d connections parked", i, n)
		}
	}
	time.Sleep(50 * time.Millisecond)
	heapAfter, stackAfter := prototest.MemInUse()
	t.Logf("%d bytes per idle TLS connection (client side included), %d of them stack",
		(heapAfter+stackAfter-heapBefore-stackBefore)/n, (stackAfter-stackBefore)/n)
}

// wsClientFrame is a client's masked WebSocket text frame holding p (len(p) < 126) [RFC 6455 §5.2].
func wsClientFrame(p string) []byte {
	key := [4]byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(p)), key[0], key[1], key[2], key[3]}
	for i := 0; i < len(p); i++ {
		b = append(b, p[i]^key[i%4])
	}
	return b
}

// A WebSocket connection at rest must stay within the TCP budget: this measures idle STOMP connections
// over WebSocket on the autodetecting port, the handshake and frame written by hand so the client side
// costs what a TCP client does.
func TestIdleWebSocketConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many sockets")
	}
	const n = 1000
	parked := make(chan struct{}, n)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		var hdr [16]byte
		if _, err := io.ReadFull(c.Reader(), hdr[:len("CONNECT\n\n\x00")]); err != nil {
			return
		}
		c.Write([]byte("CONNECTED\nversion:1.2\n\n\x00"))
		parked <- struct{}{}
		_, _ = c.Reader().Read(hdr[:])
	})
	_, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: h, protocol.MQTT: h},
		conf.Connector{Detect: []string{protocol.MQTT, protocol.STOMP, protocol.HTTP}})
	hello := []byte("GET /stomp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(hello); err != nil {
			t.Fatal(err)
		}
		// The 101 response first: a client sends no frame before it [RFC 6455 §4.1].
		var resp []byte
		var b [256]byte
		for !bytes.Contains(resp, []byte("\r\n\r\n")) {
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, err := nc.Read(b[:])
			if err != nil {
				t.Fatalf("handshake: %v after %q", err, resp)
			}
			resp = append(resp, b[:k]...)
		}
		if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) {
			t.Fatalf("handshake answered %q", resp)
		}
		if _, err := nc.Write(wsClientFrame("CONNECT\n\n\x00")); err != nil {
			t.Fatal(err)
		}
		return nc
	}
	warm := dial() // gorilla's and net/http's lazily built state is not per connection
	defer warm.Close()
	select {
	case <-parked:
	case <-time.After(10 * time.Second):
		t.Fatal("the first WebSocket connection did not park")
	}

	heapBefore, stackBefore := prototest.MemInUse()
	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, nc := range clients {
			_ = nc.Close()
		}
	}()
	for i := 0; i < n; i++ {
		clients = append(clients, dial())
	}
	for i := 0; i < n; i++ {
		select {
		case <-parked:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d connections parked", i, n)
		}
	}
	time.Sleep(50 * time.Millisecond)
	heapAfter, stackAfter := prototest.MemInUse()
	per := (heapAfter + stackAfter - heapBefore - stackBefore) / n
	t.Logf("%d bytes per idle WebSocket connection (client side included), %d of them stack", per, (stackAfter-stackBefore)/n)
	// Measured: ~4.5-5.0 KiB, TCP's ~4.5-4.7 KiB: a wsConn (header buffer, its connReader) over the
	// same socket. The bound is TCP's.
	if !prototest.RaceEnabled && per > 6<<10+512 {
		t.Fatalf("%d bytes per idle WebSocket connection; want at most 6.5 KiB, as for TCP", per)
	}
}
