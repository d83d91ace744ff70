package main

import (
	"encoding/binary"
	"fmt"
	"time"
)

// MQTT control packet types: the high nibble of the fixed header [MQTT 2.2.1].
const (
	mqttCONNECT    = 1
	mqttCONNACK    = 2
	mqttPUBLISH    = 3
	mqttPUBACK     = 4
	mqttPUBREC     = 5
	mqttPUBREL     = 6
	mqttPUBCOMP    = 7
	mqttSUBSCRIBE  = 8
	mqttSUBACK     = 9
	mqttPINGREQ    = 12
	mqttPINGRESP   = 13
	mqttDISCONNECT = 14
)

// mqttMaxRemaining is the largest remaining length four varint bytes can carry [MQTT 2.2.3].
const mqttMaxRemaining = 268435455

var (
	mqttPingreq    = []byte{mqttPINGREQ << 4, 0}
	mqttDisconnect = []byte{mqttDISCONNECT << 4, 0}
)

// connackReasons names the CONNACK return codes of MQTT 3.1.1 [MQTT 3.2.2.3].
var connackReasons = [...]string{
	1: "unacceptable protocol version",
	2: "identifier rejected",
	3: "server unavailable",
	4: "bad user name or password",
	5: "not authorized",
}

// appendVarint appends n as an MQTT variable byte integer [MQTT 2.2.3].
func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

// decodeVarint reads a variable byte integer from the start of b. It returns used == 0 when b ends before the
// integer does, and errMalformed when a fifth byte would be needed.
func decodeVarint(b []byte) (n, used int, err error) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, nil
		}
		n |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// mqttConnectOptions are the fields of a CONNECT packet the bench sets.
type mqttConnectOptions struct {
	clientID  string
	user      string
	pass      string
	keepAlive time.Duration
	v5        bool // MQTT 5: protocol level 5 and an empty property list
	// keepSession: clean session off (MQTT 5: clean start off, and no session expiry property, so the
	// session lasts as long as the connection there; in 3.1.1 it outlives it)
	keepSession bool
}

// appendConnect appends an MQTT 3.1.1 (or 5.0) CONNECT, with a clean session unless o.keepSession [MQTT 3.1].
func appendConnect(dst []byte, o mqttConnectOptions) []byte {
	flags := byte(0x02) // clean session
	if o.keepSession {
		flags = 0
	}
	rl := 10 + 2 + len(o.clientID)
	level := byte(4) // 3.1.1
	if o.v5 {
		level = 5
		rl++ // the property length, 0
	}
	if o.user != "" {
		flags |= 0x80
		rl += 2 + len(o.user)
		// A password without a user name is a protocol violation in 3.1.1 [MQTT-3.1.2-22].
		if o.pass != "" {
			flags |= 0x40
			rl += 2 + len(o.pass)
		}
	}
	dst = append(dst, mqttCONNECT<<4)
	dst = appendVarint(dst, rl)
	dst = appendString(dst, "MQTT")
	dst = append(dst, level, flags)
	dst = binary.BigEndian.AppendUint16(dst, uint16(o.keepAlive/time.Second))
	if o.v5 {
		dst = append(dst, 0)
	}
	dst = appendString(dst, o.clientID)
	if o.user != "" {
		dst = appendString(dst, o.user)
		if o.pass != "" {
			dst = appendString(dst, o.pass)
		}
	}
	return dst
}

// appendSubscribe appends a SUBSCRIBE for one filter; its fixed header flags must be 0010 [MQTT-3.8.1-1].
// MQTT 5 (v5) adds an empty property list.
func appendSubscribe(dst []byte, id uint16, filter string, qos byte, v5 bool) []byte {
	dst = append(dst, mqttSUBSCRIBE<<4|0x02)
	dst = appendVarint(dst, 2+2+len(filter)+1+b2i(v5))
	dst = binary.BigEndian.AppendUint16(dst, id)
	if v5 {
		dst = append(dst, 0)
	}
	dst = appendString(dst, filter)
	return append(dst, qos)
}

// appendPublishHeader appends a PUBLISH's fixed header and topic name. For QoS > 0 the caller writes the
// two-byte packet identifier next, for MQTT 5 (v5) a property length of 0, then the payload of
// payloadLen bytes.
func appendPublishHeader(dst []byte, topic string, qos byte, payloadLen int, v5 bool) []byte {
	rl := 2 + len(topic) + payloadLen + b2i(v5)
	if qos > 0 {
		rl += 2
	}
	dst = append(dst, mqttPUBLISH<<4|qos<<1)
	dst = appendVarint(dst, rl)
	return appendString(dst, topic)
}

// appendAck appends PUBACK, PUBREC, PUBREL or PUBCOMP; PUBREL's fixed header flags are 0010 [MQTT-3.6.1-1].
func appendAck(dst []byte, typ byte, id uint16) []byte {
	h := typ << 4
	if typ == mqttPUBREL {
		h |= 0x02
	}
	return append(dst, h, 2, byte(id>>8), byte(id))
}

// b2i is 1 for true.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// skipProperties skips an MQTT 5 property list at the start of b [MQTT 5 2.2.2].
func skipProperties(b []byte) ([]byte, error) {
	n, used, err := decodeVarint(b)
	if err != nil {
		return nil, err
	}
	if used == 0 || used+n > len(b) {
		return nil, fmt.Errorf("%w: properties overrun the packet", errMalformed)
	}
	return b[used+n:], nil
}

// parsePublish splits a PUBLISH body (MQTT 5 if v5: its properties are skipped); the slices alias body.
func parsePublish(hdr byte, body []byte, v5 bool) (topic []byte, id uint16, payload []byte, err error) {
	qos := hdr >> 1 & 3
	if qos == 3 {
		return nil, 0, nil, fmt.Errorf("%w: PUBLISH with QoS 3", errMalformed) // [MQTT-3.3.1-4]
	}
	if len(body) < 2 {
		return nil, 0, nil, fmt.Errorf("%w: PUBLISH too short", errMalformed)
	}
	n := int(binary.BigEndian.Uint16(body))
	rest := body[2:]
	if n > len(rest) {
		return nil, 0, nil, fmt.Errorf("%w: PUBLISH topic overruns packet", errMalformed)
	}
	topic, rest = rest[:n], rest[n:]
	if qos > 0 {
		if len(rest) < 2 {
			return nil, 0, nil, fmt.Errorf("%w: PUBLISH without packet identifier", errMalformed)
		}
		id, rest = binary.BigEndian.Uint16(rest), rest[2:]
	}
	if v5 {
		if rest, err = skipProperties(rest); err != nil {
			return nil, 0, nil, err
		}
	}
	return topic, id, rest, nil
}

// parseAckID reads the packet identifier of PUBACK, PUBREC, PUBREL or PUBCOMP.
func parseAckID(body []byte) (uint16, error) {
	if len(body) < 2 {
		return 0, fmt.Errorf("%w: acknowledgement too short", errMalformed)
	}
	return binary.BigEndian.Uint16(body), nil
}

// parseConnack returns the CONNACK return code, or an error naming the refusal. An MQTT 5 (v5) CONNACK
// has properties after the reason code.
func parseConnack(body []byte, v5 bool) error {
	if (!v5 && len(body) != 2) || len(body) < 2 {
		return fmt.Errorf("%w: CONNACK of %d bytes", errMalformed, len(body))
	}
	if rc := body[1]; rc >= 0x80 && v5 {
		return fmt.Errorf("%w: CONNACK reason 0x%02x", errRefused, rc)
	}
	if rc := body[1]; rc != 0 {
		reason := "unknown reason"
		if int(rc) < len(connackReasons) {
			reason = connackReasons[rc]
		}
		return fmt.Errorf("%w: CONNACK %d (%s)", errRefused, rc, reason)
	}
	return nil
}

// parseSuback returns the packet identifier and the first granted QoS of a SUBACK (MQTT 5 if v5).
func parseSuback(body []byte, v5 bool) (id uint16, granted byte, err error) {
	if len(body) < 3 {
		return 0, 0, fmt.Errorf("%w: SUBACK too short", errMalformed)
	}
	id, codes := binary.BigEndian.Uint16(body), body[2:]
	if v5 {
		if codes, err = skipProperties(codes); err != nil {
			return 0, 0, err
		}
		if len(codes) == 0 {
			return 0, 0, fmt.Errorf("%w: SUBACK without reason codes", errMalformed)
		}
	}
	return id, codes[0], nil
}
