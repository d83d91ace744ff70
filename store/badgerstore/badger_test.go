package badgerstore_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
)

func openT(t *testing.T, dir string, o badgerstore.Options) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawSet writes a key behind the store's back, as another format or program would.
func rawSet(t *testing.T, dir, key, val string) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), []byte(val)) }); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownVersionRefused(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, badgerstore.Options{})
	if err := store.Apply(s, store.PutQueue{Queue: store.Queue{Name: "q"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Format version 1, from before records were protocol-neutral, and one from the future.
	for _, v := range []string{"1", "3"} {
		rawSet(t, dir, "v", v)
		_, err := badgerstore.Open(dir, badgerstore.Options{})
		if !errors.Is(err, store.ErrVersion) || !strings.Contains(err.Error(), `"`+v+`"`) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("open of a version %s store: %v", v, err)
		}
	}
	// The refusal released the directory: a matching build can still open it after a fix.
	rawSet(t, dir, "v", strconv.Itoa(store.FormatVersion))
	openT(t, dir, badgerstore.Options{}).Close()
}

func TestForeignDataRefused(t *testing.T) {
	dir := t.TempDir()
	rawSet(t, dir, "some-other-app", "x")
	if _, err := badgerstore.Open(dir, badgerstore.Options{}); !errors.Is(err, store.ErrVersion) {
		t.Fatalf("open of a directory without a version key: %v", err)
	}
}

// TestBatchTooBigSplits: commits gathered into a batch too big for one badger transaction are split at
// commit boundaries and all succeed; one commit too big on its own fails alone, applying nothing.
func TestBatchTooBigSplits(t *testing.T) {
	s := openT(t, t.TempDir(), badgerstore.Options{MemTableSize: 1 << 20, FlushDelay: 200 * time.Millisecond})
	defer s.Close()
	body := []byte(strings.Repeat("x", 100))
	commit := func(owner string, n int) <-chan error {
		ops := make([]store.Op, n)
		for i := range ops {
			ops[i] = store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: owner, Seq: uint64(i + 1),
				Msg: &store.Message{ID: uint64(len(owner))<<32 | uint64(i+1), Body: body}}}
		}
		return s.Commit(ops...)
	}
	var chans []<-chan error
	for i := range 10 {
		chans = append(chans, commit(fmt.Sprintf("q%02d", i), 150))
	}
	huge := commit("huge-queue", 3000)
	for i, ch := range chans {
		if err := <-ch; err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	if err := <-huge; !errors.Is(err, store.ErrBatchTooBig) {
		t.Fatalf("oversized commit: %v", err)
	}
	c, err := s.Recover(store.Visitor{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Queues != 10 || c.QueueEntries != 10*150 {
		t.Fatalf("after split batches: %+v", c)
	}
	if st := s.Stats(); st.Batches < 3 {
		t.Fatalf("expected the batch to be split: %+v", st)
	}
}

type recLogger struct {
	mu    sync.Mutex
	lines []string
}

func (l *recLogger) Errorf(f string, a ...any) { l.add("E " + fmt.Sprintf(f, a...)) }
func (l *recLogger) Warnf(f string, a ...any)  { l.add("W " + fmt.Sprintf(f, a...)) }
func (l *recLogger) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

// TestGCAndLogger: scheduled GC runs and stops with Close (goleak checks), and badger's chatter below
// warning level does not reach the logger.
func TestGCAndLogger(t *testing.T) {
	var log recLogger
	s := openT(t, t.TempDir(), badgerstore.Options{GCInterval: 10 * time.Millisecond, ValueThreshold: 64, Logger: &log})
	big := []byte(strings.Repeat("y", 4096))
	for i := range 50 {
		m := &store.Message{ID: uint64(i + 1), Body: big}
		ref := store.Ref{List: store.ListQueue, Owner: "q", Seq: uint64(i + 1)}
		if err := store.Apply(s, store.PutEntry{Entry: store.Entry{List: ref.List, Owner: ref.Owner, Seq: ref.Seq, Msg: m}}); err != nil {
			t.Fatal(err)
		}
		if err := store.Apply(s, store.DeleteEntry{Ref: ref}); err != nil {
			t.Fatal(err)
		}
	}
	s.RunGC(0.5) // nothing to rewrite in one small active file; must simply return
	time.Sleep(30 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, l := range log.lines {
		if !strings.HasPrefix(l, "W badger: ") && !strings.HasPrefix(l, "E badger: ") {
			t.Fatalf("unexpected log line %q", l)
		}
	}
}

// BenchmarkCommit measures durable commit throughput: writers goroutines each committing one queue
// entry (256-byte body) and waiting until it is durable, with group commit, sync on and off.
func BenchmarkCommit(b *testing.B) {
	for _, writers := range []int{8, 64} {
		for _, synced := range []bool{true, false} {
			b.Run(fmt.Sprintf("writers=%d/sync=%v", writers, synced), func(b *testing.B) {
				benchCommit(b, writers, synced)
			})
		}
	}
}

func benchCommit(b *testing.B, writers int, synced bool) {
	s, err := badgerstore.Open(b.TempDir(), badgerstore.Options{NoSync: !synced})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := make([]byte, 256)
	var next atomic.Uint64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			for {
				seq := next.Add(1)
				if seq > uint64(b.N) {
					return
				}
				m := &store.Message{ID: seq, QoS: 1, Persistent: true, Body: body}
				if err := store.Apply(s, store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: "bench", Seq: seq, Msg: m}}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(st.Commits)/float64(max(st.Batches, 1)), "commits/batch")
}
