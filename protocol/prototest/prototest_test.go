package prototest_test

import (
	"errors"
	"fmt"
	"io"
	"runtime"
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

// fatalTB records a Fatalf and ends the goroutine, as testing.T does, so a test can watch a helper fail.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failure runs fn with a fatalTB and returns what it failed with ("" if it returned).
func failure(t *testing.T, fn func(tb testing.TB)) string {
	ft := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	return ft.msg
}

// WaitFor and WaitForErr give up after their timeout; WaitForErr says what it still waited for.
func TestWaitForTimesOut(t *testing.T) {
	msg := failure(t, func(tb testing.TB) {
		prototest.WaitFor(tb, 20*time.Millisecond, func() bool { return false })
	})
	if msg != "prototest: condition not met within 20ms" {
		t.Errorf("WaitFor failed with %q", msg)
	}
	msg = failure(t, func(tb testing.TB) {
		prototest.WaitForErr(tb, 20*time.Millisecond, func() error { return errors.New("still waiting") })
	})
	if msg != "prototest: condition not met within 20ms: still waiting" {
		t.Errorf("WaitForErr failed with %q", msg)
	}
	polls := 0
	if msg := failure(t, func(tb testing.TB) {
		prototest.WaitForErr(tb, time.Second, func() error {
			if polls++; polls < 3 {
				return fmt.Errorf("poll %d", polls)
			}
			return nil
		})
	}); msg != "" || polls != 3 {
		t.Errorf("WaitForErr failed with %q after %d polls; want success at the third", msg, polls)
	}
}
