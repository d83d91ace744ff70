package stomp

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
)

// TestIdleSTOMPConnectionMemory measures what an idle, connected STOMP session with one subscription costs
// (DESIGN.md §1: idle connections must be cheap), client socket included.
func TestIdleSTOMPConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many sockets")
	}
	// Info level, as in production: debug logging builds each connection's logger.
	b := startBroker(t, func(_ *conf.Connector, h *Handler) { h.log = zap.NewNop() })
	const n = 500
	hello := []byte("CONNECT\naccept-version:1.2\nhost:default\nheart-beat:0,0\n\n\x00" +
		"SUBSCRIBE\nid:1\ndestination:/topic/idle.*\nreceipt:r\n\n\x00")
	heapBefore, stackBefore := prototest.MemInUse()
	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, nc := range clients {
			_ = nc.Close()
		}
	}()
	for range n {
		// Not prototest.Dial: its per-connection test cleanup would be counted as broker memory.
		nc, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, nc)
		if _, err := nc.Write(hello); err != nil {
			t.Fatal(err)
		}
	}
	// Read CONNECTED and RECEIPT without a per-client buffered reader, which would count as broker memory.
	var buf [512]byte
	for _, nc := range clients {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		for bytes.Count(got, []byte{0}) < 2 {
			k, err := nc.Read(buf[:])
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			got = append(got, buf[:k]...)
		}
		if !bytes.HasPrefix(got, []byte("CONNECTED")) || !bytes.Contains(got, []byte("RECEIPT")) {
			t.Fatalf("got %q", got)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the writers exit
	heapAfter, stackAfter := prototest.MemInUse()
	heap, stack := (heapAfter-heapBefore)/n, (stackAfter-stackBefore)/n
	t.Logf("per idle STOMP connection with one subscription: %d bytes heap (client socket included), %d bytes stack", heap, stack)
	// Measured: ~2.8 KiB heap, 4 KiB stack (SUBSCRIBE runs on the reader and grows its stack; parked in
	// Reader.Wait on small frames it is shrunk back to 4 KiB). The bounds leave a margin.
	if !prototest.RaceEnabled && (heap > 3<<10+512 || stack > 5<<10) {
		t.Fatalf("%d heap and %d stack bytes per idle connection; want at most 3.5 KiB and 5 KiB", heap, stack)
	}
}
