package protocol_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer starts a server logging into an observer, with one connector on 127.0.0.1:0.
func startServer(t *testing.T, handlers map[string]protocol.Handler, c conf.Connector, tune func(*protocol.Server)) (*protocol.Server, string, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	s := protocol.NewServer(zap.New(core), handlers)
	if tune != nil {
		tune(s)
	}
	if c.Name == "" {
		c.Name = "test"
	}
	c.Network, c.Address = "tcp", "127.0.0.1:0"
	if c.Protocol == "" && c.Detect == nil {
		for _, p := range []string{protocol.MQTT, protocol.STOMP} {
			if handlers[p] != nil {
				c.Detect = append(c.Detect, p)
			}
		}
	}
	if err := s.Listen(c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, s.Addrs()[c.Name].String(), logs
}

// capture is a handler that reads everything into a buffer and publishes its Conn.
type capture struct {
	mu    sync.Mutex
	got   bytes.Buffer
	conns chan *protocol.Conn
}

func newCapture() *capture { return &capture{conns: make(chan *protocol.Conn, 16)} }

func (h *capture) Serve(c *protocol.Conn) {
	h.conns <- c
	buf := make([]byte, 1024)
	for {
		n, err := c.Reader().Read(buf)
		h.mu.Lock()
		h.got.Write(buf[:n])
		h.mu.Unlock()
		if err != nil {
			c.Close(err)
			return
		}
	}
}

func (h *capture) bytes() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.Clone(h.got.Bytes())
}

func (h *capture) conn(t *testing.T) *protocol.Conn {
	t.Helper()
	select {
	case c := <-h.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection reached the handler")
		return nil
	}
}

func expectClosed(t *testing.T, nc net.Conn, d time.Duration) {
	t.Helper()
	prototest.ExpectClosed(t, nc, d)
}

func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string) observer.LoggedEntry {
	t.Helper()
	var e []observer.LoggedEntry
	prototest.WaitFor(t, 2*time.Second, func() bool {
		e = logs.FilterMessage(msg).All()
		return len(e) > 0
	})
	return e[0]
}

func TestListenLogsAndAddrs(t *testing.T) {
	h := newCapture()
	s, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h},
		conf.Connector{Name: "main"}, nil)
	if s.Addrs()["main"].String() != addr || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addrs = %v; want main bound to a real port", s.Addrs())
	}
	e := waitLog(t, logs, "listening")
	f := e.ContextMap()
	if f["connector"] != "main" || f["address"] != addr || e.Level != zapcore.InfoLevel {
		t.Fatalf("listening log = %v %v", e.Level, f)
	}
}

func TestListenErrorNamesConnector(t *testing.T) {
	h := newCapture()
	s, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h}, conf.Connector{Name: "first"}, nil)
	err := s.Listen(conf.Connector{Name: "second", Network: "tcp", Address: addr, Protocol: protocol.MQTT})
	if err == nil || !strings.Contains(err.Error(), `"second"`) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Listen on a used address = %v; want an error naming the connector and %s", err, addr)
	}
	err = s.Listen(conf.Connector{Name: "third", Network: "tcp", Address: "127.0.0.1:0", Protocol: "amqp"})
	if err == nil || !strings.Contains(err.Error(), "amqp") {
		t.Fatalf("Listen with an unknown protocol = %v; want an error", err)
	}
	if err := s.Listen(conf.Connector{Name: "first", Network: "tcp", Address: "127.0.0.1:0", Protocol: "mqtt"}); err == nil {
		t.Fatal("Listen with a duplicate connector name succeeded")
	}
}

func TestListenAfterShutdown(t *testing.T) {
	s := protocol.NewServer(nil, map[string]protocol.Handler{protocol.MQTT: newCapture()})
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := s.Listen(conf.Connector{Name: "late", Network: "tcp", Address: "127.0.0.1:0", Protocol: protocol.MQTT})
	if !errors.Is(err, protocol.ErrServerClosed) {
		t.Fatalf("Listen after Shutdown = %v; want ErrServerClosed", err)
	}
}

// The handler must read exactly the bytes the client sent, sniffed prefix included, however they arrive.
func TestReplay(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB, beyond SniffLimit
	for _, tc := range []struct {
		name   string
		chunks []string
	}{
		{"mqtt one write", []string{"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1" + string(big)}},
		{"mqtt byte by byte", strings.Split("\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1", "")},
		{"stomp split", []string{"\r\n\n", "CONN", "ECT\r", "\nhost:/\n\n\x00", string(big)}},
		{"stomp exactly decided", []string{"STOMP\n", "\n\x00"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCapture()
			_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h}, conf.Connector{}, nil)
			nc := prototest.Dial(t, addr)
			var want []byte
			for _, c := range tc.chunks {
				if _, err := nc.Write([]byte(c)); err != nil {
					t.Fatal(err)
				}
				want = append(want, c...)
				time.Sleep(time.Millisecond) // let chunks arrive as separate segments
			}
			prototest.WaitFor(t, 5*time.Second, func() bool { return len(h.bytes()) >= len(want) })
			if got := h.bytes(); !bytes.Equal(got, want) {
				t.Fatalf("handler read %d bytes %q...; want %d bytes %q...", len(got), got[:min(len(got), 32)], len(want), want[:min(len(want), 32)])
			}
			c := h.conn(t)
			if c.Protocol() != protocol.MQTT && c.Protocol() != protocol.STOMP {
				t.Fatalf("Protocol() = %q", c.Protocol())
			}
			if c.ID() == 0 || c.RemoteAddr().String() != nc.LocalAddr().String() || c.Connector().Name != "test" {
				t.Fatalf("conn identity: id %d remote %v connector %q", c.ID(), c.RemoteAddr(), c.Connector().Name)
			}
		})
	}
}

func TestDetectedProtocol(t *testing.T) {
	mq, st := newCapture(), newCapture()
	_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: mq, protocol.STOMP: st}, conf.Connector{}, nil)
	a := prototest.Dial(t, addr)
	_, _ = a.Write([]byte("\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02c1"))
	if c := mq.conn(t); c.Protocol() != protocol.MQTT {
		t.Fatalf("MQIsdp connection has protocol %q", c.Protocol())
	}
	b := prototest.Dial(t, addr)
	_, _ = b.Write([]byte("STOMP\naccept-version:1.2\n\n\x00"))
	c := st.conn(t)
	if c.Protocol() != protocol.STOMP {
		t.Fatalf("STOMP connection has protocol %q", c.Protocol())
	}
	if c.Log() == nil {
		t.Fatal("nil logger")
	}
}

// A connector with `protocol` set skips sniffing: the handler gets even bytes Sniff would refuse.
func TestFixedProtocolSkipsSniffing(t *testing.T) {
	h := newCapture()
	_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.MQTT: h}, conf.Connector{Protocol: protocol.MQTT}, nil)
	nc := prototest.Dial(t, addr)
	c := h.conn(t) // before any byte is sent
	if c.Protocol() != protocol.MQTT {
		t.Fatalf("Protocol() = %q", c.Protocol())
	}
	_, _ = nc.Write([]byte("GET / HTTP/1.1\r\n"))
	prototest.WaitFor(t, 2*time.Second, func() bool { return string(h.bytes()) == "GET / HTTP/1.1\r\n" })
}

func TestUnknownProtocolClosedAtOnce(t *testing.T) {
	for _, tc := range []struct{ name, in, log string }{
		{"junk", "HELLO", "unknown protocol"},
		{"http", "GET / HTTP/1.1\r\nHost: broker\r\n\r\n", "http request on broker port"},
		{"tls", "\x16\x03\x01\x00\xa5", "unknown protocol"},
		{"mqtt bad varint", "\x10\xff\xff\xff\xff\xff", "unknown protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCapture()
			_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h},
				conf.Connector{DetectTimeout: time.Minute}, nil)
			nc := prototest.Dial(t, addr)
			_, _ = nc.Write([]byte(tc.in))
			expectClosed(t, nc, 100*time.Millisecond)
			e := waitLog(t, logs, tc.log)
			if e.ContextMap()["connector"] != "test" {
				t.Fatalf("log fields %v", e.ContextMap())
			}
			if len(h.bytes()) != 0 {
				t.Fatal("handler ran for an unknown protocol")
			}
		})
	}
}

func TestDetectTimeout(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"silent", ""},
		{"partial mqtt", "\x10\x0e\x00\x04MQ"},
		{"heart-beats only", "\n\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCapture()
			_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h},
				conf.Connector{DetectTimeout: 200 * time.Millisecond}, nil)
			start := time.Now()
			nc := prototest.Dial(t, addr)
			_, _ = nc.Write([]byte(tc.in))
			expectClosed(t, nc, 2*time.Second)
			if el := time.Since(start); el < 150*time.Millisecond {
				t.Fatalf("closed after %s, before detect_timeout 200ms", el)
			}
			waitLog(t, logs, "detect timeout")
		})
	}
}

func TestMaxConnections(t *testing.T) {
	h := newCapture()
	_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.STOMP: h},
		conf.Connector{Protocol: protocol.STOMP, MaxConnections: 2}, nil)
	a := prototest.Dial(t, addr)
	h.conn(t)
	b := prototest.Dial(t, addr)
	h.conn(t)
	// The third is over the limit: closed at once, not left in the backlog.
	c := prototest.Dial(t, addr)
	expectClosed(t, c, 500*time.Millisecond)
	e := waitLog(t, logs, "max connections reached, connection refused")
	if e.Level != zapcore.WarnLevel || e.ContextMap()["max_connections"] != int64(2) {
		t.Fatalf("refusal log %v %v", e.Level, e.ContextMap())
	}
	// Once one leaves, a new one is served.
	_ = a.Close()
	prototest.WaitFor(t, 2*time.Second, func() bool {
		d := prototest.Dial(t, addr)
		select {
		case <-h.conns:
			_ = d.Close()
			return true
		case <-time.After(100 * time.Millisecond):
			_ = d.Close()
			return false
		}
	})
	_ = b
}

// When Serve returns, what it queued is flushed, then the connection is closed.
func TestHandlerReturnFlushes(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 256<<10)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		c.Write([]byte("RECEIPT\n\n\x00"))
		c.Write(body)
	})
	_, addr, _ := startServer(t, map[string]protocol.Handler{protocol.STOMP: h}, conf.Connector{}, nil)
	nc := prototest.Dial(t, addr)
	_, _ = nc.Write([]byte("CONNECT\n\n\x00"))
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("RECEIPT\n\n\x00"), body...); !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes; want %d", len(got), len(want))
	}
}

func TestHandlerPanicClosesConnection(t *testing.T) {
	h := protocol.HandlerFunc(func(c *protocol.Conn) { panic("boom") })
	_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.STOMP: h}, conf.Connector{}, nil)
	nc := prototest.Dial(t, addr)
	_, _ = nc.Write([]byte("CONNECT\n\n\x00"))
	expectClosed(t, nc, time.Second)
	e := waitLog(t, logs, "connection handler panic")
	if e.Level != zapcore.ErrorLevel || !strings.Contains(e.ContextMap()["stack"].(string), "goroutine") {
		t.Fatalf("panic log %v %v", e.Level, e.ContextMap())
	}
	// The server still serves.
	nc2 := prototest.Dial(t, addr)
	_, _ = nc2.Write([]byte("CONNECT\n\n\x00"))
	expectClosed(t, nc2, time.Second)
}

func TestShutdownCallsHooksAndWaits(t *testing.T) {
	hooked := make(chan *protocol.Conn, 1)
	var hookCalls sync.WaitGroup
	hookCalls.Add(1)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		if c.Protocol() == protocol.STOMP {
			c.OnShutdown(func() {
				defer hookCalls.Done()
				c.Write([]byte("ERROR\nmessage:shutting down\n\n\x00"))
				c.CloseAfter(protocol.ErrServerClosed, time.Second)
			})
			hooked <- c
		}
		_, _ = io.Copy(io.Discard, c.Reader())
	})
	core, _ := observer.New(zapcore.DebugLevel)
	s := protocol.NewServer(zap.New(core), map[string]protocol.Handler{protocol.STOMP: h, protocol.MQTT: h})
	if err := s.Listen(conf.Connector{Name: "t", Network: "tcp", Address: "127.0.0.1:0", Detect: []string{"mqtt", "stomp"}}); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()["t"].String()
	withHook := prototest.Dial(t, addr)
	_, _ = withHook.Write([]byte("CONNECT\n\n\x00"))
	c := <-hooked
	noHook := prototest.Dial(t, addr)
	_, _ = noHook.Write([]byte(mqttConnect))
	sniffing := prototest.Dial(t, addr)
	_, _ = sniffing.Write([]byte("CONN"))

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	hookCalls.Wait()
	select {
	case <-c.Done():
	default:
		t.Fatal("Shutdown returned before the hooked connection closed")
	}
	if !errors.Is(c.Err(), protocol.ErrServerClosed) {
		t.Fatalf("close reason %v", c.Err())
	}
	_ = withHook.SetReadDeadline(time.Now().Add(time.Second))
	got, _ := io.ReadAll(withHook)
	if string(got) != "ERROR\nmessage:shutting down\n\n\x00" {
		t.Fatalf("client got %q; want the goodbye frame", got)
	}
	expectClosed(t, noHook, time.Second)
	expectClosed(t, sniffing, time.Second)
	// New connections are refused.
	if nc, err := net.Dial("tcp", addr); err == nil {
		expectClosed(t, nc, time.Second)
		_ = nc.Close()
	}
}

// A hook that never closes its connection: Shutdown gives up at the context's deadline and closes it.
func TestShutdownForcesAfterContext(t *testing.T) {
	var hookCalls atomic.Int32
	registered := make(chan struct{})
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		c.OnShutdown(func() { hookCalls.Add(1) }) // ignores the shutdown
		close(registered)
		_, _ = io.Copy(io.Discard, c.Reader())
	})
	s := protocol.NewServer(nil, map[string]protocol.Handler{protocol.STOMP: h})
	if err := s.Listen(conf.Connector{Name: "t", Network: "tcp", Address: "127.0.0.1:0", Protocol: "stomp"}); err != nil {
		t.Fatal(err)
	}
	nc := prototest.Dial(t, s.Addrs()["t"].String())
	_, _ = nc.Write([]byte("CONNECT\n\n\x00"))
	<-registered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v; want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Fatalf("Shutdown took %s; want about 200ms", el)
	}
	expectClosed(t, nc, time.Second)
	// Shutdown again: nothing left to wait for, and the hook is not run twice.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
	if n := hookCalls.Load(); n != 1 {
		t.Fatalf("shutdown hook ran %d times; want 1", n)
	}
}

const mqttConnect = "\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"

// The writer stays alive only while something is queued; a client that never reads is closed as a slow
// consumer once a write stalls for WriteTimeout.
func TestSlowConsumerTCP(t *testing.T) {
	closed := make(chan error, 1)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		chunk := make([]byte, 1<<20)
		for i := 0; i < 256 && c.Write(chunk); i++ {
		}
		<-c.Done()
		closed <- c.Err()
	})
	_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.STOMP: h}, conf.Connector{}, func(s *protocol.Server) {
		s.WriteTimeout = 200 * time.Millisecond
		s.MaxPending = 64 << 20
	})
	nc := prototest.Dial(t, addr)
	_, _ = nc.Write([]byte("CONNECT\n\n\x00"))
	select {
	case err := <-closed:
		if !errors.Is(err, protocol.ErrSlowConsumer) {
			t.Fatalf("close reason %v; want ErrSlowConsumer", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow consumer not closed")
	}
	if e := waitLog(t, logs, "connection closed"); e.Level != zapcore.WarnLevel {
		t.Fatalf("slow consumer closed at level %v", e.Level)
	}
}

// A panicking shutdown hook is logged and its connection closed; Shutdown still completes.
func TestShutdownHookPanic(t *testing.T) {
	registered := make(chan *protocol.Conn, 1)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		c.OnShutdown(func() { panic("hook") })
		registered <- c
		_, _ = io.Copy(io.Discard, c.Reader())
	})
	core, logs := observer.New(zapcore.DebugLevel)
	s := protocol.NewServer(zap.New(core), map[string]protocol.Handler{protocol.MQTT: h})
	if err := s.Listen(conf.Connector{Name: "t", Network: "tcp", Address: "127.0.0.1:0", Protocol: "mqtt"}); err != nil {
		t.Fatal(err)
	}
	nc := prototest.Dial(t, s.Addrs()["t"].String())
	c := <-registered
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if c.Err() == nil || !strings.Contains(c.Err().Error(), "panic") {
		t.Fatalf("close reason %v", c.Err())
	}
	waitLog(t, logs, "shutdown hook panic")
	expectClosed(t, nc, time.Second)
}

// A burst of unrecognised clients (a port scanner) logs one line, not one per connection.
func TestDetectFailureLogRateLimited(t *testing.T) {
	h := newCapture()
	_, addr, logs := startServer(t, map[string]protocol.Handler{protocol.MQTT: h, protocol.STOMP: h}, conf.Connector{}, nil)
	for i := 0; i < 20; i++ {
		nc := prototest.Dial(t, addr)
		_, _ = nc.Write([]byte("HELLO"))
		expectClosed(t, nc, time.Second)
	}
	if n := logs.FilterMessage("unknown protocol").Len(); n != 1 {
		t.Fatalf("%d log lines for a burst of 20 unknown clients; want 1", n)
	}
}

// Shutdown while publishers outside the connections keep writing to them (as router deliveries do):
// no panic, no leaked goroutine (goleak), every connection closed.
func TestShutdownUnderLoad(t *testing.T) {
	var mu sync.Mutex
	var conns []*protocol.Conn
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		c.OnShutdown(func() {
			c.Write([]byte("bye"))
			c.CloseAfter(protocol.ErrServerClosed, 100*time.Millisecond)
		})
		_, _ = io.Copy(io.Discard, c.Reader())
	})
	s := protocol.NewServer(nil, map[string]protocol.Handler{protocol.STOMP: h, protocol.MQTT: h})
	if err := s.Listen(conf.Connector{Name: "t", Network: "tcp", Address: "127.0.0.1:0", Detect: []string{"mqtt", "stomp"}}); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()["t"].String()
	const clients = 20
	for i := 0; i < clients; i++ {
		nc := prototest.Dial(t, addr)
		_, _ = nc.Write([]byte("CONNECT\n\n\x00"))
		if i%2 == 0 {
			go func() { _, _ = io.Copy(io.Discard, nc) }() // half read, half never do
		}
	}
	prototest.WaitFor(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(conns) == clients
	})
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	for p := 0; p < 4; p++ {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			msg := bytes.Repeat([]byte("m"), 512)
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				cs := conns
				mu.Unlock()
				for _, c := range cs {
					c.Write(msg)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // the load runs for a while, not waiting for a condition
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	close(stop)
	pubs.Wait()
	for _, c := range conns {
		select {
		case <-c.Done():
		default:
			t.Fatalf("connection %d still open after Shutdown", c.ID())
		}
		if c.Write([]byte("late")) {
			t.Fatal("Write accepted after Shutdown")
		}
	}
}
