package mqtt

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/virtualhost"
)

// memNet is a cluster in one process: SessionDirectories that hand claims to each other's holders
// directly, every hold known at once (router/cluster carries them over NATS; cmd/lyre tests that).
type memNet struct {
	mu    sync.Mutex
	clock int64
	dirs  []*memDir
}

type memDir struct {
	net    *memNet
	name   string
	holder virtualhost.SessionHolder
	held   map[string]int // guarded by net.mu
	stuck  bool           // guarded by net.mu: claims of its sessions are never answered
}

func (n *memNet) join(t *testing.T, name string, b *broker) {
	d := &memDir{net: n, name: name, held: make(map[string]int)}
	n.mu.Lock()
	n.dirs = append(n.dirs, d)
	n.mu.Unlock()
	b.h.SetDirectory(d)
	t.Cleanup(b.h.Close) // its claims' verifications
}

func (d *memDir) Stamp() virtualhost.ClaimStamp {
	d.net.mu.Lock()
	defer d.net.mu.Unlock()
	d.net.clock++
	return virtualhost.ClaimStamp{Time: d.net.clock, Node: d.name}
}

func (d *memDir) Claim(ctx context.Context, c virtualhost.SessionClaim) virtualhost.ClaimResult {
	d.net.mu.Lock()
	var holder virtualhost.SessionHolder
	stuck := false
	for _, o := range d.net.dirs {
		if o != d && o.held[c.Host+"/"+c.ClientID] > 0 {
			holder, stuck = o.holder, o.stuck
		}
	}
	d.net.mu.Unlock()
	if stuck {
		<-ctx.Done()
		return virtualhost.ClaimResult{Outcome: virtualhost.ClaimNoAnswer}
	}
	if holder == nil {
		return virtualhost.ClaimResult{Outcome: virtualhost.ClaimFree}
	}
	ch := make(chan virtualhost.ClaimResult, 1)
	go func() { ch <- holder.GiveUp(c) }()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return virtualhost.ClaimResult{Outcome: virtualhost.ClaimNoAnswer}
	}
}

func (d *memDir) Hold(host, id string) {
	d.net.mu.Lock()
	d.held[host+"/"+id]++
	d.net.mu.Unlock()
}

func (d *memDir) Release(host, id string) {
	d.net.mu.Lock()
	d.held[host+"/"+id]--
	d.net.mu.Unlock()
}

func (d *memDir) Serve(h virtualhost.SessionHolder) { d.holder = h }

func (d *memDir) holds(id string) bool {
	d.net.mu.Lock()
	defer d.net.mu.Unlock()
	return d.held["default/"+id] > 0
}

// twoNodes starts two brokers joined by a memNet.
func twoNodes(t *testing.T) (a, b *broker, da, db *memDir) {
	n := &memNet{}
	a, b = startBroker(t, nil), startBroker(t, nil)
	n.join(t, "a", a)
	n.join(t, "b", b)
	return a, b, n.dirs[0], n.dirs[1]
}

// [MQTT-4.4.0-1] In-flight state moves with the session: a client that left QoS 1 and QoS 2 deliveries
// unacknowledged on node a, and one PUBREL unanswered, reconnects on node b and gets the PUBLISH again
// with DUP under its packet id, and the PUBREL under its id, in the original order [MQTT-4.6.0-1]; the
// waiting backlog follows, and node a no longer holds the session.
func TestClusterTakeoverResendsInflightUnderSameIDs(t *testing.T) {
	a, b, da, db := twoNodes(t)
	r := dialRaw(t, a.addr)
	r.connect("resend", false)
	r.subscribe(1, 2, "rs/+")
	pub := pahoClient(t, a.addr, "pub", nil)
	waitToken(t, pub.Publish("rs/1", 1, false, "a"))
	waitToken(t, pub.Publish("rs/2", 2, false, "b"))
	p1, p2 := r.nextPublish(), r.nextPublish()
	r.send(&packet.PubrecPacket{PacketID: p2.PacketID})
	if rel, ok := r.next().(*packet.PubrelPacket); !ok || rel.PacketID != p2.PacketID {
		t.Fatalf("want PUBREL, got %#v", rel)
	}
	_ = r.nc.Close() // neither PUBACK nor PUBCOMP
	waitToken(t, pub.Publish("rs/3", 1, false, "c"))

	r2 := dialRaw(t, b.addr)
	if ca := r2.connect("resend", false); !ca.SessionPresent {
		t.Fatal("[MQTT-3.2.2-2] the session taken over from node a: Session Present 0")
	}
	p := r2.nextPublish()
	if !p.Dup || p.PacketID != p1.PacketID || string(p.Payload) != "a" || p.QoS != 1 {
		t.Fatalf("resent %+v, want DUP copy of %+v", p, p1)
	}
	rel, ok := r2.next().(*packet.PubrelPacket)
	if !ok || rel.PacketID != p2.PacketID {
		t.Fatalf("want PUBREL %d again, got %#v", p2.PacketID, rel)
	}
	r2.send(&packet.PubackPacket{PacketID: p.PacketID})
	r2.send(&packet.PubcompPacket{PacketID: p2.PacketID})
	// c may have gone out on node a before its connection noticed the close: then DUP, under its id.
	pc := r2.nextPublish()
	if string(pc.Payload) != "c" {
		t.Fatalf("after the resends: %+v, want the waiting message c", pc)
	}
	r2.send(&packet.PubackPacket{PacketID: pc.PacketID})
	if extra := r2.nextWithin(100 * time.Millisecond); extra != nil {
		t.Fatalf("unexpected %#v", extra)
	}
	if da.holds("resend") || a.h.SessionCount(a.host) != 1 { // the publisher's session is a's last
		t.Errorf("node a still holds the session (%d sessions)", a.h.SessionCount(a.host))
	}
	if !db.holds("resend") {
		t.Error("node b does not announce the session it holds")
	}
}

// Of two claims, the later wins: a claim stamped before the connection holding the session is refused and
// the connection stays; a later one closes it [MQTT-3.1.4-2] and takes the session. A client refused
// because its claim lost gets CONNACK 0x03 (server unavailable: the later connection has the session).
func TestClusterLaterClaimWins(t *testing.T) {
	a, b, _, db := twoNodes(t)
	r := dialRaw(t, a.addr)
	r.connect("dev", false)
	early := virtualhost.SessionClaim{Host: "default", ClientID: "dev", Stamp: virtualhost.ClaimStamp{Time: 0, Node: "z"}}
	if res := a.h.GiveUp(early); res.Outcome != virtualhost.ClaimRefusedNewer {
		t.Fatalf("an earlier claim: %v, want refused", res.Outcome)
	}
	if p := r.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("the holder got %s after an earlier claim", p.Type())
	}
	late := early
	late.Stamp = db.Stamp()
	late.Verify = true // nothing handed over
	if res := a.h.GiveUp(late); res.Outcome != virtualhost.ClaimEnded {
		t.Fatalf("a later claim: %v, want ended", res.Outcome)
	}
	r.expectClosed()
	if a.h.SessionCount(a.host) != 0 {
		t.Error("node a kept the session it gave up")
	}

	// Node b's own claim loses to a later one node a has pending: simulated by a session on a whose
	// connection is later than any claim b makes now.
	r = dialRaw(t, a.addr)
	r.connect("dev2", false)
	reg := a.h.registry(a.host)
	reg.mu.Lock()
	reg.stamps["dev2"] = virtualhost.ClaimStamp{Time: 1 << 62, Node: "a"}
	reg.mu.Unlock()
	r2 := dialRaw(t, b.addr)
	if ca := r2.connectWith(&packet.ConnectPacket{ClientID: "dev2", KeepAlive: 60}); ca.ReturnCode != connServerUnavailable {
		t.Fatalf("a claim that lost: CONNACK %#x, want 0x03", ca.ReturnCode)
	}
	r2.expectClosed()
	if p := r.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("the later connection got %s", p.Type())
	}
}

// A session of another user is not given up to a claim by someone else (CONNACK 0x05, as on one node).
func TestClusterClaimRefusesAnotherUsersSession(t *testing.T) {
	a, b, _, _ := twoNodes(t)
	r := dialRaw(t, a.addr)
	r.connect("owned", false)
	reg := a.h.registry(a.host)
	reg.mu.Lock()
	reg.sessions["owned"].owner = "alice"
	reg.mu.Unlock()
	r2 := dialRaw(t, b.addr)
	if ca := r2.connectWith(&packet.ConnectPacket{ClientID: "owned", KeepAlive: 60}); ca.ReturnCode != connNotAuthorized {
		t.Fatalf("CONNACK %#x, want 0x05", ca.ReturnCode)
	}
	if p := r.nextWithin(100 * time.Millisecond); p != nil {
		t.Fatalf("alice's connection got %s", p.Type())
	}
}

// A holder that does not answer holds a CONNECT up for claimWait at most: then the client goes on with a
// fresh session (Session Present 0) on the node it reached.
func TestClusterClaimWithoutAnswerGoesOn(t *testing.T) {
	defer func(d time.Duration) { claimWait = d }(claimWait)
	claimWait = 300 * time.Millisecond
	a, b, da, _ := twoNodes(t)
	r := dialRaw(t, a.addr)
	r.connect("stuck", false)
	r.subscribe(1, 1, "s/#")
	da.net.mu.Lock()
	da.stuck = true
	da.net.mu.Unlock()
	start := time.Now()
	r2 := dialRaw(t, b.addr)
	if ca := r2.connect("stuck", false); ca.SessionPresent {
		t.Error("nothing was handed over: Session Present 1")
	}
	if d := time.Since(start); d < claimWait || d > claimWait+2*time.Second {
		t.Errorf("CONNECT took %v; the claim's bound is %v", d, claimWait)
	}
}
