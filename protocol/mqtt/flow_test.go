package mqtt

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
)

// allTopics returns topic policies giving every topic the slow-consumer policy p.
func allTopics(t *testing.T, p router.SlowConsumerPolicy) []router.TopicPolicy {
	t.Helper()
	g, err := router.NewGrammar(router.MQTTGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	f, err := g.ParseFilter("#")
	if err != nil {
		t.Fatal(err)
	}
	return []router.TopicPolicy{{Filter: f, SlowConsumer: p}}
}

// TestMessageLargerThanOutboundLimit (issue 13, item 14): QoS 0 messages larger than the outbound limit
// (protocol.DefaultMaxPending) but within max_message_length reach every subscriber, also when the one
// before is still queued because the subscriber was busy for longer than a publisher is held back
// (protocol.PaceTimeout): the limit bounds what is queued beyond one message and refuses no message for
// its size, under either slow_consumer_policy.
func TestMessageLargerThanOutboundLimit(t *testing.T) {
	const size, n = protocol.DefaultMaxPending + 1<<20, 2
	for name, policy := range map[string]router.SlowConsumerPolicy{"block": router.SlowBlock, "queue": router.SlowQueue} {
		t.Run(name, func(t *testing.T) {
			b := startBrokerRouter(t, zaptest.NewLogger(t), router.Options{TopicPolicies: allTopics(t, policy)},
				func(c *conf.Connector) { c.MQTT.MaxMessageLength = 2 * size })
			subs := make([]*raw, 2)
			for i := range subs {
				subs[i] = dialRaw(t, b.addr)
				subs[i].connect("sub"+string(rune('0'+i)), true)
				subs[i].subscribe(1, 0, "big")
			}
			pub := pahoClient(t, b.addr, "pub", func(o *paho.ClientOptions) { o.SetWriteTimeout(time.Minute) })
			body := bytes.Repeat([]byte{'b'}, size)
			for range n {
				waitToken(t, pub.Publish("big", 0, false, body))
			}
			time.Sleep(protocol.PaceTimeout + 200*time.Millisecond) // the subscribers are busy; then they read
			for i, r := range subs {
				got := 0
				// Each within 10 s: a dropped message never comes, and a loaded machine (-race, 9 MiB
				// messages) may take seconds to route the publisher's second one.
				for p := r.nextWithin(10 * time.Second); p != nil; p = r.nextWithin(10 * time.Second) {
					if pp, ok := p.(*packet.PublishPacket); !ok || len(pp.Payload) != size {
						t.Fatalf("subscriber %d: got %s", i, p.Type())
					}
					if got++; got == n {
						break
					}
				}
				if got != n {
					t.Errorf("subscriber %d got %d of %d messages of %d MiB; %d dropped", i, got, n, size>>20,
						b.host.Router.Stats().Dropped)
				}
			}
		})
	}
}

// TestFireAndForgetFanInLosesNothing (issue 13, item 13): QoS 0 publishers, faster than a topic's one
// subscriber reads, lose nothing under the default slow_consumer_policy (block): each publisher's socket
// is not read while the subscriber is over its window (protocol.Pace), as a STOMP producer's is
// (TestFlowControl_FireAndForgetFanInLosesNothing in package stomp).
func TestFireAndForgetFanInLosesNothing(t *testing.T) {
	const publishers, n, size = 8, 1000, 4 << 10 // 32 MiB: four times the outbound limit
	b := startBroker(t, nil)
	// The subscriber keeps up but may be descheduled for long on a loaded machine (-race, CI): hold
	// publishers back for as long as it takes, so only a lost message fails the test, not a late one.
	b.srv.SetPaceTimeout(time.Minute)
	var got, bad atomic.Int64
	sub := pahoClient(t, b.addr, "sub", nil)
	waitToken(t, sub.Subscribe("x", 0, func(_ paho.Client, m paho.Message) {
		if len(m.Payload()) != size {
			bad.Add(1)
		}
		if got.Add(1)%10 == 0 {
			time.Sleep(time.Millisecond) // a busy subscriber, slower than the publishers: paho reads no more meanwhile
		}
	}))
	body := bytes.Repeat([]byte{'p'}, size)
	for i := range publishers {
		pub := pahoClient(t, b.addr, "pub"+string(rune('0'+i)), nil)
		go func() {
			for range n {
				pub.Publish("x", 0, false, body)
			}
		}()
	}
	for last, idle := int64(-1), 0; got.Load() < publishers*n; time.Sleep(10 * time.Millisecond) {
		if now := got.Load(); now != last {
			last, idle = now, 0
		} else if idle++; idle > 500 {
			t.Fatalf("received %d of %d; %d dropped", now, publishers*n, b.host.Router.Stats().Dropped)
		}
	}
	if bad.Load() != 0 {
		t.Fatalf("%d messages of the wrong size", bad.Load())
	}
	if d := b.host.Router.Stats().Dropped; d != 0 {
		t.Fatalf("%d dropped", d)
	}
}
