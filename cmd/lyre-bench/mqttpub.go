package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// In-flight states of a publisher's packet identifier.
const (
	idFree     = 0
	idSent     = 1 // PUBLISH written, waiting for PUBACK (QoS 1) or PUBREC (QoS 2)
	idReleased = 2 // QoS 2: PUBREC received, PUBREL queued, waiting for PUBCOMP
)

// mqttPublisher sends spec.count messages (or until spec.stop) on one connection. For QoS > 0 the window of
// in-flight messages is a channel holding the free packet identifiers: the writer takes one per PUBLISH and
// the reader gives it back on PUBACK/PUBCOMP, so identifiers are never reused while in flight.
type mqttPublisher struct {
	c          *mqttConn
	spec       *pubSpec
	st         *pubStats
	tokens     chan uint16     // free packet identifiers, capacity spec.inflight
	rel        chan uint16     // QoS 2: identifiers whose PUBREL the writer must send; at most spec.inflight
	state      []atomic.Uint32 // per identifier: idFree, idSent or idReleased
	stash      []uint16        // free identifiers the writer has taken off tokens, capacity spec.inflight
	readerDone chan struct{}
	readerErr  error // set before readerDone closes
	closing    atomic.Bool
	ack        [4]byte // scratch for PUBREL, owned by the writer
}

func (p *mqttPublisher) run() error {
	go p.readLoop()
	err := p.writeLoop()
	if err == nil {
		err = p.finish()
	}
	p.closing.Store(true)
	p.c.close()
	<-p.readerDone
	if err != nil && p.spec.ctl.interrupted.Load() {
		return nil // connection closed under us by Ctrl-C
	}
	return err
}

func (p *mqttPublisher) stop() { p.c.close() }

func (p *mqttPublisher) writeLoop() error {
	s, bw := p.spec, p.c.bw
	payload := make([]byte, s.size)
	prefix := appendPublishHeader(nil, s.topic, s.qos, s.size, p.c.opt.v5)
	tag := uint64(s.index) << seqBits
	var period float64
	if s.rate > 0 {
		period = float64(time.Second) / s.rate
	}
	start := time.Now()
	batchStart, lastWrite := start, start
	for seq := uint64(0); s.count == 0 || seq < s.count; seq++ {
		if s.ctl.stop.Load() {
			break
		}
		var id uint16
		if s.qos > 0 {
			var err error
			if id, err = p.take(); errors.Is(err, errStopped) {
				break
			} else if err != nil {
				return err
			}
		}
		now := time.Now()
		if bw.Buffered() == 0 {
			batchStart = now
		}
		if err := p.writePublish(prefix, payload, tag|seq, id, now); err != nil {
			return err
		}
		p.st.sent.Add(1)
		if period > 0 {
			// Ahead of schedule: send now and sleep. Behind it (a rate the broker cannot take):
			// keep writing in batches, as at full speed, until caught up.
			due := start.Add(time.Duration(float64(seq+1) * period))
			if time.Until(due) > 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
				lastWrite = time.Now()
				if err := p.sleepUntil(due, &lastWrite); err != nil {
					return err
				}
				continue
			}
		}
		if bw.Buffered() > 0 && now.Sub(batchStart) >= maxBatchDelay {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// writePublish writes one PUBLISH without flushing: prefix, at QoS > 0 the packet identifier id, then the
// payload stamped with now and tag.
func (p *mqttPublisher) writePublish(prefix, payload []byte, tag uint64, id uint16, now time.Time) error {
	binary.BigEndian.PutUint64(payload, uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(payload[8:], tag)
	bw := p.c.bw
	bw.Write(prefix)
	if p.spec.qos > 0 {
		bw.WriteByte(byte(id >> 8))
		bw.WriteByte(byte(id))
	}
	if p.c.opt.v5 {
		bw.WriteByte(0) // no properties
	}
	_, err := bw.Write(payload)
	return err
}

// sleepUntil waits for the next message's due time in short steps, so that the end of the run is noticed
// promptly and the keep-alive is honoured when the rate is very low.
func (p *mqttPublisher) sleepUntil(due time.Time, lastWrite *time.Time) error {
	for {
		wait := time.Until(due)
		if wait <= 0 || p.spec.ctl.stop.Load() {
			return nil
		}
		time.Sleep(min(wait, 100*time.Millisecond))
		if ka := p.c.opt.keepAlive; ka > 0 && time.Since(*lastWrite) >= ka/2 {
			if _, err := p.c.bw.Write(mqttPingreq); err != nil {
				return err
			}
			if err := p.c.bw.Flush(); err != nil {
				return err
			}
			*lastWrite = time.Now()
		}
	}
}

// take returns a free packet identifier. When the window is full it flushes, then waits until a quarter of
// the window is free again: brokers acknowledge one PUBLISH per write, and resuming on every single
// acknowledgement would cost a write system call per message. While it waits it sends the PUBRELs the
// reader asks for, since QoS 2 identifiers only come back after PUBCOMP.
func (p *mqttPublisher) take() (uint16, error) {
	if p.spec.qos == 2 {
		p.queueRels()
	}
	if n := len(p.stash); n > 0 {
		id := p.stash[n-1]
		p.stash = p.stash[:n-1]
		p.state[id].Store(idSent)
		return id, nil
	}
	select {
	case id := <-p.tokens:
		p.state[id].Store(idSent)
		return id, nil
	default:
	}
	if err := p.c.bw.Flush(); err != nil {
		return 0, err
	}
	for need := max(1, cap(p.tokens)/4); len(p.stash) < need; {
		select {
		case id := <-p.tokens:
			p.stash = append(p.stash, id)
		case id := <-p.rel:
			p.c.bw.Write(appendAck(p.ack[:0], mqttPUBREL, id))
			p.queueRels()
			if err := p.c.bw.Flush(); err != nil {
				return 0, err
			}
		case <-p.readerDone:
			return 0, p.readerErrOr(io.ErrUnexpectedEOF)
		case <-p.spec.ctl.stopCh:
			return 0, errStopped
		}
	}
	return p.take()
}

// queueRels writes, without flushing, the PUBRELs the reader has asked for so far.
func (p *mqttPublisher) queueRels() {
	for {
		select {
		case id := <-p.rel:
			p.c.bw.Write(appendAck(p.ack[:0], mqttPUBREL, id))
		default:
			return
		}
	}
}

// finish waits (up to spec.drain) for every in-flight message to be acknowledged, then disconnects.
func (p *mqttPublisher) finish() error {
	if p.spec.qos > 0 {
		timer := time.NewTimer(p.spec.drain)
		defer timer.Stop()
		for got := len(p.stash); got < cap(p.tokens); {
			select {
			case <-p.tokens:
				got++
			case id := <-p.rel:
				p.c.bw.Write(appendAck(p.ack[:0], mqttPUBREL, id))
				p.queueRels()
				if err := p.c.bw.Flush(); err != nil {
					return err
				}
			case <-p.readerDone:
				return p.readerErrOr(io.ErrUnexpectedEOF)
			case <-timer.C:
				return fmt.Errorf("%w: %d of %d in flight after %v", errStalled, cap(p.tokens)-got, cap(p.tokens), p.spec.drain)
			case <-p.spec.ctl.interruptCh:
				return errStopped
			}
		}
	}
	p.c.bw.Write(mqttDisconnect)
	return p.c.bw.Flush()
}

func (p *mqttPublisher) readerErrOr(def error) error {
	<-p.readerDone
	if p.readerErr != nil {
		return p.readerErr
	}
	return def
}

// readLoop handles the broker's acknowledgements. Unknown or repeated ones are counted, not trusted, so a
// confused broker cannot overfill the identifier channels.
func (p *mqttPublisher) readLoop() {
	defer close(p.readerDone)
	for {
		hdr, body, err := p.c.pr.next()
		if err != nil {
			if !p.closing.Load() {
				p.readerErr = err
			}
			return
		}
		switch typ := hdr >> 4; typ {
		case mqttPUBACK, mqttPUBREC, mqttPUBCOMP:
			id, err := parseAckID(body)
			if err != nil {
				p.readerErr = err
				return
			}
			if p.state == nil || id == 0 || int(id) >= len(p.state) {
				p.st.unexpected.Add(1)
				continue
			}
			switch {
			case typ == mqttPUBACK && p.spec.qos == 1 && p.state[id].CompareAndSwap(idSent, idFree):
				p.st.acked.Add(1)
				p.tokens <- id
			case typ == mqttPUBREC && p.spec.qos == 2 && p.state[id].CompareAndSwap(idSent, idReleased):
				p.rel <- id
			case typ == mqttPUBCOMP && p.spec.qos == 2 && p.state[id].CompareAndSwap(idReleased, idFree):
				p.st.acked.Add(1)
				p.tokens <- id
			default:
				p.st.unexpected.Add(1)
			}
		case mqttPINGRESP:
		default:
			p.readerErr = fmt.Errorf("%w: type %d on a publishing connection", errUnexpected, typ)
			return
		}
	}
}
