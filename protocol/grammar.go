package protocol

import (
	"fmt"
	"sync"

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

type grammarKey struct {
	c     *conf.Connector
	proto string
}

// GrammarCache builds each connector's grammar once. Front-ends keep one per handler.
type GrammarCache struct {
	mu sync.Mutex
	m  map[grammarKey]*router.Grammar
}

// Get returns the grammar for connector c and protocol proto, building it on first use.
func (gc *GrammarCache) Get(c *conf.Connector, proto string) (*router.Grammar, error) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	k := grammarKey{c, proto}
	if g, ok := gc.m[k]; ok {
		return g, nil
	}
	src := c.MQTT.Grammar
	if proto == "stomp" {
		src = c.STOMP.Grammar
	}
	g, err := NewGrammar(proto, src)
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w", c.Name, err)
	}
	if gc.m == nil {
		gc.m = make(map[grammarKey]*router.Grammar)
	}
	gc.m[k] = g
	return g, nil
}
