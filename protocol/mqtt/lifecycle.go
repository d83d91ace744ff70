package mqtt

// Session lifecycle: the per-host registry, takeover, attach after CONNACK, release when the connection ends.

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
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
		s = newSession(id, clean, cl.host, cl.h.log)
		s.owner = protocol.Owner(cl.principal) // in its first record
		s.att = att
		reg.sessions[id] = s
		reg.mu.Unlock()
		if old != nil {
			// Unattached and unreachable: nothing else touches it [MQTT-3.1.2-6].
			for _, e := range old.subs {
				if e.dsub == nil && !e.queue {
					cl.rt.Unsubscribe(e.rs)
				}
			}
			discardDurables(cl.rt, old)
			old.mu.Lock()
			old.discardLocked()
			old.mu.Unlock()
			if !old.clean {
				cl.host.DeleteSession(old.id, nil)
			}
		}
		if !clean {
			cl.host.SaveSession(s.record(cl.version), nil) // nothing else sees s yet
		}
		return s, false, nil
	}
}

// resume attaches the session to this connection after CONNACK: resends, queued messages, then the
// consumers of its queues and durable subscriptions, whose redeliveries of messages in flight go out
// again under their packet ids (durable.go); in-flight ids whose messages are gone are forgotten.
func (cl *client) resume() {
	s := cl.sess
	cl.c.OnDrain(cl.onDrain)
	s.attach(cl.c, cl.version, cl.g, cl.lim)
	for _, e := range s.subs {
		if e.consumes() && e.consumer == nil {
			if err := cl.consume(e); err != nil {
				cl.c.Log().Warn("consumer not resumed", zap.String("filter", e.key), zap.Error(err))
			}
		}
	}
	s.mu.Lock()
	s.dropUnmatchedLocked()
	s.pumpLocked()
	s.mu.Unlock()
}

// end releases the session when the connection is over and publishes the will unless the client said
// DISCONNECT.
func (cl *client) end(graceful bool) {
	s := cl.sess
	s.cons.Take()
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
