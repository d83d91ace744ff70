package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
)

// wsBroker starts a broker whose one connector detects TLS, MQTT, STOMP and HTTP on one port, with
// extra lines in its connector block; it returns the address and the broker's log.
func wsBroker(t *testing.T, extra string) (string, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 1)
	cfg, err := conf.Parse([]byte(fmt.Sprintf(`
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["tls", "mqtt", "stomp", "http"]
  tls {
    cert_file = %q
    key_file  = %q
  }
  %s
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
}
`, certFile, keyFile, extra)), "ws.hcl")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(logs), zap.InfoLevel))
	b, err := Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, b) })
	return b.Addrs()["auto"].String(), logs
}

// wsMQTT connects paho.mqtt.golang (3.1.1) to url: tcp://, ssl://, ws:// or wss://.
func wsMQTT(t *testing.T, url, id string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectRetry(false).SetTLSConfig(&tls.Config{InsecureSkipVerify: true}). // the test's self-signed certificate
		SetOrderMatters(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// wsStreamConn is a client-side WebSocket as a net.Conn, for go-stomp: reads run across messages,
// each write is one text message.
type wsStreamConn struct {
	*websocket.Conn
	r io.Reader
}

func (c *wsStreamConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsStreamConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.TextMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsStreamConn) SetDeadline(t time.Time) error { return c.NetConn().SetDeadline(t) }

// dialWS opens a WebSocket to url offering sub-protocols protos.
func dialWS(t *testing.T, url string, header http.Header, protos ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: protos, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	return d.Dial(url, header)
}

// wsSTOMP connects go-stomp over a WebSocket to url with sub-protocol v12.stomp.
func wsSTOMP(t *testing.T, url string) *stomp.Conn {
	t.Helper()
	ws, _, err := dialWS(t, url, nil, "v12.stomp")
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if ws.Subprotocol() != "v12.stomp" {
		t.Fatalf("sub-protocol %q, want v12.stomp", ws.Subprotocol())
	}
	c, err := stomp.Connect(&wsStreamConn{Conn: ws}, stomp.ConnOpt.Host("localhost"), stomp.ConnOpt.Logger(prototest.NopStompLogger{}))
	if err != nil {
		t.Fatalf("stomp over %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// One autodetecting port serves raw MQTT, raw STOMP, TLS, WebSocket and secure WebSocket at once, with
// real clients: paho over tcp://, ssl://, ws:// and wss://, go-stomp over TCP and over WebSocket. What any
// MQTT client publishes reaches a raw STOMP subscriber, and what a STOMP client sends, raw or over
// WebSocket, reaches every MQTT client, whatever its transport.
func TestWebSocketOnTheAutodetectingPort(t *testing.T) {
	addr, _ := wsBroker(t, "")
	raw := stompClient(t, addr)
	sub, err := raw.Subscribe("/topic/ws.in.*", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Send("/topic/sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil { // SUBSCRIBE done
		t.Fatal(err)
	}
	urls := []string{"tcp://" + addr, "ssl://" + addr, "ws://" + addr + "/mqtt", "wss://" + addr + "/mqtt"}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	clients := make([]paho.Client, len(urls))
	for i, u := range urls {
		clients[i] = wsMQTT(t, u, fmt.Sprintf("c%d", i))
		wg.Add(2) // one from STOMP over WebSocket, one from raw STOMP
		tok := clients[i].Subscribe("ws/back", 1, func(_ paho.Client, m paho.Message) {
			mu.Lock()
			got[u+" "+string(m.Payload())]++
			mu.Unlock()
			wg.Done()
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe over %s: %v", u, tok.Error())
		}
	}
	for i, c := range clients {
		if tok := c.Publish(fmt.Sprintf("ws/in/c%d", i), 1, false, urls[i]); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish over %s: %v", urls[i], tok.Error())
		}
	}
	seen := map[string]bool{}
	for range urls {
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			seen[string(m.Body)] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("raw STOMP subscriber got %v of %v", seen, urls)
		}
	}
	for _, u := range urls {
		if !seen[u] {
			t.Errorf("nothing from the MQTT client over %s reached STOMP", u)
		}
	}
	ws := wsSTOMP(t, "ws://"+addr+"/stomp")
	if err := ws.Send("/topic/ws.back", "text/plain", []byte("from stomp over ws")); err != nil {
		t.Fatal(err)
	}
	if err := raw.Send("/topic/ws.back", "text/plain", []byte("from raw stomp")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("MQTT clients got %v", got)
	}
	for _, u := range urls {
		if got[u+" from stomp over ws"] != 1 || got[u+" from raw stomp"] != 1 {
			t.Errorf("MQTT client over %s got %v", u, got)
		}
	}
}

// exchange writes req on a new connection to addr and returns the status line of the answer, or "" if
// the connection closed without one.
func exchange(t *testing.T, addr, req string) string {
	t.Helper()
	nc := prototest.Dial(t, addr)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(nc).ReadString('\n')
	return strings.TrimSpace(line)
}

const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

// Every request that is not a WebSocket upgrade Lyre accepts gets a clear HTTP refusal and a log line,
// and the broker keeps serving.
func TestWebSocketRefusals(t *testing.T) {
	addr, logs := wsBroker(t, `http {
    allowed_origins = ["https://app.example.com"]
    upgrade_timeout = "300ms"
    max_header_bytes = "2KB"
  }`)
	upgrade := func(path, extra string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + wsKey + "\r\n" + extra + "\r\n"
	}
	for _, tc := range []struct{ name, req, want string }{
		{"plain GET elsewhere", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404 Not Found"},
		{"plain GET on the endpoint", "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 426 Upgrade Required"},
		{"upgrade elsewhere", upgrade("/other", ""), "HTTP/1.1 404 Not Found"},
		{"wrong sub-protocol", upgrade("/mqtt", "Sec-WebSocket-Protocol: amqp\r\n"), "HTTP/1.1 400 Bad Request"},
		{"forbidden origin", upgrade("/mqtt", "Origin: https://evil.example.com\r\n"), "HTTP/1.1 403 Forbidden"},
		{"wrong websocket version", strings.Replace(upgrade("/mqtt", ""), "Version: 13", "Version: 8", 1), "HTTP/1.1 400 Bad Request"},
		{"no key", strings.Replace(upgrade("/mqtt", ""), "Sec-WebSocket-Key: "+wsKey+"\r\n", "", 1), "HTTP/1.1 400 Bad Request"},
		{"POST upgrade", strings.Replace(upgrade("/mqtt", ""), "GET", "POST", 1), "HTTP/1.1 400 Bad Request"},
		{"broken request line", "GET /mqtt\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"huge header", upgrade("/mqtt", "X-Padding: "+strings.Repeat("a", 4000)+"\r\n"), "HTTP/1.1 431 Request Header Fields Too Large"},
	} {
		if got := exchange(t, addr, tc.req); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// A client that never finishes its request is closed after upgrade_timeout.
	nc := prototest.Dial(t, addr)
	_, _ = io.WriteString(nc, "GET /mqtt HTTP/1.1\r\nHost: x\r\n")
	prototest.ExpectClosed(t, nc, 2*time.Second)

	prototest.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "http request refused") })
	// An allowed origin, and a client without one, still get their WebSocket.
	wsMQTT(t, "ws://"+addr+"/mqtt", "after")
	ws, _, err := dialWS(t, "ws://"+addr+"/mqtt", http.Header{"Origin": {"https://app.example.com"}}, "mqtt")
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	_ = ws.Close()
}

// The same origin as the request's host is allowed by default, another origin is not [RFC 6455 §10.2].
func TestWebSocketSameOriginByDefault(t *testing.T) {
	addr, _ := wsBroker(t, "")
	ws, _, err := dialWS(t, "ws://"+addr+"/mqtt", http.Header{"Origin": {"http://" + addr}}, "mqtt")
	if err != nil {
		t.Fatalf("same origin: %v", err)
	}
	_ = ws.Close()
	if _, resp, err := dialWS(t, "ws://"+addr+"/mqtt", http.Header{"Origin": {"http://elsewhere.example"}}, "mqtt"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("other origin: %v %v", resp, err)
	}
}

// A WebSocket message larger than the front-end's max_message_length (plus header slack) closes the
// connection with 1009 (message too big) and a log line.
func TestWebSocketMessageTooLarge(t *testing.T) {
	addr, logs := wsBroker(t, `mqtt { max_message_length = "1KB" }`)
	ws, _, err := dialWS(t, "ws://"+addr+"/mqtt", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// Valid packets, each small, in one message of 80 KiB: a CONNECT, then PINGREQs. The front-end's
	// own limit never sees a large packet; the WebSocket's does.
	msg := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'x'}
	for len(msg) < 80<<10 {
		msg = append(msg, 0xC0, 0)
	}
	go func() { _ = ws.WriteMessage(websocket.BinaryMessage, msg) }() // may meet a closed socket
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err = ws.ReadMessage(); err != nil {
			break
		}
	}
	// The broker sends close 1009, then closes a socket that still holds unread bytes of the message, so
	// the kernel's reset may overtake the close frame: either ending is the refusal; the log line below
	// says which it was.
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("read after an oversized message: %v, want close 1009 (or a reset)", err)
	}
	prototest.WaitForErr(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "websocket message over max_message_length") {
			return fmt.Errorf("no log line for the oversized message; the broker logged:\n%s", logs.String())
		}
		return nil
	})
	wsMQTT(t, "ws://"+addr+"/mqtt", "after") // the broker keeps serving
}

// MQTT packets may span WebSocket messages and several may share one: a CONNECT split over three
// messages, then a PINGREQ and a DISCONNECT in one, are answered as on TCP.
func TestWebSocketPacketsSpanMessages(t *testing.T) {
	addr, _ := wsBroker(t, "")
	ws, _, err := dialWS(t, "ws://"+addr+"/mqtt", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'x'}
	for _, part := range [][]byte{connect[:3], connect[3:9], connect[9:]} {
		if err := ws.WriteMessage(websocket.BinaryMessage, part); err != nil {
			t.Fatal(err)
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	for len(got) < 4 {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m...)
	}
	if string(got[:4]) != "\x20\x02\x00\x00" {
		t.Fatalf("CONNACK % x", got)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{0xC0, 0, 0xE0, 0}); err != nil { // PINGREQ, DISCONNECT
		t.Fatal(err)
	}
	got = got[4:]
	for len(got) < 2 {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m...)
	}
	if string(got[:2]) != "\xd0\x00" {
		t.Fatalf("PINGRESP % x", got)
	}
	// After DISCONNECT the broker closes the WebSocket with a close frame.
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after DISCONNECT: %v, want close 1000", err)
	}
}

var _ net.Conn = (*wsStreamConn)(nil)

// Over WebSocket the HTTP Host header chooses the virtual host, as TLS SNI does, for MQTT and for a
// STOMP CONNECT without a host header.
func TestWebSocketHostHeaderPicksVirtualHost(t *testing.T) {
	_, addr := startBroker(t, `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp", "http"]
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
}
virtual_host "tenant" {
  host_names = ["tenant.example"]
  anonymous  = true
}
`)
	tenant, def := stompClientHost(t, addr, "tenant"), stompClientHost(t, addr, "default")
	tsub, err := tenant.Subscribe("/topic/t", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	dsub, err := def.Subscribe("/topic/t", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*stomp.Conn{tenant, def} { // a receipt: the SUBSCRIBE before it is in place
		if err := c.Send("/topic/sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	o := paho.NewClientOptions().AddBroker("ws://" + addr + "/mqtt").SetClientID("w").SetAutoReconnect(false).
		SetHTTPHeaders(http.Header{"Host": {"tenant.example"}})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish("t", 1, false, "to the tenant"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	// STOMP 1.0 over WebSocket: no host header in CONNECT, so the HTTP Host decides.
	ws, _, err := dialWS(t, "ws://"+addr+"/stomp", http.Header{"Host": {"tenant.example"}}, "v10.stomp")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// go-stomp always sends a host header, so this STOMP 1.0 client is raw frames.
	for _, f := range []string{"CONNECT\n\n\x00", "SEND\ndestination:/topic/t\nreceipt:1\n\nstomp to the tenant\x00"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got string
	for !strings.Contains(got, "RECEIPT") {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got += string(m)
	}
	if !strings.HasPrefix(got, "CONNECTED\n") {
		t.Fatalf("STOMP 1.0 over WebSocket got %q", got)
	}
	for _, want := range []string{"to the tenant", "stomp to the tenant"} {
		select {
		case m := <-tsub.C:
			if m.Err != nil || string(m.Body) != want {
				t.Fatalf("tenant got %v %q, want %q", m.Err, m.Body, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("tenant got nothing, want %q", want)
		}
	}
	select {
	case m := <-dsub.C:
		t.Fatalf("the default host got %q", m.Body)
	case <-time.After(100 * time.Millisecond):
	}
}

// stompClientHost connects go-stomp over TCP to the virtual host named host.
func stompClientHost(t *testing.T, addr, host string) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", addr, stomp.ConnOpt.Host(host))
	if err != nil {
		t.Fatalf("stomp connect to %s: %v", host, err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// A ws:// connector serves both front-ends over WebSocket only; a wss:// one with protocol = "mqtt"
// serves MQTT over secure WebSocket and refuses a STOMP sub-protocol.
func TestWebSocketDedicatedConnectors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 1)
	cfg, err := conf.Parse([]byte(fmt.Sprintf(`
connector "ws" {
  bind = "ws://127.0.0.1:0"
}
connector "wss" {
  bind     = "wss://127.0.0.1:0"
  protocol = "mqtt"
  tls {
    cert_file = %q
    key_file  = %q
  }
}
virtual_host "default" {
  host_names = ["localhost"]
  anonymous  = true
}
`, certFile, keyFile)), "ws.hcl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, b)
	ws, wss := b.Addrs()["ws"].String(), b.Addrs()["wss"].String()
	sub := wsSTOMP(t, "ws://"+ws+"/stomp")
	ch, err := sub.Subscribe("/topic/d", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Send("/topic/sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ws://" + ws + "/mqtt", "wss://" + wss + "/mqtt"} {
		c := wsMQTT(t, u, "d")
		if tok := c.Publish("d", 1, false, u); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		select {
		case m := <-ch.C:
			if string(m.Body) != u {
				t.Fatalf("got %q, want %q", m.Body, u)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing from %s", u)
		}
		c.Disconnect(100)
	}
	// Raw MQTT is not served on a ws:// connector, nor STOMP on the MQTT-only wss:// one.
	if got := exchange(t, ws, "\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x01x"); got != "" {
		t.Fatalf("raw MQTT on ws://: %q", got)
	}
	if _, resp, err := dialWS(t, "wss://"+wss+"/stomp", nil, "v12.stomp"); err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("STOMP on the MQTT-only wss:// connector: %v %v", resp, err)
	}
}

// Keep-alive works over WebSocket as over TCP (read deadlines reach the socket under the WebSocket): a
// silent MQTT client with keep-alive 1 s is closed after 1.5 s [MQTT-3.1.2-24].
func TestWebSocketKeepAlive(t *testing.T) {
	addr, _ := wsBroker(t, "")
	ws, _, err := dialWS(t, "ws://"+addr+"/mqtt", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 1, 0, 1, 'k'} // keep-alive 1 s
	if err := ws.WriteMessage(websocket.BinaryMessage, connect); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err = ws.ReadMessage(); err != nil {
			break
		}
	}
	if d := time.Since(start); d < time.Second || d > 3*time.Second {
		t.Fatalf("a silent client with keep-alive 1s was closed after %v (%v); want about 1.5s", d, err)
	}

}
