package protocol

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
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
	if l.tls != nil && l.tls.always {
		return s.detectInsideTLS(l, nc, nil)
	}
	if p := l.set.Connector.Protocol; p != "" && !l.set.Connector.BindsWebSocket() {
		return p, nc, replay(nc, nil), nil
	}
	// The accept loop has set the read deadline: arming a timer is deep enough in the runtime to grow
	// this goroutine's stack, while clearing it is not.
	bp := prefetchPool.Get().(*[]byte)
	n, proto, err := sniffConn(nc, *bp, l.set.Connector.Sniffed())
	if err == nil && proto == HTTP {
		sniffed := slices.Clone((*bp)[:n]) // the upgrade may take seconds: the buffer goes back now
		prefetchPool.Put(bp)
		return s.upgradeOffStack(l, nc, sniffed)
	}
	if err == nil && proto == TLS {
		// Only when the connector detects TLS. Copied: the prefetch buffer goes back to the pool before
		// the handshake, which may take seconds.
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
	proto, n := l.set.Connector.Protocol, 0
	if proto == "" || l.set.Connector.BindsWebSocket() {
		n, proto, err = sniffConn(tc, *bp, l.tls.inner)
		if err != nil {
			err = fmt.Errorf("%w (inside tls)", err)
		}
	}
	if err == nil && proto == HTTP {
		return s.upgradeOffStack(l, tc, slices.Clone((*bp)[:n]))
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
		l.stats.refuse(RefusedHTTP)
	case errors.Is(err, ErrUnknownProtocol):
		msg, rl = "unknown protocol", &l.unknownLogs
		l.stats.refuse(RefusedUnknownProtocol)
	case errors.Is(err, ErrDetectTimeout):
		msg, rl = "detect timeout", &l.timeoutLogs
		l.stats.refuse(RefusedDetectTimeout)
	case errors.Is(err, ErrTLSHandshake):
		msg, rl = "tls handshake failed", &l.tlsLogs
		l.stats.refuse(RefusedTLSHandshake)
	default:
		if ce := s.log.Check(zap.DebugLevel, "connection closed while detecting protocol"); ce != nil {
			ce.Write(zap.String("connector", l.set.Connector.Name), zap.Stringer("remote", nc.RemoteAddr()),
				zap.Int("bytes", len(got)), zap.Error(err))
		}
		return
	}
	n := rl.hit()
	if n == 0 {
		return
	}
	fields := []zap.Field{zap.String("connector", l.set.Connector.Name), zap.Stringer("remote", nc.RemoteAddr()),
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

// readSizes are the read buffer sizes a busy connection moves between: a stream of small packets grows
// the buffer so it costs few syscalls. A connection whose last read was small parks in its next read with
// no pooled buffer at all, reading into its tiny inline one (see connReader).
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

// tinySize is the inline buffer a light connection reads into: it holds the packets an idle connection
// receives (PINGREQ, acknowledgements, STOMP heart-beats) in one read. A read that fills it switches the
// next fill to a pooled buffer.
const tinySize = 16

// tinyClass is connReader.next when the next fill reads into the inline buffer.
const tinyClass = -1

// smallRead: a read bringing fewer bytes than this sends the next fill to the inline buffer, unless the
// connection is busy.
const smallRead = 128

// quietGap: a connection is busy from when the inline buffer cost an extra read (it came back full within
// quietGap of the previous small read) until a small read comes quietGap or more after the previous one.
// A stream of small packets (QoS 1 publishers waiting for acknowledgements) then keeps its pooled buffer
// and reads each burst in one syscall; a connection that goes quiet parks with the inline buffer.
const quietGap = time.Second

// clockStart anchors connReader's monotonic timestamps.
var clockStart = time.Now()

// connReader is a connection's buffered reader. Unlike bufio.Reader it starts with the sniffed bytes
// already buffered and adapts its buffer to the traffic: a read that fills the buffer moves to the next
// size, a read using less than a quarter of it moves down to the smallest size holding twice as much, and
// after a read of under smallRead bytes the next read goes into a tiny inline buffer with the pooled one
// returned (unless the connection is busy, see quietGap), so an idle connection parks in Read holding no
// read buffer. Reads at least as large as the
// buffer go straight to the socket. It is used from the handler's goroutine only.
type connReader struct {
	src      io.Reader
	bufp     *[]byte // a buffer from readPools[class] while buf is not tiny; else nil
	buf      []byte  // where buffered bytes live: *bufp or tiny[:]
	r, w     int     // buffered bytes are buf[r:w]
	err      error
	class    int8 // size class of bufp
	next     int8 // class for the next fill, decided by the last one; tinyClass: the inline buffer
	released bool
	busy     bool           // see quietGap
	lastRead time.Duration  // since clockStart, of the last small read checked for quietness
	count    *atomic.Uint64 // bytes read from src, when set (the connection's BytesIn)
	owner    *Conn          // when set, its deferred output is flushed before each socket read
	deadline time.Duration  // since clockStart, of the read deadline Conn.ArmReadDeadline set last
	tiny     [tinySize]byte
}

func newConnReader(src io.Reader, sniffed []byte) *connReader {
	cr := &connReader{src: src, next: tinyClass}
	if len(sniffed) <= tinySize {
		cr.buf = cr.tiny[:]
	} else {
		for int(cr.class) < len(readSizes)-1 && readSizes[cr.class] < len(sniffed) {
			cr.class++
		}
		cr.bufp = getReadBuf(int(cr.class))
		cr.buf = *cr.bufp
	}
	cr.w = copy(cr.buf, sniffed)
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
		if cr.released {
			return 0, net.ErrClosed
		}
		size := tinySize
		if cr.next != tinyClass {
			size = readSizes[cr.next]
		}
		if len(p) >= size {
			// Large read (a message body): no copy through the buffer.
			cr.flushOwner()
			n, err := cr.src.Read(p)
			cr.counted(n)
			return n, err
		}
		cr.fill()
		if cr.r == cr.w {
			return 0, cr.takeErr()
		}
	}
	n := copy(p, cr.buf[cr.r:cr.w])
	cr.r += n
	return n, nil
}

// ReadByte implements io.ByteReader, which the front-ends' decoders use to read headers.
func (cr *connReader) ReadByte() (byte, error) {
	for cr.r == cr.w {
		if cr.err != nil {
			return 0, cr.takeErr()
		}
		if cr.released {
			return 0, net.ErrClosed
		}
		cr.fill()
	}
	b := cr.buf[cr.r]
	cr.r++
	return b, nil
}

// flushOwner starts the writer for what the connection's handler answered to the bytes read so far
// (Conn.CommitDeferred), before the reader may wait for more.
func (cr *connReader) flushOwner() {
	if cr.owner != nil {
		cr.owner.Flush()
	}
}

// counted adds n bytes read from the socket to the connection's counter.
func (cr *connReader) counted(n int) {
	if cr.count != nil && n > 0 {
		cr.count.Add(uint64(n))
	}
}

// takeErr returns the pending error and clears it: a read deadline error is not final, the handler may
// set a new deadline and read again.
func (cr *connReader) takeErr() error {
	err := cr.err
	cr.err = nil
	return err
}

// fill reads into the empty buffer, first switching to the buffer the previous fill chose.
func (cr *connReader) fill() {
	cr.flushOwner()
	cr.switchBuf()
	buf := cr.buf
	cr.r, cr.w = 0, 0
	for i := 0; i < maxEmptyReads; i++ {
		n, err := cr.src.Read(buf)
		if n < 0 || n > len(buf) {
			panic("protocol: reader returned an invalid count")
		}
		cr.w, cr.err = n, err
		cr.counted(n)
		if n > 0 || err != nil {
			cr.adapt(n)
			return
		}
	}
	cr.err = io.ErrNoProgress
}

// switchBuf moves to the buffer chosen by next, returning a pooled one it leaves.
func (cr *connReader) switchBuf() {
	if cr.next == tinyClass {
		if cr.bufp != nil {
			readPools[cr.class].Put(cr.bufp)
			cr.bufp, cr.class = nil, 0
		}
		cr.buf = cr.tiny[:]
		return
	}
	if cr.bufp != nil && cr.next == cr.class {
		return
	}
	if cr.bufp != nil {
		readPools[cr.class].Put(cr.bufp)
	}
	cr.class, cr.bufp = cr.next, getReadBuf(int(cr.next))
	cr.buf = *cr.bufp
}

// adapt picks the next buffer from how much the last read brought.
func (cr *connReader) adapt(n int) {
	if cr.bufp == nil { // the inline buffer
		cr.next = tinyClass
		if n == len(cr.buf) {
			// More was waiting: so soon after the previous small read, the inline buffer cost a syscall.
			cr.next = 0
			if cr.sinceLastRead() < quietGap {
				cr.busy = true
			}
		}
		return
	}
	size := readSizes[cr.class]
	switch {
	case n == size && int(cr.class) < len(readSizes)-1:
		cr.next = cr.class + 1
	case n < smallRead:
		cr.next = 0
		if !cr.busy || cr.sinceLastRead() >= quietGap {
			cr.busy = false
			cr.next = tinyClass
		}
	case n < size/4:
		cr.next = 0
		for cr.next < cr.class && readSizes[cr.next] < 2*n {
			cr.next++
		}
	default:
		cr.next = cr.class
	}
}

// sinceLastRead returns the time since the previous call (a long time for the first) and records now.
func (cr *connReader) sinceLastRead() time.Duration {
	now := time.Since(clockStart)
	gap := now - cr.lastRead
	if cr.lastRead == 0 {
		gap = quietGap
	}
	cr.lastRead = now
	return gap
}

// idle gives the pooled buffer back when nothing is buffered, before the connection parks: its next
// fill, when input arrives, reads into the inline buffer.
func (cr *connReader) idle() {
	if cr.r == cr.w && cr.bufp != nil {
		readPools[cr.class].Put(cr.bufp)
		cr.bufp, cr.class = nil, 0
		cr.buf = cr.tiny[:]
		cr.r, cr.w = 0, 0
		cr.next = tinyClass
	}
}

// release returns the buffer to its pool once the handler has returned; later reads fail.
func (cr *connReader) release() {
	if cr.bufp != nil {
		readPools[cr.class].Put(cr.bufp)
		cr.bufp = nil
	}
	cr.buf = nil
	cr.released = true
	cr.r, cr.w = 0, 0
}
