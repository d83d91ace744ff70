package mqtt

// End-to-end tests of MQTT 5 shared subscriptions ($share/{group}/{filter}) with paho.golang clients:
// each message goes to one member, picked by the host's shared_subscription_strategy as router/share.go
// documents it.

import (
	"fmt"
	"slices"
	"testing"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// startHostBroker starts a broker whose connector serves only the anonymous host built from vh (named
// "h"), as cmd/lyre builds it from a virtual_host block; b.host is that host.
func startHostBroker(t *testing.T, vh conf.VirtualHost) *broker {
	t.Helper()
	vh.Name, vh.Anonymous = "h", true
	host := virtualhost.New(vh, router.Options{})
	b := startBroker(t, func(c *conf.Connector) { c.VirtualHost = "h" }, host)
	b.host = host
	return b
}

// shareMembers connects n paho MQTT 5 clients m0…m(n-1), each subscribed to $share/g/<filter> at QoS 1.
func shareMembers(t *testing.T, b *broker, n int, filter string) []*v5client {
	t.Helper()
	ms := make([]*v5client, n)
	for i := range ms {
		ms[i] = dialV5(t, b.addr, connectV5(fmt.Sprintf("m%d", i)))
		ms[i].sub("$share/g/"+filter, 1)
	}
	return ms
}

// whoGot waits until the members hold n messages between them and returns, for each payload, the index
// of the member that received it; a payload received twice fails the test [MQTT-4.8.2].
func whoGot(t *testing.T, ms []*v5client, n int) map[string]int {
	t.Helper()
	prototest.WaitFor(t, waitTime, func() bool {
		sum := 0
		for _, m := range ms {
			sum += m.count()
		}
		return sum >= n
	})
	who := make(map[string]int)
	for i, m := range ms {
		for _, p := range m.payloads() {
			if j, dup := who[p]; dup {
				t.Fatalf("%q went to member %d and member %d", p, j, i)
			}
			who[p] = i
		}
	}
	if len(who) != n {
		t.Fatalf("members got %d distinct messages, want %d", len(who), n)
	}
	return who
}

// TestV5SharedSubscription_MQTT_4_8_2: each message published to a shared subscription's filter goes to
// exactly one member of the group, at the QoS granted to it [MQTT-4.8.2-3], while a non-shared
// subscriber of the same filter gets every message, and another group gets its own copy.
func TestV5SharedSubscription_MQTT_4_8_2(t *testing.T) {
	b := startBroker(t, nil)
	ms := shareMembers(t, b, 2, "sh/+")
	q0 := dialV5(t, b.addr, connectV5("q0"))
	q0.sub("$share/other/sh/+", 0)
	all := dialV5(t, b.addr, connectV5("all"))
	all.sub("sh/+", 1)
	pub := dialV5(t, b.addr, connectV5("pub"))
	const n = 10
	for i := range n {
		pub.pub(fmt.Sprintf("sh/%d", i%3), fmt.Sprint(i), 1)
	}
	who := whoGot(t, ms, n)
	counts := make([]int, len(ms))
	for _, i := range who {
		counts[i]++
	}
	if counts[0] != n/2 || counts[1] != n/2 {
		t.Errorf("round robin split %v, want %d each", counts, n/2)
	}
	for _, g := range append(ms[0].all(), ms[1].all()...) {
		if g.p.QoS != 1 {
			t.Errorf("member got QoS %d, want 1", g.p.QoS)
		}
	}
	q0.waitN(n)
	for _, g := range q0.all() {
		if g.p.QoS != 0 {
			t.Errorf("the QoS 0 group's member got QoS %d [MQTT-4.8.2-3]", g.p.QoS)
		}
	}
	if got := all.waitN(n); len(got) != n {
		t.Errorf("the non-shared subscriber got %d, want %d", len(got), n)
	}
}

// TestV5ShareStrategies: each shared_subscription_strategy of a virtual host picks members as
// router/share.go documents.
func TestV5ShareStrategies(t *testing.T) {
	t.Run("round_robin", func(t *testing.T) {
		b := startHostBroker(t, conf.VirtualHost{SharedSubscriptionStrategy: conf.ShareRoundRobin})
		ms := shareMembers(t, b, 3, "rr/#")
		pub := dialV5(t, b.addr, connectV5("pub"))
		const n = 9
		for i := range n {
			pub.pub("rr/x", fmt.Sprint(i), 1)
		}
		who := whoGot(t, ms, n)
		// Each member in turn: message i goes where message i-3 went, and three in a row to three members.
		for i := 3; i < n; i++ {
			if who[fmt.Sprint(i)] != who[fmt.Sprint(i-3)] {
				t.Fatalf("not in turn: %v", who)
			}
		}
		if who["0"] == who["1"] || who["1"] == who["2"] || who["0"] == who["2"] {
			t.Fatalf("not in turn: %v", who)
		}
	})
	t.Run("random", func(t *testing.T) {
		b := startHostBroker(t, conf.VirtualHost{SharedSubscriptionStrategy: conf.ShareRandom})
		ms := shareMembers(t, b, 3, "rnd/#")
		pub := dialV5(t, b.addr, connectV5("pub"))
		const n = 60
		for i := range n {
			pub.pub("rnd/x", fmt.Sprint(i), 1)
		}
		whoGot(t, ms, n)
		for i, m := range ms {
			if m.count() == 0 { // all 60 elsewhere: probability 3·(2/3)^60, about 10^-10
				t.Errorf("member %d got none of %d random picks", i, n)
			}
		}
	})
	t.Run("sticky", func(t *testing.T) {
		b := startHostBroker(t, conf.VirtualHost{SharedSubscriptionStrategy: conf.ShareSticky})
		ms := shareMembers(t, b, 3, "st/#")
		pub := dialV5(t, b.addr, connectV5("pub"))
		const n = 10
		for i := range n {
			pub.pub(fmt.Sprintf("st/%d", i), fmt.Sprint(i), 1)
		}
		who := whoGot(t, ms, n)
		first := who["0"]
		if ms[first].count() != n {
			t.Fatalf("sticky: %v, want every message to one member", who)
		}
		// The member leaves the group: another one takes every message from then on.
		ms[first].disconnect()
		prototest.WaitFor(t, waitTime, func() bool { kept, _ := sessionState(b, fmt.Sprintf("m%d", first)); return !kept })
		rest := slices.Delete(slices.Clone(ms), first, first+1)
		for i := n; i < 2*n; i++ {
			pub.pub(fmt.Sprintf("st/%d", i), fmt.Sprint(i), 1)
		}
		who = whoGot(t, rest, n)
		if next := rest[who[fmt.Sprint(n)]]; next.count() != n {
			t.Fatalf("after the sticky member left: %v, want every message to one member", who)
		}
	})
	t.Run("hash_clientid", func(t *testing.T) {
		b := startHostBroker(t, conf.VirtualHost{SharedSubscriptionStrategy: conf.ShareHashClientID})
		ms := shareMembers(t, b, 3, "hc/#")
		const pubs, each = 6, 5
		for p := range pubs {
			pub := dialV5(t, b.addr, connectV5(fmt.Sprintf("pub%d", p)))
			for i := range each {
				pub.pub(fmt.Sprintf("hc/%d", i), fmt.Sprintf("%d/%d", p, i), 1)
			}
		}
		who := whoGot(t, ms, pubs*each)
		for p := range pubs {
			for i := 1; i < each; i++ {
				if who[fmt.Sprintf("%d/%d", p, i)] != who[fmt.Sprintf("%d/0", p)] {
					t.Fatalf("publisher %d's messages went to several members: %v", p, who)
				}
			}
		}
	})
	t.Run("hash_topic", func(t *testing.T) {
		b := startHostBroker(t, conf.VirtualHost{SharedSubscriptionStrategy: conf.ShareHashTopic})
		ms := shareMembers(t, b, 3, "ht/#")
		pubs := []*v5client{dialV5(t, b.addr, connectV5("pa")), dialV5(t, b.addr, connectV5("pb"))}
		const topics, each = 24, 4
		for i := range each {
			for tp := range topics {
				pubs[i%2].pub(fmt.Sprintf("ht/%d", tp), fmt.Sprintf("%d/%d", tp, i), 1)
			}
		}
		who := whoGot(t, ms, topics*each)
		used := make(map[int]bool)
		for tp := range topics {
			for i := 1; i < each; i++ {
				if who[fmt.Sprintf("%d/%d", tp, i)] != who[fmt.Sprintf("%d/0", tp)] {
					t.Fatalf("topic %d went to several members: %v", tp, who)
				}
			}
			used[who[fmt.Sprintf("%d/0", tp)]] = true
		}
		if len(used) < 2 { // 24 topics on one member: probability 3·3^-24
			t.Errorf("every topic went to one member")
		}
	})
}

// TestV5SharedMemberGatedByAccess_MQTT_4_8_2: a member whose access rules do not let it receive a
// message is passed over for one that may; a message no member may receive is not delivered, and the
// publisher is told there was no matching subscriber (PUBACK 0x10) rather than a success.
func TestV5SharedMemberGatedByAccess_MQTT_4_8_2(t *testing.T) {
	b := startHostBroker(t, conf.VirtualHost{AccessRules: []conf.AccessRule{
		{Allow: []string{"*"}, Actions: []string{"connect", "send"}},
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "jobs.%c.**"},
	}, ClientIDs: []string{"m*"}}) // anonymous members claim their client ids m0, m1
	ms := shareMembers(t, b, 2, "jobs/#") // m0 may receive jobs/m0/…, m1 jobs/m1/…
	pub := dialV5(t, b.addr, connectV5("pub"))
	const n = 8
	for i := range n {
		r := pub.publish(&paho5.Publish{Topic: fmt.Sprintf("jobs/m%d/%d", i%2, i), QoS: 1, Payload: []byte(fmt.Sprint(i))})
		if r.ReasonCode != 0 {
			t.Fatalf("PUBACK %#x for a message a member may receive", r.ReasonCode)
		}
	}
	who := whoGot(t, ms, n)
	for i := range n {
		if who[fmt.Sprint(i)] != i%2 {
			t.Fatalf("message %d went to member %d: %v", i, who[fmt.Sprint(i)], who)
		}
	}
	r := pub.publish(&paho5.Publish{Topic: "jobs/m9/x", QoS: 1, Payload: []byte("nobody")})
	if r.ReasonCode != 0x10 {
		t.Errorf("PUBACK %#x for a message no member may receive, want 0x10 (no matching subscribers)", r.ReasonCode)
	}
	// Nothing more arrives: a marker each member may receive comes next.
	pub.pub("jobs/m0/end", "end0", 1)
	pub.pub("jobs/m1/end", "end1", 1)
	whoGot(t, ms, n+2)
}
