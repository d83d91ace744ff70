package protocol

import (
	"testing"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

func TestGrammarCache(t *testing.T) {
	var gc GrammarCache
	c := &conf.Connector{Name: "g", MQTT: conf.MQTT{Grammar: conf.MQTTGrammarDefaults},
		STOMP: conf.STOMP{Grammar: conf.STOMPGrammarDefaults}}
	g1, err := gc.Get(c, MQTT)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := gc.Get(c, MQTT)
	if err != nil || g1 != g2 {
		t.Fatalf("second Get = %p, %v; want the cached %p", g2, err, g1)
	}
	// One connector detecting both protocols has one grammar per protocol.
	gs, err := gc.Get(c, STOMP)
	if err != nil || gs == g1 {
		t.Fatalf("Get(STOMP) = %p, %v; want a grammar other than MQTT's", gs, err)
	}
	d, err := g1.ParseName("sensors/k1/temp")
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewGrammar(STOMP, conf.STOMPGrammarDefaults)
	if err != nil {
		t.Fatal(err)
	}
	// DESIGN.md §3: MQTT sensors/k1/temp is STOMP /topic/sensors.k1.temp.
	if got := st.Render(d); got != "/topic/sensors.k1.temp" {
		t.Fatalf("STOMP rendering of an MQTT topic = %q", got)
	}
	if _, err := NewGrammar("amqp", conf.Grammar{}); err == nil {
		t.Fatal("NewGrammar accepted an unknown protocol")
	}
}

// conf's grammar defaults (what a config file gets) and the router's (what code building a grammar
// directly gets) are written twice because router must not import conf; they must never drift.
func TestGrammarDefaultsAgreeWithRouter(t *testing.T) {
	for _, c := range []struct {
		name string
		conf conf.Grammar
		rc   router.GrammarConfig
	}{
		{"mqtt", conf.MQTTGrammarDefaults, router.MQTTGrammarConfig()},
		{"stomp", conf.STOMPGrammarDefaults, router.STOMPGrammarConfig()},
	} {
		got := conf.Grammar{
			PathSeparator: c.rc.PathSeparator, AnyChildWildcard: c.rc.AnyChildWildcard,
			AnyDescendantWildcard: c.rc.AnyDescendantWildcard, RegexWildcardStart: c.rc.RegexWildcardStart,
			RegexWildcardEnd: c.rc.RegexWildcardEnd, PartPattern: c.rc.PartPattern, QueuePrefix: c.rc.QueuePrefix,
			TopicPrefix: c.rc.TopicPrefix, DsubPrefix: c.rc.DsubPrefix, TempQueuePrefix: c.rc.TempQueuePrefix,
			TempTopicPrefix: c.rc.TempTopicPrefix, DestinationSeparator: c.rc.DestinationSeparator,
		}
		if got != c.conf {
			t.Errorf("%s: router defaults %+v differ from conf defaults %+v", c.name, got, c.conf)
		}
	}
}
