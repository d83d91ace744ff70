package protocol

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// readBufferSize is the read buffer of a connection. Small, because an idle connection holds it while
// parked in Read; reads at least this large bypass it (bufio), so large bodies are not copied twice.
const readBufferSize = 512

// prefetchPool holds the SniffLimit-sized buffers used while sniffing; only the bytes actually read are
// kept (copied) for replay.
var prefetchPool = sync.Pool{New: func() any { b := make([]byte, SniffLimit); return &b }}

// detect returns the protocol of nc and a reader replaying the sniffed bytes before the socket. When the
// connector names one protocol nothing is read. On failure it logs why and the caller closes nc.
//
// detect and sniffConn keep small frames: the goroutine parks in a read here, and a stack that grows past
// its initial 2 KiB while sniffing stays at 4 KiB for the life of an idle connection (measured by
// TestIdleConnMemory).
func (s *Server) detect(l *listener, nc net.Conn) (string, io.Reader, error) {
	if p := l.conf.Protocol; p != "" {
		return p, replay(nc, nil), nil
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
		return "", nil, err
	}
	r := replay(nc, (*bp)[:n])
	prefetchPool.Put(bp)
	return proto, r, nil
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
	if len(sniffed) == 0 {
		return bufio.NewReaderSize(nc, readBufferSize)
	}
	pc := &prefixConn{Conn: nc, prefix: append([]byte(nil), sniffed...)}
	return bufio.NewReaderSize(pc, readBufferSize)
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

// prefixConn reads the sniffed bytes, then the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		if len(p.prefix) == 0 {
			p.prefix = nil // let the replayed bytes be collected
		}
		return n, nil
	}
	return p.Conn.Read(b)
}
