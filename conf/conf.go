package conf

import (
	_ "embed"
	"fmt"
	"os"
	"strings"
	"time"
)

//go:embed default.hcl
var defaultHCL []byte

// DefaultSource is the Source of the embedded default configuration.
const DefaultSource = "<default>"

// DefaultHCL returns the text of the embedded default configuration, a commented starting point for a
// user's own file.
func DefaultHCL() []byte { return append([]byte(nil), defaultHCL...) }

// Default returns the embedded default configuration: an autodetecting MQTT+STOMP connector on
// 127.0.0.1:61613, an MQTT connector on 127.0.0.1:1883 and an anonymous "default" virtual host
// stored in ./data. Each call returns a fresh copy.
func Default() *Config {
	c, err := Parse(defaultHCL, DefaultSource)
	if err != nil {
		// The embedded file is fixed at build time and covered by tests.
		panic("conf: embedded default config is invalid: " + err.Error())
	}
	return c
}

// Load reads and validates the configuration file at path. Problems in the file are returned as Errors,
// each naming path:line:col.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("conf: %w", err)
	}
	return Parse(src, path)
}

// Parse decodes and validates an HCL configuration; filename is used in error positions only.
// Attributes left out take the defaults documented on each field. On failure the error is Errors
// listing every problem found, in source order, and the Config is nil.
func Parse(src []byte, filename string) (*Config, error) {
	c, errs := parse(src, filename)
	if c != nil {
		errs = append(errs, c.validate()...)
	}
	if err := errs.errors(); err != nil {
		return nil, err
	}
	return c, nil
}

// DefaultMQTT returns an mqtt block with every default applied.
func DefaultMQTT() MQTT {
	return MQTT{
		Grammar:           MQTTGrammarDefaults,
		MaxMessageLength:  DefaultMaxMessageLength,
		DieDelay:          DefaultDieDelay,
		MaxInflight:       DefaultMaxInflight,
		MaxQueuedMessages: DefaultMaxQueuedMessages,
		MaxSubscriptions:  DefaultMaxSubscriptions,
		MaxTopicLevels:    DefaultMaxTopicLevels,

		ReceiveMaximum:      DefaultReceiveMaximum,
		TopicAliasMaximum:   DefaultTopicAliasMaximum,
		ResponseTopicPrefix: DefaultResponsePrefix,
	}
}

// DefaultSTOMP returns a stomp block with every default applied.
func DefaultSTOMP() STOMP {
	return STOMP{
		Grammar:          STOMPGrammarDefaults,
		MaxMessageLength: DefaultMaxMessageLength,
		DieDelay:         DefaultDieDelay,
		MaxHeaders:       DefaultMaxHeaders,
		MaxHeaderLength:  DefaultMaxHeaderLength,

		MaxTransactions:      DefaultMaxTransactions,
		MaxTransactionFrames: DefaultMaxTransactionFrames,
		MaxSelectorLength:    DefaultMaxSelectorLength,
		MaxSubscriptions:     DefaultMaxSubscriptions,
	}
}

// WithDefaults returns m with its zero fields set to DefaultMQTT's, and the whole grammar set to the MQTT
// grammar when it has no path separator (a block built in Go rather than loaded). A loaded config has its
// defaults already; this is for Connectors built in Go and is what the front-ends use.
func (m MQTT) WithDefaults() MQTT {
	d := DefaultMQTT()
	if m.PathSeparator == "" {
		m.Grammar = d.Grammar
	}
	m.MaxMessageLength = or(m.MaxMessageLength, d.MaxMessageLength)
	m.DieDelay = or(m.DieDelay, d.DieDelay)
	// At most 65534: with every packet id in flight none would be free for the next one [MQTT-2.3.1-2].
	m.MaxInflight = min(or(m.MaxInflight, d.MaxInflight), 65534)
	m.MaxQueuedMessages = or(m.MaxQueuedMessages, d.MaxQueuedMessages)
	m.MaxSubscriptions = or(m.MaxSubscriptions, d.MaxSubscriptions)
	m.MaxTopicLevels = or(m.MaxTopicLevels, d.MaxTopicLevels)
	m.ReceiveMaximum = min(or(m.ReceiveMaximum, d.ReceiveMaximum), 65535)
	// TopicAliasMaximum 0 is a setting (no aliases), but a block built in Go leaves it zero by omission:
	// such a block has no response prefix either.
	if m.ResponseTopicPrefix == "" {
		m.TopicAliasMaximum = d.TopicAliasMaximum
		m.ResponseTopicPrefix = d.ResponseTopicPrefix
	}
	m.TopicAliasMaximum = min(m.TopicAliasMaximum, 65535)
	return m
}

// WithDefaults is MQTT.WithDefaults for a stomp block.
func (s STOMP) WithDefaults() STOMP {
	d := DefaultSTOMP()
	if s.PathSeparator == "" {
		s.Grammar = d.Grammar
	}
	s.MaxMessageLength = or(s.MaxMessageLength, d.MaxMessageLength)
	s.DieDelay = or(s.DieDelay, d.DieDelay)
	s.MaxHeaders = or(s.MaxHeaders, d.MaxHeaders)
	s.MaxHeaderLength = or(s.MaxHeaderLength, d.MaxHeaderLength)
	s.MaxTransactions = or(s.MaxTransactions, d.MaxTransactions)
	s.MaxTransactionFrames = or(s.MaxTransactionFrames, d.MaxTransactionFrames)
	s.MaxTransactionBytes = or(s.MaxTransactionBytes, s.MaxMessageLength)
	s.MaxSelectorLength = or(s.MaxSelectorLength, d.MaxSelectorLength)
	s.MaxSubscriptions = or(s.MaxSubscriptions, d.MaxSubscriptions)
	return s
}

// WithDefaults returns c with its zero limits and protocol blocks set to the defaults (see
// MQTT.WithDefaults).
func (c Connector) WithDefaults() Connector {
	c.DetectTimeout = or(c.DetectTimeout, DefaultDetectTimeout)
	c.MaxConnections = or(c.MaxConnections, DefaultMaxConnections)
	c.MQTT = c.MQTT.WithDefaults()
	c.STOMP = c.STOMP.WithDefaults()
	if c.HTTP != nil || c.ServesHTTP() {
		var h HTTP
		if c.HTTP != nil {
			h = *c.HTTP
		}
		h = h.WithDefaults()
		c.HTTP = &h
	}
	return c
}

// or returns v, or def when v is zero or negative.
func or[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// NewConnector returns a connector with every default applied, for configs built in Go (tests).
// Set Protocol or Detect before use; Validate fills Network and Address from bind.
func NewConnector(name, bind string) Connector {
	return Connector{
		Name:           name,
		Bind:           bind,
		DetectTimeout:  DefaultDetectTimeout,
		MaxConnections: DefaultMaxConnections,
		MQTT:           DefaultMQTT(),
		STOMP:          DefaultSTOMP(),
	}
}

// Host returns the virtual host with the given name (case-insensitive, like host lookup at CONNECT),
// or nil.
func (c *Config) Host(name string) *VirtualHost {
	for i := range c.VirtualHosts {
		if strings.EqualFold(c.VirtualHosts[i].Name, name) {
			return &c.VirtualHosts[i]
		}
	}
	return nil
}

// DefaultHost returns the first virtual host, which serves clients that name no host, or nil if none.
func (c *Config) DefaultHost() *VirtualHost {
	if len(c.VirtualHosts) == 0 {
		return nil
	}
	return &c.VirtualHosts[0]
}

// Connector returns the connector with the given name, or nil.
func (c *Config) Connector(name string) *Connector {
	for i := range c.Connectors {
		if c.Connectors[i].Name == name {
			return &c.Connectors[i]
		}
	}
	return nil
}

// HostFor returns the virtual host a connection on connector cn uses when it names no host itself:
// the connector's virtual_host, else the default host.
func (c *Config) HostFor(cn *Connector) *VirtualHost {
	if cn.VirtualHost != "" {
		if h := c.Host(cn.VirtualHost); h != nil {
			return h
		}
	}
	return c.DefaultHost()
}
