package mqtt

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/protocol/prototest"
)

// TestConcurrentTakeoversLeaveOneSession: many connections racing for one client id end with one
// session and every connection either connected or closed; nothing deadlocks.
func TestConcurrentTakeoversLeaveOneSession(t *testing.T) {
	b := startBroker(t, nil)
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := dialRaw(t, b.addr)
			r.send(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311,
				ClientID: "contended", CleanSession: i%2 == 0, KeepAlive: 60})
			// Either CONNACK then maybe a close, or a close: both are fine; the read just must end.
			_ = r.nc.SetReadDeadline(time.Now().Add(waitTime))
			_, _ = r.rd.ReadPacket()
		}()
	}
	wg.Wait()
	prototest.WaitFor(t, waitTime, func() bool { return b.h.SessionCount(b.host) <= 1 })
	// The id is usable afterwards.
	r := dialRaw(t, b.addr)
	r.connect("contended", true)
}

// TestDeliveryWhileSubscriptionsChurn mixes publishers with a subscriber that subscribes and
// unsubscribes, under the race detector.
func TestDeliveryWhileSubscriptionsChurn(t *testing.T) {
	b := startBroker(t, func(c *conf.Connector) { c.MQTT.MaxInflight = 4; c.MQTT.QueuePrefix = "queue/" })
	sub := dialRaw(t, b.addr)
	sub.connect("churn", true)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub := dialRaw(t, b.addr)
			pub.connect("pub"+strconv.Itoa(i), true)
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				topic := "c/" + strconv.Itoa(j%4)
				if j%5 == 0 {
					topic = "queue/c"
				}
				pub.send(&packet.PublishPacket{Topic: topic, Payload: []byte("x"), QoS: byte(j % 2), PacketID: uint16(j%2) * uint16(1+j%1000)})
				if j%2 == 1 {
					pub.next() // PUBACK
				}
			}
		}()
	}
	// The subscriber acknowledges everything it gets on a reader goroutine.
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			_ = sub.nc.SetReadDeadline(time.Now().Add(waitTime))
			p, err := sub.rd.ReadPacket()
			if err != nil {
				return
			}
			if pp, ok := p.(*packet.PublishPacket); ok && pp.QoS == 1 {
				_, _ = sub.nc.Write(packet.AppendAck(nil, packet.Puback, pp.PacketID, packet.Version311))
			}
		}
	}()
	for i := range 50 {
		filters := []string{"c/+", "c/#", "queue/c", "$share/g/c/1"}
		f := filters[i%len(filters)]
		_, _ = sub.nc.Write(packet.Append(nil, &packet.SubscribePacket{PacketID: uint16(i + 1),
			Subscriptions: []packet.Subscription{{Filter: f, QoS: byte(i % 3)}}}, packet.Version311))
		time.Sleep(2 * time.Millisecond)
		_, _ = sub.nc.Write(packet.Append(nil, &packet.UnsubscribePacket{PacketID: uint16(i + 1),
			Filters: []string{f}}, packet.Version311))
	}
	close(stop)
	wg.Wait()
	_ = sub.nc.Close()
	<-readerDone
}

// TestGarbageAfterConnectNeverBreaksTheBroker sends random bytes after a valid CONNECT on many
// connections: each is closed or keeps working, and the broker still serves a normal client after.
func TestGarbageAfterConnectNeverBreaksTheBroker(t *testing.T) {
	b := startBrokerLog(t, zap.NewNop(), nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		r := dialRaw(t, b.addr)
		r.connect("g"+strconv.Itoa(i), i%2 == 0)
		garbage := make([]byte, 1+rng.IntN(64))
		for j := range garbage {
			garbage[j] = byte(rng.IntN(256))
		}
		// Mostly valid-looking first bytes, so decoding gets past the fixed header.
		garbage[0] = byte(rng.IntN(16)) << 4
		r.sendBytes(garbage)
		_ = r.nc.Close()
	}
	c := pahoClient(t, b.addr, "after", nil)
	in := subscribe(t, c, "ok", 1)
	waitToken(t, c.Publish("ok", 1, false, "fine"))
	in.waitN(t, 1)
}
