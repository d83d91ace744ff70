package packet

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
)

// MaxPacketSize is the largest packet the protocol can express: a one-byte packet type, a
// four-byte remaining length and 268,435,455 body bytes.
const MaxPacketSize = 1 + 4 + maxVarint

// Bodies of packets other than PUBLISH are decoded from a buffer held only while decoding,
// so an idle Reader holds none: up to inlineBody bytes (acknowledgements, small SUBSCRIBEs)
// the Reader's own array, up to maxPooledBody a pooled buffer, beyond that a buffer used once.
const (
	inlineBody    = 24 // every acknowledgement; 24 keeps the Reader in its 80-byte size class
	maxPooledBody = 1 << 10
)

// bodyPool holds maxPooledBody-byte buffers, boxed so Put does not allocate.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, maxPooledBody); return &b }}

// eagerBody is the largest body allocated in one go. Beyond it the buffer grows with the
// bytes that actually arrive, so a peer announcing 200 MB and then stalling costs little.
const eagerBody = 64 << 10

// Reader decodes MQTT packets from a stream; use one per connection, from one goroutine.
type Reader struct {
	src     io.Reader
	byteSrc io.ByteReader // src, when it can hand out single bytes cheaply (bufio.Reader)
	max     int32         // MaxPacketSize fits
	filters int32         // SetMaxFilters; int32 keeps the Reader in its 80-byte size class
	reuse   *reuse        // SetReuse; made at the first packet it serves, so a Reader never used holds none
	reusing bool          // SetReuse
	version byte
	two     [2]byte // fixed header scratch
	inline  [inlineBody]byte
}

// NewReader returns a Reader over r. maxPacketSize bounds a whole packet (fixed header
// included); a larger one is refused with ErrPacketTooLarge as soon as its fixed header is
// read, before any of its body. maxPacketSize ≤ 0 means MaxPacketSize.
//
// Until SetVersion is called, packets other than CONNECT are decoded as MQTT 3.1.1.
func NewReader(r io.Reader, maxPacketSize int) *Reader {
	if maxPacketSize <= 0 || maxPacketSize > MaxPacketSize {
		maxPacketSize = MaxPacketSize
	}
	rd := &Reader{src: r, max: int32(maxPacketSize)}
	rd.byteSrc, _ = r.(io.ByteReader)
	return rd
}

// SetVersion sets the protocol level (Version31, Version311 or Version5) that selects the
// layout of every packet after CONNECT. CONNECT carries its own level and is decoded
// whatever the Reader's version.
func (r *Reader) SetVersion(level byte) { r.version = level }

// SetMaxFilters bounds the topic filters a SUBSCRIBE or UNSUBSCRIBE may list: decoding stops at the
// next one with ErrTooManyFilters, so a packet of millions of filters costs its bytes, not millions of
// strings. n ≤ 0 means no bound.
func (r *Reader) SetMaxFilters(n int) { r.filters = int32(min(max(n, 0), math.MaxInt32)) }

// reuse is what a Reader with SetReuse hands out again: the packets a publishing or subscribing client
// sends by the hundred thousand, and the last topic name.
type reuse struct {
	publish PublishPacket
	puback  PubackPacket
	pubrec  PubrecPacket
	pubrel  PubrelPacket
	pubcomp PubcompPacket
	// topic is the last PUBLISH's topic name: a client publishing on the same topic again gets the same
	// string (checked byte for byte, not re-validated), not a new one.
	topic string
}

// SetReuse makes ReadPacket return PUBLISH, PUBACK, PUBREC, PUBREL and PUBCOMP packets in structures the
// Reader owns and overwrites at the next ReadPacket: the caller must not keep the packet (its strings and
// payload it may keep: those are never overwritten). With it the Reader also hands out the previous
// PUBLISH's topic string again when the topic is the same. That takes two of the five allocations per
// PUBLISH and the one per acknowledgement off the broker's hot path.
func (r *Reader) SetReuse(on bool) {
	r.reusing = on
	if !on {
		r.reuse = nil
	}
}

// Version returns the level set by SetVersion, or 0.
func (r *Reader) Version() byte { return r.version }

// ReadPacket reads and decodes the next packet.
//
// It returns io.EOF when the stream ends cleanly between packets and io.ErrUnexpectedEOF
// when it ends inside one; errors of the underlying reader (deadlines) come back as they are.
// Decoding errors wrap ErrMalformed, ErrProtocolViolation, ErrPacketTooLarge or
// ErrUnsupportedVersion. After any error the stream position is undefined and the
// connection should be closed. A CONNECT that fails once its protocol name and level are
// read is returned too, so the caller can answer CONNACK in the client's protocol version: for
// ErrUnsupportedVersion decoded as far as it could be (CONNACK 0x01), otherwise holding only
// its protocol name and level (an MQTT 5 client gets a reason code [MQTT-4.13.1-1]).
//
// Strings and the PUBLISH payload in the returned packet never alias the Reader's buffers.
func (r *Reader) ReadPacket() (Packet, error) {
	// An idle connection parks in the read of the next packet's first byte. It does so on small
	// frames (this one and readFirst; readPacket's is large): the runtime halves a parked
	// goroutine's stack only while less than a quarter of it minus 800 bytes is in use, so every
	// frame here decides whether an idle connection keeps 4 or 8 KiB of stack.
	first, err := r.readFirst()
	if err != nil {
		return nil, err
	}
	return r.readPacket(first)
}

// readFirst reads the first byte of the next packet. Without a byte reader it reads the
// second header byte too (every packet has one), so a PUBLISH costs two reads, not three.
func (r *Reader) readFirst() (byte, error) {
	if r.byteSrc != nil {
		return r.byteSrc.ReadByte()
	}
	if _, err := io.ReadFull(r.src, r.two[:]); err != nil {
		return 0, err // io.EOF: clean end of stream between packets
	}
	return r.two[0], nil
}

// readPacket reads and decodes the rest of the packet whose first byte is first.
func (r *Reader) readPacket(first byte) (Packet, error) {
	n, hdr, err := r.readFixedHeader()
	if err != nil {
		return nil, err
	}
	t, flags := Type(first>>4), first&0x0F
	if size := 1 + hdr + n; size > int(r.max) {
		return nil, fmt.Errorf("%w: %s of %d bytes exceeds the limit of %d", ErrPacketTooLarge, t, size, r.max)
	}
	version := r.version
	if version == 0 {
		version = Version311
	}
	if err := checkFlags(t, flags, version); err != nil {
		return nil, err
	}

	var body []byte
	if t == Publish {
		// The payload is handed to the router, which shares it after this Reader moves on,
		// so a PUBLISH body always gets its own allocation and the payload aliases it.
		body, err = r.readOwned(n)
	} else {
		var pooled *[]byte
		body, pooled, err = r.readReused(n)
		if pooled != nil {
			// decode copies what it keeps, so the buffer goes back once it returns.
			defer bodyPool.Put(pooled)
		}
	}
	if err != nil {
		return nil, err
	}
	if r.reusing && r.reuse == nil && t >= Publish && t <= Pubcomp {
		r.reuse = &reuse{}
	}
	d := decoder{b: body, strict: version == Version5, maxFilters: int(r.filters), reuse: r.reuse}
	p, err := decode(&d, t, flags, version)
	if err != nil {
		if cp, ok := p.(*ConnectPacket); ok { // keeps its CONNECT for the CONNACK
			return cp, fmt.Errorf("decode %s: %w", t, err)
		}
		return nil, fmt.Errorf("decode %s: %w", t, err)
	}
	if d.remaining() != 0 {
		return nil, fmt.Errorf("decode %s: %w: %d bytes beyond the packet's content", t, ErrMalformed, d.remaining())
	}
	return p, nil
}

// readFixedHeader reads the remaining length after the packet's first byte (readFirst),
// returning it and how many bytes encoded it.
func (r *Reader) readFixedHeader() (n, size int, err error) {
	var c byte
	if r.byteSrc != nil {
		c, err = r.byteSrc.ReadByte()
	} else {
		c = r.two[1] // read with the first byte
	}
	mult := 1
	for size = 1; ; size++ {
		if err != nil {
			return 0, 0, unexpected(err)
		}
		n += int(c&0x7F) * mult
		if c&0x80 == 0 {
			if r.version == Version5 && size > 1 && c == 0 {
				return 0, 0, fmt.Errorf("%w: remaining length not in its shortest form [MQTT-1.5.5-1]", ErrMalformed)
			}
			return n, size, nil
		}
		if size == 4 {
			return 0, 0, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
		}
		mult *= 128
		c, err = r.readByte()
	}
}

func (r *Reader) readByte() (byte, error) {
	if r.byteSrc != nil {
		return r.byteSrc.ReadByte()
	}
	if _, err := io.ReadFull(r.src, r.two[:1]); err != nil {
		return 0, err
	}
	return r.two[0], nil
}

// readReused reads n body bytes into the Reader's inline array or a pooled buffer (returned
// for the caller to put back once decoded), or beyond maxPooledBody into a buffer used once.
func (r *Reader) readReused(n int) ([]byte, *[]byte, error) {
	var b []byte
	var pooled *[]byte
	switch {
	case n <= inlineBody:
		b = r.inline[:n]
	case n <= maxPooledBody:
		pooled = bodyPool.Get().(*[]byte)
		b = (*pooled)[:n]
	default:
		b, err := r.readOwned(n)
		return b, nil, err
	}
	if _, err := io.ReadFull(r.src, b); err != nil {
		if pooled != nil {
			bodyPool.Put(pooled)
		}
		return nil, nil, unexpected(err)
	}
	return b, pooled, nil
}

// readOwned reads n body bytes into a new buffer that grows as data arrives.
func (r *Reader) readOwned(n int) ([]byte, error) {
	b := make([]byte, 0, min(n, eagerBody))
	for len(b) < n {
		if len(b) == cap(b) {
			grown := make([]byte, len(b), min(n, 2*cap(b)))
			copy(grown, b)
			b = grown
		}
		m, err := io.ReadAtLeast(r.src, b[len(b):cap(b)], 1)
		b = b[:len(b)+m]
		if err != nil && len(b) < n {
			return nil, unexpected(err)
		}
	}
	return b[:n:n], nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// checkFlags validates the fixed header's type and flag bits [MQTT-2.2.2-1] [MQTT-2.2.2-2].
func checkFlags(t Type, flags, version byte) error {
	switch {
	case t == 0:
		return fmt.Errorf("%w: reserved packet type 0", ErrMalformed)
	case t == Auth && version != Version5:
		return fmt.Errorf("%w: reserved packet type 15 before MQTT 5", ErrMalformed)
	case t == Publish:
		if flags&0x06 == 0x06 {
			return fmt.Errorf("%w: PUBLISH with QoS 3 [MQTT-3.3.1-4]", ErrMalformed)
		}
		if flags&0x08 != 0 && flags&0x06 == 0 {
			return fmt.Errorf("%w: PUBLISH with DUP set at QoS 0 [MQTT-3.3.1-2]", ErrMalformed)
		}
	case t == Pubrel || t == Subscribe || t == Unsubscribe:
		if flags != 0x02 {
			return fmt.Errorf("%w: %s fixed header flags 0x%X, want 0x2 [MQTT-2.2.2-2]", ErrMalformed, t, flags)
		}
	default:
		if flags != 0 {
			return fmt.Errorf("%w: %s fixed header flags 0x%X, want 0 [MQTT-2.2.2-2]", ErrMalformed, t, flags)
		}
	}
	return nil
}
