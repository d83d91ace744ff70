package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/lyremq/lyre/store"
)

// Records written before the group, owner and delivered-mark fields existed (format version 1 as first
// shipped) still decode, with those fields empty; records with them round-trip.
func TestVersion1RecordsWithoutNewFields(t *testing.T) {
	// message: flags qos priority destKind varint(expires) uvarint(n) path str(origin) str(ct) headers body
	old := []byte{flagPersistent, 1, 4, 1}
	old = binary.AppendVarint(old, 0)
	old = binary.AppendUvarint(old, 1)
	old = appendStr(old, "orders")
	old = appendStr(old, "")
	old = appendStr(old, "")
	old = binary.AppendUvarint(old, 0)
	old = append(old, "body"...)
	m, err := decodeMessage(7, old)
	if err != nil {
		t.Fatal(err)
	}
	want := &store.Message{ID: 7, DestKind: 1, DestPath: []string{"orders"}, QoS: 1, Persistent: true, Priority: 4, Body: []byte("body")}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("old message: got %+v, want %+v", m, want)
	}
	want.Group = "g"
	if m, err = decodeMessage(7, encodeMessage(want)); err != nil || !reflect.DeepEqual(m, want) {
		t.Fatalf("grouped message: got %+v, %v", m, err)
	}

	oldSession := encodeSession(store.Session{ClientID: "c", ProtocolVersion: 4,
		Subscriptions: []store.Subscription{{Filter: "a/#", QoS: 1}}})
	s, err := decodeSession("c", oldSession)
	if err != nil || s.Owner != "" || len(s.Subscriptions) != 1 {
		t.Fatalf("old session: %+v, %v", s, err)
	}
	withOwner := store.Session{ClientID: "c", ProtocolVersion: 4, Owner: "alice"}
	if s, err = decodeSession("c", encodeSession(withOwner)); err != nil || !reflect.DeepEqual(s, withOwner) {
		t.Fatalf("session with owner: %+v, %v", s, err)
	}

	q, err := decodeQueue("q", []byte{3})
	if err != nil || q != (store.Queue{Name: "q", Kind: 3}) {
		t.Fatalf("old queue record: %+v, %v", q, err)
	}
	marked := store.Queue{Name: "q", Kind: 3, Delivered: 123456}
	if q, err = decodeQueue("q", encodeQueue(marked)); err != nil || q != marked {
		t.Fatalf("queue record with a mark: %+v, %v", q, err)
	}
}

// oldMessageRecord is a message as written before the properties section existed (flags without bit 8),
// with a group, headers and a body, built by hand so the test does not depend on encodeMessage.
func oldMessageRecord() []byte {
	b := []byte{flagPersistent | flagGroup, 1, 0, 2}
	b = binary.AppendVarint(b, 1234)
	b = binary.AppendUvarint(b, 2)
	b = appendStr(appendStr(b, "a"), "b")
	b = appendStr(b, "a/b")
	b = appendStr(b, "text/plain")
	b = binary.AppendUvarint(b, 1)
	b = appendStr(appendStr(b, "k"), "v")
	b = appendStr(b, "g")
	return append(b, "body"...)
}

var oldMessage = &store.Message{ID: 9, DestKind: 2, DestPath: []string{"a", "b"}, Origin: "a/b", QoS: 1,
	Persistent: true, Expires: 1234, ContentType: "text/plain", Headers: []store.Header{{Name: "k", Value: "v"}},
	Group: "g", Body: []byte("body")}

// Records written before the properties section decode unchanged, with no properties; a message without
// properties is still written byte for byte as they were, so older builds read it too.
func TestMessageWithoutPropertiesSection(t *testing.T) {
	m, err := decodeMessage(9, oldMessageRecord())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, oldMessage) {
		t.Fatalf("old record:\n got %+v\nwant %+v", m, oldMessage)
	}
	if got := encodeMessage(oldMessage); !bytes.Equal(got, oldMessageRecord()) {
		t.Fatalf("message without properties encodes as\n%q\nwant the old layout\n%q", got, oldMessageRecord())
	}
}

func TestMessagePropertiesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(m *store.Message)
	}{
		{"reply-to", func(m *store.Message) { m.ReplyToKind, m.ReplyToPath = 1, []string{"svc", "", "replies"} }},
		{"reply-to empty segment", func(m *store.Message) { m.ReplyToPath = []string{""} }},
		{"correlation", func(m *store.Message) { m.CorrelationData = []byte{0, 0xff, 'x'} }},
		{"utf8", func(m *store.Message) { m.UTF8 = true }},
		{"all, no group, empty body", func(m *store.Message) {
			m.Group, m.Body = "", nil
			m.ReplyToKind, m.ReplyToPath, m.CorrelationData, m.UTF8 = 4, []string{"lyre-1", "q"}, []byte("id-1"), true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := *oldMessage
			tc.mod(&want)
			b := encodeMessage(&want)
			if b[0]&flagProps == 0 {
				t.Fatalf("flags %#x without the properties bit", b[0])
			}
			got, err := decodeMessage(9, b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, &want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, &want)
			}
		})
	}
}

// A damaged or unknown properties section is ErrCorrupt, never a longer body.
func TestMessagePropertiesCorrupt(t *testing.T) {
	m := *oldMessage
	m.Group, m.Body = "", nil
	m.ReplyToPath, m.CorrelationData = []string{"r"}, []byte("c")
	good := encodeMessage(&m)
	props := len(good) - len("\x07\x01\x01\x01r\x01c") // p, kind, n, str(r), str(c)
	if good[props] != propReplyTo|propCorrelation {
		t.Fatalf("properties section not where expected: %q", good[props:])
	}
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"unknown bit", append(slices.Clone(good[:props]), 0x80)},
		{"no bits", append(slices.Clone(good[:props]), 0)},
		{"missing section", good[:props]},
		{"reply-to without path", append(slices.Clone(good[:props]), propReplyTo, 1, 0)},
		{"empty correlation", append(slices.Clone(good[:props]), propCorrelation, 0)},
		{"correlation past the end", append(slices.Clone(good[:props]), propCorrelation, 5, 'x')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := decodeMessage(1, tc.raw); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("got %+v, %v; want ErrCorrupt", m, err)
			}
		})
	}
}
