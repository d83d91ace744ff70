package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
)

var errTest = errors.New("test: reason")

// pipeConn returns a Conn over one end of a net.Pipe, and the other end as the peer. net.Pipe is
// unbuffered, so a peer that does not read blocks the writer at once.
func pipeConn(t testing.TB, tune func(*Server)) (*Conn, net.Conn) {
	t.Helper()
	s := NewServer(zaptest.NewLogger(t), nil)
	if tune != nil {
		tune(s)
	}
	a, b := net.Pipe()
	c := newConn(s, a, newConnReader(a, nil), testSettings(t, conf.Connector{Name: "pipe"}), STOMP)
	t.Cleanup(func() {
		c.Close(nil)
		_ = b.Close()
		s.wg.Wait() // the writer has exited
	})
	return c, b
}

// tcpConn returns a Conn over a loopback TCP connection whose peer discards everything it reads.
func tcpConn(t testing.TB) *Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.Discard, peer)
	}()
	s := NewServer(zaptest.NewLogger(t), nil)
	c := newConn(s, nc, newConnReader(nc, nil), testSettings(t, conf.Connector{Name: "tcp"}), MQTT)
	t.Cleanup(func() {
		c.Close(nil)
		<-copied
		_ = peer.Close()
		s.wg.Wait()
	})
	return c
}

// waitFor is prototest.WaitFor for the tests inside package protocol, which cannot import prototest:
// prototest imports protocol, so that would be an import cycle.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func readN(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// MaxPending bounds the bytes queued beyond the largest message: past it, Begin refuses without blocking.
func TestBeginRefusesPastMaxPending(t *testing.T) {
	c, peer := pipeConn(t, func(s *Server) { s.MaxPending = 1024 })
	half := bytes.Repeat([]byte("a"), 512)
	for i := range 3 {
		if !c.Write(half) {
			t.Fatalf("Write %d of 3 refused within MaxPending beyond the largest message", i+1)
		}
	}
	// At exactly MaxPending beyond the largest message the queue still takes one more message.
	if !c.Write([]byte("b")) {
		t.Fatal("Write refused at MaxPending")
	}
	if got := c.Pending(); got != 1537 {
		t.Fatalf("Pending = %d; want 1537", got)
	}
	if b, ok := c.Begin(); ok || b != nil {
		if ok {
			c.Commit(b)
		}
		t.Fatal("Begin accepted past MaxPending")
	}
	if c.Write([]byte("c")) {
		t.Fatal("Write accepted past MaxPending")
	}
	if got := c.Pending(); got != 1537 {
		t.Fatalf("Pending = %d after refused writes; want 1537", got)
	}
	// The peer catches up: the queue drains and accepts again, in order.
	got := readN(t, peer, 1537)
	if want := append(bytes.Repeat([]byte("a"), 1536), 'b'); !bytes.Equal(got, want) {
		t.Fatal("peer read the wrong bytes")
	}
	waitFor(t, time.Second, func() bool { return c.Pending() == 0 })
	if !c.Write([]byte("d")) {
		t.Fatal("Write refused after the queue drained")
	}
	if got := readN(t, peer, 1); got[0] != 'd' {
		t.Fatalf("read %q; want d", got)
	}
}

// A message larger than MaxPending is never refused for its size (messages are never split): it goes
// into an empty queue, and MaxPending bounds what is queued beyond it, so a second large one follows
// while the first is still being written, and only what exceeds MaxPending beyond it is refused.
func TestLargeMessageIntoEmptyQueue(t *testing.T) {
	c, peer := pipeConn(t, func(s *Server) { s.MaxPending = 1024 })
	big := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB, several write pieces
	if !c.Write(big) {
		t.Fatal("Write refused a large message into an empty queue")
	}
	if !c.Write(big) {
		t.Fatal("Write refused a large message behind another one")
	}
	if c.Write([]byte("x")) {
		t.Fatal("Write accepted past MaxPending beyond the largest message")
	}
	for i := range 2 {
		if got := readN(t, peer, len(big)); !bytes.Equal(got, big) {
			t.Fatalf("large message %d corrupted", i)
		}
	}
}

func TestBeginCommitAppendsInPlace(t *testing.T) {
	c, peer := pipeConn(t, nil)
	for _, s := range []string{"CONNECTED\n", "version:1.2\n", "\n\x00"} {
		b, ok := c.Begin()
		if !ok {
			t.Fatal("Begin refused")
		}
		c.Commit(append(b, s...))
	}
	if got := string(readN(t, peer, 24)); got != "CONNECTED\nversion:1.2\n\n\x00" {
		t.Fatalf("peer read %q", got)
	}
}

// An idle connection holds no outbound buffer and runs no writer (DESIGN.md §1).
func TestIdleConnHoldsNoBuffer(t *testing.T) {
	c, peer := pipeConn(t, nil)
	if _, ok := c.Reader().(io.ByteReader); !ok {
		t.Fatal("Reader is not an io.ByteReader")
	}
	b, _ := c.Begin()
	c.Commit(b) // nothing appended: no buffer kept, no writer started
	c.out.mu.Lock()
	if len(c.out.bufs) != 0 || c.out.writing {
		t.Fatalf("empty Commit kept %d chunks, writer running %v", len(c.out.bufs), c.out.writing)
	}
	c.out.mu.Unlock()
	c.Write([]byte("hello"))
	readN(t, peer, 5)
	idle := func() bool {
		c.out.mu.Lock()
		defer c.out.mu.Unlock()
		return !c.out.writing && len(c.out.bufs) == 0 && c.out.inflight == 0
	}
	waitFor(t, time.Second, idle)
	// After a 4 MB backlog, the bookkeeping shrinks back too.
	for range 1000 {
		c.Write(make([]byte, 4000))
	}
	readN(t, peer, 4_000_000)
	waitFor(t, time.Second, idle)
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	// The writer's own lists went back to writerPool with it.
	if cap(c.out.bufs) > maxIdleSlice {
		t.Fatalf("idle connection keeps a chunk list of cap %d", cap(c.out.bufs))
	}
}

func TestSlowConsumer(t *testing.T) {
	c, _ := pipeConn(t, func(s *Server) { s.WriteTimeout = 100 * time.Millisecond })
	start := time.Now()
	c.Write([]byte("nobody reads this"))
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("slow consumer not closed")
	}
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Fatalf("closed after %s, before the 100ms write timeout", el)
	}
	if !errors.Is(c.Err(), ErrSlowConsumer) {
		t.Fatalf("close reason %v; want ErrSlowConsumer", c.Err())
	}
}

// CloseAfter closes no later than d even when the peer never reads (die_delay).
func TestCloseAfterPeerNeverReads(t *testing.T) {
	c, _ := pipeConn(t, nil) // default 10s write timeout
	c.Write([]byte("ERROR\nmessage:bad frame\n\n\x00"))
	start := time.Now()
	c.CloseAfter(errTest, 150*time.Millisecond)
	if c.Write([]byte("more")) {
		t.Fatal("Write accepted after CloseAfter")
	}
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("CloseAfter did not close")
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > time.Second {
		t.Fatalf("closed after %s; want about 150ms", el)
	}
	if c.Err() != errTest {
		t.Fatalf("close reason %v; want %v", c.Err(), errTest)
	}
}

// CloseAfter flushes what is queued, then closes without waiting for d.
func TestCloseAfterFlushes(t *testing.T) {
	c, peer := pipeConn(t, nil)
	c.Write([]byte("ERROR\n"))
	c.Write([]byte("\n\x00"))
	start := time.Now()
	c.CloseAfter(errTest, 10*time.Second)
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "ERROR\n\n\x00" {
		t.Fatalf("peer read %q, %v; want the whole frame then EOF", got, err)
	}
	<-c.Done()
	if el := time.Since(start); el > time.Second {
		t.Fatalf("closed after %s; want as soon as flushed", el)
	}
	if c.Err() != errTest {
		t.Fatalf("close reason %v", c.Err())
	}
	// A later Close keeps the CloseAfter reason.
	c.Close(io.EOF)
	if c.Err() != errTest {
		t.Fatalf("close reason changed to %v", c.Err())
	}
}

func TestCloseAfterWithNothingQueuedClosesNow(t *testing.T) {
	c, _ := pipeConn(t, nil)
	c.CloseAfter(errTest, time.Hour)
	select {
	case <-c.Done():
	default:
		t.Fatal("CloseAfter with an empty queue did not close at once")
	}
}

// A later CloseAfter with a shorter delay wins the deadline, the first keeps the reason.
func TestCloseAfterEarliestDeadline(t *testing.T) {
	c, _ := pipeConn(t, nil)
	c.Write([]byte("stuck"))
	c.CloseAfter(errTest, time.Hour)
	c.CloseAfter(io.EOF, 50*time.Millisecond)
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("shorter CloseAfter deadline ignored")
	}
	if c.Err() != errTest {
		t.Fatalf("close reason %v; want the first", c.Err())
	}
}

func TestCloseFirstReasonWinsAndUnblocksReader(t *testing.T) {
	c, _ := pipeConn(t, nil)
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Reader().Read(make([]byte, 1))
		readErr <- err
	}()
	c.Close(errTest)
	c.Close(io.EOF)
	if c.Err() != errTest {
		t.Fatalf("close reason %v; want the first", c.Err())
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("read succeeded on a closed connection")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock the reader")
	}
	if _, ok := c.Begin(); ok {
		t.Fatal("Begin accepted after Close")
	}
	if c.Pending() != 0 {
		t.Fatalf("Pending = %d after Close", c.Pending())
	}
}

func TestOnDrain(t *testing.T) {
	c, peer := pipeConn(t, nil)
	var calls atomic.Int32
	drained := make(chan int, 4)
	c.OnDrain(func() {
		// A session holding back messages resumes here: what it queues is written by the same writer.
		if calls.Add(1) == 1 {
			c.Write([]byte("resumed"))
		}
		drained <- c.Pending()
	})
	c.Write([]byte("first"))
	if got := string(readN(t, peer, len("firstresumed"))); got != "firstresumed" {
		t.Fatalf("peer read %q", got)
	}
	for i := 0; i < 2; i++ {
		select {
		case p := <-drained:
			if i == 1 && p != 0 {
				t.Fatalf("OnDrain saw %d pending bytes", p)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("OnDrain called %d times; want 2", i)
		}
	}
}

// Once warmed up, queueing a message allocates nothing (STYLE.md §6).
func TestWriteAllocs(t *testing.T) {
	c := tcpConn(t)
	msg := bytes.Repeat([]byte("m"), 128)
	for i := 0; i < 1000; i++ {
		c.Write(msg)
	}
	waitFor(t, 2*time.Second, func() bool { return c.Pending() == 0 })
	allocs := testing.AllocsPerRun(1000, func() {
		if !c.Write(msg) {
			t.Fatal("Write refused")
		}
	})
	if allocs != 0 {
		t.Fatalf("Write allocates %v times per call; want 0", allocs)
	}
}

func BenchmarkOutbound(b *testing.B) {
	for _, size := range []int{16, 128, 4096} {
		msg := bytes.Repeat([]byte("m"), size)
		b.Run("write_"+strconv.Itoa(size)+"B", func(b *testing.B) {
			c := tcpConn(b)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				for !c.Write(msg) {
					// Queue full: the peer is reading, wait for room as a session would on OnDrain.
					time.Sleep(10 * time.Microsecond)
				}
			}
		})
	}
	b.Run("parallel_128B", func(b *testing.B) {
		c := tcpConn(b)
		msg := bytes.Repeat([]byte("m"), 128)
		b.ReportAllocs()
		b.SetBytes(128)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				for !c.Write(msg) {
					time.Sleep(10 * time.Microsecond)
				}
			}
		})
	})
}

// Close logs once, at a level matching the reason: ordinary ends at Debug, slow consumers at Warn,
// anything else (protocol errors) at Info.
func TestCloseLogLevel(t *testing.T) {
	for _, tc := range []struct {
		reason error
		level  zapcore.Level
	}{
		{io.EOF, zapcore.DebugLevel},
		{syscall.ECONNRESET, zapcore.DebugLevel},
		{fmt.Errorf("mqtt: %w", ErrDisconnected), zapcore.DebugLevel},
		{ErrHandlerDone, zapcore.DebugLevel},
		{ErrServerClosed, zapcore.DebugLevel},
		{nil, zapcore.DebugLevel},
		{fmt.Errorf("%w: write blocked", ErrSlowConsumer), zapcore.WarnLevel},
		{errors.New("stomp: frame body exceeds max_message_length"), zapcore.InfoLevel},
		{ErrDetectTimeout, zapcore.InfoLevel},
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		s := NewServer(zap.New(core), nil)
		a, b := net.Pipe()
		c := newConn(s, a, newConnReader(a, nil), testSettings(t, conf.Connector{Name: "lv"}), MQTT)
		c.Close(tc.reason)
		c.Close(errTest)
		_ = b.Close()
		entries := logs.FilterMessage("connection closed").All()
		if len(entries) != 1 || entries[0].Level != tc.level {
			t.Fatalf("Close(%v) logged %v; want one line at %v", tc.reason, entries, tc.level)
		}
		f := entries[0].ContextMap()
		if f["connector"] != "lv" || f["protocol"] != MQTT || f["conn_id"] != c.ID() {
			t.Fatalf("close log fields %v", f)
		}
	}
}

// testSettings builds a connector's settings for a Conn made without Listen.
func testSettings(t testing.TB, c conf.Connector) *Settings {
	t.Helper()
	s, err := NewSettings(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
