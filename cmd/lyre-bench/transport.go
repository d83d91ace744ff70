package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/gorilla/websocket"
)

// transport says how clients reach the broker: nil is TCP, otherwise TLS over TCP (tls), or WebSocket over
// TCP (ws) or TLS (wss).
type transport struct {
	scheme    string   // "tls", "ws" or "wss"
	path      string   // ws, wss: request path, e.g. /mqtt
	protocols []string // ws, wss: Sec-WebSocket-Protocol offered, preferred first
	msgType   int      // ws, wss: of every message written: binary for MQTT, text for STOMP
	tls       *tls.Config
}

// newTransport returns c's transport for proto ("mqtt" or "stomp"), nil for TCP.
func newTransport(c *config, proto string) *transport {
	switch c.transport {
	case "", "tcp":
		return nil
	case "tls":
		return &transport{scheme: "tls", tls: c.tlsConfig}
	}
	t := &transport{scheme: c.transport, path: c.wsPath, tls: c.tlsConfig}
	if proto == "stomp" {
		t.protocols = []string{"v12.stomp", "v11.stomp", "v10.stomp"}
		t.msgType = websocket.TextMessage // STOMP frames are text; Lyre and gorilla take any bytes in them
		t.path = orString(t.path, "/stomp")
	} else {
		t.protocols = []string{"mqtt"}
		t.msgType = websocket.BinaryMessage
		t.path = orString(t.path, "/mqtt")
	}
	return t
}

// dial connects to addr: over TCP when t is nil, TLS for tls, else with a WebSocket handshake. rbuf and wbuf
// size the WebSocket read-ahead buffer (it grows to the largest message) and gorilla's write buffer (one
// frame). The TLS handshake is part of the dial. No session cache is kept, so every connection pays for a
// full handshake, as a new client would.
func (t *transport) dial(ctx context.Context, addr string, timeout time.Duration, rbuf, wbuf int) (net.Conn, error) {
	nd := &net.Dialer{Timeout: timeout}
	switch {
	case t == nil:
		return nd.DialContext(ctx, "tcp", addr)
	case t.scheme == "tls":
		return (&tls.Dialer{NetDialer: nd, Config: t.tls}).DialContext(ctx, "tcp", addr)
	}
	return t.dialWS(ctx, nd, addr, timeout, rbuf, wbuf)
}

func (t *transport) dialWS(ctx context.Context, nd *net.Dialer, addr string, timeout time.Duration, rbuf, wbuf int) (net.Conn, error) {
	d := websocket.Dialer{
		HandshakeTimeout: timeout,
		Subprotocols:     t.protocols,
		ReadBufferSize:   wsReadBuffer,
		WriteBufferSize:  wbuf,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &wsRaw{Conn: nc, buf: make([]byte, rbuf)}, nil
		},
		// TLS under wsRaw, not above it: gorilla would put its own TLS client on top of what NetDialContext
		// returns, and wsRaw must see WebSocket frames.
		NetDialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			tc, err := (&tls.Dialer{NetDialer: nd, Config: t.tls}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &wsRaw{Conn: tc, buf: make([]byte, rbuf)}, nil
		},
	}
	url := t.scheme + "://" + addr + t.path
	ws, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if p := ws.Subprotocol(); p != "" && !slices.Contains(t.protocols, p) {
		ws.Close()
		return nil, fmt.Errorf("%w: %s chose %q", errWSProtocol, url, p)
	}
	raw := ws.NetConn().(*wsRaw)
	raw.framed = true
	return &wsConn{ws: ws, raw: raw, typ: t.msgType}, nil
}
