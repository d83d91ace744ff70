package packet

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unsafe"
)

func decodeAll(t *testing.T, src io.Reader, version byte) (Packet, error) {
	t.Helper()
	r := NewReader(src, 1<<16)
	r.SetVersion(version)
	p, err := r.ReadPacket()
	if err == nil {
		// Nothing may be left behind: the table's raw is exactly one packet.
		if _, err2 := r.ReadPacket(); err2 != io.EOF {
			t.Fatalf("second ReadPacket: %v, want io.EOF", err2)
		}
	}
	return p, err
}

func TestGoldenDecode(t *testing.T) {
	readers := map[string]func([]byte) io.Reader{
		"bytes":   func(b []byte) io.Reader { return bytes.NewReader(b) },
		"onebyte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":    func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
	}
	for _, c := range golden {
		for rname, mk := range readers {
			t.Run(c.name+"/"+rname, func(t *testing.T) {
				got, err := decodeAll(t, mk(c.raw), c.version)
				if c.err != nil {
					if !errors.Is(err, c.err) {
						t.Fatalf("err = %v, want %v", err, c.err)
					}
				} else if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c.err == nil || c.want != nil {
					if !reflect.DeepEqual(got, c.want) {
						t.Fatalf("decoded\n got  %#v\n want %#v", got, c.want)
					}
				} else if got != nil && !connectStub(got) {
					t.Fatalf("packet %#v returned with error %v", got, err)
				}
			})
		}
	}
}

func TestGoldenEncode(t *testing.T) {
	for _, c := range golden {
		if c.err != nil || c.nonCanonical {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			got := Append(nil, c.want, c.version)
			if !bytes.Equal(got, c.raw) {
				t.Fatalf("encoded\n got  % X\n want % X", got, c.raw)
			}
			// Appending keeps what dst held.
			prefixed := Append([]byte("xy"), c.want, c.version)
			if !bytes.Equal(prefixed, append([]byte("xy"), c.raw...)) {
				t.Fatalf("Append to a non-empty dst clobbered it: % X", prefixed)
			}
		})
	}
}

// samplePackets returns one packet of every type valid at version, using every field the
// version can carry.
func samplePackets(version byte) []Packet {
	v5 := version == Version5
	var pr, wpr *Properties
	var subOpts Subscription
	level, name := version, "MQTT"
	if version == Version31 {
		name = "MQIsdp"
	}
	if v5 {
		pr = &Properties{ReasonString: "why", UserProperties: []UserProperty{{"a", "b"}}}
		wpr = &Properties{WillDelayInterval: ptr[uint32](3), ContentType: "text/plain"}
		subOpts = Subscription{NoLocal: true, RetainAsPublished: true, RetainHandling: 2}
	}
	connect := &ConnectPacket{ProtocolName: name, ProtocolLevel: level, CleanSession: true, KeepAlive: 60,
		ClientID: "cid", WillFlag: true, WillQoS: 2, WillRetain: true, WillTopic: "will", WillPayload: []byte{0, 1},
		UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p"), WillProperties: wpr}
	if v5 {
		connect.Properties = &Properties{SessionExpiryInterval: ptr[uint32](7), ReceiveMaximum: ptr[uint16](9),
			RequestProblemInformation: ptr[byte](0), AuthenticationMethod: "m", AuthenticationData: []byte("d")}
	}
	var connack *ConnackPacket
	if version == Version31 {
		connack = &ConnackPacket{ReturnCode: ConnRefusedIdentifierRejected}
	} else {
		connack = &ConnackPacket{SessionPresent: true}
	}
	if v5 {
		connack.Properties = &Properties{AssignedClientIdentifier: "x", MaximumQoS: ptr[byte](1),
			ServerKeepAlive: ptr[uint16](0), TopicAliasMaximum: ptr[uint16](4)}
	}
	var rc byte
	var pubPr, subPr *Properties
	var unsubackCodes []byte
	if v5 {
		rc = 0x80
		pubPr = &Properties{TopicAlias: ptr[uint16](2), SubscriptionIdentifiers: []uint32{1, 2},
			MessageExpiryInterval: ptr[uint32](10), CorrelationData: []byte{9}}
		subPr = &Properties{SubscriptionIdentifiers: []uint32{77}}
		unsubackCodes = []byte{0, 0x11}
	}
	subOpts.Filter, subOpts.QoS = "a/+/c", 1
	ps := []Packet{
		connect,
		connack,
		&PublishPacket{Topic: "t/0", Payload: []byte("zero")},
		&PublishPacket{Dup: true, QoS: 1, Retain: true, Topic: "t/1", PacketID: 1, Payload: []byte("one"), Properties: pubPr},
		&PublishPacket{QoS: 2, Topic: "t/2", PacketID: 65535, Payload: bytes.Repeat([]byte{'x'}, 300)},
		&PubackPacket{PacketID: 1, ReasonCode: rc, Properties: pr},
		&PubrecPacket{PacketID: 2, ReasonCode: rc, Properties: pr},
		&PubrelPacket{PacketID: 3, Properties: pr},
		&PubcompPacket{PacketID: 4, Properties: pr},
		&SubscribePacket{PacketID: 5, Subscriptions: []Subscription{subOpts, {Filter: "#", QoS: 2}}, Properties: subPr},
		&SubackPacket{PacketID: 5, ReturnCodes: []byte{1, 2, 0x80}, Properties: pr},
		&UnsubscribePacket{PacketID: 6, Filters: []string{"a/+/c", "#"}},
		&UnsubackPacket{PacketID: 6, ReasonCodes: unsubackCodes, Properties: pr},
		&PingreqPacket{},
		&PingrespPacket{},
		&DisconnectPacket{},
	}
	if v5 {
		ps = append(ps,
			&DisconnectPacket{ReasonCode: ReasonServerShuttingDown, Properties: &Properties{ReasonString: "bye"}},
			&AuthPacket{ReasonCode: ReasonReAuthenticate, Properties: &Properties{AuthenticationMethod: "m"}},
			&AuthPacket{})
	}
	return ps
}

func TestRoundTripEveryType(t *testing.T) {
	for _, v := range []byte{Version31, Version311, Version5} {
		// All packets of a version go through one stream, which also checks that the
		// Reader's reused buffer does not leak between packets.
		var stream []byte
		want := samplePackets(v)
		for _, p := range want {
			stream = Append(stream, p, v)
		}
		r := NewReader(iotest.HalfReader(bytes.NewReader(stream)), 0)
		r.SetVersion(v)
		var got []Packet
		for {
			p, err := r.ReadPacket()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("version %d: packet %d: %v", v, len(got), err)
			}
			got = append(got, p)
		}
		if len(got) != len(want) {
			t.Fatalf("version %d: got %d packets, want %d", v, len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("version %d %s:\n got  %#v\n want %#v", v, want[i].Type(), got[i], want[i])
			}
		}
	}
}

// lazyBody serves a fixed header, then counts every byte of body asked for.
type lazyBody struct {
	header    []byte
	bodyReads int
}

func (l *lazyBody) Read(p []byte) (int, error) {
	if len(l.header) > 0 {
		n := copy(p, l.header)
		l.header = l.header[n:]
		return n, nil
	}
	l.bodyReads += len(p)
	clear(p)
	return len(p), nil
}

func TestPacketTooLargeRejectedFromFixedHeader(t *testing.T) {
	src := &lazyBody{header: cat(0x30, vbi(200<<20))} // a 200 MB PUBLISH
	r := NewReader(src, 1<<20)
	p, err := r.ReadPacket()
	if !errors.Is(err, ErrPacketTooLarge) || p != nil {
		t.Fatalf("ReadPacket = %v, %v; want ErrPacketTooLarge", p, err)
	}
	if src.bodyReads != 0 {
		t.Fatalf("read %d body bytes of a packet refused from its header", src.bodyReads)
	}
}

func TestMaxPacketSizeCountsFixedHeader(t *testing.T) {
	raw := pkt(0x30, str("t"), "12345") // 2 + 8 bytes
	if _, err := NewReader(bytes.NewReader(raw), len(raw)).ReadPacket(); err != nil {
		t.Fatalf("packet of exactly the limit: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(raw), len(raw)-1).ReadPacket(); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("packet one byte over the limit: %v, want ErrPacketTooLarge", err)
	}
}

func TestReadPacketEOF(t *testing.T) {
	if _, err := NewReader(bytes.NewReader(nil), 0).ReadPacket(); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
	if _, err := NewReader(iotest.OneByteReader(bytes.NewReader(nil)), 0).ReadPacket(); err != io.EOF {
		t.Fatalf("empty stream, not a byte reader: %v, want io.EOF", err)
	}
	for _, raw := range [][]byte{{0x30}, {0x30, 0x80}, {0x30, 5, 0, 1}, {0x82, 200, 1, 0, 1}} {
		if _, err := NewReader(iotest.OneByteReader(bytes.NewReader(raw)), 0).ReadPacket(); err != io.ErrUnexpectedEOF {
			t.Fatalf("truncated % X: %v, want io.ErrUnexpectedEOF", raw, err)
		}
	}
}

func TestReadPacketErrorsCarryContext(t *testing.T) {
	_, err := NewReader(bytes.NewReader(pkt(0x30, str("a/#"))), 0).ReadPacket()
	if err == nil || !strings.Contains(err.Error(), "PUBLISH") || !strings.Contains(err.Error(), "MQTT-3.3.2-2") {
		t.Fatalf("error %q lacks the packet type or spec reference", err)
	}
}

// The router keeps a PUBLISH payload after the Reader has moved on [design: payload owned].
func TestPublishPayloadOwnedByPacket(t *testing.T) {
	var stream []byte
	stream = Append(stream, &PublishPacket{Topic: "a", Payload: []byte("first")}, Version311)
	stream = Append(stream, &SubscribePacket{PacketID: 1, Subscriptions: []Subscription{{Filter: "zzzzzzzzzzzz"}}}, Version311)
	stream = Append(stream, &PublishPacket{Topic: "b", Payload: []byte("other")}, Version311)
	r := NewReader(bytes.NewReader(stream), 0)
	first, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
	p := first.(*PublishPacket)
	if p.Topic != "a" || string(p.Payload) != "first" || cap(p.Payload) != len(p.Payload) {
		t.Fatalf("first packet changed: %q %q cap %d", p.Topic, p.Payload, cap(p.Payload))
	}
}

// Bodies up to the inline size, pooled bodies and bodies used once all decode, and the Reader keeps no
// body buffer between packets: an idle connection's Reader is its struct alone.
func TestReaderKeepsNoBodyBuffer(t *testing.T) {
	tiny := Append(nil, &SubscribePacket{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/b"}}}, Version311)
	small := Append(nil, &SubscribePacket{PacketID: 2, Subscriptions: []Subscription{{Filter: strings.Repeat("s", 100)}}}, Version311)
	big := Append(nil, &SubscribePacket{PacketID: 3, Subscriptions: []Subscription{{Filter: strings.Repeat("x", 60000)}}}, Version311)
	r := NewReader(bytes.NewReader(cat(tiny, small, big, small, tiny)), 0)
	for i, want := range []int{3, 100, 60000, 100, 3} {
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if got := len(p.(*SubscribePacket).Subscriptions[0].Filter); got != want {
			t.Fatalf("packet %d: filter of %d bytes, want %d", i, got, want)
		}
	}
	if size := unsafe.Sizeof(*r); size > 80 {
		t.Fatalf("Reader is %d bytes; want at most 80 (one small size class)", size)
	}
}

// A body larger than eagerBody is read in growing chunks; the result must be intact.
func TestLargeBodyThroughSmallReads(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 30000)
	raw := Append(nil, &PublishPacket{Topic: "big", Payload: payload}, Version311)
	p, err := NewReader(iotest.HalfReader(bytes.NewReader(raw)), 0).ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.(*PublishPacket).Payload, payload) {
		t.Fatal("payload corrupted")
	}
}

func TestUnsupportedVersionReturnsConnect(t *testing.T) {
	// [MQTT-3.1.2-2]: the caller needs the packet to answer CONNACK 0x01 before closing.
	p, err := NewReader(bytes.NewReader(pkt(0x10, str("MQTT"), 9, 0x02, u16(5), props(), str("id"))), 0).ReadPacket()
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("err = %v", err)
	}
	c, ok := p.(*ConnectPacket)
	if !ok || c.ProtocolLevel != 9 || c.ClientID != "id" {
		t.Fatalf("packet = %#v", p)
	}
	if ReasonFor(err) != ReasonUnsupportedProtocolVersion {
		t.Fatalf("ReasonFor = 0x%02X", ReasonFor(err))
	}
}

func TestReasonFor(t *testing.T) {
	for _, c := range []struct {
		err  error
		want byte
	}{
		{ErrMalformed, ReasonMalformedPacket},
		{ErrProtocolViolation, ReasonProtocolError},
		{ErrPacketTooLarge, ReasonPacketTooLarge},
		{io.ErrUnexpectedEOF, ReasonUnspecifiedError},
	} {
		if got := ReasonFor(c.err); got != c.want {
			t.Errorf("ReasonFor(%v) = 0x%02X, want 0x%02X", c.err, got, c.want)
		}
	}
}

func TestAppendAck(t *testing.T) {
	for _, c := range []struct {
		t       Type
		version byte
		want    []byte
	}{
		{Puback, Version311, cat(0x40, 2, 0x12, 0x34)},
		{Pubrec, Version5, cat(0x50, 2, 0x12, 0x34)},
		{Pubrel, Version311, cat(0x62, 2, 0x12, 0x34)},
		{Pubcomp, Version31, cat(0x70, 2, 0x12, 0x34)},
		{Unsuback, Version311, cat(0xB0, 2, 0x12, 0x34)},
		{Unsuback, Version5, cat(0xB0, 3, 0x12, 0x34, 0)},
		{Connect, Version311, nil},
	} {
		got := AppendAck(nil, c.t, 0x1234, c.version)
		if !bytes.Equal(got, c.want) {
			t.Errorf("AppendAck(%s, v%d) = % X, want % X", c.t, c.version, got, c.want)
		}
	}
}

func TestTypeString(t *testing.T) {
	if Publish.String() != "PUBLISH" || Auth.String() != "AUTH" || Type(0).String() != "Type(0)" {
		t.Fatalf("String: %s %s %s", Publish, Auth, Type(0))
	}
}

func TestAppendPublishZeroAllocs(t *testing.T) {
	p := &PublishPacket{QoS: 1, Topic: "sensors/k1/temp", PacketID: 42, Payload: make([]byte, 64)}
	p5 := &PublishPacket{QoS: 1, Topic: "sensors/k1/temp", PacketID: 42, Payload: make([]byte, 64),
		Properties: &Properties{MessageExpiryInterval: ptr[uint32](5), SubscriptionIdentifiers: []uint32{3},
			UserProperties: []UserProperty{{"k", "v"}}}}
	buf := make([]byte, 0, 512)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"AppendPublish/3.1.1", func() { buf = AppendPublish(buf[:0], p, Version311) }},
		{"AppendPublish/5", func() { buf = AppendPublish(buf[:0], p5, Version5) }},
		{"Append/5", func() { buf = Append(buf[:0], p5, Version5) }},
		{"AppendAck", func() { buf = AppendAck(buf[:0], Puback, 42, Version311) }},
	} {
		if n := testing.AllocsPerRun(100, c.f); n != 0 {
			t.Errorf("%s: %v allocs, want 0", c.name, n)
		}
	}
}

// loopReader replays one packet forever.
type loopReader struct {
	b []byte
	i int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.b[l.i:])
		n += c
		l.i = (l.i + c) % len(l.b)
	}
	return n, nil
}

func BenchmarkReadPacket(b *testing.B) {
	raw := Append(nil, &PublishPacket{QoS: 1, Topic: "sensors/k1/temp", PacketID: 7, Payload: make([]byte, 64)}, Version311)
	for _, c := range []struct {
		name string
		src  io.Reader
	}{
		{"bufio", bufio.NewReader(&loopReader{b: raw})}, // what protocol.Conn.Reader hands out
		{"plain", &loopReader{b: raw}},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := NewReader(c.src, 0)
			r.SetVersion(Version311)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.ReadPacket(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	p := &PublishPacket{QoS: 1, Topic: "sensors/k1/temp", PacketID: 7, Payload: make([]byte, 64)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPublish(buf[:0], p, Version311)
	}
	b.SetBytes(int64(len(buf)))
}

// PublishSize must agree with what AppendPublish writes, across the remaining-length
// boundaries where the fixed header grows a byte, and cost nothing.
func TestPublishSize(t *testing.T) {
	rich := &Properties{PayloadFormatIndicator: ptr[byte](1), MessageExpiryInterval: ptr[uint32](60),
		ContentType: "application/json", ResponseTopic: "reply/1", CorrelationData: []byte{1, 2, 3},
		SubscriptionIdentifiers: []uint32{1, 200, 40000, 268435455}, TopicAlias: ptr[uint16](9),
		UserProperties: []UserProperty{{"a", "b"}, {"", ""}}}
	for _, version := range []byte{Version31, Version311, Version5} {
		for _, size := range []int{0, 1, 100, 127, 128, 16383, 16384, 70000, 2097152} {
			for _, p := range []*PublishPacket{
				{Topic: "t", Payload: make([]byte, size)},
				{QoS: 1, PacketID: 1, Topic: "", Payload: make([]byte, size), Properties: &Properties{TopicAlias: ptr[uint16](1)}},
				{QoS: 2, PacketID: 7, Dup: true, Retain: true, Topic: "a/b/c", Payload: make([]byte, size), Properties: rich},
			} {
				// Sizes around each boundary, counting the header the payload sits behind.
				for _, trim := range []int{0, 1, 2, 3, 30, 90} {
					q := *p
					q.Payload = q.Payload[:max(0, len(q.Payload)-trim)]
					if got, want := PublishSize(&q, version), len(AppendPublish(nil, &q, version)); got != want {
						t.Fatalf("v%d payload %d: PublishSize = %d, encoded %d bytes", version, len(q.Payload), got, want)
					}
				}
			}
		}
	}
	p := &PublishPacket{QoS: 1, PacketID: 1, Topic: "t", Payload: make([]byte, 64), Properties: rich}
	if n := testing.AllocsPerRun(100, func() { _ = PublishSize(p, Version5) }); n != 0 {
		t.Fatalf("PublishSize: %v allocs, want 0", n)
	}
}

// benchPublish5 is an MQTT 5 PUBLISH as a request/response client sends it: QoS 1, a 64-byte
// payload and the properties such messages carry.
func benchPublish5(withProps bool) *PublishPacket {
	p := &PublishPacket{QoS: 1, Topic: "sensors/k1/temp", PacketID: 7, Payload: make([]byte, 64)}
	if withProps {
		p.Properties = &Properties{PayloadFormatIndicator: ptr[byte](1), MessageExpiryInterval: ptr[uint32](300),
			ContentType: "application/json", ResponseTopic: "replies/k1", CorrelationData: []byte("req-000042"),
			UserProperties: []UserProperty{{"trace", "4bf92f3577b34da6"}, {"tenant", "acme"}}}
	}
	return p
}

func BenchmarkReadPublish5(b *testing.B) {
	for _, c := range []struct {
		name  string
		props bool
	}{{"bare", false}, {"props", true}} {
		raw := Append(nil, benchPublish5(c.props), Version5)
		b.Run(c.name, func(b *testing.B) {
			r := NewReader(bufio.NewReader(&loopReader{b: raw}), 0)
			r.SetVersion(Version5)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.ReadPacket(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendPublish5(b *testing.B) {
	for _, c := range []struct {
		name  string
		props bool
	}{{"bare", false}, {"props", true}} {
		p := benchPublish5(c.props)
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendPublish(buf[:0], p, Version5)
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run(c.name+"/size", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = PublishSize(p, Version5)
			}
		})
	}
}
