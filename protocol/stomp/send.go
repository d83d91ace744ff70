package stomp

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// send publishes a SEND frame to each destination it names (STOMP 1.2 "SEND"). A persistent message or
// one whose sender wants a receipt is QoS 1.
func (s *session) send(f *frame.Frame) error {
	dest, err := s.sendHeader(f)
	if err != nil {
		return err
	}
	var one [1]string
	var oneDest [1]router.Destination
	names, dests := one[:], oneDest[:]
	if sep := s.cfg.DestinationSeparator; sep != "" && strings.Contains(dest, sep) {
		names = uniqueNames(s.g.SplitComposite(dest))
		dests = make([]router.Destination, len(names))
	} else {
		one[0] = dest
	}
	for i, name := range names {
		d, err := s.sendDestination(name)
		if err != nil {
			return err
		}
		dests[i] = d
	}
	h, err := s.parseSendHeaders(f)
	if err != nil {
		return err
	}
	s.c.CountIn(1) // one message taken in for routing, whatever the router makes of it
	for i, d := range dests {
		if err := s.publish(s.newMessage(f, &h, names[i], d)); err != nil {
			return &frameError{msg: "send failed", detail: names[i] + ": " + err.Error(), cause: err}
		}
		s.sentToTemp(d)
	}
	return nil
}

// sendHeader checks what a SEND's frame alone decides: a destination, and a body within the host's
// max_message_length.
func (s *session) sendHeader(f *frame.Frame) (string, error) {
	dest, ok := f.Header.Contains(frame.Destination)
	if !ok || dest == "" {
		return "", protoErr("missing destination", "SEND requires a destination header")
	}
	if max := s.host.MaxMessageLength(); max > 0 && int64(len(f.Body)) > max {
		return "", protoErr("message too large", "virtual host %q accepts bodies of at most %d bytes (max_message_length)", s.host.Name, max)
	}
	return dest, nil
}

// checkSend makes send's checks without publishing: those of each destination (access rules included)
// and of the headers. A SEND entering a transaction goes through it (buffer).
func (s *session) checkSend(f *frame.Frame) error {
	dest, err := s.sendHeader(f)
	if err != nil {
		return err
	}
	names := []string{dest}
	if sep := s.cfg.DestinationSeparator; sep != "" && strings.Contains(dest, sep) {
		names = uniqueNames(s.g.SplitComposite(dest))
	}
	for _, name := range names {
		if _, err := s.sendDestination(name); err != nil {
			return err
		}
	}
	_, err = s.parseSendHeaders(f)
	return err
}

// sendDestination parses one destination of a SEND and checks the session may send to it.
func (s *session) sendDestination(name string) (router.Destination, error) {
	d, err := s.g.ParseName(name)
	if err != nil {
		return d, &frameError{msg: "invalid destination", detail: err.Error(), cause: err}
	}
	if d.Kind == router.DurableSub {
		return d, protoErr("invalid destination", "%q names a durable subscription; send to its topic", name)
	}
	if d, err = s.tempName(name, d); err != nil {
		return d, err
	}
	if err := s.maySend(name, d); err != nil {
		return d, err
	}
	return d, nil
}

// sendHeaders is what the headers of one SEND make of its messages, the same for every destination.
type sendHeaders struct {
	body       []byte // nil for retain:remove
	qos        uint8
	persistent bool
	receipt    bool // the frame has a receipt header
	retain     bool
	expires    int64
	priority   uint8
	group      string
	replyTo    router.Destination // Path nil: none, or a reply-to that travels as a plain header
	corr       []byte             // correlation-id; nil: none
	hdrs       []router.Header    // the headers that travel with the message
}

// parseSendHeaders reads the SEND headers the broker interprets (persistent, receipt, retain, expires,
// ttl, priority, message_group or JMSXGroupID, reply-to, correlation-id) and collects those that travel
// with the message.
func (s *session) parseSendHeaders(f *frame.Frame) (sendHeaders, error) {
	h := sendHeaders{persistent: f.Header.Get("persistent") == "true"}
	_, h.receipt = f.Header.Contains(frame.Receipt)
	if h.persistent || h.receipt {
		h.qos = 1
	}
	var err error
	if h.retain, h.body, err = parseRetain(f); err != nil {
		return h, err
	}
	if h.expires, err = parseExpires(f); err != nil {
		return h, err
	}
	if h.priority, err = parsePriority(f); err != nil {
		return h, err
	}
	h.group = f.Header.Get("message_group")
	if h.group == "" {
		h.group = f.Header.Get("JMSXGroupID")
	}
	if v, ok := f.Header.Contains("reply-to"); ok {
		if h.replyTo, err = s.parseReplyTo(v); err != nil {
			return h, err
		}
	}
	if v := f.Header.Get("correlation-id"); v != "" {
		h.corr = []byte(v)
	}
	h.hdrs = s.appHeaders(f, h.replyTo.Path != nil, h.corr != nil)
	return h, nil
}

// parseRetain reads the retain header: set retains the message, remove clears the retained message (the
// body is then dropped).
func parseRetain(f *frame.Frame) (retain bool, body []byte, err error) {
	switch r := f.Header.Get("retain"); r {
	case "":
		return false, f.Body, nil
	case "set":
		return true, f.Body, nil
	case "remove":
		return true, nil, nil
	default:
		return false, f.Body, protoErr("invalid retain header", "retain must be set or remove, got %q", r)
	}
}

// parseExpires reads the expires and ttl headers (protocol.ParseExpires).
func parseExpires(f *frame.Frame) (int64, error) {
	return headerErr(protocol.ParseExpires(f.Header.Get("expires"), f.Header.Get("ttl"), time.Now()))
}

// parsePriority reads the priority header (protocol.ParsePriority).
func parsePriority(f *frame.Frame) (uint8, error) {
	return headerErr(protocol.ParsePriority(f.Header.Get("priority")))
}

// headerErr turns a protocol.HeaderError into the ERROR frame it answers.
func headerErr[T any](v T, err error) (T, error) {
	var he *protocol.HeaderError
	if errors.As(err, &he) {
		return v, protoErr("invalid "+he.Name+" header", "%s", he.Detail)
	}
	return v, err
}

// newMessage is the message a SEND publishes to d, named name as written.
func (s *session) newMessage(f *frame.Frame, h *sendHeaders, name string, d router.Destination) *router.Message {
	origin := name
	if isTemp(d.Kind) {
		origin = "" // the name as written is local to this session; others see the global rendering
	}
	m := &router.Message{
		Dest:            d,
		Body:            h.body,
		QoS:             h.qos,
		Persistent:      h.persistent,
		Retain:          h.retain,
		Expires:         h.expires,
		Priority:        h.priority,
		Group:           h.group,
		ContentType:     f.Header.Get(frame.ContentType),
		Headers:         h.hdrs,
		ReplyTo:         h.replyTo,
		CorrelationData: h.corr,
		Origin:          origin,
		OriginGram:      s.g,
		Publisher:       s.c,
		SenderID:        s.clientID,
	}
	if h.receipt {
		if tr := s.tracker(); tr != nil {
			m.Tracker = tr // the receipt waits for the message's writes (receipts.go)
		} else if h.retain && s.rt.ConfirmsRetained() {
			// A memory host in a cluster: the receipt waits for the retained change's replication.
			if s.frameTr == nil {
				s.frameTr = &virtualhost.Tracker{}
			}
			m.Tracker = s.frameTr
		}
	}
	return m
}

// publish routes m. A full queue whose policy is block (the default) blocks this producer (DESIGN.md §5):
// the reader goroutine stops reading its socket, so TCP pushes back on the client, and waits for room
// (router.WaitRoom) for up to Handler.QueueFullWait before the SEND fails. Under drop_head and drop_tail
// the router makes room or drops the message itself, and the SEND succeeds.
func (s *session) publish(m *router.Message) error {
	res := s.rt.Publish(m)
	if res.Pressure != nil {
		s.c.HoldFor(res.Pressure) // a full durable subscription with a consumer draining it
	}
	if !errors.Is(res.Err, router.ErrQueueFull) || s.h.QueueFullWait <= 0 {
		return res.Err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.h.QueueFullWait)
	defer cancel()
	go func() {
		select {
		case <-s.c.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return protocol.RetryFull(ctx, s.rt, m, res).Err
}

// appHeaders collects the SEND headers that travel with the message: everything the broker does not
// interpret, plus the configured stamps. reply-to and correlation-id are left out when the message carries
// them as its ReplyTo and CorrelationData (replyTo, corr), so no subscriber gets them twice.
func (s *session) appHeaders(f *frame.Frame, replyTo, corr bool) []router.Header {
	var hdrs []router.Header
	for i := 0; i < f.Header.Len(); i++ {
		k, v := f.Header.GetAt(i)
		// The stamp headers are the broker's word: a client's own value would forge them.
		if reservedHeader(k) || k == "retain" || k == s.cfg.AddUserHeader || k == s.cfg.AddTimestampHeader ||
			k == s.cfg.AddRedeliveriesHeader || replyTo && k == "reply-to" || corr && k == "correlation-id" {
			continue
		}
		hdrs = append(hdrs, router.Header{Name: k, Value: v})
	}
	if n := s.cfg.AddUserHeader; n != "" {
		hdrs = append(hdrs, router.Header{Name: n, Value: s.principal.User})
	}
	if n := s.cfg.AddTimestampHeader; n != "" {
		hdrs = append(hdrs, router.Header{Name: n, Value: strconv.FormatInt(time.Now().UnixMilli(), 10)})
	}
	return hdrs
}

// reservedHeader reports headers the broker sets itself on MESSAGE frames or interprets on SEND
// (protocol.ReservedHeader).
func reservedHeader(k string) bool { return protocol.ReservedHeader(k) }
