package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// decoder walks one packet body. Every read is bounds-checked against the remaining length,
// so a body that ends early is malformed rather than a panic.
type decoder struct {
	b      []byte
	i      int
	strict bool // MQTT 5: Variable Byte Integers must use the fewest bytes [MQTT-1.5.5-1]
	// maxFilters bounds the topic filters of a SUBSCRIBE or UNSUBSCRIBE; 0 = no bound.
	maxFilters int
	reuse      *reuse // Reader.SetReuse, else nil
}

// filterLimit reports ErrTooManyFilters when a packet that holds n filters is about to take one more.
func (d *decoder) filterLimit(n int) error {
	if d.maxFilters > 0 && n >= d.maxFilters {
		return fmt.Errorf("%w: more than %d", ErrTooManyFilters, d.maxFilters)
	}
	return nil
}

var errShort = fmt.Errorf("%w: remaining length too short", ErrMalformed)

func (d *decoder) remaining() int { return len(d.b) - d.i }

func (d *decoder) byte() (byte, error) {
	if d.i >= len(d.b) {
		return 0, errShort
	}
	c := d.b[d.i]
	d.i++
	return c, nil
}

func (d *decoder) uint16() (uint16, error) {
	if d.remaining() < 2 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint16(d.b[d.i:])
	d.i += 2
	return v, nil
}

func (d *decoder) uint32() (uint32, error) {
	if d.remaining() < 4 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint32(d.b[d.i:])
	d.i += 4
	return v, nil
}

// packetID reads a Packet Identifier, which must be non-zero: [MQTT-2.3.1-1] in 3.1.1,
// [MQTT-2.2.1-3] [MQTT-2.2.1-4] in 5.0.
func (d *decoder) packetID() (uint16, error) {
	id, err := d.uint16()
	if err != nil {
		return 0, err
	}
	if id == 0 {
		return 0, fmt.Errorf("%w: packet identifier 0 [MQTT-2.3.1-1] [MQTT-2.2.1-3]", ErrMalformed)
	}
	return id, nil
}

func (d *decoder) varint() (int, error) {
	v, n, err := parseVarint(d.b[d.i:], d.strict)
	if err != nil {
		return 0, err
	}
	d.i += n
	return v, nil
}

// parseVarint decodes a Variable Byte Integer of at most four bytes from b.
func parseVarint(b []byte, strict bool) (v, n int, err error) {
	mult := 1
	for n = 0; n < 4; n++ {
		if n >= len(b) {
			return 0, 0, errShort
		}
		c := b[n]
		v += int(c&0x7F) * mult
		if c&0x80 == 0 {
			if strict && n > 0 && c == 0 {
				return 0, 0, fmt.Errorf("%w: variable byte integer not in its shortest form [MQTT-1.5.5-1]", ErrMalformed)
			}
			return v, n + 1, nil
		}
		mult *= 128
	}
	return 0, 0, fmt.Errorf("%w: variable byte integer longer than 4 bytes (section 1.5.5)", ErrMalformed)
}

// bytes returns the next length-prefixed field, aliasing the body.
func (d *decoder) lengthPrefixed() ([]byte, error) {
	n, err := d.uint16()
	if err != nil {
		return nil, err
	}
	if d.remaining() < int(n) {
		return nil, errShort
	}
	b := d.b[d.i : d.i+int(n)]
	d.i += int(n)
	return b, nil
}

// string reads a UTF-8 Encoded String and copies it out of the body.
func (d *decoder) string() (string, error) {
	b, err := d.lengthPrefixed()
	if err != nil {
		return "", err
	}
	if err := checkUTF8(b); err != nil {
		return "", err
	}
	return string(b), nil
}

// binary reads Binary Data and copies it out of the body; empty data decodes as nil.
func (d *decoder) binary() ([]byte, error) {
	b, err := d.lengthPrefixed()
	if err != nil || len(b) == 0 {
		return nil, err
	}
	return append([]byte(nil), b...), nil
}

// checkUTF8 enforces well-formed UTF-8 without U+0000: [MQTT-1.5.3-1] [MQTT-1.5.3-2] in 3.1.1,
// [MQTT-1.5.4-1] [MQTT-1.5.4-2] in 5.0, malformed in both. utf8.Valid already rejects the
// UTF-16 surrogate code points U+D800..U+DFFF.
func checkUTF8(b []byte) error {
	if bytes.IndexByte(b, 0) >= 0 {
		return fmt.Errorf("%w: string contains U+0000 [MQTT-1.5.3-2] [MQTT-1.5.4-2]", ErrMalformed)
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: string is not well-formed UTF-8 [MQTT-1.5.3-1] [MQTT-1.5.4-1]", ErrMalformed)
	}
	return nil
}

func hasWildcard(s string) bool { return strings.ContainsAny(s, "+#") }

// varintLen is the number of bytes of v as a Variable Byte Integer.
func varintLen(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16384:
		return 2
	case v < 2097152:
		return 3
	}
	return 4
}

func appendVarint(dst []byte, v int) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}
