package stomp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/go-stomp/stomp/v3/frame"
)

var testLimits = Limits{MaxHeaders: 4, MaxHeaderLength: 64, MaxBodyLength: 32}

type readerCase struct {
	name    string
	version int
	raw     string
	cmd     string
	hdrs    []string // name/value pairs, in order
	body    string
	err     error
}

var readerCases = []readerCase{
	{name: "connect", raw: "CONNECT\naccept-version:1.2\nhost:h\n\n\x00", cmd: "CONNECT",
		hdrs: []string{"accept-version", "1.2", "host", "h"}},
	{name: "heart-beats before frame", raw: "\n\r\n\nSEND\ndestination:/queue/a\n\nhi\x00", cmd: "SEND",
		hdrs: []string{"destination", "/queue/a"}, body: "hi"},
	{name: "crlf 1.2", version: v12, raw: "SEND\r\ndestination:/queue/a\r\n\r\nhi\x00", cmd: "SEND",
		hdrs: []string{"destination", "/queue/a"}, body: "hi"},
	{name: "content-length with NULs", raw: "SEND\ncontent-length:3\n\na\x00b\x00", cmd: "SEND",
		hdrs: []string{"content-length", "3"}, body: "a\x00b"},
	{name: "escapes 1.2", version: v12, raw: "SEND\na\\cb:x\\ny\\\\z\\r\n\n\x00", cmd: "SEND",
		hdrs: []string{"a:b", "x\ny\\z\r"}},
	{name: "no escapes 1.0", version: v10, raw: "SEND\na:x\\ny\n\n\x00", cmd: "SEND", hdrs: []string{"a", "x\\ny"}},
	{name: "CONNECT not unescaped", version: v12, raw: "CONNECT\nlogin:a\\nb\n\n\x00", cmd: "CONNECT",
		hdrs: []string{"login", "a\\nb"}},
	{name: "CR is a value octet in 1.1", version: v11, raw: "SEND\na:b\r\n\r\n\x00", cmd: "SEND", hdrs: []string{"a", "b\r"}},
	// STOMP 1.2 "Value Encoding": undefined escapes are a fatal protocol error; \r is undefined in 1.1.
	{name: "bad escape", version: v12, raw: "SEND\na:\\t\n\n\x00", err: ErrBadEscape},
	{name: "cr escape in 1.1", version: v11, raw: "SEND\na:\\r\n\n\x00", err: ErrBadEscape},
	{name: "unknown command", raw: "FLY\n\n\x00", err: ErrUnknownCommand},
	{name: "header without colon", raw: "SEND\nnocolon\n\n\x00", err: ErrMalformedHeader},
	{name: "empty header name", raw: "SEND\n:v\n\n\x00", err: ErrMalformedHeader},
	{name: "too many headers", raw: "SEND\na:1\nb:2\nc:3\nd:4\ne:5\n\n\x00", err: ErrTooManyHeaders},
	{name: "header too long", raw: "SEND\na:" + strings.Repeat("x", 70) + "\n\n\x00", err: ErrHeaderTooLong},
	{name: "header too long without EOL", raw: "SEND\na:" + strings.Repeat("x", 200), err: ErrHeaderTooLong},
	{name: "command too long", raw: strings.Repeat("S", 100), err: ErrHeaderTooLong},
	{name: "content-length over max", raw: "SEND\ncontent-length:33\n\n", err: ErrFrameTooLarge},
	{name: "content-length huge", raw: "SEND\ncontent-length:99999999999999999999\n\n", err: ErrBadContentLength},
	{name: "content-length negative", raw: "SEND\ncontent-length:-1\n\n\x00", err: ErrBadContentLength},
	{name: "body over max without content-length", raw: "SEND\n\n" + strings.Repeat("x", 33) + "\x00", err: ErrFrameTooLarge},
	{name: "body over max, no NUL yet", raw: "SEND\n\n" + strings.Repeat("x", 40), err: ErrFrameTooLarge},
	{name: "missing NUL after content-length body", raw: "SEND\ncontent-length:2\n\nabc", err: ErrMissingNUL},
	{name: "missing NUL at EOF", raw: "SEND\n\nabc", err: io.ErrUnexpectedEOF},
	{name: "EOF in headers", raw: "SEND\na:b", err: io.ErrUnexpectedEOF},
	{name: "EOF in content-length body", raw: "SEND\ncontent-length:5\n\nab", err: io.ErrUnexpectedEOF},
	{name: "clean EOF", raw: "\n\n", err: io.EOF},
	{name: "repeated header first wins", raw: "SEND\ncontent-length:1\ncontent-length:5\n\nx\x00", cmd: "SEND",
		hdrs: []string{"content-length", "1", "content-length", "5"}, body: "x"},
}

// TestReader_FrameGrammar checks the STOMP 1.2 "Augmented BNF" frame grammar and Lyre's limits, reading
// each case whole, one byte at a time and in halves.
func TestReader_FrameGrammar(t *testing.T) {
	wrappers := map[string]func(io.Reader) io.Reader{
		"whole": func(r io.Reader) io.Reader { return r },
		"byte":  iotest.OneByteReader,
		"half":  iotest.HalfReader,
	}
	for _, tc := range readerCases {
		for wn, wrap := range wrappers {
			t.Run(tc.name+"/"+wn, func(t *testing.T) {
				rd := NewReader(wrap(strings.NewReader(tc.raw)), testLimits)
				rd.Version = tc.version
				f, err := rd.Read()
				if tc.err != nil {
					if !errors.Is(err, tc.err) {
						t.Fatalf("err = %v, want %v", err, tc.err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				if f.Command != tc.cmd {
					t.Errorf("command %q, want %q", f.Command, tc.cmd)
				}
				var got []string
				for i := 0; i < f.Header.Len(); i++ {
					k, v := f.Header.GetAt(i)
					got = append(got, k, v)
				}
				if strings.Join(got, "|") != strings.Join(tc.hdrs, "|") {
					t.Errorf("headers %q, want %q", got, tc.hdrs)
				}
				if string(f.Body) != tc.body {
					t.Errorf("body %q, want %q", f.Body, tc.body)
				}
			})
		}
	}
}

// TestReader_Sequence reads several frames and heart-beats from one stream, then a clean EOF.
func TestReader_Sequence(t *testing.T) {
	raw := "SEND\ndestination:/a\n\none\x00\n\nSEND\ncontent-length:3\n\ntwo\x00\r\n" +
		"SEND\n\n" + strings.Repeat("z", 32) + "\x00\n"
	rd := NewReader(iotest.OneByteReader(strings.NewReader(raw)), testLimits)
	rd.Version = v12
	for _, want := range []string{"one", "two", strings.Repeat("z", 32)} {
		f, err := rd.Read()
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if string(f.Body) != want {
			t.Fatalf("body %q, want %q", f.Body, want)
		}
	}
	if _, err := rd.Read(); err != io.EOF {
		t.Fatalf("err = %v, want io.EOF", err)
	}
}

// countingReader counts bytes handed out, to show a rejected body is not read.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestReader_RejectsBeforeBuffering shows an oversized content-length is refused from the header,
// without reading the body, and an unbounded body is refused just past the limit.
func TestReader_RejectsBeforeBuffering(t *testing.T) {
	head := "SEND\ncontent-length:1000000\n\n"
	cr := &countingReader{r: io.MultiReader(strings.NewReader(head), bytes.NewReader(make([]byte, 1000001)))}
	_, err := NewReader(iotest.OneByteReader(cr), testLimits).Read()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if cr.n > len(head) {
		t.Fatalf("read %d bytes, want at most the %d header bytes", cr.n, len(head))
	}

	cr = &countingReader{r: io.MultiReader(strings.NewReader("SEND\n\n"), iotest.OneByteReader(bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20))))}
	_, err = NewReader(cr, testLimits).Read()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if cr.n > 6+int(testLimits.MaxBodyLength)+2 {
		t.Fatalf("read %d bytes of a body limited to %d", cr.n-6, testLimits.MaxBodyLength)
	}
}

// FuzzFrameReader feeds arbitrary bytes to the reader: it must not panic, every frame it returns must
// respect the limits, and re-encoding a frame and reading it back must give the same frame.
func FuzzFrameReader(f *testing.F) {
	for _, tc := range readerCases {
		f.Add([]byte(tc.raw), uint8(tc.version))
	}
	f.Add([]byte("SEND\ndestination:/topic/a\ncontent-length:2\n\nhi\x00\nSUBSCRIBE\nid:1\n\n\x00"), uint8(v12))
	f.Add([]byte("CONN"), uint8(0))
	f.Add([]byte("\x00\xff\x10junk\n\n\x00"), uint8(v11))
	f.Fuzz(func(t *testing.T, data []byte, ver uint8) {
		v := []int{0, v10, v11, v12}[int(ver)%4]
		rd := NewReader(bytes.NewReader(data), testLimits)
		rd.Version = v
		for i := 0; i < 100; i++ {
			fr, err := rd.Read()
			if err != nil {
				return
			}
			if fr.Header.Len() > testLimits.MaxHeaders {
				t.Fatalf("%d headers, limit %d", fr.Header.Len(), testLimits.MaxHeaders)
			}
			if int64(len(fr.Body)) > testLimits.MaxBodyLength {
				t.Fatalf("body of %d bytes, limit %d", len(fr.Body), testLimits.MaxBodyLength)
			}
			roundTrip(t, fr, v)
		}
	})
}

// roundTrip encodes fr the way the server encodes frames and checks the reader gets it back.
func roundTrip(t *testing.T, fr *frame.Frame, v int) {
	t.Helper()
	if v < v11 || fr.Command == frame.CONNECT || fr.Command == frame.STOMP {
		return // unescaped headers cannot carry every value
	}
	b := appendCommand(nil, fr.Command)
	for i := 0; i < fr.Header.Len(); i++ {
		k, val := fr.Header.GetAt(i)
		b = appendHeader(b, v, k, val)
	}
	if _, ok := fr.Header.Contains(frame.ContentLength); !ok && bytes.IndexByte(fr.Body, 0) >= 0 {
		return
	}
	b = appendBody(b, fr.Body)
	rd := NewReader(bytes.NewReader(b), Limits{MaxHeaders: 1000, MaxHeaderLength: 1 << 16, MaxBodyLength: 1 << 20})
	rd.Version = v
	got, err := rd.Read()
	if err != nil {
		t.Fatalf("re-read %q: %v", b, err)
	}
	if got.Command != fr.Command || got.Header.Len() != fr.Header.Len() || !bytes.Equal(got.Body, fr.Body) {
		t.Fatalf("round trip: got %v %q, want %v %q", got.Header, got.Body, fr.Header, fr.Body)
	}
	for i := 0; i < fr.Header.Len(); i++ {
		k1, v1 := fr.Header.GetAt(i)
		k2, v2 := got.Header.GetAt(i)
		if k1 != k2 || v1 != v2 {
			t.Fatalf("round trip header %d: got %q:%q, want %q:%q", i, k2, v2, k1, v1)
		}
	}
}
