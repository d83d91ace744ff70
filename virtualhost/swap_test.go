package virtualhost_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/virtualhost"
)

var swapQueue = router.Destination{Kind: router.Queue, Path: []string{"swap"}}

func swapConsume(t *testing.T, h *virtualhost.Host, credit int) (*router.Consumer, chanSink) {
	t.Helper()
	ch := make(chanSink, 10000)
	f := router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "swap"}}}
	c, err := h.Router.Consume(&router.Subscription{Filter: f, Sink: ch}, router.ConsumerOptions{Credit: credit})
	if err != nil {
		t.Fatal(err)
	}
	return c, ch
}

func numbered(i int) *router.Message {
	body := binary.BigEndian.AppendUint64(nil, uint64(i))
	return &router.Message{Dest: swapQueue, Body: body, QoS: 1, Persistent: true}
}

func next(t *testing.T, ch chanSink) router.Delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
		return router.Delivery{}
	}
}

// A window loaded while the writes of the swapped messages are still queued (flush_delay) finds them:
// Load merges what is journalled and not yet written.
func TestSwappedWindowIncludesUnwrittenMessages(t *testing.T) {
	c := conf.VirtualHost{Name: "d", Anonymous: true, Store: &conf.Store{Directory: t.TempDir(), Sync: true, FlushDelay: 200 * time.Millisecond}}
	h, err := openHost(c, router.Options{SwapMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const n = 100
	for i := range n {
		if pr := h.Router.Publish(numbered(i)); pr.Err != nil {
			t.Fatal(pr.Err)
		}
	}
	cons, ch := swapConsume(t, h, 5)
	defer cons.Close()
	for i := range n {
		d := next(t, ch)
		if got := binary.BigEndian.Uint64(d.Msg.Body); got != uint64(i) {
			t.Fatalf("delivery %d is message %d", i, got)
		}
		cons.Ack(d.Seq)
	}
	if st := h.Router.Stats(); st.SwapLoads == 0 || st.SwapLoadErrors != 0 {
		t.Fatalf("router stats %+v", st)
	}
}

// After a crash, the messages a queue had delivered and not seen acknowledged come back marked as
// redeliveries (the delivered mark, journalled once per window ahead of the deliveries, so a few
// undelivered ones after them are marked too); the message group survives as well.
func TestCrashMarksDeliveredMessagesRedelivered(t *testing.T) {
	dir := t.TempDir()
	st, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := virtualhost.Open(durableConf(dir), router.Options{}, virtualhost.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		m := numbered(i)
		if i%2 == 0 {
			m.Group = "even"
		}
		if err := publishWait(t, h, m); err != nil {
			t.Fatal(err)
		}
	}
	cons, ch := swapConsume(t, h, 3)
	for range 3 {
		next(t, ch) // delivered, never acknowledged
	}
	_ = cons
	// The crash: the store stops with what was committed; the router never closes, so it journals no
	// exact mark.
	if err := virtualhost.Crash(h); err != nil {
		t.Fatal(err)
	}

	h2, err := openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	cons2, ch2 := swapConsume(t, h2, n+1)
	defer cons2.Close()
	lastMarked := uint64(1 + router.DeliveredWindow)
	for i := range n {
		d := next(t, ch2)
		if got := binary.BigEndian.Uint64(d.Msg.Body); got != uint64(i) {
			t.Fatalf("delivery %d is message %d", i, got)
		}
		if marked := d.Redeliveries > 0; marked != (d.QueueSeq <= lastMarked) {
			t.Fatalf("message %d (seq %d): redeliveries %d, mark %d", i, d.QueueSeq, d.Redeliveries, lastMarked)
		}
		if want := map[bool]string{true: "even"}[i%2 == 0]; d.Msg.Group != want {
			t.Fatalf("message %d: group %q, want %q", i, d.Msg.Group, want)
		}
	}
	// New messages get sequence numbers above the mark, so a later crash marks none of them.
	if err := publishWait(t, h2, numbered(n)); err != nil {
		t.Fatal(err)
	}
	if d := next(t, ch2); d.QueueSeq <= lastMarked || d.QueueSeq <= n || d.Redeliveries != 0 {
		t.Fatalf("new message: seq %d redeliveries %d", d.QueueSeq, d.Redeliveries)
	}
}
