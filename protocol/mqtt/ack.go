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
}

// ack sends acknowledgement t for packet id once d's writes are durable, after every acknowledgement
// queued before it (protocol.AckQueue), so PUBACKs keep the order of the PUBLISH packets [MQTT-4.6.0-2].
// The queue is made by the first acknowledgement that waits for a write; until then, on a memory host
// for instance, acknowledgements are written at once.
func (cl *client) ack(d *virtualhost.Tracker, t packet.Type, id uint16) error {
	q := cl.acks.Load()
	if q == nil {
		if d == nil {
			if !cl.writeAck(t, id) {
				return errOutboundClosed
			}
			return nil
		}
		version := cl.version
		q = protocol.NewAckQueue(cl.c, func(b []byte, a mqttAck) []byte { return packet.AppendAck(b, a.t, a.id, version) },
			func(err error) { cl.c.Close(fmt.Errorf("%w: %w", errStoreWrite, err)) })
		cl.acks.Store(q)
	}
	var wait protocol.Durable
	if d != nil {
		wait = d // a nil *Tracker must not become a non-nil interface
	}
	if err := q.Add(wait, mqttAck{t: t, id: id}); err != nil {
		if err == protocol.ErrAckFailed {
			return errStoreWrite
		}
		return errOutboundClosed
	}
	return nil
}
