package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"testing/iotest"
)

func testContent(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// The reader yields the sniffed bytes then the source, whatever the split and however the source
// delivers (one byte at a time, half reads, data with EOF).
func TestConnReaderReplay(t *testing.T) {
	content := testContent(100_000)
	for _, k := range []int{0, 1, 14, 511, 512, 513, 4096} {
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"plain":   func(r io.Reader) io.Reader { return r },
			"onebyte": iotest.OneByteReader,
			"half":    iotest.HalfReader,
			"dataerr": iotest.DataErrReader,
		} {
			src := wrap(bytes.NewReader(content[k:]))
			if err := iotest.TestReader(newConnReader(src, content[:k]), content); err != nil {
				t.Fatalf("sniffed %d, %s source: %v", k, name, err)
			}
		}
	}
}

func TestConnReaderReadByte(t *testing.T) {
	content := testContent(5000)
	cr := newConnReader(iotest.HalfReader(bytes.NewReader(content[10:])), content[:10])
	var got []byte
	buf := make([]byte, 37)
	for i := 0; ; i++ {
		if i%3 == 0 { // mix ReadByte and Read, as decoders do (header bytes, then a body)
			b, err := cr.ReadByte()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b)
			continue
		}
		n, err := cr.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes, differing from the %d sent", len(got), len(content))
	}
}

// scriptedReader returns sizes[i] bytes on call i (-1 or past the script: fill p); never an error.
type scriptedReader struct {
	sizes []int // bytes returned per call; -1 = fill p
	calls int
}

func (s *scriptedReader) Read(p []byte) (int, error) {
	n := len(p)
	if s.calls < len(s.sizes) && s.sizes[s.calls] >= 0 {
		n = min(n, s.sizes[s.calls])
	}
	s.calls++
	return n, nil
}

// The buffer grows while reads fill it and falls back to the inline one after a small read, so an idle
// connection parks holding no pooled buffer.
func TestConnReaderAdaptsBufferSize(t *testing.T) {
	src := &scriptedReader{sizes: []int{-1, -1, -1, -1, -1, 10, 10}}
	cr := newConnReader(src, nil)
	var sizes []int
	for range 7 {
		if _, err := cr.ReadByte(); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(cr.buf))
		cr.r = cr.w // consume the rest of the fill
	}
	want := []int{tinySize, 512, 2 << 10, 8 << 10, 32 << 10, 32 << 10, tinySize}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("buffer sizes %v; want %v", sizes, want)
		}
	}
	if cr.next != tinyClass || cr.bufp != nil {
		t.Fatalf("after a small read: next class %d, pooled buffer held %v; want the inline buffer", cr.next, cr.bufp != nil)
	}
}

// A stream of small reads, where the inline buffer keeps coming back full, keeps its pooled buffer (one
// syscall per burst); after a quiet second the connection parks with the inline buffer again.
func TestConnReaderBusyKeepsPooledBuffer(t *testing.T) {
	src := &scriptedReader{sizes: []int{10, -1, 50, -1, 50, 50, 50, 50}}
	cr := newConnReader(src, nil)
	var sizes []int
	for i := range len(src.sizes) {
		if i == 7 {
			cr.lastRead -= 2 * quietGap // the connection went quiet
		}
		if _, err := cr.ReadByte(); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(cr.buf))
		cr.r = cr.w
	}
	want := []int{tinySize, tinySize, 512, tinySize, 512, 512, 512, 512}
	if !slices.Equal(sizes, want) {
		t.Fatalf("buffer sizes %v; want %v", sizes, want)
	}
	if cr.busy || cr.next != tinyClass {
		t.Fatalf("after a quiet gap: busy %v, next class %d; want the inline buffer next", cr.busy, cr.next)
	}
}

// Sniffed bytes beyond the smallest buffer start in a buffer large enough for them.
func TestConnReaderLargeSniff(t *testing.T) {
	cr := newConnReader(bytes.NewReader(nil), testContent(SniffLimit))
	if len(*cr.bufp) < SniffLimit || cr.w != SniffLimit {
		t.Fatalf("buffer %d bytes holding %d; want all %d sniffed bytes", len(*cr.bufp), cr.w, SniffLimit)
	}
}

// A deadline error is returned once, not kept: the handler may set a new deadline and read on.
func TestConnReaderErrorNotSticky(t *testing.T) {
	r := &errOnceReader{data: []byte("hello"), err: os.ErrDeadlineExceeded}
	cr := newConnReader(r, nil)
	if _, err := cr.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first read: %v; want the deadline error", err)
	}
	got, err := io.ReadAll(cr)
	if err != nil || string(got) != "hello" {
		t.Fatalf("after the error read %q, %v; want hello", got, err)
	}
}

type errOnceReader struct {
	data []byte
	err  error
}

func (r *errOnceReader) Read(p []byte) (int, error) {
	if r.err != nil {
		err := r.err
		r.err = nil
		return 0, err
	}
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestConnReaderNoProgress(t *testing.T) {
	cr := newConnReader(&scriptedReader{sizes: make([]int, 1000)}, nil) // always 0, nil
	if _, err := cr.ReadByte(); err != io.ErrNoProgress {
		t.Fatalf("ReadByte on a reader making no progress = %v; want io.ErrNoProgress", err)
	}
}

func TestConnReaderRelease(t *testing.T) {
	cr := newConnReader(bytes.NewReader([]byte("more")), []byte("x"))
	cr.release()
	if _, err := cr.ReadByte(); err == nil {
		t.Fatal("ReadByte after release succeeded")
	}
	if _, err := cr.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read after release succeeded")
	}
}

// Reading small packets from a warm reader allocates nothing.
func TestConnReaderAllocs(t *testing.T) {
	src := &scriptedReader{}
	cr := newConnReader(src, nil)
	buf := make([]byte, 100)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := cr.ReadByte(); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(cr, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet; want 0", allocs)
	}
}

// BenchmarkInbound reads a stream of 100-byte packets (a header byte, then the body) from loopback TCP,
// as a front-end decoder does, through the connection reader and through a 512-byte bufio.Reader.
func BenchmarkInbound(b *testing.B) {
	for _, impl := range []string{"connReader", "bufio512"} {
		b.Run(impl, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = ln.Close() }()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = client.Close() }()
			nc, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = nc.Close() }()
			const size = 100
			go func() {
				chunk := bytes.Repeat(append([]byte{0x30}, bytes.Repeat([]byte("p"), size-1)...), 640)
				for {
					if _, err := client.Write(chunk); err != nil {
						return
					}
				}
			}()
			var r interface {
				io.Reader
				io.ByteReader
			}
			if impl == "connReader" {
				r = newConnReader(nc, nil)
			} else {
				r = bufio.NewReaderSize(nc, 512)
			}
			body := make([]byte, size-1)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if h, err := r.ReadByte(); err != nil || h != 0x30 {
					b.Fatal(h, err)
				}
				if _, err := io.ReadFull(r, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
