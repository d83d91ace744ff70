package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store/badgerstore"
	"github.com/lyremq/lyre/virtualhost"
)

// testdata/v1-export.jsonl is `lyre store export` of a format-1 store written by Lyre before the
// durable-subscription model: a queue with a %2F in its name and two messages (one redelivered), a STOMP
// durable subscription on /topic/news.* with one message, alice's session dev1 subscribed to p/# and
// q/+/x with two queued messages, a QoS 2 message in flight under packet id 7, a release in flight
// under 8 and inbound id 9, and a retained message on status/k1.
func TestImportConvertsFormat1(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runStore("import", "--dir", dir, "--in", "testdata/v1-export.jsonl")
	if code != 0 || !strings.Contains(stderr, "converted 12 records of format 1") || strings.Contains(stderr, "dropped") {
		t.Fatalf("import: code %d, %q", code, stderr)
	}
	st, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := virtualhost.Open(conf.VirtualHost{Name: "upgraded", Anonymous: true}, router.Options{}, virtualhost.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if c := h.Recovered(); c.Queues != 1 || c.QueueEntries != 2 || c.DurableSubs != 3 || c.DurableSubEntries != 4 ||
		c.Sessions != 1 || c.Inflight != 2 || c.Inbound != 1 || c.Retained != 1 {
		t.Fatalf("recovered %+v", c)
	}
	rt := h.Router
	if n := rt.QueueDepthOf(router.Destination{Kind: router.Queue, Path: []string{"orders", "eu/west"}}); n != 2 {
		t.Errorf("queue orders.eu%%2Fwest holds %d, want 2", n)
	}
	stomp := router.Destination{Kind: router.DurableSub, Path: []string{"dd"}}
	if o, ok := rt.Durable(stomp); !ok || o.Filter.Kind != router.Topic || len(o.Filter.Segs) != 2 || o.Filter.Segs[1].Kind != router.SegOne {
		t.Errorf("STOMP durable subscription dd: %+v %v, want news.*", o, ok)
	}
	p := router.Destination{Kind: router.DurableSub, Path: []string{"$mqtt", "dev1", "p/#"}}
	q := router.Destination{Kind: router.DurableSub, Path: []string{"$mqtt", "dev1", "q/+/x"}}
	for _, d := range []router.Destination{p, q} {
		if o, ok := rt.Durable(d); !ok || o.Owner != "alice" || !o.DropQoS0Offline {
			t.Errorf("session subscription %v: %+v %v", d.Path, o, ok)
		}
	}
	// p/x was queued for p/#; q/a/x queued and q/b/x in flight for q/+/x, the one in flight first.
	if n := rt.QueueDepthOf(p); n != 1 {
		t.Errorf("p/# holds %d, want 1", n)
	}
	if n := rt.QueueDepthOf(q); n != 2 {
		t.Errorf("q/+/x holds %d, want 2", n)
	}
	ss := h.TakeSessions()
	if len(ss) != 1 || ss[0].Owner != "alice" || len(ss[0].Subscriptions) != 2 || !ss[0].Subscriptions[0].Durable {
		t.Fatalf("sessions %+v", ss)
	}
	var ids []uint16
	for _, f := range ss[0].Inflight {
		ids = append(ids, f.PacketID)
	}
	// The message in flight is q/b/x, kept by q/+/x; a release keeps only its packet id.
	if f := ss[0].Inflight[0]; router.Key(f.Queue) != router.Key(q) || f.Seq != 1 {
		t.Errorf("in flight %d refers to %v seq %d, want q/+/x's durable subscription, seq 1", f.PacketID, f.Queue.Path, f.Seq)
	}
	if !slices.Equal(ids, []uint16{7, 8}) || !ss[0].Inflight[1].Released || !slices.Equal(ss[0].Inbound, []uint16{9}) {
		t.Errorf("in flight %+v, inbound %v", ss[0].Inflight, ss[0].Inbound)
	}
	if got := rt.Retained(router.Filter{Kind: router.Topic, Segs: []router.Seg{{Text: "status"}, {Kind: router.SegMany}}}); len(got) != 1 || string(got[0].Body) != "r1" {
		t.Errorf("retained %v", got)
	}
}
