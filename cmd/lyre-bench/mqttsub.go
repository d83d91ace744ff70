package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// mqttSubscriber reads deliveries and acknowledges them; acknowledgements are batched by the packet
// reader's beforeRead hook. It is the only goroutine using its connection.
type mqttSubscriber struct {
	c        *mqttConn
	st       *subStats
	stopping atomic.Bool
	running  atomic.Bool
}

func (s *mqttSubscriber) run() error {
	s.running.Store(true)
	c := s.c
	var ping time.Duration
	if c.opt.keepAlive > 0 {
		ping = c.opt.keepAlive / 2
	}
	s.extendDeadline(ping)
	var ack [4]byte
	for {
		hdr, body, err := c.pr.next()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				if s.stopping.Load() {
					return nil
				}
				return err
			}
			if s.stopping.Load() {
				c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
				c.bw.Write(mqttDisconnect)
				c.bw.Flush()
				c.close()
				return nil
			}
			// The deadline is the keep-alive timer: nothing we send otherwise (QoS 0) resets the
			// broker's, so ping every half keep-alive whatever the traffic.
			c.bw.Write(mqttPingreq)
			s.extendDeadline(ping)
			continue
		}
		switch typ := hdr >> 4; typ {
		case mqttPUBLISH:
			_, id, payload, err := parsePublish(hdr, body, c.opt.v5)
			if err != nil {
				return err
			}
			s.st.observe(payload, time.Now().UnixNano())
			switch hdr >> 1 & 3 {
			case 1:
				c.bw.Write(appendAck(ack[:0], mqttPUBACK, id))
			case 2:
				c.bw.Write(appendAck(ack[:0], mqttPUBREC, id))
			}
		case mqttPUBREL:
			id, err := parseAckID(body)
			if err != nil {
				return err
			}
			c.bw.Write(appendAck(ack[:0], mqttPUBCOMP, id))
		case mqttPINGRESP:
		default:
			return fmt.Errorf("%w: type %d on a subscribing connection", errUnexpected, typ)
		}
	}
}

// extendDeadline sets the next keep-alive deadline; see stop for why it rechecks stopping afterwards.
func (s *mqttSubscriber) extendDeadline(ping time.Duration) {
	if ping > 0 {
		s.c.nc.SetReadDeadline(time.Now().Add(ping))
	} else {
		s.c.nc.SetReadDeadline(time.Time{})
	}
	if s.stopping.Load() {
		s.c.nc.SetReadDeadline(time.Now())
	}
}

// stop asks run to disconnect cleanly: the past read deadline wakes the reader. Either the reader sees
// stopping after setting its own deadline, or this deadline is set after the reader's; both end the read.
// The write deadline frees a reader stuck flushing acknowledgements to a broker that no longer reads. If
// run starts after a close here, its first read fails and, stopping being set, it returns nil.
func (s *mqttSubscriber) stop() {
	s.stopping.Store(true)
	if !s.running.Load() {
		s.c.close() // never started (another connection failed): nobody else will close it
		return
	}
	s.c.nc.SetWriteDeadline(time.Now().Add(s.c.opt.timeout))
	s.c.nc.SetReadDeadline(time.Now())
}

// dialStalled opens c.stalled MQTT subscribers to the run's topics (round-robin over the subscribers'
// topics) that never read after their SUBACK, with a small socket receive buffer: the broker sees them
// as subscribers that stopped reading, and the run shows what they cost everyone else.
func dialStalled(ctx context.Context, c *config, id string, topic func(i int) string) ([]*mqttConn, error) {
	if c.stalled == 0 {
		return nil, nil
	}
	if c.proto != "mqtt" {
		return nil, fmt.Errorf("%w: -stalled needs -proto mqtt", errUsage)
	}
	d := newDriver(c).(*mqttDriver)
	conns := make([]*mqttConn, 0, c.stalled)
	for i := 0; i < c.stalled; i++ {
		mc, err := dialMQTT(ctx, &d.opt, fmt.Sprintf("lb-%s-stalled%d", id, i), 4<<10, 4<<10)
		if err == nil {
			if tc := tcpConn(mc.nc); tc != nil {
				_ = tc.SetReadBuffer(4 << 10)
			}
			_, err = mc.subscribe(topic(i%max(c.subs, 1)), byte(c.qos))
			if err != nil {
				mc.close()
			}
		}
		if err != nil {
			for _, s := range conns {
				s.close()
			}
			return nil, fmt.Errorf("stalled subscriber: %w", err)
		}
		conns = append(conns, mc)
	}
	return conns, nil
}

// tcpConn returns the TCP connection under nc, looking through TLS and WebSocket, or nil.
func tcpConn(nc net.Conn) *net.TCPConn {
	for {
		switch c := nc.(type) {
		case *net.TCPConn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
}
