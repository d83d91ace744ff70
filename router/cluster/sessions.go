package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// Session claims (see the package doc): the link carries them and does not read them. A node holding a
// session of client id X in virtual host V subscribes to "lyre.<V>.s.<X>"; a claim is a NATS request on
// that subject, so NATS interest is the directory: a request nobody holds gets "no responders" at once.

const (
	sessionMark = "s"
	// maxIDToken bounds a client id's token; a longer id is named by its SHA-256 ("~h" and 64 hex digits,
	// which no encoded level can be), since a subject must fit NATS's control line. The claim itself
	// carries the whole id, which the holder compares.
	maxIDToken = 128
	// claimQueue bounds the claims waiting for the serving goroutine.
	claimQueue = 4096
)

// sessions is the link's share of session claims. Guarded by mu, except subs (the sessions goroutine's).
type sessions struct {
	mu    sync.Mutex
	serve func(req []byte) []byte // nil until ServeSessions
	ops   []holdOp
	wake  chan struct{}
	in    chan *nats.Msg
	subs  map[string]*holdSub
}

type holdOp struct {
	subj string
	hold bool
}

type holdSub struct {
	n   int
	sub *nats.Subscription
}

// sessionSubject returns the subject of client id's session in vhost.
func sessionSubject(vhost, clientID string) string { return idSubject(sessionMark, vhost, clientID) }

// idSubject returns the subject "lyre.<vhost>.<mark>.<client id token>".
func idSubject(mark, vhost, clientID string) string {
	b := appendToken([]byte(subjectRoot+"."), vhost)
	b = append(b, "."+mark+"."...)
	if tok := appendToken(nil, clientID); len(tok) <= maxIDToken {
		return string(append(b, tok...))
	}
	sum := sha256.Sum256([]byte(clientID))
	return string(hex.AppendEncode(append(b, "~h"...), sum[:]))
}

// ServeSessions makes fn answer the session claims other nodes send to the sessions this node holds
// (HoldSession). Each claim is answered on a goroutine of its own; a nil answer is none (the claimer's
// deadline passes). Call it once.
func (l *Link) ServeSessions(fn func(req []byte) []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.sess
	if l.closed || s.serve != nil {
		return
	}
	s.mu.Lock()
	s.serve = fn
	s.wake = make(chan struct{}, 1)
	s.in = make(chan *nats.Msg, claimQueue)
	s.subs = make(map[string]*holdSub)
	pending := len(s.ops) > 0
	s.mu.Unlock()
	l.wg.Add(1)
	go l.sessionLoop()
	if pending {
		s.wake <- struct{}{}
	}
}

// HoldSession announces that this node holds client id's session of vhost: claims of it reach this node
// from now on (once the interest has crossed the routes). It never blocks; holds and releases take effect
// in the order they are made, and count (two holds need two releases).
func (l *Link) HoldSession(vhost, clientID string) {
	l.holdOp(holdOp{sessionSubject(vhost, clientID), true})
}

// ReleaseSession undoes one HoldSession.
func (l *Link) ReleaseSession(vhost, clientID string) {
	l.holdOp(holdOp{sessionSubject(vhost, clientID), false})
}

func (l *Link) holdOp(o holdOp) {
	s := &l.sess
	s.mu.Lock()
	s.ops = append(s.ops, o)
	wake := s.wake
	s.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// ClaimSession sends claim req to the holders of client id's session of vhost and returns the first
// answer. held is false, at once, when no node holds it (NATS has no responder for the subject); err is
// ctx's when a holder does not answer in time.
func (l *Link) ClaimSession(ctx context.Context, vhost, clientID string, req []byte) (reply []byte, held bool, err error) {
	m, err := l.nc.RequestWithContext(ctx, sessionSubject(vhost, clientID), req)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, false, nil
	case err != nil:
		return nil, true, err
	}
	return m.Data, true, nil
}

// SessionHolders returns how many subscriptions the embedded server knows (this node's and, through
// routes, the other nodes') for claims of client id's session of vhost: the nodes holding it, once their
// holds have crossed the routes; -1 with an external NATS. Tests poll it.
func (l *Link) SessionHolders(vhost, clientID string) int {
	if l.ns == nil {
		return -1
	}
	return l.ns.GlobalAccount().Interest(sessionSubject(vhost, clientID))
}

// MaxPayload is the largest claim answer NATS carries, less room for the headers of a reply.
func (l *Link) MaxPayload() int { return int(l.nc.MaxPayload()) - 4096 }

// sessionLoop applies holds and releases in order and answers claims, each on a goroutine of its own
// (an answer may wait for the session's connection to end).
func (l *Link) sessionLoop() {
	defer l.wg.Done()
	s := &l.sess
	defer func() {
		for _, hs := range s.subs {
			_ = hs.sub.Unsubscribe()
		}
	}()
	for {
		select {
		case <-l.quit:
			return
		case <-s.wake:
			s.mu.Lock()
			ops := s.ops
			s.ops = nil
			s.mu.Unlock()
			for _, o := range ops {
				l.applyHold(o)
			}
		case m := <-s.in:
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				if b := s.serve(m.Data); b != nil {
					if err := m.Respond(b); err != nil {
						l.log.Warn("session claim answer not sent", zap.Error(err))
					}
				}
			}()
		}
	}
}

func (l *Link) applyHold(o holdOp) {
	s := &l.sess
	hs := s.subs[o.subj]
	switch {
	case o.hold && hs != nil:
		hs.n++
	case o.hold:
		sub, err := l.nc.ChanSubscribe(o.subj, s.in)
		if err != nil {
			l.log.Error("cluster session subscribe", zap.String("subject", o.subj), zap.Error(err))
			return
		}
		_ = sub.SetPendingLimits(-1, -1)
		s.subs[o.subj] = &holdSub{n: 1, sub: sub}
	case hs != nil:
		if hs.n--; hs.n == 0 {
			_ = hs.sub.Unsubscribe()
			delete(s.subs, o.subj)
		}
	}
}
