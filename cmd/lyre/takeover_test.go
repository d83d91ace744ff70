package main

// MQTT session takeover across the nodes of a cluster (protocol/mqtt's doc, "Clusters"): three nodes
// in-process, real clients.

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
)

// startCluster3 starts three routed nodes and returns them with their connector addresses. With stores
// each node's host keeps its state in a badger store of its own.
func startCluster3(t *testing.T, stores ...string) ([3]*Broker, [3]string) {
	t.Helper()
	var bs [3]*Broker
	var addrs [3]string
	seed := ""
	for i := range 3 {
		cfg := clusterConfig(fmt.Sprintf("n%d", i+1), seed)
		if len(stores) > 0 {
			cfg = strings.Replace(cfg, "anonymous  = true\n", fmt.Sprintf("anonymous  = true\n  store { directory = %q }\n",
				stores[i]), 1)
		}
		bs[i], addrs[i] = startNode(t, cfg)
		if i == 0 {
			seed = bs[0].Cluster().RouteAddr().String()
		}
	}
	if len(stores) > 0 && !bs[0].Hosts().Default().Durable() {
		t.Fatal("the nodes have no store")
	}
	return bs, addrs
}

// startNode is startBroker for a node the test may stop itself (stopNode) before the end.
func startNode(t *testing.T, hcl string) (*Broker, string) {
	t.Helper()
	cfg, err := conf.Parse([]byte(hcl), "test.hcl")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	b, err := Start(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { stopNode(t, b) })
	return b, b.Addrs()[cfg.Connectors[0].Name].String()
}

// stopNode shuts node b down, unless it is down already.
func stopNode(t *testing.T, b *Broker) {
	b.reloading.Lock()
	down := b.down
	b.reloading.Unlock()
	if !down {
		stopBroker(t, b)
	}
}

// storedSessions returns the client ids of the MQTT sessions in the store at dir (its node stopped).
func storedSessions(t *testing.T, dir string) []string {
	t.Helper()
	st, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ids []string
	if _, err := st.Recover(store.Visitor{Session: func(s store.SessionState) error {
		ids = append(ids, s.Session.ClientID)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// holds reports whether node b holds client id's session.
func holds(b *Broker, id string) bool {
	for _, s := range b.mqtt.Sessions("default") {
		if s.ClientID == id {
			return true
		}
	}
	return false
}

// holdKnown waits until node at knows that some other node holds client id's session: its claim would
// reach the holder. (A claim made before that finds no holder; see TestClusterConcurrentConnects.)
func holdKnown(t *testing.T, at *Broker, id string) {
	t.Helper()
	waitUntil(t, "the hold of "+id+" to cross the routes", func() bool {
		return at.Cluster().SessionHolders("default", id) > 0
	})
}

// interestKnown waits until node at would send a message on topic path to another node.
func interestKnown(t *testing.T, at *Broker, path ...string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("interest in %v", path), func() bool { return at.Cluster().Interest("default", path) > 0 })
}

// v311 is a 3.1.1 client whose lost connection and unsolicited messages (a resumed session's) are
// collected.
type v311 struct {
	c       paho.Client
	present bool // CONNACK's Session Present
	lost    chan error
	msgs    chan paho.Message
}

// dial311 connects client id to addr with clean session clean and, when willTopic is set, a QoS 1 will.
func dial311(t *testing.T, addr, id string, clean bool, willTopic string) (*v311, error) {
	t.Helper()
	v := &v311{lost: make(chan error, 1), msgs: make(chan paho.Message, 1000)}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) { v.lost <- err }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { v.msgs <- m })
	if willTopic != "" {
		opts.SetWill(willTopic, id+" gone", 1, false)
	}
	v.c = paho.NewClient(opts)
	tok := v.c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", id)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	v.present = tok.(*paho.ConnectToken).SessionPresent()
	t.Cleanup(func() { v.c.Disconnect(100) })
	return v, nil
}

func mustDial311(t *testing.T, addr, id string, clean bool, willTopic string) *v311 {
	t.Helper()
	v, err := dial311(t, addr, id, clean, willTopic)
	if err != nil {
		t.Fatalf("mqtt connect %s: %v", id, err)
	}
	return v
}

// countFor collects the bodies arriving on ch until quiet has passed without one. The quiet period is
// what a test of "exactly once" must wait: a second copy, if any, comes within it.
func countFor(ch <-chan paho.Message, quiet time.Duration) []string {
	var got []string
	for {
		select {
		case m := <-ch:
			got = append(got, string(m.Payload()))
		case <-time.After(quiet):
			return got
		}
	}
}

// [MQTT-3.1.4-2] A 3.1.1 client with clean session 0 and a will, connected to n1, connects again with
// the same client id on n2: n1 disconnects the existing client, and its will is published once, cluster
// wide, as a local takeover publishes it (the connection ends without DISCONNECT [MQTT-3.1.2-8]); the
// session (its subscription) moves to n2 [MQTT-3.1.2-4] with Session Present 1 [MQTT-3.2.2-2], and n1
// no longer holds it. A later connection on n1 takes it back the same way.
func TestClusterTakeoverMovesSessionOneWill(t *testing.T) {
	bs, addrs := startCluster3(t)
	n1, n2, n3 := bs[0], bs[1], bs[2]

	// n3 counts the wills.
	watch := mqttClient(t, addrs[2], "will-watch")
	wills := mqttSubscribe(t, watch, "will/#", 1)
	interestKnown(t, n1, "will", "dev1")
	interestKnown(t, n2, "will", "dev1")

	old := mustDial311(t, addrs[0], "dev1", false, "will/dev1")
	if tok := old.c.Subscribe("cmd/dev1/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	holdKnown(t, n2, "dev1")

	taker := mustDial311(t, addrs[1], "dev1", false, "")
	if !taker.present {
		t.Error("[MQTT-3.2.2-2] the session taken over from n1: Session Present 0")
	}
	select {
	case <-old.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("[MQTT-3.1.4-2] the connection on n1 was not closed")
	}
	var got []string
	select {
	case m := <-wills:
		got = append(got, string(m.Payload()))
	case <-time.After(5 * time.Second):
		t.Fatal("[MQTT-3.1.2-8] the will of the connection taken over was not published")
	}
	if got = append(got, countFor(wills, time.Second)...); fmt.Sprint(got) != "[dev1 gone]" {
		t.Errorf("wills published: %q, want the will once", got)
	}
	if holds(n1, "dev1") {
		t.Error("n1 still holds the session after the takeover")
	}
	if n := len(sessionDurables(n1, "dev1")); n != 0 {
		t.Errorf("n1 keeps %d durable subscriptions of dev1", n)
	}
	if n := len(sessionDurables(n2, "dev1")); n != 1 {
		t.Errorf("n2 has %d durable subscriptions of dev1, want its 1 subscription", n)
	}

	// The subscription came along: a message published on n2 reaches it at once, and one published on n3
	// once n2's interest has crossed the routes.
	pub2 := mqttClient(t, addrs[1], "pub-n2")
	mqttPublish(t, pub2, "cmd/dev1/a", 1, "local")
	readMQTTUntil(t, taker.msgs, "local")
	interestKnown(t, n3, "cmd", "dev1", "b")
	pub3 := mqttClient(t, addrs[2], "pub-n3")
	mqttPublish(t, pub3, "cmd/dev1/b", 1, "remote")
	readMQTTUntil(t, taker.msgs, "remote")

	// And back to n1, the same way; the taker had no will, so none is published.
	holdKnown(t, n1, "dev1")
	back := mustDial311(t, addrs[0], "dev1", false, "")
	select {
	case <-taker.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("[MQTT-3.1.4-2] the connection on n2 was not closed")
	}
	if holds(n2, "dev1") {
		t.Error("n2 still holds the session after it went back to n1")
	}
	mqttPublish(t, mqttClient(t, addrs[0], "pub-n1"), "cmd/dev1/c", 1, "back")
	readMQTTUntil(t, back.msgs, "back")
	if got := countFor(wills, 200*time.Millisecond); len(got) != 0 {
		t.Errorf("wills published when the will-less connection was taken over: %q", got)
	}
}

// [MQTT-3.1.2-4] [MQTT-4.4.0-1] Offline backlog: a client subscribed at QoS 1 on n1 leaves (clean
// session 0 keeps its session), messages are published on n3 while it is away, and it comes back on n2:
// it gets every one, in order [MQTT-4.6.0-6], and the session lives on n2 alone.
func TestClusterTakeoverHandsOverOfflineBacklog(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testHandsOverOfflineBacklog(t, nil) })
	// With stores the backlog is journalled on n1 and drained from there, and n2 journals what it
	// adopts with the session's record: after the takeover the session is in n2's store alone.
	t.Run("store", func(t *testing.T) {
		dir := t.TempDir()
		testHandsOverOfflineBacklog(t, []string{filepath.Join(dir, "n1"), filepath.Join(dir, "n2"), filepath.Join(dir, "n3")})
	})
}

func testHandsOverOfflineBacklog(t *testing.T, stores []string) {
	bs, addrs := startCluster3(t, stores...)
	n1, n2, n3 := bs[0], bs[1], bs[2]

	c := mustDial311(t, addrs[0], "backlog-1", false, "")
	if tok := c.c.Subscribe("orders/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	c.c.Disconnect(100)
	interestKnown(t, n3, "orders", "x")

	pub := mqttClient(t, addrs[2], "pub-n3")
	const n = 50
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("m%02d", i))
		mqttPublish(t, pub, fmt.Sprintf("orders/%d", i), 1, want[i])
	}
	dsub := router.Destination{Kind: router.DurableSub, Path: []string{"$mqtt", "backlog-1", "orders/#"}}
	waitUntil(t, "the backlog on n1", func() bool { return n1.Hosts().Default().Router.QueueDepthOf(dsub) == n })
	holdKnown(t, n2, "backlog-1")

	back := mustDial311(t, addrs[1], "backlog-1", false, "")
	var got []string
	for len(got) < n {
		select {
		case m := <-back.msgs:
			got = append(got, string(m.Payload()))
		case <-time.After(5 * time.Second):
			t.Fatalf("backlog on n2: got %d of %d: %q", len(got), n, got)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("backlog on n2: %q, want %q", got, want)
	}
	if d := n1.Hosts().Default().Router.QueueDepthOf(dsub); d != 0 || holds(n1, "backlog-1") {
		t.Errorf("n1 still holds the session (%d messages)", d)
	}
	// Nothing more than the backlog, and new messages from n3 follow the session to n2.
	interestKnown(t, n3, "orders", "late")
	mqttPublish(t, pub, "orders/late", 1, "late")
	if rest := readMQTTUntil(t, back.msgs, "late"); len(rest) != 0 {
		t.Errorf("after the backlog: %q", rest)
	}
	if stores != nil {
		back.c.Disconnect(100)
		for _, b := range bs {
			stopNode(t, b)
		}
		if ids := storedSessions(t, stores[0]); len(ids) != 0 {
			t.Errorf("n1's store keeps sessions %q", ids)
		}
		if ids := storedSessions(t, stores[1]); fmt.Sprint(ids) != "[backlog-1]" {
			t.Errorf("n2's store has sessions %q, want backlog-1's", ids)
		}
	}
}

// MQTT 5 (3.1.4, 3.1.3.2.2): the connection taken over on n1 gets DISCONNECT 0x8E [MQTT-3.1.4-3]. Its
// will, held back by a Will Delay Interval, is not published when the new connection on n2 has Clean
// Start 0: the session goes on within the delay [MQTT-3.1.3-9]. With Clean Start 1 the session ends, and
// its will is published then, once [MQTT-3.1.2-8]. The session's expiry and subscriptions come along.
func TestClusterTakeoverMQTT5WillDelay(t *testing.T) {
	bs, addrs := startCluster3(t)
	n1, n2 := bs[0], bs[1]
	watch := dialV5(t, addrs[2], &paho5.Connect{ClientID: "will-watch", CleanStart: true})
	watch.sub(0, paho5.SubscribeOptions{Topic: "life/will/#", QoS: 1})
	interestKnown(t, n1, "life", "will", "x")

	// Clean Start 0 on n2: session present, no will.
	old := dialV5(t, addrs[0], willConnect("keep", true, 300, 60))
	old.sub(0, paho5.SubscribeOptions{Topic: "keep/#", QoS: 1})
	holdKnown(t, n2, "keep")
	taker := dialV5(t, addrs[1], &paho5.Connect{ClientID: "keep", Properties: &paho5.ConnectProperties{SessionExpiryInterval: u32(300)}})
	select {
	case d := <-old.gone:
		if d.ReasonCode != packet.ReasonSessionTakenOver {
			t.Errorf("[MQTT-3.1.4-3] taken over: DISCONNECT 0x%02x, want 0x8E", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("[MQTT-3.1.4-3] the connection taken over got no DISCONNECT")
	}
	if !taker.ack.SessionPresent {
		t.Error("taken over across nodes with Clean Start 0: Session Present 0")
	}
	pub := dialV5(t, addrs[1], &paho5.Connect{ClientID: "pub", CleanStart: true})
	pub.pub(&paho5.Publish{Topic: "keep/1", QoS: 1, Payload: []byte("kept")})
	if m := taker.next(5 * time.Second); string(m.Payload) != "kept" {
		t.Errorf("the subscription moved to n2 delivered %q", m.Payload)
	}
	if holds(n1, "keep") {
		t.Error("n1 still holds the session")
	}

	// Clean Start 1 on n2: the session ends, its delayed will goes once.
	took := dialV5(t, addrs[0], willConnect("end", true, 300, 60))
	holdKnown(t, n2, "end")
	fresh := dialV5(t, addrs[1], &paho5.Connect{ClientID: "end", CleanStart: true})
	select {
	case <-took.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("[MQTT-3.1.4-3] the connection taken over (Clean Start 1) got no DISCONNECT")
	}
	if fresh.ack.SessionPresent {
		t.Error("[MQTT-3.2.2-2] Clean Start 1: Session Present 1")
	}
	var got []string
	deadline := time.After(5 * time.Second)
	for len(got) == 0 {
		select {
		case m := <-watch.msgs:
			got = append(got, string(m.Payload))
		case <-deadline:
			t.Fatal("[MQTT-3.1.2-8] the will of the session ended by Clean Start 1 was not published")
		}
	}
	// A quiet period shows a second copy, and the first session's will, if any were published.
	quiet := time.After(time.Second)
	for done := false; !done; {
		select {
		case m := <-watch.msgs:
			got = append(got, string(m.Payload))
		case <-quiet:
			done = true
		}
	}
	if fmt.Sprint(got) != "[end]" {
		t.Errorf("wills published: %q, want end's once and never keep's [MQTT-3.1.3-9]", got)
	}
}

// Two CONNECTs with one client id at once on n1 and n2 end with one session, on one node, and one
// connection: the other is refused (its claim lost to the later one) or closed as taken over, as on one
// node the later CONNECT wins [MQTT-3.1.4-2].
func TestClusterConcurrentConnects(t *testing.T) {
	bs, addrs := startCluster3(t)
	for round := range 5 {
		id := fmt.Sprintf("race-%d", round)
		var wg sync.WaitGroup
		var cs [2]*v311
		var errs [2]error
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cs[i], errs[i] = dial311(t, addrs[i], id, false, "")
			}()
		}
		wg.Wait()
		connected := func() (n int) {
			for _, c := range cs {
				if c != nil && c.c.IsConnectionOpen() {
					n++
				}
			}
			return n
		}
		owners := func() (n int) {
			for _, b := range bs {
				if holds(b, id) {
					n++
				}
			}
			return n
		}
		waitUntil(t, id+": one connection and one session", func() bool { return connected() == 1 && owners() == 1 })
		// Settled, it stays so: watched for well past the claims' verification (claimVerifyDelay, 250 ms).
		deadline := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if connected() != 1 || owners() != 1 {
				t.Fatalf("%s: %d connections, %d sessions after settling (errs %v)", id, connected(), owners(), errs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for i, c := range cs {
			if c != nil && c.c.IsConnectionOpen() && !holds(bs[i], id) {
				t.Errorf("%s: the connection on n%d holds no session there", id, i+1)
			}
		}
	}
}

// A holder that is gone (stopped, or cut off: its route goes, and its holds with it) does not hold a
// CONNECT up: the claim finds no holder at once and the client gets a fresh session (Session Present 0
// [MQTT-3.2.2-3]) on the node it reached. With JetStream-replicated sessions it would get its state back.
func TestClusterTakeoverHolderGone(t *testing.T) {
	bs, addrs := startCluster3(t)
	n1, n2 := bs[0], bs[1]
	c := mustDial311(t, addrs[0], "orphan", false, "")
	if tok := c.c.Subscribe("o/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	c.c.Disconnect(100)
	holdKnown(t, n2, "orphan")
	stopNode(t, n1)
	waitUntil(t, "n1's holds gone with its routes", func() bool { return n2.Cluster().SessionHolders("default", "orphan") == 0 })
	start := time.Now()
	back := mustDial311(t, addrs[1], "orphan", false, "")
	if back.present {
		t.Error("a session nobody handed over: Session Present 1")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("CONNECT took %v with the holder gone", d)
	}
	if !holds(n2, "orphan") {
		t.Error("n2 holds no session for the client")
	}
}

// A client coming back to the node that holds its session resumes it there, without waiting: the
// node's own hold does not answer its claim (the link never hears its own messages), so the claim
// finds no other holder at once.
func TestClusterReconnectSameNode(t *testing.T) {
	bs, addrs := startCluster3(t)
	c := mustDial311(t, addrs[0], "home", false, "")
	if tok := c.c.Subscribe("h/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	c.c.Disconnect(100)
	holdKnown(t, bs[1], "home")
	start := time.Now()
	back := mustDial311(t, addrs[0], "home", false, "")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("CONNECT to the holding node took %v", d)
	}
	if !back.present {
		t.Error("[MQTT-3.2.2-2] the session kept on its own node: Session Present 0")
	}
}
