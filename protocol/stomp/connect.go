package stomp

import (
	"strconv"
	"strings"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/virtualhost"
)

// connect negotiates the version, picks the virtual host, authenticates and answers CONNECTED
// (STOMP 1.2 "Connecting", "Protocol Negotiation", "Heart-beating").
func (s *session) connect(f *frame.Frame) error {
	v, ok := negotiateVersion(f.Header)
	if !ok {
		e := protoErr("unsupported protocol version", "this server supports STOMP 1.0, 1.1 and 1.2; the client accepts %q",
			f.Header.Get(frame.AcceptVersion))
		e.hdrs = []string{frame.Version, "1.0,1.1,1.2"}
		return e
	}
	login, hasLogin := f.Header.Contains(frame.Login)
	passcode := []byte(f.Header.Get(frame.Passcode))
	host, unknown, err := s.pickHost(f)
	switch {
	case unknown != "":
		// Answered as a wrong passcode is, after as long: host names are not told before a login.
		return loginError(protocol.RefuseUnknownHost(s.c, s.h.hosts.Default(), unknown, login, passcode, hasLogin, &s.h.refusals))
	case err != nil:
		return err
	}
	s.clientID = f.Header.Get(clientIDHeader)
	if s.clientID == "" {
		s.clientID = s.id
	}
	p, err := s.login(host, login, passcode, hasLogin, s.clientID)
	if err != nil {
		return err
	}
	var out, in time.Duration
	if v >= v11 {
		if out, in, err = s.negotiateHeartBeat(f); err != nil {
			return err
		}
	}

	s.version, s.connected = v, true
	s.rd.Version = v
	s.host, s.rt, s.principal, s.user = host, host.Router, p, p.User
	s.subs = make(map[string]*subscription)
	s.c.SetSession(s) // management lists it (manage.go)
	if !s.writeConnected(v) {
		return ErrOutboundFull
	}
	s.c.OnDrain(s.drained)
	s.c.OnShutdown(s.shutdown)
	s.c.OnRecheck(s.recheck) // a reload re-checks the client (recheck.go)
	s.startHeartBeats(out, in)
	if s.h.log.Core().Enabled(zap.DebugLevel) {
		s.c.Log().Debug("stomp connected", zap.String("vhost", host.Name), zap.String("user", p.User), zap.String("version", versionString(v)),
			zap.Duration("heart_beat_out", out), zap.Duration("heart_beat_in", in))
	}
	return nil
}

// pickHost chooses the virtual host the CONNECT host header names; without one (STOMP 1.0), the host a
// WebSocket's HTTP Host header names if it is known, else the default one. unknown is the name the header
// gives when no host has it, while a default host exists to answer it as a refused login.
func (s *session) pickHost(f *frame.Frame) (host *virtualhost.Host, unknown string, err error) {
	if name, ok := f.Header.Contains(frame.Host); ok && name != "" {
		if host = s.h.hosts.Lookup(name); host != nil {
			return host, "", nil
		}
		if s.h.hosts.Default() != nil {
			return nil, name, nil
		}
	} else if name := s.c.HTTPHost(); name != "" {
		if host := s.h.hosts.Lookup(name); host != nil {
			return host, "", nil
		}
	}
	host = s.h.hosts.Default()
	if host == nil {
		return nil, "", protoErr("unknown virtual host", "the server has no virtual host")
	}
	return host, "", nil
}

// negotiateHeartBeat reads a 1.1 or 1.2 CONNECT's heart-beat header: out is how often the server sends
// heart-beats, in how often it expects the client's (0: never; no header: neither).
func (s *session) negotiateHeartBeat(f *frame.Frame) (out, in time.Duration, err error) {
	hb, ok := f.Header.Contains(frame.HeartBeat)
	if !ok {
		return 0, 0, nil
	}
	cx, cy, err := frame.ParseHeartBeat(hb)
	if err != nil {
		return 0, 0, protoErr("invalid heart-beat", "heart-beat must be two integers \"cx,cy\", got %q", hb)
	}
	return negotiateInterval(s.h.HeartBeatSend, cy), negotiateInterval(cx, s.h.HeartBeatReceive), nil
}

// writeConnected queues the CONNECTED frame of version v; false when the outbound queue refuses it.
func (s *session) writeConnected(v int) bool {
	b, ok := s.c.Begin()
	if !ok {
		return false
	}
	b = appendCommand(b, frame.CONNECTED)
	b = appendHeader(b, 0, frame.Version, versionString(v))
	b = appendHeader(b, 0, frame.Server, ServerName)
	b = appendHeader(b, 0, frame.Session, s.id)
	if v >= v11 {
		b = append(b, "heart-beat:"...)
		b = strconv.AppendUint(b, uint64(s.h.HeartBeatSend/time.Millisecond), 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(s.h.HeartBeatReceive/time.Millisecond), 10)
		b = append(b, '\n')
	}
	s.c.Commit(appendBody(b, nil))
	return true
}

// startHeartBeats arms the negotiated heart-beats: the read deadline the client's must beat (none
// without them: the CONNECT deadline is lifted), and the timer of the server's.
func (s *session) startHeartBeats(out, in time.Duration) {
	if in > 0 {
		// STOMP 1.2 "Heart-beating": allow for timing inaccuracies with a 50% margin.
		s.dr.every = in + in/2
	} else {
		_ = s.c.SetReadDeadline(time.Time{})
	}
	if out > 0 {
		s.mu.Lock()
		s.beatEvery = out
		s.beat = time.AfterFunc(out, s.heartBeat)
		s.mu.Unlock()
	}
}

// negotiateVersion picks the highest version both sides support; no accept-version header means 1.0.
func negotiateVersion(h *frame.Header) (int, bool) {
	list, ok := h.Contains(frame.AcceptVersion)
	if !ok {
		return v10, true
	}
	best := 0
	for more := true; more; {
		var v string
		v, list, more = strings.Cut(list, ",") // not Split: every CONNECT comes here
		switch strings.TrimSpace(v) {
		case "1.0":
			best = max(best, v10)
		case "1.1":
			best = max(best, v11)
		case "1.2":
			best = max(best, v12)
		}
	}
	return best, best != 0
}

// negotiateInterval combines what one side can do with what the other wants (STOMP 1.2 "Heart-beating"):
// 0 if either is 0, else the larger.
func negotiateInterval(can, want time.Duration) time.Duration {
	if can == 0 || want == 0 {
		return 0
	}
	return max(can, want)
}
