package protocol

import (
	"fmt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
)

// NewGrammar builds the router grammar a connector's proto ("mqtt" or "stomp") front-end uses, from the
// options of its conf block. Unset options keep the protocol's defaults, which conf has already applied.
func NewGrammar(proto string, g conf.Grammar) (*router.Grammar, error) {
	var rc router.GrammarConfig
	switch proto {
	case "mqtt":
		rc = router.MQTTGrammarConfig()
	case "stomp":
		rc = router.STOMPGrammarConfig()
	default:
		return nil, fmt.Errorf("protocol: no grammar for %q", proto)
	}
	rc.PathSeparator = g.PathSeparator
	rc.AnyChildWildcard = g.AnyChildWildcard
	rc.AnyDescendantWildcard = g.AnyDescendantWildcard
	rc.RegexWildcardStart = g.RegexWildcardStart
	rc.RegexWildcardEnd = g.RegexWildcardEnd
	rc.PartPattern = g.PartPattern
	rc.QueuePrefix = g.QueuePrefix
	rc.TopicPrefix = g.TopicPrefix
	rc.DsubPrefix = g.DsubPrefix
	rc.TempQueuePrefix = g.TempQueuePrefix
	rc.TempTopicPrefix = g.TempTopicPrefix
	rc.DestinationSeparator = g.DestinationSeparator
	return router.NewGrammar(rc)
}

// Settings are one connector's options as the front-ends use them, built once by Listen (or NewSettings):
// conf's defaults in every zero field (a Connector built in Go may leave them zero; a loaded one has them
// already) and both grammars compiled. Every connection of the connector shares them (Conn.Settings), so
// no front-end keeps defaults or caches of its own.
type Settings struct {
	// Connector is the connector with defaults applied; its MQTT and STOMP blocks are the front-ends'
	// options.
	Connector    conf.Connector
	MQTTGrammar  *router.Grammar
	STOMPGrammar *router.Grammar
}

// NewSettings builds the settings of connector c. It fails when one of its grammars does not build
// (conf validation reports that too, with the position).
func NewSettings(c conf.Connector) (*Settings, error) {
	s := &Settings{Connector: c.WithDefaults()}
	var err error
	if s.MQTTGrammar, err = NewGrammar(MQTT, s.Connector.MQTT.Grammar); err != nil {
		return nil, fmt.Errorf("connector %q: mqtt: %w", c.Name, err)
	}
	if s.STOMPGrammar, err = NewGrammar(STOMP, s.Connector.STOMP.Grammar); err != nil {
		return nil, fmt.Errorf("connector %q: stomp: %w", c.Name, err)
	}
	return s, nil
}

// Grammar returns the grammar of protocol proto (MQTT or STOMP).
func (s *Settings) Grammar(proto string) *router.Grammar {
	if proto == STOMP {
		return s.STOMPGrammar
	}
	return s.MQTTGrammar
}
