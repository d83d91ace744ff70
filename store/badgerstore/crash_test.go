package badgerstore_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
)

const crashDirEnv = "LYRE_STORE_CRASH_DIR"

// TestCrashKeepsAcknowledged kills a writing process with SIGKILL several times; after each restart
// every commit that process was told was durable is there, and the store's invariants hold.
func TestCrashKeepsAcknowledged(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir, os.Getenv("LYRE_STORE_CRASH_BASE"))
		return
	}
	if testing.Short() {
		t.Skip("subprocess crash test")
	}
	dir := t.TempDir()
	for round := range 3 {
		base := uint64(round+1) * 1_000_000
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledged$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("LYRE_STORE_CRASH_BASE=%d", base))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var acked []uint64
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "ack ")
			if !ok {
				continue
			}
			seq, err := strconv.ParseUint(line, 10, 64)
			if err != nil {
				continue // a line cut by the kill
			}
			acked = append(acked, seq)
			if len(acked) == 1500 {
				cmd.Process.Kill() // SIGKILL mid-stream: commits are still in flight
			}
		}
		cmd.Wait()
		if len(acked) < 1500 {
			t.Fatalf("round %d: child acknowledged only %d commits before exiting", round, len(acked))
		}
		s, err := badgerstore.Open(dir, badgerstore.Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		es, err := s.Entries(store.ListQueue, "crash", base, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		have := make(map[uint64]bool, len(es))
		for _, e := range es {
			if e.Seq >= base+1_000_000 {
				break
			}
			if string(e.Msg.Body) != fmt.Sprint(e.Seq) {
				t.Fatalf("round %d: entry %d has body %q", round, e.Seq, e.Msg.Body)
			}
			have[e.Seq] = true
		}
		deleted := make(map[uint64]bool)
		for _, seq := range acked {
			if acks(seq, base) {
				deleted[seq-10] = true
			}
		}
		for _, seq := range acked {
			// An entry that a later commit deletes may be gone even if that commit was not acknowledged
			// (durable, killed before it could say so); any other acknowledged entry must be there.
			if !have[seq] && !acks(seq+10, base) {
				t.Fatalf("round %d: acknowledged commit %d lost (%d acked, %d stored)", round, seq, len(acked), len(have))
			}
		}
		for seq := range deleted {
			if have[seq] {
				t.Fatalf("round %d: entry %d back after its acknowledged delete", round, seq)
			}
		}
		if err := s.Verify(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: %d acknowledged, %d stored", round, len(acked), len(have))
		s.Close()
	}
}

// acks says whether commit seq also deletes entry seq-10.
func acks(seq, base uint64) bool { return seq%3 == 0 && seq > base+10 }

// crashChild commits numbered entries from 8 goroutines and prints each one once it is durable, until
// it is killed.
func crashChild(dir, baseText string) {
	base, _ := strconv.ParseUint(baseText, 10, 64)
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	var next atomic.Uint64
	next.Store(base)
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				seq := next.Add(1)
				m := &store.Message{ID: seq, QoS: 1, Persistent: true, Body: []byte(fmt.Sprint(seq))}
				ops := []store.Op{store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: "crash", Seq: seq, Msg: m}}}
				if acks(seq, base) {
					// Deletes are in flight at the kill too: this commit also acks an earlier entry.
					ops = append(ops, store.DeleteEntry{Ref: store.Ref{List: store.ListQueue, Owner: "crash", Seq: seq - 10}})
				}
				if err := store.Apply(s, ops...); err != nil {
					fmt.Fprintln(os.Stderr, "child commit:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %d\n", seq)
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
