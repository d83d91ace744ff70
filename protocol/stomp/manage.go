package stomp

// What management sees of a STOMP connection: its session, attached at CONNECT (protocol.Session).

import (
	"slices"

	"github.com/lyremq/lyre/protocol"
)

// Describe implements protocol.Session. It runs on any goroutine: the host, user, client id and version
// were fixed at CONNECT, before the connection published the session (SetSession), and the
// subscriptions are read under s.mu, which the reader holds to change them.
func (s *session) Describe() protocol.SessionInfo {
	info := protocol.SessionInfo{VirtualHost: s.host.Name, User: s.user, ClientID: s.clientID, Version: versionString(s.version)}
	s.mu.Lock()
	info.Subscriptions = make([]string, 0, len(s.subs))
	for _, sub := range s.subs {
		info.Subscriptions = append(info.Subscriptions, sub.describe())
	}
	s.mu.Unlock()
	slices.Sort(info.Subscriptions)
	return info
}

// describe renders the subscription as its SUBSCRIBE wrote it: the destination, then its id header
// ("/queue/a id:0"); a STOMP 1.0 subscription without an id is its destination alone.
func (sub *subscription) describe() string {
	if sub.id == sub.dest {
		return sub.dest
	}
	return sub.dest + " id:" + sub.id
}

var _ protocol.Session = (*session)(nil)
