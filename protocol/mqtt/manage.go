package mqtt

// What management sees of MQTT: each connection's session (protocol.Session, attached at CONNECT) and
// the sessions of a virtual host, online and offline (management.Sessions).

import (
	"cmp"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Describe implements protocol.Session. It runs on any goroutine: what it reads of the client was fixed
// at CONNECT, before the connection published it (SetSession), and the session's subscriptions and
// persistence are read under the session's lock, which the reader takes to change them.
func (cl *client) Describe() protocol.SessionInfo {
	s := cl.sess
	info := protocol.SessionInfo{VirtualHost: cl.host.Name, User: cl.user, ClientID: s.id, Version: versionName(cl.version)}
	s.mu.Lock()
	info.Persistent = !s.clean
	info.Subscriptions = s.filtersLocked()
	s.mu.Unlock()
	return info
}

// filtersLocked returns the session's subscriptions as the client wrote them ($share/group/filter for a
// shared one), sorted.
func (s *session) filtersLocked() []string {
	out := make([]string, 0, len(s.subs))
	for key, e := range s.subs {
		if !e.gone { // a discarded session's entries
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

// versionName is the MQTT version of protocol level v.
func versionName(v byte) string {
	switch v {
	case packet.Version31:
		return "3.1"
	case packet.Version311:
		return "3.1.1"
	case packet.Version5:
		return "5"
	}
	return ""
}

// Sessions implements management.Sessions: the MQTT sessions of virtual host vhost (by name or alias),
// online and offline, sorted by client id. A session's user is its owner, the authenticated user who
// opened it ("" when anonymous). Its backlog is what waits for its client: the messages waiting in its
// durable subscriptions (the router's queues, swapped out or not) and, beside them, those in the
// session's own queue behind the in-flight window (retained messages, a shared subscription's); Inflight
// counts its QoS 1 and 2 deliveries awaiting acknowledgement (an offline session keeps their packet ids).
func (h *Handler) Sessions(vhost string) []management.SessionInfo {
	host := h.hosts.Lookup(vhost)
	if host == nil {
		return nil
	}
	type listed struct {
		s       *session
		online  bool
		owner   string
		expires int64
	}
	reg := h.registry(host)
	reg.mu.Lock()
	all := make([]listed, 0, len(reg.sessions))
	for _, s := range reg.sessions {
		if s.att != nil && s.att.conn == nil {
			continue // being deleted (endOffline)
		}
		all = append(all, listed{s: s, online: s.att != nil, owner: s.owner, expires: s.expiresAt})
	}
	reg.mu.Unlock()
	out := make([]management.SessionInfo, 0, len(all))
	var dsubs []router.Destination
	for _, l := range all {
		s := l.s
		si := management.SessionInfo{ClientID: s.id, User: l.owner, Online: l.online}
		dsubs = dsubs[:0]
		s.mu.Lock()
		si.Persistent = !s.clean
		si.Subscriptions = s.filtersLocked()
		si.Inflight = len(s.inflight)
		si.Backlog = s.queue.len()
		for _, e := range s.subs {
			if e.dsub != nil && !e.gone {
				dsubs = append(dsubs, *e.dsub)
			}
		}
		s.mu.Unlock()
		// The router after the session's lock, never under it (lock order: router, then session).
		for _, d := range dsubs {
			si.Backlog += host.Router.QueueDepthOf(d)
		}
		if !l.online && l.expires != 0 {
			si.ExpiresAt = time.UnixMilli(l.expires)
		}
		out = append(out, si)
	}
	slices.SortFunc(out, func(a, b management.SessionInfo) int { return cmp.Compare(a.ClientID, b.ClientID) })
	return out
}

// DeleteSession implements management.Sessions: it ends the offline session of clientID on virtual host
// vhost as its expiry would (endOffline: its delayed will goes out, its durable subscriptions are
// destroyed with their backlog, its store records deleted) and returns once the store has those writes.
// It refuses a session whose client is connected (management.ErrSessionOnline; disconnect it first) and
// answers management.ErrNoSession for an unknown host or client id.
func (h *Handler) DeleteSession(vhost, clientID string) error {
	host := h.hosts.Lookup(vhost)
	if host == nil {
		return management.ErrNoSession
	}
	reg := h.registry(host)
	reg.mu.Lock()
	s := reg.sessions[clientID]
	reg.mu.Unlock()
	if s == nil {
		return management.ErrNoSession
	}
	tr := &virtualhost.Tracker{}
	if err := h.endOffline(host, s, tr); err != nil {
		return err
	}
	if err := tr.Wait(); err != nil {
		return err
	}
	h.log.Info("session deleted", zap.String("vhost", host.Name), zap.String("client_id", clientID))
	return nil
}

var (
	_ protocol.Session    = (*client)(nil)
	_ management.Sessions = (*Handler)(nil)
)
