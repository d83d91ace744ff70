package stomp

import (
	"strconv"
	"strings"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"go.uber.org/zap"

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
	var host *virtualhost.Host
	if name, ok := f.Header.Contains(frame.Host); ok && name != "" {
		host = s.h.hosts.Lookup(name)
		if host == nil {
			return protoErr("unknown virtual host", "no virtual host is named %q", name)
		}
	} else {
		host = s.h.hosts.Default()
		if host == nil {
			return protoErr("unknown virtual host", "the server has no virtual host")
		}
	}
	login, hasLogin := f.Header.Contains(frame.Login)
	s.clientID = f.Header.Get(clientIDHeader)
	if s.clientID == "" {
		s.clientID = s.id
	}
	p, err := s.login(host, login, []byte(f.Header.Get(frame.Passcode)), hasLogin, s.clientID)
	if err != nil {
		return err
	}
	var out, in time.Duration
	if v >= v11 {
		if hb, ok := f.Header.Contains(frame.HeartBeat); ok {
			cx, cy, err := frame.ParseHeartBeat(hb)
			if err != nil {
				return protoErr("invalid heart-beat", "heart-beat must be two integers \"cx,cy\", got %q", hb)
			}
			out = negotiateInterval(s.h.HeartBeatSend, cy)
			in = negotiateInterval(cx, s.h.HeartBeatReceive)
		}
	}

	s.version, s.connected = v, true
	s.rd.Version = v
	s.host, s.rt, s.principal = host, host.Router, p
	s.subs = make(map[string]*subscription)

	b, ok := s.c.Begin()
	if !ok {
		return ErrOutboundFull
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

	s.c.OnDrain(s.drained)
	s.c.OnShutdown(s.shutdown)
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
	if s.h.log.Core().Enabled(zap.DebugLevel) {
		s.c.Log().Debug("stomp connected", zap.String("vhost", host.Name), zap.String("user", p.User), zap.String("version", versionString(v)),
			zap.Duration("heart_beat_out", out), zap.Duration("heart_beat_in", in))
	}
	return nil
}

// negotiateVersion picks the highest version both sides support; no accept-version header means 1.0.
func negotiateVersion(h *frame.Header) (int, bool) {
	list, ok := h.Contains(frame.AcceptVersion)
	if !ok {
		return v10, true
	}
	best := 0
	for _, v := range strings.Split(list, ",") {
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
