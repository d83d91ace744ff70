package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// client is one benchmark connection of any protocol. run blocks until the role is done: a publisher when it
// has sent its messages and got them acknowledged, a subscriber after stop. stop ends run early.
type client interface {
	run() error
	stop()
}

// idleConn is a connection that only keeps itself alive.
type idleConn interface {
	sendPing(deadline time.Time) error
	awaitPong(deadline time.Time) error
	close() error
}

// driver opens connections of one protocol.
type driver interface {
	topic(parts ...string) string
	dialPublisher(ctx context.Context, clientID string, spec *pubSpec, st *pubStats) (client, error)
	dialSubscriber(ctx context.Context, clientID string, spec *subSpec, st *subStats) (client, error)
	dialIdle(ctx context.Context, clientID string) (idleConn, error)
}

func newDriver(c *config) driver {
	if c.proto == "stomp" {
		return newSTOMPDriver(c)
	}
	return &mqttDriver{opt: mqttOptions{
		addr: c.addr, user: c.user, pass: c.pass, keepAlive: c.keepAlive, timeout: c.timeout,
		maxPacket: max(c.size+1024, 1<<20), v5: c.v5, tr: newTransport(c, "mqtt"),
	}, keepSession: c.keepSession}
}

// addrDrivers returns, for each address of addrs, newDrivers' pub (or sub) driver of c with that address.
func addrDrivers(c *config, addrs []string, sub bool) []driver {
	out := make([]driver, len(addrs))
	for i, a := range addrs {
		ac := *c
		ac.addr, ac.stompAddr = a, a
		p, s := newDrivers(&ac)
		out[i] = p
		if sub {
			out[i] = s
		}
	}
	return out
}

// newDrivers returns the publishers' and the subscribers' drivers: one protocol, or for mqtt2stomp MQTT
// publishers and STOMP subscribers on the same broker address.
func newDrivers(c *config) (pub, sub driver) {
	if c.mode == "mqtt2stomp" {
		mc := *c
		mc.proto = "mqtt"
		return newDriver(&mc), newSTOMPDriver(c)
	}
	d := newDriver(c)
	return d, d
}

// control is shared by all publishers of a run.
type control struct {
	stop        atomic.Bool   // publishers send no further message
	stopCh      chan struct{} // closed when stop is set
	stopOnce    sync.Once
	interrupted atomic.Bool   // Ctrl-C: connections are being closed under the clients
	interruptCh chan struct{} // closed when interrupted is set
	intOnce     sync.Once
}

func newControl() *control {
	return &control{stopCh: make(chan struct{}), interruptCh: make(chan struct{})}
}

func (c *control) stopPublishing() {
	c.stopOnce.Do(func() { c.stop.Store(true); close(c.stopCh) })
}

func (c *control) interrupt() {
	c.intOnce.Do(func() { c.interrupted.Store(true); close(c.interruptCh) })
	c.stopPublishing()
}

// pubSpec says what one publisher sends.
type pubSpec struct {
	index    int // carried in every payload's tag
	topic    string
	qos      byte
	size     int
	count    uint64  // messages to send; 0 = until ctl.stop
	rate     float64 // messages per second; 0 = unlimited
	inflight int
	drain    time.Duration // longest wait for the last acknowledgements
	ctl      *control
}

// maxBatchDelay bounds how long a published message may wait in the write buffer before it is flushed, so that
// batching at full speed does not show up as latency.
const maxBatchDelay = time.Millisecond

// subSpec says what one subscriber subscribes to.
type subSpec struct {
	filter string
	qos    byte
	// coalesce: after a small read that closely followed the previous one, wait this long before
	// reading again (0 = never). It trades up to that much latency for far fewer system calls when a
	// broker streams packets one write at a time.
	coalesce time.Duration
}
