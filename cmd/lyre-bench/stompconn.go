package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// receiptBye is the receipt asked for by DISCONNECT; receipts of SENDs are decimal sequence numbers.
const receiptBye = "bye"

// stompOptions configure every STOMP connection of a run.
type stompOptions struct {
	addr         string
	host         string // CONNECT host header: the virtual host
	login        string
	passcode     string
	timeout      time.Duration // dial plus CONNECT/CONNECTED and SUBSCRIBE/RECEIPT
	maxFrame     int
	destPrefix   string        // "/topic/" or "/queue/" typically; topic parts are joined with "."
	ack          string        // subscribers' ack mode
	ackEvery     int           // ack client: one cumulative ACK per this many messages
	prefetch     int           // subscribers' window of unacknowledged messages; 0 = the broker's default
	persistent   bool          // SEND with persistent:true
	receiptEvery int           // SEND asks a receipt every this many messages; 0 = never
	heartBeat    time.Duration // idle connections: heart-beats both ways; 0 = none
	tr           *transport    // nil: TCP
}

// stompConn is one connection. Its reader and writer are used by one goroutine each at most.
type stompConn struct {
	nc        net.Conn
	fr        *frameReader
	bw        *bufio.Writer
	opt       *stompOptions
	version   string // negotiated: "1.0", "1.1" or "1.2"
	closeOnce sync.Once
}

// dialSTOMP connects and completes the CONNECT/CONNECTED exchange.
func dialSTOMP(ctx context.Context, o *stompOptions, rbuf, wbuf int) (*stompConn, error) {
	nc, err := o.tr.dial(ctx, o.addr, o.timeout, rbuf, wbuf)
	if err != nil {
		return nil, err
	}
	c := &stompConn{nc: nc, fr: newFrameReader(nc, rbuf, o.maxFrame), bw: bufio.NewWriterSize(nc, wbuf), opt: o}
	if err := c.handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s: %w", o.addr, err)
	}
	return c, nil
}

func (c *stompConn) connectOptions() stompConnectOptions {
	return stompConnectOptions{host: c.opt.host, login: c.opt.login, passcode: c.opt.passcode, heartBeat: c.opt.heartBeat}
}

func (c *stompConn) handshake() error {
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	if _, err := c.nc.Write(appendStompConnect(nil, c.connectOptions())); err != nil {
		return err
	}
	f, err := c.fr.next()
	if err != nil {
		return err
	}
	switch {
	case f.is("CONNECTED"):
	case f.is("ERROR"):
		return fmt.Errorf("%w: %s", errRefused, f.describe())
	default:
		return fmt.Errorf("%w: %s instead of CONNECTED", errUnexpected, f.command)
	}
	c.version = "1.0" // a CONNECTED without version is a 1.0 server [STOMP 1.1, Protocol Negotiation]
	if v, ok := f.header("version"); ok {
		c.version = string(v)
	}
	if c.version != "1.1" && c.version != "1.2" && c.opt.ack == ackClientIndividual {
		return fmt.Errorf("%w: ack client-individual needs STOMP 1.1, broker speaks %s", errUnexpected, c.version)
	}
	return c.nc.SetDeadline(time.Time{})
}

// subscribe sends a SUBSCRIBE and waits for its RECEIPT.
func (c *stompConn) subscribe(dest string) error {
	c.nc.SetDeadline(time.Now().Add(c.opt.timeout))
	if _, err := c.nc.Write(appendStompSubscribe(nil, "0", dest, c.opt.ack, c.opt.prefetch, "sub-0")); err != nil {
		return err
	}
	for {
		f, err := c.fr.next()
		if err != nil {
			return err
		}
		switch {
		case f.is("RECEIPT"):
			if id, _ := f.header("receipt-id"); string(id) != "sub-0" {
				return fmt.Errorf("%w: RECEIPT for %q, asked for sub-0", errUnexpected, id)
			}
			return c.nc.SetDeadline(time.Time{})
		case f.is("ERROR"):
			return fmt.Errorf("%w: %s: %s", errSubRefused, dest, f.describe())
		case f.is("MESSAGE"):
			// Left over on the destination from before this run: not ours, and not acknowledged.
		default:
			return fmt.Errorf("%w: %s instead of RECEIPT", errUnexpected, f.command)
		}
	}
}

func (c *stompConn) close() error {
	var err error
	c.closeOnce.Do(func() { err = c.nc.Close() })
	return err
}

// stompDriver is the STOMP side of the bench.
type stompDriver struct {
	opt stompOptions
}

func newSTOMPDriver(c *config) *stompDriver {
	return &stompDriver{opt: stompOptions{
		addr: c.stompAddr, host: c.vhost, login: c.login, passcode: c.passcode, timeout: c.timeout,
		maxFrame: max(c.size+4096, 1<<20), destPrefix: c.destPrefix, ack: c.ack, ackEvery: c.ackEvery,
		prefetch: c.prefetch, persistent: c.persistent, receiptEvery: c.receiptEvery, tr: newTransport(c, "stomp"),
		heartBeat: idleHeartBeat(c),
	}}
}

// idleHeartBeat is the heart-beat interval of -mode idle connections: -keepalive, as MQTT's keep-alive.
func idleHeartBeat(c *config) time.Duration {
	if c.mode != "idle" {
		return 0
	}
	return c.keepAlive
}

func (d *stompDriver) topic(parts ...string) string {
	return d.opt.destPrefix + strings.Join(parts, ".")
}

func (d *stompDriver) dialPublisher(ctx context.Context, _ string, spec *pubSpec, st *pubStats) (client, error) {
	c, err := dialSTOMP(ctx, &d.opt, 4<<10, 64<<10)
	if err != nil {
		return nil, err
	}
	p := &stompPublisher{c: c, spec: spec, st: st, readerDone: make(chan struct{}), bye: make(chan struct{})}
	if d.opt.receiptEvery > 0 {
		p.tokens = make(chan struct{}, spec.inflight)
		for range spec.inflight {
			p.tokens <- struct{}{}
		}
	}
	return p, nil
}

func (d *stompDriver) dialSubscriber(ctx context.Context, _ string, spec *subSpec, st *subStats) (client, error) {
	c, err := dialSTOMP(ctx, &d.opt, 64<<10, 16<<10)
	if err != nil {
		return nil, err
	}
	if err := c.subscribe(spec.filter); err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	st.granted = 2 // no QoS in STOMP: never warn about a downgrade
	s := &stompSubscriber{c: c, st: st, lastAck: make([]byte, 0, 64), lastSub: make([]byte, 0, 16)}
	c.fr.beforeRead = c.fr.subscriberHook(c.bw, spec.coalesce)
	return s, nil
}

func (d *stompDriver) dialIdle(ctx context.Context, _ string) (idleConn, error) {
	c, err := dialSTOMP(ctx, &d.opt, 64, 64)
	if err != nil {
		return nil, err
	}
	s := &stompIdle{c: c, gone: make(chan struct{})}
	go s.drain()
	return s, nil
}

// stompIdle is an idle STOMP connection kept alive by heart-beats both ways (-keepalive): the sweeps send
// the client's, and a goroutine of its own reads the broker's, so that a connection the broker closed is
// seen at the next sweep. STOMP has no ping with an answer.
type stompIdle struct {
	c    *stompConn
	gone chan struct{} // closed when the broker's side ended; err says why
	err  error
}

// drain reads and drops the broker's heart-beats until the connection ends.
func (s *stompIdle) drain() {
	defer close(s.gone)
	var b [64]byte
	for {
		n, err := s.c.nc.Read(b[:])
		if err != nil {
			s.err = err
			return
		}
		if i := bytes.IndexFunc(b[:n], func(r rune) bool { return r != '\n' && r != '\r' }); i >= 0 {
			s.err = fmt.Errorf("%w: %q from an idle connection", errUnexpected, b[i:n])
			return
		}
	}
}

func (s *stompIdle) sendPing(deadline time.Time) error {
	s.c.nc.SetWriteDeadline(deadline)
	_, err := s.c.nc.Write([]byte{'\n'})
	return err
}

// awaitPong reports whether the broker's side has ended; heart-beats are not answered.
func (s *stompIdle) awaitPong(time.Time) error {
	select {
	case <-s.gone:
		return s.err
	default:
		return nil
	}
}

func (s *stompIdle) close() error {
	s.c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	s.c.nc.Write([]byte("DISCONNECT\n\n\x00"))
	err := s.c.close()
	<-s.gone
	return err
}
