package packet

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

// twoChunks hands out its input in two reads split at cut, like a packet straddling two
// socket reads.
type twoChunks struct {
	b   []byte
	cut int
}

func (t *twoChunks) Read(p []byte) (int, error) {
	if len(t.b) == 0 {
		return 0, io.EOF
	}
	lim := len(t.b)
	if t.cut > 0 && t.cut < lim {
		lim = t.cut
	}
	n := copy(p, t.b[:lim])
	t.b = t.b[n:]
	t.cut -= n
	return n, nil
}

const fuzzMaxPacket = 64 << 10

// FuzzReadPacket checks that no input panics the Reader, that it never buffers more than
// the packet limit, and that every packet it accepts survives encode then decode unchanged.
func FuzzReadPacket(f *testing.F) {
	for _, c := range golden {
		f.Add(c.version, c.raw, uint16(len(c.raw)/2))
	}
	f.Fuzz(func(t *testing.T, version byte, data []byte, cut uint16) {
		version = Version31 + version%3
		r := NewReader(&twoChunks{b: data, cut: int(cut)}, fuzzMaxPacket)
		r.SetVersion(version)
		for {
			p, err := r.ReadPacket()
			if err != nil {
				if p != nil {
					if _, ok := p.(*ConnectPacket); !ok {
						t.Fatalf("%T returned with error %v", p, err)
					}
				}
				return
			}
			enc := Append(nil, p, version)
			if len(enc) > fuzzMaxPacket {
				t.Fatalf("re-encoded %s is %d bytes, beyond the limit it was read under", p.Type(), len(enc))
			}
			r2 := NewReader(bytes.NewReader(enc), fuzzMaxPacket)
			r2.SetVersion(version)
			p2, err := r2.ReadPacket()
			if err != nil {
				t.Fatalf("re-decoding %#v from % X: %v", p, enc, err)
			}
			if !reflect.DeepEqual(p, p2) {
				t.Fatalf("round trip changed the packet:\n first  %#v\n second %#v", p, p2)
			}
		}
	})
}
