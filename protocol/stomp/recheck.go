package stomp

// A configuration reload re-checks connected clients (protocol.Server.Recheck; see the package doc,
// "Reload").

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// recheck is the connection's OnRecheck hook. It runs on the reload's goroutine and reads the
// subscriptions under s.mu (the reader changes them under it too). When the client may not go on it
// queues an ERROR frame, naming the subscriptions revoked in its subscription header, and closes the
// connection within die_delay, as after any ERROR: the reader's cleanup then ends every subscription,
// which is what UNSUBSCRIBE does to one (a durable subscription is left, not destroyed, as a plain
// UNSUBSCRIBE leaves it).
func (s *session) recheck() bool {
	s.mu.Lock()
	p := s.principal
	var held []protocol.Held
	for _, sub := range s.subs {
		held = append(held, sub.held...)
	}
	s.mu.Unlock()
	v := protocol.Recheck(s.host, p, s.clientID, held)
	if v.Err == nil {
		if v.Adopt {
			np := v.Principal
			s.adopt.Store(&np)
		}
		return false
	}
	protocol.LogRecheck(s.c, s.host, p, s.clientID, v)
	msg, detail, hdrs := recheckError(v)
	s.sendError(msg, detail, "", false, hdrs...)
	s.c.CloseAfter(v.Err, s.cfg.DieDelay)
	return true
}

// recheckError is the ERROR frame telling a client why a reload's re-check ends its connection.
func recheckError(v protocol.Verdict) (msg, detail string, hdrs []string) {
	const closing = "; the connection is closed"
	switch {
	case errors.Is(v.Err, protocol.ErrRevoked):
		ids := make([]string, 0, len(v.Revoked))
		var dests []string
		for _, h := range v.Revoked {
			if !slices.Contains(ids, h.ID) { // a composite subscription has a route per destination
				ids = append(ids, h.ID)
			}
			dests = append(dests, fmt.Sprintf("%s (subscription %s)", h.Name, h.ID))
		}
		return "subscription revoked", "not authorized any more to read " + strings.Join(dests, ", ") +
			": the access rules changed; the subscription is removed" + closing, []string{"subscription", strings.Join(ids, ",")}
	case errors.Is(v.Err, virtualhost.ErrUserRemoved), errors.Is(v.Err, virtualhost.ErrNotAuthorized):
		return "access refused", trimPrefixes(v.Err.Error()) + closing, nil
	case errors.Is(v.Err, protocol.ErrHostRemoved):
		return "virtual host removed", trimPrefixes(v.Err.Error()) + closing, nil
	}
	return "access changed", trimPrefixes(v.Err.Error()) + closing, nil
}

// trimPrefixes drops the package prefixes of an error text meant for a client.
func trimPrefixes(s string) string {
	for _, prefix := range []string{"virtualhost: ", "protocol: "} {
		s = strings.ReplaceAll(s, prefix, "")
	}
	return s
}

// adoptPrincipal takes the principal a reload's re-check posted (the user's groups changed) before the
// reader handles its next frame: every later access check uses it. Under s.mu, where the hook reads it.
func (s *session) adoptPrincipal() {
	p := s.adopt.Swap(nil)
	if p == nil {
		return
	}
	s.mu.Lock()
	s.principal = *p
	s.mu.Unlock()
}
