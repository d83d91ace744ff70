package main

import (
	"fmt"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"

	"github.com/lyremq/lyre/router/cluster"
)

// clusterConfig is testConfig with a cluster block for node name, routed to seed ("" for the first node).
func clusterConfig(name, seed string) string {
	routes := ""
	if seed != "" {
		routes = fmt.Sprintf("  routes = [%q]\n", seed)
	}
	return testConfig + fmt.Sprintf("cluster {\n  name = \"t\"\n  node = %q\n  listen = \"127.0.0.1:0\"\n%s}\n", name, routes)
}

// waitUntil polls cond; interest crosses routes asynchronously, and the test must not sleep a guess.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readUntil reads MQTT messages until one with body end, and returns the bodies before it.
func readMQTTUntil(t *testing.T, ch <-chan paho.Message, end string) []string {
	t.Helper()
	var got []string
	for {
		select {
		case m := <-ch:
			if string(m.Payload()) == end {
				return got
			}
			got = append(got, string(m.Payload()))
		case <-time.After(5 * time.Second):
			t.Fatalf("no %q on MQTT; got %q", end, got)
		}
	}
}

func readStompUntil(t *testing.T, sub *stomp.Subscription, end string) []string {
	t.Helper()
	var got []string
	for {
		m := readStomp(t, sub)
		if string(m.Body) == end {
			return got
		}
		got = append(got, string(m.Body))
	}
}

func TestClusterTopicsAcrossThreeNodes(t *testing.T) {
	b1, addr1 := startBroker(t, clusterConfig("n1", ""))
	seed := b1.Cluster().RouteAddr().String()
	b2, addr2 := startBroker(t, clusterConfig("n2", seed))
	b3, addr3 := startBroker(t, clusterConfig("n3", seed))
	l1, l2, l3 := b1.Cluster(), b2.Cluster(), b3.Cluster()
	interest := func(l *cluster.Link, p ...string) bool { return l.Interest("default", p) > 0 }

	// n2: MQTT, sensors/+/temp. n3: STOMP, sensors.k1.*. Both match sensors/k1/temp; sensors/k2/temp
	// only n2's, sensors/k1/hum only n3's, so n1 can tell each one's interest has arrived.
	mq2 := mqttClient(t, addr2, "sub-n2")
	ch2 := mqttSubscribe(t, mq2, "sensors/+/temp", 1)
	st3 := stompClient(t, addr3)
	sub3, err := st3.Subscribe("/topic/sensors.k1.*", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	stompBarrier(t, st3)
	waitUntil(t, "n2's interest on n1", func() bool { return interest(l1, "sensors", "k2", "temp") })
	waitUntil(t, "n3's interest on n1", func() bool { return interest(l1, "sensors", "k1", "hum") })
	// n1: a subscriber on the publishing node, and the publisher.
	mq1 := mqttClient(t, addr1, "sub-n1")
	ch1 := mqttSubscribe(t, mq1, "sensors/#", 1)
	pub := mqttClient(t, addr1, "pub-n1")

	want := []string{"m0", "m1", "m2"}
	for _, m := range want {
		mqttPublish(t, pub, "sensors/k1/temp", 1, m)
	}
	// Copies of one message arrive before the next message from the same publisher, so reading up to a
	// final marker shows any duplicate.
	mqttPublish(t, pub, "sensors/k1/temp", 1, "end")
	for name, got := range map[string][]string{
		"n1 mqtt":  readMQTTUntil(t, ch1, "end"),
		"n2 mqtt":  readMQTTUntil(t, ch2, "end"),
		"n3 stomp": readStompUntil(t, sub3, "end"),
	} {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s got %q, want each of %q once, in order", name, got, want)
		}
	}

	// No message reaches a node without a matching subscription: n2 and n3 each receive only the marker.
	r2, r3 := l2.Stats().Received, l3.Stats().Received
	mqttPublish(t, pub, "nobody/listens", 1, "x")
	mqttPublish(t, pub, "sensors/k1/temp", 1, "end2")
	readMQTTUntil(t, ch2, "end2")
	readStompUntil(t, sub3, "end2")
	if d2, d3 := l2.Stats().Received-r2, l3.Stats().Received-r3; d2 != 1 || d3 != 1 {
		t.Errorf("n2 received %d, n3 %d messages from the cluster; want 1 each (the marker only)", d2, d3)
	}

	// Unsubscribing on n2 takes its interest away: n1 stops sending it anything. n1's own sensors/#
	// goes too, or n1 would see its own interest in sensors/k2/temp.
	for c, f := range map[paho.Client]string{mq2: "sensors/+/temp", mq1: "sensors/#"} {
		if tok := c.Unsubscribe(f); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("unsubscribe %s: %v", f, tok.Error())
		}
	}
	waitUntil(t, "n2's interest gone from n1", func() bool { return !interest(l1, "sensors", "k2", "temp") })
	r2 = l2.Stats().Received
	mqttPublish(t, pub, "sensors/k1/temp", 1, "end3")
	readStompUntil(t, sub3, "end3")
	if d := l2.Stats().Received - r2; d != 0 {
		t.Errorf("n2 received %d messages after its last subscription went", d)
	}
	select {
	case m := <-ch2:
		t.Errorf("n2 delivered %q after unsubscribing", m.Payload())
	default:
	}
	if st := l1.Stats(); st.Received != 0 {
		t.Errorf("n1 received %d of its own messages back", st.Received)
	}
}

// TestClusterRetainAsPublished_MQTT_3_3_1_12_13: a retained message published on n1 reaches MQTT 5
// subscribers on n2 live with its retain flag as published for a retain-as-published subscription
// [MQTT-3.3.1-12] and cleared for the others [MQTT-3.3.1-13]; without JetStream n2 does not store it
// (retained messages are then each node's own).
func TestClusterRetainAsPublished_MQTT_3_3_1_12_13(t *testing.T) {
	bs, addrs := startCluster3(t)
	rap := dialV5(t, addrs[1], &paho5.Connect{ClientID: "rap", CleanStart: true})
	rap.sub(0, paho5.SubscribeOptions{Topic: "rap/t", QoS: 1, RetainAsPublished: true})
	plain := dialV5(t, addrs[1], &paho5.Connect{ClientID: "plain", CleanStart: true})
	plain.sub(0, paho5.SubscribeOptions{Topic: "rap/t", QoS: 1})
	waitUntil(t, "n2's interest on n1", func() bool { return bs[0].Cluster().Interest("default", []string{"rap", "t"}) > 0 })

	pub := mqttClient(t, addrs[0], "pub")
	mqttPublishRetained(t, pub, "rap/t", 1, "kept")
	if m := rap.next(5 * time.Second); string(m.Payload) != "kept" || !m.Retain {
		t.Fatalf("retain-as-published subscriber on n2 got %q retain=%v, want kept with retain 1", m.Payload, m.Retain)
	}
	if m := plain.next(5 * time.Second); string(m.Payload) != "kept" || m.Retain {
		t.Fatalf("plain subscriber on n2 got %q retain=%v, want kept with retain 0", m.Payload, m.Retain)
	}
	if body, ok := retainedBody(t, bs[0], "rap/t"); !ok || body != "kept" {
		t.Fatalf("n1 retains %q (%v), want kept", body, ok)
	}
	if body, ok := retainedBody(t, bs[1], "rap/t"); ok {
		t.Fatalf("n2 stored the relayed message %q as retained; without JetStream it is n1's alone", body)
	}
}
