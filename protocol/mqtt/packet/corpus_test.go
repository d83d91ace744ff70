package packet

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// Property blocks using every property each MQTT 5 packet allows, repeatable ones repeated;
// the fuzz corpus is built from them.
var (
	connectProps = cat(0x11, u32(3600), 0x21, u16(20), 0x27, u32(1<<20), 0x22, u16(10), 0x19, 1, 0x17, 0,
		0x26, str("region"), str("eu"), 0x26, str("region"), str("us"), 0x15, str("SCRAM-SHA-256"), 0x16, str("client-first"))
	willProps = cat(0x18, u32(30), 0x01, 1, 0x02, u32(3600), 0x03, str("text/plain"), 0x08, str("replies/c1"),
		0x09, str("\x00\x01corr"), 0x26, str("k"), str("v"), 0x26, str("k"), str("v2"))
	connackProps = cat(0x11, u32(0xFFFFFFFF), 0x21, u16(100), 0x24, 1, 0x25, 1, 0x27, u32(268435460),
		0x12, str("auto-3f9a"), 0x22, u16(65535), 0x1F, str("welcome"), 0x26, str("a"), str("b"), 0x26, str("a"), str("c"),
		0x28, 1, 0x29, 0, 0x2A, 1, 0x13, u16(30), 0x1A, str("resp/base"), 0x1C, str("other.example:1883"),
		0x15, str("SCRAM-SHA-256"), 0x16, str("server-final"))
	publishProps = cat(0x01, 1, 0x02, u32(120), 0x23, u16(4), 0x08, str("reply/x"), 0x09, str("id-42"),
		0x26, str("trace"), str("abc"), 0x26, str("trace"), str("def"), 0x0B, vbi(1), 0x0B, vbi(16384),
		0x0B, vbi(268435455), 0x03, str("application/json"))
	ackProps         = cat(0x1F, str("quota exceeded"), 0x26, str("k"), str("v"), 0x26, str("k"), str("v"))
	subscribeProps   = cat(0x0B, vbi(2097152), 0x26, str("k"), str("v"), 0x26, str("k2"), str("v2"))
	unsubscribeProps = cat(0x26, str("k"), str("v"), 0x26, str(""), str(""))
	disconnectProps  = cat(0x11, u32(0), 0x1F, str("shutting down"), 0x26, str("k"), str("v"), 0x1C, str("backup:1883"))
	authProps        = cat(0x15, str("SCRAM-SHA-256"), 0x16, str("\x00\xff"), 0x1F, str("continue"),
		0x26, str("k"), str("v"), 0x26, str("k"), str("v"))
)

// v5Valid is one valid MQTT 5 packet of every type and form, with rich properties.
func v5Valid() [][]byte {
	return [][]byte{
		pkt(0x10, str("MQTT"), 5, 0xEE, u16(60), props(connectProps), str("client-1"), props(willProps),
			str("will/topic"), str("gone"), str("user"), str("pass")),
		pkt(0x10, str("MQTT"), 5, 0x76, u16(0), props(), str(""), props(), str("w"), str(""), str("\x00\x00")),
		pkt(0x10, str("MQTT"), 5, 0x00, u16(65535), props(0x26, str("k"), str("v")), str("c")),
		pkt(0x20, 0x01, 0x00, props(connackProps)),
		pkt(0x20, 0x00, 0x9C, props(0x1C, str("elsewhere"), 0x1F, str("moved"))),
		pkt(0x30, str("a/b"), props(publishProps), "payload"),
		pkt(0x3B, str("a/b"), u16(1), props(publishProps), "{}"),
		pkt(0x35, str(""), u16(65535), props(0x23, u16(4)), "x"),
		pkt(0x30, str("t"), props()),
		cat(0x40, 2, u16(1)),
		cat(0x40, 3, u16(1), 0x10),
		pkt(0x40, u16(1), 0x97, props(ackProps)),
		pkt(0x50, u16(2), 0x80, props(ackProps)),
		cat(0x50, 3, u16(2), 0x91),
		pkt(0x62, u16(3), 0x92, props(ackProps)),
		cat(0x62, 2, u16(3)),
		pkt(0x70, u16(4), 0x00, props(ackProps)),
		pkt(0x82, u16(5), props(subscribeProps), str("a/+/c"), 0x2E, str("$share/g/t/#"), 0x1A, str("#"), 0x00),
		pkt(0x90, u16(5), props(ackProps), 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2),
		pkt(0xA2, u16(6), props(unsubscribeProps), str("a/+/c"), str("$share/g/t/#")),
		pkt(0xB0, u16(6), props(ackProps), 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91),
		cat(0xC0, 0),
		cat(0xD0, 0),
		cat(0xE0, 0),
		cat(0xE0, 1, 0x04),
		pkt(0xE0, 0x8B, props(disconnectProps)),
		cat(0xF0, 0),
		pkt(0xF0, 0x18, props(authProps)),
		pkt(0xF0, 0x19, props(0x15, str("m"))),
	}
}

// v5Corpus is the valid packets, near misses made from each (a byte too many, a byte too
// few, the first property identifier swapped for one no packet but CONNACK allows) and the
// normative table's cases, most of them invalid.
func v5Corpus() [][]byte {
	var out [][]byte
	for _, raw := range v5Valid() {
		first, body := splitPacket(raw)
		out = append(out, raw, pkt(int(first), body, 0))
		if len(body) > 0 {
			out = append(out, pkt(int(first), body[:len(body)-1]))
		}
		if i := bytes.Index(body, []byte{0x26, 0, 1, 'k'}); i > 0 {
			swapped := slices.Clone(body)
			swapped[i] = PropSharedSubscriptionAvailable
			out = append(out, pkt(int(first), swapped))
		}
	}
	for _, c := range spec5 {
		out = append(out, c.raw)
	}
	return out
}

// splitPacket separates a well-formed packet into its first byte and its body.
func splitPacket(raw []byte) (byte, []byte) {
	_, n, err := parseVarint(raw[1:], false)
	if err != nil {
		panic(err)
	}
	return raw[0], raw[1+n:]
}

// propSeed is a property block in the context propContexts[ctx].
type propSeed struct {
	ctx byte
	raw []byte
}

// richBlocks pairs each entry of propContexts with its name in propSpec and its rich block.
var richBlocks = [len(propContexts)]struct {
	name  string
	block []byte
}{
	{"CONNECT", connectProps}, {"CONNACK", connackProps}, {"PUBLISH", publishProps}, {"Will", willProps},
	{"PUBACK", ackProps}, {"SUBSCRIBE", subscribeProps}, {"SUBACK", ackProps}, {"UNSUBSCRIBE", unsubscribeProps},
	{"UNSUBACK", ackProps}, {"DISCONNECT", disconnectProps}, {"AUTH", authProps},
}

// propCorpus holds, for every context, the rich block, each allowed property alone, and near
// misses: once-only properties twice, a property of another packet, a block cut short.
func propCorpus() []propSeed {
	var out []propSeed
	for i, rb := range richBlocks {
		ctx := byte(i)
		whole := props(rb.block)
		out = append(out,
			propSeed{ctx, whole},
			propSeed{ctx, props(cat(rb.block, rb.block))},
			propSeed{ctx, props(cat(rb.block, 0x12, str("x")))},
			propSeed{ctx, whole[:len(whole)-1]},
			propSeed{ctx, props()},
		)
		for id, in := range propSpec {
			if slices.Contains(strings.Fields(in), rb.name) {
				out = append(out, propSeed{ctx, props(propValue(id))})
			}
		}
	}
	return out
}

// The corpus's valid packets must really be valid, or the fuzzer starts from error paths only.
func TestV5CorpusValid(t *testing.T) {
	types := map[Type]bool{}
	for _, raw := range v5Valid() {
		r := NewReader(bytes.NewReader(raw), 0)
		r.SetVersion(Version5)
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("% X: %v", raw, err)
		}
		types[p.Type()] = true
		roundTrip(t, p, Version5)
	}
	if len(types) != int(Auth) {
		t.Fatalf("corpus covers %d packet types, want %d", len(types), Auth)
	}
	for i, rb := range richBlocks {
		d := decoder{b: props(rb.block), strict: true}
		if _, err := decodeProperties(&d, propContexts[i]); err != nil || d.remaining() != 0 {
			t.Fatalf("%s properties: %v", rb.name, err)
		}
	}
}
