package packet

import (
	"bytes"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
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
// version selects the level, Version31 + version%3, so the seeds' own levels map to themselves.
func FuzzReadPacket(f *testing.F) {
	for _, c := range golden {
		f.Add(c.version, c.raw, uint16(len(c.raw)/2))
	}
	for _, raw := range v5Corpus() {
		f.Add(Version5, raw, uint16(len(raw)/2))
	}
	f.Fuzz(func(t *testing.T, version byte, data []byte, cut uint16) {
		version = Version31 + version%3
		r := NewReader(&twoChunks{b: data, cut: int(cut)}, fuzzMaxPacket)
		r.SetVersion(version)
		// A Reader reusing its packets (SetReuse) must read the same stream to the same packets.
		reusing := NewReader(bytes.NewReader(data), fuzzMaxPacket)
		reusing.SetVersion(version)
		reusing.SetReuse(true)
		for {
			p, err := r.ReadPacket()
			rp, rerr := reusing.ReadPacket()
			if (err == nil) != (rerr == nil) || err == nil && !reflect.DeepEqual(p, rp) {
				t.Fatalf("with SetReuse: %#v, %v; without: %#v, %v", rp, rerr, p, err)
			}
			if err != nil {
				if p != nil {
					if _, ok := p.(*ConnectPacket); !ok {
						t.Fatalf("%T returned with error %v", p, err)
					}
				}
				return
			}
			roundTrip(t, p, version)
		}
	})
}

// FuzzRoundTrip5 feeds single MQTT 5 packets: whatever decodes must decode the same a byte at
// a time, re-encode to bytes that decode to the same packet, and re-encode identically again.
func FuzzRoundTrip5(f *testing.F) {
	for _, raw := range v5Corpus() {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), fuzzMaxPacket)
		r.SetVersion(Version5)
		p, err := r.ReadPacket()
		slow := NewReader(iotest.OneByteReader(bytes.NewReader(data)), fuzzMaxPacket)
		slow.SetVersion(Version5)
		p1, err1 := slow.ReadPacket()
		if ReasonFor(err) != ReasonFor(err1) || (err == nil) != (err1 == nil) || !reflect.DeepEqual(p, p1) {
			t.Fatalf("whole: %#v, %v\nbyte at a time: %#v, %v", p, err, p1, err1)
		}
		if err != nil {
			return
		}
		roundTrip(t, p, Version5)
	})
}

// roundTrip encodes p, decodes the bytes and wants p back; encoding that must give the same
// bytes, and PublishSize must predict them.
func roundTrip(t *testing.T, p Packet, version byte) {
	t.Helper()
	enc := Append(nil, p, version)
	if len(enc) > fuzzMaxPacket {
		t.Fatalf("re-encoded %s is %d bytes, beyond the limit it was read under", p.Type(), len(enc))
	}
	if pub, ok := p.(*PublishPacket); ok {
		if n := PublishSize(pub, version); n != len(enc) {
			t.Fatalf("PublishSize = %d, AppendPublish wrote %d bytes", n, len(enc))
		}
	}
	r := NewReader(bytes.NewReader(enc), fuzzMaxPacket)
	r.SetVersion(version)
	p2, err := r.ReadPacket()
	if err != nil {
		t.Fatalf("re-decoding %#v from % X: %v", p, enc, err)
	}
	if !reflect.DeepEqual(p, p2) {
		t.Fatalf("round trip changed the packet:\n first  %#v\n second %#v", p, p2)
	}
	if enc2 := Append(nil, p2, version); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding is not stable:\n first  % X\n second % X", enc, enc2)
	}
}

// propContexts lists every place a property block appears, for FuzzProperties to pick from.
var propContexts = [...]propContext{ctxConnect, ctxConnack, ctxPublish, ctxWill, ctxPuback, ctxSubscribe,
	ctxSuback, ctxUnsubscribe, ctxUnsuback, ctxDisconnect, ctxAuth}

// FuzzProperties fuzzes a property block alone (length prefix included) in one of the
// contexts: no panic, and a block that decodes re-encodes to exactly its predicted size and
// decodes to the same Properties.
func FuzzProperties(f *testing.F) {
	for _, s := range propCorpus() {
		f.Add(s.ctx, s.raw)
	}
	f.Fuzz(func(t *testing.T, ctx byte, data []byte) {
		c := propContexts[int(ctx)%len(propContexts)]
		d := decoder{b: data, strict: true}
		p, err := decodeProperties(&d, c)
		if err != nil {
			if ReasonFor(err) != ReasonMalformedPacket && ReasonFor(err) != ReasonProtocolError {
				t.Fatalf("error %v is neither malformed nor a protocol error", err)
			}
			return
		}
		if p != nil && p.isZero() {
			t.Fatal("decoded an empty non-nil *Properties")
		}
		enc := appendProperties(nil, p)
		if len(enc) != propsSize(p) {
			t.Fatalf("propsSize = %d, appendProperties wrote %d bytes", propsSize(p), len(enc))
		}
		d2 := decoder{b: enc, strict: true}
		p2, err := decodeProperties(&d2, c)
		if err != nil || d2.remaining() != 0 {
			t.Fatalf("re-decoding % X: %v, %d bytes left", enc, err, d2.remaining())
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the properties:\n first  %#v\n second %#v", p, p2)
		}
	})
}
