package mqtt

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// recNet keeps session records for the memDirs of a memNet, as the cluster's stream does: the last record
// of each client id, by the node that wrote it.
type recNet struct {
	mu   sync.Mutex
	recs map[string]virtualhost.RecordLookup
}

// recDir is a memDir whose sessions are replicated through a recNet.
type recDir struct {
	*memDir
	rn *recNet
}

func (d recDir) Replicates() bool { return true }

func (d recDir) SaveRecord(host string, rec virtualhost.SessionRecord, tr router.Tracker) {
	d.rn.mu.Lock()
	d.rn.recs[host+"/"+rec.ClientID] = virtualhost.RecordLookup{Found: true, Node: d.name,
		Session: virtualhost.RecoveredSession{SessionRecord: rec}}
	d.rn.mu.Unlock()
	if tr != nil {
		tr.Track()(nil)
	}
}

func (d recDir) DeleteRecord(host, clientID string, tr router.Tracker) {
	d.rn.mu.Lock()
	d.rn.recs[host+"/"+clientID] = virtualhost.RecordLookup{Found: true, Ended: true, Node: d.name}
	d.rn.mu.Unlock()
	if tr != nil {
		tr.Track()(nil)
	}
}

func (d recDir) LoadRecord(_ context.Context, host, clientID string) (virtualhost.RecordLookup, error) {
	d.rn.mu.Lock()
	defer d.rn.mu.Unlock()
	return d.rn.recs[host+"/"+clientID], nil
}

func (rn *recNet) record(id string) virtualhost.RecordLookup {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.recs["default/"+id]
}

// twoRecordNodes starts two brokers joined by a memNet with replicated session records.
func twoRecordNodes(t *testing.T) (a, b *broker, rn *recNet, n *memNet) {
	n, rn = &memNet{}, &recNet{recs: map[string]virtualhost.RecordLookup{}}
	a, b = startBroker(t, nil), startBroker(t, nil)
	for i, br := range []*broker{a, b} {
		d := &memDir{net: n, name: string(rune('a' + i)), held: make(map[string]int)}
		n.mu.Lock()
		n.dirs = append(n.dirs, d)
		n.mu.Unlock()
		br.h.SetDirectory(recDir{d, rn})
		t.Cleanup(br.h.Close)
	}
	return a, b, rn, n
}

// vanish makes node d's holds disappear, as a node killed with kill -9 loses its interest: its sessions
// stay in its registry, unreachable.
func (n *memNet) vanish(d *memDir) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k := range d.held {
		d.held[k] = 0
	}
}

// With replicated records a session outlives its node: node a's persistent session is recorded (its
// subscription, by node a); with a gone, the client connecting on b resumes it from the record
// [MQTT-3.2.2-2] (Session Present 1, its subscription in place), and b's record replaces a's.
func TestClusterResumesSessionFromRecord(t *testing.T) {
	a, b, rn, n := twoRecordNodes(t)
	r := dialRaw(t, a.addr)
	r.connect("rec1", false)
	r.subscribe(1, 1, "rec/#")
	rec := rn.record("rec1")
	if !rec.Found || rec.Node != "a" || len(rec.Session.Subscriptions) != 1 || rec.Session.Subscriptions[0].Name != "rec/#" {
		t.Fatalf("node a's record after SUBSCRIBE: %+v", rec)
	}
	_ = r.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ss := a.h.Sessions("default"); len(ss) != 1 || ss[0].Online; ss = a.h.Sessions("default") {
		if time.Now().After(deadline) {
			t.Fatalf("the session is not offline on a: %+v", ss)
		}
		time.Sleep(5 * time.Millisecond)
	}
	n.vanish(n.dirs[0])

	r2 := dialRaw(t, b.addr)
	if ca := r2.connect("rec1", false); !ca.SessionPresent {
		t.Fatal("[MQTT-3.2.2-2] the recorded session: Session Present 0")
	}
	pub := pahoClient(t, b.addr, "pub", nil)
	waitToken(t, pub.Publish("rec/x", 1, false, "after"))
	if p := r2.nextPublish(); string(p.Payload) != "after" || p.Topic != "rec/x" {
		t.Fatalf("the resumed subscription delivered %+v", p)
	}
	if rec := rn.record("rec1"); rec.Node != "b" {
		t.Fatalf("the record after the resume names %q, want b", rec.Node)
	}
}

// A record of another user's session refuses the client as the holder would (CONNACK 0x05); an MQTT 5
// record whose expiry passed while no node held it ends [MQTT-3.1.2-23]: Session Present 0, and a
// tombstone; a Clean Start discards a live record (a tombstone too).
func TestClusterRecordOwnerExpiryCleanStart(t *testing.T) {
	_, b, rn, _ := twoRecordNodes(t)
	topic := router.Filter{Kind: router.Topic, Segs: []router.Seg{{Text: "o"}, {Kind: router.SegMany}}}
	put := func(id, owner string, version uint8, expiry uint32, left time.Time) {
		rn.mu.Lock()
		rn.recs["default/"+id] = virtualhost.RecordLookup{Found: true, Node: "gone", Session: virtualhost.RecoveredSession{
			SessionRecord: virtualhost.SessionRecord{ClientID: id, Owner: owner, ProtocolVersion: version, ExpiryInterval: expiry,
				DisconnectedAt: left.UnixMilli(), Subscriptions: []virtualhost.SessionSub{{Name: "o/#", Filter: topic, QoS: 1, Durable: true}}}}}
		rn.mu.Unlock()
	}
	put("owned", "alice", 4, 0, time.Now())
	r := dialRaw(t, b.addr)
	if ca := r.connectWith(&packet.ConnectPacket{ClientID: "owned", KeepAlive: 60}); ca.ReturnCode != connNotAuthorized {
		t.Fatalf("alice's recorded session claimed anonymously: CONNACK %#x, want 0x05", ca.ReturnCode)
	}

	put("old5", "", 5, 10, time.Now().Add(-time.Minute))
	r5 := dialRaw(t, b.addr)
	r5.version = packet.Version5
	r5.rd.SetVersion(packet.Version5)
	ca := r5.connectWith(&packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version5, ClientID: "old5",
		KeepAlive: 60, Properties: &packet.Properties{SessionExpiryInterval: ptr(uint32(300))}})
	if ca.SessionPresent {
		t.Fatal("[MQTT-3.1.2-23] a record expired a minute ago: Session Present 1")
	}
	if rec := rn.record("old5"); rec.Ended {
		t.Fatalf("the new session's record should replace the tombstone: %+v", rec)
	}
	if ds := b.host.Router.Durables([]string{dsubPrefix, "old5"}); len(ds) != 0 {
		t.Fatalf("the expired session's durable subscriptions are still here: %+v", ds)
	}

	put("fresh", "", 4, 0, time.Now())
	rc := dialRaw(t, b.addr)
	if ca := rc.connect("fresh", true); ca.SessionPresent {
		t.Fatal("[MQTT-3.2.2-1] Clean Session 1: Session Present 1")
	}
	if rec := rn.record("fresh"); !rec.Ended {
		t.Fatalf("a clean session should end the recorded one: %+v", rec)
	}
}
