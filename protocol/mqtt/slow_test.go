package mqtt

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// TestSlowSubscriberDropsQoS0AndBoundsQoS1: under slow_consumer_policy queue, a subscriber that stops
// reading makes the broker drop QoS 0 messages (counted by the router) and hold at most
// max_queued_messages QoS 1 ones, without ever blocking the publisher.
func TestSlowSubscriberDropsQoS0AndBoundsQoS1(t *testing.T) {
	host := virtualhost.New(conf.VirtualHost{Name: "default", Anonymous: true}, router.Options{TopicPolicies: allTopics(t, router.SlowQueue)})
	h := NewHandler(virtualhost.NewRegistry(host), zaptest.NewLogger(t))
	srv := protocol.NewServer(zaptest.NewLogger(t), map[string]protocol.Handler{protocol.MQTT: h})
	srv.MaxPending = 16 << 10
	srv.WriteTimeout = time.Minute
	if err := srv.Listen(conf.Connector{Name: "slow", Network: "tcp", Address: "127.0.0.1:0", Protocol: protocol.MQTT,
		MQTT: conf.MQTT{Grammar: conf.MQTTGrammarDefaults, MaxQueuedMessages: 10, MaxInflight: 2}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	addr := srv.Addrs()["slow"].String()

	sub := dialRaw(t, addr)
	_ = sub.nc.(*net.TCPConn).SetReadBuffer(4 << 10)
	sub.connect("slow", true)
	sub.subscribe(1, 1, "flood/#")
	// From now on the subscriber reads nothing.

	pub := dialRaw(t, addr)
	pub.connect("fast", true)
	body := make([]byte, 4<<10)
	const n = 3000 // 12 MiB: more than socket buffers and the 16 KiB outbound limit hold
	start := time.Now()
	for range n {
		pub.send(&packet.PublishPacket{Topic: "flood/0", Payload: body})
	}
	for i := range 50 {
		pub.publish("flood/1", "q1", 1, false, uint16(i+1))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("publisher took %s: it was blocked by the slow subscriber", d)
	}
	if dropped := host.Router.Stats().Dropped; dropped == 0 {
		t.Fatal("no QoS 0 message dropped")
	}
	s := h.registry(host).sessions["slow"]
	s.mu.Lock()
	live, inflight := s.queue.live, len(s.inflight)
	s.mu.Unlock()
	if live != 10 || inflight > 2 {
		t.Fatalf("session holds %d queued and %d inflight QoS 1 messages, want 10 (oldest dropped) and ≤ 2", live, inflight)
	}
}
