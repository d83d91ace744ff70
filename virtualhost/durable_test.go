package virtualhost_test

import (
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

var (
	dsubDest = router.Destination{Kind: router.DurableSub, Path: []string{"$mqtt", "dev-1", "p/#"}}
	pFilter  = router.Filter{Kind: router.Topic, Segs: []router.Seg{{Text: "p"}, {Kind: router.SegMany, Text: "#"}}}
)

func dsubConsumerFilter(d router.Destination) router.Filter {
	f := router.Filter{Kind: d.Kind}
	for _, p := range d.Path {
		f.Segs = append(f.Segs, router.Seg{Text: p})
	}
	return f
}

func pMsg(i int) *router.Message {
	return &router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"p", "x"}},
		Body: []byte(strconv.Itoa(i)), QoS: 1, Persistent: true}
}

// A durable subscription, its owner and options, and what it keeps survive a restart; the messages
// come back with the topic they were published to, in order.
func TestDurableSubscriptionSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &virtualhost.Tracker{}
	if _, err := h.Router.CreateDurable(dsubDest, router.DurableOptions{Filter: pFilter, Owner: "alice", QoS: 1, DropQoS0Offline: true}, tr); err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := publishWait(t, h, pMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()

	h, err = openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if c := h.Recovered(); c.DurableSubs != 1 || c.DurableSubEntries != 20 {
		t.Fatalf("recovered %+v, want one durable subscription holding 20", c)
	}
	o, ok := h.Router.Durable(dsubDest)
	if !ok || o.Owner != "alice" || o.QoS != 1 || !o.DropQoS0Offline || router.FilterKey(o.Filter) != router.FilterKey(pFilter) {
		t.Fatalf("restored %+v, %v", o, ok)
	}
	// It subscribes again at once: what is published before its client returns is kept too.
	if err := publishWait(t, h, pMsg(20)); err != nil {
		t.Fatal(err)
	}
	var sk sink
	c, err := h.Router.Consume(&router.Subscription{Filter: dsubConsumerFilter(dsubDest), Sink: &sk, QoS: 1},
		router.ConsumerOptions{Credit: 100, Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for _, d := range sk.all() {
		got = append(got, string(d.Msg.Body))
		if d.Msg.Dest.Kind != router.Topic || !slices.Equal(d.Msg.Dest.Path, []string{"p", "x"}) {
			t.Fatalf("restored message with destination %v, want the topic", d.Msg.Dest)
		}
	}
	want := make([]string, 21)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
}

// Destroying a durable subscription removes it and its messages from the store.
func TestDurableSubscriptionDestroyedForGood(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), router.Options{SwapMessages: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Router.CreateDurable(dsubDest, router.DurableOptions{Filter: pFilter, Owner: "alice", QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 30 { // most of them swapped out to the store
		if err := publishWait(t, h, pMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	tr := &virtualhost.Tracker{}
	if n, err := h.Router.DestroyDurable(dsubDest, "alice", tr); err != nil || n != 30 {
		t.Fatalf("destroy: %d, %v", n, err)
	}
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h, err = openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if c := h.Recovered(); c.DurableSubs != 0 || c.DurableSubEntries != 0 || c.Messages != 0 {
		t.Fatalf("recovered %+v after destroying", c)
	}
	if _, ok := h.Router.Durable(dsubDest); ok {
		t.Fatal("a destroyed durable subscription came back")
	}
}

// An MQTT QoS 2 publish gathers its inbound packet id and the durable copies into one commit (an atomic
// tracker). A consumer that acknowledges its copy before that commit must not bring the copy back: the
// acknowledgement joins the commit, after the put.
func TestAtomicTrackerOrdersAnEarlyAck(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Router.CreateDurable(dsubDest, router.DurableOptions{Filter: pFilter, Owner: "a", QoS: 2}, nil); err != nil {
		t.Fatal(err)
	}
	var sk sink
	c, err := h.Router.Consume(&router.Subscription{Filter: dsubConsumerFilter(dsubDest), Sink: &sk, QoS: 2},
		router.ConsumerOptions{Owner: "a"})
	if err != nil {
		t.Fatal(err)
	}
	tr := virtualhost.NewAtomicTracker(h)
	h.PutInbound("pub", 7, tr)
	m := pMsg(1)
	m.QoS, m.Tracker = 2, tr
	h.Router.Publish(m)
	c.Ack(sk.all()[0].Seq) // before the publisher's commit
	tr.Flush()
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	h.Close()
	h, err = openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if c := h.Recovered(); c.DurableSubEntries != 0 || c.Inbound != 1 {
		t.Fatalf("recovered %+v: want the inbound id and no entry (it was acknowledged)", c)
	}
}

// What a front-end keeps beside the router (a session's record, in-flight packet ids, inbound ids)
// comes back at startup, in protocol-neutral form.
func TestSessionStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	h, err := openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := virtualhost.SessionRecord{ClientID: "dev-1", Owner: "alice", ProtocolVersion: 4, Subscriptions: []virtualhost.SessionSub{
		{Name: "p/#", Filter: pFilter, QoS: 1, Durable: true},
		{Name: "$share/g/p/#", Filter: pFilter, Share: "g", QoS: 0},
	}}
	tr := &virtualhost.Tracker{}
	h.SaveSession(rec, tr)
	h.PutInflight("dev-1", virtualhost.Inflight{PacketID: 3, QoS: 2, Queue: dsubDest, Seq: 9}, tr)
	h.PutInflight("dev-1", virtualhost.Inflight{PacketID: 4, QoS: 2, Queue: dsubDest, Seq: 10}, tr)
	h.PutInflight("dev-1", virtualhost.Inflight{PacketID: 4, Released: true, QoS: 2, Queue: dsubDest, Seq: 10}, tr)
	h.PutInbound("dev-1", 11, tr)
	h.PutInbound("dev-1", 12, tr)
	h.DeleteInbound("dev-1", 12, tr)
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h, err = openHost(durableConf(dir), router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ss := h.TakeSessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	s := ss[0]
	if s.ClientID != "dev-1" || s.Owner != "alice" || len(s.Subscriptions) != 2 || !s.Subscriptions[0].Durable ||
		s.Subscriptions[1].Share != "g" || router.FilterKey(s.Subscriptions[1].Filter) != router.FilterKey(pFilter) {
		t.Fatalf("session %+v", s.SessionRecord)
	}
	wantF := []virtualhost.Inflight{{PacketID: 3, QoS: 2, Queue: dsubDest, Seq: 9}, {PacketID: 4, Released: true, QoS: 2, Queue: dsubDest, Seq: 10}}
	if len(s.Inflight) != 2 || s.Inflight[0].PacketID != 3 || s.Inflight[1].Released != true ||
		s.Inflight[1].Seq != wantF[1].Seq || router.Key(s.Inflight[0].Queue) != router.Key(dsubDest) {
		t.Fatalf("in flight %+v, want %+v", s.Inflight, wantF)
	}
	if !slices.Equal(s.Inbound, []uint16{11}) {
		t.Fatalf("inbound %v", s.Inbound)
	}
	if h.TakeSessions() != nil {
		t.Fatal("TakeSessions returned the sessions twice")
	}
	h.DeleteSession("dev-1", nil)
}

// The store implementations are opened by cmd/lyre; virtualhost uses the interface only.
func TestVirtualhostImportsNoStoreImplementation(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/lyremq/lyre/virtualhost").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/lyremq/lyre/store/") {
			t.Errorf("virtualhost imports %s", dep)
		}
		if strings.HasPrefix(dep, "github.com/lyremq/lyre/protocol") {
			t.Errorf("virtualhost imports %s", dep)
		}
	}
}
