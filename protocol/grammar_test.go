package protocol

import (
	"testing"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

func TestSettings(t *testing.T) {
	// A connector built in Go with zero fields gets conf's defaults, grammars included.
	st0, err := NewSettings(conf.Connector{Name: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if st0.Connector.MQTT.MaxInflight != conf.DefaultMaxInflight || st0.Connector.STOMP.MaxHeaders != conf.DefaultMaxHeaders ||
		st0.Connector.DetectTimeout != conf.DefaultDetectTimeout || st0.Connector.MQTT.PathSeparator != "/" {
		t.Fatalf("defaults not applied: %+v", st0.Connector)
	}
	// One connector detecting both protocols has one grammar per protocol.
	g1, gs := st0.Grammar(MQTT), st0.Grammar(STOMP)
	if g1 == nil || gs == nil || g1 == gs {
		t.Fatalf("grammars %p %p; want one per protocol", g1, gs)
	}
	// Set fields are kept.
	c := conf.Connector{Name: "h", MQTT: conf.MQTT{MaxInflight: 5, Grammar: conf.Grammar{PathSeparator: "."}}}
	st1, err := NewSettings(c)
	if err != nil {
		t.Fatal(err)
	}
	if st1.Connector.MQTT.MaxInflight != 5 || st1.Grammar(MQTT).Config().PathSeparator != "." {
		t.Fatalf("set fields lost: %+v", st1.Connector.MQTT)
	}
	if _, err := NewSettings(conf.Connector{Name: "bad", MQTT: conf.MQTT{Grammar: conf.Grammar{PathSeparator: "/", AnyChildWildcard: "/"}}}); err == nil {
		t.Fatal("NewSettings accepted a grammar whose wildcard is its separator")
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
