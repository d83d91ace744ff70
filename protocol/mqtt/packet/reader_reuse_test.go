package packet

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"
)

// With SetReuse a publisher's packets come back in the Reader's own structures, the topic string of
// a repeated topic is the same string, and what is checked for a new topic is still checked for it.
func TestReaderSetReuse(t *testing.T) {
	var in []byte
	for _, p := range []Packet{
		&PublishPacket{QoS: 1, PacketID: 1, Topic: "a/b", Payload: []byte("x")},
		&PublishPacket{QoS: 1, PacketID: 2, Topic: "a/b", Payload: []byte("y")},
		&PubackPacket{PacketID: 7},
		&PublishPacket{Topic: "a/c", Payload: []byte("z")},
	} {
		in = Append(in, p, Version311)
	}
	r := NewReader(bytes.NewReader(in), 0)
	r.SetVersion(Version311)
	r.SetReuse(true)
	read := func() Packet {
		t.Helper()
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1 := read().(*PublishPacket)
	topic1, payload1 := p1.Topic, p1.Payload
	p2 := read().(*PublishPacket)
	if p1 != p2 {
		t.Error("the second PUBLISH is not in the Reader's structure")
	}
	if p2.Topic != "a/b" || unsafe.StringData(p2.Topic) != unsafe.StringData(topic1) {
		t.Errorf("repeated topic %q is a new string", p2.Topic)
	}
	if string(payload1) != "x" || string(p2.Payload) != "y" || p2.PacketID != 2 {
		t.Errorf("payloads %q %q, id %d: a kept payload was overwritten", payload1, p2.Payload, p2.PacketID)
	}
	if a := read().(*PubackPacket); a.PacketID != 7 {
		t.Errorf("PUBACK id %d", a.PacketID)
	}
	if p4 := read().(*PublishPacket); p4.Topic != "a/c" || p4.QoS != 0 || p4.PacketID != 0 {
		t.Errorf("fields of the previous PUBLISH left over: %+v", p4)
	}

	// [MQTT-3.3.2-2] a wildcard and [MQTT-1.5.4-1] bad UTF-8 are refused, also right after a good topic.
	for _, bad := range []string{"a/#", "a/\xff"} {
		raw := Append(nil, &PublishPacket{Topic: "a/b"}, Version311)
		raw = Append(raw, &PublishPacket{Topic: bad}, Version311)
		r := NewReader(bytes.NewReader(raw), 0)
		r.SetReuse(true)
		if _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadPacket(); !errors.Is(err, ErrMalformed) {
			t.Errorf("topic %q after a good one: %v, want ErrMalformed", bad, err)
		}
	}
}
