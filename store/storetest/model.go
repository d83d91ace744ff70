package storetest

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lyremq/lyre/store"
)

// model is a naive reference for the ops' semantics: what must be visible after them.
type model struct {
	entries  map[store.Ref]store.Entry // Ref.Seq included
	inflight map[[2]any]store.Inflight
	inbound  map[[2]any]bool
	retained map[string]uint64
}

func newModel() *model {
	return &model{entries: map[store.Ref]store.Entry{}, inflight: map[[2]any]store.Inflight{},
		inbound: map[[2]any]bool{}, retained: map[string]uint64{}}
}

func (m *model) apply(op store.Op) {
	dropList := func(l store.List, owner string) {
		for r := range m.entries {
			if r.List == l && r.Owner == owner {
				delete(m.entries, r)
			}
		}
	}
	switch o := op.(type) {
	case store.PutEntry:
		m.entries[o.Entry.Ref()] = o.Entry
	case store.DeleteEntry:
		if e, ok := m.entries[o.Ref]; ok && (o.ExpiredBy == 0 || (e.Msg.Expires > 0 && e.Msg.Expires <= o.ExpiredBy)) {
			delete(m.entries, o.Ref)
		}
	case store.DeleteQueue:
		dropList(store.ListQueue, o.Name)
	case store.DeleteDurableSub:
		dropList(store.ListDurableSub, o.ID)
	case store.DeleteSession:
		for k := range m.inflight {
			if k[0] == o.ClientID {
				delete(m.inflight, k)
			}
		}
		for k := range m.inbound {
			if k[0] == o.ClientID {
				delete(m.inbound, k)
			}
		}
	case store.PutInflight:
		m.inflight[[2]any{o.Inflight.ClientID, o.Inflight.PacketID}] = o.Inflight
	case store.DeleteInflight:
		delete(m.inflight, [2]any{o.ClientID, o.PacketID})
	case store.PutInbound:
		m.inbound[[2]any{o.ClientID, o.PacketID}] = true
	case store.DeleteInbound:
		delete(m.inbound, [2]any{o.ClientID, o.PacketID})
	case store.PutRetained:
		m.retained[o.Retained.Topic] = o.Retained.Msg.ID
	case store.DeleteRetained:
		delete(m.retained, o.Topic)
	}
}

// messages is the number of distinct messages still referenced.
func (m *model) messages() int {
	ids := map[uint64]bool{}
	for _, e := range m.entries {
		ids[e.Msg.ID] = true
	}
	for _, id := range m.retained {
		ids[id] = true
	}
	return len(ids)
}

// modelMsg gives every id one fixed message; odd ids expire, multiples of 3 carry MQTT 5 properties.
func modelMsg(id uint64) *store.Message {
	m := &store.Message{ID: id, QoS: 1, Body: fmt.Appendf(nil, "body-%d", id)}
	if id%2 == 1 {
		m.Expires = int64(id) * 1000
	}
	if id%3 == 0 {
		m.ReplyToKind, m.ReplyToPath = 1, []string{"re", fmt.Sprint(id)}
		m.CorrelationData, m.UTF8 = []byte{byte(id), 0}, true
	}
	return m
}

func randomOp(r *rand.Rand) store.Op {
	owners := []string{"a", "b"}
	lists := []store.List{store.ListQueue, store.ListDurableSub}
	ref := store.Ref{List: lists[r.IntN(2)], Owner: owners[r.IntN(2)], Seq: uint64(r.IntN(5) + 1)}
	id := uint64(r.IntN(8) + 1)
	owner := owners[r.IntN(2)]
	pid := uint16(r.IntN(3) + 1)
	switch n := r.IntN(100); {
	case n < 35:
		return store.PutEntry{Entry: store.Entry{List: ref.List, Owner: ref.Owner, Seq: ref.Seq,
			Redeliveries: uint32(r.IntN(3)), Msg: modelMsg(id)}}
	case n < 60:
		return store.DeleteEntry{Ref: ref}
	case n < 63:
		return store.DeleteQueue{Name: owner}
	case n < 66:
		return store.DeleteDurableSub{ID: owner}
	case n < 69:
		return store.DeleteSession{ClientID: owner}
	case n < 76:
		return store.PutInflight{Inflight: store.Inflight{ClientID: owner, PacketID: pid, State: store.InflightPublish, QoS: 2, Ref: ref}}
	case n < 79:
		return store.PutInflight{Inflight: store.Inflight{ClientID: owner, PacketID: pid, State: store.InflightRelease, QoS: 2, Ref: ref}}
	case n < 84:
		return store.DeleteInflight{ClientID: owner, PacketID: pid}
	case n < 87:
		return store.PutInbound{ClientID: owner, PacketID: pid}
	case n < 90:
		return store.DeleteInbound{ClientID: owner, PacketID: pid}
	case n < 96:
		return store.PutRetained{Retained: store.Retained{Topic: owner, Msg: modelMsg(id)}}
	default:
		return store.DeleteRetained{Topic: owner}
	}
}

// testModel runs random commits, many in flight at once (so batches mix them), and after each round
// compares everything visible with the naive model: reference counting, cascades and cancellation
// must never lose a referenced message or keep an unreferenced one.
func testModel(t *testing.T, b Backend) {
	for _, delay := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(fmt.Sprintf("flush_delay=%v", delay), func(t *testing.T) {
			s := fresh(t, b, Options{FlushDelay: delay})
			r := rand.New(rand.NewPCG(1, uint64(delay)))
			m := newModel()
			for round := range 60 {
				var chans []<-chan error
				for range 1 + r.IntN(8) {
					ops := make([]store.Op, 1+r.IntN(4))
					for i := range ops {
						ops[i] = randomOp(r)
						m.apply(ops[i])
					}
					chans = append(chans, s.Commit(ops...))
				}
				for _, ch := range chans {
					if err := <-ch; err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
				if round%20 == 19 {
					now := int64(r.IntN(9)) * 1000
					refs, err := s.RemoveExpired(now, 1000)
					if err != nil {
						t.Fatal(err)
					}
					for _, ref := range refs {
						e, ok := m.entries[ref]
						if !ok || e.Msg.Expires == 0 || e.Msg.Expires > now {
							t.Fatalf("round %d: RemoveExpired(%d) removed %+v, which was not expired", round, now, ref)
						}
						m.apply(store.DeleteEntry{Ref: ref, ExpiredBy: now})
					}
					for ref, e := range m.entries {
						if e.Msg.Expires > 0 && e.Msg.Expires <= now {
							t.Fatalf("round %d: RemoveExpired(%d) left %+v", round, now, ref)
						}
					}
				}
				compareModel(t, round, s, m)
			}
		})
	}
}

func compareModel(t *testing.T, round int, s store.Store, m *model) {
	t.Helper()
	sn := snap(t, s)
	var want []store.Entry
	for _, e := range m.entries {
		want = append(want, store.Entry{List: e.List, Owner: e.Owner, Seq: e.Seq, Redeliveries: e.Redeliveries, Msg: e.Msg})
	}
	slices.SortFunc(want, func(a, b store.Entry) int {
		if a.List != b.List {
			return int(a.List) - int(b.List)
		}
		if a.Owner != b.Owner {
			return map[bool]int{true: -1, false: 1}[a.Owner < b.Owner]
		}
		return int(a.Seq) - int(b.Seq)
	})
	got := slices.Clone(sn.Entries)
	slices.SortFunc(got, func(a, b store.Entry) int {
		if a.List != b.List {
			return int(a.List) - int(b.List)
		}
		if a.Owner != b.Owner {
			return map[bool]int{true: -1, false: 1}[a.Owner < b.Owner]
		}
		return int(a.Seq) - int(b.Seq)
	})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round %d entries:\n got %v\nwant %v", round, got, want)
	}
	if sn.Counts.Messages != m.messages() {
		t.Fatalf("round %d: %d messages stored, %d referenced", round, sn.Counts.Messages, m.messages())
	}
	if sn.Counts.Inflight != len(m.inflight) || sn.Counts.Inbound != len(m.inbound) || sn.Counts.Retained != len(m.retained) {
		t.Fatalf("round %d: counts %+v, model inflight %d inbound %d retained %d", round, sn.Counts,
			len(m.inflight), len(m.inbound), len(m.retained))
	}
	for _, ss := range sn.Sessions {
		for _, f := range ss.Inflight {
			if w := m.inflight[[2]any{f.ClientID, f.PacketID}]; !reflect.DeepEqual(f, w) {
				t.Fatalf("round %d: inflight %+v, want %+v", round, f, w)
			}
		}
	}
	for _, rt := range sn.Retained {
		if m.retained[rt.Topic] != rt.Msg.ID {
			t.Fatalf("round %d: retained %q = %d, want %d", round, rt.Topic, rt.Msg.ID, m.retained[rt.Topic])
		}
	}
}
