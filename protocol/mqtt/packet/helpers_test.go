package packet

import (
	"encoding/binary"
	"reflect"
)

// Helpers that spell packets out byte by byte for the golden table. They are written
// independently of the codec so that the table checks it rather than mirrors it.

// cat concatenates bytes (given as int or byte), raw strings and byte slices.
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case int:
			b = append(b, byte(v))
		case byte:
			b = append(b, v)
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		default:
			panic("cat: unsupported part")
		}
	}
	return b
}

// str is an MQTT length-prefixed string or binary field.
func str(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

// u16 is a two-byte big-endian integer.
func u16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }

// u32 is a four-byte big-endian integer.
func u32(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

// vbi is a Variable Byte Integer.
func vbi(v int) []byte {
	var b []byte
	for {
		c := byte(v % 128)
		v /= 128
		if v > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

// pkt is a whole packet: first byte, remaining length, body.
func pkt(first int, body ...any) []byte {
	b := cat(body...)
	return cat(first, vbi(len(b)), b)
}

// props is an MQTT 5 property block: its length, then the properties.
func props(p ...any) []byte {
	b := cat(p...)
	return cat(vbi(len(b)), b)
}

func ptr[T any](v T) *T { return &v }

// connectStub reports whether p is what ReadPacket returns with a decoding error for a CONNECT whose
// protocol name and level it read: those two alone, for the server's CONNACK [MQTT-4.13.1-1].
func connectStub(p Packet) bool {
	cp, ok := p.(*ConnectPacket)
	return ok && reflect.DeepEqual(cp, &ConnectPacket{ProtocolName: cp.ProtocolName, ProtocolLevel: cp.ProtocolLevel})
}
