package management

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// queueInfo is one queue (kind queue: dead-letter queues are queues) in the API.
type queueInfo struct {
	Name string `json:"name"`
	// Depth counts the messages waiting for a consumer, Swapped those of them held in the store only.
	Depth   int `json:"depth"`
	Swapped int `json:"swapped"`
	// Unacked counts the messages delivered and not yet acknowledged.
	Unacked int `json:"unacked"`
	// Bytes is what the queue holds, waiting and unacknowledged: what max_bytes bounds.
	Bytes       int64 `json:"bytes"`
	Consumers   int   `json:"consumers"`
	Browsers    int   `json:"browsers"`
	MaxMessages int   `json:"max_messages"`
	MaxBytes    int64 `json:"max_bytes"`
	// Durable is set when the queue's persistent messages survive a restart.
	Durable bool `json:"durable"`
	// Enqueued and Dequeued count arrivals and departures since the router made the queue.
	Enqueued uint64 `json:"enqueued"`
	Dequeued uint64 `json:"dequeued"`
}

func describeQueue(q router.QueueInfo) queueInfo {
	return queueInfo{Name: renderPath(q.Dest.Path), Depth: q.Depth, Swapped: q.Swapped, Unacked: q.Unacked,
		Bytes: q.Bytes, Consumers: q.Consumers, Browsers: q.Browsers, MaxMessages: q.MaxMessages,
		MaxBytes: q.MaxBytes, Durable: q.Journalled, Enqueued: q.Enqueued, Dequeued: q.Dequeued}
}

// listQueues answers GET /api/v1/vhosts/{vhost}/queues (monitor): the host's queues by name.
func (m *Manager) listQueues(w http.ResponseWriter, r *http.Request) {
	h := m.onHost(w, r, virtualhost.ActionMonitor)
	if h == nil {
		return
	}
	out := []queueInfo{}
	for _, q := range h.Router.Queues() {
		if q.Dest.Kind == router.Queue {
			out = append(out, describeQueue(q))
		}
	}
	writePage(w, r, out)
}

// queueOf returns the host and the queue {name} of a request whose user may do action on the host; else
// it has answered (404, 400, 401, 403).
func (m *Manager) queueOf(w http.ResponseWriter, r *http.Request, action virtualhost.Action) (*virtualhost.Host, router.Destination, bool) {
	h := m.onHost(w, r, action)
	if h == nil {
		return nil, router.Destination{}, false
	}
	d, err := parseName(r, router.Queue)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return nil, d, false
	}
	return h, d, true
}

// getQueue answers GET /api/v1/vhosts/{vhost}/queues/{name} (monitor).
func (m *Manager) getQueue(w http.ResponseWriter, r *http.Request) {
	h, d, ok := m.queueOf(w, r, virtualhost.ActionMonitor)
	if !ok {
		return
	}
	q, ok := h.Router.QueueInfo(d)
	if !ok {
		writeError(w, http.StatusNotFound, "no queue %q", renderPath(d.Path))
		return
	}
	writeJSON(w, http.StatusOK, describeQueue(q))
}

// deleteQueue answers DELETE /api/v1/vhosts/{vhost}/queues/{name} (admin): the queue's messages are
// purged (durably) and the queue is forgotten. A queue with consumers is not deleted (409): nothing
// could tell them that it is gone; purge it, or disconnect them first.
func (m *Manager) deleteQueue(w http.ResponseWriter, r *http.Request) {
	h, d, ok := m.queueOf(w, r, virtualhost.ActionAdmin)
	if !ok {
		return
	}
	q, ok := h.Router.QueueInfo(d)
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "no queue %q", renderPath(d.Path))
		return
	case q.Consumers+q.Browsers > 0:
		writeError(w, http.StatusConflict, "queue %q has %d consumers: purge it, or disconnect them first", renderPath(d.Path), q.Consumers+q.Browsers)
		return
	}
	n, err := m.purge(r, h, d)
	if err != nil {
		writeAdminError(w, err, d)
		return
	}
	h.Router.ForgetQueue(d)
	m.logAdmin(r, "queue deleted", h, zap.String("queue", renderPath(d.Path)), zap.Int("messages", n))
	w.WriteHeader(http.StatusNoContent)
}

// purgeQueue answers DELETE /api/v1/vhosts/{vhost}/queues/{name}/messages (admin): the waiting messages
// are removed, durably, and counted; those delivered and unacknowledged stay with their consumers.
func (m *Manager) purgeQueue(w http.ResponseWriter, r *http.Request) {
	h, d, ok := m.queueOf(w, r, virtualhost.ActionAdmin)
	if !ok {
		return
	}
	n, err := m.purge(r, h, d)
	if err != nil {
		writeAdminError(w, err, d)
		return
	}
	m.logAdmin(r, "queue purged", h, zap.String("queue", renderPath(d.Path)), zap.Int("messages", n))
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}

// purge purges queue d of h and waits until the removals are durable.
func (m *Manager) purge(r *http.Request, h *virtualhost.Host, d router.Destination) (int, error) {
	tr := &virtualhost.Tracker{}
	n, err := h.Router.PurgeQueue(d, tr)
	if werr := waitDurable(r.Context(), tr); err == nil {
		err = werr
	}
	return n, err
}

// moveRequest is the body of POST …/queues/{name}/move.
type moveRequest struct {
	To  string `json:"to"`
	Max int    `json:"max"` // 0: all
}

// moveMessages answers POST /api/v1/vhosts/{vhost}/queues/{name}/move (admin), how a dead-letter queue
// is replayed: up to max waiting messages (0: all), oldest first, go to the queue to, durably. 200
// {"moved": n}; 409 with the count when the target filled up before all were moved (a move drops
// nothing).
func (m *Manager) moveMessages(w http.ResponseWriter, r *http.Request) {
	h, from, ok := m.queueOf(w, r, virtualhost.ActionAdmin)
	if !ok {
		return
	}
	var req moveRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: %v (want {\"to\": \"queue.name\", \"max\": 0})", err)
		return
	}
	to, err := names.ParseName(req.To)
	if err != nil || req.Max < 0 {
		writeError(w, http.StatusBadRequest, "to must name a queue and max be 0 (all) or more: %v", err)
		return
	}
	to.Kind = router.Queue
	tr := &virtualhost.Tracker{}
	n, err := h.Router.MoveMessages(from, to, req.Max, tr)
	if werr := waitDurable(r.Context(), tr); err == nil {
		err = werr
	}
	m.logAdmin(r, "messages moved", h, zap.String("queue", renderPath(from.Path)), zap.String("to", req.To), zap.Int("messages", n))
	if errors.Is(err, router.ErrQueueFull) || errors.Is(err, router.ErrTooManyQueues) {
		writeJSON(w, http.StatusConflict, map[string]any{"moved": n, "error": "the target queue " + req.To + " is full: " + err.Error()})
		return
	}
	if err != nil {
		writeAdminError(w, err, from)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"moved": n})
}

// waitDurable waits until tr's writes are durable and returns their error, or ctx's.
func waitDurable(ctx context.Context, tr *virtualhost.Tracker) error {
	done := make(chan error, 1)
	tr.Then(func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeAdminError answers a router error of an operation on queue d.
func writeAdminError(w http.ResponseWriter, err error, d router.Destination) {
	switch {
	case errors.Is(err, router.ErrNoQueue):
		writeError(w, http.StatusNotFound, "no queue %q", renderPath(d.Path))
	case errors.Is(err, router.ErrInvalidName):
		writeError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, router.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "%v", err)
	default:
		writeError(w, http.StatusInternalServerError, "%v", err)
	}
}

// logAdmin logs a change an operator made.
func (m *Manager) logAdmin(r *http.Request, msg string, h *virtualhost.Host, fields ...zap.Field) {
	user, _, _ := r.BasicAuth()
	m.log.Info(msg, append(fields, zap.String("vhost", h.Name), zap.String("user", protocol.LoggedName(user)))...)
}
