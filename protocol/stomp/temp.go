package stomp

import (
	"crypto/rand"
	"encoding/base32"
	"strings"

	"github.com/lyremq/lyre/router"
)

// sessionPrefix starts a session id, "lyre-" and 128 random bits; a session's own temporary destinations
// live under its id.
const sessionPrefix = "lyre-"

// sessionKeyLen is the length of a session id's random part: 16 bytes in unpadded base32.
const sessionKeyLen = 26

// MaxTempDestinations bounds the temporary destinations, queues and topics, one connection names; one
// more is an ERROR. With virtualhost.TempQueueQuota it bounds what a connection's temporary queues hold.
const MaxTempDestinations = 100

var sessionEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newSessionID returns an id no other connection has had, before or after a restart, and nobody can
// guess: the global names of a connection's temporary destinations start with it, and other
// connections learn them only from the reply-to headers of its messages.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	// Encoded on the stack and copied once: every connection makes one.
	var id [len(sessionPrefix) + sessionKeyLen]byte
	copy(id[:], sessionPrefix)
	sessionEncoding.Encode(id[len(sessionPrefix):], b[:])
	return string(id[:])
}

// isSessionKey reports whether seg has the form of a session id.
func isSessionKey(seg string) bool {
	rest, ok := strings.CutPrefix(seg, sessionPrefix)
	if !ok || len(rest) != sessionKeyLen {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

func isTemp(k router.Kind) bool { return k == router.TempQueue || k == router.TempTopic }

// tempName maps a parsed SEND destination into the session's temp namespace, or checks a global temp
// name: another connection's temporary queue must be one its owner named (so nobody creates queues under
// a live connection that it would not delete), its temporary topic one of a live connection. Other
// kinds pass through unchanged.
func (s *session) tempName(name string, d router.Destination) (router.Destination, error) {
	if !isTemp(d.Kind) {
		return d, nil
	}
	if len(d.Path) > 0 && isSessionKey(d.Path[0]) {
		switch {
		case d.Path[0] == s.id:
			return d, s.ownTemp(d)
		case !s.h.tempLive(d.Path[0]):
			return d, protoErr("invalid destination", "%q: the connection that owned this temporary destination has gone", name)
		case d.Kind == router.TempQueue && !s.h.tempQueueLive(router.Key(d)):
			return d, protoErr("invalid destination", "%q: its connection has named no such temporary queue", name)
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
	} else {
		s.registerTemp()
		f.Segs = append([]router.Seg{{Kind: router.SegLiteral, Text: s.id}}, f.Segs...)
	}
	if f.IsLiteral() {
		return f, s.ownTemp(f.Destination())
	}
	return f, nil
}

// ownTemp records one of the session's temporary destinations: at most MaxTempDestinations, and its
// temporary queues are deleted when the connection ends.
func (s *session) ownTemp(d router.Destination) error {
	key := router.Key(d)
	if _, ok := s.temps[key]; ok {
		return nil
	}
	if len(s.temps) >= MaxTempDestinations {
		return protoErr("too many temporary destinations", "a connection may name at most %d temporary destinations", MaxTempDestinations)
	}
	if s.temps == nil {
		s.temps = make(map[string]router.Destination)
	}
	s.temps[key] = d
	if d.Kind == router.TempQueue {
		s.h.tempQueues.Store(key, struct{}{})
	}
	return nil
}

// deleteTemps deletes the session's temporary queues, discarding what they hold. Reader goroutine, at
// the end of the connection.
func (s *session) deleteTemps() {
	for key, d := range s.temps {
		if d.Kind == router.TempQueue {
			s.h.tempQueues.Delete(key)
			s.rt.DeleteQueue(d)
		}
	}
	s.temps = nil
}

// sentToTemp finishes a SEND to another connection's temporary queue: if its owner deleted its queues
// while the message was on its way, the queue the message made again is deleted too.
func (s *session) sentToTemp(d router.Destination) {
	if d.Kind == router.TempQueue && len(d.Path) > 0 && d.Path[0] != s.id && !s.h.tempQueueLive(router.Key(d)) {
		s.rt.DeleteQueue(d)
	}
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
// consumer on another connection can answer, and counts as named (ownTemp). A value that does not parse,
// or names several destinations, gives a zero Destination: the header then travels as a plain header, as
// written.
func (s *session) parseReplyTo(v string) (router.Destination, error) {
	if sep := s.cfg.DestinationSeparator; sep != "" && strings.Contains(v, sep) {
		return router.Destination{}, nil
	}
	d, err := s.g.ParseName(v)
	if err != nil {
		return router.Destination{}, nil
	}
	if isTemp(d.Kind) && (len(d.Path) == 0 || !isSessionKey(d.Path[0])) {
		s.registerTemp()
		d.Path = append([]string{s.id}, d.Path...)
		return d, s.ownTemp(d)
	}
	return d, nil
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

// tempQueueLive reports whether a live connection has named the temporary queue of router key key.
func (h *Handler) tempQueueLive(key string) bool {
	_, ok := h.tempQueues.Load(key)
	return ok
}
