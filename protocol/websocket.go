package protocol

// WebSocket (RFC 6455) as one more byte stream under the MQTT and STOMP front-ends: the HTTP request is
// read on the connection's own goroutine, checked, upgraded with gorilla/websocket, and the front-end
// then reads and writes a wsConn as it would a socket (see the package doc, "WebSocket").

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// HTTP in a detect list makes the connector recognise an HTTP request line and serve WebSocket upgrades
// (ws://, wss:// binds do nothing else). Like TLS it is a layer, not a protocol: no Handler is registered.
const HTTP = "http"

// ErrUpgradeRefused wraps the reason an HTTP request on a broker port was answered with an error status
// instead of a WebSocket.
var ErrUpgradeRefused = errors.New("protocol: websocket upgrade refused")

// ErrWSMessageTooLarge ends a WebSocket connection whose client sent a message larger than the
// front-end's max_message_length (plus its header bytes).
var ErrWSMessageTooLarge = errors.New("protocol: websocket message over max_message_length")

// httpMethods are the request methods Sniff recognises. CONNECT is left out: it would clash with
// STOMP's CONNECT frame, and Lyre is no proxy.
var httpMethods = [...]string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH "}

// sniffHTTP checks b against the request methods: decided on the space after the method.
func sniffHTTP(b []byte) error {
	for _, m := range httpMethods {
		n := min(len(b), len(m))
		if string(b[:n]) == m[:n] {
			if n < len(m) {
				return ErrNeedMore
			}
			return nil
		}
	}
	return fmt.Errorf("%w: not an http request line", ErrUnknownProtocol)
}

// Sub-protocols that choose the front-end, in the names clients use (MQTT.js, paho, stomp.js).
var wsSubprotocols = map[string]string{
	"mqtt": MQTT, "mqttv3.1": MQTT,
	"v12.stomp": STOMP, "v11.stomp": STOMP, "v10.stomp": STOMP, "stomp": STOMP,
}

// wsWriteBuffers are shared by every WebSocket connection: gorilla takes one for the length of a write
// only, so an idle connection holds none.
var wsWriteBuffers sync.Pool

const (
	// wsReadBuffer is each WebSocket connection's read buffer: frame headers and control frames (at most
	// 125 bytes of payload) are read through it, larger payload reads bypass it, and the front-end's own
	// reader buffers above it. gorilla adopts a hijacked reader only when it holds over 256 bytes.
	wsReadBuffer = 272
	// wsWriteBuffer is the size of the pooled write buffers; a larger write goes out as one frame anyway.
	wsWriteBuffer = 4 << 10
	// wsReadSlack is allowed beyond the front-end's max_message_length in one WebSocket message: the
	// packet's or frame's own header bytes.
	wsReadSlack = 64 << 10
	// wsCloseWait bounds the close frame sent when a connection closes.
	wsCloseWait = 100 * time.Millisecond
)

// httpRefusal is an HTTP error answer, and why.
type httpRefusal struct {
	status int
	reason string
	header http.Header
}

func (r *httpRefusal) Error() string { return strconv.Itoa(r.status) + " " + r.reason }

func refuse(status int, format string, args ...any) *httpRefusal {
	return &httpRefusal{status: status, reason: fmt.Sprintf(format, args...)}
}

// upgradeOffStack runs upgradeHTTP on a goroutine of its own and waits for it. Reading the request and
// the handshake go deep enough to grow a stack to 8 KiB or more; on a short-lived goroutine that stack
// returns to the runtime's pool for the next handshake, while the connection's goroutine, which parks
// for the connection's life, keeps its small one. With wsConn's shallow wait this takes an idle
// WebSocket connection from ~9.6 to ~7.4 KiB of broker RSS (lyre-bench -mode idle -transport ws, 5,000
// connections; TCP: ~5.5 KiB).
func (s *Server) upgradeOffStack(l *listener, nc net.Conn, sniffed []byte) (string, net.Conn, io.Reader, error) {
	type result struct {
		proto string
		conn  net.Conn
		r     io.Reader
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		var res result
		res.proto, res.conn, res.r, res.err = s.upgradeHTTP(l, nc, sniffed)
		ch <- res
	}()
	res := <-ch
	return res.proto, res.conn, res.r, res.err
}

// upgradeHTTP serves the HTTP request that starts on nc (sniffed: its first bytes, already read): a
// WebSocket upgrade for one of the connector's front-ends becomes a wsConn and the front-end's name;
// anything else gets its HTTP error status and a log line, and an error. The whole exchange must end
// within the connector's upgrade_timeout.
//
//go:noinline
func (s *Server) upgradeHTTP(l *listener, nc net.Conn, sniffed []byte) (string, net.Conn, io.Reader, error) {
	h := l.set.Connector.HTTP
	_ = nc.SetDeadline(time.Now().Add(h.UpgradeTimeout))
	lr := &io.LimitedReader{R: io.MultiReader(bytes.NewReader(sniffed), nc), N: h.MaxHeaderBytes}
	br := bufio.NewReaderSize(lr, 1024)
	req, err := http.ReadRequest(br)
	var proto string
	switch {
	case err != nil && lr.N == 0:
		err = refuse(http.StatusRequestHeaderFieldsTooLarge, "request header over %d bytes (max_header_bytes)", h.MaxHeaderBytes)
	case err != nil && isTimeout(err):
		err = fmt.Errorf("%w: upgrade not finished within %v", ErrDetectTimeout, h.UpgradeTimeout)
	case err != nil && errors.Is(err, io.EOF):
	case err != nil:
		err = refuse(http.StatusBadRequest, "malformed request: %v", err)
	case br.Buffered() > 0:
		err = refuse(http.StatusBadRequest, "data after the request header before the upgrade")
	default:
		proto, err = s.routeHTTP(l, req)
	}
	if err != nil {
		s.httpFailed(l, nc, req, err)
		return "", nil, nil, err
	}
	ws, err := s.acceptWebSocket(l, nc, req, proto)
	if err != nil {
		s.httpFailed(l, nc, req, err)
		return "", nil, nil, err
	}
	if err := clearDeadlines(nc); err != nil {
		return "", nil, nil, err
	}
	return proto, ws, replay(ws, nil), nil
}

// routeHTTP decides what request req gets: the front-end of a WebSocket upgrade, or a refusal. A
// sub-protocol the client offers chooses the front-end (the first it lists that the connector
// speaks); without one, the path does (mqtt_path, stomp_path).
func (s *Server) routeHTTP(l *listener, req *http.Request) (string, error) {
	h := l.set.Connector.HTTP
	byPath := ""
	switch req.URL.Path {
	case h.MQTTPath:
		byPath = MQTT
	case h.STOMPPath:
		byPath = STOMP
	}
	if !headerHasToken(req.Header, "Connection", "upgrade") || !headerHasToken(req.Header, "Upgrade", "websocket") {
		if byPath != "" {
			r := refuse(http.StatusUpgradeRequired, "%s is a WebSocket endpoint", req.URL.Path)
			r.header = http.Header{"Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}}
			return "", r
		}
		return "", refuse(http.StatusNotFound, "no such resource %q", req.URL.Path)
	}
	if req.Method != http.MethodGet {
		return "", refuse(http.StatusBadRequest, "a WebSocket upgrade must be a GET, not %s", req.Method)
	}
	if !originAllowed(h.AllowedOrigins, req) {
		return "", refuse(http.StatusForbidden, "origin %q not in allowed_origins", req.Header.Get("Origin"))
	}
	protos := l.set.Connector.Protocols()
	if offered := websocket.Subprotocols(req); len(offered) > 0 {
		for _, sp := range offered {
			if p := wsSubprotocols[sp]; p != "" && slices.Contains(protos, p) {
				return p, nil
			}
		}
		return "", refuse(http.StatusBadRequest, "no supported sub-protocol in %q (want mqtt, mqttv3.1, v12.stomp, v11.stomp, v10.stomp or stomp)", offered)
	}
	if byPath == "" || !slices.Contains(protos, byPath) {
		return "", refuse(http.StatusNotFound, "no WebSocket endpoint at %q", req.URL.Path)
	}
	return byPath, nil
}

// acceptWebSocket completes the handshake of req on nc for front-end proto.
func (s *Server) acceptWebSocket(l *listener, nc net.Conn, req *http.Request, proto string) (*wsConn, error) {
	var refusal *httpRefusal
	up := websocket.Upgrader{
		// ReadBufferSize 0: gorilla reads through the hijacked reader (hijackWriter), which wsConn
		// can ask whether bytes are buffered.
		WriteBufferSize: wsWriteBuffer,
		WriteBufferPool: &wsWriteBuffers,
		CheckOrigin:     func(*http.Request) bool { return true }, // routeHTTP did
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			refusal = refuse(status, "%v", reason)
			refusal.header = w.Header()
		},
	}
	if offered := websocket.Subprotocols(req); len(offered) > 0 {
		for _, sp := range offered {
			if wsSubprotocols[sp] == proto {
				up.Subprotocols = []string{sp} // the one routeHTTP chose, echoed to the client
				break
			}
		}
	}
	pc := &peekConn{Conn: nc}
	w := &hijackWriter{pc: pc, br: bufio.NewReaderSize(pc, wsReadBuffer), header: http.Header{}}
	c, err := up.Upgrade(w, req, nil)
	if refusal != nil {
		return nil, refusal
	}
	if err != nil {
		return nil, err
	}
	limit := l.set.Connector.MQTT.MaxMessageLength
	if proto == STOMP {
		limit = l.set.Connector.STOMP.MaxMessageLength
	}
	c.SetReadLimit(limit + wsReadSlack)
	ws := &wsConn{ws: c, nc: nc, br: w.br, pc: pc, text: proto == STOMP, host: hostOnly(req.Host)}
	if tc, ok := nc.(*tls.Conn); ok {
		ws.tls = tc
	}
	return ws, nil
}

// httpFailed answers a refused request with its status (a timeout or a vanished client gets nothing)
// and logs it like the other detection failures: at Info, at most once a second per connector.
func (s *Server) httpFailed(l *listener, nc net.Conn, req *http.Request, err error) {
	var r *httpRefusal
	if errors.As(err, &r) {
		writeRefusal(nc, r)
		err = fmt.Errorf("%w: %w", ErrUpgradeRefused, err)
	}
	if errors.Is(err, ErrDetectTimeout) {
		s.detectFailed(l, nc, err, nil)
		return
	}
	n := l.httpLogs.hit()
	if n == 0 {
		return
	}
	fields := []zap.Field{zap.String("connector", l.set.Connector.Name), zap.Stringer("remote", nc.RemoteAddr()),
		zap.String("reason", err.Error())}
	if req != nil {
		fields = append(fields, zap.String("method", req.Method), zap.String("path", req.URL.Path),
			zap.String("origin", req.Header.Get("Origin")))
	}
	if n > 1 {
		fields = append(fields, zap.Int64("count", n))
	}
	s.log.Info("http request refused", fields...)
}

// writeRefusal writes r as a complete HTTP/1.1 response, then the connection closes.
func writeRefusal(nc net.Conn, r *httpRefusal) {
	var b bytes.Buffer
	body := r.reason + "\n"
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n",
		r.status, http.StatusText(r.status), len(body))
	for k, vs := range r.header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write(b.Bytes())
}

// originAllowed reports whether req may open a WebSocket: a request without Origin (not a browser)
// always; "*" allows any; else the origin must be listed, or with an empty list be the host the request
// names (same origin).
func originAllowed(allowed []string, req *http.Request) bool {
	origin := req.Header.Get("Origin")
	if origin == "" || slices.Contains(allowed, "*") {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(allowed) == 0 {
		return strings.EqualFold(u.Host, req.Host)
	}
	for _, a := range allowed {
		if au, err := url.Parse(a); err == nil && strings.EqualFold(au.Scheme, u.Scheme) && strings.EqualFold(au.Host, u.Host) {
			return true
		}
	}
	return false
}

// headerHasToken reports whether a comma-separated header of h lists token (case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// hostOnly is the host of an HTTP Host header, without its port.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// hijackWriter is the http.ResponseWriter gorilla's Upgrader needs: it hands over the connection; the
// 101 response gorilla writes itself, a refusal goes through the Upgrader's Error hook.
type hijackWriter struct {
	pc     *peekConn
	br     *bufio.Reader // over pc, wsReadBuffer bytes: over 256, so gorilla reads through it
	header http.Header
}

func (w *hijackWriter) Header() http.Header         { return w.header }
func (w *hijackWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *hijackWriter) WriteHeader(int)             {}

// Hijack returns the connection with empty buffers (the request was read through a reader of its own):
// gorilla keeps br as its read buffer and writes the 101 response through the writer's buffer.
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.pc, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.pc, 256)), nil
}

// peekConn is the socket as gorilla reads it: a byte wsConn read while waiting comes first.
type peekConn struct {
	net.Conn
	b [1]byte
	n int // 1 while b holds a byte gorilla has not read
}

func (pc *peekConn) Read(p []byte) (int, error) {
	if pc.n == 0 || len(p) == 0 {
		return pc.Conn.Read(p)
	}
	p[0], pc.n = pc.b[0], 0
	return 1, nil
}

// wsConn is a WebSocket as the byte stream a front-end reads and writes: reads run across message
// boundaries (an MQTT packet or STOMP frame may span messages, and one message may hold several);
// each write is one message, binary for MQTT, text for STOMP when it is valid UTF-8. Text and binary
// messages are both read. One goroutine reads and one writes, as gorilla allows; control frames (ping,
// close) are answered by gorilla during reads.
type wsConn struct {
	ws   *websocket.Conn
	nc   net.Conn      // the socket, or the TLS connection over it
	br   *bufio.Reader // gorilla's read buffer
	pc   *peekConn     // what gorilla reads from
	tls  *tls.Conn     // nc when the WebSocket runs over TLS (wss)
	r    io.Reader     // the message being read; nil between messages
	text bool          // STOMP: text messages where possible
	host string        // the request's Host header, without port
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil && c.br.Buffered() == 0 && c.pc.n == 0 {
			// Between messages with nothing buffered: wait for the next byte on the socket itself, so an
			// idle connection parks as shallowly as a TCP one (gorilla's frame reader is deeper, and a
			// goroutine parked deep keeps a 4 KiB stack), and a read deadline ends the wait without
			// breaking gorilla's state.
			n, err := c.nc.Read(c.pc.b[:])
			if n == 0 {
				if err == nil {
					continue
				}
				if err == io.EOF {
					return 0, io.EOF
				}
				return 0, err
			}
			c.pc.n = 1
		}
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, wsReadError(err)
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
		if err != nil {
			return n, wsReadError(err)
		}
		return n, nil
	}
}

// wsReadError maps the end of a WebSocket onto what a socket reader expects: a close frame is EOF.
func wsReadError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) && (ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway ||
		ce.Code == websocket.CloseNoStatusReceived || ce.Code == websocket.CloseAbnormalClosure) {
		// 1006: the socket ended without a close frame, the WebSocket's way of saying EOF.
		return io.EOF
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return ErrWSMessageTooLarge // gorilla has sent close 1009
	}
	return err
}

func (c *wsConn) Write(p []byte) (int, error) {
	t := websocket.BinaryMessage
	if c.text && utf8.Valid(p) {
		t = websocket.TextMessage
	}
	if err := c.ws.WriteMessage(t, p); err != nil {
		if errors.Is(err, websocket.ErrCloseSent) {
			// gorilla's reader has sent a close frame (message too large, a protocol error, the peer's
			// close echoed): the reader is ending the connection with the reason, which a write error
			// here would hide. Output after a close frame is dropped, as RFC 6455 §5.5.1 wants.
			return len(p), nil
		}
		return 0, err
	}
	return len(p), nil
}

// writeBuffers writes the pieces of *v as one message and consumes them, like net.Buffers.WriteTo. Several
// pieces are gathered into a pooled buffer first: gorilla writes one message from one slice with a
// single writev, but a streamed message in frames of its 4 KiB write buffer, a syscall each.
func (c *wsConn) writeBuffers(v *net.Buffers) (int64, error) {
	msg := (*v)[0]
	var gathered *[]byte
	if len(*v) > 1 {
		gathered = wsGatherBuffers.Get().(*[]byte)
		for _, b := range *v {
			*gathered = append(*gathered, b...)
		}
		msg = *gathered
	}
	_, err := c.Write(msg)
	if gathered != nil {
		if cap(*gathered) <= wsMaxGather {
			*gathered = (*gathered)[:0]
			wsGatherBuffers.Put(gathered)
		}
	}
	if err != nil {
		return 0, err
	}
	clear(*v)
	*v = (*v)[len(*v):]
	return int64(len(msg)), nil
}

// wsGatherBuffers hold the pieces of one outbound batch while it becomes one message; a buffer grown
// beyond wsMaxGather (by a batch of large messages) is dropped rather than kept.
var wsGatherBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

const wsMaxGather = 512 << 10

// Close sends a close frame, waiting wsCloseWait at most for a peer that does not read, then closes the
// socket (under TLS, without close_notify: see Conn.Close).
func (c *wsConn) Close() error {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(wsCloseWait))
	if c.tls != nil {
		return c.tls.NetConn().Close()
	}
	return c.nc.Close()
}

func (c *wsConn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

// HTTPHost returns the host the client's HTTP request named (its Host header, without port) when the
// connection is a WebSocket, else "". Front-ends use it to choose a virtual host, like TLS SNI.
func (c *Conn) HTTPHost() string {
	if ws, ok := c.nc.(*wsConn); ok {
		return ws.host
	}
	return ""
}

// Transport names the connection's byte stream for logs and metrics: "tcp", "tls", "ws" or "wss".
func (c *Conn) Transport() string {
	ws, isWS := c.nc.(*wsConn)
	switch {
	case isWS && ws.tls != nil:
		return "wss"
	case isWS:
		return "ws"
	case c.tlsc != nil:
		return "tls"
	}
	return "tcp"
}
