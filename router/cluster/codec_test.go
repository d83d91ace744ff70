package cluster

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/lyremq/lyre/router"
)

var now = time.UnixMilli(1_700_000_000_000)

var codecCases = []*router.Message{
	{Body: []byte{}},
	{Body: []byte("payload"), QoS: 2, Retain: true, Persistent: true, UTF8: true, Priority: 7,
		Expires: now.UnixMilli() + 1500, ContentType: "application/json", SenderID: "client-1", Group: "g",
		ReplyTo:         router.Destination{Kind: router.Queue, Path: []string{"r", "", "x.y"}},
		CorrelationData: []byte{0, 1, 2},
		Headers:         []router.Header{{Name: "a", Value: "1"}, {Name: "", Value: ""}, {Name: "a", Value: "2"}}},
}

func TestCodecRoundTrip(t *testing.T) {
	path := []string{"a", "b"}
	for i, m := range codecCases {
		m.Dest = router.Destination{Kind: router.Topic, Path: path}
		b, ok := encode(nil, m, 42, uint64(i+1), now)
		if !ok {
			t.Fatalf("case %d not encoded", i)
		}
		got, env, err := decode(b, path, now)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if env.origin != 42 || env.seq != uint64(i+1) {
			t.Fatalf("case %d: envelope %+v", i, env)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("case %d:\n got %+v\nwant %+v", i, got, m)
		}
	}
}

func TestCodecExpiry(t *testing.T) {
	m := &router.Message{Expires: now.UnixMilli()}
	if _, ok := encode(nil, m, 1, 1, now); ok {
		t.Fatal("an expired message was encoded")
	}
	// The remaining lifetime travels, not the sender's clock.
	m.Expires = now.UnixMilli() + 10_000
	b, _ := encode(nil, m, 1, 1, now)
	later := now.Add(time.Hour)
	got, _, err := decode(b, []string{"x"}, later)
	if err != nil || got.Expires != later.UnixMilli()+10_000 {
		t.Fatalf("expires %d (err %v), want %d", got.Expires, err, later.UnixMilli()+10_000)
	}
}

func TestCodecRejectsGarbage(t *testing.T) {
	good, _ := encode(nil, codecCases[1], 1, 1, now)
	for _, b := range [][]byte{nil, {0}, {2, 0, 0, 0, 1, 1}, {1, 0x80, 0, 0, 1, 1}, {1, 0, 3, 0, 1, 1}, good[:20]} {
		if _, _, err := decode(b, []string{"x"}, now); err == nil {
			t.Errorf("decode(%x) accepted garbage", b)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for i, m := range codecCases {
		b, _ := encode(nil, m, 7, uint64(i+1), now)
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, env, err := decode(b, []string{"x"}, now)
		if err != nil {
			return
		}
		// Whatever decodes encodes back to the same bytes, except a zero-length correlation data, which
		// decodes as none.
		again, ok := encode(nil, m, env.origin, env.seq, now)
		if !ok {
			t.Fatalf("decoded message not encodable: %+v", m)
		}
		m2, _, err := decode(again, []string{"x"}, now)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed %+v into %+v (%v)", m, m2, err)
		}
		if len(m.Body) > len(b) || !bytes.HasSuffix(b, m.Body) {
			t.Fatal("body is not the envelope's tail")
		}
	})
}
