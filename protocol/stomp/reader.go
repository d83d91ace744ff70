package stomp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/go-stomp/stomp/v3/frame"
	"github.com/lyremq/lyre/conf"
)

// Frame-reading errors. Each one is a protocol error: the session answers with an ERROR frame and closes.
var (
	ErrFrameTooLarge    = errors.New("stomp: frame body exceeds max_message_length")
	ErrTooManyHeaders   = errors.New("stomp: frame has more than max_headers headers")
	ErrHeaderTooLong    = errors.New("stomp: header line exceeds max_header_length")
	ErrMalformedHeader  = errors.New("stomp: malformed header line")
	ErrBadEscape        = errors.New("stomp: undefined escape sequence in header")
	ErrBadContentLength = errors.New("stomp: invalid content-length header")
	ErrUnknownCommand   = errors.New("stomp: unknown command")
	ErrMissingNUL       = errors.New("stomp: frame body not terminated by NUL")
)

// Limits bound what the Reader buffers for one frame. Every limit is checked before the bytes it covers
// are buffered: a content-length over MaxBodyLength is refused from the header alone, and a body without
// content-length is refused as soon as it grows past MaxBodyLength.
type Limits struct {
	MaxHeaders      int   // header lines per frame
	MaxHeaderLength int   // bytes in one header line or the command line, EOL excluded
	MaxBodyLength   int64 // bytes in one frame body
}

// Protocol versions, ordered.
const (
	v10 = 10
	v11 = 11
	v12 = 12
)

// initialBufSize is the reader's starting buffer. Small, because the connection's own Reader already
// buffers socket reads; the buffer grows only for long lines or bodies without content-length.
const initialBufSize = 512

// bufPool holds initial-size buffers. A Reader returns its buffer once a frame is consumed and, when the
// underlying reader is an io.ByteReader, waits for the next frame's first byte without one, so an idle
// connection holds no frame buffer.
var bufPool = sync.Pool{New: func() any { b := make([]byte, initialBufSize); return &b }}

// Reader reads STOMP frames with bounded buffering. It replaces frame.Reader, whose header lines and bodies
// grow without limit. Header escaping follows the negotiated version (none in 1.0 and in CONNECT/CONNECTED
// frames, \n \c \\ in 1.1, plus \r in 1.2); Version starts at 0, meaning "before CONNECT".
type Reader struct {
	r       io.Reader
	lim     Limits
	buf     []byte
	pooled  *[]byte // buf's pool entry while buf is an initial-size pooled buffer
	start   int     // first unread byte in buf
	end     int     // end of valid bytes in buf
	err     error
	Version int
}

// NewReader returns a Reader over r. Limits that are zero or negative fall back to conf's defaults.
func NewReader(r io.Reader, lim Limits) *Reader {
	rd := &Reader{}
	rd.init(r, lim)
	return rd
}

// init sets up a Reader in place (sessions embed theirs).
func (rd *Reader) init(r io.Reader, lim Limits) {
	if lim.MaxHeaders <= 0 {
		lim.MaxHeaders = conf.DefaultMaxHeaders
	}
	if lim.MaxHeaderLength <= 0 {
		lim.MaxHeaderLength = conf.DefaultMaxHeaderLength
	}
	if lim.MaxBodyLength <= 0 {
		lim.MaxBodyLength = conf.DefaultMaxMessageLength
	}
	*rd = Reader{r: r, lim: lim}
}

// Read returns the next frame, skipping heart-beat EOLs between frames. It returns io.EOF when the stream
// ends cleanly between frames, io.ErrUnexpectedEOF when it ends inside one, one of the package's
// sentinel errors for a malformed or oversized frame, or the underlying reader's error.
func (r *Reader) Read() (*frame.Frame, error) {
	// Heart-beats: any number of EOLs before a command.
	var line []byte
	var err error
	for {
		line, err = r.readLine(true)
		if err != nil {
			return nil, err
		}
		if len(line) > 0 {
			break
		}
	}
	cmd, ok := command(line)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownCommand, truncate(line, 32))
	}
	f := &frame.Frame{Command: cmd}
	var scratch [16]string
	hdrs := scratch[:0]
	escaped := r.Version >= v11 && cmd != frame.CONNECT && cmd != frame.STOMP
	contentLength := int64(-1)
	for n := 0; ; n++ {
		line, err = r.readLine(false)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		if n >= r.lim.MaxHeaders {
			return nil, ErrTooManyHeaders
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return nil, ErrMalformedHeader
		}
		name, err := r.decodeName(line[:i], escaped)
		if err != nil {
			return nil, err
		}
		value, err := r.decode(line[i+1:], escaped)
		if err != nil {
			return nil, err
		}
		// A repeated header: only the first occurrence counts (STOMP 1.2 "Repeated Header Entries").
		if name == frame.ContentLength && contentLength < 0 {
			contentLength, err = strconv.ParseInt(value, 10, 64)
			if err != nil || contentLength < 0 {
				return nil, fmt.Errorf("%w %q", ErrBadContentLength, truncate([]byte(value), 32))
			}
			if contentLength > r.lim.MaxBodyLength {
				return nil, ErrFrameTooLarge
			}
		}
		hdrs = append(hdrs, name, value)
	}
	// One allocation of the exact size instead of Header.Add's growth; the scratch array is on the stack.
	f.Header = frame.NewHeader(hdrs...)
	if contentLength >= 0 {
		f.Body, err = r.readN(int(contentLength))
	} else {
		f.Body, err = r.readToNUL()
	}
	if err != nil {
		return nil, err
	}
	r.release()
	return f, nil
}

// readLine returns the next line without its EOL (LF, or CR LF), valid until the next read. The command
// line and header lines share the MaxHeaderLength bound.
func (r *Reader) readLine(first bool) ([]byte, error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(r.buf[r.start+scanned:r.end], '\n'); i >= 0 {
			line := r.buf[r.start : r.start+scanned+i]
			r.start += scanned + i + 1
			// STOMP 1.2 allows CR LF everywhere; 1.0 and 1.1 end lines with LF, so a CR there belongs to a
			// header value, except on the command line and the blank line that ends the headers.
			if n := len(line); n > 0 && line[n-1] == '\r' && (r.Version != v10 && r.Version != v11 || first || n == 1) {
				line = line[:n-1]
			}
			if len(line) > r.lim.MaxHeaderLength {
				return nil, ErrHeaderTooLong
			}
			return line, nil
		}
		scanned = r.end - r.start
		// One more byte is allowed for a trailing CR.
		if scanned > r.lim.MaxHeaderLength+1 {
			return nil, ErrHeaderTooLong
		}
		if err := r.fill(first && scanned == 0); err != nil {
			return nil, err
		}
	}
}

// fill reads more bytes into buf, growing it when full. atBoundary says the stream may end cleanly here.
func (r *Reader) fill(atBoundary bool) error {
	if r.err != nil {
		return r.eof(atBoundary)
	}
	if r.start > 0 && (r.start == r.end || r.end == len(r.buf)) {
		copy(r.buf, r.buf[r.start:r.end])
		r.end -= r.start
		r.start = 0
	}
	if len(r.buf) == 0 {
		return r.fillEmpty(atBoundary)
	}
	if r.end == len(r.buf) {
		// The limits are checked before the buffer would need to exceed the larger of one line and one
		// body, so growth stops there instead of doubling past it.
		size := int64(max(2*len(r.buf), initialBufSize))
		size = min(size, max(int64(r.lim.MaxHeaderLength)+2, r.lim.MaxBodyLength+1))
		if size <= int64(len(r.buf)) {
			return ErrFrameTooLarge // unreachable while the callers check their limits first
		}
		nb := make([]byte, size)
		copy(nb, r.buf[:r.end])
		r.buf = nb
		if r.pooled != nil {
			bufPool.Put(r.pooled)
			r.pooled = nil
		}
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	if err != nil {
		r.err = err
		if n == 0 {
			return r.eof(atBoundary)
		}
	}
	return nil
}

func (r *Reader) eof(atBoundary bool) error {
	if r.err == io.EOF && !atBoundary {
		return io.ErrUnexpectedEOF
	}
	return r.err
}

// Wait blocks until the next frame's first byte has arrived or the read failed, on small frames: an idle
// connection parks here rather than in Read, whose frame is large, and the runtime halves a parked
// goroutine's stack only while less than a quarter of it minus 800 bytes is in use. Read then returns
// the frame, or the error.
func (r *Reader) Wait() {
	if len(r.buf) == 0 && r.err == nil {
		_ = r.fillEmpty(true) // an error is kept in r.err for Read
	}
}

// fillEmpty takes a pooled buffer for the next bytes, blocking for the first one outside any buffer of
// its own when the underlying reader can hand out single bytes.
func (r *Reader) fillEmpty(atBoundary bool) error {
	var first byte
	br, byByte := r.r.(io.ByteReader)
	if byByte {
		c, err := br.ReadByte()
		if err != nil {
			r.err = err
			return r.eof(atBoundary)
		}
		first = c
	}
	r.pooled = bufPool.Get().(*[]byte)
	r.buf = *r.pooled
	r.start, r.end = 0, 0
	if byByte {
		r.buf[0] = first
		r.end = 1
		return nil
	}
	return r.fill(atBoundary)
}

// eagerBody is the largest body buffer allocated before its bytes arrive. A larger content-length is
// not trusted: the body is read into pooled chunks of this size as its bytes come, and its own buffer
// allocated once they all have, so a peer announcing max_message_length and stalling holds what it
// sent, not what it announced. A body costs one allocation of its size either way.
const eagerBody = 64 << 10

// chunkPool holds the eagerBody-byte chunks of bodies being read (boxed so Put does not allocate).
var chunkPool = sync.Pool{New: func() any { b := make([]byte, eagerBody); return &b }}

// readN reads a body of exactly n bytes followed by its NUL. The size was checked against MaxBodyLength.
func (r *Reader) readN(n int) ([]byte, error) {
	var body []byte
	var err error
	if n <= eagerBody {
		body = make([]byte, n)
		err = r.readFull(body)
	} else {
		body, err = r.readChunked(n)
	}
	if err != nil {
		return nil, err
	}
	for r.start == r.end {
		if err := r.fill(false); err != nil {
			return nil, err
		}
	}
	if r.buf[r.start] != 0 {
		return nil, ErrMissingNUL
	}
	r.start++
	return body, nil
}

// readFull fills p with the buffered bytes, then from the underlying reader.
func (r *Reader) readFull(p []byte) error {
	got := copy(p, r.buf[r.start:r.end])
	r.start += got
	if got == len(p) {
		return nil
	}
	if r.err != nil {
		return r.eof(false)
	}
	if _, err := io.ReadFull(r.r, p[got:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.err = err
		return err
	}
	return nil
}

// readChunked reads a body of n bytes into chunks from chunkPool, then copies them into its buffer.
func (r *Reader) readChunked(n int) ([]byte, error) {
	chunks := make([]*[]byte, 0, (n+eagerBody-1)/eagerBody)
	defer func() {
		for _, c := range chunks {
			chunkPool.Put(c)
		}
	}()
	for left := n; left > 0; {
		c := chunkPool.Get().(*[]byte)
		chunks = append(chunks, c)
		part := (*c)[:min(left, eagerBody)]
		if err := r.readFull(part); err != nil {
			return nil, err
		}
		left -= len(part)
	}
	body := make([]byte, n)
	for i, c := range chunks {
		copy(body[i*eagerBody:], *c)
	}
	return body, nil
}

// readToNUL reads a body that ends at the first NUL, refusing it once it passes MaxBodyLength.
func (r *Reader) readToNUL() ([]byte, error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(r.buf[r.start+scanned:r.end], 0); i >= 0 {
			n := scanned + i
			if int64(n) > r.lim.MaxBodyLength {
				return nil, ErrFrameTooLarge
			}
			var body []byte
			if n > 0 {
				body = make([]byte, n)
				copy(body, r.buf[r.start:r.start+n])
			}
			r.start += n + 1
			return body, nil
		}
		scanned = r.end - r.start
		if int64(scanned) > r.lim.MaxBodyLength {
			return nil, ErrFrameTooLarge
		}
		if err := r.fill(false); err != nil {
			return nil, err
		}
	}
}

// Buffered reports whether the Reader holds bytes it has not returned in a frame (the next frames' start,
// read with the last one).
func (r *Reader) Buffered() bool { return r.start < r.end }

// SkipHeartBeats consumes the heart-beat EOLs buffered before the next frame, here and then from the
// underlying reader while avail reports bytes buffered there (it must then not block), and reports whether
// nothing else is buffered: the caller may then wait for input without a read. A read error waiting to be
// returned counts as something.
func (r *Reader) SkipHeartBeats(avail func() int) bool {
	for {
		for r.start < r.end {
			switch {
			case r.buf[r.start] == '\n':
				r.start++
			case r.buf[r.start] == '\r' && r.start+1 < r.end && r.buf[r.start+1] == '\n':
				r.start += 2
			default:
				return false
			}
		}
		r.release()
		if r.err != nil {
			return false
		}
		if avail() == 0 {
			return true
		}
		if err := r.fill(true); err != nil {
			return false // kept in r.err for Read
		}
	}
}

// release gives the buffer back once it holds nothing, so an idle connection pins no frame buffer and a
// burst does not pin a grown one.
func (r *Reader) release() {
	if r.start != r.end {
		return
	}
	if r.pooled != nil {
		bufPool.Put(r.pooled)
		r.pooled = nil
	}
	r.buf = nil
	r.start, r.end = 0, 0
}

// decode turns a raw header name or value into a string, undoing STOMP escapes when escaped is set.
// STOMP 1.2 "Value Encoding": an undefined escape sequence is a fatal protocol error.
func (r *Reader) decode(b []byte, escaped bool) (string, error) {
	if !escaped || bytes.IndexByte(b, '\\') < 0 {
		return string(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i == len(b) {
			return "", ErrBadEscape
		}
		switch b[i] {
		case 'n':
			out = append(out, '\n')
		case 'c':
			out = append(out, ':')
		case '\\':
			out = append(out, '\\')
		case 'r':
			if r.Version < v12 {
				return "", ErrBadEscape
			}
			out = append(out, '\r')
		default:
			return "", ErrBadEscape
		}
	}
	return string(out), nil
}

// decodeName is decode for header names: the common ones map onto constants, saving an allocation.
func (r *Reader) decodeName(b []byte, escaped bool) (string, error) {
	for _, n := range knownHeaders {
		if string(b) == n {
			return n, nil
		}
	}
	return r.decode(b, escaped)
}

var knownHeaders = [...]string{
	frame.Destination, frame.ContentLength, frame.ContentType, frame.Receipt, frame.Id, frame.Ack,
	frame.Transaction, frame.MessageId, frame.Subscription, frame.AcceptVersion, frame.Host, frame.Login,
	frame.Passcode, frame.HeartBeat, "persistent", "reply-to", "expires", "selector",
}

// command maps a command line onto go-stomp's constant (so the frame shares the string, no allocation).
func command(b []byte) (string, bool) {
	for _, c := range commands {
		if string(b) == c {
			return c, true
		}
	}
	return "", false
}

var commands = [...]string{
	frame.SEND, frame.ACK, frame.NACK, frame.SUBSCRIBE, frame.UNSUBSCRIBE, frame.BEGIN, frame.COMMIT,
	frame.ABORT, frame.DISCONNECT, frame.CONNECT, frame.STOMP,
	// Server frames are recognised so that a client sending one gets a precise error, not "unknown".
	frame.CONNECTED, frame.MESSAGE, frame.RECEIPT, frame.ERROR,
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
