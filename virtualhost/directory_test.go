package virtualhost

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// fakeTransport answers claims with a SessionHolder in-process, as another node would over NATS.
type fakeTransport struct {
	serve func([]byte) []byte
	held  map[string]int
	err   error
	limit int
}

func (f *fakeTransport) ServeSessions(fn func([]byte) []byte) { f.serve = fn }
func (f *fakeTransport) HoldSession(v, id string)             { f.held[v+"/"+id]++ }
func (f *fakeTransport) ReleaseSession(v, id string)          { f.held[v+"/"+id]-- }
func (f *fakeTransport) MaxPayload() int                      { return f.limit }
func (f *fakeTransport) ClaimSession(_ context.Context, v, id string, req []byte) ([]byte, bool, error) {
	if f.err != nil {
		return nil, true, f.err
	}
	if f.held[v+"/"+id] == 0 {
		return nil, false, nil
	}
	return f.serve(req), true, nil
}

type holderFunc func(SessionClaim) ClaimResult

func (h holderFunc) GiveUp(c SessionClaim) ClaimResult { return h(c) }

func handedSession() *SessionHandover {
	topic := router.Filter{Kind: router.Topic, Segs: []router.Seg{{Text: "a"}, {Kind: router.SegMany}}}
	q := router.Destination{Kind: router.DurableSub, Path: []string{"$mqtt", "dev1", "a/#"}}
	hs := &SessionHandover{RecoveredSession: RecoveredSession{
		SessionRecord: SessionRecord{ClientID: "dev1", Owner: "alice", ProtocolVersion: 5, ExpiryInterval: 300,
			Subscriptions: []SessionSub{{Name: "a/#", Filter: topic, QoS: 1, Options: 4, Identifier: 7, Durable: true}}},
		Inflight: []Inflight{{PacketID: 3, QoS: 1, Queue: q, Seq: 11}, {PacketID: 4, Released: true, QoS: 2, Queue: q, Seq: 12}},
		Inbound:  []uint16{9},
	}}
	for i := range 3 {
		hs.Backlog = append(hs.Backlog, HandedEntry{Queue: q, Stored: router.Stored{Seq: uint64(11 + i), Redeliveries: uint32(i),
			Msg: &router.Message{ID: uint64(100 + i), Dest: router.Destination{Kind: router.Topic, Path: []string{"a", "b"}},
				Body: []byte{byte('x' + i)}, QoS: 1, Persistent: true, ContentType: "text/plain",
				Headers: []router.Header{{Name: "k", Value: "v"}}}}})
	}
	return hs
}

// A claim reaches the holder with its fields, and the handed session comes back whole through the
// store's records: record, in-flight ids, inbound ids and backlog.
func TestDirectoryHandsSessionOver(t *testing.T) {
	tr := &fakeTransport{held: map[string]int{}}
	d := NewDirectory(tr, "n1", nil)
	want := handedSession()
	var seen SessionClaim
	d.Serve(holderFunc(func(c SessionClaim) ClaimResult {
		seen = c
		return ClaimResult{Outcome: ClaimHanded, Session: want}
	}))
	c := SessionClaim{Host: "default", ClientID: "dev1", Owner: "alice", Stamp: d.Stamp()}
	if res := d.Claim(context.Background(), c); res.Outcome != ClaimFree {
		t.Fatalf("nobody holds it: %v", res.Outcome)
	}
	d.Hold("default", "dev1")
	res := d.Claim(context.Background(), c)
	if !reflect.DeepEqual(seen, c) {
		t.Errorf("the holder saw %+v, want %+v", seen, c)
	}
	if res.Outcome != ClaimHanded || res.Session == nil {
		t.Fatalf("outcome %v", res.Outcome)
	}
	got := res.Session
	if !reflect.DeepEqual(got.RecoveredSession, want.RecoveredSession) {
		t.Errorf("session\n got %+v\nwant %+v", got.RecoveredSession, want.RecoveredSession)
	}
	if len(got.Backlog) != len(want.Backlog) {
		t.Fatalf("backlog of %d, want %d", len(got.Backlog), len(want.Backlog))
	}
	for i, e := range got.Backlog {
		w := want.Backlog[i]
		if router.Key(e.Queue) != router.Key(w.Queue) || e.Seq != w.Seq || e.Redeliveries != w.Redeliveries ||
			!reflect.DeepEqual(e.Msg.Dest, w.Msg.Dest) || string(e.Msg.Body) != string(w.Msg.Body) ||
			!reflect.DeepEqual(e.Msg.Headers, w.Msg.Headers) || e.Msg.ContentType != w.Msg.ContentType {
			t.Errorf("backlog %d: got %+v %+v, want %+v %+v", i, e, e.Msg, w, w.Msg)
		}
	}
	d.Release("default", "dev1")
	if tr.held["default/dev1"] != 0 {
		t.Error("hold and release do not balance")
	}
}

// A handover over the transport's limit leaves out its newest messages, and says how many.
func TestDirectoryTrimsHandoverToLimit(t *testing.T) {
	hs := handedSession()
	full, _ := encodeClaimReply(ClaimResult{Outcome: ClaimHanded, Session: hs}, 0)
	b, trimmed := encodeClaimReply(ClaimResult{Outcome: ClaimHanded, Session: hs}, len(full)-1)
	if len(b) >= len(full) || trimmed == 0 {
		t.Fatalf("%d bytes, %d trimmed; limit %d", len(b), trimmed, len(full)-1)
	}
	res, err := decodeClaimReply(b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Trimmed != trimmed || len(res.Session.Backlog)+trimmed != len(hs.Backlog) || res.Session.Backlog[0].Seq != 11 {
		t.Fatalf("trimmed %d, kept %d", res.Trimmed, len(res.Session.Backlog))
	}
}

// Stamps only grow, and a stamp seen from another node moves the clock past it: a claim made after
// another reached this node is later, whatever the wall clocks say.
func TestDirectoryStampIsAHybridClock(t *testing.T) {
	d := NewDirectory(&fakeTransport{held: map[string]int{}}, "n1", nil)
	a, b := d.Stamp(), d.Stamp()
	if !b.After(a) || a.After(b) {
		t.Fatalf("%v then %v", a, b)
	}
	future := ClaimStamp{Time: b.Time + int64(1e12), Node: "n2"}
	d.observe(future)
	if c := d.Stamp(); !c.After(future) {
		t.Fatalf("stamp %v after seeing %v", c, future)
	}
	if x, y := (ClaimStamp{Time: 5, Node: "n1"}), (ClaimStamp{Time: 5, Node: "n2"}); !y.After(x) || x.After(y) {
		t.Fatal("equal times: the node name decides")
	}
}

// A holder that does not answer, or answers what does not decode, is no answer.
func TestDirectoryNoAnswer(t *testing.T) {
	tr := &fakeTransport{held: map[string]int{"default/x": 1}, err: context.DeadlineExceeded}
	d := NewDirectory(tr, "n1", nil)
	if res := d.Claim(context.Background(), SessionClaim{Host: "default", ClientID: "x"}); res.Outcome != ClaimNoAnswer {
		t.Fatalf("timeout: %v", res.Outcome)
	}
	tr.err = nil
	tr.serve = func([]byte) []byte { return []byte("{") }
	if res := d.Claim(context.Background(), SessionClaim{Host: "default", ClientID: "x"}); res.Outcome != ClaimNoAnswer {
		t.Fatalf("garbage: %v", res.Outcome)
	}
	b, _ := json.Marshal(claimReply{Outcome: ClaimHanded})
	if _, err := decodeClaimReply(b); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("a handover without a session: %v", err)
	}
}
