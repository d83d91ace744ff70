package stomp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/store/memstore"
	"github.com/lyremq/lyre/virtualhost"
)

// startDurableBroker serves one durable host whose memory store fails its writes while failing is set.
func startDurableBroker(t *testing.T, failing *atomic.Bool) *broker {
	t.Helper()
	st := memstore.New(memstore.Options{BeforeWrite: func() error {
		if failing.Load() {
			return errors.New("disk full")
		}
		return nil
	}})
	host, err := virtualhost.Open(conf.VirtualHost{Name: "default", HostNames: []string{"localhost"}, Anonymous: true},
		router.Options{}, virtualhost.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	reg := virtualhost.NewRegistry(host)
	t.Cleanup(reg.Close)
	h := newTestHandler(t, reg)
	c := testConnector()
	srv, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: h}, c)
	return &broker{addr: addrs[0], srv: srv, h: h, host: host, st: st}
}

func queueEntries(t *testing.T, st store.Store) int {
	t.Helper()
	c, err := st.Recover(store.Visitor{})
	if err != nil {
		t.Fatal(err)
	}
	return c.QueueEntries
}

// On a durable host a persistent SEND's RECEIPT means the message is stored.
func TestDurableReceiptAfterWrite(t *testing.T) {
	var failing atomic.Bool
	b := startDurableBroker(t, &failing)
	r := b.raw(t)
	if f := r.connect("accept-version:1.2", "host:localhost"); f.Command != frame.CONNECTED {
		t.Fatalf("got %s", f.Command)
	}
	for i := 1; i <= 3; i++ {
		r.send(fmt.Sprintf("SEND\ndestination:/queue/q\npersistent:true\nreceipt:r%d\n\nm%d\x00", i, i))
		if f := r.read(); f.Command != frame.RECEIPT || f.Header.Get(frame.ReceiptId) != fmt.Sprintf("r%d", i) {
			t.Fatalf("got %s %v", f.Command, f.Header)
		}
		if n := queueEntries(t, b.st); n != i {
			t.Fatalf("after RECEIPT r%d the store holds %d queue entries", i, n)
		}
	}
}

// Receipts keep frame order even when some wait for writes and others do not; DISCONNECT's comes last.
func TestDurableReceiptsInOrder(t *testing.T) {
	var failing atomic.Bool
	b := startDurableBroker(t, &failing)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:localhost")
	var sb strings.Builder
	const n = 100
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&sb, "SEND\ndestination:/queue/q\npersistent:true\nreceipt:%d\n\nx\x00", i)
		} else {
			fmt.Fprintf(&sb, "SEND\ndestination:/topic/nobody\nreceipt:%d\n\nx\x00", i)
		}
	}
	sb.WriteString("DISCONNECT\nreceipt:bye\n\n\x00")
	r.send(sb.String())
	for i := range n {
		if f := r.read(); f.Command != frame.RECEIPT || f.Header.Get(frame.ReceiptId) != fmt.Sprint(i) {
			t.Fatalf("receipt %d: got %s %v", i, f.Command, f.Header)
		}
	}
	if f := r.read(); f.Header.Get(frame.ReceiptId) != "bye" {
		t.Fatalf("got %v, want the DISCONNECT receipt last", f.Header)
	}
	if got := queueEntries(t, b.st); got != n/2 {
		t.Fatalf("store holds %d entries, want %d", got, n/2)
	}
}

// A store write failure is never acknowledged: ERROR instead of RECEIPT, then the connection closes;
// the broker keeps serving.
func TestDurableWriteFailureSendsError(t *testing.T) {
	var failing atomic.Bool
	b := startDurableBroker(t, &failing)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:localhost")
	failing.Store(true)
	r.send("SEND\ndestination:/queue/q\npersistent:true\nreceipt:r1\n\nlost\x00")
	r.expectError("store write failed")
	failing.Store(false)

	r = b.raw(t)
	r.connect("accept-version:1.2", "host:localhost")
	r.send("SEND\ndestination:/queue/q\npersistent:true\nreceipt:r2\n\nkept\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s %v", f.Command, f.Header)
	}
}

// startBadgerBroker serves one host with its store in dir, restoring what the store holds; stop ends it
// like a graceful shutdown.
func startBadgerBroker(t *testing.T, dir string) (b *broker, stop func()) {
	t.Helper()
	st, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	host, err := virtualhost.Open(conf.VirtualHost{Name: "default", HostNames: []string{"localhost"}, Anonymous: true},
		router.Options{}, virtualhost.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	reg := virtualhost.NewRegistry(host)
	h := newTestHandler(t, reg)
	c := testConnector()
	srv, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: h}, c)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		reg.Close()
	}
	t.Cleanup(stop)
	return &broker{addr: addrs[0], srv: srv, h: h, host: host, st: st}, stop
}

// A durable subscription survives a restart with the persistent messages it held; its receipt came
// after its record was stored.
func TestDurableSubscriptionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b, stop := startBadgerBroker(t, dir)
	r := b.raw(t)
	r.connect("accept-version:1.2", "host:localhost")
	r.send("SUBSCRIBE\nid:d1\ndestination:/topic/news.*\npersistent:true\nreceipt:s\n\n\x00")
	if f := r.read(); f.Command != frame.RECEIPT {
		t.Fatalf("got %s %v", f.Command, f.Header)
	}
	if c, _ := b.st.Recover(store.Visitor{}); c.DurableSubs != 1 {
		t.Fatalf("after the SUBSCRIBE receipt the store holds %d durable subscriptions", c.DurableSubs)
	}
	r.send("DISCONNECT\nreceipt:bye\n\n\x00")
	r.read()

	p := b.raw(t)
	p.connect("accept-version:1.2", "host:localhost")
	p.send("SEND\ndestination:/topic/news.a\npersistent:true\nreceipt:1\n\nn1\x00" +
		"SEND\ndestination:/topic/news.b\npersistent:true\nreceipt:2\n\nn2\x00" +
		"SEND\ndestination:/topic/news.c\nreceipt:3\n\nn3-not-persistent\x00")
	for range 3 {
		if f := p.read(); f.Command != frame.RECEIPT {
			t.Fatalf("got %s %v", f.Command, f.Header)
		}
	}
	// The receipts of n1 and n2 came after their copies into the subscription were stored.
	if c, _ := b.st.Recover(store.Visitor{}); c.DurableSubEntries != 2 {
		t.Fatalf("store holds %d durable subscription entries, want 2", c.DurableSubEntries)
	}
	stop()

	b, _ = startBadgerBroker(t, dir)
	r = b.raw(t)
	r.connect("accept-version:1.2", "host:localhost")
	r.send("SUBSCRIBE\nid:x\ndestination:/dsub/d1\nack:auto\n\n\x00")
	for _, want := range []string{"n1", "n2"} {
		if f := r.read(); f.Command != frame.MESSAGE || string(f.Body) != want {
			t.Fatalf("got %s %q, want MESSAGE %s", f.Command, f.Body, want)
		}
	}
	// The subscription is back: a new message reaches it.
	p = b.raw(t)
	p.connect("accept-version:1.2", "host:localhost")
	p.send("SEND\ndestination:/topic/news.d\npersistent:true\nreceipt:4\n\nn4\x00")
	p.read()
	if f := r.read(); f.Command != frame.MESSAGE || string(f.Body) != "n4" {
		t.Fatalf("got %s %q, want MESSAGE n4", f.Command, f.Body)
	}
}
