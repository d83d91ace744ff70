package stomp

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/mqtt"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Tests of Apollo's destination features (issue 4): queue policies from the virtual host's
// configuration, and the SUBSCRIBE/SEND headers that drive them.

// startPolicyBroker starts a server whose default host has the given queue and topic policies, with one
// connector speaking STOMP and MQTT (MQTT topics under "queue/" name queues).
func startPolicyBroker(t *testing.T, vh conf.VirtualHost, mod func(c *conf.Connector, h *Handler)) *broker {
	t.Helper()
	vh.Name, vh.HostNames, vh.Anonymous = "default", []string{"localhost"}, true
	host := virtualhost.New(vh, router.Options{})
	reg := virtualhost.NewRegistry(host)
	t.Cleanup(reg.Close)
	h := newTestHandler(t, reg)
	c := conf.Connector{
		Detect: []string{protocol.MQTT, protocol.STOMP},
		STOMP:  conf.STOMP{Grammar: conf.STOMPGrammarDefaults, DieDelay: testDieDelay, MaxMessageLength: 1 << 20},
		MQTT:   conf.MQTT{Grammar: conf.MQTTGrammarDefaults},
	}
	c.MQTT.QueuePrefix = "queue/"
	if mod != nil {
		mod(&c, h)
	}
	mh := mqtt.NewHandler(reg, zaptest.NewLogger(t))
	srv, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: h, protocol.MQTT: mh}, c)
	return &broker{addr: addrs[0], srv: srv, h: h, host: host}
}

func send(t *testing.T, c *stomp.Conn, dest, body string, hdrs ...string) {
	t.Helper()
	opts := []func(*frame.Frame) error{stomp.SendOpt.Receipt}
	for i := 0; i+1 < len(hdrs); i += 2 {
		opts = append(opts, stomp.SendOpt.Header(hdrs[i], hdrs[i+1]))
	}
	if err := c.Send(dest, "text/plain", []byte(body), opts...); err != nil {
		t.Fatalf("send %s: %v", dest, err)
	}
}

func hdr(k, v string) func(*frame.Frame) error { return stomp.SubscribeOpt.Header(k, v) }

// recvBodies reads n messages from sub.
func recvBodies(t *testing.T, sub *stomp.Subscription, n int) []string {
	t.Helper()
	var out []string
	for range n {
		out = append(out, string(recv(t, sub).Body))
	}
	return out
}

// TestCrossProtocol_MQTTToSTOMPSelector: an MQTT device publishes to a queue; a STOMP consumer with
// client-individual acks and a selector receives only the matching messages, the others stay queued.
func TestCrossProtocol_MQTTToSTOMPSelector(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	o := paho.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID("device").SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetOrderMatters(true).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second)
	dev := paho.NewClient(o)
	if tok := dev.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer dev.Disconnect(0)
	for i := range 10 {
		// Even readings are QoS 1 (persistent), odd ones QoS 0.
		tok := dev.Publish("queue/readings", byte(1-i%2), false, strconv.Itoa(i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("mqtt publish %d: %v", i, tok.Error())
		}
	}
	qd := router.Destination{Kind: router.Queue, Path: []string{"readings"}}
	prototest.WaitFor(t, 5*time.Second, func() bool { return b.host.Router.QueueDepthOf(qd) == 10 })

	c := b.dial(t)
	sub := subscribe(t, c, "/queue/readings", stomp.AckClientIndividual, hdr("selector", "JMSDeliveryMode = 'PERSISTENT'"))
	var got []string
	for range 5 {
		m := recv(t, sub)
		got = append(got, string(m.Body))
		if m.Destination != "/queue/readings" {
			t.Fatalf("destination %q", m.Destination)
		}
		if err := c.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, []string{"0", "2", "4", "6", "8"}) {
		t.Fatalf("selected %q", got)
	}
	expectNone(t, sub, 50*time.Millisecond)
	prototest.WaitFor(t, 5*time.Second, func() bool { return b.host.Router.QueueDepthOf(qd) == 5 })

	// The refused ones wait for a consumer without that selector.
	other := subscribe(t, b.dial(t), "/queue/readings", stomp.AckAuto)
	if got := recvBodies(t, other, 5); !slices.Equal(got, []string{"1", "3", "5", "7", "9"}) {
		t.Fatalf("the rest %q", got)
	}
}

// TestReplyTo_ServiceReplies: requesters send to a service queue with reply-to naming their temporary
// queue; the service answers each through reply-to and every requester gets its own answer.
func TestReplyTo_ServiceReplies(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	svc := b.dial(t)
	requests := subscribe(t, svc, "/queue/rpc", stomp.AckClientIndividual)
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := make(chan struct{})
	defer close(stop)
	wg.Add(1)
	go func() { // the service
		defer wg.Done()
		for {
			select {
			case m, ok := <-requests.C:
				if !ok || m.Err != nil {
					return
				}
				_ = svc.Send(m.Header.Get("reply-to"), "text/plain", append([]byte("re:"), m.Body...),
					stomp.SendOpt.Header("correlation-id", m.Header.Get("correlation-id")))
				_ = svc.Ack(m)
			case <-stop:
				return
			}
		}
	}()
	for i := range 3 {
		req := b.dial(t)
		replies := subscribe(t, req, "/temp-queue/answers", stomp.AckAuto)
		id := strconv.Itoa(i)
		send(t, req, "/queue/rpc", "q"+id, "reply-to", "/temp-queue/answers", "correlation-id", id)
		m := recv(t, replies)
		if string(m.Body) != "re:q"+id || m.Header.Get("correlation-id") != id || m.Destination != "/temp-queue/answers" {
			t.Fatalf("requester %d got %q (%v)", i, m.Body, m.Header)
		}
	}
}

// TestNACK_DeadLetterAfterNakLimit: two consumers of one queue, one NACKs everything. Every message is
// delivered to someone, the NACKed ones end in the DLQ after nak_limit deliveries, nothing is lost and
// nothing is acknowledged twice. Redelivered messages carry the redeliveries header.
func TestNACK_DeadLetterAfterNakLimit(t *testing.T) {
	const n, limit = 60, 3
	b := startPolicyBroker(t, conf.VirtualHost{Queues: []conf.QueuePolicy{{Pattern: "work", NakLimit: limit, DLQ: "dlq.*"}}},
		func(c *conf.Connector, _ *Handler) { c.STOMP.AddRedeliveriesHeader = "redeliveries" })
	nc, ac := b.dial(t), b.dial(t)
	nsub := subscribe(t, nc, "/queue/work", stomp.AckClientIndividual, hdr("prefetch-count", "4"))
	asub := subscribe(t, ac, "/queue/work", stomp.AckClientIndividual, hdr("prefetch-count", "4"))

	var mu sync.Mutex
	nacks := map[string]int{}
	acked := map[string]int{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	consume := func(c *stomp.Conn, sub *stomp.Subscription, nack bool) {
		defer wg.Done()
		for {
			select {
			case m, ok := <-sub.C:
				if !ok || m.Err != nil {
					return
				}
				body := string(m.Body)
				mu.Lock()
				if nack {
					nacks[body]++
					if r := m.Header.Get("redeliveries"); r == "" {
						t.Errorf("no redeliveries header on %s", body)
					}
				} else {
					acked[body]++
				}
				mu.Unlock()
				if nack {
					_ = c.Nack(m)
				} else {
					_ = c.Ack(m)
				}
			case <-stop:
				return
			}
		}
	}
	wg.Add(2)
	go consume(nc, nsub, true)
	go consume(ac, asub, false)
	p := b.dial(t)
	for i := range n {
		send(t, p, "/queue/work", strconv.Itoa(i))
	}
	dlq := router.Destination{Kind: router.Queue, Path: []string{"dlq", "work"}}
	prototest.WaitFor(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)+b.host.Router.QueueDepthOf(dlq) == n
	})
	close(stop)
	wg.Wait()

	// No sync receipt: the DLQ may hold more MESSAGEs than go-stomp buffers, and its reader would block.
	dead, err := b.dial(t).Subscribe("/queue/dlq.work", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	inDLQ := recvBodies(t, dead, n-len(acked))
	expectNone(t, dead, 50*time.Millisecond)
	for _, body := range inDLQ {
		if acked[body] != 0 {
			t.Fatalf("%s both acknowledged and dead-lettered", body)
		}
		if nacks[body] != limit {
			t.Fatalf("%s dead-lettered after %d NACKs, want %d", body, nacks[body], limit)
		}
	}
	for body, k := range acked {
		if k != 1 {
			t.Fatalf("%s acknowledged %d times", body, k)
		}
		if nacks[body] >= limit {
			t.Fatalf("%s acknowledged after %d NACKs", body, nacks[body])
		}
	}
	if len(acked)+len(inDLQ) != n || len(inDLQ) == 0 || len(acked) == 0 {
		t.Fatalf("acked %d + dead %d, want %d with both non-zero", len(acked), len(inDLQ), n)
	}
	if d := b.host.Router.QueueDepthOf(router.Destination{Kind: router.Queue, Path: []string{"work"}}); d != 0 {
		t.Fatalf("work queue still holds %d", d)
	}
}

// TestSEND_PriorityOrdersQueue: higher priority first, FIFO within a priority.
func TestSEND_PriorityOrdersQueue(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	c := b.dial(t)
	for i, p := range []string{"1", "9", "", "9", "5"} {
		send(t, c, "/queue/prio", fmt.Sprintf("%d:%s", i, p), "priority", p)
	}
	sub := subscribe(t, c, "/queue/prio", stomp.AckAuto)
	if got := recvBodies(t, sub, 5); !slices.Equal(got, []string{"1:9", "3:9", "4:5", "0:1", "2:"}) {
		t.Fatalf("order %q", got)
	}
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SEND\ndestination:/queue/prio\npriority:high\n\nx\x00")
	r.expectError("invalid priority")
}

// TestSEND_MessageGroups: messages of one group (message_group, or JMSXGroupID) all go to one consumer.
func TestSEND_MessageGroups(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	c1, c2 := b.dial(t), b.dial(t)
	s1 := subscribe(t, c1, "/queue/groups", stomp.AckAuto)
	s2 := subscribe(t, c2, "/queue/groups", stomp.AckAuto)
	p := b.dial(t)
	for i := range 12 {
		g := string(rune('a' + i%3))
		name := "message_group"
		if i%2 == 1 {
			name = "JMSXGroupID"
		}
		send(t, p, "/queue/groups", g+strconv.Itoa(i), name, g)
	}
	owner := map[byte]int{}
	total := 0
	collect := func(sub *stomp.Subscription, who int) {
		for {
			select {
			case m := <-sub.C:
				g := m.Body[0]
				if o, ok := owner[g]; ok && o != who {
					t.Fatalf("group %c went to consumers %d and %d", g, o, who)
				}
				owner[g] = who
				total++
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}
	collect(s1, 1)
	collect(s2, 2)
	if total != 12 || len(owner) != 3 {
		t.Fatalf("received %d messages in %d groups", total, len(owner))
	}
}

// TestSUBSCRIBE_Browser: browser:true sees every queued message without consuming it, then a MESSAGE
// with browser:end; from-seq and include-seq expose and select queue sequence numbers.
func TestSUBSCRIBE_Browser(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	c := b.dial(t)
	for i := range 4 {
		send(t, c, "/queue/browse", strconv.Itoa(i))
	}
	br := subscribe(t, c, "/queue/browse", stomp.AckAuto, hdr("browser", "true"), hdr("include-seq", "seq"))
	for i := range 4 {
		m := recv(t, br)
		if string(m.Body) != strconv.Itoa(i) || m.Header.Get("seq") != strconv.Itoa(i+1) {
			t.Fatalf("browse %d: %q seq %q", i, m.Body, m.Header.Get("seq"))
		}
	}
	if end := recv(t, br); end.Header.Get("browser") != "end" || len(end.Body) != 0 {
		t.Fatalf("want the browser:end marker, got %q %v", end.Body, end.Header)
	}
	send(t, c, "/queue/browse", "later")
	expectNone(t, br, 50*time.Millisecond)

	from := subscribe(t, c, "/queue/browse", stomp.AckAuto, hdr("browser", "true"), hdr("from-seq", "3"))
	if got := recvBodies(t, from, 4); !slices.Equal(got, []string{"2", "3", "later", ""}) {
		t.Fatalf("from-seq 3 browse %q", got)
	}
	// Nothing was consumed.
	cons := subscribe(t, c, "/queue/browse", stomp.AckAuto)
	if got := recvBodies(t, cons, 5); !slices.Equal(got, []string{"0", "1", "2", "3", "later"}) {
		t.Fatalf("consumer after browsing got %q", got)
	}
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:1\ndestination:/topic/x\nbrowser:true\n\n\x00")
	r.expectError("invalid browser subscription")
}

// TestSUBSCRIBE_FromSeqConsumer: a consumer with from-seq takes only messages from that sequence number.
func TestSUBSCRIBE_FromSeqConsumer(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	c := b.dial(t)
	for i := range 4 {
		send(t, c, "/queue/fs", strconv.Itoa(i))
	}
	sub := subscribe(t, c, "/queue/fs", stomp.AckAuto, hdr("from-seq", "3"), hdr("include-seq", "seq"))
	for i, want := range []string{"2", "3"} {
		if m := recv(t, sub); string(m.Body) != want || m.Header.Get("seq") != strconv.Itoa(i+3) {
			t.Fatalf("got %q seq %q", m.Body, m.Header.Get("seq"))
		}
	}
	expectNone(t, sub, 50*time.Millisecond)
}

// TestSUBSCRIBE_Exclusive: while an exclusive consumer lives only it receives; the next takes over.
func TestSUBSCRIBE_Exclusive(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	c1, c2, c3 := b.dial(t), b.dial(t), b.dial(t)
	plain := subscribe(t, c3, "/queue/ex", stomp.AckAuto)
	x1 := subscribe(t, c1, "/queue/ex", stomp.AckAuto, hdr("exclusive", "true"))
	x2 := subscribe(t, c2, "/queue/ex", stomp.AckAuto, hdr("exclusive", "true"))
	p := b.dial(t)
	for i := range 4 {
		send(t, p, "/queue/ex", strconv.Itoa(i))
	}
	if got := recvBodies(t, x1, 4); !slices.Equal(got, []string{"0", "1", "2", "3"}) {
		t.Fatalf("exclusive got %q", got)
	}
	expectNone(t, x2, 30*time.Millisecond)
	expectNone(t, plain, 30*time.Millisecond)
	// go-stomp's Unsubscribe can miss its receipt's wake-up and wait 30 s; leaving closes the consumer too.
	if err := c1.Disconnect(); err != nil {
		t.Fatal(err)
	}
	send(t, p, "/queue/ex", "after")
	if m := recv(t, x2); string(m.Body) != "after" {
		t.Fatalf("takeover got %q", m.Body)
	}
	expectNone(t, plain, 30*time.Millisecond)
}

// TestSUBSCRIBE_Credit: credit:count,bytes bounds the unacknowledged window.
func TestSUBSCRIBE_Credit(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	c := b.dial(t)
	for i := range 5 {
		send(t, c, "/queue/credit", strconv.Itoa(i))
	}
	sub := subscribe(t, c, "/queue/credit", stomp.AckClientIndividual, hdr("credit", "2"))
	a, bm := recv(t, sub), recv(t, sub)
	expectNone(t, sub, 50*time.Millisecond)
	_ = c.Ack(a)
	if m := recv(t, sub); string(m.Body) != "2" {
		t.Fatalf("after ack got %q", m.Body)
	}
	_ = bm
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SUBSCRIBE\nid:1\ndestination:/queue/credit\ncredit:0\n\n\x00")
	r.expectError("invalid credit")
}

// TestSEND_ExpiresAndTTL: a message whose expires time or ttl has passed is not delivered.
func TestSEND_ExpiresAndTTL(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{}, nil)
	c := b.dial(t)
	past := strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)
	send(t, c, "/queue/exp", "expired", "expires", past)
	send(t, c, "/queue/exp", "short", "ttl", "20")
	send(t, c, "/queue/exp", "long", "ttl", "60000")
	send(t, c, "/queue/exp", "forever")
	time.Sleep(40 * time.Millisecond) // let the 20 ms ttl run out
	sub := subscribe(t, c, "/queue/exp", stomp.AckAuto)
	m := recv(t, sub)
	if string(m.Body) != "long" || m.Header.Get("expires") == "" {
		t.Fatalf("got %q expires %q", m.Body, m.Header.Get("expires"))
	}
	if m := recv(t, sub); string(m.Body) != "forever" {
		t.Fatalf("got %q", m.Body)
	}
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SEND\ndestination:/queue/exp\nttl:soon\n\nx\x00")
	r.expectError("invalid ttl")
}

// TestQueuePolicy_FullPolicies: quota_messages with full_policy block (SEND waits, then ERROR),
// drop_head (the oldest goes) and drop_tail (the new one goes).
func TestQueuePolicy_FullPolicies(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{Queues: []conf.QueuePolicy{
		{Pattern: "head", QuotaMessages: 2, FullPolicy: conf.FullDropHead},
		{Pattern: "tail", QuotaMessages: 2, FullPolicy: conf.FullDropTail},
		{Pattern: "block", QuotaMessages: 2, FullPolicy: conf.FullBlock},
		{Pattern: "bytes", Quota: 10},
	}}, func(_ *conf.Connector, h *Handler) { h.QueueFullWait = 200 * time.Millisecond })
	c := b.dial(t)
	for _, q := range []string{"head", "tail"} {
		for i := range 4 {
			send(t, c, "/queue/"+q, strconv.Itoa(i)) // receipts: drop policies accept the SEND
		}
	}
	head := subscribe(t, c, "/queue/head", stomp.AckAuto)
	if got := recvBodies(t, head, 2); !slices.Equal(got, []string{"2", "3"}) {
		t.Fatalf("drop_head kept %q", got)
	}
	tail := subscribe(t, c, "/queue/tail", stomp.AckAuto)
	if got := recvBodies(t, tail, 2); !slices.Equal(got, []string{"0", "1"}) {
		t.Fatalf("drop_tail kept %q", got)
	}

	// block: the third SEND waits; a consumer making room lets it through.
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	r.send("SEND\ndestination:/queue/block\nreceipt:1\n\na\x00SEND\ndestination:/queue/block\nreceipt:2\n\nb\x00" +
		"SEND\ndestination:/queue/block\nreceipt:3\n\nc\x00")
	for _, want := range []string{"1", "2"} {
		if f := r.read(); f.Header.Get(frame.ReceiptId) != want {
			t.Fatalf("got %s %v, want receipt %s", f.Command, f.Header, want)
		}
	}
	blk := subscribe(t, c, "/queue/block", stomp.AckAuto)
	if f := r.read(); f.Header.Get(frame.ReceiptId) != "3" {
		t.Fatalf("got %s %v, want receipt 3", f.Command, f.Header)
	}
	if got := recvBodies(t, blk, 3); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("block got %q", got)
	}
	// Nobody makes room: ERROR after QueueFullWait. The byte quota counts too.
	r = b.raw(t)
	r.connect("accept-version:1.2", "host:default")
	start := time.Now()
	r.send("SEND\ndestination:/queue/bytes\nreceipt:1\n\n12345678\x00SEND\ndestination:/queue/bytes\n\n123\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s", f.Command)
	}
	if f := r.expectError("send failed"); !strings.Contains(string(f.Body), "queue full") {
		t.Fatalf("ERROR body %q", f.Body)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("ERROR after %s, before QueueFullWait", el)
	}
}

// TestQueuePolicy_AutoDeleteAfter: an unused empty queue is kept for auto_delete_after (its sequence
// numbers continue), then forgotten.
func TestQueuePolicy_AutoDeleteAfter(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{Queues: []conf.QueuePolicy{{Pattern: "keep.*", AutoDeleteAfter: 300 * time.Millisecond}}}, nil)
	d := router.Destination{Kind: router.Queue, Path: []string{"keep", "a"}}
	for i, want := range []string{"1", "2"} {
		// A connection per round: leaving closes the consumer (go-stomp's Unsubscribe can stall 30 s).
		c := b.dial(t)
		sub := subscribe(t, c, "/queue/keep.a", stomp.AckAuto, hdr("include-seq", "seq"))
		send(t, c, "/queue/keep.a", want)
		if m := recv(t, sub); m.Header.Get("seq") != want {
			t.Fatalf("round %d: seq %q, want %s (the queue was kept)", i, m.Header.Get("seq"), want)
		}
		if err := c.Disconnect(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Give the session's cleanup a moment; the queue must still be there.
			time.Sleep(50 * time.Millisecond)
			if !b.host.Router.HasQueue(d) {
				t.Fatal("queue forgotten before auto_delete_after")
			}
		}
	}
	prototest.WaitFor(t, 5*time.Second, func() bool { return !b.host.Router.HasQueue(d) })
}

// TestTopicPolicy_SlowConsumerBlock: slow_consumer_policy block holds a producer back (its socket is not
// read) while a subscriber is over its outbound window, so a subscriber slower than the producer but
// keeping up on average loses nothing; under slow_consumer_policy queue, messages it cannot take are
// dropped (counted).
func TestTopicPolicy_SlowConsumerBlock(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{Topics: []conf.TopicPolicy{{Pattern: "slow.**", SlowConsumerPolicy: conf.SlowBlock},
		{Pattern: "fast.**", SlowConsumerPolicy: conf.SlowQueue}}}, nil)
	const n = 500 // × 64 KiB: four times the outbound limit
	produce := func(dest string) chan struct{} {
		p := b.raw(t)
		p.connect("accept-version:1.2", "host:default")
		done := make(chan struct{})
		go func() {
			defer close(done)
			body := strings.Repeat("x", flowBody-16)
			for i := range n {
				_ = p.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
				if _, err := io.WriteString(p.nc, fmt.Sprintf("SEND\ndestination:%s\n\n%d:%s\x00", dest, i, body)); err != nil {
					t.Errorf("send %d: %v", i, err)
					return
				}
			}
		}()
		return done
	}
	subscribe := func(dest string) *rawConn {
		r := b.raw(t)
		r.connect("accept-version:1.2", "host:default")
		r.send("SUBSCRIBE\nid:t\ndestination:" + dest + "\nreceipt:s\n\n\x00")
		if f := r.read(); f.Command != frame.RECEIPT {
			t.Fatalf("got %s", f.Command)
		}
		return r
	}

	r := subscribe("/topic/slow.feed")
	done := produce("/topic/slow.feed")
	for i := range n {
		f := r.read()
		if !strings.HasPrefix(string(f.Body), strconv.Itoa(i)+":") {
			t.Fatalf("message %d missing or out of order: %.10q", i, f.Body)
		}
		time.Sleep(time.Millisecond) // slower than the producer
	}
	<-done
	if st := b.host.Router.Stats(); st.Dropped != 0 || b.h.Dropped() != 0 {
		t.Fatalf("dropped %d (router) %d (sinks) under slow_consumer_policy block", st.Dropped, b.h.Dropped())
	}

	// Under queue a subscriber that does not read loses what does not fit, and the producer is not held
	// back.
	subscribe("/topic/fast.feed")
	<-produce("/topic/fast.feed")
	prototest.WaitFor(t, 5*time.Second, func() bool { return b.h.Dropped() > 0 })
}

// TestNACK_DeadLetterVersion11AndTransactions: a STOMP 1.1 NACK (message-id + subscription) counts toward
// nak_limit; a NACK in an aborted transaction does not; one in a committed transaction does.
func TestNACK_DeadLetterVersion11AndTransactions(t *testing.T) {
	b := startPolicyBroker(t, conf.VirtualHost{Queues: []conf.QueuePolicy{{Pattern: "tx", NakLimit: 2, DLQ: "tx.dead"}}}, nil)
	c := b.dial(t, stomp.ConnOpt.AcceptVersion(stomp.V11))
	if c.Version() != stomp.V11 {
		t.Fatalf("version %s", c.Version())
	}
	send(t, c, "/queue/tx", "m")
	sub := subscribe(t, c, "/queue/tx", stomp.AckClientIndividual)
	m := recv(t, sub)
	tx := c.Begin()
	if err := tx.Nack(m); err != nil {
		t.Fatal(err)
	}
	if err := tx.Abort(); err != nil {
		t.Fatal(err)
	}
	expectNone(t, sub, 50*time.Millisecond) // still in flight: the NACK never happened
	if err := c.Nack(m); err != nil {       // first NACK: redelivered
		t.Fatal(err)
	}
	m = recv(t, sub)
	if m.Header.Get("redelivered") != "true" {
		t.Fatalf("redelivery without redelivered:true: %v", m.Header)
	}
	tx = c.Begin()
	if err := tx.Nack(m); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil { // second NACK: nak_limit 2 reached
		t.Fatal(err)
	}
	dead := subscribe(t, c, "/queue/tx.dead", stomp.AckAuto)
	if d := recv(t, dead); string(d.Body) != "m" {
		t.Fatalf("DLQ got %q", d.Body)
	}
	expectNone(t, sub, 50*time.Millisecond)
}
