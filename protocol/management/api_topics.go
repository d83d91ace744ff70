package management

import (
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// topicInfo is one subscription filter in use, or one topic holding a retained message, or both.
type topicInfo struct {
	// Name is the filter or topic in the API's grammar (wildcards "*" and "**", regex levels "{re}").
	Name string `json:"name"`
	// Subscribers counts the subscriptions with this filter: plain, durable and shared-group members.
	Subscribers        int  `json:"subscribers"`
	DurableSubscribers int  `json:"durable_subscribers"`
	SharedSubscribers  int  `json:"shared_subscribers"`
	SharedGroups       int  `json:"shared_groups"`
	Retained           bool `json:"retained"`
}

// listTopics answers GET /api/v1/vhosts/{vhost}/topics (monitor).
func (m *Manager) listTopics(w http.ResponseWriter, r *http.Request) {
	h := m.onHost(w, r, virtualhost.ActionMonitor)
	if h == nil {
		return
	}
	out := []topicInfo{}
	for _, t := range h.Router.Topics() {
		if t.Filter.Kind != router.Topic {
			continue // temporary topics are private to their connection
		}
		out = append(out, topicInfo{Name: names.RenderFilter(t.Filter), Subscribers: t.Subscriptions,
			DurableSubscribers: t.Durable, SharedSubscribers: t.Shared, SharedGroups: t.Groups, Retained: t.Retained})
	}
	writePage(w, r, out)
}

// dsubInfo is one durable subscription: STOMP's (/dsub/<id>) and each subscription of an MQTT session
// that outlives its connection ($mqtt.<client id>.<filter>).
type dsubInfo struct {
	ID     string `json:"id"`
	Filter string `json:"filter"`
	// Owner is the user that owns it; "" for none in particular.
	Owner     string `json:"owner"`
	Depth     int    `json:"depth"`
	Unacked   int    `json:"unacked"`
	Bytes     int64  `json:"bytes"`
	Consumers int    `json:"consumers"`
}

// listDsubs answers GET /api/v1/vhosts/{vhost}/dsubs (monitor), by id.
func (m *Manager) listDsubs(w http.ResponseWriter, r *http.Request) {
	h := m.onHost(w, r, virtualhost.ActionMonitor)
	if h == nil {
		return
	}
	all := h.Router.Durables(nil)
	slices.SortFunc(all, func(a, b router.DurableInfo) int { return slices.Compare(a.Dest.Path, b.Dest.Path) })
	out := make([]dsubInfo, 0, len(all))
	for _, d := range all {
		di := dsubInfo{ID: renderPath(d.Dest.Path), Filter: names.RenderFilter(d.Filter), Owner: d.Owner}
		if q, ok := h.Router.QueueInfo(d.Dest); ok {
			di.Depth, di.Unacked, di.Bytes, di.Consumers = q.Depth, q.Unacked, q.Bytes, q.Consumers
		}
		out = append(out, di)
	}
	writePage(w, r, out)
}

// retainedInfo is one retained message.
type retainedInfo struct {
	Topic       string `json:"topic"`
	MessageID   uint64 `json:"message_id"`
	Size        int    `json:"size"`
	ContentType string `json:"content_type"`
	QoS         uint8  `json:"qos"`
	// ExpiresAt is when the message expires; absent for never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// listRetained answers GET /api/v1/vhosts/{vhost}/retained (monitor): the retained messages by topic,
// without their bodies.
func (m *Manager) listRetained(w http.ResponseWriter, r *http.Request) {
	h := m.onHost(w, r, virtualhost.ActionMonitor)
	if h == nil {
		return
	}
	var topics []router.Filter
	for _, t := range h.Router.Topics() {
		if t.Retained && t.Filter.Kind == router.Topic {
			topics = append(topics, t.Filter)
		}
	}
	p, err := paginate(r, topics)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	out := Page[retainedInfo]{Items: []retainedInfo{}, Page: p.Page, PageSize: p.PageSize, Total: p.Total}
	for _, f := range p.Items {
		for _, msg := range h.Router.Retained(f) { // one, unless it expired meanwhile
			ri := retainedInfo{Topic: renderPath(msg.Dest.Path), MessageID: msg.ID, Size: len(msg.Body),
				ContentType: msg.ContentType, QoS: msg.QoS}
			if msg.Expires > 0 {
				ri.ExpiresAt = time.UnixMilli(msg.Expires).UTC()
			}
			out.Items = append(out.Items, ri)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteRetained answers DELETE /api/v1/vhosts/{vhost}/retained/{name} (admin): the topic's retained
// message is cleared, durably, without sending subscribers anything; 404 when it holds none.
func (m *Manager) deleteRetained(w http.ResponseWriter, r *http.Request) {
	h := m.onHost(w, r, virtualhost.ActionAdmin)
	if h == nil {
		return
	}
	d, err := parseName(r, router.Topic)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	tr := &virtualhost.Tracker{}
	if !h.Router.DeleteRetained(d.Path, tr) {
		writeError(w, http.StatusNotFound, "topic %q holds no retained message", renderPath(d.Path))
		return
	}
	if err := waitDurable(r.Context(), tr); err != nil {
		writeError(w, http.StatusInternalServerError, "store write failed: %v", err)
		return
	}
	m.logAdmin(r, "retained message deleted", h, zap.String("topic", renderPath(d.Path)))
	w.WriteHeader(http.StatusNoContent)
}
