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
	"github.com/lyremq/lyre/protocol/prototest"
)

// CloseConnector stops one connector: its listener refuses new connections and its connections get their
// goodbye (OnShutdown) or are closed; another connector's connection is not touched. Listen binds a new
// one while the server runs.
func TestCloseConnector(t *testing.T) {
	conns := make(chan *protocol.Conn, 4)
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		if c.Connector().Name == "a" {
			c.OnShutdown(func() {
				c.Write([]byte("bye"))
				c.CloseAfter(protocol.ErrServerClosed, time.Second)
			})
		}
		conns <- c
		_, _ = io.Copy(io.Discard, c.Reader())
	})
	core, logs := observer.New(zapcore.DebugLevel)
	s := protocol.NewServer(zap.New(core), map[string]protocol.Handler{protocol.STOMP: h})
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	for _, name := range []string{"a", "b"} {
		if err := s.Listen(conf.Connector{Name: name, Network: "tcp", Address: "127.0.0.1:0", Protocol: protocol.STOMP}); err != nil {
			t.Fatal(err)
		}
	}
	addrA, addrB := s.Addrs()["a"].String(), s.Addrs()["b"].String()
	ca, cb := prototest.Dial(t, addrA), prototest.Dial(t, addrB)
	for range 2 {
		<-conns
	}
	closing, ok := s.CloseConnector("a")
	if !ok || len(closing) != 1 || closing[0].Connector().Name != "a" {
		t.Fatalf("CloseConnector = %v, %v", closing, ok)
	}
	_ = ca.SetReadDeadline(time.Now().Add(2 * time.Second))
	if got, _ := io.ReadAll(ca); string(got) != "bye" {
		t.Fatalf("a's client got %q, want its goodbye", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.WaitGone(ctx, closing); err != nil {
		t.Fatal(err)
	}
	if nc, err := net.DialTimeout("tcp", addrA, time.Second); err == nil {
		_ = nc.Close()
		t.Fatal("the closed connector still accepts")
	}
	if _, ok := s.CloseConnector("a"); ok {
		t.Fatal("closed twice")
	}
	if _, err := cb.Write([]byte("still here")); err != nil {
		t.Fatalf("b's connection: %v", err)
	}
	if got := s.Connectors(); len(got) != 1 || got[0].Name != "b" {
		t.Fatalf("Connectors = %+v", got)
	}
	waitLog(t, logs, "connector closed")
	// Bound again under the same name, on a new port.
	if err := s.Listen(conf.Connector{Name: "a", Network: "tcp", Address: "127.0.0.1:0", Protocol: protocol.STOMP}); err != nil {
		t.Fatal(err)
	}
	prototest.Dial(t, s.Addrs()["a"].String())
	<-conns
}

// Recheck runs the hooks of logged-in connections and returns those closing; a login that registers its
// hook after a Recheck ran is caught up with at once.
func TestRecheckHooks(t *testing.T) {
	type reg struct {
		c    *protocol.Conn
		runs chan struct{}
	}
	regs := make(chan reg, 4)
	hold := make(chan struct{})
	h := protocol.HandlerFunc(func(c *protocol.Conn) {
		if c.Connector().Name == "late" {
			<-hold // logging in while a reload runs
		}
		runs := make(chan struct{}, 4)
		c.OnRecheck(func() bool {
			runs <- struct{}{}
			c.CloseAfter(protocol.ErrAccessChanged, time.Second)
			return true
		})
		regs <- reg{c, runs}
		_, _ = io.Copy(io.Discard, c.Reader())
	})
	s := protocol.NewServer(zap.NewNop(), map[string]protocol.Handler{protocol.STOMP: h})
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	for _, name := range []string{"now", "late"} {
		if err := s.Listen(conf.Connector{Name: name, Network: "tcp", Address: "127.0.0.1:0", Protocol: protocol.STOMP}); err != nil {
			t.Fatal(err)
		}
	}
	prototest.Dial(t, s.Addrs()["now"].String())
	r := <-regs
	late := prototest.Dial(t, s.Addrs()["late"].String())
	_, _ = late.Write([]byte("x"))
	prototest.WaitFor(t, 2*time.Second, func() bool { return len(s.Connections()) == 2 })
	closing := s.Recheck()
	if len(closing) != 1 || closing[0] != r.c {
		t.Fatalf("Recheck = %v, want the logged-in connection", closing)
	}
	<-r.runs
	<-r.c.Done()
	if !errors.Is(r.c.Err(), protocol.ErrAccessChanged) {
		t.Fatalf("close reason %v", r.c.Err())
	}
	close(hold)
	lr := <-regs
	select {
	case <-lr.runs:
	case <-time.After(2 * time.Second):
		t.Fatal("a hook registered after a Recheck did not run")
	}
	prototest.ExpectClosed(t, late, 2*time.Second)
}
