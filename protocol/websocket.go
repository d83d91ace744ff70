package protocol

// WebSocket (RFC 6455) as one more byte stream under the MQTT and STOMP front-ends: the HTTP request is
// read, checked and upgraded with gorilla/websocket's handshake, and the front-end then reads and writes
// a wsConn (wsframe.go) as it would a socket (see the package doc, "WebSocket").

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

// wsWriteBuffers is gorilla's write-buffer pool: with a pool set, the handshake's short-lived gorilla
// connection allocates no 4 KiB write buffer (wsConn writes frames itself).
var wsWriteBuffers sync.Pool

const (
	// wsReadBuffer is each WebSocket connection's read buffer: frame headers and control frames (at most
	// 125 bytes of payload) are read through it, larger payload reads bypass it, and the front-end's own
	// reader buffers above it. gorilla adopts a hijacked reader only when it holds over 256 bytes.
	wsReadBuffer = 272
	// wsWriteBuffer is the size gorilla would give a pooled write buffer.
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
// for the connection's life, keeps its small one (measured with wsConn's shallow wait: about 1.5-2 KiB
// less broker RSS per idle WebSocket connection than upgrading on the connection's goroutine).
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
	sr := bytes.NewReader(sniffed)
	lr := &io.LimitedReader{R: io.MultiReader(sr, nc), N: h.MaxHeaderBytes}
	var rec *recorder // what was read, for the management server to read again
	var src io.Reader = lr
	if l.set.Connector.Management {
		rec = &recorder{r: lr}
		src = rec
	}
	br := requestReaders.Get().(*bufio.Reader)
	br.Reset(src)
	defer func() { br.Reset(nil); requestReaders.Put(br) }()
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
	default:
		proto, err = s.routeHTTP(l, req)
		if err == nil && br.Buffered() > 0 {
			err = refuse(http.StatusBadRequest, "data after the request header before the upgrade")
		}
	}
	if errors.Is(err, errManagement) {
		// The request reader may have left sniffed bytes unread (a body that came with the header): they
		// follow what it read.
		if err := s.handOff(l, nc, append(rec.buf, sniffed[len(sniffed)-sr.Len():]...)); err != nil {
			return "", nil, nil, err
		}
		return "", nil, nil, errHandedOff
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
	return proto, ws, ws, nil // its own adaptive reader buffers: no second connReader above it
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
		if l.set.Connector.Management && s.managementHandler() != nil {
			return "", errManagement
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
	hb := handshakeBuffers.Get().(*handshakeBuf)
	hb.r.Reset(nc)
	hb.w.Reset(nc)
	defer func() { hb.r.Reset(nil); hb.w.Reset(nil); handshakeBuffers.Put(hb) }() // gorilla's Conn, which saw them, is dropped
	w := &hijackWriter{nc: nc, br: hb.r, bw: hb.w, header: http.Header{}}
	_, err := up.Upgrade(w, req, nil)
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
	// gorilla's connection is done with: it has written the 101 response and read nothing after the
	// request. From here wsConn frames the stream itself (wsframe.go), so an idle connection holds no
	// gorilla state or buffer.
	ws := &wsConn{nc: nc, src: newConnReader(nc, nil), limit: limit + wsReadSlack, text: proto == STOMP, host: hostOnly(req.Host)}
	if tc, ok := nc.(*tls.Conn); ok {
		ws.tls = tc
	}
	return ws, nil
}

// httpFailed answers a refused request with its status (a timeout or a vanished client gets nothing)
// and logs it like the other detection failures: at Info, at most once a second per connector.
func (s *Server) httpFailed(l *listener, nc net.Conn, req *http.Request, err error) {
	if errors.Is(err, ErrDetectTimeout) {
		s.detectFailed(l, nc, err, nil)
		return
	}
	l.stats.refuse(RefusedHTTP) // before the answer, so a client that read it sees it counted
	var r *httpRefusal
	if errors.As(err, &r) {
		writeRefusal(nc, r)
		err = fmt.Errorf("%w: %w", ErrUpgradeRefused, err)
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
	nc     net.Conn
	br     *bufio.Reader // wsReadBuffer bytes, over 256: gorilla adopts it instead of allocating 4 KiB
	bw     *bufio.Writer // gorilla writes the 101 response in its buffer
	header http.Header
}

// The buffers of a handshake are pooled: a connection keeps none of them, and an idle WebSocket should
// leave no more garbage behind it than a TCP connection does.
var (
	requestReaders   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}
	handshakeBuffers = sync.Pool{New: func() any {
		return &handshakeBuf{r: bufio.NewReaderSize(nil, wsReadBuffer), w: bufio.NewWriterSize(nil, 256)}
	}}
)

type handshakeBuf struct {
	r *bufio.Reader
	w *bufio.Writer
}

func (w *hijackWriter) Header() http.Header         { return w.header }
func (w *hijackWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *hijackWriter) WriteHeader(int)             {}

// Hijack returns the connection with empty buffers (the request was read through a reader of its own):
// gorilla keeps br as its read buffer and writes the 101 response through the writer's buffer.
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.nc, bufio.NewReadWriter(w.br, w.bw), nil
}

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
