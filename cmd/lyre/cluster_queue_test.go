package main

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
)

// freeAddrs returns n loopback addresses whose ports were free a moment ago: a JetStream cluster's nodes
// must list each other's route listeners before any of them starts.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	return addrs
}

// meshConfigs returns the cluster blocks of a JetStream cluster of len(routes) nodes n1, n2, ..., each
// routing to all the others, with JetStream under dirs[i] and replicas r.
func meshConfigs(routes, dirs []string, r int) []string {
	out := make([]string, len(routes))
	for i := range routes {
		var others []string
		for j, a := range routes {
			if j != i {
				others = append(others, fmt.Sprintf("%q", a))
			}
		}
		out[i] = fmt.Sprintf("cluster {\n  name = \"q\"\n  node = \"n%d\"\n  listen = %q\n  routes = [%s]\n  directory = %q\n  replicas = %d\n}\n",
			i+1, routes[i], strings.Join(others, ", "), dirs[i], r)
	}
	return out
}

// qtally counts the deliveries of each message body, from any consumer.
type qtally struct {
	mu    sync.Mutex
	seen  map[string]int
	by    map[string]int // deliveries per consumer
	total int
}

func newQTally() *qtally { return &qtally{seen: map[string]int{}, by: map[string]int{}} }

func (ty *qtally) add(consumer, body string) {
	ty.mu.Lock()
	ty.seen[body]++
	ty.by[consumer]++
	ty.total++
	ty.mu.Unlock()
}

func (ty *qtally) count() (distinct, total int) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	return len(ty.seen), ty.total
}

// stompQueueConsumer consumes queue on c with client-individual acknowledgements and a small prefetch,
// acknowledging from its own goroutine (not the one go-stomp delivers on), until c closes.
func stompQueueConsumer(t *testing.T, c *stomp.Conn, name, queue string, ty *qtally) {
	t.Helper()
	sub, err := c.Subscribe(queue, stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "20"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for m := range sub.C {
			if m.Err != nil {
				return
			}
			ty.add(name, string(m.Body))
			if err := c.Ack(m); err != nil {
				return
			}
		}
	}()
	stompBarrier(t, c)
}

// TestClusterQueueExactlyOnceAcrossThreeNodes: a queue with a consumer on each of three JetStream nodes
// (two STOMP, one MQTT through the queue prefix) and producers on every node (STOMP with receipts, MQTT
// QoS 1): every message is consumed once in the whole cluster, wherever it was sent.
func TestClusterQueueExactlyOnceAcrossThreeNodes(t *testing.T) {
	routes := freeAddrs(t, 3)
	blocks := meshConfigs(routes, []string{t.TempDir(), t.TempDir(), t.TempDir()}, 3)
	var brokers []*Broker
	var addrs []string
	for i := range 3 {
		b, a := startBroker(t, testConfig+blocks[i])
		brokers, addrs = append(brokers, b), append(addrs, a)
	}
	for i, b := range brokers {
		waitUntilFor(t, 60*time.Second, fmt.Sprintf("n%d's clustered queues", i+1), func() bool { return b.Cluster().QueuesReady("default") })
	}

	ty := newQTally()
	stompQueueConsumer(t, stompClient(t, addrs[0]), "stomp-n1", "/queue/work", ty)
	stompQueueConsumer(t, stompClient(t, addrs[1]), "stomp-n2", "/queue/work", ty)
	mq := mqttClient(t, addrs[2], "consumer-n3")
	if tok := mq.Subscribe("queue/work", 1, func(_ paho.Client, m paho.Message) { ty.add("mqtt-n3", string(m.Payload())) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe: %v", tok.Error())
	}

	const perProducer = 150
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i, a := range []string{addrs[0], addrs[2]} {
		c := stompClient(t, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perProducer {
				if err := c.Send("/queue/work", "text/plain", fmt.Appendf(nil, "stomp%d-%d", i, j),
					stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
					errs <- fmt.Errorf("stomp send %d on producer %d: %w", j, i, err)
					return
				}
			}
		}()
	}
	pub := mqttClient(t, addrs[1], "producer-n2")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := range perProducer {
			tok := pub.Publish("queue/work", 1, false, fmt.Sprintf("mqtt-%d", j))
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("mqtt publish %d: %v", j, tok.Error())
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const want = 3 * perProducer
	waitUntilFor(t, 60*time.Second, fmt.Sprintf("%d messages consumed", want), func() bool {
		d, _ := ty.count()
		return d == want
	})
	// Anything redelivered would arrive within an ack wait; a marker sent last and consumed shows the
	// consumers are caught up, and a look at the counts after it shows no copy came meanwhile.
	waitUntilFor(t, 30*time.Second, "the JetStream backlog drained", func() bool {
		for _, b := range brokers {
			st := b.Cluster().QueueStats("default")
			if st.Fed != st.Acked+st.Returned {
				return false
			}
		}
		return true
	})
	ty.mu.Lock()
	defer ty.mu.Unlock()
	for body, n := range ty.seen {
		if n != 1 {
			t.Errorf("%q consumed %d times", body, n)
		}
	}
	if ty.total != want {
		t.Errorf("%d deliveries of %d messages", ty.total, want)
	}
	var fed []uint64
	for _, b := range brokers {
		fed = append(fed, b.Cluster().QueueStats("default").Fed)
	}
	t.Logf("deliveries per consumer: %v; messages fetched per node: %v", ty.by, fed)
}
