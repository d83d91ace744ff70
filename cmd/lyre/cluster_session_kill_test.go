package main

// Issue 15's fault test for MQTT sessions: a persistent session lives on one node (the victim, which also
// leads the session records' stream) and goes offline while a publisher there, and one on another node,
// stream QoS 1 messages into it; the victim is killed with SIGKILL. The client reconnects to a second
// node with Clean Session 0 and must find its session (Session Present 1) and every message whose PUBACK
// either publisher got. Then the
// session moves once more, live, to the third node with a backlog (handed over, the backlog staying in
// JetStream), and the victim, restarted, must drop the stale copy its store restored.

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// sessionClient connects a Clean Session 0 client id on addr whose every message, from the session's
// subscriptions too, goes to ty; it reports Session Present.
func sessionClient(t *testing.T, addr, id string, ty *qtally) (paho.Client, bool) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { ty.add(id, string(m.Payload())) }))
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect on %s: %v", id, addr, tok.Error())
	}
	return c, tok.(*paho.ConnectToken).SessionPresent()
}

// duplicated counts the messages ty saw more than once.
func (ty *qtally) duplicated() int {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	n := 0
	for _, c := range ty.seen {
		if c > 1 {
			n++
		}
	}
	return n
}

// missingFrom returns the acknowledged bodies ty has not seen.
func missingFrom(ty *qtally, acked map[string]bool) []string {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	var out []string
	for b := range acked {
		if ty.seen[b] == 0 {
			out = append(out, b)
		}
	}
	return out
}

func TestClusterSessionSurvivesKill9(t *testing.T) {
	// The victim leads the session records' stream: the client's reconnect reads its record while the
	// stream elects another leader.
	victim, n2, n3 := killCluster(t, true, "LYRE_SESSIONS")
	const id = "sess-k1"

	ty := newQTally()
	c, _ := sessionClient(t, victim.addr, id, ty)
	if tok := c.Subscribe("sess/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	al := &ackLog{acked: map[string]bool{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); mqttProducer(victim.addr, "sprod", "sess/x", 1<<30, al, stop) }()
	stopProducer := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopProducer()
	acks := func() int {
		al.mu.Lock()
		defer al.mu.Unlock()
		return len(al.acked)
	}

	waitUntilFor(t, 60*time.Second, "the session online, mid-stream", func() bool { _, n := ty.count(); return n >= 100 })
	// A publisher on another node: its PUBACKs mean that node stored a copy for the session too (its
	// mirror of the session's durable subscription), not only that the message left for the victim.
	wg.Add(1)
	go func() { defer wg.Done(); mqttProducer(n2.addr, "sprod-other", "sess/z", 1<<30, al, stop) }()
	c.Disconnect(100)
	offlineAt := acks()
	waitUntilFor(t, 60*time.Second, "a backlog while the session is offline", func() bool { return acks() >= offlineAt+300 })
	victim.kill()
	stopProducer()
	acked, sent, failed := al.snapshot()
	_, before := ty.count()
	other := 0
	for b := range acked {
		if strings.HasPrefix(b, "sprod-other-") {
			other++
		}
	}
	t.Logf("%s killed: %d published, %d acknowledged (%d by the publisher on %s; %d while the session was offline), %d delivered before",
		victim.name, sent, len(acked), other, n2.name, len(acked)-offlineAt, before)
	if other == 0 {
		t.Fatalf("the publisher on %s had nothing acknowledged", n2.name)
	}

	c2, present := sessionClient(t, n2.addr, id, ty)
	if !present {
		t.Fatalf("[MQTT-3.2.2-2] %s: Session Present 0: the session died with %s", n2.name, victim.name)
	}
	// The messages the victim had fetched and not settled come back after the ack wait (10 s).
	waitDelivered(t, ty, acked, 90*time.Second)
	t.Logf("after the kill: all %d acknowledged messages delivered (%d not acknowledged, %d duplicated)",
		len(acked), failed, ty.duplicated())

	// A live move with a backlog: the second node hands the session to the third, and the backlog it
	// leaves in JetStream is the third's to read, not purged.
	c2.Disconnect(100)
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + n2.addr).SetClientID("sprod2").SetProtocolVersion(4))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	later := map[string]bool{}
	for i := range 50 {
		body := fmt.Sprintf("later-%d", i)
		if tok := pub.Publish("sess/y", 1, false, body); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", body, tok.Error())
		}
		later[body] = true
	}
	c3, present := sessionClient(t, n3.addr, id, ty)
	defer c3.Disconnect(100)
	if !present {
		t.Fatalf("[MQTT-3.2.2-2] %s: Session Present 0 after the takeover from %s", n3.name, n2.name)
	}
	waitDelivered(t, ty, later, 30*time.Second)

	// The victim comes back with the session in its store: the cluster's record says n3 has it now.
	victim.restart(t)
	waitLogged(t, victim, "restored session dropped")
}
