package protocol_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
)

// FuzzHTTPUpgrade sends arbitrary bytes to an autodetecting port that serves HTTP: whatever they are
// (a request, a WebSocket upgrade and frames after it, garbage), the broker must not panic, must answer
// or close, and must close the connection once the client has ended its stream.
func FuzzHTTPUpgrade(f *testing.F) {
	const upgrade = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	f.Add([]byte(upgrade + "\r\n"))
	f.Add([]byte(upgrade + "Sec-WebSocket-Protocol: mqtt, v12.stomp\r\n\r\n"))
	f.Add([]byte(upgrade + "Origin: http://evil\r\n\r\n"))
	f.Add([]byte(upgrade + "\r\n\x82\x8f\x01\x02\x03\x04\x11\x0f\x03\x00LSWP\x05\x00\x03:\x01\x03l")) // a frame too soon
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("GET /mqtt HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST /stomp HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("GET /\x00 HTTP/1.1\r\n\r\n"))
	f.Add([]byte("OPTIONS * HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Add([]byte("HEAD / HTTP/9.9\r\n"))

	core, logs := observer.New(zapcore.ErrorLevel) // a recovered panic is logged at error level
	srv := protocol.NewServer(zap.New(core), map[string]protocol.Handler{
		protocol.MQTT:  protocol.HandlerFunc(drain),
		protocol.STOMP: protocol.HandlerFunc(drain),
	})
	c := conf.NewConnector("fuzz", "tcp://127.0.0.1:0")
	c.Detect = []string{protocol.MQTT, protocol.STOMP, protocol.HTTP}
	c.Network, c.Address = "tcp", "127.0.0.1:0"
	c.HTTP = &conf.HTTP{UpgradeTimeout: time.Second, MaxHeaderBytes: 4 << 10}
	if err := srv.Listen(c); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	addr := srv.Addrs()["fuzz"].String()

	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := nc.Write(data); err == nil { // the broker may close before reading it all
				_ = nc.(*net.TCPConn).CloseWrite()
			}
		}()
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, nc)
		<-wrote
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open 10s after the client ended its stream")
		}
		for _, e := range logs.TakeAll() {
			t.Errorf("broker logged %q: %v", e.Message, e.ContextMap())
		}
	})
}

// drain reads a connection until it ends, as a front-end would.
func drain(c *protocol.Conn) { _, _ = io.Copy(io.Discard, c.Reader()) }
