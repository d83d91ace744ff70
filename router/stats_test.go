package router

import (
	"testing"
)

// checkDrops checks the counters that changed since before, against want (the fields named there), and
// that every other drop counter stayed put; Dropped must stay the sum of the reasons.
func checkDrops(t *testing.T, r *Router, before Stats, want Stats) {
	t.Helper()
	st := r.Stats()
	got := Stats{
		DroppedQueueFull:      st.DroppedQueueFull - before.DroppedQueueFull,
		DroppedSubscriberFull: st.DroppedSubscriberFull - before.DroppedSubscriberFull,
		DroppedExpired:        st.DroppedExpired - before.DroppedExpired,
		DroppedPoisoned:       st.DroppedPoisoned - before.DroppedPoisoned,
		NoRoute:               st.NoRoute - before.NoRoute,
		QueueFull:             st.QueueFull - before.QueueFull,
	}
	if got != want {
		t.Fatalf("counters grew by %+v, want %+v", got, want)
	}
	if sum := st.DroppedQueueFull + st.DroppedSubscriberFull + st.DroppedExpired + st.DroppedPoisoned; st.Dropped != sum {
		t.Fatalf("Dropped %d is not the sum of the reasons %d: %+v", st.Dropped, sum, st)
	}
}

// Every place the router loses a message counts it under its reason, and Dropped is their sum.
func TestDropReasons(t *testing.T) {
	r := New(Options{QueuePolicies: []QueuePolicy{
		policy(t, "/queue/tail", QueuePolicy{MaxMessages: 1, Full: FullDropTail}),
		policy(t, "/queue/head", QueuePolicy{MaxMessages: 1, Full: FullDropHead}),
		policy(t, "/queue/block", QueuePolicy{MaxMessages: 1}),
		policy(t, "/queue/poison", QueuePolicy{NakLimit: 1}),
		{Filter: dsubFilter(dsubD), MaxMessages: 1},
	}})

	t.Run("queue full policies", func(t *testing.T) {
		before := r.Stats()
		pubMsg(t, r, qmsg(t, "/queue/tail", "1"))
		pubMsg(t, r, qmsg(t, "/queue/tail", "2")) // dropped itself
		pubMsg(t, r, qmsg(t, "/queue/head", "1"))
		pubMsg(t, r, qmsg(t, "/queue/head", "2")) // evicts "1"
		checkDrops(t, r, before, Stats{DroppedQueueFull: 2})
	})
	t.Run("FullBlock refuses, drops nothing", func(t *testing.T) {
		before := r.Stats()
		pubMsg(t, r, qmsg(t, "/queue/block", "1"))
		if pr := r.Publish(qmsg(t, "/queue/block", "2")); pr.Err != ErrQueueFull {
			t.Fatalf("%+v, want ErrQueueFull", pr)
		}
		checkDrops(t, r, before, Stats{QueueFull: 1})
	})
	t.Run("durable subscription full", func(t *testing.T) {
		if _, err := r.CreateDurable(dsubD, DurableOptions{Filter: mustFilter(t, mqttG, "p/#"), QoS: 1}, nil); err != nil {
			t.Fatal(err)
		}
		before := r.Stats()
		publishN(t, r, "p/x", 1, 0, 2) // the second does not fit
		checkDrops(t, r, before, Stats{DroppedQueueFull: 1})
	})
	t.Run("subscriber full", func(t *testing.T) {
		full := &recSink{}
		full.full.Store(true)
		r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, "s/#"), Sink: full})
		r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, "s/#"), Sink: &recSink{}})
		r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, "s/#"), Sink: full, Share: "g"})
		before := r.Stats()
		pr := pubMsg(t, r, &Message{Dest: mustName(t, mqttG, "s/1"), Body: []byte("x")})
		if pr.Delivered != 1 || pr.Dropped != 2 {
			t.Fatalf("%+v, want one delivery and two drops", pr)
		}
		checkDrops(t, r, before, Stats{DroppedSubscriberFull: 2})
	})
	t.Run("expired", func(t *testing.T) {
		before := r.Stats()
		pubMsg(t, r, &Message{Dest: mustName(t, stompG, "/queue/exp"), Body: []byte("old"), Expires: 1})
		c, _ := r.Consume(queueSub(t, "/queue/exp", &recSink{}), ConsumerOptions{AutoAck: true})
		defer c.Close()
		checkDrops(t, r, before, Stats{DroppedExpired: 1})
	})
	t.Run("poisoned without a DLQ", func(t *testing.T) {
		before := r.Stats()
		pubMsg(t, r, qmsg(t, "/queue/poison", "p"))
		s := &recSink{}
		c, _ := r.Consume(queueSub(t, "/queue/poison", s), ConsumerOptions{})
		defer c.Close()
		c.Nack(s.all()[0].Seq)
		checkDrops(t, r, before, Stats{DroppedPoisoned: 1})
		if st := r.Stats(); st.Poisoned-before.Poisoned != 1 || st.DeadLettered != before.DeadLettered {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("no route", func(t *testing.T) {
		before := r.Stats()
		pr := pubMsg(t, r, &Message{Dest: mustName(t, mqttG, "nobody/here"), Body: []byte("x"), Retain: true})
		if pr.Delivered != 0 || pr.Dropped != 0 {
			t.Fatalf("%+v", pr)
		}
		// A subscriber's gate refusing a message is not "no route": the topic has a subscriber.
		r.Subscribe(&Subscription{Filter: mustFilter(t, mqttG, "gated"), Sink: &gateSink{deny: []string{"gated"}}})
		pubMsg(t, r, &Message{Dest: mustName(t, mqttG, "gated"), Body: []byte("x")})
		checkDrops(t, r, before, Stats{NoRoute: 1})
		if n := len(r.Retained(mustFilter(t, mqttG, "nobody/here"))); n != 1 {
			t.Fatalf("a retained message published to nobody was not kept: %d", n)
		}
	})
}
