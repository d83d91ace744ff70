package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// result is the outcome of a fanin, fanout or pairs run.
type result struct {
	Proto          string         `json:"proto"`
	Transport      string         `json:"transport"`
	Mode           string         `json:"mode"`
	Addr           string         `json:"addr,omitempty"`      // "" with -pub-addr or -sub-addr
	PubAddrs       []string       `json:"pub_addrs,omitempty"` // -pub-addr
	SubAddrs       []string       `json:"sub_addrs,omitempty"` // -sub-addr
	QoS            int            `json:"qos"`
	GrantedQoS     int            `json:"granted_qos"`
	Pubs           int            `json:"pubs"`
	Subs           int            `json:"subs"`
	Size           int            `json:"size"`
	Ack            string         `json:"ack,omitempty"`
	Prefetch       int            `json:"prefetch,omitempty"`
	Persistent     bool           `json:"persistent,omitempty"`
	KeepSession    bool           `json:"keep_session,omitempty"`
	ReceiptEvery   int            `json:"receipt_every,omitempty"`
	Rate           float64        `json:"rate_per_pub"`
	PublishSeconds float64        `json:"publish_seconds"`
	Sent           uint64         `json:"sent"`
	Acked          uint64         `json:"acked"`
	SendRate       float64        `json:"sent_per_sec"`
	Expected       uint64         `json:"expected"`
	Received       uint64         `json:"received"`
	Lost           uint64         `json:"lost"`
	OutOfOrder     uint64         `json:"out_of_order"`
	Foreign        uint64         `json:"foreign"`
	WindowSeconds  float64        `json:"window_seconds"`
	RecvRate       float64        `json:"received_per_sec"`
	RecvMBps       float64        `json:"received_mb_per_sec"`
	Latency        latencySummary `json:"latency"`
	Interrupted    bool           `json:"interrupted"`
	Errors         []string       `json:"errors,omitempty"`
}

// failed reports whether the run should exit non-zero: errors, or any loss at QoS >= 1.
func (r *result) failed() bool { return len(r.Errors) > 0 || (r.reliable() && r.Lost > 0) }

// reliable says whether the run's messages must all arrive: MQTT at QoS >= 1 to MQTT subscribers, and STOMP
// queues. Topic subscribers may lose messages when they fall behind (brokers drop rather than block).
func (r *result) reliable() bool {
	return r.QoS > 0 && r.Mode != "mqtt2stomp" || r.Mode == "queue"
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "%s %s  ", protoLabel(r.Proto, r.Transport), r.Mode)
	switch {
	case r.Mode == "mqtt2stomp":
		fmt.Fprintf(w, "qos %d  ", r.QoS) // of the publishers; STOMP subscribers have none
	case r.Proto != "stomp":
		fmt.Fprintf(w, "qos %d (granted %d)  ", r.QoS, r.GrantedQoS)
	}
	if r.Ack != "" {
		fmt.Fprintf(w, "ack %s  ", r.Ack)
	}
	if r.Prefetch > 0 {
		fmt.Fprintf(w, "prefetch %d  ", r.Prefetch)
	}
	if r.Persistent {
		fmt.Fprint(w, "persistent  ")
	}
	if r.KeepSession {
		fmt.Fprint(w, "keep-session  ")
	}
	if r.ReceiptEvery > 0 {
		fmt.Fprintf(w, "receipt every %d  ", r.ReceiptEvery)
	}
	if r.PubAddrs != nil {
		fmt.Fprintf(w, "pubs %d on %s  subs %d on %s  size %d B\n", r.Pubs, strings.Join(r.PubAddrs, ","), r.Subs,
			strings.Join(r.SubAddrs, ","), r.Size)
	} else {
		fmt.Fprintf(w, "pubs %d  subs %d  size %d B  addr %s\n", r.Pubs, r.Subs, r.Size, r.Addr)
	}
	if r.Interrupted {
		fmt.Fprintln(w, "  INTERRUPTED: partial results")
	}
	fmt.Fprintf(w, "  sent       %d msgs in %.2fs (%.0f msg/s)", r.Sent, r.PublishSeconds, r.SendRate)
	if r.QoS > 0 || r.ReceiptEvery > 0 {
		fmt.Fprintf(w, ", %d acknowledged", r.Acked)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  received   %d of %d expected, lost %d, out of order %d", r.Received, r.Expected, r.Lost, r.OutOfOrder)
	if r.Foreign > 0 {
		fmt.Fprintf(w, ", foreign %d", r.Foreign)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  throughput %.0f msg/s received, %.2f MB/s payload (steady window %.2fs)\n",
		r.RecvRate, r.RecvMBps, r.WindowSeconds)
	l := r.Latency
	fmt.Fprintf(w, "  latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s\n",
		fmtUs(l.P50Us), fmtUs(l.P90Us), fmtUs(l.P99Us), fmtUs(l.P999Us), fmtUs(l.MaxUs), fmtUs(l.MeanUs))
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error      %s\n", e)
	}
}

func fmtUs(us float64) string {
	switch {
	case us >= 1e6:
		return strconv.FormatFloat(us/1e6, 'f', 2, 64) + "s"
	case us >= 1e3:
		return strconv.FormatFloat(us/1e3, 'f', 2, 64) + "ms"
	default:
		return strconv.FormatFloat(us, 'f', 0, 64) + "µs"
	}
}

// result gathers the outcome of a run whose clients have all stopped; sent and expected were counted when
// publishing ended.
func (b *benchRun) result(sent, expected uint64) *result {
	c := b.c
	r := &result{Proto: c.proto, Transport: c.transport, Mode: c.mode, Addr: c.addr, QoS: c.qos, GrantedQoS: 2, Pubs: c.pubs, Subs: c.subs,
		Size: c.size, Rate: c.rate, Sent: sent, Expected: expected, Interrupted: b.interrupted}
	if c.spread() {
		r.Addr, r.PubAddrs, r.SubAddrs = "", c.pubAddrs, c.subAddrs
	}
	if c.proto == "stomp" || c.mode == "mqtt2stomp" {
		r.Ack, r.Prefetch = c.ack, c.prefetch
	}
	r.KeepSession = c.keepSession && c.proto == "mqtt"
	if c.proto == "stomp" {
		r.QoS, r.GrantedQoS, r.Persistent, r.ReceiptEvery = 0, 0, c.persistent, c.receiptEvery
	}
	r.PublishSeconds = b.pubEnd.Sub(b.pubStart).Seconds()
	if r.PublishSeconds > 0 {
		r.SendRate = float64(sent) / r.PublishSeconds
	}
	b.addPublisherCounts(r)
	bytes, last := b.addSubscriberCounts(r)
	r.setLost()
	r.setReceiveRate(b.win, b.pubStart, last, bytes)
	if r.reliable() && r.Lost > 0 && !r.Interrupted {
		b.errs.add(fmt.Errorf("lost %d messages", r.Lost))
	}
	if r.GrantedQoS < r.QoS {
		b.log.Warn("broker granted a lower QoS", zap.Int("requested", r.QoS), zap.Int("granted", r.GrantedQoS))
	}
	r.Errors = b.errs.list()
	return r
}

// addPublisherCounts adds up the publishers' acknowledgements. Acknowledgements for nothing in flight are an
// error.
func (b *benchRun) addPublisherCounts(r *result) {
	var unexpected uint64
	for i := range b.pubStat {
		r.Acked += b.pubStat[i].acked.Load()
		unexpected += b.pubStat[i].unexpected.Load()
	}
	if unexpected > 0 {
		b.errs.add(fmt.Errorf("%d acknowledgements for packets not in flight", unexpected))
	}
}

// addSubscriberCounts adds up the subscribers' counters and latencies. It returns the payload bytes they
// received and the time of the latest delivery, in Unix nanoseconds.
func (b *benchRun) addSubscriberCounts(r *result) (bytes uint64, last int64) {
	var lat hist
	for _, s := range b.subStat {
		last = max(last, s.last)
		r.Received += s.received.Load()
		r.OutOfOrder += s.outOfOrder
		r.Foreign += s.foreign
		r.GrantedQoS = min(r.GrantedQoS, s.granted)
		bytes += s.bytes
		lat.merge(&s.lat)
	}
	r.Latency = lat.summary()
	return bytes, last
}

// setLost counts the expected messages that did not arrive.
func (r *result) setLost() {
	// A sequence number lower than one already seen is a duplicate (redelivery) for a topic subscriber.
	// A queue consumer may also see a legitimate reordering (ActiveMQ re-dispatches this way with
	// cumulative client acks) while each message still arrives exactly once, so a queue's loss is counted.
	inOrder := r.Received - r.OutOfOrder
	if r.Mode == "queue" {
		inOrder = r.Received
	}
	if inOrder < r.Expected {
		r.Lost = r.Expected - inOrder
	}
}

// setReceiveRate sets the received rate: over the steady window, or for a run too short to have one, from
// the first publish (pubStart) to the latest delivery (last, Unix nanoseconds). bytes is the payload received.
func (r *result) setReceiveRate(win steadyWindow, pubStart time.Time, last int64, bytes uint64) {
	if w := win.end.Sub(win.start); w >= 500*time.Millisecond {
		r.WindowSeconds = w.Seconds()
		r.RecvRate = float64(win.recv1-win.recv0) / r.WindowSeconds
	} else if last > pubStart.UnixNano() {
		// Too short for a steady window (a small -count): use first publish to last delivery.
		r.WindowSeconds = time.Duration(last - pubStart.UnixNano()).Seconds()
		r.RecvRate = float64(r.Received) / r.WindowSeconds
	}
	if r.Received > 0 {
		r.RecvMBps = r.RecvRate * float64(bytes) / float64(r.Received) / 1e6
	}
}

// protoLabel is proto, followed by the transport when that is not TCP: "mqtt/ws".
func protoLabel(proto, transport string) string {
	if transport == "" || transport == "tcp" {
		return proto
	}
	return proto + "/" + transport
}
