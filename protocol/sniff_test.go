package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var (
	both    = []string{MQTT, STOMP}
	withTLS = []string{TLS, MQTT, STOMP}
	all     = []string{TLS, MQTT, STOMP, HTTP}
)

// clientHello is the start of a TLS 1.2/1.3 ClientHello: handshake record, legacy version 0x0301,
// length, then handshake type 1.
const clientHello = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"

// sniffCase is a stream's first bytes and what Sniff decides after exactly n of them.
type sniffCase struct {
	name      string
	in        string
	protocols []string
	want      string // protocol, or "" for an error
	wantErr   error  // ErrUnknownProtocol, ErrHTTPRequest, or nil
	n         int    // bytes needed to decide; every shorter prefix gives ErrNeedMore
}

// mqttConnect311 is a whole MQTT 3.1.1 CONNECT: clean session, keep-alive 60, client id "c1".
const mqttConnect311 = "\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"

var sniffCases = []sniffCase{
	{"mqtt 3.1.1", mqttConnect311, both, MQTT, nil, 8},
	{"mqtt 5", "\x10\x0f\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00", both, MQTT, nil, 8},
	{"mqtt 3.1 MQIsdp", "\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02c1", both, MQTT, nil, 10},
	{"mqtt 2-byte remaining length", "\x10\x80\x01\x00\x04MQTT\x04", both, MQTT, nil, 9},
	{"mqtt 4-byte remaining length", "\x10\xff\xff\xff\x7f\x00\x04MQTT", both, MQTT, nil, 11},
	{"mqtt only", mqttConnect311, []string{MQTT}, MQTT, nil, 8},
	{"mqtt varint over 4 bytes", "\x10\xff\xff\xff\xff\x7f", both, "", ErrUnknownProtocol, 6},
	{"mqtt varint not minimal [MQTT-1.5.5-1]", "\x10\x80\x00\x00\x04MQTT", both, "", ErrUnknownProtocol, 3},
	{"mqtt name length msb", "\x10\x0e\x01\x04MQTT", both, "", ErrUnknownProtocol, 3},
	{"mqtt name length 5", "\x10\x0e\x00\x05MQTTx", both, "", ErrUnknownProtocol, 4},
	{"mqtt remaining length too short", "\x10\x09\x00\x04MQTT", both, "", ErrUnknownProtocol, 4},
	{"mqtt wrong name", "\x10\x0e\x00\x04MQXT", both, "", ErrUnknownProtocol, 7},
	{"mqtt MQIsdp with length 4", "\x10\x0e\x00\x04MQIs", both, "", ErrUnknownProtocol, 7},
	{"mqtt lowercase name", "\x10\x0e\x00\x04mqtt", both, "", ErrUnknownProtocol, 5},
	{"mqtt PUBLISH first", "\x30\x05\x00\x01a", both, "", ErrUnknownProtocol, 1},
	{"mqtt on stomp-only connector", mqttConnect311, []string{STOMP}, "", ErrUnknownProtocol, 1},
	{"stomp CONNECT", "CONNECT\naccept-version:1.2\nhost:/\n\n\x00", both, STOMP, nil, 8},
	{"stomp STOMP", "STOMP\naccept-version:1.2\n\n\x00", both, STOMP, nil, 6},
	{"stomp CRLF", "CONNECT\r\nhost:/\r\n\r\n\x00", both, STOMP, nil, 9},
	{"stomp leading heart-beats", "\n\r\n\nCONNECT\n\n\x00", both, STOMP, nil, 12},
	{"stomp only", "STOMP\r\n", []string{STOMP}, STOMP, nil, 7},
	{"stomp CONNECTED is a server frame", "CONNECTED\n", both, "", ErrUnknownProtocol, 8},
	{"stomp SEND first", "SEND\ndestination:/queue/a\n\n\x00", both, "", ErrUnknownProtocol, 2},
	{"stomp CR without LF", "\rCONNECT\n", both, "", ErrUnknownProtocol, 2},
	{"stomp CR without LF after command", "CONNECT\rx", both, "", ErrUnknownProtocol, 9},
	{"stomp lowercase", "connect\n", both, "", ErrUnknownProtocol, 1},
	{"stomp CONN then junk", "CONNXCT\n", both, "", ErrUnknownProtocol, 5},
	{"stomp on mqtt-only connector", "CONNECT\n", []string{MQTT}, "", ErrUnknownProtocol, 1},
	{"http GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", both, "", ErrHTTPRequest, 1},
	{"tls client hello without tls in detect", clientHello, both, "", ErrUnknownProtocol, 1},
	{"tls client hello", clientHello, withTLS, TLS, nil, 3},
	{"tls record version 1.0", "\x16\x03\x00\x00\x05", withTLS, TLS, nil, 3},
	{"tls record version 1.2", "\x16\x03\x03\x00\x05", withTLS, TLS, nil, 3},
	{"tls record version 1.3", "\x16\x03\x04\x00\x05", withTLS, TLS, nil, 3},
	{"tls only", clientHello, []string{TLS}, TLS, nil, 3},
	{"tls record major not 3", "\x16\x02\x01\x00", withTLS, "", ErrUnknownProtocol, 2},
	{"tls record minor over 4", "\x16\x03\x05\x00", withTLS, "", ErrUnknownProtocol, 3},
	{"tls alert record", "\x15\x03\x01\x00\x02", withTLS, "", ErrUnknownProtocol, 1},
	{"mqtt with tls in detect", mqttConnect311, withTLS, MQTT, nil, 8},
	{"stomp with tls in detect", "\nCONNECT\n", withTLS, STOMP, nil, 9},
	{"http with tls in detect", "GET /", withTLS, "", ErrHTTPRequest, 1},
	{"http GET detected", "GET /mqtt HTTP/1.1\r\n", all, HTTP, nil, 4},
	{"http OPTIONS detected", "OPTIONS * HTTP/1.1\r\n", all, HTTP, nil, 8},
	{"http POST detected", "POST /api HTTP/1.1\r\n", all, HTTP, nil, 5},
	{"http PUT detected", "PUT /x HTTP/1.1\r\n", all, HTTP, nil, 4},
	{"http only", "HEAD / HTTP/1.1\r\n", []string{HTTP}, HTTP, nil, 5},
	{"http method without space", "GETX / HTTP/1.1", all, "", ErrUnknownProtocol, 4},
	{"http lowercase method", "get / HTTP/1.1", all, "", ErrUnknownProtocol, 1},
	{"http PATCH vs PUT", "PATCH / HTTP/1.1", all, HTTP, nil, 6},
	{"stomp CONNECT not http", "CONNECT\n\n\x00", all, STOMP, nil, 8},
	{"mqtt with http in detect", mqttConnect311, all, MQTT, nil, 8},
	{"zero byte", "\x00", both, "", ErrUnknownProtocol, 1},
	{"endless heart-beats", strings.Repeat("\n", SniffLimit), both, "", ErrUnknownProtocol, SniffLimit},
}

func TestSniff(t *testing.T) {
	for _, tc := range sniffCases {
		t.Run(tc.name, func(t *testing.T) {
			// Byte-at-a-time arrival: undecided until exactly tc.n bytes, then one answer for every longer prefix.
			for i := 0; i <= len(tc.in); i++ {
				got, err := Sniff([]byte(tc.in[:i]), tc.protocols)
				if i < tc.n {
					if !errors.Is(err, ErrNeedMore) {
						t.Fatalf("Sniff(%q) = %q, %v; want ErrNeedMore (decide at %d bytes)", tc.in[:i], got, err, tc.n)
					}
					continue
				}
				if tc.wantErr == nil {
					if err != nil || got != tc.want {
						t.Fatalf("Sniff(%q) = %q, %v; want %q", tc.in[:i], got, err, tc.want)
					}
					continue
				}
				if !errors.Is(err, tc.wantErr) || got != "" {
					t.Fatalf("Sniff(%q) = %q, %v; want %v", tc.in[:i], got, err, tc.wantErr)
				}
				if errors.Is(err, ErrNeedMore) {
					t.Fatalf("Sniff(%q) error %v also matches ErrNeedMore", tc.in[:i], err)
				}
			}
		})
	}
}

func TestSniffHTTPIsUnknown(t *testing.T) {
	_, err := Sniff([]byte("G"), both)
	if !errors.Is(err, ErrUnknownProtocol) || !errors.Is(err, ErrHTTPRequest) {
		t.Fatalf("Sniff(G) = %v; want ErrHTTPRequest wrapping ErrUnknownProtocol", err)
	}
}

func TestSniffEmpty(t *testing.T) {
	if _, err := Sniff(nil, both); err != ErrNeedMore {
		t.Fatalf("Sniff(nil) = %v; want ErrNeedMore", err)
	}
	if _, err := Sniff(nil, nil); err != ErrNeedMore {
		t.Fatalf("Sniff(nil, nil) = %v; want ErrNeedMore", err)
	}
}

func TestSniffAllocs(t *testing.T) {
	in := []byte(mqttConnect311)
	stomp := []byte("\nCONNECT\n")
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = Sniff(in, both)
		_, _ = Sniff(stomp, both)
		_, _ = Sniff(in[:5], both)
	})
	if allocs != 0 {
		t.Fatalf("Sniff allocates %v times per decision; want 0", allocs)
	}
}

// FuzzSniff checks Sniff never panics and is consistent however the bytes arrive: every prefix is
// either undecided or gives the full input's answer, and once decided every longer prefix agrees.
func FuzzSniff(f *testing.F) {
	for _, tc := range sniffCases {
		if len(tc.in) < 256 {
			f.Add([]byte(tc.in), tc.protocols[0] == MQTT && len(tc.protocols) == 1)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, mqttOnly bool) {
		protos := all
		if mqttOnly {
			protos = []string{MQTT}
		}
		full, fullErr := Sniff(b, protos)
		if fullErr != nil && !errors.Is(fullErr, ErrNeedMore) && !errors.Is(fullErr, ErrUnknownProtocol) {
			t.Fatalf("Sniff(%q): unexpected error %v", b, fullErr)
		}
		if (fullErr == nil) == (full == "") {
			t.Fatalf("Sniff(%q) = %q, %v: need exactly one of protocol and error", b, full, fullErr)
		}
		decided := false
		for i := 0; i <= len(b); i++ {
			got, err := Sniff(b[:i], protos)
			if errors.Is(err, ErrNeedMore) {
				if decided {
					t.Fatalf("Sniff(%q) undecided after a shorter prefix decided", b[:i])
				}
				continue
			}
			decided = true
			if got != full || (err == nil) != (fullErr == nil) ||
				errors.Is(err, ErrHTTPRequest) != errors.Is(fullErr, ErrHTTPRequest) {
				t.Fatalf("Sniff(%q) = %q, %v; but Sniff(%q) = %q, %v", b[:i], got, err, b, full, fullErr)
			}
		}
		if full != "" && !bytes.HasPrefix(b, []byte{0x10}) && full == MQTT {
			t.Fatalf("Sniff(%q) = mqtt without 0x10", b)
		}
		if full == TLS && !bytes.HasPrefix(b, []byte{0x16, 0x03}) {
			t.Fatalf("Sniff(%q) = tls without a handshake record header", b)
		}
	})
}
