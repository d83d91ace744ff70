package virtualhost_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/virtualhost"
)

func durableConf(dir string) conf.VirtualHost {
	return conf.VirtualHost{Name: "d", Anonymous: true, Store: &conf.Store{Directory: dir, Sync: true}}
}

// publishWait publishes m with a tracker and waits for its durable writes.
func publishWait(t *testing.T, h *virtualhost.Host, m *router.Message) error {
	t.Helper()
	tr := &virtualhost.Tracker{}
	m.Tracker = tr
	if res := h.Router.Publish(m); res.Err != nil {
		t.Fatalf("publish: %v", res.Err)
	}
	done := make(chan error, 1)
	tr.Then(func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("tracker never completed")
		return nil
	}
}

func topicMsg(path []string, body string) *router.Message {
	return &router.Message{Dest: router.Destination{Kind: router.Topic, Path: path}, Body: []byte(body),
		QoS: 1, Retain: true, Headers: []router.Header{{Name: "k", Value: "v"}}}
}

func TestRetainedSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Durable() {
		t.Fatal("host with a store block is not durable")
	}
	for _, m := range []*router.Message{
		topicMsg([]string{"a", "b"}, "one"),
		topicMsg([]string{"a", "c/d%"}, "two"),
		topicMsg([]string{"gone"}, "three"),
		topicMsg([]string{"gone"}, ""), // an empty retained message clears the topic
	} {
		if err := publishWait(t, h, m); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()

	h, err = openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if c := h.Recovered(); c.Retained != 2 {
		t.Fatalf("recovered %d retained, want 2", c.Retained)
	}
	f := router.Filter{Kind: router.Topic, Segs: []router.Seg{{Kind: router.SegMany}}}
	got := h.Router.Retained(f)
	if len(got) != 2 || string(got[0].Body) != "one" || string(got[1].Body) != "two" {
		t.Fatalf("retained after reopen: %v", got)
	}
	if p := got[1].Dest.Path; len(p) != 2 || p[1] != "c/d%" {
		t.Fatalf("path not restored byte for byte: %q", p)
	}
	if hd := got[0].Headers; len(hd) != 1 || hd[0].Value != "v" {
		t.Fatalf("headers not restored: %v", hd)
	}
	// New messages get IDs above the recovered ones, so the store never sees an ID twice.
	m := &router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"x"}}, Body: []byte("n")}
	h.Router.Publish(m)
	if m.ID <= got[1].ID {
		t.Fatalf("new message id %d reuses a stored id (<= %d)", m.ID, got[1].ID)
	}
}

func TestSecondOpenOfStoreRefused(t *testing.T) {
	dir := t.TempDir()
	h := open(t, durableConf(dir))
	_ = h
	_, err := openHost(durableConf(dir), router.Options{})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open of %s: %v, want ErrLocked", dir, err)
	}
}

func TestMemoryHostPersistsNothing(t *testing.T) {
	h := open(t, conf.VirtualHost{Name: "m", Anonymous: true})
	if h.Durable() {
		t.Fatal("memory host claims to be durable")
	}
	tr := &virtualhost.Tracker{}
	m := topicMsg([]string{"t"}, "x")
	m.Tracker = tr
	h.Router.Publish(m)
	if !tr.Then(func(error) {}) {
		t.Fatal("a memory host delayed an acknowledgement")
	}
}

// A store block without a store is a wiring mistake, not a memory host.
func TestStoreBlockNeedsStore(t *testing.T) {
	if h, err := virtualhost.Open(durableConf(t.TempDir()), router.Options{}); err == nil {
		h.Close()
		t.Fatal("a host with a store block opened without a store")
	}
}

func TestTrackerWaitsForEveryWrite(t *testing.T) {
	tr := &virtualhost.Tracker{}
	a, b := tr.Track(), tr.Track()
	var got []error
	if tr.Then(func(err error) { got = append(got, err) }) {
		t.Fatal("Then ran with writes pending")
	}
	a(nil)
	if len(got) != 0 {
		t.Fatal("Then ran before the last write")
	}
	boom := errors.New("boom")
	b(boom)
	b(nil) // a second call is ignored
	if len(got) != 1 || got[0] != boom {
		t.Fatalf("Then got %v, want the write's error once", got)
	}
}

// sink collects queue deliveries.
type sink struct {
	mu sync.Mutex
	ds []router.Delivery
}

func (s *sink) Deliver(d router.Delivery) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ds = append(s.ds, d)
	return true
}

func (s *sink) all() []router.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]router.Delivery(nil), s.ds...)
}

func TestQueueSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	qd := router.Destination{Kind: router.Queue, Path: []string{"orders", "eu"}}
	for i := range 6 {
		m := &router.Message{Dest: qd, Body: []byte{'0' + byte(i)}, QoS: 1, Persistent: i != 5, Priority: 4}
		if err := publishWait(t, h, m); err != nil {
			t.Fatal(err)
		}
	}
	f := router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "orders"}, {Text: "eu"}}}
	var sk sink
	c, err := h.Router.Consume(&router.Subscription{Filter: f, Sink: &sk}, router.ConsumerOptions{Credit: 3})
	if err != nil {
		t.Fatal(err)
	}
	ds := sk.all()
	if len(ds) != 3 {
		t.Fatalf("%d deliveries, want 3", len(ds))
	}
	c.Ack(ds[0].Seq)  // "0" gone for good
	c.Nack(ds[1].Seq) // "1" back with one redelivery
	c.Close()         // "1" again and "2": two redeliveries and one
	h.Close()

	h, err = openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if c := h.Recovered(); c.Queues != 1 || c.QueueEntries != 4 {
		t.Fatalf("recovered %+v, want 1 queue with 4 entries (the non-persistent one is not kept)", c)
	}
	var sk2 sink
	c, err = h.Router.Consume(&router.Subscription{Filter: f, Sink: &sk2}, router.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ds = sk2.all()
	var got string
	var redeliveries []uint32
	for _, d := range ds {
		got += string(d.Msg.Body)
		redeliveries = append(redeliveries, d.Redeliveries)
		if d.Msg.Priority != 4 || d.Msg.Dest.Kind != router.Queue {
			t.Fatalf("message attributes lost: %+v", d.Msg)
		}
	}
	if got != "1234" || !slices.Equal(redeliveries, []uint32{2, 1, 1, 0}) {
		t.Fatalf("after reopen: %q with redeliveries %v, want \"1234\" [2 1 1 0] (\"3\" went to the first consumer once \"0\" was acked)", got, redeliveries)
	}
	// New arrivals go after the recovered ones.
	h.Router.Publish(&router.Message{Dest: qd, Body: []byte("n"), QoS: 1, Persistent: true})
	if ds = sk2.all(); string(ds[len(ds)-1].Msg.Body) != "n" || ds[len(ds)-1].QueueSeq <= ds[3].QueueSeq {
		t.Fatalf("new message not after the recovered ones: %+v", ds[len(ds)-1])
	}
}

// A message dead-lettered after its nak_limit moves to the DLQ in the store too.
func TestDeadLetterSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ro := router.Options{QueuePolicies: []router.QueuePolicy{{
		Filter:   router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "work"}}},
		NakLimit: 2, DLQ: []string{"dlq", "*"},
	}}}
	h, err := openHost(durableConf(dir), ro)
	if err != nil {
		t.Fatal(err)
	}
	work := router.Destination{Kind: router.Queue, Path: []string{"work"}}
	if err := publishWait(t, h, &router.Message{Dest: work, Body: []byte("poison"), QoS: 1, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	var sk sink
	c, err := h.Router.Consume(&router.Subscription{Filter: router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "work"}}}, Sink: &sk}, router.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Nack(sk.all()[0].Seq)
	c.Nack(sk.all()[1].Seq) // the second redelivery reaches the limit
	c.Close()
	if h.Router.Stats().DeadLettered != 1 {
		t.Fatalf("stats %+v", h.Router.Stats())
	}
	h.Close()

	h, err = openHost(durableConf(dir), ro)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if n := h.Router.QueueDepth([]string{"work"}); n != 0 {
		t.Fatalf("work holds %d after reopen, want 0", n)
	}
	if n := h.Router.QueueDepth([]string{"dlq", "work"}); n != 1 {
		t.Fatalf("dlq.work holds %d after reopen, want 1", n)
	}
}

// Expired messages nobody consumes leave the store on the sweeper's schedule.
func TestExpiredMessagesSwept(t *testing.T) {
	defer virtualhost.SetSweepInterval(20 * time.Millisecond)()
	dir := t.TempDir()
	st, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := open(t, conf.VirtualHost{Name: "d", Anonymous: true}, virtualhost.WithStore(st))
	qd := router.Destination{Kind: router.Queue, Path: []string{"short"}}
	exp := time.Now().Add(50 * time.Millisecond).UnixMilli()
	if err := publishWait(t, h, &router.Message{Dest: qd, Body: []byte("x"), QoS: 1, Persistent: true, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := publishWait(t, h, &router.Message{Dest: qd, Body: []byte("y"), QoS: 1, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := st.Recover(store.Visitor{})
		if err != nil {
			t.Fatal(err)
		}
		if c.QueueEntries == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store still holds %d entries; the expired one was not swept", c.QueueEntries)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMessagePropertiesSurviveReopen: a persistent queue message and a retained message keep their MQTT 5
// properties (reply-to, correlation data, UTF-8) and the attributes STOMP maps with them (content type,
// headers, expiry) across a restart of a badger store.
func TestMessagePropertiesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	qd := router.Destination{Kind: router.Queue, Path: []string{"rpc"}}
	expires := time.Now().Add(time.Hour).UnixMilli()
	withProps := func(m *router.Message) *router.Message {
		m.ReplyTo = router.Destination{Kind: router.Topic, Path: []string{"a", "b"}}
		m.CorrelationData = []byte{0, 0xff, 'c'}
		m.UTF8 = true
		m.ContentType = "text/plain"
		m.Headers = []router.Header{{Name: "app", Value: "x"}}
		m.Expires = expires
		return m
	}
	if err := publishWait(t, h, withProps(&router.Message{Dest: qd, Body: []byte("q"), QoS: 1, Persistent: true})); err != nil {
		t.Fatal(err)
	}
	if err := publishWait(t, h, withProps(topicMsg([]string{"ret"}, "r"))); err != nil {
		t.Fatal(err)
	}
	h.Close()

	h, err = openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	check := func(what string, m *router.Message) {
		t.Helper()
		if m.ReplyTo.Kind != router.Topic || !slices.Equal(m.ReplyTo.Path, []string{"a", "b"}) ||
			string(m.CorrelationData) != "\x00\xffc" || !m.UTF8 || m.ContentType != "text/plain" || m.Expires != expires ||
			len(m.Headers) != 1 || m.Headers[0] != (router.Header{Name: "app", Value: "x"}) {
			t.Fatalf("%s after reopen: %+v", what, m)
		}
	}
	var sk sink
	c, err := h.Router.Consume(&router.Subscription{Filter: router.Filter{Kind: router.Queue, Segs: []router.Seg{{Text: "rpc"}}},
		Sink: &sk}, router.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ds := sk.all()
	if len(ds) != 1 {
		t.Fatalf("%d deliveries after reopen, want 1", len(ds))
	}
	check("queue message", ds[0].Msg)
	ret := h.Router.Retained(router.Filter{Kind: router.Topic, Segs: []router.Seg{{Text: "ret"}}})
	if len(ret) != 1 {
		t.Fatalf("%d retained after reopen, want 1", len(ret))
	}
	check("retained message", ret[0])
}
