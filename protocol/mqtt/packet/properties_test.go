package packet

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestPropertyPlacement checks every property identifier in every packet against table
// 2.2.2.2 of MQTT 5.0, transcribed here from the specification independently of propAllowed:
// allowed placements decode, others are malformed ("A Control Packet which contains an
// Identifier which is not valid for its packet type ... is a Malformed Packet", 2.2.2.2).
func TestPropertyPlacement(t *testing.T) {
	for id := range 256 {
		allowedIn, known := propSpec[byte(id)]
		for name, build := range propPackets {
			raw := build(props(propValue(byte(id))))
			r := NewReader(bytes.NewReader(raw), 0)
			r.SetVersion(Version5)
			p, err := r.ReadPacket()
			switch {
			case !known:
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("unknown property 0x%02X in %s: %v, want ErrMalformed", id, name, err)
				}
			case slices.Contains(strings.Fields(allowedIn), name):
				if err != nil {
					t.Errorf("property 0x%02X in %s: %v", id, name, err)
					continue
				}
				// Encoding the decoded packet must give the same bytes back.
				if enc := Append(nil, p, Version5); !bytes.Equal(enc, raw) {
					t.Errorf("property 0x%02X in %s re-encoded as % X, want % X", id, name, enc, raw)
				}
			default:
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("property 0x%02X in %s: %v, want ErrMalformed", id, name, err)
				}
			}
		}
	}
}

// propSpec is table 2.2.2.2 of MQTT 5.0: the packets each property identifier may appear in.
var propSpec = map[byte]string{
	0x01: "PUBLISH Will",
	0x02: "PUBLISH Will",
	0x03: "PUBLISH Will",
	0x08: "PUBLISH Will",
	0x09: "PUBLISH Will",
	0x0B: "PUBLISH SUBSCRIBE",
	0x11: "CONNECT CONNACK DISCONNECT",
	0x12: "CONNACK",
	0x13: "CONNACK",
	0x15: "CONNECT CONNACK AUTH",
	0x16: "CONNECT CONNACK AUTH",
	0x17: "CONNECT",
	0x18: "Will",
	0x19: "CONNECT",
	0x1A: "CONNACK",
	0x1C: "CONNACK DISCONNECT",
	0x1F: "CONNACK PUBACK PUBREC PUBREL PUBCOMP SUBACK UNSUBACK DISCONNECT AUTH",
	0x21: "CONNECT CONNACK",
	0x22: "CONNECT CONNACK",
	0x23: "PUBLISH",
	0x24: "CONNACK",
	0x25: "CONNACK",
	0x26: "CONNECT CONNACK PUBLISH Will PUBACK PUBREC PUBREL PUBCOMP SUBSCRIBE SUBACK UNSUBSCRIBE UNSUBACK DISCONNECT AUTH",
	0x27: "CONNECT CONNACK",
	0x28: "CONNACK",
	0x29: "CONNACK",
	0x2A: "CONNACK",
}

// propValue is a valid property of identifier id, by its data type.
func propValue(id byte) []byte {
	switch id {
	case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A:
		return cat(id, 1)
	case 0x13, 0x21, 0x22, 0x23:
		return cat(id, u16(1))
	case 0x02, 0x11, 0x18, 0x27:
		return cat(id, u32(1))
	case 0x0B:
		return cat(id, vbi(1))
	case 0x16: // data needs a method beside it
		return cat(0x15, str("m"), id, str("x"))
	case 0x26:
		return cat(id, str("k"), str("v"))
	}
	return cat(id, str("x")) // strings and binary data
}

// propPackets builds a minimal valid MQTT 5 packet of each kind around a property block.
var propPackets = map[string]func(p []byte) []byte{
	"CONNECT": func(p []byte) []byte { return pkt(0x10, str("MQTT"), 5, 0x02, u16(0), p, str("c")) },
	"Will": func(p []byte) []byte {
		return pkt(0x10, str("MQTT"), 5, 0x06, u16(0), props(), str("c"), p, str("w"), str("m"))
	},
	"CONNACK":     func(p []byte) []byte { return pkt(0x20, 0, 0, p) },
	"PUBLISH":     func(p []byte) []byte { return pkt(0x30, str("t"), p) },
	"PUBACK":      func(p []byte) []byte { return pkt(0x40, u16(1), 0, p) },
	"PUBREC":      func(p []byte) []byte { return pkt(0x50, u16(1), 0, p) },
	"PUBREL":      func(p []byte) []byte { return pkt(0x62, u16(1), 0, p) },
	"PUBCOMP":     func(p []byte) []byte { return pkt(0x70, u16(1), 0, p) },
	"SUBSCRIBE":   func(p []byte) []byte { return pkt(0x82, u16(1), p, str("a"), 0) },
	"SUBACK":      func(p []byte) []byte { return pkt(0x90, u16(1), p, 0) },
	"UNSUBSCRIBE": func(p []byte) []byte { return pkt(0xA2, u16(1), p, str("a")) },
	"UNSUBACK":    func(p []byte) []byte { return pkt(0xB0, u16(1), p, 0) },
	"DISCONNECT":  func(p []byte) []byte { return pkt(0xE0, 0, p) },
	// AUTH must name its method (3.15.2.2.2). The method sorts before every other AUTH
	// property, so TestPropertyPlacement's re-encoding check still holds.
	"AUTH": func(p []byte) []byte {
		if p[1] != PropAuthenticationMethod { // p[0] is the one-byte property length
			p = props(PropAuthenticationMethod, str("m"), p[1:])
		}
		return pkt(0xF0, 0, p)
	},
}

// Every property that may appear once says so in its own section ("It is a Protocol Error to
// include X more than once"): each one twice, in each packet that allows it, is 0x82. Only User
// Property, and Subscription Identifier in PUBLISH, may repeat.
func TestPropertyTwiceIsProtocolError(t *testing.T) {
	for id, allowedIn := range propSpec {
		for _, name := range strings.Fields(allowedIn) {
			twice := cat(propValue(id), propValue(id))
			if id == PropAuthenticationData {
				twice = cat(0x15, str("m"), 0x16, str("x"), 0x16, str("y"))
			}
			raw := propPackets[name](props(twice))
			r := NewReader(bytes.NewReader(raw), 0)
			r.SetVersion(Version5)
			_, err := r.ReadPacket()
			repeatable := id == PropUserProperty || (id == PropSubscriptionIdentifier && name == "PUBLISH")
			switch {
			case repeatable && err != nil:
				t.Errorf("property 0x%02X twice in %s: %v", id, name, err)
			case !repeatable && ReasonFor(err) != ReasonProtocolError:
				t.Errorf("property 0x%02X twice in %s: %v, want a protocol error", id, name, err)
			}
		}
	}
}

// A PUBLISH may carry several Subscription Identifiers and any number of User Properties;
// any other property twice is a protocol error (MQTT 5.0 section 2.2.2.2).
func TestPropertyDuplicates(t *testing.T) {
	for _, c := range []struct {
		name string
		raw  []byte
		err  error
	}{
		{"user property twice", pkt(0x30, str("t"), props(0x26, str("a"), str("b"), 0x26, str("a"), str("b"))), nil},
		{"subscription identifier twice in PUBLISH", pkt(0x30, str("t"), props(0x0B, 1, 0x0B, 2)), nil},
		{"content type twice", pkt(0x30, str("t"), props(0x03, str("a"), 0x03, str("b"))), ErrProtocolViolation},
		{"topic alias twice", pkt(0x30, str("t"), props(0x23, u16(1), 0x23, u16(1))), ErrProtocolViolation},
		{"reason string twice", pkt(0x40, u16(1), 0, props(0x1F, str("a"), 0x1F, str("a"))), ErrProtocolViolation},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(c.raw), 0)
			r.SetVersion(Version5)
			_, err := r.ReadPacket()
			if (c.err == nil && err != nil) || (c.err != nil && !errors.Is(err, c.err)) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
		})
	}
}
