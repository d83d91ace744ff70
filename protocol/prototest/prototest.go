// Package prototest holds the test helpers that Lyre's protocol packages and commands share: a real
// protocol.Server on loopback (StartServer, Dial, ExpectClosed), polling instead of sleeping (WaitFor,
// WaitForErr), memory measurement for idle-connection tests (MemInUse, RaceEnabled), a silent logger
// for go-stomp clients (NopStompLogger) and a Prometheus scrape parsed by the text parser (Scrape). The router and the store do not use it: they never import
// anything under protocol.
package prototest

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
)

// StartServer starts a server with handlers and the given connectors, each bound to tcp 127.0.0.1:0
// whatever its Network and Address say, and returns it with the bound addresses in connector order.
// With no connector it starts one named "test" detecting every protocol of handlers; a connector
// without a name is named "test<i>". The server logs through t and is shut down by t.Cleanup (5s grace).
func StartServer(t testing.TB, handlers map[string]protocol.Handler, connectors ...conf.Connector) (*protocol.Server, []string) {
	t.Helper()
	return StartServerWith(t, handlers, nil, connectors...)
}

// StartServerWith is StartServer calling setup, when not nil, on the server before it listens (to set
// its management handler, which may need the server itself).
func StartServerWith(t testing.TB, handlers map[string]protocol.Handler, setup func(*protocol.Server), connectors ...conf.Connector) (*protocol.Server, []string) {
	t.Helper()
	return StartServerLog(t, zaptest.NewLogger(t), handlers, setup, connectors...)
}

// StartServerLog is StartServerWith with the server logging to log instead of t: benchmarks give it
// zap.NewNop(), since a line per connection through t costs more than the connection.
func StartServerLog(t testing.TB, log *zap.Logger, handlers map[string]protocol.Handler, setup func(*protocol.Server), connectors ...conf.Connector) (*protocol.Server, []string) {
	t.Helper()
	if len(connectors) == 0 {
		c := conf.Connector{Name: "test"}
		for _, p := range []string{protocol.MQTT, protocol.STOMP} {
			if handlers[p] != nil {
				c.Detect = append(c.Detect, p)
			}
		}
		connectors = []conf.Connector{c}
	}
	s := protocol.NewServer(log, handlers)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("prototest: shutdown: %v", err)
		}
	})
	if setup != nil {
		setup(s)
	}
	addrs := make([]string, 0, len(connectors))
	for i, c := range connectors {
		if c.Name == "" {
			c.Name = "test" + strconv.Itoa(i)
		}
		// Tests never use fixed ports, whatever the connector says.
		c.Network, c.Address = "tcp", "127.0.0.1:0"
		if err := s.Listen(c); err != nil {
			t.Fatalf("prototest: %v", err)
		}
		addrs = append(addrs, s.Addrs()[c.Name].String())
	}
	return s, addrs
}

// Dial connects to addr (timeout 5s) and closes the connection at the end of the test.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("prototest: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return nc
}

// WaitFor polls cond every few milliseconds until it returns true, failing the test after timeout. Tests
// wait with it instead of sleeping for a guessed time.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("prototest: condition not met within %s", timeout)
	}
}

// WaitForErr is WaitFor for a condition that says what it still waits for: cond returns nil once it
// holds, and its last error goes into the failure message.
func WaitForErr(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	var err error
	if !poll(timeout, func() bool { err = cond(); return err == nil }) {
		t.Fatalf("prototest: condition not met within %s: %v", timeout, err)
	}
}

// poll calls cond every 5ms until it returns true or timeout has passed, and reports whether it held.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// ExpectClosed fails the test unless the server closes nc within d: reading (and discarding whatever
// arrives) ends with EOF or a connection reset, not a timeout.
func ExpectClosed(t testing.TB, nc net.Conn, d time.Duration) {
	t.Helper()
	start := time.Now()
	_ = nc.SetReadDeadline(start.Add(d + time.Second))
	n, err := io.Copy(io.Discard, nc) // nil error at EOF
	if err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("prototest: read after %d bytes: %v; want the connection closed within %s", n, err, d)
	}
	if el := time.Since(start); el > d {
		t.Fatalf("prototest: connection closed after %s; want within %s", el, d)
	}
}
