package prototest_test

import (
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// An echo handler reached through the default detecting connector.
func TestStartServerDialWaitFor(t *testing.T) {
	echo := protocol.HandlerFunc(func(c *protocol.Conn) {
		buf := make([]byte, 64)
		for {
			n, err := c.Reader().Read(buf)
			if n > 0 {
				c.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
	srv, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: echo})
	if len(addrs) != 1 || srv.Addrs()["test"].String() != addrs[0] {
		t.Fatalf("addrs %v, server %v", addrs, srv.Addrs())
	}
	nc := prototest.Dial(t, addrs[0])
	in := "CONNECT\n\n\x00"
	if _, err := nc.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(in))
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, got); err != nil || string(got) != in {
		t.Fatalf("echo %q, %v", got, err)
	}
	polls := 0
	prototest.WaitFor(t, time.Second, func() bool { polls++; return polls == 3 })
}

// A client whose CONNECT the handler answers and then returns: ExpectClosed sees the close.
func TestExpectClosed(t *testing.T) {
	bye := protocol.HandlerFunc(func(c *protocol.Conn) { c.Write([]byte("ERROR\n\n\x00")) })
	_, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: bye})
	nc := prototest.Dial(t, addrs[0])
	_, _ = nc.Write([]byte("CONNECT\n\n\x00"))
	prototest.ExpectClosed(t, nc, time.Second)
}
