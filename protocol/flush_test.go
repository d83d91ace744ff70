package protocol

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
)

// tcpPair returns a Conn over loopback TCP and its peer, which the test reads itself.
func tcpPair(t *testing.T) (*Conn, net.Conn) {
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
	s := NewServer(zaptest.NewLogger(t), nil)
	c := newConn(s, nc, newConnReader(nc, nil), testSettings(t, conf.Connector{Name: "tcp"}), MQTT)
	t.Cleanup(func() {
		c.Close(nil)
		_ = peer.Close()
		s.wg.Wait()
	})
	return c, peer
}

// CommitDeferred output leaves only at Flush; Flush writes what the socket takes at once on the
// caller's goroutine and hands the rest to the writer: with the peer not reading, megabytes of deferred
// output (far beyond the socket buffers) interleaved with output committed by other goroutines all
// arrive, each record whole and in the order of its writer.
func TestCommitDeferredFlush(t *testing.T) {
	c, peer := tcpPair(t)
	var drains atomic.Int32
	c.OnDrain(func() { drains.Add(1) })

	commitDeferred := func(seq uint32) {
		b, ok := c.Begin()
		if !ok {
			t.Fatal("Begin refused")
		}
		b = binary.BigEndian.AppendUint32(b, seq)
		c.CommitDeferred(append(b, bytes.Repeat([]byte{'d'}, 60)...))
	}
	commitDeferred(0)
	if c.Pending() != 64 {
		t.Fatalf("pending %d before Flush", c.Pending())
	}
	_ = peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := peer.Read(make([]byte, 1)); n != 0 {
		t.Fatal("deferred output left before Flush")
	}
	_ = peer.SetReadDeadline(time.Time{})

	const records = 60000 // 64 bytes each: 3.8 MB, beyond loopback's socket buffers
	other := make(chan struct{})
	go func() { // another goroutine's output, as a publisher delivering to this connection
		defer close(other)
		for i := 0; i < 2000; i++ {
			b := make([]byte, 0, 64)
			b = binary.BigEndian.AppendUint32(b, 1<<31|uint32(i))
			for !c.Write(append(b, bytes.Repeat([]byte{'o'}, 60)...)) {
				time.Sleep(time.Millisecond) // over MaxPending: wait as a paced publisher would
			}
		}
	}()
	for seq := uint32(1); seq < records; seq++ {
		for c.Pending() > c.srv.maxPending()/2 {
			c.Flush()
			time.Sleep(time.Millisecond)
		}
		commitDeferred(seq)
		if seq%100 == 0 {
			c.Flush()
		}
	}
	c.Flush()
	<-other

	want := map[bool]uint32{}
	buf := make([]byte, 64)
	for n := 0; n < records+2000; n++ {
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		v := binary.BigEndian.Uint32(buf)
		fromOther := v&(1<<31) != 0
		fill := byte('d')
		if fromOther {
			fill = 'o'
		}
		if v&^(1<<31) != want[fromOther] || !bytes.Equal(buf[4:], bytes.Repeat([]byte{fill}, 60)) {
			t.Fatalf("record %d: %x, want sequence %d of %v", n, buf, want[fromOther], fromOther)
		}
		want[fromOther]++
	}
	waitFor(t, 2*time.Second, func() bool { return c.Pending() == 0 && drains.Load() > 0 })
}

// Deferred output is flushed before a close that waits for the queue (CloseAfter), and before the
// connection's reader waits for the socket.
func TestCommitDeferredFlushedByReadAndCloseAfter(t *testing.T) {
	c, peer := tcpPair(t)
	b, _ := c.Begin()
	c.CommitDeferred(append(b, "answer"...))
	read := make(chan error, 1)
	go func() {
		_, err := c.Reader().Read(make([]byte, 8)) // waits for the peer: flushes first
		read <- err
	}()
	if got := string(readN(t, peer, len("answer"))); got != "answer" {
		t.Fatalf("peer read %q", got)
	}
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}

	b, _ = c.Begin()
	c.CommitDeferred(append(b, "bye"...))
	c.CloseAfter(errTest, time.Second)
	if got := string(readN(t, peer, len("bye"))); got != "bye" {
		t.Fatalf("peer read %q", got)
	}
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the flush: %v, want EOF", err)
	}
}

// A write deadline armed by an earlier write and long past does not fail a later Flush: the connection
// was idle, not stuck.
func TestFlushAfterWriteDeadlinePassed(t *testing.T) {
	c, peer := tcpPair(t)
	c.srv.WriteTimeout = 20 * time.Millisecond
	c.Write([]byte("one"))
	if got := string(readN(t, peer, 3)); got != "one" {
		t.Fatalf("peer read %q", got)
	}
	time.Sleep(60 * time.Millisecond) // the deadline the writer set has passed
	b, _ := c.Begin()
	c.CommitDeferred(append(b, "two"...))
	c.Flush()
	if got := string(readN(t, peer, 3)); got != "two" {
		t.Fatalf("peer read %q", got)
	}
	select {
	case <-c.Done():
		t.Fatal("an idle connection was closed at its next write")
	case <-time.After(50 * time.Millisecond):
	}
}
