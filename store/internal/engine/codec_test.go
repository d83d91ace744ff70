package engine

import (
	"encoding/binary"
	"reflect"
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
