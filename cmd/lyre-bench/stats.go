package main

import (
	"encoding/binary"
	"sync/atomic"
)

// Payload layout shared by every protocol: send time, then publisher number and sequence.
const (
	payloadHeader = 16
	seqBits       = 40
	seqMask       = 1<<seqBits - 1
	maxPubs       = 1 << (64 - seqBits)
)

// pubStats are one publisher's counters, read by the progress sampler while it runs.
type pubStats struct {
	sent       atomic.Uint64
	acked      atomic.Uint64 // PUBACK at QoS 1, PUBCOMP at QoS 2
	unexpected atomic.Uint64 // acknowledgements for identifiers not in flight
	_          [40]byte      // keep publishers' counters on separate cache lines
}

// subStats are one subscriber's results. Only received is read while the subscriber runs; the other fields
// belong to its goroutine until run returns.
type subStats struct {
	received   atomic.Uint64
	_          [56]byte
	granted    int
	bytes      uint64
	outOfOrder uint64   // tag sequence lower than one already seen from that publisher
	foreign    uint64   // payload without a valid tag (not from this run)
	next       []uint64 // per publisher: next expected sequence number
	last       int64    // Unix nanoseconds of the latest delivery
	lat        hist
}

// observe accounts one delivered payload received at now (Unix nanoseconds). It does not allocate.
func (s *subStats) observe(payload []byte, now int64) {
	if len(payload) < payloadHeader {
		s.foreign++
		return
	}
	sent := int64(binary.BigEndian.Uint64(payload))
	tag := binary.BigEndian.Uint64(payload[8:])
	pub, seq := tag>>seqBits, tag&seqMask
	if pub >= uint64(len(s.next)) {
		s.foreign++
		return
	}
	if seq < s.next[pub] {
		s.outOfOrder++
	} else {
		s.next[pub] = seq + 1
	}
	s.lat.record(now - sent)
	s.bytes += uint64(len(payload))
	s.last = now
	s.received.Add(1)
}
