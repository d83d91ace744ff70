package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
)

func runStore(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := storeCommand(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestStoreExportImport(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	s, err := badgerstore.Open(src, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &store.Message{ID: 1, DestPath: []string{"orders"}, QoS: 1, Persistent: true, Body: []byte("hello")}
	err = store.Apply(s, store.PutQueue{Queue: store.Queue{Name: "orders"}},
		store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: "orders", Seq: 1, Msg: m}},
		store.PutRetained{Retained: store.Retained{Topic: "a/b", Msg: m}},
		store.PutSession{Session: store.Session{ClientID: "dev", ProtocolVersion: 4}})
	if err != nil {
		t.Fatal(err)
	}

	// The running "broker" holds the lock: export is refused with a clear reason.
	if code, _, stderr := runStore("export", "--dir", src); code != 1 || !strings.Contains(stderr, "in use") {
		t.Fatalf("export of a locked store: code %d, %q", code, stderr)
	}
	s.Close()

	file := filepath.Join(t.TempDir(), "backup.jsonl")
	code, _, stderr := runStore("export", "--dir", src, "--out", file)
	if code != 0 || !strings.Contains(stderr, "1 queues (1 messages)") {
		t.Fatalf("export: code %d, %q", code, stderr)
	}
	head, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(head), fmt.Sprintf(`{"format":"lyre-store-export","version":%d}`, store.FormatVersion)) {
		t.Fatalf("export file header: %q %v", head[:min(len(head), 60)], err)
	}
	if code, _, stderr := runStore("import", "--dir", dst, "--in", file); code != 0 ||
		!strings.Contains(stderr, "1 sessions") || !strings.Contains(stderr, "1 message bodies") {
		t.Fatalf("import: code %d, %q", code, stderr)
	}
	// Importing again would duplicate: refused without --force.
	if code, _, stderr := runStore("import", "--dir", dst, "--in", file); code != 1 || !strings.Contains(stderr, "--force") {
		t.Fatalf("second import: code %d, %q", code, stderr)
	}
	if code, _, stderr := runStore("import", "--dir", dst, "--in", file, "--force"); code != 0 {
		t.Fatalf("forced import: code %d, %q", code, stderr)
	}

	if code, stdout, stderr := runStore("check", "--dir", dst); code != 0 || !strings.Contains(stdout, ": ok: 1 queues") {
		t.Fatalf("check: code %d, %q %q", code, stdout, stderr)
	}

	d, err := badgerstore.Open(dst, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	es, err := d.Entries(store.ListQueue, "orders", 0, 10)
	if err != nil || len(es) != 1 || string(es[0].Msg.Body) != "hello" {
		t.Fatalf("imported entries: %+v %v", es, err)
	}
}

func TestStoreCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"export"},
		{"export", "--dir", "x", "--vhost", "y"},
		{"export", "--dir", "x", "extra"},
	} {
		if code, _, stderr := runStore(args...); code != 2 || stderr == "" {
			t.Errorf("%q: code %d, stderr %q", args, code, stderr)
		}
	}
	if code, _, stderr := runStore("export", "--dir", filepath.Join(t.TempDir(), "none")); code != 1 ||
		!strings.Contains(stderr, "not a store directory") {
		t.Fatalf("export of a missing directory: code %d, %q", code, stderr)
	}
	if code, _, stderr := runStore("export", "--vhost", "nope"); code != 2 || !strings.Contains(stderr, `no virtual host "nope"`) {
		t.Fatalf("export of an unknown host: code %d, %q", code, stderr)
	}
}

// TestStoreExportImportProperties: a message's MQTT 5 properties (reply-to, correlation data, UTF-8)
// survive `lyre store export` and `lyre store import`.
func TestStoreExportImportProperties(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	s, err := badgerstore.Open(src, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &store.Message{ID: 1, DestKind: 1, DestPath: []string{"rpc"}, QoS: 1, Persistent: true, ContentType: "text/plain",
		Headers: []store.Header{{Name: "app", Value: "x"}}, ReplyToPath: []string{"a", "b"},
		CorrelationData: []byte{0, 0xff, 'k'}, UTF8: true, Body: []byte("ping")}
	err = store.Apply(s, store.PutQueue{Queue: store.Queue{Name: "rpc"}},
		store.PutEntry{Entry: store.Entry{List: store.ListQueue, Owner: "rpc", Seq: 1, Msg: m}})
	if cerr := s.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	file := filepath.Join(t.TempDir(), "backup.jsonl")
	if code, _, stderr := runStore("export", "--dir", src, "--out", file); code != 0 {
		t.Fatalf("export: code %d, %q", code, stderr)
	}
	if code, _, stderr := runStore("import", "--dir", dst, "--in", file); code != 0 {
		t.Fatalf("import: code %d, %q", code, stderr)
	}
	d, err := badgerstore.Open(dst, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	es, err := d.Entries(store.ListQueue, "rpc", 0, 10)
	if err != nil || len(es) != 1 {
		t.Fatalf("imported entries: %+v %v", es, err)
	}
	if !reflect.DeepEqual(es[0].Msg, m) {
		t.Fatalf("imported message:\n got %+v\nwant %+v", es[0].Msg, m)
	}
}
