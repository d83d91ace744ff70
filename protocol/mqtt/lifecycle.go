package mqtt

// Session lifecycle: the per-host registry, takeover, attach after CONNACK, release when the connection ends.

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store"
)

// registry holds one virtual host's sessions by client id.
type registry struct {
	mu       sync.Mutex
	sessions map[string]*session
}

// attachment is one connection's hold on a session. Guarded by registry.mu.
type attachment struct {
	conn *protocol.Conn
	// done is closed once the connection has released the session. Made by the first connection that
	// waits for the release (a takeover): most attachments never need it, and a channel costs 96 bytes.
	done chan struct{}
}

// takeSession finds or creates the session for client id, taking it over from a connection that still
// holds it [MQTT-3.1.4-2]: that connection is closed and its release awaited. With clean session on an
// existing session is discarded [MQTT-3.1.2-6]. It reports whether a session was present.
func (cl *client) takeSession(id string, clean bool) (*session, bool, error) {
	reg := cl.h.registry(cl.host)
	att := &attachment{conn: cl.c}
	deadline := time.Now().Add(takeoverWait)
	for {
		reg.mu.Lock()
		s := reg.sessions[id]
		if s != nil && s.att != nil {
			prev := s.att
			if prev.done == nil {
				prev.done = make(chan struct{})
			}
			done := prev.done
			reg.mu.Unlock()
			prev.conn.Close(errTakenOver)
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-done:
				t.Stop()
			case <-cl.c.Done():
				t.Stop()
				return nil, false, errOutboundClosed
			case <-t.C:
				return nil, false, errTakeoverTimeout
			}
			continue
		}
		cl.att = att
		if s != nil && !clean {
			s.att = att
			reg.mu.Unlock()
			return s, true, nil
		}
		old := s
		s = newSession(id, clean, cl.h.log)
		s.owner = sessionOwner(cl.principal) // in its first record
		if !clean && cl.host.Durable() {
			s.ps = &sessionStore{host: cl.host}
			s.commitLocked(nil, store.PutSession{Session: s.record(cl.version)}) // nothing else sees s yet
		}
		s.att = att
		reg.sessions[id] = s
		reg.mu.Unlock()
		if old != nil {
			// Unattached and unreachable: nothing else touches it.
			for _, e := range old.subs {
				if !e.queue {
					cl.rt.Unsubscribe(e.rs)
				}
			}
			old.mu.Lock()
			old.discardLocked()
			old.mu.Unlock()
		}
		return s, false, nil
	}
}

// resume attaches the session to this connection after CONNACK: resends, queued messages, and the queue
// consumers of a resumed session.
func (cl *client) resume() {
	s := cl.sess
	cl.c.OnDrain(cl.onDrain)
	s.attach(cl.c, cl.version, cl.g, cl.lim)
	for _, e := range s.subs {
		if e.queue && e.consumer == nil {
			// A fresh subscription: the router treats the pointer as the consumer's identity.
			rs := &router.Subscription{Filter: e.rs.Filter, Sink: s, QoS: e.qos, ID: e.key, Opaque: e}
			s.mu.Lock()
			e.rs = rs
			s.mu.Unlock()
			if err := cl.consume(e); err != nil {
				cl.c.Log().Warn("queue consumer not resumed", zap.String("filter", e.key), zap.Error(err))
			}
		}
	}
}

// end releases the session when the connection is over and publishes the will unless the client said
// DISCONNECT.
func (cl *client) end(graceful bool) {
	s := cl.sess
	for _, e := range s.subs {
		if e.consumer != nil {
			e.consumer.Close() // unacknowledged messages go back to the queue
			e.consumer = nil
		}
		if s.clean && !e.queue {
			cl.rt.Unsubscribe(e.rs)
		}
	}
	s.detach()
	reg := cl.h.registry(cl.host)
	reg.mu.Lock()
	if s.clean && reg.sessions[s.id] == s {
		delete(reg.sessions, s.id)
	}
	s.att = nil
	done := cl.att.done
	reg.mu.Unlock()
	if done != nil {
		close(done)
	}

	if !graceful && cl.will != nil {
		// [MQTT-3.1.2-8] published when the connection ends without DISCONNECT.
		if res := cl.rt.Publish(cl.will); res.Err != nil {
			cl.c.Log().Info("will not published", zap.String("topic", cl.will.Origin), zap.Error(res.Err))
		}
	}
}
