package protocol

// What a configuration reload asks of live connections (see the package doc, "Reload"): re-check each
// logged-in client under the new users, access rules and virtual hosts, and stop or replace connectors.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Reasons a re-check ends a connection. A user removed from the users file or no longer allowed to
// connect ends it with virtualhost.ErrUserRemoved or virtualhost.ErrNotAuthorized.
var (
	// ErrHostRemoved ends the connections of a virtual host a reload removed (or replaced: its store moved).
	ErrHostRemoved = errors.New("protocol: virtual host removed by a configuration reload")
	// ErrRevoked ends a connection holding a subscription its user may no longer hold; the subscription is
	// removed as an UNSUBSCRIBE would.
	ErrRevoked = errors.New("protocol: not authorized any more")
	// ErrAccessChanged ends a connection whose access changed in a way its live subscriptions cannot follow
	// in place: one now allowed only in part where it had no gate, or gated subscriptions of a user whose
	// groups changed. The client subscribes again under the new rules (an MQTT persistent session's
	// subscriptions are re-checked and gated when it resumes).
	ErrAccessChanged = errors.New("protocol: access changed by a configuration reload")
	// ErrConnectorRemoved ends the connections of a connector a reload removed or replaced.
	ErrConnectorRemoved = errors.New("protocol: connector removed by a configuration reload")
)

// Held is one subscription (or route of one) a connection holds, as a re-check sees it.
type Held struct {
	// Name is how the client knows it: the MQTT filter, the STOMP destination.
	Name string
	// ID is the STOMP subscription id; "" for MQTT.
	ID string
	// Filter is what access rules judge: the filter subscribed to (for a durable subscription of a topic,
	// the topic filter, not the subscription's own name).
	Filter router.Filter
	// Whole: the subscription must be allowed whole (a STOMP durable subscription, whose queue would keep
	// what a gate drops).
	Whole bool
	// Gated: it delivers through a virtualhost.Gate.
	Gated bool
}

// Verdict is what re-checking one connection decided.
type Verdict struct {
	// Principal is who the client is under the new users file; Adopt is set when it differs from the one
	// the connection has (its groups changed) and the connection goes on: the reader adopts it before it
	// handles its next packet or frame.
	Principal virtualhost.Principal
	Adopt     bool
	// Err is nil when the connection may go on; otherwise the reason it ends (see the Err* above).
	Err error
	// Revoked are the subscriptions the client may no longer hold: they are removed as an UNSUBSCRIBE
	// would, and the client is told.
	Revoked []Held
}

// Recheck decides whether a client of host, logged in as p with clientID and holding held, may go on
// after a reload, under the host's settings now. It runs on the reload's goroutine and only reads.
func Recheck(host *virtualhost.Host, p virtualhost.Principal, clientID string, held []Held) Verdict {
	if host.Retired() {
		return Verdict{Err: fmt.Errorf("%w: %s", ErrHostRemoved, host.Name)}
	}
	np, err := host.Refresh(p, clientID)
	if err != nil {
		return Verdict{Err: err}
	}
	v := Verdict{Principal: np, Adopt: !slices.Equal(np.Groups, p.Groups)}
	var narrowed []string
	for _, h := range held {
		obj, checked := virtualhost.ObjectOf(h.Filter.Kind)
		if !checked {
			continue
		}
		some, all := host.AuthorizeFilter(np, virtualhost.ReadAction(h.Filter.Kind), obj, virtualhost.RulePath(h.Filter.Kind, h.Filter.Segs), clientID)
		switch {
		case !some || h.Whole && !all:
			v.Revoked = append(v.Revoked, h)
		case !all && (!h.Gated || v.Adopt):
			narrowed = append(narrowed, h.Name) // a gate made for the old groups decides for them still
		}
	}
	switch {
	case len(v.Revoked) > 0:
		v.Err = fmt.Errorf("%w to %s %s", ErrRevoked, virtualhost.ReadAction(v.Revoked[0].Filter.Kind), names(v.Revoked))
	case len(narrowed) > 0:
		v.Err = fmt.Errorf("%w: %s now reaches destinations the client may not read; subscribe again", ErrAccessChanged,
			strings.Join(narrowed, ", "))
	}
	return v
}

// names lists the subscriptions' names for a reason string.
func names(hs []Held) string {
	n := make([]string, len(hs))
	for i, h := range hs {
		n[i] = h.Name
	}
	return strings.Join(n, ", ")
}

// LogRecheck logs a re-check that ends the connection c of host: who, why, and which subscriptions go.
func LogRecheck(c *Conn, host *virtualhost.Host, p virtualhost.Principal, clientID string, v Verdict) {
	fields := []zap.Field{zap.String("vhost", host.Name), zap.String("user", LoggedName(p.User)),
		zap.String("client_id", LoggedName(clientID)), zap.Error(v.Err)}
	if len(v.Revoked) > 0 {
		revoked := make([]string, len(v.Revoked))
		for i, h := range v.Revoked {
			revoked[i] = h.Name
		}
		fields = append(fields, zap.Strings("revoked", revoked))
	}
	c.Log().Info("connection re-checked after reload: closing", fields...)
}

// OnRecheck registers f, run by Server.Recheck once a configuration reload has changed users, access
// rules or virtual hosts: the front-end re-checks its client (Recheck) and, when the client may not go
// on, queues its goodbye and closes the connection (CloseAfter). f reports whether it is closing the
// connection. It runs on the reload's goroutine, not the connection's reader: it must not block, and
// touches only what is safe there (the outbound queue, state under the session's lock, atomics); what
// only the reader may do (router calls for the session) is posted to the reader. A front-end registers
// it once its client has logged in; a reload that ran during the login is caught up with here: f runs
// at once, on the caller's goroutine.
func (c *Conn) OnRecheck(f func() bool) {
	c.out.mu.Lock()
	c.out.onRecheck = f
	c.out.mu.Unlock()
	if c.srv.rechecks.Load() != c.rechecks {
		f()
	}
}

// recheck runs the connection's OnRecheck hook; false when it has none or the hook lets it go on.
func (c *Conn) recheck() bool {
	c.out.mu.Lock()
	f := c.out.onRecheck
	c.out.mu.Unlock()
	return f != nil && f()
}

// Recheck runs every connection's OnRecheck hook (after a reload applied new users, access rules and
// virtual hosts) and returns the connections the hooks are closing, for the caller to wait for
// (WaitGone) before it releases what they use.
func (s *Server) Recheck() []*Conn {
	s.rechecks.Add(1) // before the snapshot: a login finishing after it runs its hook itself (OnRecheck)
	s.mu.Lock()
	conns := s.connsLocked()
	s.mu.Unlock()
	var closing []*Conn
	for _, c := range conns {
		if c.recheck() {
			closing = append(closing, c)
		}
	}
	return closing
}

// WaitGone waits until the goroutines of conns have finished (their front-ends' cleanup included) or ctx
// is done; then it returns ctx.Err().
func (s *Server) WaitGone(ctx context.Context, conns []*Conn) error {
	t := time.NewTicker(10 * time.Millisecond) // a reload is rare: polling costs connections nothing
	defer t.Stop()
	for {
		s.mu.Lock()
		live := slices.ContainsFunc(conns, func(c *Conn) bool { _, ok := s.conns[c]; return ok })
		s.mu.Unlock()
		if !live {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
