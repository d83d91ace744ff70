package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// wsMaxMessage bounds one WebSocket message from the broker, which wsRaw buffers whole.
	wsMaxMessage = 64 << 20
	// wsReadBuffer is gorilla's own read buffer; it copies from wsRaw's buffer, never from the socket.
	wsReadBuffer = 1 << 10
	// wsMaxResponse bounds the HTTP response to the handshake.
	wsMaxResponse = 16 << 10
	// wsCloseWait bounds the close frame that Close sends.
	wsCloseWait = 250 * time.Millisecond
)

var (
	errWSTooLarge  = errors.New("lyre-bench: websocket message too large")
	errWSReadAhead = errors.New("lyre-bench: websocket read past a buffered message")
	errWSProtocol  = errors.New("lyre-bench: websocket sub-protocol not offered")
)

// wsConn is a WebSocket connection seen as a byte stream, the net.Conn under the MQTT and STOMP clients with
// -transport ws or wss. Read drains one message, then goes on to the next: packets and frames may span
// messages and share them, and text and binary messages are read alike. Write sends one message.
//
// Read deadlines stay recoverable, as on TCP (the subscribers' keep-alive timer is a read deadline): see
// wsRaw. Per message, gorilla allocates a reader and a writer (a few dozen bytes); the adapter itself
// allocates nothing after the handshake.
type wsConn struct {
	ws  *websocket.Conn
	raw *wsRaw
	msg io.Reader // the message being read; nil between messages
	err error     // gorilla's read error, kept: it panics after 1000 reads of a failed connection
	typ int       // websocket.BinaryMessage or TextMessage
}

// Read reads from the current message, waiting for the next one when it is used up.
func (c *wsConn) Read(p []byte) (int, error) {
	for c.err == nil {
		if c.msg == nil {
			if err := c.raw.wait(); err != nil {
				return 0, err // a timeout here leaves everything as it was
			}
			_, r, err := c.ws.NextReader()
			if err != nil {
				c.err = closeToEOF(err)
				break
			}
			c.msg = r
		}
		n, err := c.msg.Read(p)
		if err == io.EOF {
			c.msg = nil
			err = nil
			if n == 0 {
				continue
			}
		}
		if err != nil {
			c.err = closeToEOF(err)
			return n, c.err
		}
		return n, nil
	}
	return 0, c.err
}

// closeToEOF turns the broker's orderly close into the io.EOF a TCP close gives.
func closeToEOF(err error) error {
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
		return io.EOF
	}
	return err
}

// Write sends p as one message.
func (c *wsConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w, err := c.ws.NextWriter(c.typ)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(p)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// Close sends a close frame, best effort, and closes the connection.
func (c *wsConn) Close() error {
	deadline := time.Now().Add(wsCloseWait)
	c.raw.Conn.SetWriteDeadline(deadline) // also frees a Write stuck on a broker that does not read
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline)
	return c.ws.Close()
}

func (c *wsConn) LocalAddr() net.Addr  { return c.raw.Conn.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.raw.Conn.RemoteAddr() }

// NetConn returns the socket (a *net.TCPConn, or a *tls.Conn for wss).
func (c *wsConn) NetConn() net.Conn { return c.raw.Conn }

// The deadlines go to the socket directly. gorilla's SetWriteDeadline may not be called while another
// goroutine writes, and the clients set deadlines from other goroutines to stop a connection.
func (c *wsConn) SetDeadline(t time.Time) error      { return c.raw.Conn.SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.raw.Conn.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.raw.Conn.SetWriteDeadline(t) }

// wsRaw is the socket under gorilla's Conn. It reads ahead on its own and gives gorilla only what is
// complete: first the HTTP response to the handshake, then whole messages. wait, called by wsConn.Read
// under the caller's read deadline, reads until buf holds every frame of the next message, and Read serves
// gorilla from buf up to the end of that message. So gorilla never waits on the socket and never sees a
// timeout, which would break its connection for good ("after a read has timed out, the websocket
// connection state is corrupt"); a timeout leaves the partial message in buf for the next wait.
//
// A ping from the broker is answered (by gorilla) when the message after it has arrived; the clients get
// one at least every half keep-alive.
type wsRaw struct {
	net.Conn
	buf    []byte
	r, w   int  // buffered: buf[r:w]
	end    int  // gorilla may read buf[r:end]: complete messages
	scan   int  // complete frames of the next message end here; end <= scan <= w
	framed bool // the handshake is done: buf holds frames
}

// Read serves gorilla from buf.
func (c *wsRaw) Read(p []byte) (int, error) {
	if c.r == c.end {
		if c.framed {
			return 0, errWSReadAhead // gorilla asks only for frames of a message that wait completed
		}
		if err := c.waitResponse(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.end])
	c.r += n
	return n, nil
}

// waitResponse moves end past the HTTP response to the handshake. gorilla reads it through its own
// buffer, which must not take frames the broker sends right after it.
func (c *wsRaw) waitResponse() error {
	for {
		if i := bytes.Index(c.buf[c.end:c.w], []byte("\r\n\r\n")); i >= 0 {
			c.end += i + 4
			c.scan = c.end
			return nil
		}
		if c.w-c.r >= wsMaxResponse {
			return fmt.Errorf("%w: HTTP response header over %d bytes", errWSTooLarge, wsMaxResponse)
		}
		if err := c.fill(c.w - c.r + 512); err != nil {
			return err
		}
	}
}

// SetWriteDeadline ignores gorilla's after the handshake: it sets one before every frame it writes (none for data), which
// would undo the deadline wsConn set on the socket.
func (c *wsRaw) SetWriteDeadline(t time.Time) error {
	if c.framed {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// wait makes buf[r:end] hold the next message: its data frames and the control frames before and among
// them, or a close frame. It returns at once when gorilla has not used up the previous one.
func (c *wsRaw) wait() error {
	if c.r < c.end {
		return nil
	}
	for {
		for {
			size, ok := wsFrameSize(c.buf[c.scan:c.w])
			if size > wsMaxMessage || c.scan-c.end+size > wsMaxMessage {
				return fmt.Errorf("%w: over %d bytes", errWSTooLarge, wsMaxMessage)
			}
			if !ok || c.w-c.scan < size {
				if err := c.fill(c.scan - c.r + max(size, 14)); err != nil {
					return err
				}
				break
			}
			op, fin := c.buf[c.scan]&0x0f, c.buf[c.scan]&0x80 != 0
			c.scan += size
			if op == websocket.CloseMessage || op < websocket.CloseMessage && fin {
				c.end = c.scan
				return nil
			}
		}
	}
}

// fill reads once, first making room for need bytes from r on.
func (c *wsRaw) fill(need int) error {
	if c.r == c.w {
		c.r, c.w, c.end, c.scan = 0, 0, 0, 0
	}
	if c.r+need > len(c.buf) {
		buf := c.buf
		if need > len(buf) {
			buf = make([]byte, max(need, min(2*len(buf), wsMaxMessage)))
		}
		copy(buf, c.buf[c.r:c.w])
		c.buf = buf
		c.w -= c.r
		c.end -= c.r
		c.scan -= c.r
		c.r = 0
	}
	n, err := c.Conn.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil // an error comes back on the next read
	}
	return err
}

// wsFrameSize returns the size of the frame at the start of b, header included, and whether b holds its
// whole header. [RFC 6455 5.2]
func wsFrameSize(b []byte) (int, bool) {
	if len(b) < 2 {
		return 2, false
	}
	h, n := 2, uint64(b[1]&0x7f)
	switch n {
	case 126:
		h = 4
		if len(b) < h {
			return h, false
		}
		n = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		h = 10
		if len(b) < h {
			return h, false
		}
		n = binary.BigEndian.Uint64(b[2:])
	}
	if b[1]&0x80 != 0 {
		h += 4 // masked; a server does not mask, but a frame is a frame
	}
	if n > wsMaxMessage {
		return wsMaxMessage + 1, true
	}
	return h + int(n), true
}

var _ net.Conn = (*wsConn)(nil)
