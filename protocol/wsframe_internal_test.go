package protocol

import (
	"io"
	"net"
	"testing"
)

// Writing a batch and reading frames back allocate nothing: they are on every WebSocket delivery and
// publish.
func TestWebSocketFramingAllocs(t *testing.T) {
	srv, cli := net.Pipe()
	defer srv.Close()
	defer cli.Close()
	go func() { _, _ = io.Copy(io.Discard, cli) }()
	w := &wsConn{nc: srv}
	batch := net.Buffers{make([]byte, 100), make([]byte, 200)}
	if n := testing.AllocsPerRun(100, func() {
		v := batch
		if _, err := w.writeBuffers(&v); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("writeBuffers: %v allocations per batch", n)
	}

	frame := []byte{0x82, 0x84, 1, 2, 3, 4, 'a' ^ 1, 'b' ^ 2, 'c' ^ 3, 'd' ^ 4}
	pr, pw := net.Pipe()
	defer pr.Close()
	defer pw.Close()
	go func() {
		for {
			if _, err := pw.Write(frame); err != nil {
				return
			}
		}
	}()
	r := &wsConn{nc: pr, src: newConnReader(pr, nil), limit: 1 << 20}
	if n := testing.AllocsPerRun(100, func() {
		for range 4 {
			if _, err := r.ReadByte(); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Fatalf("ReadByte: %v allocations per frame", n)
	}
}
