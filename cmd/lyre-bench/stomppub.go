package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"
)

// receiptGather bounds how long a producer with a full receipt window, having got one receipt back, waits
// for more before it resumes; see stompPublisher.take.
const receiptGather = 200 * time.Microsecond

// stompPublisher sends spec.count messages (or until spec.ctl.stop) on one connection. With receipts, every
// opt.receiptEvery-th SEND asks one, and at most spec.inflight receipts are outstanding: the window is a
// channel of tokens the writer takes per receipt and the reader gives back per RECEIPT.
type stompPublisher struct {
	c          *stompConn
	spec       *pubSpec
	st         *pubStats
	tokens     chan struct{} // capacity spec.inflight; nil without receipts
	stashed    int           // tokens the writer has taken off tokens and not used yet
	lastSeq    atomic.Uint64 // sequence number + 1 of the latest SEND asking a receipt
	bye        chan struct{} // closed by the reader on the DISCONNECT receipt
	readerDone chan struct{}
	readerErr  error // set before readerDone closes
	closing    atomic.Bool
	receipt    [32]byte    // scratch for the receipt header, owned by the writer
	gather     *time.Timer // take's wait for further receipts, made once
}

func (p *stompPublisher) run() error {
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

func (p *stompPublisher) stop() { p.c.close() }

func (p *stompPublisher) writeLoop() error {
	s, bw, every := p.spec, p.c.bw, uint64(p.c.opt.receiptEvery)
	payload := make([]byte, s.size)
	prefix := appendSendPrefix(nil, s.topic, s.size, p.c.opt.persistent)
	tag := uint64(s.index) << seqBits
	var period float64
	if s.rate > 0 {
		period = float64(time.Second) / s.rate
	}
	start := time.Now()
	batchStart := start
	for seq := uint64(0); s.count == 0 || seq < s.count; seq++ {
		if s.ctl.stop.Load() {
			break
		}
		askReceipt := every > 0 && (seq+1)%every == 0
		if askReceipt {
			if err := p.take(); errors.Is(err, errStopped) {
				break
			} else if err != nil {
				return err
			}
		}
		now := time.Now()
		if bw.Buffered() == 0 {
			batchStart = now
		}
		if err := p.writeSend(prefix, payload, tag, seq, askReceipt, now); err != nil {
			return err
		}
		p.st.sent.Add(1)
		if period > 0 {
			due := start.Add(time.Duration(float64(seq+1) * period))
			if time.Until(due) > 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
				for wait := time.Until(due); wait > 0 && !s.ctl.stop.Load(); wait = time.Until(due) {
					time.Sleep(min(wait, 100*time.Millisecond))
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

// writeSend writes SEND number seq without flushing: prefix, a receipt header if askReceipt, then the
// payload stamped with now and tag|seq.
func (p *stompPublisher) writeSend(prefix, payload []byte, tag, seq uint64, askReceipt bool, now time.Time) error {
	binary.BigEndian.PutUint64(payload, uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(payload[8:], tag|seq)
	bw := p.c.bw
	bw.Write(prefix)
	if askReceipt {
		r := append(p.receipt[:0], "receipt:"...)
		r = strconv.AppendUint(r, seq, 10)
		bw.Write(append(r, "\n\n"...))
		p.lastSeq.Store(seq + 1)
	} else {
		bw.WriteByte('\n')
	}
	bw.Write(payload)
	return bw.WriteByte(0)
}

// take takes a receipt token. When the window is full it flushes and waits until a quarter of it is free,
// so that a broker answering receipt by receipt does not cost a write per SEND; but once a receipt is in
// it waits at most receiptGather for the next one. A broker with Nagle's algorithm on (ActiveMQ's default) holds
// its second small RECEIPT until our delayed ACK, tens of milliseconds, and waiting for the whole quarter
// would stall the producer that long every round.
func (p *stompPublisher) take() error {
	if p.stashed > 0 {
		p.stashed--
		return nil
	}
	select {
	case <-p.tokens:
		return nil
	default:
	}
	if err := p.c.bw.Flush(); err != nil {
		return err
	}
	if p.gather == nil {
		p.gather = time.NewTimer(time.Hour)
	}
	defer p.gather.Stop()
	for need := max(1, cap(p.tokens)/4); p.stashed < need; {
		var gathered <-chan time.Time
		if p.stashed > 0 {
			p.gather.Reset(receiptGather)
			gathered = p.gather.C
		}
		select {
		case <-p.tokens:
			p.stashed++
		case <-gathered:
			return p.take()
		case <-p.readerDone:
			return p.readerErrOr(io.ErrUnexpectedEOF)
		case <-p.spec.ctl.stopCh:
			return errStopped
		}
	}
	return p.take()
}

// finish waits (up to spec.drain) for the outstanding receipts, then disconnects, waiting for the
// DISCONNECT's receipt so that every SEND is processed before the connection closes.
func (p *stompPublisher) finish() error {
	timer := time.NewTimer(p.spec.drain)
	defer timer.Stop()
	for got := p.stashed; p.tokens != nil && got < cap(p.tokens); {
		select {
		case <-p.tokens:
			got++
		case <-p.readerDone:
			return p.readerErrOr(io.ErrUnexpectedEOF)
		case <-timer.C:
			return fmt.Errorf("%w: %d of %d receipts outstanding after %v", errStalled, cap(p.tokens)-got, cap(p.tokens), p.spec.drain)
		case <-p.spec.ctl.interruptCh:
			return errStopped
		}
	}
	p.c.bw.Write(appendStompDisconnect(nil, receiptBye))
	if err := p.c.bw.Flush(); err != nil {
		return err
	}
	select {
	case <-p.readerDone:
		select {
		case <-p.bye:
			return nil
		default:
			return p.readerErrOr(io.ErrUnexpectedEOF)
		}
	case <-timer.C:
		return fmt.Errorf("%w: no receipt for DISCONNECT after %v", errStalled, p.spec.drain)
	case <-p.spec.ctl.interruptCh:
		return errStopped
	}
}

func (p *stompPublisher) readerErrOr(def error) error {
	<-p.readerDone
	if p.readerErr != nil {
		return p.readerErr
	}
	return def
}

// readLoop handles RECEIPTs and ERRORs. A receipt confirms its SEND and, since a broker processes a
// connection's frames in order, every SEND before it; acked counts them. Receipts that confirm nothing new
// or would overfill the window are counted as unexpected.
func (p *stompPublisher) readLoop() {
	defer close(p.readerDone)
	var confirmed uint64 // sequence number + 1 of the latest confirmed SEND
	for {
		f, err := p.c.fr.next()
		if err != nil {
			if !p.closing.Load() {
				p.readerErr = err
			}
			return
		}
		switch {
		case f.is("RECEIPT"):
			id, _ := f.header("receipt-id")
			if string(id) == receiptBye {
				close(p.bye) // the last frame: the broker may close the connection now
				return
			}
			seq, err := parseDecimal(id)
			if err != nil || uint64(seq) < confirmed || uint64(seq) >= p.lastSeq.Load() || p.tokens == nil {
				p.st.unexpected.Add(1)
				continue
			}
			select {
			case p.tokens <- struct{}{}:
				p.st.acked.Add(uint64(seq) + 1 - confirmed)
				confirmed = uint64(seq) + 1
			default:
				p.st.unexpected.Add(1)
			}
		case f.is("ERROR"):
			p.readerErr = fmt.Errorf("%w: %s", errBrokerError, f.describe())
			return
		default:
			p.readerErr = fmt.Errorf("%w: %s on a publishing connection", errUnexpected, f.command)
			return
		}
	}
}
