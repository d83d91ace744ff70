package protocol

// Connectors changed while the server runs: a configuration reload binds new ones (Listen), stops
// removed ones (CloseConnector) and replaces changed ones (both).

import (
	"fmt"
	"net"
	"slices"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/conf"
)

// CheckConnector checks what Listen would check of c without binding it: its protocols, grammars and
// TLS files (read and parsed now). A reload checks every new connector before it changes anything.
func (s *Server) CheckConnector(c conf.Connector) error {
	for _, p := range c.Protocols() {
		if p != TLS && s.handlers[p] == nil {
			return fmt.Errorf("protocol: connector %q: no handler for protocol %q", c.Name, p)
		}
	}
	if _, err := NewSettings(c); err != nil {
		return fmt.Errorf("protocol: %w", err)
	}
	_, err := newTLSListener(&c)
	return err
}

// Connectors returns the configuration of every bound connector, as given to Listen, in the order they
// were bound.
func (s *Server) Connectors() []conf.Connector {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]conf.Connector, len(s.lns))
	for i, l := range s.lns {
		out[i] = l.orig
	}
	return out
}

// CloseConnector stops the connector named name: its listener is closed (new connections are refused),
// connections still being detected are closed, and every connection it accepted runs its OnShutdown hook
// (the front-end's goodbye, then a close within die_delay) or is closed with ErrConnectorRemoved. It
// returns those connections, for the caller to wait for (WaitGone), and false when no connector has that
// name. Management HTTP connections it handed off finish their requests. Other connectors are not
// touched.
func (s *Server) CloseConnector(name string) ([]*Conn, bool) {
	s.mu.Lock()
	i := slices.IndexFunc(s.lns, func(l *listener) bool { return l.set.Connector.Name == name })
	if i < 0 {
		s.mu.Unlock()
		return nil, false
	}
	l := s.lns[i]
	s.lns = slices.Delete(s.lns, i, i+1)
	_ = l.ln.Close() // its accept loop ends
	var sniffing []net.Conn
	for nc, sl := range s.sniffing {
		if sl == l {
			sniffing = append(sniffing, nc)
		}
	}
	var conns []*Conn
	for c := range s.conns {
		if c.set == l.set {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	s.log.Info("connector closed", zap.String("connector", name), zap.Stringer("address", l.ln.Addr()),
		zap.Int("connections", len(conns)))
	for _, nc := range sniffing {
		_ = nc.Close()
	}
	for _, c := range conns {
		c.shutdownWith(ErrConnectorRemoved)
	}
	return conns, true
}
