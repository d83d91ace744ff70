// Package storetest is the contract every store.Store passes: Run it from the implementation's tests.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lyremq/lyre/store"
)

// Options are what the suite varies between stores it opens.
type Options struct {
	FlushDelay time.Duration
	// BeforeWrite must be passed to the store's fault-injection hook of the same name.
	BeforeWrite func() error
}

// Backend describes the store under test.
type Backend struct {
	// Open opens the store kept in dir (a fresh t.TempDir(), or one reused to reopen) with o.
	Open func(dir string, o Options) (store.Store, error)
	// Persistent stores keep their contents across Close and Open on one dir; the reopen and lock tests
	// run only for them.
	Persistent bool
}

// Run runs the contract suite.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"EntriesOrderAndWindows", testEntriesOrder},
		{"MessageRoundTrip", testMessageRoundTrip},
		{"RefcountStoresOnce", testRefcount},
		{"ReplaceEntryKeepsMessage", testReplaceEntry},
		{"CascadingDeletes", testCascades},
		{"SessionState", testSession},
		{"Retained", testRetained},
		{"RecoverCounts", testRecover},
		{"GroupCommit", testGroupCommit},
		{"EmptyCommitIsABarrier", testBarrier},
		{"QueueDeliveredMark", testDeliveredMark},
		{"FlushDelayCancels", testFlushDelay},
		{"FailedBatchAppliesNothing", testFault},
		{"InvalidOpRefused", testInvalid},
		{"CloseFlushesAndRefuses", testClose},
		{"RemoveExpired", testExpired},
		{"ExportImport", testExportImport},
		{"RandomOpsMatchModel", testModel},
		{"StatsLatencyAndSize", testStats},
	}
	if b.Persistent {
		tests = append(tests, []struct {
			name string
			fn   func(t *testing.T, b Backend)
		}{
			{"ReopenKeepsEverything", testReopen},
			{"SecondOpenRefused", testLocked},
		}...)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

func open(t *testing.T, b Backend, dir string, o Options) store.Store {
	t.Helper()
	s, err := b.Open(dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// fresh opens an empty store closed at the end of the test.
func fresh(t *testing.T, b Backend, o Options) store.Store {
	t.Helper()
	s := open(t, b, t.TempDir(), o)
	t.Cleanup(func() { s.Close() })
	return s
}

func apply(t *testing.T, s store.Store, ops ...store.Op) {
	t.Helper()
	if err := store.Apply(s, ops...); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func msg(id uint64, body string) *store.Message {
	return &store.Message{ID: id, DestKind: 1, DestPath: []string{"orders", "", "eu"}, QoS: 1, Persistent: true,
		Body: []byte(body)}
}

func entries(t *testing.T, s store.Store, l store.List, owner string, from uint64, limit int) []store.Entry {
	t.Helper()
	es, err := s.Entries(l, owner, from, limit)
	if err != nil {
		t.Fatalf("entries: %v", err)
	}
	return es
}

func seqs(es []store.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func recoverCounts(t *testing.T, s store.Store) store.Counts {
	t.Helper()
	verify(t, s)
	c, err := s.Recover(store.Visitor{})
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	return c
}

func put(l store.List, owner string, seq uint64, m *store.Message) store.Op {
	return store.PutEntry{Entry: store.Entry{List: l, Owner: owner, Seq: seq, Msg: m}}
}

func del(l store.List, owner string, seq uint64) store.Op {
	return store.DeleteEntry{Ref: store.Ref{List: l, Owner: owner, Seq: seq}}
}

func testEntriesOrder(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	// Committed out of order, across commits; read back by seq. Seq 256 and 1<<40 check that seqs sort
	// as numbers, not as varint bytes.
	apply(t, s, put(store.ListQueue, "q", 256, msg(1, "a")), put(store.ListQueue, "q", 3, msg(2, "b")))
	apply(t, s, put(store.ListQueue, "q", 1<<40, msg(3, "c")), put(store.ListQueue, "q", 7, msg(4, "d")))
	// A queue whose name extends "q" must not leak into it.
	apply(t, s, put(store.ListQueue, "qq", 1, msg(5, "e")), put(store.ListDurableSub, "q", 1, msg(6, "f")))
	if got, want := seqs(entries(t, s, store.ListQueue, "q", 0, 100)), []uint64{3, 7, 256, 1 << 40}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order: got %v, want %v", got, want)
	}
	// Windows: from a seq, at most n.
	if got, want := seqs(entries(t, s, store.ListQueue, "q", 4, 2)), []uint64{7, 256}; !reflect.DeepEqual(got, want) {
		t.Fatalf("window: got %v, want %v", got, want)
	}
	if got := entries(t, s, store.ListQueue, "q", 1<<40+1, 10); len(got) != 0 {
		t.Fatalf("window past the end: %v", seqs(got))
	}
	es := entries(t, s, store.ListQueue, "q", 0, 1)
	if len(es) != 1 || string(es[0].Msg.Body) != "b" || es[0].List != store.ListQueue || es[0].Owner != "q" {
		t.Fatalf("first entry: %+v", es)
	}
	if got := entries(t, s, store.ListQueue, "absent", 0, 10); len(got) != 0 {
		t.Fatalf("absent queue has %d entries", len(got))
	}
}

func testMessageRoundTrip(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	m := &store.Message{ID: 42, DestKind: 3, DestPath: []string{"", "a", "b/c", ""}, Origin: "/queue/.a.b%2Fc.",
		QoS: 2, Persistent: true, Retain: true, Priority: 9, Expires: 1 << 50, ContentType: "text/plain",
		Headers: []store.Header{{Name: "k", Value: "v"}, {Name: "k", Value: "v2"}, {}}, Group: "g/1",
		ReplyToKind: 3, ReplyToPath: []string{"", "svc", "re/plies", ""}, CorrelationData: []byte{0, 0xff, 'x', 0},
		UTF8: true, Body: bytes.Repeat([]byte{0, 1, 0xff}, 2000)}
	empty := &store.Message{ID: 43}
	// Each MQTT 5 property alone, without a group: each is written on its own.
	replyTo := &store.Message{ID: 44, ReplyToPath: []string{"a", "b"}, Body: []byte("r")}
	corr := &store.Message{ID: 45, Group: "g", CorrelationData: []byte("id-1")}
	utf8 := &store.Message{ID: 46, UTF8: true, Body: []byte("text")}
	apply(t, s, store.PutEntry{Entry: store.Entry{List: store.ListDurableSub, Owner: "c", Seq: 1,
		Redeliveries: 3, Msg: m}}, put(store.ListDurableSub, "c", 2, empty), put(store.ListDurableSub, "c", 3, replyTo),
		put(store.ListDurableSub, "c", 4, corr), put(store.ListDurableSub, "c", 5, utf8))
	es := entries(t, s, store.ListDurableSub, "c", 0, 10)
	if len(es) != 5 {
		t.Fatalf("got %d entries", len(es))
	}
	for i, want := range []*store.Message{replyTo, corr, utf8} {
		if got := es[i+2].Msg; !reflect.DeepEqual(got, want) {
			t.Fatalf("message %d:\n got %+v\nwant %+v", want.ID, got, want)
		}
	}
	if !reflect.DeepEqual(es[0].Msg, m) {
		t.Fatalf("message:\n got %+v\nwant %+v", es[0].Msg, m)
	}
	if es[0].Redeliveries != 3 {
		t.Fatalf("entry fields: %+v", es[0])
	}
	if !reflect.DeepEqual(es[1].Msg, empty) {
		t.Fatalf("empty message: got %+v", es[1].Msg)
	}
}

// testRefcount: a message referenced from every kind of place is stored once and freed with its last
// reference, whether references come and go in one commit or many.
func testRefcount(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	m := msg(7, "shared")
	apply(t, s,
		put(store.ListQueue, "q1", 1, m), put(store.ListQueue, "q2", 1, m),
		put(store.ListDurableSub, "d", 1, m), put(store.ListDurableSub, "c", 1, m),
		store.PutRetained{Retained: store.Retained{Topic: "t", Msg: m}})
	apply(t, s, put(store.ListQueue, "q3", 1, m))
	if c := recoverCounts(t, s); c.Messages != 1 || c.MaxMessageID != 7 {
		t.Fatalf("after 6 references: %d messages (max id %d), want 1 (7)", c.Messages, c.MaxMessageID)
	}
	steps := []store.Op{
		del(store.ListQueue, "q1", 1), del(store.ListQueue, "q2", 1), del(store.ListDurableSub, "d", 1),
		del(store.ListDurableSub, "c", 1), store.DeleteRetained{Topic: "t"},
	}
	for i, op := range steps {
		apply(t, s, op)
		if c := recoverCounts(t, s); c.Messages != 1 {
			t.Fatalf("after releasing %d of 6: %d messages", i+1, c.Messages)
		}
		if es := entries(t, s, store.ListQueue, "q3", 0, 1); len(es) != 1 || string(es[0].Msg.Body) != "shared" {
			t.Fatalf("surviving reference lost its message: %+v", es)
		}
	}
	apply(t, s, del(store.ListQueue, "q3", 1), del(store.ListQueue, "q3", 1)) // a second delete is a no-op
	if c := recoverCounts(t, s); c.Messages != 0 || c.QueueEntries != 0 {
		t.Fatalf("after the last release: %+v", c)
	}
	// Reference and release in one commit: nothing stays.
	apply(t, s, put(store.ListQueue, "q", 1, msg(8, "x")), del(store.ListQueue, "q", 1))
	if c := recoverCounts(t, s); c.Messages != 0 {
		t.Fatalf("put+delete in one commit left %d messages", c.Messages)
	}
}

func testReplaceEntry(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	m := msg(1, "a")
	apply(t, s, put(store.ListQueue, "q", 5, m))
	// A redelivery rewrites the entry with a higher count; the message must survive.
	apply(t, s, store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: "q", Seq: 5, Redeliveries: 1, Msg: m}})
	es := entries(t, s, store.ListQueue, "q", 0, 10)
	if len(es) != 1 || es[0].Redeliveries != 1 || string(es[0].Msg.Body) != "a" {
		t.Fatalf("after replace: %+v", es)
	}
	// Replacing with another message frees the first.
	apply(t, s, put(store.ListQueue, "q", 5, msg(2, "b")))
	if c := recoverCounts(t, s); c.Messages != 1 || c.MaxMessageID != 2 {
		t.Fatalf("after replacing the message: %+v", c)
	}
}

func testCascades(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	apply(t, s,
		store.PutQueue{Queue: store.Queue{Name: "q", Kind: 1}},
		put(store.ListQueue, "q", 1, msg(1, "a")), put(store.ListQueue, "q", 2, msg(2, "b")),
		store.PutDurableSub{Sub: store.DurableSub{ID: "d", Filter: "a.**"}},
		put(store.ListDurableSub, "d", 1, msg(3, "c")),
		store.PutSession{Session: store.Session{ClientID: "c"}},
		store.PutInflight{Inflight: store.Inflight{ClientID: "c", PacketID: 9, State: store.InflightPublish, QoS: 2,
			Ref: store.Ref{List: store.ListDurableSub, Owner: "d", Seq: 1}}},
		store.PutInbound{ClientID: "c", PacketID: 10},
		put(store.ListQueue, "keep", 1, msg(2, "b")))
	// An entry added in the same commit as the cascade goes with it.
	apply(t, s, put(store.ListQueue, "q", 3, msg(6, "f")), store.DeleteQueue{Name: "q"})
	c := recoverCounts(t, s)
	if c.Queues != 1 || c.QueueEntries != 1 || c.Messages != 2 || c.Inflight != 1 || c.Inbound != 1 {
		t.Fatalf("after DeleteQueue: %+v", c)
	}
	apply(t, s, store.DeleteDurableSub{ID: "d"}, store.DeleteSession{ClientID: "c"})
	c = recoverCounts(t, s)
	want := store.Counts{Queues: 1, QueueEntries: 1, Messages: 1, MaxMessageID: 2}
	if c != want {
		t.Fatalf("after deleting the subscription and session:\n got %+v\nwant %+v", c, want)
	}
}

func testSession(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	sess := store.Session{ClientID: "client-1", ProtocolVersion: 5, ExpiryInterval: 3600, DisconnectedAt: 1700000000000,
		Owner: "alice", Subscriptions: []store.Subscription{
			{Name: "a/+/c", Filter: "\x00\x00\x01a\x01\x00\x00\x01c", QoS: 2, Options: 0x0c, Identifier: 7, Durable: true},
			{Name: "$share/g/#", Filter: "\x00\x02\x01#", Share: "g", QoS: 0}}}
	ref1 := store.Ref{List: store.ListDurableSub, Owner: "client-1 a/+/c", Seq: 1}
	ref2 := store.Ref{List: store.ListDurableSub, Owner: "client-1 a/+/c", Seq: 2}
	apply(t, s, store.PutSession{Session: sess},
		store.PutInflight{Inflight: store.Inflight{ClientID: "client-1", PacketID: 300, State: store.InflightPublish, QoS: 2, Ref: ref2}},
		store.PutInflight{Inflight: store.Inflight{ClientID: "client-1", PacketID: 2, State: store.InflightPublish, QoS: 2, Ref: ref1}},
		store.PutInbound{ClientID: "client-1", PacketID: 65535}, store.PutInbound{ClientID: "client-1", PacketID: 4})
	// PUBREC for 300: the message is released, the packet id stays until PUBCOMP [MQTT-4.3.3].
	apply(t, s, store.PutInflight{Inflight: store.Inflight{ClientID: "client-1", PacketID: 300, State: store.InflightRelease, QoS: 2, Ref: ref2}})
	// PUBREL for inbound 4.
	apply(t, s, store.DeleteInbound{ClientID: "client-1", PacketID: 4})
	var got []store.SessionState
	c, err := s.Recover(store.Visitor{Session: func(ss store.SessionState) error { got = append(got, ss); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	want := store.SessionState{Session: sess,
		Inflight: []store.Inflight{
			{ClientID: "client-1", PacketID: 2, State: store.InflightPublish, QoS: 2, Ref: ref1},
			{ClientID: "client-1", PacketID: 300, State: store.InflightRelease, QoS: 2, Ref: ref2},
		},
		Inbound: []uint16{65535}}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("session:\n got %+v\nwant %+v", got, want)
	}
	if c.Sessions != 1 || c.Inflight != 2 || c.Inbound != 1 || c.Messages != 0 {
		t.Fatalf("counts: %+v", c)
	}
	// Resubscribing replaces the subscription list.
	sess.Subscriptions = sess.Subscriptions[:1]
	apply(t, s, store.PutSession{Session: sess})
	got = nil
	if _, err := s.Recover(store.Visitor{Session: func(ss store.SessionState) error { got = append(got, ss); return nil }}); err != nil {
		t.Fatal(err)
	}
	if len(got[0].Session.Subscriptions) != 1 {
		t.Fatalf("subscriptions after replace: %+v", got[0].Session.Subscriptions)
	}
}

func testRetained(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	apply(t, s, store.PutRetained{Retained: store.Retained{Topic: "b", Msg: msg(1, "old")}},
		store.PutRetained{Retained: store.Retained{Topic: "a", Msg: msg(2, "a")}})
	apply(t, s, store.PutRetained{Retained: store.Retained{Topic: "b", Msg: msg(3, "new")}})
	var got []string
	c, err := s.Recover(store.Visitor{Retained: func(r store.Retained) error {
		got = append(got, r.Topic+"="+string(r.Msg.Body))
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a=a", "b=new"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("retained: got %v, want %v", got, want)
	}
	if c.Retained != 2 || c.Messages != 2 {
		t.Fatalf("replaced retained message not freed: %+v", c)
	}
	apply(t, s, store.DeleteRetained{Topic: "a"}, store.DeleteRetained{Topic: "b"}, store.DeleteRetained{Topic: "none"})
	if c := recoverCounts(t, s); c.Retained != 0 || c.Messages != 0 {
		t.Fatalf("after clearing: %+v", c)
	}
}

func testRecover(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	apply(t, s, store.PutQueue{Queue: store.Queue{Name: "z-empty", Kind: 4}},
		put(store.ListQueue, "a", 10, msg(1, "x")), put(store.ListQueue, "a", 12, msg(2, "y")),
		store.PutQueue{Queue: store.Queue{Name: "a", Kind: 1}},
		put(store.ListQueue, "dlq.a", 1, msg(3, "z")),
		store.PutDurableSub{Sub: store.DurableSub{ID: "sub", Filter: "x.*", Selector: "p > 1", Owner: "alice", QoS: 2, Flags: 1}},
		put(store.ListDurableSub, "sub", 4, msg(1, "x")))
	type q struct {
		Q  store.Queue
		LI store.ListInfo
	}
	var queues []q
	var subs []store.DurableSub
	c, err := s.Recover(store.Visitor{
		Queue:      func(qu store.Queue, li store.ListInfo) error { queues = append(queues, q{qu, li}); return nil },
		DurableSub: func(d store.DurableSub, li store.ListInfo) error { subs = append(subs, d); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	wantQ := []q{
		{store.Queue{Name: "a", Kind: 1}, store.ListInfo{Count: 2, First: 10, Last: 12}},
		{store.Queue{Name: "dlq.a"}, store.ListInfo{Count: 1, First: 1, Last: 1}},
		{store.Queue{Name: "z-empty", Kind: 4}, store.ListInfo{}},
	}
	if !reflect.DeepEqual(queues, wantQ) {
		t.Fatalf("queues:\n got %+v\nwant %+v", queues, wantQ)
	}
	if wantS := []store.DurableSub{{ID: "sub", Filter: "x.*", Selector: "p > 1", Owner: "alice", QoS: 2, Flags: 1}}; !reflect.DeepEqual(subs, wantS) {
		t.Fatalf("durable subs: got %+v", subs)
	}
	want := store.Counts{Queues: 3, QueueEntries: 3, DurableSubs: 1, DurableSubEntries: 1, Messages: 3, MaxMessageID: 3}
	if c != want {
		t.Fatalf("counts:\n got %+v\nwant %+v", c, want)
	}
	stop := errors.New("stop")
	if _, err := s.Recover(store.Visitor{Queue: func(store.Queue, store.ListInfo) error { return stop }}); !errors.Is(err, stop) {
		t.Fatalf("visitor error not returned: %v", err)
	}
}

// slowWrite stands in for a sync that takes a while, so commits queue behind it deterministically.
func slowWrite() error {
	time.Sleep(2 * time.Millisecond)
	return nil
}

func testGroupCommit(t *testing.T, b Backend) {
	s := fresh(t, b, Options{BeforeWrite: slowWrite})
	const writers, each = 16, 40
	var wg sync.WaitGroup
	var notified atomic.Int64
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				seq := uint64(w*each + i + 1)
				ops := []store.Op{put(store.ListQueue, "q", seq, msg(seq, "m"))}
				if i%2 == 0 {
					if err := <-s.Commit(ops...); err != nil {
						errs <- err
					}
					notified.Add(1)
					continue
				}
				done := make(chan struct{})
				s.CommitFunc(func(err error) {
					if err != nil {
						errs <- err
					}
					notified.Add(1)
					close(done)
				}, ops...)
				<-done
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("commit: %v", err)
	}
	st := s.Stats()
	if notified.Load() != writers*each || st.Commits != writers*each || st.Ops != writers*each {
		t.Fatalf("notified %d, stats %+v; want %d commits", notified.Load(), st, writers*each)
	}
	if st.Batches >= st.Commits/2 {
		t.Fatalf("%d batches for %d concurrent commits: no group commit", st.Batches, st.Commits)
	}
	if got := entries(t, s, store.ListQueue, "q", 0, writers*each+1); len(got) != writers*each {
		t.Fatalf("%d entries stored, want %d", len(got), writers*each)
	}
	t.Logf("%d commits in %d batches", st.Commits, st.Batches)
}

// testFlushDelay: with flush_delay, a message enqueued and consumed before the flush is never written.
// testBarrier: a commit without ops completes after every commit queued before it, so a reader that
// waits for one sees their writes (the router loads a swapped-out backlog this way).
func testBarrier(t *testing.T, b Backend) {
	s := fresh(t, b, Options{FlushDelay: 20 * time.Millisecond})
	for i := uint64(1); i <= 50; i++ {
		s.CommitFunc(nil, put(store.ListQueue, "q", i, msg(i, "x")))
	}
	if err := <-s.Commit(); err != nil {
		t.Fatal(err)
	}
	if es := entries(t, s, store.ListQueue, "q", 0, 100); len(es) != 50 {
		t.Fatalf("after the barrier: %d entries, want 50", len(es))
	}
}

// testDeliveredMark: a queue record's delivered mark is replaced by the next PutQueue and recovered.
func testDeliveredMark(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	apply(t, s, store.PutQueue{Queue: store.Queue{Name: "q", Kind: 1, Delivered: 1000}},
		put(store.ListQueue, "q", 5, msg(1, "a")))
	apply(t, s, store.PutQueue{Queue: store.Queue{Name: "q", Kind: 1, Delivered: 1 << 40}})
	var got []store.Queue
	if _, err := s.Recover(store.Visitor{Queue: func(q store.Queue, _ store.ListInfo) error { got = append(got, q); return nil }}); err != nil {
		t.Fatal(err)
	}
	if want := []store.Queue{{Name: "q", Kind: 1, Delivered: 1 << 40}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("queues: got %+v, want %+v", got, want)
	}
}

func testFlushDelay(t *testing.T, b Backend) {
	s := fresh(t, b, Options{FlushDelay: 300 * time.Millisecond})
	before := s.Stats()
	put1 := s.Commit(put(store.ListQueue, "q", 1, &store.Message{ID: 1, Expires: 1 << 50, Body: []byte("transient")}))
	del1 := s.Commit(del(store.ListQueue, "q", 1))
	if err := <-put1; err != nil {
		t.Fatal(err)
	}
	if err := <-del1; err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if after.Writes != before.Writes || after.Batches != before.Batches {
		t.Fatalf("cancelled put was written: before %+v, after %+v", before, after)
	}
	if after.Commits != before.Commits+2 {
		t.Fatalf("commits: %+v", after)
	}
	if c := recoverCounts(t, s); c.Messages != 0 || c.QueueEntries != 0 {
		t.Fatalf("counts: %+v", c)
	}
	// A put that is not cancelled is written, after the delay.
	start := time.Now()
	apply(t, s, put(store.ListQueue, "q", 2, msg(2, "kept")))
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("flushed after %v, before the delay", d)
	}
	if st := s.Stats(); st.Writes == after.Writes || st.Batches != after.Batches+1 {
		t.Fatalf("kept put not written: %+v", st)
	}
}

var errInjected = errors.New("injected: no space left on device")

// testFault: a failing write fails every commit of its batch with the error and leaves nothing behind;
// the store keeps working afterwards.
func testFault(t *testing.T, b Backend) {
	var fail atomic.Bool
	s := fresh(t, b, Options{FlushDelay: 100 * time.Millisecond, BeforeWrite: func() error {
		if fail.Load() {
			return errInjected
		}
		return nil
	}})
	apply(t, s, put(store.ListQueue, "q", 1, msg(1, "before")))
	fail.Store(true)
	const n = 8
	chans := make([]<-chan error, n)
	for i := range n {
		seq := uint64(i + 2)
		chans[i] = s.Commit(put(store.ListQueue, "q", seq, msg(seq, "lost")), store.PutSession{Session: store.Session{ClientID: fmt.Sprint(i)}},
			del(store.ListQueue, "q", 1))
	}
	for i, ch := range chans {
		if err := <-ch; !errors.Is(err, errInjected) {
			t.Fatalf("commit %d: got %v, want the write error", i, err)
		}
	}
	if st := s.Stats(); st.Failed != n {
		t.Fatalf("failed commits: %+v", st)
	}
	es := entries(t, s, store.ListQueue, "q", 0, 10)
	if len(es) != 1 || string(es[0].Msg.Body) != "before" {
		t.Fatalf("failed batch partly visible: %+v", es)
	}
	if c := recoverCounts(t, s); c.Sessions != 0 || c.Messages != 1 {
		t.Fatalf("failed batch partly visible: %+v", c)
	}
	fail.Store(false)
	apply(t, s, put(store.ListQueue, "q", 2, msg(2, "after")))
	if got := entries(t, s, store.ListQueue, "q", 0, 10); len(got) != 2 {
		t.Fatalf("store not writable after a failed batch: %d entries", len(got))
	}
}

func testInvalid(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	bad := []store.Op{
		store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: "q", Seq: 1}},
		store.PutEntry{Entry: store.Entry{List: 9, Owner: "q", Seq: 1, Msg: msg(1, "")}},
		store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: "q", Seq: 1, Msg: &store.Message{}}},
		store.PutInflight{Inflight: store.Inflight{ClientID: "c", State: store.InflightPublish}},
		store.PutInflight{Inflight: store.Inflight{ClientID: "c", State: 7}},
		store.PutRetained{Retained: store.Retained{Topic: "t"}},
		put(store.ListQueue, "q", 1, &store.Message{ID: 1, Expires: -1}),
		nil,
	}
	for _, op := range bad {
		// The valid op alongside is not applied either: the commit is all or nothing.
		if err := store.Apply(s, put(store.ListQueue, "ok", 1, msg(1, "x")), op); !errors.Is(err, store.ErrInvalidOp) {
			t.Fatalf("%#v: got %v, want ErrInvalidOp", op, err)
		}
	}
	if c := recoverCounts(t, s); c.QueueEntries != 0 {
		t.Fatalf("invalid commit partly applied: %+v", c)
	}
}

func testClose(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir, Options{FlushDelay: time.Hour})
	ch := s.Commit(put(store.ListQueue, "q", 1, msg(1, "flushed at close")))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatalf("commit queued before Close: %v", err)
	}
	if err := store.Apply(s, put(store.ListQueue, "q", 2, msg(2, "late"))); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("commit after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Entries(store.ListQueue, "q", 0, 1); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	if _, err := s.Recover(store.Visitor{}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("recover after Close: %v", err)
	}
	if !b.Persistent {
		return
	}
	s = open(t, b, dir, Options{})
	defer s.Close()
	if es := entries(t, s, store.ListQueue, "q", 0, 10); len(es) != 1 {
		t.Fatalf("commit flushed at Close not persisted: %+v", es)
	}
}

func testExpired(t *testing.T, b Backend) {
	s := fresh(t, b, Options{})
	exp := func(id uint64, at int64) *store.Message { return &store.Message{ID: id, Expires: at} }
	apply(t, s, put(store.ListQueue, "q", 1, exp(1, 1000)), put(store.ListQueue, "q", 2, exp(2, 3000)),
		put(store.ListQueue, "q", 3, exp(3, 0)), put(store.ListDurableSub, "d", 1, exp(4, 2000)),
		put(store.ListDurableSub, "c", 1, exp(1, 1000)))
	// Acked before expiry: its index key must go with it.
	apply(t, s, del(store.ListQueue, "q", 2))
	refs, err := s.RemoveExpired(2500, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 {
		t.Fatalf("limit 1: removed %v", refs)
	}
	more, err := s.RemoveExpired(2500, 10)
	if err != nil {
		t.Fatal(err)
	}
	refs = append(refs, more...)
	if len(refs) != 3 {
		t.Fatalf("removed %v, want the three entries expired by 2500", refs)
	}
	if got := seqs(entries(t, s, store.ListQueue, "q", 0, 10)); !reflect.DeepEqual(got, []uint64{3}) {
		t.Fatalf("queue after expiry: %v", got)
	}
	if c := recoverCounts(t, s); c.Messages != 1 || c.DurableSubEntries != 0 {
		t.Fatalf("after expiry: %+v", c)
	}
	if refs, err := s.RemoveExpired(1<<60, 10); err != nil || len(refs) != 0 {
		t.Fatalf("nothing left to expire: %v %v", refs, err)
	}
}

// populate writes one of everything.
func populate(t *testing.T, s store.Store) {
	shared := &store.Message{ID: 100, DestKind: 1, DestPath: []string{"a", "b"}, Origin: "a/b", QoS: 1, Retain: true,
		Headers: []store.Header{{Name: "h", Value: "v"}}, ContentType: "application/json", Body: []byte(`{"x":1}`),
		ReplyToKind: 1, ReplyToPath: []string{"svc", "", "replies"}, CorrelationData: []byte{0xfe, 0, 'c'}, UTF8: true}
	ops := []store.Op{
		store.PutQueue{Queue: store.Queue{Name: "orders", Kind: 1}},
		store.PutQueue{Queue: store.Queue{Name: "DLQ.orders", Kind: 2}},
		store.PutDurableSub{Sub: store.DurableSub{ID: "audit", Filter: "orders.**", Owner: "bob", QoS: 1}},
		store.PutDurableSub{Sub: store.DurableSub{ID: "dev-1 a/#", Filter: "a/#", Owner: "alice", QoS: 2, Flags: 1}},
		store.PutSession{Session: store.Session{ClientID: "dev-1", ProtocolVersion: 4, Owner: "alice",
			Subscriptions: []store.Subscription{{Name: "a/#", Filter: "a/#", QoS: 2, Durable: true}}}},
		store.PutInflight{Inflight: store.Inflight{ClientID: "dev-1", PacketID: 1, State: store.InflightPublish, QoS: 2,
			Ref: store.Ref{List: store.ListDurableSub, Owner: "dev-1 a/#", Seq: 1}}},
		store.PutInflight{Inflight: store.Inflight{ClientID: "dev-1", PacketID: 2, State: store.InflightRelease, QoS: 2,
			Ref: store.Ref{List: store.ListDurableSub, Owner: "dev-1 a/#", Seq: 7}}},
		store.PutInbound{ClientID: "dev-1", PacketID: 77},
		store.PutRetained{Retained: store.Retained{Topic: "a/b", Msg: shared}},
		put(store.ListDurableSub, "audit", 1, shared),
		put(store.ListDurableSub, "dev-1 a/#", 1, shared),
		store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: "DLQ.orders", Seq: 9, Redeliveries: 5, Msg: msg(5, "dead")}},
	}
	for i := range 2500 { // more than one export window
		id := uint64(1000 + i)
		ops = append(ops, put(store.ListQueue, "orders", uint64(i+1), &store.Message{ID: id, Expires: int64(id) << 30,
			Body: fmt.Appendf(nil, "m%d", i)}))
	}
	apply(t, s, ops...)
}

// snapshot is everything a store holds, fully loaded, for comparisons.
type snapshot struct {
	Counts   store.Counts
	Queues   []store.Queue
	Subs     []store.DurableSub
	Sessions []store.SessionState
	Retained []store.Retained
	Entries  []store.Entry
}

// Verifier is implemented by stores that can check their internal invariants; the suite calls it after
// every comparison.
type Verifier interface{ Verify() error }

func verify(t *testing.T, s store.Store) {
	t.Helper()
	if v, ok := s.(Verifier); ok {
		if err := v.Verify(); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
}

func snap(t *testing.T, s store.Store) snapshot {
	t.Helper()
	verify(t, s)
	var sn snapshot
	var refs []store.Ref
	c, err := s.Recover(store.Visitor{
		Queue: func(q store.Queue, _ store.ListInfo) error {
			sn.Queues = append(sn.Queues, q)
			refs = append(refs, store.Ref{List: store.ListQueue, Owner: q.Name})
			return nil
		},
		DurableSub: func(d store.DurableSub, _ store.ListInfo) error {
			sn.Subs = append(sn.Subs, d)
			refs = append(refs, store.Ref{List: store.ListDurableSub, Owner: d.ID})
			return nil
		},
		Session: func(ss store.SessionState) error {
			sn.Sessions = append(sn.Sessions, ss)
			return nil
		},
		Retained: func(r store.Retained) error { sn.Retained = append(sn.Retained, r); return nil },
	})
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	sn.Counts = c
	for _, r := range refs {
		sn.Entries = append(sn.Entries, entries(t, s, r.List, r.Owner, 0, 1<<30)...)
	}
	return sn
}

func testExportImport(t *testing.T, b Backend) {
	src := fresh(t, b, Options{})
	populate(t, src)
	var buf bytes.Buffer
	c, err := store.Export(src, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if c.QueueEntries != 2501 {
		t.Fatalf("export counts: %+v", c)
	}
	dst := fresh(t, b, Options{})
	if _, err := store.Import(bytes.NewReader(buf.Bytes()), dst); err != nil {
		t.Fatal(err)
	}
	want, got := snap(t, src), snap(t, dst)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("import differs from export source:\n got %+v\nwant %+v", got.Counts, want.Counts)
	}
	if got.Counts.Messages != 2502 {
		t.Fatalf("shared message not stored once after import: %+v", got.Counts)
	}
	// The MQTT 5 properties travel in the stream, and messages without them export without the fields.
	if len(got.Retained) != 1 || !reflect.DeepEqual(got.Retained[0].Msg.ReplyToPath, []string{"svc", "", "replies"}) ||
		!bytes.Equal(got.Retained[0].Msg.CorrelationData, []byte{0xfe, 0, 'c'}) || !got.Retained[0].Msg.UTF8 {
		t.Fatalf("retained message after import: %+v", got.Retained)
	}
	if n := bytes.Count(buf.Bytes(), []byte(`"ReplyToPath"`)); n != 3 { // retained, and two dsub entries
		t.Fatalf("export holds %d ReplyToPath fields, want 3 (messages without one leave it out)", n)
	}
	// A stream from another format version is refused.
	bad := bytes.Replace(buf.Bytes(), []byte(fmt.Sprintf(`"version":%d`, store.FormatVersion)), []byte(`"version":99`), 1)
	if _, err := store.Import(bytes.NewReader(bad), fresh(t, b, Options{})); !errors.Is(err, store.ErrVersion) {
		t.Fatalf("import of version 99: %v", err)
	}
}

func testReopen(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir, Options{})
	populate(t, s)
	apply(t, s, del(store.ListQueue, "orders", 1), put(store.ListQueue, "orders", 2, msg(2, "replaced")))
	want := snap(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, b, dir, Options{})
	defer s.Close()
	if got := snap(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen:\n got %+v\nwant %+v", got.Counts, want.Counts)
	}
}

func testLocked(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir, Options{})
	defer s.Close()
	s2, err := b.Open(dir, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of one directory succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	// The first store is unaffected.
	apply(t, s, put(store.ListQueue, "q", 1, msg(1, "x")))
}

// testStats: every commit is in the commit latency distribution, from its queueing to its outcome (a
// flush delay shows in it), and the store's size grows with what it holds.
func testStats(t *testing.T, b Backend) {
	const delay = 30 * time.Millisecond
	s := fresh(t, b, Options{FlushDelay: delay})
	const n, size = 5, 4000
	for i := uint64(1); i <= n; i++ {
		apply(t, s, put(store.ListQueue, "q", i, msg(i, strings.Repeat("x", size))))
	}
	st := s.Stats()
	d := st.CommitLatency
	if d.Count != st.Commits || d.Count < n {
		t.Fatalf("%d commits, %d in the latency distribution", st.Commits, d.Count)
	}
	if len(d.Bounds) != len(d.Cumulative) || len(d.Bounds) == 0 {
		t.Fatalf("distribution shape: %+v", d)
	}
	for i := range d.Bounds {
		if i > 0 && (d.Bounds[i] <= d.Bounds[i-1] || d.Cumulative[i] < d.Cumulative[i-1]) || d.Cumulative[i] > d.Count {
			t.Fatalf("distribution not cumulative over ascending bounds: %+v", d)
		}
		if d.Bounds[i] < delay && d.Cumulative[i] != 0 {
			t.Fatalf("%d commits took at most %v, under the flush delay of %v: %+v", d.Cumulative[i], d.Bounds[i], delay, d)
		}
	}
	if d.Sum < n*delay {
		t.Fatalf("latency sum %v for %d commits that each waited %v", d.Sum, n, delay)
	}
	if st.Queued != 0 {
		t.Fatalf("%d commits queued with nobody writing", st.Queued)
	}
	// Stats was not called before: a store that measures its size now and then measures it now.
	if st.SizeBytes < n*size {
		t.Fatalf("size %d bytes holding %d bodies of %d bytes", st.SizeBytes, n, size)
	}
}
