package prototest

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// MemInUse returns the live heap and the goroutine stacks in use, after two garbage collections: the
// second empties the sync.Pool victim caches the first one filled. Idle-connection tests take it before
// and after opening many connections; they check their bounds only when RaceEnabled is false.
func MemInUse() (heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse)
}

// IdleCost is what one idle connection costs a process: live heap and goroutine stack bytes, and
// goroutines, each per connection, the client's side of the socket included in the heap.
type IdleCost struct {
	Heap, Stack int64
	Goroutines  float64
}

// MeasureIdle opens n connections with open, which returns each once its handshake is answered (it must
// keep no per-connection state beyond the net.Conn, or that counts too), waits for the goroutines the
// handshakes started to end (writers; readers of connections that park), and returns what the
// connections cost. It closes them at the end of the test.
func MeasureIdle(t testing.TB, n int, open func() net.Conn) IdleCost {
	t.Helper()
	clients := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, nc := range clients {
			_ = nc.Close()
		}
	})
	g0 := runtime.NumGoroutine()
	heap0, stack0 := MemInUse()
	for range n {
		clients = append(clients, open())
	}
	// A connection that stays busy keeps its reader for a while before parking (protocol's linger): the
	// cost counted is the one at rest. Connections that never park are counted as they are.
	settled := func() bool { return runtime.NumGoroutine()-g0 <= n/200 }
	for deadline := time.Now().Add(3 * time.Second); !settled() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	g := runtime.NumGoroutine() - g0
	heap, stack := MemInUse()
	return IdleCost{Heap: (heap - heap0) / int64(n), Stack: (stack - stack0) / int64(n), Goroutines: float64(g) / float64(n)}
}
