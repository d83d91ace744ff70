package main

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// stompSubscriber reads MESSAGEs and acknowledges them as its ack mode asks: nothing for auto, every one
// for client-individual, a cumulative ACK every opt.ackEvery for client. ACKs are batched by the frame
// reader's beforeRead hook. It is the only goroutine using its connection.
type stompSubscriber struct {
	c        *stompConn
	st       *subStats
	stopping atomic.Bool
	running  atomic.Bool
	unacked  int    // ack client: deliveries since the last cumulative ACK
	lastAck  []byte // ack client: the id to acknowledge them with
	lastSub  []byte
	scratch  []byte
}

func (s *stompSubscriber) run() error {
	s.running.Store(true)
	c := s.c
	for {
		f, err := c.fr.next()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				if s.stopping.Load() {
					return nil
				}
				return err
			}
			if s.stopping.Load() {
				s.disconnect()
				return nil
			}
			continue
		}
		switch {
		case f.is("MESSAGE"):
			s.st.observe(f.body, time.Now().UnixNano())
			if err := s.ack(f); err != nil {
				return err
			}
		case f.is("RECEIPT"):
		case f.is("ERROR"):
			return fmt.Errorf("%w: %s", errBrokerError, f.describe())
		default:
			return fmt.Errorf("%w: %s on a subscribing connection", errUnexpected, f.command)
		}
	}
}

// ack writes (without flushing) the acknowledgement a delivery needs.
func (s *stompSubscriber) ack(f *stompFrame) error {
	o := s.c.opt
	if o.ack == ackAuto {
		return nil
	}
	idHeader := "message-id"
	if s.c.version == "1.2" {
		idHeader = "ack"
	}
	id, ok := f.header(idHeader)
	if !ok {
		return fmt.Errorf("%w: MESSAGE without %s header", errMalformed, idHeader)
	}
	sub, _ := f.header("subscription")
	if o.ack == ackClientIndividual {
		s.scratch = appendStompAck(s.scratch[:0], s.c.version, id, sub)
		_, err := s.c.bw.Write(s.scratch)
		return err
	}
	s.lastAck, s.lastSub = append(s.lastAck[:0], id...), append(s.lastSub[:0], sub...)
	if s.unacked++; s.unacked >= o.ackEvery {
		return s.flushCumulative()
	}
	return nil
}

// flushCumulative writes the pending cumulative ACK of ack mode client.
func (s *stompSubscriber) flushCumulative() error {
	if s.unacked == 0 {
		return nil
	}
	s.unacked = 0
	s.scratch = appendStompAck(s.scratch[:0], s.c.version, s.lastAck, s.lastSub)
	_, err := s.c.bw.Write(s.scratch)
	return err
}

// disconnect acknowledges what is pending, so that a queue does not redeliver it to another consumer,
// and disconnects, waiting briefly for the broker to confirm.
func (s *stompSubscriber) disconnect() {
	c := s.c
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	s.flushCumulative()
	c.bw.Write(appendStompDisconnect(nil, receiptBye))
	if c.bw.Flush() == nil {
		for {
			f, err := c.fr.next()
			if err != nil || f.is("ERROR") {
				break
			}
			if id, _ := f.header("receipt-id"); f.is("RECEIPT") && string(id) == receiptBye {
				break
			}
		}
	}
	c.close()
}

// stop asks run to disconnect; see mqttSubscriber.stop for the deadline handshake.
func (s *stompSubscriber) stop() {
	s.stopping.Store(true)
	if !s.running.Load() {
		s.c.close()
		return
	}
	s.c.nc.SetWriteDeadline(time.Now().Add(s.c.opt.timeout))
	s.c.nc.SetReadDeadline(time.Now())
}
