package mqtt

import (
	"fmt"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/virtualhost"
)

// mqttAck is one acknowledgement on its way to the client: PUBACK, PUBREC, PUBREL or PUBCOMP.
type mqttAck struct {
	t  packet.Type
	id uint16
	rc byte // MQTT 5 reason code; 0 = success (3.1.1 has none)
	// completes says it ends an inbound QoS 1 or 2 message's flow (PUBACK, PUBCOMP, a refusing PUBREC):
	// once written, the message no longer counts against the Receive Maximum.
	completes bool
}

// ack sends acknowledgement a once d's writes are durable, after every acknowledgement queued before it
// (protocol.AckQueue), so PUBACKs keep the order of the PUBLISH packets [MQTT-4.6.0-2]. The queue is
// made by the first acknowledgement that waits for a write; until then, on a memory host for instance,
// acknowledgements are written at once.
func (cl *client) ack(d *virtualhost.Tracker, a mqttAck) error {
	q := cl.acks.Load()
	if q == nil {
		if d == nil {
			if !cl.writeAck(a) {
				return errOutboundClosed
			}
			return nil
		}
		q = protocol.NewAckQueue(cl.c, cl.appendAck, func(err error) { cl.c.Close(fmt.Errorf("%w: %w", errStoreWrite, err)) })
		cl.acks.Store(q)
	}
	var wait protocol.Durable
	if d != nil {
		wait = d // a nil *Tracker must not become a non-nil interface
	}
	if err := q.Add(wait, a); err != nil {
		if err == protocol.ErrAckFailed {
			return errStoreWrite
		}
		return errOutboundClosed
	}
	return nil
}

// appendAck encodes a, allocating nothing for a success. It runs on whichever goroutine writes the
// acknowledgement, as it goes into the outbound queue: before the client can send the next message.
func (cl *client) appendAck(b []byte, a mqttAck) []byte {
	if cl.v5 == nil {
		return packet.AppendAck(b, a.t, a.id, cl.version)
	}
	if a.completes {
		cl.v5.inflightIn.Add(-1)
	}
	if a.rc == packet.ReasonSuccess {
		return packet.AppendAck(b, a.t, a.id, cl.version)
	}
	var p packet.Packet
	switch a.t {
	case packet.Puback:
		p = &packet.PubackPacket{PacketID: a.id, ReasonCode: a.rc}
	case packet.Pubrec:
		p = &packet.PubrecPacket{PacketID: a.id, ReasonCode: a.rc}
	case packet.Pubrel:
		p = &packet.PubrelPacket{PacketID: a.id, ReasonCode: a.rc}
	default:
		p = &packet.PubcompPacket{PacketID: a.id, ReasonCode: a.rc}
	}
	return packet.Append(b, p, cl.version)
}
