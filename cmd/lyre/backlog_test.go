package main

// The offline MQTT backlog (issue 9, DESIGN.md §5): an MQTT session with clean session off is a set of
// router durable subscriptions, queue-backed and swapped to disk in windows like a queue's backlog, so a
// backlog of a million messages waits for its device [MQTT-3.1.2-5] with the heap bounded, survives a
// restart, and drains in order [MQTT-4.6.0-6]. The virtualhost package's queue backlog test (virtualhost/backlog_test.go) is the
// same check for a queue, below the front-ends; this one goes through real sockets end to end.

import (
	"bufio"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

// offlineBacklogHeapBound is the most heap in use (after a GC) the broker and the test may hold while a
// session's backlog waits, across a restart and while it drains: the bound of the queue backlog test
// (virtualhost.backlogHeapBound), whose reasoning holds here too: a window of the backlog in memory,
// badger's memtables, caches and table builders.
const offlineBacklogHeapBound = 200 << 20

// offlineBacklogConfig is a host with a store whose MQTT sessions' durable subscriptions (named
// "$mqtt.<client id>.<filter>" in the STOMP default grammar) may each hold two million messages, above
// the default bound of 100,000.
func offlineBacklogConfig(dir string) string {
	return fmt.Sprintf(`
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
  store { directory = %q }
  dsub "$mqtt.**" {
    quota_messages = 2000000
    quota          = "1GB"
  }
}
`, dir)
}

// TestMQTTOfflineBacklog100k is TestMQTTOfflineBacklogMillion scaled down to 100,000 messages (25,000
// under the race detector), to run always.
func TestMQTTOfflineBacklog100k(t *testing.T) {
	n := 100_000
	if prototest.RaceEnabled {
		n = 25_000
	}
	testOfflineBacklog(t, n)
}

// TestMQTTOfflineBacklogMillion queues a million QoS 1 messages for an offline MQTT session and checks
// that the heap stays bounded while they wait, after a graceful restart and while the session drains,
// and that every message arrives in order. It takes minutes: skipped with -short and under the race
// detector; TestMQTTOfflineBacklog100k runs the same scaled down.
func TestMQTTOfflineBacklogMillion(t *testing.T) {
	if testing.Short() || prototest.RaceEnabled {
		t.Skip("a million messages: skipped with -short and -race (TestMQTTOfflineBacklog100k runs the same scaled down)")
	}
	testOfflineBacklog(t, 1_000_000)
}

// startBacklogBroker starts a broker on the configuration src; the test's log gets only its warnings and
// errors (not a line per message).
func startBacklogBroker(t *testing.T, src string) (*Broker, string) {
	t.Helper()
	cfg, err := conf.Parse([]byte(src), "backlog.hcl")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	b, err := Start(cfg, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return b, b.Addrs()["auto"].String()
}

func stopBacklogBroker(t *testing.T, b *Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// checkHeap logs the heap in use after a GC (and the live heap) and fails the test over the bound.
func checkHeap(t *testing.T, when string) {
	t.Helper()
	live, _ := prototest.MemInUse() // collects garbage twice
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%s: heap in use %d MiB (live %d MiB)", when, ms.HeapInuse>>20, live>>20)
	if ms.HeapInuse > offlineBacklogHeapBound {
		t.Fatalf("%s: heap in use %d MiB, bound %d MiB", when, ms.HeapInuse>>20, offlineBacklogHeapBound>>20)
	}
}

// seqPayload is message i's payload: its sequence number in ten decimal digits.
func seqPayload(i int) []byte { return fmt.Appendf(nil, "%010d", i) }

func testOfflineBacklog(t *testing.T, n int) {
	const (
		clientID = "backlog-dev"
		topic    = "backlog/seq"
	)
	src := offlineBacklogConfig(t.TempDir())
	var b *Broker // the running broker, stopped at the end
	t.Cleanup(func() {
		if b != nil {
			stopBacklogBroker(t, b)
		}
	})
	b, addr := startBacklogBroker(t, src)

	// The device: a persistent session subscribed at QoS 1, then offline.
	dev, _, err := mqDial(addr, clientID, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.send(&packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: topic, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if p, err := dev.next(5 * time.Second); err != nil || p.Type() != packet.Suback {
		t.Fatalf("suback: %v %v", err, p)
	} else if rc := p.(*packet.SubackPacket).ReturnCodes; len(rc) != 1 || rc[0] != 1 {
		t.Fatalf("SUBACK return codes %v, want granted QoS 1", rc)
	}
	_ = dev.send(&packet.DisconnectPacket{})
	dev.nc.Close()

	start := time.Now()
	publishSeq(t, addr, topic, n, 1000, func() { checkHeap(t, "half queued") })
	queued := time.Since(start)
	checkHeap(t, "all queued")

	// A graceful restart on the same store.
	stopBacklogBroker(t, b)
	b = nil
	start = time.Now()
	b, addr = startBacklogBroker(t, src)
	restarted := time.Since(start)
	checkHeap(t, "restarted")

	// The device comes back with clean session off and receives everything, in order, acknowledging each.
	start = time.Now()
	dev, present, err := mqDial(addr, clientID, false)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.nc.Close()
	if !present {
		t.Fatal("CONNACK session present 0 after the restart, want 1 [MQTT-3.2.2-2]")
	}
	next, dups := 0, 0
	for next < n {
		p, err := dev.next(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages in order: %v", next, n, err)
		}
		pp, ok := p.(*packet.PublishPacket)
		if !ok {
			t.Fatalf("after %d messages: got %s, want PUBLISH", next, p.Type())
		}
		seq, err := strconv.Atoi(string(pp.Payload))
		if pp.Topic != topic || pp.QoS != 1 || err != nil {
			t.Fatalf("after %d messages: PUBLISH %s QoS %d %q, want %s QoS 1 with a sequence number", next, pp.Topic, pp.QoS, pp.Payload, topic)
		}
		switch {
		case seq == next:
			next++
		case seq < next && pp.Dup:
			dups++ // a redelivery of one already received [MQTT-3.3.1-1]
		default:
			t.Fatalf("after %d messages in order: got message %d (DUP %v); want %d [MQTT-4.6.0-6]", next, seq, pp.Dup, next)
		}
		if err := dev.send(&packet.PubackPacket{PacketID: pp.PacketID}); err != nil {
			t.Fatal(err)
		}
		if next == n/2 && seq == next-1 {
			checkHeap(t, "half drained")
		}
	}
	drained := time.Since(start)
	// Nothing more, but for a late redelivery of one already received.
	for {
		p, err := dev.next(300 * time.Millisecond)
		if err != nil {
			break // the read timed out: nothing more
		}
		if pp, ok := p.(*packet.PublishPacket); ok {
			if seq, _ := strconv.Atoi(string(pp.Payload)); !pp.Dup || seq >= n {
				t.Fatalf("after all %d messages: PUBLISH %q (DUP %v)", n, pp.Payload, pp.Dup)
			}
			dups++
			_ = dev.send(&packet.PubackPacket{PacketID: pp.PacketID})
		}
	}
	t.Logf("%d QoS 1 messages to an offline session: queued in %v (%.0f msg/s), restarted in %v, drained in %v (%.0f msg/s), %d duplicates",
		n, queued.Round(time.Millisecond), float64(n)/queued.Seconds(), restarted.Round(time.Millisecond),
		drained.Round(time.Millisecond), float64(n)/drained.Seconds(), dups)
}

// publishSeq publishes n QoS 1 messages 0..n-1 (seqPayload) to topic with up to window of them awaiting
// their PUBACK, as a client pipelining its publishes does. Once half of them are acknowledged it calls
// half, with publishing paused.
func publishSeq(t *testing.T, addr, topic string, n, window int, half func()) {
	t.Helper()
	c, _, err := mqDial(addr, "backlog-pub", true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	var inflight [1 << 16]atomic.Bool // by packet id
	slots := make(chan struct{}, window)
	acked := make(chan error, 1) // the reader's end: nil once all n are acknowledged
	go func() {
		for i := range n {
			p, err := c.next(30 * time.Second)
			if err != nil {
				acked <- fmt.Errorf("after %d PUBACKs: %w", i, err)
				return
			}
			pa, ok := p.(*packet.PubackPacket)
			if !ok {
				acked <- fmt.Errorf("after %d PUBACKs: got %s, want PUBACK", i, p.Type())
				return
			}
			if !inflight[pa.PacketID].CompareAndSwap(true, false) {
				acked <- fmt.Errorf("PUBACK %d: no message in flight has that packet id", pa.PacketID)
				return
			}
			<-slots
		}
		acked <- nil
	}()
	w := bufio.NewWriterSize(c.nc, 64<<10)
	flush := func() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := w.Flush(); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	var buf []byte
	for i := range n {
		select {
		case slots <- struct{}{}:
		default:
			flush() // the window is full: send what is buffered, then wait for room
			select {
			case slots <- struct{}{}:
			case err := <-acked:
				t.Fatalf("publish: %v", err)
			}
		}
		if i == n/2 {
			flush()
			prototest.WaitFor(t, 30*time.Second, func() bool { return len(slots) == 1 })
			half()
		}
		pid := uint16(i%65535 + 1)
		if !inflight[pid].CompareAndSwap(false, true) {
			t.Fatalf("message %d: packet id %d is still awaiting its PUBACK", i, pid)
		}
		buf = packet.Append(buf[:0], &packet.PublishPacket{Topic: topic, QoS: 1, PacketID: pid, Payload: seqPayload(i)}, packet.Version311)
		if _, err := w.Write(buf); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	flush()
	if err := <-acked; err != nil {
		t.Fatalf("publish: %v", err)
	}
}
