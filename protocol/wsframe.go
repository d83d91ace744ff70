package protocol

// WebSocket framing after the handshake (RFC 6455 §5): gorilla/websocket does the opening handshake, then
// wsConn reads and writes frames itself. gorilla's connection keeps a read buffer, a mutex channel and
// handler closures for the life of the connection and parks its reader deep in its frame code, which
// costs an idle connection about 2 KiB more than TCP; framing here parks in a plain socket read and
// holds a 14-byte header buffer.

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
	"unicode/utf8"
)

// Opcodes [RFC 6455 §5.2].
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xA
)

// Close status codes [RFC 6455 §7.4.1].
const (
	wsCloseNormal     = 1000
	wsCloseProtocol   = 1002
	wsCloseTooBig     = 1009
	wsCloseNoStatus   = 1005
	wsMaxControlBytes = 125
)

// errWSProtocol ends a connection whose client broke RFC 6455 framing; the client is sent close 1002.
var errWSProtocol = errors.New("protocol: websocket framing error")

// wsConn is a WebSocket as the byte stream a front-end reads and writes: reads run across frame and
// message boundaries (an MQTT packet or STOMP frame may span messages, and one message may hold several);
// each write is one message, binary for MQTT, text for STOMP when it is valid UTF-8. Text and binary
// messages are both read. Pings are answered, a close is echoed and ends the stream as EOF. One goroutine
// reads and one writes; control frames the reader sends take the write lock.
type wsConn struct {
	nc   net.Conn  // the socket, or the TLS connection over it
	tls  *tls.Conn // nc when the WebSocket runs over TLS (wss)
	text bool      // STOMP: text messages where possible
	host string    // the request's Host header, without port

	// Reading, by the connection's reader only. src is the socket through an adaptive connReader: 16
	// inline bytes while idle, a pooled buffer while busy, so headers and small frames cost no syscall
	// each. wsConn is the front-end's reader itself (Read, ReadByte): no second connReader above it.
	src     *connReader
	limit   int64 // most bytes one message may hold
	left    int64 // payload bytes of the current data frame not yet read
	msgLen  int64 // bytes of the current message so far
	inMsg   bool  // a fragmented message is open: the next data frame must be a continuation
	mask    [4]byte
	maskPos int
	hdr     [14]byte
	hn      int // header bytes read of the next frame (Read reads the first two)
	one     [1]byte

	wmu    sync.Mutex // one frame at a time on the socket
	closed bool       // a close frame was sent; guarded by wmu
	whdr   [10]byte   // the writer's header; guarded by wmu
	iov    net.Buffers
	wiov   net.Buffers // iov as WriteTo consumes it
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.left > 0 {
			if int64(len(p)) > c.left {
				p = p[:c.left]
			}
			n, err := c.src.Read(p)
			for i := 0; i < n; i++ {
				p[i] ^= c.mask[c.maskPos]
				c.maskPos = (c.maskPos + 1) & 3
			}
			c.left -= int64(n)
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		// The frame header is read here, in a frame as shallow as a TCP read: an idle connection parks
		// in this read, and the runtime only shrinks a goroutine's stack when little of it is in use.
		need := 2
		for c.hn < need {
			if c.hn >= 2 {
				need = wsHeaderLen(c.hdr[0], c.hdr[1])
				if c.hn >= need {
					break
				}
			}
			n, err := c.src.Read(c.hdr[c.hn:need])
			c.hn += n
			if n == 0 && err != nil {
				return 0, err
			}
			if c.hn >= 2 {
				need = wsHeaderLen(c.hdr[0], c.hdr[1])
			}
		}
		c.hn = 0
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
}

// wsHeaderLen is the length of a frame header from its first two bytes: the extended payload length
// and the masking key it announces.
func wsHeaderLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// nextFrame takes the frame header Read has put in c.hdr; a control frame's payload is read and handled
// here, a data frame's is then read by Read (c.left).
//
//go:noinline
func (c *wsConn) nextFrame() error {
	h := c.hdr[:]
	fin, op, masked := h[0]&0x80 != 0, h[0]&0x0f, h[1]&0x80 != 0
	if h[0]&0x70 != 0 {
		return c.fail(wsCloseProtocol, "reserved bits set (no extension was negotiated)")
	}
	if !masked {
		return c.fail(wsCloseProtocol, "unmasked client frame [RFC 6455 §5.1]")
	}
	n, m := int64(h[1]&0x7f), 2
	switch n {
	case 126:
		n, m = int64(binary.BigEndian.Uint16(h[2:4])), 4
	case 127:
		u := binary.BigEndian.Uint64(h[2:10])
		if u>>63 != 0 {
			return c.fail(wsCloseProtocol, "payload length over 2^63")
		}
		n, m = int64(u), 10
	}
	copy(c.mask[:], h[m:m+4])
	c.maskPos = 0
	if op >= wsClose {
		return c.control(op, fin, n)
	}
	switch {
	case op != wsContinuation && op != wsText && op != wsBinary:
		return c.fail(wsCloseProtocol, "unknown data opcode")
	case op == wsContinuation && !c.inMsg:
		return c.fail(wsCloseProtocol, "continuation frame outside a message")
	case op != wsContinuation && c.inMsg:
		return c.fail(wsCloseProtocol, "new message before the last one ended")
	case op != wsContinuation:
		c.msgLen = 0
	}
	c.msgLen += n
	if c.msgLen > c.limit {
		_ = c.writeClose(wsCloseTooBig)
		return ErrWSMessageTooLarge
	}
	c.inMsg, c.left = !fin, n
	return nil
}

// control handles a ping, pong or close frame of n payload bytes: a ping is answered with a pong of the
// same payload, a close is echoed and ends the stream (EOF).
//
//go:noinline
func (c *wsConn) control(op byte, fin bool, n int64) error {
	if !fin || n > wsMaxControlBytes {
		return c.fail(wsCloseProtocol, "control frame fragmented or over 125 bytes")
	}
	p := make([]byte, n) // rare: on the heap, not in the frames every read goes through
	if _, err := io.ReadFull(c.src, p); err != nil {
		return err
	}
	for i := range p {
		p[i] ^= c.mask[i&3]
	}
	switch op {
	case wsPing:
		return c.writeFrame(wsPong, p)
	case wsPong:
		return nil
	case wsClose:
		code := wsCloseNormal
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		if code == wsCloseNoStatus {
			code = wsCloseNormal
		}
		_ = c.writeClose(code)
		return io.EOF
	}
	return c.fail(wsCloseProtocol, "unknown control opcode")
}

// fail sends close code and returns the framing error. Apart, so the frames every read goes through
// stay small (see Read).
//
//go:noinline
func (c *wsConn) fail(code int, reason string) error {
	_ = c.writeClose(code)
	return fmt.Errorf("%w: %s", errWSProtocol, reason)
}

// ReadByte implements io.ByteReader for the front-ends' header decoders; the bytes come from src's
// buffer, so it costs no syscall per byte.
func (c *wsConn) ReadByte() (byte, error) {
	for {
		n, err := c.Read(c.one[:]) // a field: a local array would move to the heap, one allocation a byte
		if n == 1 {
			return c.one[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	op := byte(wsBinary)
	if c.text && utf8.Valid(p) {
		op = wsText
	}
	if err := c.writeFrame(op, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeBuffers writes the pieces of *v as one message, with one writev, and consumes them, like
// net.Buffers.WriteTo.
func (c *wsConn) writeBuffers(v *net.Buffers) (int64, error) {
	total := 0
	for _, b := range *v {
		total += len(b)
	}
	op := byte(wsBinary)
	if c.text && validUTF8(*v) {
		op = wsText
	}
	c.wmu.Lock()
	var err error
	if !c.closed { // after a close frame nothing is sent (see writeFrame)
		err = c.writeLocked(op, total, *v)
	}
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	clear(*v)
	*v = (*v)[len(*v):]
	return int64(total), nil
}

// writeFrame writes one unfragmented frame (the server does not mask [RFC 6455 §5.1]). After a close
// frame it writes nothing and reports success: RFC 6455 §5.5.1 sends no data after one, and the reader
// that sent it is ending the connection with its reason, which a write error would hide.
func (c *wsConn) writeFrame(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	return c.writeLocked(op, len(p), net.Buffers{p})
}

// writeClose sends a close frame with code, unless one was sent.
func (c *wsConn) writeClose(code int) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	return c.closeLocked(code)
}

// closeLocked marks the connection closed and sends a close frame with code, under a short write
// deadline: the peer may not be reading. c.wmu is held.
func (c *wsConn) closeLocked(code int) error {
	c.closed = true
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(code))
	_ = c.nc.SetWriteDeadline(time.Now().Add(wsCloseWait))
	return c.writeLocked(wsClose, 2, net.Buffers{p[:]})
}

// writeLocked writes one final frame for op whose payload is pieces (n bytes in all), header included,
// with one writev. c.wmu is held.
func (c *wsConn) writeLocked(op byte, n int, pieces net.Buffers) error {
	c.iov = append(append(c.iov[:0], c.header(op, n)), pieces...)
	// WriteTo consumes its receiver: it gets a copy in a field (a local would move to the heap, one
	// allocation per frame), and c.iov keeps the backing array for the next frame.
	c.wiov = c.iov
	_, err := c.wiov.WriteTo(c.nc)
	clear(c.iov[:cap(c.iov)])
	c.iov, c.wiov = c.iov[:0], nil
	return err
}

// header encodes a final frame's header for op and n payload bytes into c.whdr. c.wmu is held.
func (c *wsConn) header(op byte, n int) []byte {
	h := c.whdr[:]
	h[0] = 0x80 | op
	switch {
	case n < 126:
		h[1] = byte(n)
		return h[:2]
	case n <= 0xffff:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		return h[:4]
	}
	h[1] = 127
	binary.BigEndian.PutUint64(h[2:], uint64(n))
	return h[:10]
}

// Close sends a close frame unless a write holds the socket (a peer that does not read must not hold up
// the close), then closes the socket (under TLS, without close_notify: see Conn.Close).
func (c *wsConn) Close() error {
	if c.wmu.TryLock() {
		if !c.closed {
			_ = c.closeLocked(wsCloseNormal)
		}
		c.wmu.Unlock()
	}
	if c.tls != nil {
		return c.tls.NetConn().Close()
	}
	return c.nc.Close()
}

func (c *wsConn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// validUTF8 reports whether the pieces together are valid UTF-8: a character may span two pieces.
func validUTF8(v net.Buffers) bool {
	var carry [utf8.UTFMax]byte
	nc := 0 // bytes of an unfinished character carried over
	for _, b := range v {
		for nc > 0 && len(b) > 0 {
			carry[nc] = b[0]
			nc++
			b = b[1:]
			if utf8.FullRune(carry[:nc]) {
				if r, _ := utf8.DecodeRune(carry[:nc]); r == utf8.RuneError {
					return false
				}
				nc = 0
			} else if nc == utf8.UTFMax {
				return false
			}
		}
		if len(b) == 0 {
			continue
		}
		// An unfinished last character is carried to the next piece.
		end := len(b)
		for j := len(b) - 1; j >= 0 && j >= len(b)-utf8.UTFMax+1; j-- {
			if utf8.RuneStart(b[j]) {
				if !utf8.FullRune(b[j:]) {
					end = j
				}
				break
			}
		}
		if !utf8.Valid(b[:end]) {
			return false
		}
		nc = copy(carry[:], b[end:])
	}
	return nc == 0
}
