package management

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Publishing over HTTP: POST /api/v1/vhosts/{vhost}/topics/{name} and /queues/{name}, the body as the
// payload. The request is a publisher like an MQTT or STOMP client: it needs send on the destination,
// its body is bounded by max_message_length, it is held back (boundedly) by full queues and by
// subscribers over their windows, and its 201 waits for the store when the message is persistent,
// as a PUBACK or a RECEIPT does.

// queueFullWait bounds how long a publish to a full queue (full policy block) waits for room before
// the 503, as STOMP's Handler.QueueFullWait does for a SEND: 10 s, nanoseconds in an atomic so a test
// may shorten it while requests run.
var queueFullWait atomic.Int64

func init() { queueFullWait.Store(int64(10 * time.Second)) }

// headerPrefix starts the request headers that become message headers: X-Lyre-<Name> is <name>.
const headerPrefix = "X-Lyre-"

// published is the answer to a publish.
type published struct {
	MessageID uint64 `json:"message_id"`
}

// publish returns the handler of publishes to destinations of kind k (router.Topic or router.Queue).
func (m *Manager) publish(k router.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := m.hostOf(w, r)
		if h == nil {
			return
		}
		d, err := parseName(r, k)
		if err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		msg, err := parsePublish(r, d, time.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		obj, _ := virtualhost.ObjectOf(k)
		if _, ok := m.allow(w, r, h, m.hostUser(r, h), virtualhost.ActionSend, obj, d.Path); !ok {
			return
		}
		if msg.Body, err = readBody(w, r, maxMessageLength(r, h)); err != nil {
			return // answered
		}
		if msg.Retain && len(msg.Body) == 0 {
			msg.Body = nil // an empty retained message clears the topic's
		}
		status, err := route(r.Context(), h, msg)
		if err != nil {
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			writeError(w, status, "%v", err)
			return
		}
		writeJSON(w, http.StatusCreated, published{MessageID: msg.ID})
	}
}

// maxMessageLength is the largest body a publish through the request's connector may carry on h: the
// smallest max_message_length of the connector's protocols and the host's.
func maxMessageLength(r *http.Request, h *virtualhost.Host) int64 {
	var limit int64
	lower := func(n int64) {
		if n > 0 && (limit == 0 || n < limit) {
			limit = n
		}
	}
	if c := protocol.ConnectorOf(r.Context()); c != nil {
		for _, p := range c.Protocols() {
			switch p {
			case "mqtt":
				lower(c.MQTT.MaxMessageLength)
			case "stomp":
				lower(c.STOMP.MaxMessageLength)
			}
		}
	}
	if limit == 0 {
		limit = conf.DefaultMaxMessageLength
	}
	lower(h.MaxMessageLength())
	return limit
}

// readBody reads the request body, at most limit bytes: a larger one is answered 413 without being
// buffered (http.MaxBytesReader), and the error returned.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	tooLarge := func() error {
		writeError(w, http.StatusRequestEntityTooLarge, "the body is over max_message_length (%d bytes)", limit)
		return errors.New("body too large")
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge()
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the body: %v", err)
		return nil, err
	}
	return buf.Bytes(), nil
}

// route publishes msg on h and says what to answer: 201 once it is routed and, when it is persistent,
// durably written; 503 when a full queue had no room within queueFullWait; 500 when the store failed.
// Like a connection's reader it holds back, for protocol.PaceTimeout at most, while subscribers the
// message went to are over their windows.
func route(ctx context.Context, h *virtualhost.Host, msg *router.Message) (int, error) {
	var pacer protocol.Pacer
	msg.Publisher = &pacer
	var tr *virtualhost.Tracker
	if msg.Persistent && h.TracksWrites() {
		// One commit for every write the message causes, as for an MQTT PUBLISH (or JetStream's
		// acknowledgement of a clustered queue's message).
		tr = virtualhost.NewAtomicTracker(h)
		msg.Tracker = tr
	}
	res := h.Router.Publish(msg)
	if errors.Is(res.Err, router.ErrQueueFull) {
		wctx, cancel := context.WithTimeout(ctx, time.Duration(queueFullWait.Load()))
		res = protocol.RetryFull(wctx, h.Router, msg, res)
		cancel()
	}
	if tr != nil {
		tr.Flush()
	}
	if res.Err != nil {
		if errors.Is(res.Err, router.ErrInvalidName) {
			return http.StatusBadRequest, res.Err
		}
		return http.StatusServiceUnavailable, res.Err
	}
	if res.Pressure != nil {
		pacer.HoldFor(res.Pressure)
	}
	pacer.Wait(ctx.Done())
	if tr == nil {
		return http.StatusCreated, nil
	}
	if err := waitDurable(ctx, tr); err != nil {
		if ctx.Err() != nil {
			return http.StatusServiceUnavailable, err // nobody is waiting for the answer any more
		}
		return http.StatusInternalServerError, fmt.Errorf("store write failed; the message may be lost: %w", err)
	}
	return http.StatusCreated, nil
}

// parsePublish makes the message a publish request describes, body aside: the query's persistent,
// retain, qos and ttl, and the Content-Type and X-Lyre-* headers.
func parsePublish(r *http.Request, d router.Destination, now time.Time) (*router.Message, error) {
	q := r.URL.Query()
	m := &router.Message{Dest: d, ContentType: r.Header.Get("Content-Type")}
	persistent, setP, err := boolParam(q, "persistent")
	if err != nil {
		return nil, err
	}
	if m.Retain, _, err = boolParam(q, "retain"); err != nil {
		return nil, err
	}
	if m.Retain && d.Kind != router.Topic {
		return nil, errors.New("retain applies to topics only")
	}
	qos, setQ, err := qosParam(q)
	if err != nil {
		return nil, err
	}
	// Either one implies the other, as for the front-ends: MQTT QoS 1 and 2 are persistent, STOMP's
	// persistent:true is QoS 1.
	switch {
	case setP && !setQ && persistent:
		qos = 1
	case setQ && !setP:
		persistent = qos > 0
	}
	m.QoS, m.Persistent = qos, persistent
	if err := applyHeaders(m, r.Header, now); err != nil {
		return nil, err
	}
	ttl, err := ttlParam(q)
	if err != nil {
		return nil, err
	}
	if e := now.Add(ttl).UnixMilli(); ttl > 0 && (m.Expires == 0 || e < m.Expires) {
		m.Expires = e
	}
	return m, nil
}

// boolParam reads an optional boolean query parameter ("true", "false", "1", "0"; empty is true).
func boolParam(q url.Values, name string) (v, set bool, err error) {
	if !q.Has(name) {
		return false, false, nil
	}
	s := q.Get(name)
	if s == "" {
		return true, true, nil
	}
	if v, err = strconv.ParseBool(s); err != nil {
		return false, false, fmt.Errorf("%s must be true or false, not %q", name, s)
	}
	return v, true, nil
}

// qosParam reads the qos query parameter: 0, 1 or 2.
func qosParam(q url.Values) (uint8, bool, error) {
	if !q.Has("qos") {
		return 0, false, nil
	}
	s := q.Get("qos")
	if s != "0" && s != "1" && s != "2" {
		return 0, false, fmt.Errorf("qos must be 0, 1 or 2, not %q", s)
	}
	return s[0] - '0', true, nil
}

// ttlParam reads the ttl query parameter: a duration ("30s", "1m30s") or milliseconds ("30000"),
// positive; 0 when absent.
func ttlParam(q url.Values) (time.Duration, error) {
	s := q.Get("ttl")
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		var ms int64
		if ms, err = strconv.ParseInt(s, 10, 64); err == nil {
			d = time.Duration(ms) * time.Millisecond
		}
	}
	if err != nil || d <= 0 || d > 100*365*24*time.Hour {
		return 0, fmt.Errorf("ttl must be a positive duration (30s) or number of milliseconds, not %q", s)
	}
	return d, nil
}

// applyHeaders gives m the X-Lyre-<Name> request headers as message headers named <name> in lower case
// (HTTP header names are case-insensitive), by name, each value in order (a name may repeat, as MQTT 5
// user properties do). The broker reads some of them as a STOMP SEND's (protocol.ParseExpires,
// ParsePriority): expires and ttl set the expiry, priority the queue priority, message_group the group,
// reply-to (a topic in the API's grammar) and correlation-id the MQTT 5 response topic and correlation
// data; expires, reply-to and correlation-id then do not travel as headers. The names the broker sets
// itself (protocol.ReservedHeader, retain) are refused: the query and Content-Type say those.
func applyHeaders(m *router.Message, h http.Header, now time.Time) error {
	var keys []string
	for k := range h {
		if len(k) > len(headerPrefix) && strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var expires, ttl string
	for _, k := range keys {
		name := strings.ToLower(k[len(headerPrefix):])
		for _, v := range h[k] {
			if !utf8.ValidString(v) {
				return fmt.Errorf("header %s is not UTF-8", k)
			}
			travels, err := interpret(m, name, v, &expires, &ttl)
			if err != nil {
				return fmt.Errorf("header %s: %w", k, err)
			}
			if travels {
				m.Headers = append(m.Headers, router.Header{Name: name, Value: v})
			}
		}
	}
	var err error
	m.Expires, err = protocol.ParseExpires(expires, ttl, now)
	return err
}

// interpret applies one header the broker reads to m and reports whether it travels with the message.
func interpret(m *router.Message, name, v string, expires, ttl *string) (bool, error) {
	switch name {
	case "expires":
		*expires = v
		return false, nil
	case "ttl":
		*ttl = v
	case "priority":
		p, err := protocol.ParsePriority(v)
		if err != nil {
			return false, err
		}
		m.Priority = p
	case "message_group":
		m.Group = v
	case "reply-to":
		d, err := names.ParseName(v)
		if err != nil {
			return false, err
		}
		m.ReplyTo = d
		return false, nil
	case "correlation-id":
		m.CorrelationData = []byte(v)
		return false, nil
	default:
		if protocol.ReservedHeader(name) || name == "retain" {
			return false, fmt.Errorf("%s is set by the broker (use the query's persistent, retain and ttl, and Content-Type)", name)
		}
	}
	return true, nil
}
