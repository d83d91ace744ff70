package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// wsSubprotocols are those Lyre's WebSocket server accepts.
var wsSubprotocols = []string{"mqtt", "mqttv3.1", "v12.stomp", "v11.stomp", "v10.stomp", "stomp"}

// wsServer serves WebSocket upgrades on a loopback httptest server (TLS with tlsSrv) and runs handle on
// each connection, which it closes when handle returns. It returns the server; its address is
// srv.Listener.Addr().
func wsServer(t *testing.T, tlsSrv bool, handle func(r *http.Request, ws *websocket.Conn)) *httptest.Server {
	t.Helper()
	up := websocket.Upgrader{Subprotocols: wsSubprotocols}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		handle(r, ws)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TestWSConnTLS's refused handshake
	if tlsSrv {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

// wsFrame is a server's (unmasked) frame. [RFC 6455 5.2]
func wsFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// mqttPkt is an MQTT packet with a short body.
func mqttPkt(hdr byte, body string) []byte { return append([]byte{hdr, byte(len(body))}, body...) }

func testTransport(t *testing.T, args ...string) (*config, *transport) {
	t.Helper()
	cfg, err := parseFlags(append([]string{"-transport", "ws"}, args...), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, newTransport(cfg, cfg.proto)
}

func dialTest(t *testing.T, tr *transport, addr string) *wsConn {
	t.Helper()
	nc, err := tr.dial(context.Background(), addr, 5*time.Second, 64, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc.(*wsConn)
}

// Packets span messages and share them; frames of one message, a ping among them, binary and text: the
// packet reader on top sees one byte stream. Each Write is one message, binary for MQTT and text for STOMP,
// on the path and sub-protocol of the protocol.
func TestWSConnMessages(t *testing.T) {
	p1, p2, p3 := mqttPkt(0x30, "first packet"), mqttPkt(0xd0, ""), mqttPkt(0x40, "\x00\x07")
	stream := slices.Concat(p1, p2, p3)
	for _, c := range []struct {
		proto, path, subprotocol string
		typ                      int
	}{
		{"mqtt", "/mqtt", "mqtt", websocket.BinaryMessage},
		{"stomp", "/stomp", "v12.stomp", websocket.TextMessage},
	} {
		t.Run(c.proto, func(t *testing.T) {
			type got struct {
				typ int
				msg string
			}
			gotCh, pong := make(chan got, 4), make(chan string, 1)
			srv := wsServer(t, false, func(r *http.Request, ws *websocket.Conn) {
				if r.URL.Path != c.path || ws.Subprotocol() != c.subprotocol {
					t.Errorf("path %s sub-protocol %q, want %s %q", r.URL.Path, ws.Subprotocol(), c.path, c.subprotocol)
				}
				ws.NetConn().Write(slices.Concat(
					wsFrame(true, websocket.BinaryMessage, stream[:2]),
					wsFrame(false, websocket.TextMessage, stream[2:5]),
					wsFrame(true, websocket.PingMessage, []byte("p")),
					wsFrame(false, 0, stream[5:9]), // continuation frames
					wsFrame(true, 0, stream[9:len(p1)+len(p2)+1]),
					wsFrame(true, websocket.BinaryMessage, stream[len(p1)+len(p2)+1:]),
				))
				ws.SetPongHandler(func(s string) error { pong <- s; return nil })
				for {
					typ, msg, err := ws.ReadMessage()
					if err != nil {
						return
					}
					gotCh <- got{typ, string(msg)}
				}
			})
			_, tr := testTransport(t, "-proto", c.proto)
			nc := dialTest(t, tr, srv.Listener.Addr().String())
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			pr := newPacketReader(nc, 4, 1024) // a small buffer: reads end inside messages too
			for i, want := range [][]byte{p1, p2, p3} {
				hdr, body, err := pr.next()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if g := append([]byte{hdr, byte(len(body))}, body...); !bytes.Equal(g, want) {
					t.Fatalf("packet %d: %q, want %q", i, g, want)
				}
			}
			for _, m := range []string{"hello", "world\x00"} {
				if n, err := nc.Write([]byte(m)); n != len(m) || err != nil {
					t.Fatalf("write: %d, %v", n, err)
				}
			}
			for _, m := range []string{"hello", "world\x00"} {
				if g := <-gotCh; g.typ != c.typ || g.msg != m {
					t.Fatalf("server got type %d %q, want %d %q", g.typ, g.msg, c.typ, m)
				}
			}
			if p := <-pong; p != "p" {
				t.Fatalf("pong %q", p)
			}
		})
	}
}

// A read deadline that passes, with nothing sent or in the middle of a message, loses nothing: reads go on
// after a new deadline, as on TCP.
func TestWSConnReadDeadline(t *testing.T) {
	next := make(chan struct{})
	msg := bytes.Repeat([]byte("0123456789"), 50)
	frame := wsFrame(true, websocket.BinaryMessage, msg)
	srv := wsServer(t, false, func(_ *http.Request, ws *websocket.Conn) {
		<-next
		ws.NetConn().Write(frame[:100])
		<-next
		ws.NetConn().Write(frame[100:])
		ws.ReadMessage() // until the client closes
	})
	_, tr := testTransport(t)
	nc := dialTest(t, tr, srv.Listener.Addr().String())
	buf := make([]byte, 1024)
	for range 2 {
		nc.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		var ne net.Error
		if n, err := nc.Read(buf); n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read: %d, %v; want a timeout", n, err)
		}
		next <- struct{}{}
		time.Sleep(10 * time.Millisecond) // the first part has arrived before the next timeout
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(io.LimitReader(nc, int64(len(msg))))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, %v; want the whole message", len(got), err)
	}
}

// Close sends a close frame; the broker's close frame reads as io.EOF, every time.
func TestWSConnClose(t *testing.T) {
	closed := make(chan error, 1)
	srv := wsServer(t, false, func(r *http.Request, ws *websocket.Conn) {
		if r.URL.Query().Has("server-closes") {
			ws.WriteMessage(websocket.BinaryMessage, []byte("x"))
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(time.Second))
			ws.ReadMessage()
			return
		}
		_, _, err := ws.ReadMessage()
		closed <- err
	})
	_, tr := testTransport(t)
	nc := dialTest(t, tr, srv.Listener.Addr().String())
	if err := nc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("server read %v, want a normal close", err)
	}

	_, tr = testTransport(t, "-ws-path", "/mqtt?server-closes")
	nc = dialTest(t, tr, srv.Listener.Addr().String())
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if n, err := nc.Read(buf); n != 1 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	for range 1100 { // gorilla panics after 1000 reads of a failed connection; the adapter does not ask it
		if n, err := nc.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("read %d, %v; want io.EOF", n, err)
		}
	}
}

// A message over wsMaxMessage is refused before it is buffered.
func TestWSConnTooLarge(t *testing.T) {
	srv := wsServer(t, false, func(_ *http.Request, ws *websocket.Conn) {
		ws.NetConn().Write([]byte{0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0})
		ws.ReadMessage()
	})
	_, tr := testTransport(t)
	nc := dialTest(t, tr, srv.Listener.Addr().String())
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 16)); !errors.Is(err, errWSTooLarge) {
		t.Fatalf("err = %v, want errWSTooLarge", err)
	}
}

// wss verifies the broker's certificate with -cafile, skips that with -insecure, and fails without either
// for a certificate the system does not trust.
func TestWSConnTLS(t *testing.T) {
	srv := wsServer(t, true, func(_ *http.Request, ws *websocket.Conn) {
		for {
			typ, msg, err := ws.ReadMessage()
			if err != nil || ws.WriteMessage(typ, msg) != nil {
				return
			}
		}
	})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := srv.Listener.Addr().String()
	for _, args := range [][]string{{"-insecure"}, {"-cafile", ca}} {
		_, tr := testTransport(t, append([]string{"-transport", "wss"}, args...)...)
		nc := dialTest(t, tr, addr)
		if _, ok := nc.NetConn().(interface{ ConnectionState() tls.ConnectionState }); !ok {
			t.Fatalf("%v: socket %T, want TLS", args, nc.NetConn())
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write([]byte("ping"))
		if b, err := io.ReadAll(io.LimitReader(nc, 4)); err != nil || string(b) != "ping" {
			t.Fatalf("%v: echo %q, %v", args, b, err)
		}
		if tcpConn(nc) == nil {
			t.Fatalf("%v: no TCP connection under the WebSocket", args)
		}
	}
	_, tr := testTransport(t, "-transport", "wss")
	if _, err := tr.dial(context.Background(), addr, 5*time.Second, 64, 64); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("dial without -cafile: %v, want a certificate error", err)
	}
}

func TestParseFlagsTransport(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(ca, []byte("no certificate here"), 0o644)
	for _, args := range [][]string{
		{"-transport", "quic"},
		{"-ws-path", "/mqtt"},
		{"-insecure"},
		{"-transport", "ws", "-insecure"},
		{"-transport", "ws", "-ws-path", "mqtt"},
		{"-transport", "wss", "-cafile", ca},
		{"-transport", "wss", "-cafile", ca + ".missing"},
		{"-transport", "tls", "-cafile", ca},
		{"-transport", "tls", "-ws-path", "/mqtt"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
	cfg, err := parseFlags([]string{"-transport", "ws", "-mode", "mqtt2stomp"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	pub, sub := newDrivers(cfg)
	mt, st := pub.(*mqttDriver).opt.tr, sub.(*stompDriver).opt.tr
	if mt.path != "/mqtt" || mt.protocols[0] != "mqtt" || st.path != "/stomp" || !slices.Equal(st.protocols, []string{"v12.stomp", "v11.stomp", "v10.stomp"}) {
		t.Fatalf("mqtt %+v, stomp %+v", mt, st)
	}
	if tr := newTransport(&config{transport: "tcp"}, "mqtt"); tr != nil {
		t.Fatalf("tcp transport %+v, want nil", tr)
	}
}

// wsProxy accepts WebSocket connections and relays each to a TCP connection to backend, counting the
// messages it gets by type.
type wsProxy struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string]int // "path subprotocol type" -> messages
}

func newWSProxy(t *testing.T, backend string) *wsProxy {
	p := &wsProxy{seen: map[string]int{}}
	p.srv = wsServer(t, false, func(r *http.Request, ws *websocket.Conn) {
		tc, err := net.Dial("tcp", backend)
		if err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 32<<10)
			for {
				n, err := tc.Read(buf)
				if n > 0 && ws.WriteMessage(websocket.BinaryMessage, buf[:n]) != nil {
					return
				}
				if err != nil {
					ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
					return
				}
			}
		}()
		for {
			typ, rd, err := ws.NextReader()
			if err != nil {
				break
			}
			p.mu.Lock()
			p.seen[r.URL.Path+" "+ws.Subprotocol()+" "+strconv.Itoa(typ)]++
			p.mu.Unlock()
			if _, err := io.Copy(tc, rd); err != nil {
				break
			}
		}
		tc.Close()
		<-done
	})
	return p
}

// bench drives -proto stomp over ws end to end: each STOMP frame the clients write is one text message.
func TestBenchSTOMPOverWS(t *testing.T) {
	peer := newStompPeer(t, "1.2", 0)
	proxy := newWSProxy(t, peer.addr)
	for _, c := range []struct {
		name     string
		args     []string
		expected uint64
	}{
		{"fanin", []string{"-mode", "fanin", "-pubs", "3", "-count", "300"}, 900},
		{"queue", []string{"-mode", "queue", "-pubs", "2", "-subs", "2", "-count", "300", "-receipt-every", "10", "-inflight", "4"}, 600},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(append([]string{"-proto", "stomp", "-transport", "ws", "-addr", proxy.srv.Listener.Addr().String(),
				"-rate", "5000", "-topic", "test"}, c.args...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			r, err := bench(context.Background(), cfg, nil, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			if r.failed() || r.Interrupted || r.Received != c.expected || r.Lost != 0 || r.Transport != "ws" {
				t.Fatalf("received %d of %d, lost %d, transport %q, errors %v", r.Received, c.expected, r.Lost, r.Transport, r.Errors)
			}
		})
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if len(proxy.seen) != 1 || proxy.seen["/stomp v12.stomp "+strconv.Itoa(websocket.TextMessage)] == 0 {
		t.Fatalf("proxy saw %v, want text messages only, on /stomp with v12.stomp", proxy.seen)
	}
}

// The same fan-in runs as TestBenchMosquitto, over mosquitto's WebSocket listener. The second runs for
// longer than half the keep-alive: the subscriber's read deadline passes and it pings, over WebSocket too.
func TestBenchMosquittoWS(t *testing.T) {
	_, wsAddr, _ := startMosquittoWS(t, true)
	for _, c := range []struct {
		name     string
		args     []string
		expected uint64
	}{
		{"fanin qos 0", []string{"-mode", "fanin", "-qos", "0", "-pubs", "4", "-count", "500"}, 2000},
		{"fanin qos 1", []string{"-mode", "fanin", "-qos", "1", "-pubs", "4", "-count", "500", "-inflight", "16"}, 2000},
		{"fanin qos 1 keep-alive", []string{"-mode", "fanin", "-qos", "1", "-pubs", "2", "-count", "300", "-rate", "250", "-keepalive", "1s"}, 600},
		{"fanout qos 1 v5", []string{"-v5", "-mode", "fanout", "-qos", "1", "-subs", "3", "-count", "300"}, 900},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(append([]string{"-transport", "ws", "-addr", wsAddr, "-rate", "5000", "-topic", "test"}, c.args...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			r, err := bench(context.Background(), cfg, nil, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			if r.failed() || r.Interrupted {
				t.Fatalf("errors: %v (interrupted %v)", r.Errors, r.Interrupted)
			}
			sent := uint64(cfg.pubs) * cfg.count
			if r.Sent != sent || r.Received != c.expected || r.Lost != 0 || r.OutOfOrder != 0 || r.Foreign != 0 {
				t.Fatalf("sent %d (want %d) received %d (want %d) lost %d out of order %d foreign %d",
					r.Sent, sent, r.Received, c.expected, r.Lost, r.OutOfOrder, r.Foreign)
			}
			if cfg.qos > 0 && r.Acked != sent {
				t.Fatalf("acked %d of %d", r.Acked, sent)
			}
		})
	}
}

// Idle connections over WebSocket hold through keep-alive sweeps, and the broker's RSS is sampled.
func TestIdleMosquittoWS(t *testing.T) {
	_, wsAddr, pid := startMosquittoWS(t, true)
	cfg, err := parseFlags([]string{"-transport", "ws", "-addr", wsAddr, "-mode", "idle", "-conns", "40", "-pid", strconv.Itoa(pid),
		"-duration", "1200ms", "-keepalive", "1s", "-settle", "100ms"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := idle(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.failed() || r.Connected != 40 || r.Dropped != 0 || r.Interrupted || r.RSSAfterKiB <= 0 {
		t.Fatalf("connected %d dropped %d rss %d errors %v", r.Connected, r.Dropped, r.RSSAfterKiB, r.Errors)
	}
	var out bytes.Buffer
	r.print(&out)
	if !strings.HasPrefix(out.String(), "mqtt/ws idle") {
		t.Fatalf("printed %q", out.String())
	}
}

// Per message, gorilla allocates a message reader and a message writer; the adapter adds nothing.
func TestWSConnAllocs(t *testing.T) {
	const runs = 200
	pingresp := mqttPkt(0xd0, "")
	srv := wsServer(t, false, func(_ *http.Request, ws *websocket.Conn) {
		nc := ws.NetConn()
		nc.Write(bytes.Repeat(wsFrame(true, websocket.BinaryMessage, pingresp), runs+10))
		io.Copy(io.Discard, nc) // the client's messages, until it closes
	})
	_, tr := testTransport(t)
	nc := dialTest(t, tr, srv.Listener.Addr().String())
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(runs, func() {
		if _, err := nc.Write(mqttPingreq); err != nil {
			t.Fatal(err)
		}
		if n, err := nc.Read(buf); n != len(pingresp) || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
	})
	if allocs > 2 {
		t.Fatalf("%.1f allocations per message written and read, want at most 2 (gorilla's)", allocs)
	}
}
