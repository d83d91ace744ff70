package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router/cluster"
)

// opsConfig is a node serving MQTT, STOMP and management on one loopback port, anonymous, with a
// cluster block: cluster is what goes inside it besides name and node.
func opsConfig(node, cluster string) string {
	return fmt.Sprintf(`
connector "auto" {
  bind       = "tcp://127.0.0.1:0"
  detect     = ["mqtt", "stomp", "http"]
  management = true
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
}
cluster {
  name = "ops"
  node = %q
%s}
`, node, cluster)
}

// embedded is the inside of a cluster block for an embedded server on a free loopback port with routes
// (and advertise, when not "").
func embedded(advertise string, routes ...string) string {
	s := "  listen = \"127.0.0.1:0\"\n"
	if len(routes) > 0 {
		q := make([]string, len(routes))
		for i, r := range routes {
			q[i] = fmt.Sprintf("%q", r)
		}
		s += "  routes = [" + strings.Join(q, ", ") + "]\n"
	}
	if advertise != "" {
		s += fmt.Sprintf("  advertise = %q\n", advertise)
	}
	return s
}

// opsNode is one running node and an MQTT client on it subscribed to the node's inbox, ops/<name>/#.
type opsNode struct {
	name string
	b    *Broker
	addr string
	mq   paho.Client
	in   <-chan paho.Message
}

func startOpsNode(t *testing.T, name, clusterBlock string) *opsNode {
	t.Helper()
	b, addr := startBroker(t, opsConfig(name, clusterBlock))
	n := &opsNode{name: name, b: b, addr: addr, mq: mqttClient(t, addr, "c-"+name)}
	n.in = mqttSubscribe(t, n.mq, "ops/"+name+"/#", 1)
	return n
}

func (n *opsNode) link() *cluster.Link { return n.b.Cluster() }

// inboxPath is a topic in n's inbox, as the cluster link sees it.
func (n *opsNode) inboxPath() []string { return []string{"ops", n.name, "x"} }

// clusterInfo reads GET /api/v1/cluster.
func (n *opsNode) clusterInfo(t *testing.T) management.ClusterInfo {
	t.Helper()
	resp, err := http.Get("http://" + n.addr + "/api/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ci management.ClusterInfo
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/cluster on %s: %s", n.name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&ci); err != nil {
		t.Fatal(err)
	}
	return ci
}

// metric reads one lyre_cluster_ metric from n's /metrics.
func (n *opsNode) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return prototest.Scrape(t, "http://"+n.addr+"/metrics", "", "").Get(t, name, labels...)
}

// peers returns the names of the peers n's link has a route to now.
func peersUp(l *cluster.Link) []string {
	var up []string
	for _, p := range l.Status().Peers {
		if p.Connected {
			up = append(up, p.Name)
		}
	}
	return up
}

// waitMesh waits until each node has a route to every other one, and to no one else.
func waitMesh(t *testing.T, nodes ...*opsNode) {
	t.Helper()
	for _, n := range nodes {
		var want []string
		for _, o := range nodes {
			if o != n {
				want = append(want, o.name)
			}
		}
		waitLong(t, fmt.Sprintf("%s's routes to %v", n.name, want), func() bool {
			return fmt.Sprint(peersUp(n.link())) == fmt.Sprint(want)
		})
	}
}

// waitLong is waitUntil with room for NATS routes to reconnect (a second between attempts) on a busy
// machine.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// embeddedInterest: n's inbox subscription has reached from's embedded server.
func embeddedInterest(from, to *opsNode) bool {
	return from.link().Interest("default", to.inboxPath()) > 0
}

// exchangeAll has every node publish (QoS 1) one message, then a marker, into every other node's inbox,
// once interested(from, to) says to's interest has reached from; each inbox must get exactly one
// message from each other node, none from anyone else, and nothing whose body is in banned.
func exchangeAll(t *testing.T, tag string, interested func(from, to *opsNode) bool, nodes []*opsNode, banned ...string) {
	t.Helper()
	for _, from := range nodes {
		for _, to := range nodes {
			if from != to {
				waitLong(t, fmt.Sprintf("%s's interest on %s", to.name, from.name), func() bool { return interested(from, to) })
			}
		}
	}
	for _, from := range nodes {
		for _, to := range nodes {
			if from != to {
				topic := "ops/" + to.name + "/" + from.name
				mqttPublish(t, from.mq, topic, 1, tag+":"+from.name)
				mqttPublish(t, from.mq, topic, 1, tag+"-end:"+from.name)
			}
		}
	}
	for _, to := range nodes {
		got := map[string]int{}
		ends := 0
		for ends < len(nodes)-1 {
			select {
			case m := <-to.in:
				body := string(m.Payload())
				for _, b := range banned {
					if body == b {
						t.Errorf("%s got %q, published across the partition", to.name, body)
					}
				}
				if strings.HasPrefix(body, tag+"-end:") {
					ends++
				} else {
					got[body]++
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: %d of %d markers; got %v", to.name, ends, len(nodes)-1, got)
			}
		}
		want := map[string]int{}
		for _, from := range nodes {
			if from != to {
				want[tag+":"+from.name] = 1
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s got %v, want %v", to.name, got, want)
		}
	}
}

// local checks that n's own clients still reach each other: its MQTT client gets what a STOMP client on
// the same node sends to its inbox.
func local(t *testing.T, n *opsNode, body string) {
	t.Helper()
	st := stompClient(t, n.addr)
	if err := st.Send("/topic/ops."+n.name+".local", "text/plain", []byte(body), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-n.in:
		if string(m.Payload()) != body {
			t.Fatalf("%s's local subscriber got %q, want %q", n.name, m.Payload(), body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s's local subscriber got nothing", n.name)
	}
}

// A fourth node started later, with a route to one node only, reaches the three others both ways (NATS
// gossips the rest of the mesh); nodes that stop, the seed among them, leave the others working.
func TestClusterNodesJoinAndLeave(t *testing.T) {
	n1 := startOpsNode(t, "n1", embedded(""))
	seed := n1.link().RouteAddr().String()
	n2 := startOpsNode(t, "n2", embedded("", seed))
	n3 := startOpsNode(t, "n3", embedded("", seed))
	waitMesh(t, n1, n2, n3)
	exchangeAll(t, "three", embeddedInterest, []*opsNode{n1, n2, n3})

	n4 := startOpsNode(t, "n4", embedded("", n2.link().RouteAddr().String()))
	waitMesh(t, n1, n2, n3, n4)
	exchangeAll(t, "four", embeddedInterest, []*opsNode{n1, n2, n3, n4})
	if ci := n1.clusterInfo(t); !ci.Connected || len(ci.Peers) != 3 || ci.Mode != "embedded" || ci.Node != "n1" {
		t.Fatalf("n1's cluster state with four nodes: %+v", ci)
	}
	if v := n4.metric(t, "lyre_cluster_peers"); v != 3 {
		t.Fatalf("n4's lyre_cluster_peers = %v, want 3", v)
	}

	// n4 leaves: the others see it go and go on.
	stopBroker(t, n4.b)
	waitMesh(t, n1, n2, n3)
	exchangeAll(t, "after-n4", embeddedInterest, []*opsNode{n1, n2, n3})
	ci := n2.clusterInfo(t)
	if !ci.Connected || ci.Disconnects != 0 || len(ci.Peers) != 3 {
		t.Fatalf("n2 after n4 left: %+v", ci)
	}
	for _, p := range ci.Peers {
		if p.Connected != (p.Name != "n4") {
			t.Errorf("n2's peer %s connected = %v", p.Name, p.Connected)
		}
	}
	if v := n2.metric(t, "lyre_cluster_peer_connected", "peer", "n4"); v != 0 {
		t.Errorf("n2's lyre_cluster_peer_connected{peer=n4} = %v, want 0", v)
	}

	// The seed leaves: n2 and n3 had their own route (gossip), and keep it.
	stopBroker(t, n1.b)
	waitMesh(t, n2, n3)
	exchangeAll(t, "after-n1", embeddedInterest, []*opsNode{n2, n3})
}

// cutProxy forwards TCP connections to their targets until it is cut: then it closes every connection
// it carries and closes new ones as soon as they are accepted, until it is healed. Frozen, it forwards
// nothing but closes nothing either, as a network that silently drops every packet.
type cutProxy struct {
	t    *testing.T
	wg   sync.WaitGroup
	quit chan struct{}

	mu     sync.Mutex
	thaw   *sync.Cond // broadcast when frozen or closed changes
	cut    bool
	frozen bool
	closed bool
	conns  map[net.Conn]bool
	lns    []net.Listener
}

func newCutProxy(t *testing.T) *cutProxy {
	p := &cutProxy{t: t, conns: map[net.Conn]bool{}, quit: make(chan struct{})}
	p.thaw = sync.NewCond(&p.mu)
	t.Cleanup(p.close)
	return p
}

// pass waits while the proxy is frozen; false when c was closed meanwhile (or the proxy was).
func (p *cutProxy) pass(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.frozen && !p.closed && p.conns[c] {
		p.thaw.Wait()
	}
	return !p.closed && p.conns[c]
}

// setFrozen freezes the proxy or thaws it; thawing closes the connections that were frozen (their ends
// gave up on them meanwhile) and lets new ones through.
func (p *cutProxy) setFrozen(frozen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = frozen
	if !frozen {
		for c := range p.conns {
			_ = c.Close()
			delete(p.conns, c)
		}
	}
	p.thaw.Broadcast()
}

// forward listens on a loopback port and returns its address, and a function that sets the address
// connections go to: a connection accepted before it is set waits for it.
func (p *cutProxy) forward() (addr string, target func(string)) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.t.Fatal(err)
	}
	var to string
	ready := make(chan struct{})
	p.mu.Lock()
	p.lns = append(p.lns, ln)
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				select {
				case <-ready:
					p.pipe(c, to)
				case <-p.quit:
					_ = c.Close()
				}
			}()
		}
	}()
	return ln.Addr().String(), func(a string) { to = a; close(ready) }
}

// track registers c, unless the proxy is cut or closed.
func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *cutProxy) pipe(c net.Conn, to string) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	u, err := net.Dial("tcp", to)
	if err != nil {
		return
	}
	defer u.Close()
	if !p.track(u) {
		return
	}
	done := make(chan struct{}, 2)
	copyThen := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && (!p.pass(src) || !p.pass(dst)) {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil || err != nil {
				break
			}
		}
		// Either side ending ends both, as a cut does.
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go copyThen(u, c)
	go copyThen(c, u)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// setCut cuts (closing every connection) or heals the proxy.
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
			delete(p.conns, c)
		}
	}
	p.thaw.Broadcast()
}

func (p *cutProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.thaw.Broadcast()
	close(p.quit)
	for _, ln := range p.lns {
		_ = ln.Close()
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// waitSys waits until n's retained $SYS/broker/<name> is want, read by a new MQTT subscriber.
func waitSys(t *testing.T, n *opsNode, name, want string) {
	t.Helper()
	c := mqttClient(t, n.addr, "sys-"+n.name)
	defer c.Disconnect(0)
	ch := mqttSubscribe(t, c, "$SYS/broker/"+name, 0)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-ch:
			if string(m.Payload()) == want {
				return
			}
		case <-deadline:
			t.Fatalf("%s: $SYS/broker/%s never %q", n.name, name, want)
		}
	}
}

// startPartitionable starts three meshed nodes whose node 3 reaches the others only through proxy: it
// dials node 1 through one forward and tells the others (NATS gossip) to dial it through another.
func startPartitionable(t *testing.T) (*cutProxy, []*opsNode) {
	t.Helper()
	proxy := newCutProxy(t)
	n1 := startOpsNode(t, "n1", embedded(""))
	l1 := n1.link().RouteAddr().String()
	n2 := startOpsNode(t, "n2", embedded("", l1))
	p1, toN1 := proxy.forward()
	toN1(l1)
	p3, toN3 := proxy.forward()
	n3 := startOpsNode(t, "n3", embedded(p3, p1))
	toN3(n3.link().RouteAddr().String())
	nodes := []*opsNode{n1, n2, n3}
	waitMesh(t, nodes...)
	return proxy, nodes
}

// A partition of one node: node 3's routes (both ways) go through a proxy the test cuts. While cut,
// nodes 1 and 2 exchange messages, node 3's own clients exchange theirs, node 3 says it is not connected
// (API, metric, $SYS) and nothing crosses the partition, not even later (at most once). Healed, node 3
// rejoins by itself, interest propagates again, messages cross again and every view says connected.
func TestClusterPartition(t *testing.T) {
	proxy, nodes := startPartitionable(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	exchangeAll(t, "before", embeddedInterest, nodes)
	waitSys(t, n3, "cluster/state", "1")

	proxy.setCut(true)
	waitLong(t, "n3 disconnected", func() bool { return !n3.link().Status().Connected })
	waitMesh(t, n1, n2)
	if ci := n3.clusterInfo(t); ci.Connected || ci.Disconnects != 1 || ci.Routes != 0 || len(ci.Peers) != 2 {
		t.Fatalf("n3's cluster state while cut: %+v", ci)
	}
	if c, p := n3.metric(t, "lyre_cluster_connected"), n3.metric(t, "lyre_cluster_peers"); c != 0 || p != 0 {
		t.Fatalf("n3 while cut: lyre_cluster_connected %v, lyre_cluster_peers %v; want 0, 0", c, p)
	}
	if c, p := n1.metric(t, "lyre_cluster_connected"), n1.metric(t, "lyre_cluster_peer_connected", "peer", "n3"); c != 1 || p != 0 {
		t.Fatalf("n1 while n3 is cut: connected %v, peer n3 %v; want 1, 0", c, p)
	}
	waitSys(t, n3, "cluster/state", "0")
	// Each side works on its own.
	exchangeAll(t, "cut", embeddedInterest, []*opsNode{n1, n2})
	local(t, n3, "n3 alone")
	// Across the partition: lost, now and later.
	mqttPublish(t, n1.mq, "ops/n3/n1", 1, "lost-n1")
	mqttPublish(t, n3.mq, "ops/n1/n3", 1, "lost-n3")
	mqttPublish(t, n3.mq, "ops/n2/n3", 1, "lost-n3")

	proxy.setCut(false)
	waitMesh(t, nodes...)
	exchangeAll(t, "healed", embeddedInterest, nodes, "lost-n1", "lost-n3")
	ci := n3.clusterInfo(t)
	if !ci.Connected || ci.Disconnects != 1 {
		t.Fatalf("n3's cluster state once healed: %+v", ci)
	}
	if c := n3.metric(t, "lyre_cluster_connected"); c != 1 {
		t.Fatalf("n3 healed: lyre_cluster_connected %v", c)
	}
	waitSys(t, n3, "cluster/state", "1")
}

// A partition that resets nothing (the proxy stops forwarding, every connection stays open): the nodes
// notice from their unanswered route pings, within about 20 s, and node 3 rejoins once it is over.
func TestClusterSilentPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for route pings to go unanswered (about 20 s)")
	}
	proxy, nodes := startPartitionable(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	proxy.setFrozen(true)
	start := time.Now()
	waitLong(t, "n3 disconnected", func() bool { return !n3.link().Status().Connected })
	waitMesh(t, n1, n2)
	t.Logf("the silent partition was noticed after %v", time.Since(start).Round(100*time.Millisecond))
	exchangeAll(t, "frozen", embeddedInterest, []*opsNode{n1, n2})
	local(t, n3, "n3 alone")

	proxy.setFrozen(false)
	waitMesh(t, nodes...)
	exchangeAll(t, "thawed", embeddedInterest, nodes)
}

// Two nodes on an external NATS (nats_url): messages cross through it; when it goes away both say so,
// keep serving their own clients and drop what would cross; when it is back they reconnect by
// themselves and messages cross again.
func TestClusterNATSURL(t *testing.T) {
	ns := startStandaloneNATS(t, server.RANDOM_PORT)
	port := ns.Addr().(*net.TCPAddr).Port
	url := ns.ClientURL()
	block := fmt.Sprintf("  nats_url = %q\n", url)
	n1 := startOpsNode(t, "n1", block)
	n2 := startOpsNode(t, "n2", block)
	nodes := []*opsNode{n1, n2}
	natsInterest := func(_, to *opsNode) bool {
		return ns.GlobalAccount().Interest(cluster.Subject("default", to.inboxPath())) > 0
	}
	exchangeAll(t, "up", natsInterest, nodes)
	for _, n := range nodes {
		if ci := n.clusterInfo(t); !ci.Connected || ci.Mode != "nats_url" || ci.Server == "" || ci.Messages.Sent == 0 {
			t.Fatalf("%s with NATS up: %+v", n.name, ci)
		}
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	dropped := n1.clusterInfo(t).Messages.Dropped
	for _, n := range nodes {
		waitLong(t, n.name+" disconnected", func() bool { return !n.clusterInfo(t).Connected })
		if v := n.metric(t, "lyre_cluster_connected"); v != 0 {
			t.Fatalf("%s: lyre_cluster_connected %v with NATS down", n.name, v)
		}
		waitSys(t, n, "cluster/state", "0")
		local(t, n, n.name+" alone")
	}
	// Every topic message published on n1 while NATS is away is dropped for the cluster, counted: its
	// local one and this one.
	mqttPublish(t, n1.mq, "ops/n2/n1", 1, "lost-n1")
	waitLong(t, "n1's drops", func() bool { return n1.clusterInfo(t).Messages.Dropped == dropped+2 })

	ns = startStandaloneNATS(t, port)
	for _, n := range nodes {
		waitLong(t, n.name+" reconnected", func() bool { return n.clusterInfo(t).Connected })
	}
	exchangeAll(t, "back", natsInterest, nodes, "lost-n1")
	for _, n := range nodes {
		if ci := n.clusterInfo(t); ci.Disconnects != 1 {
			t.Errorf("%s: %d disconnects, want 1", n.name, ci.Disconnects)
		}
		waitSys(t, n, "cluster/state", "1")
	}
}

// startStandaloneNATS runs a NATS server in-process with a client port on loopback (RANDOM_PORT: any),
// shut down at the end of the test.
func startStandaloneNATS(t *testing.T, port int) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{ServerName: "external", Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal(errors.New("standalone NATS not ready"))
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}
