package main

import (
	"fmt"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// collect reads members' messages until want distinct bodies arrived in total, and returns how many
// each member got and how often each body arrived.
func collect(t *testing.T, members []*v5Client, want int) ([]int, map[string]int) {
	t.Helper()
	per := make([]int, len(members))
	seen := map[string]int{}
	deadline := time.After(20 * time.Second)
	for len(seen) < want {
		got := false
		for i, m := range members {
			select {
			case p := <-m.msgs:
				per[i]++
				seen[string(p.Payload)]++
				got = true
			default:
			}
		}
		if got {
			continue
		}
		select {
		case <-deadline:
			t.Fatalf("%d of %d messages delivered to the group (per member %v)", len(seen), want, per)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return per, seen
}

// TestClusterSharedSubscriptionAcrossNodes: a $share group with a member on each of three nodes gets
// each message once in the whole cluster, wherever it was published [MQTT 5 4.8.2: a message matching a
// shared subscription is sent to only one of its sessions]; messages published on a node with no member
// (after its member left) still reach the group on the others.
func TestClusterSharedSubscriptionAcrossNodes(t *testing.T) {
	b1, addr1 := startBroker(t, clusterConfig("n1", ""))
	seed := b1.Cluster().RouteAddr().String()
	b2, addr2 := startBroker(t, clusterConfig("n2", seed))
	b3, addr3 := startBroker(t, clusterConfig("n3", seed))
	bs, addrs := []*Broker{b1, b2, b3}, []string{addr1, addr2, addr3}

	members := make([]*v5Client, 3)
	for i, a := range addrs {
		members[i] = dialV5(t, a, &paho5.Connect{ClientID: fmt.Sprintf("member-%d", i+1), CleanStart: true})
		members[i].sub(0, paho5.SubscribeOptions{Topic: "$share/g/jobs/+", QoS: 1})
	}
	// Every node sees the group's queue subscription of every node: its own and two through routes.
	for i, b := range bs {
		waitUntil(t, fmt.Sprintf("the group's interest on n%d", i+1), func() bool {
			return b.Cluster().Interest("default", []string{"jobs", "x"}) == 3
		})
	}
	pubs := make([]paho.Client, 3)
	for i, a := range addrs {
		pubs[i] = mqttClient(t, a, fmt.Sprintf("pub-%d", i+1))
	}
	const each = 100
	for n := range each {
		for i, p := range pubs {
			mqttPublish(t, p, fmt.Sprintf("jobs/n%d", i+1), 1, fmt.Sprintf("n%d-%d", i+1, n))
		}
	}
	per, seen := collect(t, members, 3*each)
	for body, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times, want once in the cluster", body, n)
		}
	}
	// NATS picks a queue subscriber at random among the nodes: each member gets roughly a third.
	for i, n := range per {
		if n < each/2 {
			t.Errorf("member on n%d got %d of %d; want roughly a third (per member %v)", i+1, n, 3*each, per)
		}
	}
	var delivered, lost uint64
	for _, b := range bs {
		st := b.Cluster().SharedStats()
		delivered += st.Delivered
		lost += st.Lost
	}
	if delivered != 3*each || lost != 0 {
		t.Errorf("links delivered %d to local groups and lost %d; want %d and 0", delivered, lost, 3*each)
	}

	// The member on n1 leaves: once n2 and n3 no longer see its queue subscription, messages published on
	// n1, which has no member now, go to the members on n2 and n3, each once.
	members[0].bye(&paho5.Disconnect{})
	for i, b := range bs[1:] {
		waitUntil(t, fmt.Sprintf("n1's member gone from n%d", i+2), func() bool {
			return b.Cluster().Interest("default", []string{"jobs", "x"}) == 2
		})
	}
	for n := range each {
		mqttPublish(t, pubs[0], "jobs/late", 1, fmt.Sprintf("late-%d", n))
	}
	per, seen = collect(t, members[1:], each)
	for body, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times after the member left, want once", body, n)
		}
	}
	if per[0] == 0 || per[1] == 0 {
		t.Errorf("after n1's member left, n2's member got %d and n3's %d; want both some", per[0], per[1])
	}
	select {
	case p := <-members[0].msgs:
		t.Errorf("the member that left got %q", p.Payload)
	default:
	}
}

// TestClusterSharedLocalMembersRoundRobin: on a node, the members of a group share what NATS gives the
// node by the router's strategy (round robin), and a plain subscriber of the same topic still gets
// every message once.
func TestClusterSharedLocalMembersRoundRobin(t *testing.T) {
	b1, addr1 := startBroker(t, clusterConfig("n1", ""))
	_, addr2 := startBroker(t, clusterConfig("n2", b1.Cluster().RouteAddr().String()))
	a := dialV5(t, addr2, &paho5.Connect{ClientID: "a", CleanStart: true})
	b := dialV5(t, addr2, &paho5.Connect{ClientID: "b", CleanStart: true})
	for _, m := range []*v5Client{a, b} {
		m.sub(0, paho5.SubscribeOptions{Topic: "$share/g/work", QoS: 1})
	}
	plain := mqttClient(t, addr2, "plain")
	ch := mqttSubscribe(t, plain, "work", 1)
	waitUntil(t, "n2's interest on n1", func() bool { return b1.Cluster().Interest("default", []string{"work"}) >= 2 })
	pub := mqttClient(t, addr1, "pub")
	for n := range 20 {
		mqttPublish(t, pub, "work", 1, fmt.Sprint(n))
	}
	mqttPublish(t, pub, "work", 1, "end")
	if got := readMQTTUntil(t, ch, "end"); len(got) != 20 {
		t.Errorf("the plain subscriber got %d messages, want 20", len(got))
	}
	per, seen := collect(t, []*v5Client{a, b}, 21)
	if per[0] < 5 || per[1] < 5 || len(seen) != 21 {
		t.Errorf("local members got %v of 21, want both a share", per)
	}
}
