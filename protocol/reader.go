package protocol

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// prefetchPool holds the SniffLimit-sized buffers used while sniffing; only the bytes actually read are
// kept (copied) for replay.
var prefetchPool = sync.Pool{New: func() any { b := make([]byte, SniffLimit); return &b }}

// detect returns the protocol of nc, the connection to serve it on (nc, or a TLS connection over it) and
// a reader replaying the sniffed bytes before the connection. When the connector names one protocol and
// has no TLS nothing is read. On failure it logs why and the caller closes nc.
//
// detect and sniffConn keep small frames: the goroutine parks in a read here, and a stack that grows past
// its initial 2 KiB while sniffing stays at 4 KiB for the life of an idle connection (measured by
// TestIdleConnMemory).
func (s *Server) detect(l *listener, nc net.Conn) (string, net.Conn, io.Reader, error) {
	if l.tls != nil {
		return s.detectTLS(l, nc)
	}
	if p := l.conf.Protocol; p != "" {
		return p, nc, replay(nc, nil), nil
	}
	// The accept loop has set the read deadline: arming a timer is deep enough in the runtime to grow
	// this goroutine's stack, while clearing it is not.
	bp := prefetchPool.Get().(*[]byte)
	n, proto, err := sniffConn(nc, *bp, l.conf.Detect)
	if err == nil {
		err = nc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		s.detectFailed(l, nc, err, (*bp)[:n])
		prefetchPool.Put(bp)
		return "", nil, nil, err
	}
	r := replay(nc, (*bp)[:n])
	prefetchPool.Put(bp)
	return proto, nc, r, nil
}

// detectTLS is detect on a connector with TLS. On a tls:// connector the handshake starts at once; on an
// autodetecting one the first bytes are sniffed with TLS among the protocols, and clear text is served as
// on any other connector, on a frame as small as detect's (see there).
func (s *Server) detectTLS(l *listener, nc net.Conn) (string, net.Conn, io.Reader, error) {
	if l.tls.always {
		return s.detectInsideTLS(l, nc, nil)
	}
	bp := prefetchPool.Get().(*[]byte)
	n, proto, err := sniffConn(nc, *bp, l.conf.Detect)
	if err == nil && proto == TLS {
		// Copied: the prefetch buffer goes back to the pool before the handshake, which may take seconds.
		sniffed := slices.Clone((*bp)[:n])
		prefetchPool.Put(bp)
		return s.detectInsideTLS(l, nc, sniffed)
	}
	if err == nil {
		err = nc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		s.detectFailed(l, nc, err, (*bp)[:n])
		prefetchPool.Put(bp)
		return "", nil, nil, err
	}
	r := replay(nc, (*bp)[:n])
	prefetchPool.Put(bp)
	return proto, nc, r, nil
}

// detectInsideTLS completes the TLS handshake, replaying sniffed (the start of the ClientHello), then
// sniffs the connector's other protocols inside TLS, or takes its one protocol as is. The handshake and
// the inner sniff share the accept loop's detect_timeout.
//
//go:noinline
func (s *Server) detectInsideTLS(l *listener, nc net.Conn, sniffed []byte) (string, net.Conn, io.Reader, error) {
	tc, err := s.handshakeTLS(l, nc, sniffed)
	if err != nil {
		s.detectFailed(l, nc, err, sniffed)
		return "", nil, nil, err
	}
	bp := prefetchPool.Get().(*[]byte)
	defer prefetchPool.Put(bp)
	proto, n := l.conf.Protocol, 0
	if proto == "" {
		n, proto, err = sniffConn(tc, *bp, l.tls.inner)
		if err != nil {
			err = fmt.Errorf("%w (inside tls)", err)
		}
	}
	if err == nil {
		err = clearDeadlines(nc)
	}
	if err != nil {
		s.detectFailed(l, nc, err, (*bp)[:n])
		return "", nil, nil, err
	}
	return proto, tc, replay(tc, (*bp)[:n]), nil
}

// sniffConn reads into buf until Sniff decides or the read deadline passes.
func sniffConn(nc net.Conn, buf []byte, protocols []string) (int, string, error) {
	n := 0
	for {
		k, rerr := nc.Read(buf[n:])
		n += k
		proto, err := Sniff(buf[:n], protocols)
		if err == nil {
			return n, proto, nil
		}
		if err != ErrNeedMore {
			return n, "", err
		}
		if rerr != nil {
			if isTimeout(rerr) {
				rerr = ErrDetectTimeout
			}
			return n, "", rerr
		}
	}
}

// replay returns the connection's buffered reader, which yields a copy of sniffed before the socket.
//
//go:noinline
func replay(nc net.Conn, sniffed []byte) io.Reader {
	return newConnReader(nc, sniffed)
}

// detectFailed logs a connection closed before its protocol was recognised. A scanner or a misconfigured
// client can fail thousands of times a second, so each kind of failure is logged at most once a second
// per connector, with the count since the last line.
func (s *Server) detectFailed(l *listener, nc net.Conn, err error, got []byte) {
	var msg string
	var rl *rateLimit
	switch {
	case errors.Is(err, ErrHTTPRequest):
		msg, rl = "http request on broker port", &l.httpLogs
	case errors.Is(err, ErrUnknownProtocol):
		msg, rl = "unknown protocol", &l.unknownLogs
	case errors.Is(err, ErrDetectTimeout):
		msg, rl = "detect timeout", &l.timeoutLogs
	case errors.Is(err, ErrTLSHandshake):
		msg, rl = "tls handshake failed", &l.tlsLogs
	default:
		if ce := s.log.Check(zap.DebugLevel, "connection closed while detecting protocol"); ce != nil {
			ce.Write(zap.String("connector", l.conf.Name), zap.Stringer("remote", nc.RemoteAddr()),
				zap.Int("bytes", len(got)), zap.Error(err))
		}
		return
	}
	n := rl.hit()
	if n == 0 {
		return
	}
	fields := []zap.Field{zap.String("connector", l.conf.Name), zap.Stringer("remote", nc.RemoteAddr()),
		zap.Int("bytes", len(got)), zap.Binary("first_bytes", got[:min(len(got), 16)]),
		zap.String("reason", err.Error())}
	if n > 1 {
		fields = append(fields, zap.Int64("count", n))
	}
	if errors.Is(err, ErrDetectTimeout) {
		fields = append(fields, zap.Duration("detect_timeout", l.detectTimeout()))
	}
	s.log.Info(msg, fields...)
}

// readSizes are the read buffer sizes a connection moves between. An idle connection holds the smallest
// (it is parked in Read); a busy one grows its buffer so a stream of small packets costs few syscalls.
var readSizes = [...]int{512, 2 << 10, 8 << 10, 32 << 10}

// readPools recycle read buffers per size, boxed so Put does not allocate.
var readPools [len(readSizes)]sync.Pool

func getReadBuf(class int) *[]byte {
	if p, ok := readPools[class].Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, readSizes[class])
	return &b
}

// maxEmptyReads bounds reads returning no data and no error before giving up (as bufio does).
const maxEmptyReads = 100

// connReader is a connection's buffered reader. Unlike bufio.Reader it starts with the sniffed bytes
// already buffered and adapts its buffer size to the traffic: a read that fills the buffer moves to the
// next size, a read using less than a quarter of it moves down to the smallest size holding twice as
// much, so a connection going idle after a burst parks with a small buffer. Reads at least as large as
// the buffer go straight to the socket. It is used from the handler's goroutine only.
type connReader struct {
	src   io.Reader
	bufp  *[]byte // a buffer from readPools[class]; nil once released
	class int
	next  int // class for the next fill, decided by the last one
	r, w  int // buffered bytes are (*bufp)[r:w]
	err   error
}

func newConnReader(src io.Reader, sniffed []byte) *connReader {
	class := 0
	for class < len(readSizes)-1 && readSizes[class] < len(sniffed) {
		class++
	}
	cr := &connReader{src: src, class: class, next: 0, bufp: getReadBuf(class)}
	cr.w = copy(*cr.bufp, sniffed)
	return cr
}

// Read reads buffered bytes, or from the socket when none are buffered.
func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if cr.r == cr.w {
		if cr.err != nil {
			return 0, cr.takeErr()
		}
		if cr.bufp == nil {
			return 0, net.ErrClosed
		}
		if len(p) >= len(*cr.bufp) {
			// Large read (a message body): no copy through the buffer.
			return cr.src.Read(p)
		}
		cr.fill()
		if cr.r == cr.w {
			return 0, cr.takeErr()
		}
	}
	n := copy(p, (*cr.bufp)[cr.r:cr.w])
	cr.r += n
	return n, nil
}

// ReadByte implements io.ByteReader, which the front-ends' decoders use to read headers.
func (cr *connReader) ReadByte() (byte, error) {
	for cr.r == cr.w {
		if cr.err != nil {
			return 0, cr.takeErr()
		}
		if cr.bufp == nil {
			return 0, net.ErrClosed
		}
		cr.fill()
	}
	b := (*cr.bufp)[cr.r]
	cr.r++
	return b, nil
}

// takeErr returns the pending error and clears it: a read deadline error is not final, the handler may
// set a new deadline and read again.
func (cr *connReader) takeErr() error {
	err := cr.err
	cr.err = nil
	return err
}

// fill reads into the empty buffer, first switching to the size the previous fill chose.
func (cr *connReader) fill() {
	if cr.next != cr.class {
		readPools[cr.class].Put(cr.bufp)
		cr.class, cr.bufp = cr.next, getReadBuf(cr.next)
	}
	buf := *cr.bufp
	cr.r, cr.w = 0, 0
	for i := 0; i < maxEmptyReads; i++ {
		n, err := cr.src.Read(buf)
		if n < 0 || n > len(buf) {
			panic("protocol: reader returned an invalid count")
		}
		cr.w, cr.err = n, err
		if n > 0 || err != nil {
			cr.adapt(n)
			return
		}
	}
	cr.err = io.ErrNoProgress
}

// adapt picks the next buffer size from how much the last read brought.
func (cr *connReader) adapt(n int) {
	size := readSizes[cr.class]
	switch {
	case n == size && cr.class < len(readSizes)-1:
		cr.next = cr.class + 1
	case n < size/4:
		cr.next = 0
		for cr.next < cr.class && readSizes[cr.next] < 2*n {
			cr.next++
		}
	default:
		cr.next = cr.class
	}
}

// release returns the buffer to its pool once the handler has returned; later reads fail.
func (cr *connReader) release() {
	if cr.bufp != nil {
		readPools[cr.class].Put(cr.bufp)
		cr.bufp = nil
	}
	cr.r, cr.w = 0, 0
}
