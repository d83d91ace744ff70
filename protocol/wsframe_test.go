package protocol_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
)

// wsFrame is a client frame (masked) with the given first byte and payload [RFC 6455 §5.2].
func wsFrame(b0 byte, p []byte, masked bool) []byte {
	b := []byte{b0}
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch {
	case len(p) < 126:
		b = append(b, mbit|byte(len(p)))
	case len(p) <= 0xffff:
		b = append(b, mbit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	default:
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
	}
	if !masked {
		return append(b, p...)
	}
	key := [4]byte{9, 8, 7, 6}
	b = append(b, key[:]...)
	for i, c := range p {
		b = append(b, c^key[i%4])
	}
	return b
}

// wsEcho starts a server whose STOMP front-end echoes what it reads, and returns a WebSocket connected
// to it (the 101 response read) and the reader of the server's frames.
func wsEcho(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	echo := protocol.HandlerFunc(func(c *protocol.Conn) {
		var b [512]byte
		for {
			n, err := c.Reader().Read(b[:])
			if n > 0 {
				c.Write(append([]byte(nil), b[:n]...))
			}
			if err != nil {
				return
			}
		}
	})
	_, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: echo, protocol.MQTT: echo},
		conf.Connector{Detect: []string{protocol.MQTT, protocol.STOMP, protocol.HTTP}, STOMP: conf.STOMP{MaxMessageLength: 1 << 10}})
	nc := prototest.Dial(t, addrs[0])
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(nc, "GET /stomp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(nc)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return nc, br
		}
	}
}

// readFrame reads one server frame: its first byte and payload (servers do not mask).
func readFrame(t *testing.T, br *bufio.Reader) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		_, _ = io.ReadFull(br, e[:])
		n = int(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		_, _ = io.ReadFull(br, e[:])
		n = int(binary.BigEndian.Uint64(e[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return h[0], p
}

// Data frames are read as one stream: a message fragmented into continuation frames, with a ping among
// them answered by a pong of the same payload [RFC 6455 §5.4, §5.5.2], then a close echoed.
func TestWebSocketFraming(t *testing.T) {
	nc, br := wsEcho(t)
	var in []byte
	in = append(in, wsFrame(0x01, []byte("CONN"), true)...)                 // text, not final
	in = append(in, wsFrame(0x89, []byte("hi"), true)...)                   // ping in between
	in = append(in, wsFrame(0x00, []byte("ECT\n\n"), true)...)              // continuation, not final
	in = append(in, wsFrame(0x80, bytes.Repeat([]byte("x"), 300), true)...) // final continuation, 16-bit length
	if _, err := nc.Write(in); err != nil {
		t.Fatal(err)
	}
	var echoed []byte
	gotPong := false
	for len(echoed) < len("CONNECT\n\n")+300 {
		b0, p := readFrame(t, br)
		switch b0 {
		case 0x8A:
			if string(p) != "hi" {
				t.Fatalf("pong %q", p)
			}
			gotPong = true
		case 0x81, 0x82:
			echoed = append(echoed, p...)
		default:
			t.Fatalf("frame %#x %q", b0, p)
		}
	}
	if !gotPong || string(echoed) != "CONNECT\n\n"+strings.Repeat("x", 300) {
		t.Fatalf("pong %v, echoed %q", gotPong, echoed)
	}
	if _, err := nc.Write(wsFrame(0x88, []byte{0x03, 0xe8}, true)); err != nil { // close 1000
		t.Fatal(err)
	}
	if b0, p := readFrame(t, br); b0 != 0x88 || binary.BigEndian.Uint16(p) != 1000 {
		t.Fatalf("close answered with %#x % x", b0, p)
	}
}

// Framing errors close the connection with 1002 (protocol error), a message over the limit with 1009.
func TestWebSocketFramingErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		code uint16
	}{
		{"unmasked frame [RFC 6455 5.1]", wsFrame(0x82, []byte("x"), false), 1002},
		{"reserved bit", wsFrame(0xC2, []byte("x"), true), 1002},
		{"continuation first", wsFrame(0x80, []byte("x"), true), 1002},
		{"new message inside a fragmented one", append(wsFrame(0x02, []byte("a"), true), wsFrame(0x82, []byte("b"), true)...), 1002},
		{"unknown opcode", wsFrame(0x83, []byte("x"), true), 1002},
		{"fragmented ping", wsFrame(0x09, []byte("x"), true), 1002},
		{"control payload over 125", wsFrame(0x89, make([]byte, 126), true), 1002},
		{"message over the limit", wsFrame(0x82, make([]byte, 70<<10), true), 1009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, br := wsEcho(t)
			go func() { _, _ = nc.Write(tc.in) }() // may meet a closed socket
			b0, p := readFrame(t, br)
			if b0 != 0x88 || len(p) < 2 || binary.BigEndian.Uint16(p) != tc.code {
				t.Fatalf("got %#x % x, want close %d", b0, p, tc.code)
			}
			prototest.ExpectClosed(t, nc, 2*time.Second)
		})
	}
}

// FuzzWebSocketFrames sends arbitrary bytes as WebSocket frames after a completed handshake: whatever
// they are, the broker must not panic, and must close the connection once the client has ended its
// stream.
func FuzzWebSocketFrames(f *testing.F) {
	f.Add(wsFrame(0x82, []byte("CONNECT\n\n\x00"), true))
	f.Add(append(wsFrame(0x01, []byte("a"), true), wsFrame(0x80, []byte("b"), true)...))
	f.Add(wsFrame(0x89, []byte("ping"), true))
	f.Add(wsFrame(0x88, []byte{0x03, 0xe8}, true))
	f.Add(wsFrame(0x82, []byte("x"), false))
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(wsFrame(0x82, make([]byte, 300), true))
	f.Fuzz(func(t *testing.T, data []byte) {
		nc, br := wsEcho(t)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			if _, err := nc.Write(data); err == nil {
				_ = nc.(*net.TCPConn).CloseWrite()
			}
		}()
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, br)
		<-wrote
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open 10s after the client ended its stream")
		}
	})
}
