package protocol

import (
	"errors"
	"fmt"
	"slices"
)

// Protocol names, as used in conf.Connector.Protocol/Detect and as keys of the Server's handler map.
const (
	MQTT  = "mqtt"
	STOMP = "stomp"
	// TLS in a detect list makes the connector recognise a TLS ClientHello, complete the handshake and
	// sniff the remaining protocols inside. It is a layer, not a protocol: no Handler is registered for it.
	TLS = "tls"
)

// SniffLimit is the most bytes prefetched to recognise a protocol. A client that sends this many bytes
// without being recognised (for example endless STOMP heart-beats) is closed as unknown.
const SniffLimit = 4 << 10

var (
	// ErrNeedMore means Sniff cannot decide yet: read more bytes and call it again with all of them.
	ErrNeedMore = errors.New("protocol: need more bytes")
	// ErrUnknownProtocol means the bytes cannot start any of the connector's protocols.
	ErrUnknownProtocol = errors.New("protocol: unknown protocol")
	// ErrHTTPRequest is the ErrUnknownProtocol returned when the first byte looks like an HTTP "GET ",
	// the common mistake of pointing a browser or a WebSocket client at a plain broker port.
	ErrHTTPRequest = fmt.Errorf("%w: http request on broker port", ErrUnknownProtocol)
)

// Sniff recognises the protocol a client speaks from the first bytes it sent. It returns one of
// protocols, ErrNeedMore while b is a valid but undecided prefix, or an error wrapping ErrUnknownProtocol
// as soon as a byte rules out every protocol. Sniff is pure: called with longer and longer prefixes of
// the same stream it returns ErrNeedMore until some length, then the same answer for every longer prefix.
//
// It decides on as few bytes as possible:
//   - MQTT: a CONNECT fixed header (0x10), a valid remaining length (1-4 byte varint, minimal
//     encoding [MQTT-1.5.5-1]), then the length-prefixed protocol name "MQTT" (3.1.1, 5) or "MQIsdp"
//     (3.1); decided on the last byte of the name.
//   - STOMP: optional EOLs (heart-beats, "\n" or "\r\n"), then "CONNECT" or "STOMP" and an EOL
//     (STOMP 1.2 "Augmented BNF"); decided on the "\n" of that EOL.
//   - TLS: a handshake record header, content type 0x16 then a record version 0x03 0x00-0x04 (SSL 3.0
//     to TLS 1.3; RFC 8446 §5.1 lets a ClientHello's record carry 0x0301); decided on the third byte.
//     No MQTT or STOMP stream starts with 0x16.
//   - HTTP: a request method and its space ("GET ", "POST ", ...; not CONNECT, which is STOMP's);
//     decided on the space.
func Sniff(b []byte, protocols []string) (string, error) {
	if len(b) == 0 {
		return "", ErrNeedMore
	}
	var proto string
	var err error
	switch c := b[0]; {
	case c == 0x10 && slices.Contains(protocols, MQTT):
		proto, err = MQTT, sniffMQTT(b)
	case (c == 'C' || c == 'S' || c == '\r' || c == '\n') && slices.Contains(protocols, STOMP):
		proto, err = STOMP, sniffSTOMP(b)
	case c == 0x16 && slices.Contains(protocols, TLS):
		proto, err = TLS, sniffTLS(b)
	case (c == 'G' || c == 'H' || c == 'P' || c == 'D' || c == 'O') && slices.Contains(protocols, HTTP):
		proto, err = HTTP, sniffHTTP(b)
	case c == 'G':
		return "", ErrHTTPRequest
	default:
		return "", ErrUnknownProtocol
	}
	if err != nil {
		if err == ErrNeedMore && len(b) >= SniffLimit {
			err = fmt.Errorf("%w: nothing recognised in %d bytes", ErrUnknownProtocol, SniffLimit)
		}
		return "", err
	}
	return proto, nil
}

// sniffTLS checks b (b[0] == 0x16, a handshake record) for a TLS record version.
func sniffTLS(b []byte) error {
	if len(b) < 2 {
		return ErrNeedMore
	}
	if b[1] != 0x03 {
		return fmt.Errorf("%w: tls record version major %#x", ErrUnknownProtocol, b[1])
	}
	if len(b) < 3 {
		return ErrNeedMore
	}
	if b[2] > 0x04 {
		return fmt.Errorf("%w: tls record version minor %#x", ErrUnknownProtocol, b[2])
	}
	return nil
}

// mqttNames are the protocol names of an MQTT CONNECT packet: "MQTT" (3.1.1 and 5.0) and "MQIsdp" (3.1).
var mqttNames = [...]string{"MQTT", "MQIsdp"}

// sniffMQTT checks b (b[0] == 0x10) against an MQTT CONNECT packet's first bytes.
func sniffMQTT(b []byte) error {
	// Remaining length: at most 4 bytes, the last one without the continuation bit.
	remaining, mult := 0, 1
	i := 1
	for ; ; i++ {
		if i >= len(b) {
			return ErrNeedMore
		}
		if i > 4 {
			return fmt.Errorf("%w: mqtt remaining length longer than 4 bytes", ErrUnknownProtocol)
		}
		d := b[i]
		if d == 0 && i > 1 {
			// A zero final digit after a continuation is a non-minimal encoding [MQTT-1.5.5-1].
			return fmt.Errorf("%w: mqtt remaining length not minimally encoded", ErrUnknownProtocol)
		}
		remaining += int(d&0x7f) * mult
		mult <<= 7
		if d&0x80 == 0 {
			break
		}
	}
	i++
	// Protocol name length: 0x00 then 4 or 6.
	if i >= len(b) {
		return ErrNeedMore
	}
	if b[i] != 0 {
		return fmt.Errorf("%w: mqtt protocol name too long", ErrUnknownProtocol)
	}
	i++
	if i >= len(b) {
		return ErrNeedMore
	}
	n := int(b[i])
	var name string
	for _, s := range mqttNames {
		if len(s) == n {
			name = s
		}
	}
	if name == "" {
		return fmt.Errorf("%w: mqtt protocol name length %d", ErrUnknownProtocol, n)
	}
	// The variable header holds the name, a level byte, a flags byte and a 2-byte keep-alive.
	if remaining < 2+n+4 {
		return fmt.Errorf("%w: mqtt remaining length %d too short for CONNECT", ErrUnknownProtocol, remaining)
	}
	i++
	for j := 0; j < n; j++ {
		if i+j >= len(b) {
			return ErrNeedMore
		}
		if b[i+j] != name[j] {
			return fmt.Errorf("%w: mqtt protocol name is not %q", ErrUnknownProtocol, name)
		}
	}
	return nil
}

// sniffSTOMP checks b (b[0] is 'C', 'S', '\r' or '\n') against a STOMP CONNECT or STOMP frame.
func sniffSTOMP(b []byte) error {
	i := 0
	// Heart-beats before the first frame are EOLs.
	for i < len(b) {
		switch b[i] {
		case '\n':
			i++
			continue
		case '\r':
			if i+1 >= len(b) {
				return ErrNeedMore
			}
			if b[i+1] != '\n' {
				return fmt.Errorf("%w: stomp \\r without \\n", ErrUnknownProtocol)
			}
			i += 2
			continue
		}
		break
	}
	if i >= len(b) {
		return ErrNeedMore
	}
	var cmd string
	switch b[i] {
	case 'C':
		cmd = "CONNECT"
	case 'S':
		cmd = "STOMP"
	default:
		return fmt.Errorf("%w: stomp frame is not CONNECT or STOMP", ErrUnknownProtocol)
	}
	for j := 0; j < len(cmd); j++ {
		if i+j >= len(b) {
			return ErrNeedMore
		}
		if b[i+j] != cmd[j] {
			return fmt.Errorf("%w: stomp frame is not CONNECT or STOMP", ErrUnknownProtocol)
		}
	}
	i += len(cmd)
	if i >= len(b) {
		return ErrNeedMore
	}
	switch b[i] {
	case '\n':
		return nil
	case '\r':
		if i+1 >= len(b) {
			return ErrNeedMore
		}
		if b[i+1] == '\n' {
			return nil
		}
	}
	return fmt.Errorf("%w: stomp %s not followed by EOL", ErrUnknownProtocol, cmd)
}
