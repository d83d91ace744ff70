package stomp

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/virtualhost"
)

func TestMain(m *testing.M) {
	// go-stomp's Unsubscribe leaves its waiter parked forever when it misses the RECEIPT's wake-up (see
	// unsubscribe): a client's goroutine, not the broker's.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/go-stomp/stomp/v3.waitWithTimeout.func1"))
}

// testDieDelay is short so tests that wait for a close after ERROR stay fast.
const testDieDelay = 300 * time.Millisecond

// broker is a running STOMP server on loopback with one anonymous host named "default" (alias "localhost").
type broker struct {
	addr string
	srv  *protocol.Server
	h    *Handler
	host *virtualhost.Host
	st   store.Store // a durable host's store, nil otherwise
}

// startBroker starts a STOMP-only connector. mod may adjust the connector and handler before start.
func startBroker(t testing.TB, mod func(c *conf.Connector, h *Handler)) *broker {
	t.Helper()
	return startBrokerRouter(t, router.Options{}, mod)
}

// startBrokerRouter is startBroker with the default host's router options.
func startBrokerRouter(t testing.TB, ro router.Options, mod func(c *conf.Connector, h *Handler)) *broker {
	t.Helper()
	host := virtualhost.New(conf.VirtualHost{Name: "default", HostNames: []string{"localhost"}, Anonymous: true}, ro)
	other := virtualhost.New(conf.VirtualHost{Name: "other", Anonymous: true}, router.Options{})
	reg := virtualhost.NewRegistry(host, other)
	t.Cleanup(reg.Close)
	h := newTestHandler(t, reg)
	c := testConnector()
	if mod != nil {
		mod(&c, h)
	}
	srv, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: h}, c)
	return &broker{addr: addrs[0], srv: srv, h: h, host: host}
}

// newTestHandler returns a handler for hosts that logs through t, with heart-beats off.
func newTestHandler(t testing.TB, hosts *virtualhost.Registry) *Handler {
	h := NewHandler(hosts, zaptest.NewLogger(t))
	h.HeartBeatSend, h.HeartBeatReceive = 0, 0
	return h
}

// testConnector is the STOMP-only connector the brokers of these tests serve: the default grammar, the
// short testDieDelay and small frame limits.
func testConnector() conf.Connector {
	return conf.Connector{
		Protocol: protocol.STOMP,
		STOMP: conf.STOMP{
			Grammar:          conf.STOMPGrammarDefaults,
			DieDelay:         testDieDelay,
			MaxMessageLength: 1 << 20,
			MaxHeaders:       50,
			MaxHeaderLength:  1024,
		},
	}
}

// dial connects a go-stomp client to the default host; it is disconnected at the end of the test.
func (b *broker) dial(t *testing.T, opts ...func(*stomp.Conn) error) *stomp.Conn {
	t.Helper()
	opts = append([]func(*stomp.Conn) error{stomp.ConnOpt.Host("default"), stomp.ConnOpt.HeartBeat(0, 0),
		stomp.ConnOpt.Logger(prototest.NopStompLogger{}), stomp.ConnOpt.UnsubscribeReceiptTimeout(2 * time.Second)}, opts...)
	c, err := stomp.Dial("tcp", b.addr, opts...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.MustDisconnect() })
	return c
}

// unsubscribe is prototest.Unsubscribe: UNSUBSCRIBE and its RECEIPT, despite go-stomp's lost wake-up.
func unsubscribe(t *testing.T, s *stomp.Subscription, opts ...func(*frame.Frame) error) {
	t.Helper()
	prototest.Unsubscribe(t, s, opts...)
}

// rawConn is a hand-driven client for cases go-stomp cannot produce.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	rd *frame.Reader
}

func (b *broker) raw(t *testing.T) *rawConn {
	t.Helper()
	nc := prototest.Dial(t, b.addr)
	return &rawConn{t: t, nc: nc, rd: frame.NewReader(bufio.NewReader(nc))}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	_ = r.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.nc, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// connect sends a CONNECT frame with the given extra header lines and returns the answer.
func (r *rawConn) connect(hdrs ...string) *frame.Frame {
	r.t.Helper()
	r.send("CONNECT\n" + strings.Join(append(hdrs, ""), "\n") + "\n\x00")
	return r.read()
}

// read returns the next frame, skipping heart-beats; it fails the test on error.
func (r *rawConn) read() *frame.Frame {
	r.t.Helper()
	f, err := r.readErr()
	if err != nil {
		r.t.Fatalf("read frame: %v", err)
	}
	return f
}

func (r *rawConn) readErr() (*frame.Frame, error) {
	_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := r.rd.Read()
		if err != nil || f != nil {
			return f, err
		}
	}
}

// expectClosed asserts the server closes the connection within d (no further frame).
func (r *rawConn) expectClosed(d time.Duration) {
	r.t.Helper()
	start := time.Now()
	_ = r.nc.SetReadDeadline(time.Now().Add(d + time.Second))
	buf := make([]byte, 256)
	for {
		n, err := r.nc.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				r.t.Fatalf("connection still open after %s", time.Since(start))
			}
			if el := time.Since(start); el > d+200*time.Millisecond {
				r.t.Fatalf("closed after %s, want within %s", el, d)
			}
			return
		}
		for _, c := range buf[:n] {
			if c != '\n' && c != '\r' {
				r.t.Fatalf("unexpected data before close: %q", buf[:n])
			}
		}
	}
}

// expectError reads an ERROR frame whose message header contains want, then asserts the close.
func (r *rawConn) expectError(want string) *frame.Frame {
	r.t.Helper()
	f := r.read()
	if f.Command != frame.ERROR {
		r.t.Fatalf("got %s %v, want ERROR", f.Command, f.Header)
	}
	if msg := f.Header.Get(frame.Message); !strings.Contains(msg, want) {
		r.t.Fatalf("ERROR message %q (body %q), want it to contain %q", msg, f.Body, want)
	}
	r.expectClosed(testDieDelay)
	return f
}

// recv waits for one message on sub.
func recv(t *testing.T, sub *stomp.Subscription) *stomp.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok {
			t.Fatalf("subscription %s closed", sub.Id())
		}
		if m.Err != nil {
			t.Fatalf("subscription %s: %v", sub.Id(), m.Err)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %s", sub.Destination())
	}
	return nil
}

// expectNone asserts nothing arrives on sub for a short while.
func expectNone(t *testing.T, sub *stomp.Subscription, d time.Duration) {
	t.Helper()
	select {
	case m := <-sub.C:
		if m != nil {
			t.Fatalf("unexpected message on %s: %q (err %v)", sub.Destination(), m.Body, m.Err)
		}
	case <-time.After(d):
	}
}

// subscribe subscribes and waits until the server has processed the SUBSCRIBE: go-stomp does not ask
// for a receipt, so a SEND with a receipt on the same connection (frames are handled in order) stands in.
func subscribe(t *testing.T, c *stomp.Conn, dest string, ack stomp.AckMode, opts ...func(*frame.Frame) error) *stomp.Subscription {
	t.Helper()
	s, err := c.Subscribe(dest, ack, opts...)
	if err != nil {
		t.Fatalf("subscribe %s: %v", dest, err)
	}
	if err := c.Send("/topic/lyre-test-sync", "", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("sync after subscribe: %v", err)
	}
	return s
}
