package stomp

import (
	"strings"

	"github.com/lyremq/lyre/router"
)

// sessionPrefix starts a session id, "lyre-" and the connection id; a session's own temporary
// destinations live under its id.
const sessionPrefix = "lyre-"

// MaxTempQueues bounds the temporary queues one connection names; one more is an ERROR.
const MaxTempQueues = 1000

// isSessionKey reports whether seg has the form of a session id, "lyre-" and digits.
func isSessionKey(seg string) bool {
	rest, ok := strings.CutPrefix(seg, sessionPrefix)
	if !ok || rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return true
}

func isTemp(k router.Kind) bool { return k == router.TempQueue || k == router.TempTopic }

// tempName maps a parsed SEND destination into the session's temp namespace, or checks a global temp
// name. Other kinds pass through unchanged.
func (s *session) tempName(name string, d router.Destination) (router.Destination, error) {
	if !isTemp(d.Kind) {
		return d, nil
	}
	if len(d.Path) > 0 && isSessionKey(d.Path[0]) {
		if d.Path[0] != s.id && !s.h.tempLive(d.Path[0]) {
			return d, protoErr("invalid destination", "%q: the connection that owned this temporary destination has gone", name)
		}
		return d, nil
	}
	s.registerTemp()
	d.Path = append([]string{s.id}, d.Path...)
	return d, s.ownTemp(d)
}

// tempFilter maps a SUBSCRIBE filter into the session's temp namespace; another connection's temp
// destination cannot be subscribed to.
func (s *session) tempFilter(name string, f router.Filter) (router.Filter, error) {
	if !isTemp(f.Kind) {
		return f, nil
	}
	if len(f.Segs) > 0 && f.Segs[0].Kind == router.SegLiteral && isSessionKey(f.Segs[0].Text) {
		if f.Segs[0].Text != s.id {
			return f, protoErr("invalid destination", "%q: temporary destinations are private to the connection that created them", name)
		}
		return f, nil
	}
	s.registerTemp()
	f.Segs = append([]router.Seg{{Kind: router.SegLiteral, Text: s.id}}, f.Segs...)
	if f.Kind == router.TempQueue && f.IsLiteral() {
		return f, s.ownTemp(f.Destination())
	}
	return f, nil
}

// ownTemp records one of the session's temporary queues, deleted when the connection ends.
func (s *session) ownTemp(d router.Destination) error {
	if d.Kind != router.TempQueue {
		return nil
	}
	key := router.Key(d)
	if _, ok := s.temps[key]; ok {
		return nil
	}
	if len(s.temps) >= MaxTempQueues {
		return protoErr("too many temporary queues", "a connection may name at most %d temporary queues", MaxTempQueues)
	}
	if s.temps == nil {
		s.temps = make(map[string]router.Destination)
	}
	s.temps[key] = d
	return nil
}

// deleteTemps deletes the session's temporary queues, discarding what they hold. Reader goroutine, at
// the end of the connection.
func (s *session) deleteTemps() {
	for _, d := range s.temps {
		s.rt.DeleteQueue(d)
	}
	s.temps = nil
}

// renderTemp renders a temp destination of this session in its local form (/temp-queue/foo) and any
// other in its global form.
func (s *session) renderTemp(d router.Destination) string {
	if len(d.Path) > 1 && d.Path[0] == s.id {
		return s.g.Render(router.Destination{Kind: d.Kind, Path: d.Path[1:]})
	}
	return s.g.Render(d)
}

// parseReplyTo parses the reply-to header of a SEND as one destination of this connector's grammar, as
// the destination header is parsed. One of this session's temp destinations gets its global name, so a
// consumer on another connection can answer. A value that does not parse, or names several destinations,
// gives a zero Destination: the header then travels as a plain header, as written.
func (s *session) parseReplyTo(v string) router.Destination {
	if sep := s.cfg.DestinationSeparator; sep != "" && strings.Contains(v, sep) {
		return router.Destination{}
	}
	d, err := s.g.ParseName(v)
	if err != nil {
		return router.Destination{}
	}
	if isTemp(d.Kind) && (len(d.Path) == 0 || !isSessionKey(d.Path[0])) {
		s.registerTemp()
		d.Path = append([]string{s.id}, d.Path...)
	}
	return d
}

// registerTemp records that this session owns temp destinations, so others may send to them.
func (s *session) registerTemp() {
	if !s.tempOwner {
		s.tempOwner = true
		s.h.temps.Store(s.id, struct{}{})
	}
}

func (h *Handler) tempLive(key string) bool {
	_, ok := h.temps.Load(key)
	return ok
}
