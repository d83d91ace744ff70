package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// STOMP acknowledgement modes of SUBSCRIBE [STOMP 1.2, SUBSCRIBE ack Header].
const (
	ackAuto             = "auto"
	ackClient           = "client"
	ackClientIndividual = "client-individual"
)

// prefetchHeaders carry the consumer window in every broker's dialect: Apollo and Lyre's credit,
// ActiveMQ's activemq.prefetchSize and RabbitMQ's prefetch-count. Brokers ignore headers they do not know.
var prefetchHeaders = []string{"credit", "prefetch-count", "activemq.prefetchSize"}

// appendEscaped appends a header name or value escaped as STOMP 1.1/1.2 require outside CONNECT and
// CONNECTED [STOMP 1.2, Value Encoding].
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case ':':
			dst = append(dst, '\\', 'c')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func appendHeader(dst []byte, name, value string) []byte {
	dst = appendEscaped(dst, name)
	dst = append(dst, ':')
	dst = appendEscaped(dst, value)
	return append(dst, '\n')
}

// stompConnectOptions are the CONNECT headers the bench sets.
type stompConnectOptions struct {
	host      string
	login     string
	passcode  string
	heartBeat time.Duration // both directions; 0: none
}

// appendStompConnect appends a CONNECT offering 1.1 and 1.2, with heart-beats both ways every
// o.heartBeat, or none. CONNECT headers are not escaped, for compatibility with 1.0 servers [STOMP 1.2,
// Value Encoding].
func appendStompConnect(dst []byte, o stompConnectOptions) []byte {
	dst = append(dst, "CONNECT\naccept-version:1.1,1.2\nhost:"...)
	dst = append(dst, o.host...)
	dst = append(dst, '\n')
	if o.login != "" {
		dst = append(dst, "login:"...)
		dst = append(dst, o.login...)
		dst = append(dst, "\npasscode:"...)
		dst = append(dst, o.passcode...)
		dst = append(dst, '\n')
	}
	ms := o.heartBeat.Milliseconds()
	dst = append(dst, "heart-beat:"...)
	dst = strconv.AppendInt(dst, ms, 10)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, ms, 10)
	return append(dst, "\n\n\x00"...)
}

// appendStompSubscribe appends a SUBSCRIBE asking for a receipt, so the subscriber knows it is in place
// before publishers start. prefetch > 0 is sent under every name in prefetchHeaders.
func appendStompSubscribe(dst []byte, id, dest, ack string, prefetch int, receipt string) []byte {
	dst = append(dst, "SUBSCRIBE\n"...)
	dst = appendHeader(dst, "id", id)
	dst = appendHeader(dst, "destination", dest)
	dst = appendHeader(dst, "ack", ack)
	if prefetch > 0 {
		for _, h := range prefetchHeaders {
			dst = appendHeader(dst, h, strconv.Itoa(prefetch))
		}
	}
	dst = appendHeader(dst, "receipt", receipt)
	return append(dst, "\n\x00"...)
}

// appendSendPrefix appends the part of a SEND frame that is the same for every message: command,
// destination, content-length (the payload is binary and may hold NULs [STOMP 1.2, Body]) and persistent.
// Per message follow an optional receipt header, the blank line, the payload and the NUL.
func appendSendPrefix(dst []byte, dest string, size int, persistent bool) []byte {
	dst = append(dst, "SEND\n"...)
	dst = appendHeader(dst, "destination", dest)
	dst = append(dst, "content-length:"...)
	dst = strconv.AppendInt(dst, int64(size), 10)
	dst = append(dst, '\n')
	if persistent {
		dst = append(dst, "persistent:true\n"...)
	}
	return dst
}

// appendStompAck appends an ACK for a delivery. In 1.2 it names the MESSAGE's ack header; in 1.0 and 1.1 its
// message-id, and in 1.1 also its subscription [STOMP 1.2, ACK; STOMP 1.1, ACK]. The values are the raw bytes
// of the MESSAGE's headers: escaped there the same way they must be here, so they are echoed unchanged.
func appendStompAck(dst []byte, version string, id, subscription []byte) []byte {
	if version == "1.2" {
		dst = append(dst, "ACK\nid:"...)
		dst = append(dst, id...)
		return append(dst, "\n\n\x00"...)
	}
	dst = append(dst, "ACK\nmessage-id:"...)
	dst = append(dst, id...)
	if version == "1.1" {
		dst = append(dst, "\nsubscription:"...)
		dst = append(dst, subscription...)
	}
	return append(dst, "\n\n\x00"...)
}

// appendStompDisconnect appends a DISCONNECT asking for a receipt: the broker sends it after it has
// processed every earlier frame, which makes for a graceful close [STOMP 1.2, DISCONNECT].
func appendStompDisconnect(dst []byte, receipt string) []byte {
	dst = append(dst, "DISCONNECT\n"...)
	dst = appendHeader(dst, "receipt", receipt)
	return append(dst, "\n\x00"...)
}

// stompFrame is one frame parsed in place. Its slices alias the reader's buffer and stay valid until the
// next call to next. Header names and values are raw, still escaped.
type stompFrame struct {
	command []byte
	headers [][2][]byte
	body    []byte
}

// header returns the first value of the named header: the first occurrence wins [STOMP 1.2, Repeated
// Header Entries].
func (f *stompFrame) header(name string) ([]byte, bool) {
	for _, h := range f.headers {
		if string(h[0]) == name {
			return h[1], true
		}
	}
	return nil, false
}

func (f *stompFrame) is(command string) bool { return string(f.command) == command }

// describe renders an ERROR frame for an error message.
func (f *stompFrame) describe() string {
	msg, _ := f.header("message")
	body := strings.TrimSpace(string(f.body))
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	if body != "" {
		return fmt.Sprintf("%s: %s", msg, body)
	}
	return string(msg)
}

// frameReader cuts whole STOMP frames out of a stream, sharing the MQTT packetReader's buffer management:
// frames are parsed in place, a read error loses nothing, the buffer grows up to max. EOLs between frames
// (heart-beats) are skipped.
type frameReader struct {
	packetReader
	f stompFrame
}

func newFrameReader(rd io.Reader, size, max int) *frameReader {
	return &frameReader{packetReader: packetReader{rd: rd, buf: make([]byte, size), max: max},
		f: stompFrame{headers: make([][2][]byte, 0, 16)}}
}

// next returns the next frame.
func (p *frameReader) next() (*stompFrame, error) {
	for {
		need, err := p.parse()
		if err != nil {
			return nil, err
		}
		if need == 0 {
			return &p.f, nil
		}
		if need > p.max {
			return nil, fmt.Errorf("%w: frame over %d bytes", errPacketTooLarge, p.max)
		}
		if err := p.fill(need); err != nil {
			return nil, err
		}
	}
}

// parse parses the frame at p.r into p.f and consumes it. It returns need > 0, the bytes from p.r it must
// have, when the buffer ends before the frame does.
func (p *frameReader) parse() (need int, err error) {
	if need, err := p.skipEOLs(); need > 0 || err != nil {
		return need, err
	}
	b := p.buf[p.r:p.w]
	bodyAt, contentLength, err := p.parseHead(b)
	if err != nil {
		return 0, err
	}
	if bodyAt < 0 {
		return len(b) + 1, nil
	}
	total, need, err := frameEnd(b, bodyAt, contentLength)
	if need > 0 || err != nil {
		return need, err
	}
	p.f.body = b[bodyAt : total-1]
	p.r += total
	return 0, nil
}

// skipEOLs consumes the EOLs (heart-beats) before the next frame. It returns need = 2 when the buffer ends
// with a CR that may start a CRLF.
func (p *frameReader) skipEOLs() (need int, err error) {
	for p.r < p.w {
		if c := p.buf[p.r]; c == '\n' {
			p.r++
		} else if c == '\r' {
			if p.r+1 == p.w {
				return 2, nil
			}
			if p.buf[p.r+1] != '\n' {
				return 0, fmt.Errorf("%w: CR without LF between frames", errMalformed)
			}
			p.r += 2
		} else {
			break
		}
	}
	return 0, nil
}

// parseHead parses the command and the headers at the start of b into p.f. It returns where the body
// starts and the first content-length header's value (-1 without one), or bodyAt = -1 when b ends before
// the blank line does.
func (p *frameReader) parseHead(b []byte) (bodyAt, contentLength int, err error) {
	end, pos := nextLine(b, 0)
	if end < 0 {
		return -1, 0, nil
	}
	if end == 0 {
		return 0, 0, fmt.Errorf("%w: empty command", errMalformed)
	}
	p.f.command = b[:end]
	p.f.headers = p.f.headers[:0]
	contentLength = -1
	for {
		start := pos
		end, pos = nextLine(b, start)
		if end < 0 {
			return -1, 0, nil
		}
		if end == start {
			return pos, contentLength, nil
		}
		h := b[start:end]
		colon := bytes.IndexByte(h, ':')
		if colon < 0 {
			return 0, 0, fmt.Errorf("%w: header line without a colon", errMalformed)
		}
		name, value := h[:colon], h[colon+1:]
		if contentLength < 0 && string(name) == "content-length" {
			if contentLength, err = parseDecimal(value); err != nil {
				return 0, 0, err
			}
		}
		p.f.headers = append(p.f.headers, [2][]byte{name, value})
	}
}

// nextLine finds the line of b that starts at from. It returns where its content ends, before the LF or
// CRLF, and where the next line starts, or -1, -1 when b ends before the LF.
func nextLine(b []byte, from int) (end, next int) {
	i := bytes.IndexByte(b[from:], '\n')
	if i < 0 {
		return -1, -1
	}
	end = from + i
	if end > from && b[end-1] == '\r' {
		end--
	}
	return end, from + i + 1
}

// frameEnd returns the length of the frame in b whose body starts at bodyAt: content-length bytes of body
// and a NUL, or without content-length up to the first NUL. It returns need > 0, the length b must have,
// when b ends before the frame does.
func frameEnd(b []byte, bodyAt, contentLength int) (total, need int, err error) {
	if contentLength >= 0 {
		total = bodyAt + contentLength + 1
		if total > len(b) {
			return 0, total, nil
		}
		if b[total-1] != 0 {
			return 0, 0, fmt.Errorf("%w: no NUL after content-length bytes of body", errMalformed)
		}
		return total, 0, nil
	}
	i := bytes.IndexByte(b[bodyAt:], 0)
	if i < 0 {
		return 0, len(b) + 1, nil
	}
	return bodyAt + i + 1, 0, nil
}

// parseDecimal parses a non-negative decimal integer of at most 15 digits without allocating.
func parseDecimal(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 15 {
		return 0, fmt.Errorf("%w: bad number %q", errMalformed, b)
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad number %q", errMalformed, b)
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}
