package protocol

import (
	"testing"

	"github.com/lyremq/lyre/conf"
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
