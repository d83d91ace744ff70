package main

import (
	"fmt"
	"math"
	"strconv"
)

// runKind says which mode a scenario runs.
type runKind int

const (
	kindBench   runKind = iota // fanin, fanout, pairs, mqtt2stomp
	kindIdle                   // idle with -pid
	kindConnect                // connect
)

// scenario is one lyre-bench run made against every broker that can take it; each of its metrics is a row.
type scenario struct {
	id, name string
	kind     runKind
	args     []string // lyre-bench flags besides addresses, credentials and -duration
	mqtt     bool     // uses an MQTT address
	stomp    bool     // uses a STOMP address: -stomp-peer brokers take it too
	tls      bool     // MQTT over TLS
	auth     bool     // logs in as benchUser
	fresh    bool     // the broker is started afresh before each run
	offered  float64  // msg/s offered in all (-rate × publishers); 0 = as fast as the broker takes them
	metrics  []metric
}

// metric is a table row: one figure of a scenario's runs.
type metric struct {
	label  string // the row's name
	value  func(o *outcome) float64
	format func(float64) string
	note   func(runs []outcome) string // appended to the median, e.g. the messages lost
	goal   string                      // the target, if it names one
	// met says whether Lyre's runs reach the goal; medians are every column's, Lyre's first (NaN where a
	// broker did not run).
	met func(medians []float64, runs []outcome) bool
	// peersFrom, when set, is the first column of the brokers the goal compares with: with none of
	// them run, the goal is not judged (rather than failed).
	peersFrom int
}

// atLeastTimes is a goal of k times every other broker's figure (that ran).
func atLeastTimes(k float64, from int) func(m []float64, _ []outcome) bool {
	return func(m []float64, _ []outcome) bool {
		ok := false
		for _, v := range m[from:] {
			if math.IsNaN(v) {
				continue
			}
			if m[0] < k*v {
				return false
			}
			ok = true
		}
		return ok
	}
}

// atMostTimes is a goal of at most k times mosquitto's figure (column 1).
func atMostTimes(k float64) func(m []float64, _ []outcome) bool {
	return func(m []float64, _ []outcome) bool { return len(m) > 1 && !math.IsNaN(m[1]) && m[0] <= k*m[1] }
}

// outcome is what compare keeps of one run.
type outcome struct {
	Err            string  // why the run failed; "" when it did not
	Rate           float64 // msg/s received, or connects/s
	Lost           uint64
	P50, P99, P999 float64 // latency, µs
	KiBPerConn     float64
	Interrupted    bool
}

func rateOf(o *outcome) float64 { return o.Rate }

// totalLost adds up the messages lost in runs.
func totalLost(runs []outcome) (lost uint64) {
	for _, o := range runs {
		lost += o.Lost
	}
	return lost
}

// lostNote gives the messages lost in all runs together, as loss is rare enough to count rather than median.
func lostNote(runs []outcome) string { return fmt.Sprintf(", %d lost", totalLost(runs)) }

func p99Note(runs []outcome) string {
	p := make([]float64, len(runs))
	for i := range runs {
		p[i] = runs[i].P99
	}
	return ", p99 " + fmtUs(median(p))
}

// scenarios returns compare's scenarios, in the table's order.
func (cc *compareConfig) scenarios() []*scenario {
	rate := func(label string) metric { return metric{label: label, value: rateOf, format: fmtCount} }
	lossless := rate("MQTT QoS 1 fan-in 8→1, msg/s")
	lossless.note, lossless.goal = lostNote, "≥ 2× mosquitto, 0 lost"
	twice := atLeastTimes(2, 1)
	lossless.met = func(m []float64, runs []outcome) bool { return twice(m, runs) && totalLost(runs) == 0 }
	qos2 := rate("MQTT QoS 2 fan-in 8→1, msg/s")
	qos2.goal, qos2.met = "≥ 2× mosquitto", twice
	stompRate := rate("STOMP fan-in 8→1 without receipts, msg/s")
	stompRate.note, stompRate.goal = lostNote, "≥ 120k, 0 lost"
	stompRate.met = func(m []float64, runs []outcome) bool { return m[0] >= 120e3 && totalLost(runs) == 0 }
	toStomp := rate("MQTT QoS 1 → STOMP client-ack, msg/s")
	toStomp.goal, toStomp.met, toStomp.peersFrom = "≥ 10× each STOMP peer", atLeastTimes(10, 2), 2
	queue := rate("STOMP queue 4→4, client-individual acks, msg/s")
	queue.note = lostNote
	latency := func(offered float64) *scenario {
		k := strconv.Itoa(int(offered / 1000))
		at := " at " + k + "k msg/s offered, "
		pct := func(name string, f func(o *outcome) float64) metric {
			m := metric{label: "MQTT QoS 1 fan-in 8→1" + at + name + " latency", value: f, format: fmtUs}
			if offered == 80e3 && name != "p50" {
				m.goal, m.met = "≤ ½ mosquitto", atMostTimes(0.5)
			}
			return m
		}
		return &scenario{id: "qos1-" + k + "k", kind: kindBench, mqtt: true, offered: offered,
			name: "MQTT QoS 1 fan-in 8→1 at " + k + "k msg/s",
			args: []string{"-mode", "fanin", "-qos", "1", "-rate", strconv.FormatFloat(offered/8, 'f', -1, 64)},
			metrics: []metric{
				pct("p50", func(o *outcome) float64 { return o.P50 }),
				pct("p99", func(o *outcome) float64 { return o.P99 }),
				pct("p99.9", func(o *outcome) float64 { return o.P999 }),
			}}
	}
	connect := func(id, name string, tls, auth bool) *scenario {
		m := rate(name + ", connects/s")
		m.note = p99Note
		return &scenario{id: id, name: name, kind: kindConnect, mqtt: true, tls: tls, auth: auth,
			args: []string{"-mode", "connect", "-conns", strconv.Itoa(cc.conns)}, metrics: []metric{m}}
	}
	idleRSS := metric{label: fmt.Sprintf("Idle MQTT connection (%d open), broker RSS per connection", cc.idleConns),
		value: func(o *outcome) float64 { return o.KiBPerConn }, format: fmtKiB,
		goal: "≤ 4 KiB", met: func(m []float64, _ []outcome) bool { return m[0] <= 4 }}
	idleSTOMP := idleRSS
	idleSTOMP.label = fmt.Sprintf("Idle STOMP connection (%d open), broker RSS per connection", cc.idleConns)
	idleTLS := idleRSS
	idleTLS.label = fmt.Sprintf("Idle MQTT connection over TLS (%d open), broker RSS per connection", cc.idleConns)
	idleTLS.goal, idleTLS.met = "reported", nil
	return []*scenario{
		{id: "qos0-fanin", name: "MQTT QoS 0 fan-in 8→1", kind: kindBench, mqtt: true,
			args: []string{"-mode", "fanin", "-qos", "0"}, metrics: []metric{rate("MQTT QoS 0 fan-in 8→1, msg/s")}},
		{id: "qos1-fanin", name: "MQTT QoS 1 fan-in 8→1", kind: kindBench, mqtt: true,
			args: []string{"-mode", "fanin", "-qos", "1"}, metrics: []metric{lossless}},
		{id: "qos2-fanin", name: "MQTT QoS 2 fan-in 8→1", kind: kindBench, mqtt: true,
			args: []string{"-mode", "fanin", "-qos", "2"}, metrics: []metric{qos2}},
		{id: "qos0-fanout", name: "MQTT QoS 0 fan-out 1→100", kind: kindBench, mqtt: true,
			args: []string{"-mode", "fanout", "-qos", "0", "-subs", "100"}, metrics: []metric{rate("MQTT QoS 0 fan-out 1→100, deliveries/s")}},
		{id: "qos1-pairs", name: "MQTT QoS 1, 50 pairs", kind: kindBench, mqtt: true,
			args: []string{"-mode", "pairs", "-qos", "1", "-pubs", "50"}, metrics: []metric{rate("MQTT QoS 1, 50 pairs, msg/s")}},
		latency(80e3),
		latency(120e3),
		{id: "stomp-fanin", name: "STOMP fan-in 8→1 without receipts", kind: kindBench, stomp: true,
			args: []string{"-proto", "stomp", "-mode", "fanin"}, metrics: []metric{stompRate}},
		{id: "mqtt2stomp", name: "MQTT QoS 1 → STOMP client-ack", kind: kindBench, mqtt: true, stomp: true,
			args: []string{"-mode", "mqtt2stomp", "-qos", "1", "-ack", "client"}, metrics: []metric{toStomp}},
		{id: "stomp-queue", name: "STOMP queue 4→4", kind: kindBench, stomp: true,
			args:    []string{"-proto", "stomp", "-mode", "queue", "-prefetch", "100", "-receipt-every", "100", "-inflight", "4"},
			metrics: []metric{queue}},
		{id: "idle", name: "Idle MQTT connections", kind: kindIdle, mqtt: true, fresh: true,
			args: []string{"-mode", "idle", "-conns", strconv.Itoa(cc.idleConns)}, metrics: []metric{idleRSS}},
		{id: "idle-stomp", name: "Idle STOMP connections", kind: kindIdle, stomp: true, fresh: true,
			args: []string{"-proto", "stomp", "-mode", "idle", "-conns", strconv.Itoa(cc.idleConns)}, metrics: []metric{idleSTOMP}},
		{id: "idle-tls", name: "Idle MQTT connections over TLS", kind: kindIdle, mqtt: true, tls: true, fresh: true,
			args: []string{"-mode", "idle", "-conns", strconv.Itoa(cc.idleConns)}, metrics: []metric{idleTLS}},
		connect("connect", "Connection rate, plain", false, false),
		connect("connect-tls", "Connection rate, TLS", true, false),
		connect("connect-auth", "Connection rate with a password", false, true),
	}
}

// selected returns the scenarios -only picks.
func (cc *compareConfig) selected() []*scenario {
	var out []*scenario
	for _, sc := range cc.scenarios() {
		if cc.only == nil || cc.only.MatchString(sc.id) || cc.only.MatchString(sc.name) {
			out = append(out, sc)
		}
	}
	return out
}

// target is a column of the table: a broker compare runs, or a STOMP peer already running.
type target struct {
	name    string
	version string
	proc    *brokerProc // nil for a peer, or a broker that is not installed
	addrs   brokerAddrs
	auth    bool
	peer    *peerSpec
	missing string // why the column is empty
}

// supports reports whether tg can run sc.
func (tg *target) supports(sc *scenario) bool {
	switch {
	case tg.missing != "":
		return false
	case tg.peer != nil && !sc.stomp:
		return false // peers are there for the STOMP rows
	case sc.stomp && tg.addrs.stomp == "", sc.mqtt && tg.addrs.mqtt == "", sc.tls && tg.addrs.tls == "":
		return false
	case sc.auth && !tg.auth, sc.fresh && tg.proc == nil:
		return false
	}
	return true
}

// benchArgs returns the lyre-bench flags of sc's run against tg.
func (cc *compareConfig) benchArgs(sc *scenario, tg *target, certFile string) []string {
	a := []string{"-q", "-size", strconv.Itoa(cc.size)}
	switch {
	case sc.tls:
		a = append(a, "-transport", "tls", "-cafile", certFile, "-addr", tg.addrs.tls)
	case sc.mqtt && sc.stomp:
		a = append(a, "-addr", tg.addrs.mqtt, "-stomp-addr", tg.addrs.stomp)
	case sc.stomp:
		a = append(a, "-addr", tg.addrs.stomp)
	default:
		a = append(a, "-addr", tg.addrs.mqtt)
	}
	if p := tg.peer; p != nil {
		a = append(a, "-vhost", p.vhost)
		if p.login != "" {
			a = append(a, "-login", p.login, "-passcode", p.passcode)
		}
	}
	if sc.auth {
		a = append(a, "-user", benchUser, "-pass", benchPassword)
	}
	switch sc.kind {
	case kindIdle:
		// -duration is the hold, which ends right after the RSS sample taken -settle after the last CONNACK.
		a = append(a, "-pid", strconv.Itoa(tg.proc.pid()), "-settle", cc.settle.String(), "-duration", cc.settle.String())
	default:
		a = append(a, "-duration", cc.duration.String())
	}
	return append(a, sc.args...)
}
