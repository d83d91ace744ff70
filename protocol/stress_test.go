package protocol

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
)

// Concurrent publishers into one connection with a small MaxPending and a peer that reads slowly: every
// accepted message arrives exactly once, whole, in each publisher's order, and CloseAfter flushes them
// all before closing.
func TestOutboundConcurrentPublishers(t *testing.T) {
	const publishers, perPublisher = 8, 2000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = peer.Close() }()
	nc, err := ln.Accept()
	_ = ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Small socket buffers, so the kernel cannot absorb the stream and the queue must fill.
	_ = peer.(*net.TCPConn).SetReadBuffer(64 << 10)
	_ = nc.(*net.TCPConn).SetWriteBuffer(64 << 10)
	s := NewServer(zaptest.NewLogger(t), nil)
	s.MaxPending = 16 << 10
	c := newConn(s, nc, newConnReader(nc, nil), testSettings(t, conf.Connector{Name: "stress"}), MQTT)
	var drains atomic.Int64
	drained := make(chan struct{}, 1)
	c.OnDrain(func() {
		drains.Add(1)
		select {
		case drained <- struct{}{}:
		default:
		}
	})

	// The peer: parse [publisher][seq uint32][n][n bytes of publisher] frames.
	type result struct {
		got [publishers]uint32
		err string
	}
	done := make(chan result, 1)
	go func() {
		var r result
		br := bufio.NewReaderSize(peer, 1024)
		hdr := make([]byte, 6)
		for {
			if _, err := io.ReadFull(br, hdr); err != nil {
				if err != io.EOF {
					r.err = "header: " + err.Error()
				}
				done <- r
				return
			}
			p, seq, n := hdr[0], binary.BigEndian.Uint32(hdr[1:5]), int(hdr[5])
			if int(p) >= publishers || seq != r.got[p] {
				r.err = "out of order"
				done <- r
				return
			}
			r.got[p]++
			body := make([]byte, n)
			if _, err := io.ReadFull(br, body); err != nil {
				r.err = "body: " + err.Error()
				done <- r
				return
			}
			for _, b := range body {
				if b != p {
					r.err = "corrupt body"
					done <- r
					return
				}
			}
			if seq%500 == 0 {
				time.Sleep(time.Millisecond) // a slow reader, so the queue fills and Begin refuses
			}
		}
	}()

	var refused atomic.Int64
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint32(0); seq < perPublisher; {
				n := int(seq % 200)
				b, ok := c.Begin()
				if !ok {
					// Hold back as a session does until OnDrain; the timeout covers the other waiters.
					refused.Add(1)
					select {
					case <-drained:
					case <-time.After(time.Millisecond):
					}
					continue
				}
				b = append(b, byte(p))
				b = binary.BigEndian.AppendUint32(b, seq)
				b = append(b, byte(n))
				for range n {
					b = append(b, byte(p))
				}
				c.Commit(b)
				seq++
			}
		}()
	}
	wg.Wait()
	c.CloseAfter(errTest, 10*time.Second)
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("peer did not finish")
	}
	<-c.Done()
	s.wg.Wait()
	if r.err != "" {
		t.Fatalf("peer: %s (after %v)", r.err, r.got)
	}
	for p, n := range r.got {
		if n != perPublisher {
			t.Fatalf("publisher %d: %d messages delivered; want %d", p, n, perPublisher)
		}
	}
	if c.Err() != errTest {
		t.Fatalf("close reason %v", c.Err())
	}
	t.Logf("%d refused Begins, %d drains", refused.Load(), drains.Load())
	if refused.Load() == 0 || drains.Load() == 0 {
		t.Fatal("the queue never filled: the test did not exercise backpressure")
	}
}
