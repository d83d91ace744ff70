package virtualhost_test

import (
	"encoding/binary"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// backlogHeapBound is the most heap in use (after a GC) the broker may hold while a backlog of 1 KB
// persistent messages of any length sits in one queue, is restored, and drains: the router's window
// (router.DefaultSwapMessages and DefaultSwapBytes, so about 10 MiB of 1 KB messages), a loaded window in
// transit, and badger: its memtables and block cache (3 × 8 MiB + 16 MiB, see badgerstore.Options) and,
// most of it, the table builders of its flushes and compactions (measured 100-150 MiB at a million).
// The anonymous RSS is logged beside it; the total RSS also counts the pages of badger's memory-mapped
// files, which the kernel reclaims at will.
const backlogHeapBound = 200 << 20

// backlogAnonBound bounds the anonymous resident memory likewise (the heap, goroutine stacks, the
// runtime's own), without the race detector, whose shadow memory adds to it.
const backlogAnonBound = 256 << 20

// TestBacklog100k is TestBacklogMillion scaled down to 100k messages (25k under the race detector,
// which slows the store's commits tenfold), to run always.
func TestBacklog100k(t *testing.T) {
	n := 100_000
	if raceEnabled {
		n = 25_000
	}
	testBacklog(t, n)
}

// TestBacklogMillion queues a million 1 KB persistent messages to one queue through the durable path
// (group commit, sync on), checks that the heap stays bounded while they wait, across a restart, and
// while they drain, then consumes them in order. It takes about a minute: skipped with -short and under
// the race detector (ten times slower there); TestBacklog100k runs the same scaled down.
func TestBacklogMillion(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a million messages: skipped with -short and -race (TestBacklog100k runs the same scaled down)")
	}
	testBacklog(t, 1_000_000)
}

// heapInUse collects garbage, returns what it can to the system (so the anonymous RSS measured next is
// what the process holds), and returns the heap in use.
func heapInUse() uint64 {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// rss returns the process's resident set and its anonymous part in bytes (0 where /proc is missing).
// The rest is file pages: badger maps its files, and pages of them read or written count as resident
// until the kernel needs them back.
func rss() (total, anon uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	field := func(line, name string) (uint64, bool) {
		rest, ok := strings.CutPrefix(line, name+":")
		if !ok {
			return 0, false
		}
		kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		return kb << 10, true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := field(line, "VmRSS"); ok {
			total = v
		} else if v, ok := field(line, "RssAnon"); ok {
			anon = v
		}
	}
	return total, anon
}

func testBacklog(t *testing.T, n int) {
	dir := t.TempDir()
	ro := router.Options{MaxQueueMessages: n + 1, MaxQueueBytes: int64(n+1) << 11}
	h, err := openHost(durableConf(dir), ro)
	if err != nil {
		t.Fatal(err)
	}
	qd := router.Destination{Kind: router.Queue, Path: []string{"backlog"}}
	check := func(when string) {
		t.Helper()
		heap := heapInUse()
		total, anon := rss()
		t.Logf("%s: heap in use %d MiB, RSS %d MiB (anonymous %d MiB)", when, heap>>20, total>>20, anon>>20)
		if heap > backlogHeapBound {
			t.Fatalf("%s: heap in use %d MiB, bound %d MiB", when, heap>>20, backlogHeapBound>>20)
		}
		if anon > backlogAnonBound && !raceEnabled {
			t.Fatalf("%s: anonymous RSS %d MiB, bound %d MiB", when, anon>>20, backlogAnonBound>>20)
		}
	}

	// One publisher with up to 1000 messages awaiting their write, as a client pipelining QoS 1 publishes:
	// their writes are group committed.
	start := time.Now()
	window := make(chan struct{}, 1000)
	var failed sync.Once
	var pubErr error
	for i := range n {
		body := make([]byte, 1024)
		binary.BigEndian.PutUint64(body, uint64(i))
		tr := &virtualhost.Tracker{}
		m := &router.Message{Dest: qd, Body: body, QoS: 1, Persistent: true, Tracker: tr}
		window <- struct{}{}
		if pr := h.Router.Publish(m); pr.Err != nil {
			t.Fatalf("publish %d: %v", i, pr.Err)
		}
		tr.Then(func(err error) {
			if err != nil {
				failed.Do(func() { pubErr = err })
			}
			<-window
		})
		if i == n/2 {
			check("half queued")
		}
	}
	for range cap(window) {
		window <- struct{}{}
	}
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	queued := time.Since(start)
	if d := h.Router.QueueDepthOf(qd); d != n {
		t.Fatalf("depth %d, want %d", d, n)
	}
	check("all queued")

	// A restart loads none of it.
	h.Close()
	start = time.Now()
	h, err = openHost(durableConf(dir), ro)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	reopened := time.Since(start)
	if d := h.Router.QueueDepthOf(qd); d != n {
		t.Fatalf("depth after reopen %d, want %d", d, n)
	}
	check("reopened")

	// Drain in order, acknowledging each.
	start = time.Now()
	ch := make(chan router.Delivery, 2*router.DefaultCredit)
	f := router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "backlog"}}}
	c, err := h.Router.Consume(&router.Subscription{Filter: f, Sink: chanSink(ch)}, router.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		var d router.Delivery
		select {
		case d = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d never came", i)
		}
		if got := binary.BigEndian.Uint64(d.Msg.Body); got != uint64(i) || len(d.Msg.Body) != 1024 {
			t.Fatalf("delivery %d is message %d (%d bytes)", i, got, len(d.Msg.Body))
		}
		if d.Redeliveries != 0 {
			t.Fatalf("message %d marked redelivered after a graceful restart", i)
		}
		if !c.Ack(d.Seq) {
			t.Fatalf("ack %d refused", i)
		}
		if i == n/2 {
			check("half drained")
		}
	}
	drained := time.Since(start)
	select {
	case d := <-ch:
		t.Fatalf("unexpected delivery after the last: %+v", d)
	default:
	}
	if d := h.Router.QueueDepthOf(qd); d != 0 {
		t.Fatalf("depth after draining %d", d)
	}
	t.Logf("%d × 1 KB: queued in %v (%.0f msg/s), reopened in %v, drained in %v (%.0f msg/s); %d windows loaded",
		n, queued.Round(time.Millisecond), float64(n)/queued.Seconds(), reopened.Round(time.Millisecond),
		drained.Round(time.Millisecond), float64(n)/drained.Seconds(), h.Router.Stats().SwapLoads)
}

// chanSink delivers into a channel; it reports full rather than blocking.
type chanSink chan router.Delivery

func (s chanSink) Deliver(d router.Delivery) bool {
	select {
	case s <- d:
		return true
	default:
		return false
	}
}
