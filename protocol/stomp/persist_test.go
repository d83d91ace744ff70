package stomp

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
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
	h := NewHandler(reg, zaptest.NewLogger(t))
	h.HeartBeatSend, h.HeartBeatReceive = 0, 0
	c := conf.Connector{Protocol: protocol.STOMP, STOMP: conf.STOMP{Grammar: conf.STOMPGrammarDefaults,
		DieDelay: testDieDelay, MaxMessageLength: 1 << 20, MaxHeaders: 50, MaxHeaderLength: 1024}}
	srv, addrs := prototest.StartServer(t, map[string]protocol.Handler{protocol.STOMP: h}, c)
	return &broker{addr: addrs[0], srv: srv, h: h, host: host}
}

func queueEntries(t *testing.T, h *virtualhost.Host) int {
	t.Helper()
	c, err := h.Store().Recover(store.Visitor{})
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
		if n := queueEntries(t, b.host); n != i {
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
	if got := queueEntries(t, b.host); got != n/2 {
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
