package store

import "fmt"

// Op is one write. The set is closed: the types below are all there is. Puts are insert-or-replace;
// deletes of something absent do nothing. Ops of one Commit apply in order.
type Op interface{ isOp() }

// PutQueue records a queue, so that it exists (empty) across a restart.
type PutQueue struct{ Queue Queue }

// DeleteQueue removes a queue's record and all its entries, in one transaction: a backlog too big for
// that fails with ErrBatchTooBig, so delete a large backlog's entries in windows first.
type DeleteQueue struct{ Name string }

// PutEntry inserts or replaces a list entry. Entry.Msg is required; its body is written only if no other
// entry already references a message with that ID.
type PutEntry struct{ Entry Entry }

// DeleteEntry removes a list entry (an ack); the message goes when its last reference does.
type DeleteEntry struct {
	Ref Ref
	// ExpiredBy, when > 0, makes the delete conditional: the entry goes only if its message expires at
	// or before this time (Unix ms). RemoveExpired uses it so that it never removes a live entry.
	ExpiredBy int64
}

// PutDurableSub records a durable subscription.
type PutDurableSub struct{ Sub DurableSub }

// DeleteDurableSub removes a durable subscription and its backlog.
type DeleteDurableSub struct{ ID string }

// PutSession records an MQTT session (replacing its subscriptions).
type PutSession struct{ Session Session }

// DeleteSession removes a session record with its in-flight and inbound state (its durable
// subscriptions are deleted by their own ops).
type DeleteSession struct{ ClientID string }

// PutInflight records an outbound delivery awaiting the client (see InflightState).
type PutInflight struct{ Inflight Inflight }

// DeleteInflight removes an outbound delivery the client completed (PUBACK, PUBCOMP).
type DeleteInflight struct {
	ClientID string
	PacketID uint16
}

// PutInbound records an inbound QoS 2 packet id received and awaiting PUBREL.
type PutInbound struct {
	ClientID string
	PacketID uint16
}

// DeleteInbound removes an inbound QoS 2 packet id once PUBREL arrived.
type DeleteInbound struct {
	ClientID string
	PacketID uint16
}

// PutRetained sets a topic's retained message.
type PutRetained struct{ Retained Retained }

// DeleteRetained clears a topic's retained message.
type DeleteRetained struct{ Topic string }

func (PutQueue) isOp()         {}
func (DeleteQueue) isOp()      {}
func (PutEntry) isOp()         {}
func (DeleteEntry) isOp()      {}
func (PutDurableSub) isOp()    {}
func (DeleteDurableSub) isOp() {}
func (PutSession) isOp()       {}
func (DeleteSession) isOp()    {}
func (PutInflight) isOp()      {}
func (DeleteInflight) isOp()   {}
func (PutInbound) isOp()       {}
func (DeleteInbound) isOp()    {}
func (PutRetained) isOp()      {}
func (DeleteRetained) isOp()   {}

// Validate reports an op a store would refuse, wrapping ErrInvalidOp. Stores call it before queueing, so
// one caller's bad op never fails another caller's batch.
func Validate(op Op) error {
	bad := func(why string) error { return fmt.Errorf("%w: %T: %s", ErrInvalidOp, op, why) }
	switch o := op.(type) {
	case PutQueue, DeleteQueue, PutDurableSub, DeleteDurableSub, PutSession, DeleteSession,
		DeleteInflight, PutInbound, DeleteInbound, DeleteRetained:
		return nil
	case PutEntry:
		if !o.Entry.List.valid() {
			return bad("unknown list")
		}
		if o.Entry.Msg == nil || o.Entry.Msg.ID == 0 {
			return bad("message with a non-zero id required")
		}
		if o.Entry.Msg.Expires < 0 {
			return bad("negative expiry")
		}
	case DeleteEntry:
		if !o.Ref.List.valid() {
			return bad("unknown list")
		}
	case PutInflight:
		if o.Inflight.State != InflightPublish && o.Inflight.State != InflightRelease {
			return bad("unknown state")
		}
		if !o.Inflight.Ref.List.valid() {
			return bad("unknown list")
		}
	case PutRetained:
		if o.Retained.Msg == nil || o.Retained.Msg.ID == 0 {
			return bad("message with a non-zero id required")
		}
	case nil:
		return fmt.Errorf("%w: nil op", ErrInvalidOp)
	default:
		return bad("unknown op")
	}
	return nil
}
