package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// mqttOptions configure every connection of a run.
type mqttOptions struct {
	addr      string
	user      string
	pass      string
	keepAlive time.Duration
	timeout   time.Duration // dial plus CONNECT/CONNACK and SUBSCRIBE/SUBACK
	maxPacket int
	v5        bool       // MQTT 5 instead of 3.1.1
	tr        *transport // nil: TCP
	// keepSession: CONNECT with clean session off (subscribers with -keep-session)
	keepSession bool
}

// mqttConn is one connection. Its reader and writer are used by one goroutine each at most.
type mqttConn struct {
	nc        net.Conn
	pr        *packetReader
	bw        *bufio.Writer
	opt       *mqttOptions
	closeOnce sync.Once
}

// dialMQTT connects and completes the CONNECT/CONNACK exchange.
func dialMQTT(ctx context.Context, o *mqttOptions, clientID string, rbuf, wbuf int) (*mqttConn, error) {
	nc, err := o.tr.dial(ctx, o.addr, o.timeout, rbuf, wbuf)
	if err != nil {
		return nil, err
	}
	c := &mqttConn{nc: nc, pr: newPacketReader(nc, rbuf, o.maxPacket), bw: bufio.NewWriterSize(nc, wbuf), opt: o}
	if err := c.handshake(clientID); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s as %s: %w", o.addr, clientID, err)
	}
	return c, nil
}

func (c *mqttConn) handshake(clientID string) error {
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	pkt := appendConnect(nil, mqttConnectOptions{clientID: clientID, user: c.opt.user, pass: c.opt.pass, keepAlive: c.opt.keepAlive,
		v5: c.opt.v5, keepSession: c.opt.keepSession})
	if _, err := c.nc.Write(pkt); err != nil {
		return err
	}
	hdr, body, err := c.pr.next()
	if err != nil {
		return err
	}
	if hdr>>4 != mqttCONNACK {
		return fmt.Errorf("%w: type %d instead of CONNACK", errUnexpected, hdr>>4)
	}
	if err := parseConnack(body, c.opt.v5); err != nil {
		return err
	}
	return c.nc.SetDeadline(time.Time{})
}

// subscribe sends one SUBSCRIBE and waits for its SUBACK, returning the granted QoS.
func (c *mqttConn) subscribe(filter string, qos byte) (byte, error) {
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	if _, err := c.nc.Write(appendSubscribe(nil, 1, filter, qos, c.opt.v5)); err != nil {
		return 0, err
	}
	hdr, body, err := c.pr.next()
	if err != nil {
		return 0, err
	}
	if hdr>>4 != mqttSUBACK {
		return 0, fmt.Errorf("%w: type %d instead of SUBACK", errUnexpected, hdr>>4)
	}
	id, granted, err := parseSuback(body, c.opt.v5)
	if err != nil {
		return 0, err
	}
	if id != 1 {
		return 0, fmt.Errorf("%w: SUBACK for packet %d, sent 1", errUnexpected, id)
	}
	if granted > 2 {
		return 0, fmt.Errorf("%w: %q (SUBACK code 0x%02x)", errSubRefused, filter, granted)
	}
	return granted, c.nc.SetDeadline(time.Time{})
}

func (c *mqttConn) close() error {
	var err error
	c.closeOnce.Do(func() { err = c.nc.Close() })
	return err
}

// mqttDriver is the MQTT side of the bench.
type mqttDriver struct {
	opt         mqttOptions
	keepSession bool // subscribers connect with clean session off (-keep-session)
}

func (d *mqttDriver) topic(parts ...string) string { return strings.Join(parts, "/") }

func (d *mqttDriver) dialPublisher(ctx context.Context, clientID string, spec *pubSpec, st *pubStats) (client, error) {
	c, err := dialMQTT(ctx, &d.opt, clientID, 4<<10, 64<<10)
	if err != nil {
		return nil, err
	}
	p := &mqttPublisher{c: c, spec: spec, st: st, readerDone: make(chan struct{})}
	if spec.qos > 0 {
		p.tokens = make(chan uint16, spec.inflight)
		for id := 1; id <= spec.inflight; id++ {
			p.tokens <- uint16(id)
		}
		p.state = make([]atomic.Uint32, spec.inflight+1)
		p.rel = make(chan uint16, spec.inflight)
		p.stash = make([]uint16, 0, spec.inflight)
	}
	return p, nil
}

func (d *mqttDriver) dialSubscriber(ctx context.Context, clientID string, spec *subSpec, st *subStats) (client, error) {
	o := d.opt
	o.keepSession = d.keepSession
	c, err := dialMQTT(ctx, &o, clientID, 64<<10, 16<<10)
	if err != nil {
		return nil, err
	}
	granted, err := c.subscribe(spec.filter, spec.qos)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe %s: %w", clientID, err)
	}
	st.granted = int(granted)
	s := &mqttSubscriber{c: c, st: st}
	c.pr.beforeRead = c.pr.subscriberHook(c.bw, spec.coalesce)
	return s, nil
}

// discardSession ends the session a -keep-session subscriber left on the broker: a CONNECT with clean
// session [MQTT-3.1.2-6], then DISCONNECT.
func (d *mqttDriver) discardSession(ctx context.Context, clientID string) error {
	c, err := dialMQTT(ctx, &d.opt, clientID, 64, 64)
	if err != nil {
		return err
	}
	c.nc.SetWriteDeadline(time.Now().Add(d.opt.timeout))
	_, err = c.nc.Write(mqttDisconnect)
	c.close()
	return err
}

func (d *mqttDriver) dialIdle(ctx context.Context, clientID string) (idleConn, error) {
	c, err := dialMQTT(ctx, &d.opt, clientID, 64, 64)
	if err != nil {
		return nil, err
	}
	return &mqttIdle{c: c}, nil
}

// mqttIdle is an idle connection kept alive by pings sent in sweeps over all connections.
type mqttIdle struct {
	c *mqttConn
}

func (m *mqttIdle) sendPing(deadline time.Time) error {
	m.c.nc.SetWriteDeadline(deadline)
	_, err := m.c.nc.Write(mqttPingreq)
	return err
}

func (m *mqttIdle) awaitPong(deadline time.Time) error {
	m.c.nc.SetReadDeadline(deadline)
	hdr, _, err := m.c.pr.next()
	if err != nil {
		return err
	}
	if hdr>>4 != mqttPINGRESP {
		return fmt.Errorf("%w: type %d instead of PINGRESP", errUnexpected, hdr>>4)
	}
	return nil
}

func (m *mqttIdle) close() error {
	m.c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	m.c.nc.Write(mqttDisconnect)
	return m.c.close()
}
