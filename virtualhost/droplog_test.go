package virtualhost

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

// Messages a full queue drops under its policy are counted and logged: the first at once, the rest in
// one line per destination per period (here at Close), never a line per message.
func TestFullQueueDropsAreLogged(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	c := conf.VirtualHost{Name: "h", Queues: []conf.QueuePolicy{
		{Pattern: "small", QuotaMessages: 2, FullPolicy: conf.FullDropTail},
	}}
	h := New(c, router.Options{}, WithLogger(zap.New(core)))
	d := queueDest("small")
	for range 10 {
		h.Router.Publish(&router.Message{Dest: d, Body: []byte("x")})
	}
	if got := h.Router.Stats().Dropped; got != 8 {
		t.Fatalf("Stats.Dropped = %d, want 8", got)
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d log lines after the first drops, want 1 (the first drop, at once)", n)
	}
	h.Close()
	var total int64
	for _, e := range logs.All() {
		f := e.ContextMap()
		if f["destination"] != "/queue/small" {
			t.Errorf("logged destination %v, want /queue/small", f["destination"])
		}
		total += f["dropped"].(int64)
	}
	if logs.Len() != 2 || total != 8 {
		t.Errorf("%d lines reporting %d drops, want 2 lines reporting 8", logs.Len(), total)
	}
}

// A durable subscription's drops are reported the same way.
func TestFullDurableDropsAreLogged(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	c := conf.VirtualHost{Name: "h", Dsubs: []conf.QueuePolicy{
		{Pattern: "d", QuotaMessages: 1, FullPolicy: conf.FullDropHead},
	}}
	h := New(c, router.Options{}, WithLogger(zap.New(core)))
	defer h.Close()
	topic := router.Destination{Kind: router.Topic, Path: []string{"t"}}
	f := router.Filter{Kind: router.Topic, Segs: []router.Seg{{Kind: router.SegLiteral, Text: "t"}}}
	ds := router.Destination{Kind: router.DurableSub, Path: []string{"d"}}
	if _, err := h.Router.CreateDurable(ds, router.DurableOptions{Filter: f, QoS: 1}, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		h.Router.Publish(&router.Message{Dest: topic, Body: []byte("x"), QoS: 1, Persistent: true})
	}
	if logs.Len() != 1 || logs.All()[0].ContextMap()["destination"] != "/dsub/d" {
		t.Fatalf("log lines %v, want one about /dsub/d", logs.All())
	}
}
