package virtualhost

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

type sink struct{ got []router.Delivery }

func (s *sink) Deliver(d router.Delivery) bool { s.got = append(s.got, d); return true }

func queueDest(path ...string) router.Destination {
	return router.Destination{Kind: router.Queue, Path: path}
}

func TestRouterOptionsQueuePolicies(t *testing.T) {
	c := conf.VirtualHost{Name: "h", Queues: []conf.QueuePolicy{
		{Pattern: "orders.**", NakLimit: 1, DLQ: "dlq.*", QuotaMessages: 5},
		{Pattern: "orders.special", QuotaMessages: 1}, // shadowed: the first match wins
		{Pattern: "small", QuotaMessages: 1, FullPolicy: conf.FullDropTail},
		{Pattern: "head", QuotaMessages: 1, FullPolicy: conf.FullDropHead, AutoDeleteAfter: time.Minute},
		{Pattern: "bad.{(}"},
	}, Topics: []conf.TopicPolicy{{Pattern: "slow.*", SlowConsumerPolicy: conf.SlowBlock}, {Pattern: "x"}}}
	o := routerOptions(c, router.Options{})
	if len(o.QueuePolicies) != 5 || len(o.TopicPolicies) != 2 || o.QueuePolicies[4].Filter.Kind != router.TempQueue {
		t.Fatalf("policies %d/%d: want the 4 that parse, then the temporary queues' own", len(o.QueuePolicies), len(o.TopicPolicies))
	}
	if err := CheckPolicies(c); err == nil {
		t.Fatal("CheckPolicies accepted a bad pattern")
	}
	p := o.QueuePolicies[0]
	if p.NakLimit != 1 || !slices.Equal(p.DLQ, []string{"dlq", "*"}) || p.MaxMessages != 5 || p.Full != router.FullBlock {
		t.Fatalf("orders policy %+v", p)
	}
	if o.QueuePolicies[2].Full != router.FullDropTail || o.QueuePolicies[3].Full != router.FullDropHead ||
		o.QueuePolicies[3].AutoDeleteAfter != time.Minute {
		t.Fatalf("full policies %+v %+v", o.QueuePolicies[2], o.QueuePolicies[3])
	}
	if o.TopicPolicies[0].SlowConsumer != router.SlowBlock || o.TopicPolicies[1].SlowConsumer != router.SlowBlock {
		t.Fatalf("topic policies %+v", o.TopicPolicies)
	}

	// Through a host's router: orders.special gets the orders.** policy (quota 5, nak_limit 1, dlq).
	h := New(c, router.Options{})
	defer h.Close()
	rt := h.Router
	for i := 0; i < 5; i++ {
		if pr := rt.Publish(&router.Message{Dest: queueDest("orders", "special"), Body: []byte("m")}); pr.Err != nil {
			t.Fatalf("publish %d: %v", i, pr.Err)
		}
	}
	if pr := rt.Publish(&router.Message{Dest: queueDest("orders", "special")}); !errors.Is(pr.Err, router.ErrQueueFull) {
		t.Fatalf("6th publish: %+v", pr)
	}
	s := &sink{}
	cons, err := rt.Consume(&router.Subscription{Filter: router.Filter{Kind: router.Queue,
		Segs: []router.Seg{{Text: "orders"}, {Text: "special"}}}, Sink: s}, router.ConsumerOptions{Credit: 1})
	if err != nil {
		t.Fatal(err)
	}
	cons.Nack(s.got[0].Seq)
	if d := rt.QueueDepthOf(queueDest("dlq", "orders", "special")); d != 1 {
		t.Fatalf("dlq depth %d", d)
	}
	if pr := rt.Publish(&router.Message{Dest: queueDest("small")}); pr.Err != nil {
		t.Fatal(pr.Err)
	}
	if pr := rt.Publish(&router.Message{Dest: queueDest("small")}); pr.Err != nil || pr.Dropped != 1 {
		t.Fatalf("drop_tail: %+v", pr)
	}
}

// TestPoliciesFromHCL: queue and topic blocks of a configuration file reach the host's router.
func TestPoliciesFromHCL(t *testing.T) {
	cfg, err := conf.Parse([]byte(`
connector "c" {
  bind     = "tcp://127.0.0.1:0"
  protocol = "stomp"
}
virtual_host "v" {
  anonymous = true
  queue "jobs.*" {
    nak_limit      = 1
    dlq            = "dead.*"
    quota_messages = 3
    full_policy    = "drop_head"
  }
  topic "feeds.**" {
    slow_consumer_policy = "block"
  }
}
`), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	vh := cfg.Host("v")
	if err := CheckPolicies(*vh); err != nil {
		t.Fatal(err)
	}
	o := routerOptions(*vh, router.Options{})
	if len(o.QueuePolicies) != 2 || len(o.TopicPolicies) != 1 || o.TopicPolicies[0].SlowConsumer != router.SlowBlock {
		t.Fatalf("options %+v", o)
	}
	h := New(*vh, router.Options{})
	defer h.Close()
	for i := 0; i < 5; i++ {
		if pr := h.Router.Publish(&router.Message{Dest: queueDest("jobs", "a"), Body: []byte{byte('0' + i)}}); pr.Err != nil {
			t.Fatal(pr.Err)
		}
	}
	s := &sink{}
	cons, err := h.Router.Consume(&router.Subscription{Filter: router.Filter{Kind: router.Queue,
		Segs: []router.Seg{{Text: "jobs"}, {Text: "a"}}}, Sink: s}, router.ConsumerOptions{Credit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.got) != 3 || string(s.got[0].Msg.Body) != "2" {
		t.Fatalf("drop_head kept %d messages starting %q", len(s.got), s.got[0].Msg.Body)
	}
	cons.Nack(s.got[0].Seq)
	if d := h.Router.QueueDepthOf(queueDest("dead", "jobs", "a")); d != 1 {
		t.Fatalf("dlq depth %d", d)
	}
}

// dsub blocks configure durable subscriptions (an MQTT session's are named $mqtt.<client id>.<filter>),
// host quotas every queue and durable subscription that no block configures.
func TestRouterOptionsDsubPoliciesAndHostQuota(t *testing.T) {
	c := conf.VirtualHost{Name: "h", QuotaMessages: 3, Dsubs: []conf.QueuePolicy{
		{Pattern: "$mqtt.**", QuotaMessages: 5, FullPolicy: conf.FullDropHead},
	}}
	r := router.New(routerOptions(c, router.Options{}))
	topic := router.Filter{Kind: router.Topic, Segs: []router.Seg{{Text: "t"}}}
	session := router.Destination{Kind: router.DurableSub, Path: []string{"$mqtt", "dev", "t"}}
	stomp := router.Destination{Kind: router.DurableSub, Path: []string{"audit"}}
	for _, d := range []router.Destination{session, stomp} {
		if _, err := r.CreateDurable(d, router.DurableOptions{Filter: topic, QoS: 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 8 {
		r.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: []string{"t"}}, QoS: 1, Body: []byte("x")})
		r.Publish(&router.Message{Dest: queueDest("q"), QoS: 1, Body: []byte("x")})
	}
	if n := r.QueueDepthOf(session); n != 5 {
		t.Errorf("the session's durable subscription holds %d, want its policy's 5", n)
	}
	if n := r.QueueDepthOf(stomp); n != 3 {
		t.Errorf("another durable subscription holds %d, want the host quota 3", n)
	}
	if n := r.QueueDepth([]string{"q"}); n != 3 {
		t.Errorf("a queue holds %d, want the host quota 3", n)
	}
}

// Every shared_subscription_strategy reaches the router; "" keeps the router's default (round robin).
func TestShareStrategyReachesRouter(t *testing.T) {
	for _, st := range conf.ShareStrategies {
		o := routerOptions(conf.VirtualHost{Name: "h", SharedSubscriptionStrategy: st}, router.Options{})
		if o.ShareStrategy.String() != string(st) {
			t.Errorf("%s: router strategy %s", st, o.ShareStrategy)
		}
	}
	if o := routerOptions(conf.VirtualHost{Name: "h"}, router.Options{}); o.ShareStrategy != router.ShareRoundRobin {
		t.Errorf("unset: %s", o.ShareStrategy)
	}
}
