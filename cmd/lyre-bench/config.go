package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Connect loops: the default and the most -mode connect runs.
const (
	defaultConnectLoops = 16
	maxConnectLoops     = 10000
)

// config is the parsed command line.
type config struct {
	stalled int
	proto   string
	mode    string
	addr    string
	// pubAddrs and subAddrs spread publisher and subscriber i over the brokers at [i % len]: the nodes
	// of a cluster (-pub-addr, -sub-addr); default -addr alone.
	pubAddrs  []string
	subAddrs  []string
	pubAddr   string // -pub-addr as given
	subAddr   string // -sub-addr as given
	subWait   time.Duration
	qos       int
	pubs      int
	subs      int
	size      int
	duration  time.Duration
	count     uint64
	rate      float64
	topic     string
	inflight  int
	conns     int
	pid       int
	user      string
	pass      string
	keepAlive time.Duration
	v5        bool // MQTT 5.0 instead of 3.1.1
	timeout   time.Duration
	drain     time.Duration
	warmup    time.Duration
	settle    time.Duration
	coalesce  time.Duration
	cpuProf   string
	json      bool
	// STOMP
	stompAddr    string
	login        string
	passcode     string
	vhost        string
	destPrefix   string
	ack          string
	ackEvery     int
	prefetch     int
	persistent   bool
	keepSession  bool // MQTT subscribers: clean session off
	freshIDs     bool // connect: a new client id per attempt
	receiptEvery int
	// WebSocket
	transport string      // tcp, tls, ws or wss
	wsPath    string      // "" = /mqtt or /stomp
	insecure  bool        // tls, wss: skip certificate verification
	caFile    string      // tls, wss: PEM certificates to verify the broker with
	tlsConfig *tls.Config // tls, wss, from insecure and caFile
	// soak
	storms     int
	hold       time.Duration
	pause      time.Duration
	recover    time.Duration
	metricsURL string
	// producersOnly: an explicit -subs 0 in queue mode
	producersOnly bool
	quiet         bool
	verbose       bool
}

func parseFlags(args []string, out io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("lyre-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, `usage: lyre-bench [flags]          one run against a broker (see -mode)
       lyre-bench compare [flags]  Lyre and mosquitto side by side (lyre-bench compare -h)
`)
		fs.PrintDefaults()
	}
	c.define(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.producersOnly = set["subs"] && c.subs == 0 && c.mode == "queue"
	if c.mode == "soak" {
		c.soakDefaults(set)
	}
	if c.mode == "connect" && !set["conns"] {
		c.conns = defaultConnectLoops
	}
	if c.count > 0 && !set["duration"] {
		c.duration = 0
	}
	err := c.normalize()
	if err == nil && (c.rate > 0 || c.qos > 0 || c.ack != ackAuto) && !set["coalesce"] {
		// A paced run measures latency: add none. At QoS >= 1 or with STOMP client acks the broker's
		// window of unacknowledged deliveries (mosquitto: 20) would stall while a subscriber waits to read.
		c.coalesce = 0
	}
	return c, err
}

// define defines the command line flags on fs, each set into its field of c.
func (c *config) define(fs *flag.FlagSet) {
	fs.StringVar(&c.proto, "proto", "mqtt", "protocol: mqtt or stomp (-mode mqtt2stomp uses both)")
	fs.StringVar(&c.mode, "mode", "fanin", "fanin | fanout | pairs | queue (STOMP) | mqtt2stomp | idle | soak | connect")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:1883", "broker address host:port")
	fs.StringVar(&c.pubAddr, "pub-addr", "", "fanin, fanout, pairs: comma-separated broker addresses the publishers connect to, publisher i to the (i mod n)th: the nodes of a cluster (default: -addr)")
	fs.StringVar(&c.subAddr, "sub-addr", "", "fanin, fanout, pairs: comma-separated broker addresses the subscribers connect to, subscriber i to the (i mod n)th (default: -addr)")
	fs.DurationVar(&c.subWait, "sub-wait", 0, "wait this long after the subscriptions are in place before publishing: for a cluster to carry subscriptions made on one node to the others")
	fs.IntVar(&c.qos, "qos", 0, "QoS of publications and subscriptions: 0, 1 or 2")
	fs.IntVar(&c.pubs, "pubs", 0, "publishers (0 = mode default: fanin 8, fanout 1, pairs 8)")
	fs.IntVar(&c.subs, "subs", 0, "subscribers (0 = mode default: fanin 1, fanout 8, pairs = -pubs, queue 4; an explicit -subs 0 in queue mode: producers only)")
	fs.IntVar(&c.size, "size", 64, "payload bytes, at least 16 (send time + sequence)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "publishing time (idle: how long to hold the connections)")
	fs.Uint64Var(&c.count, "count", 0, "messages per publisher; when set without -duration, no time limit")
	fs.Float64Var(&c.rate, "rate", 0, "messages per second per publisher (0 = as fast as possible)")
	fs.StringVar(&c.topic, "topic", "lyre-bench", "topic prefix")
	fs.IntVar(&c.inflight, "inflight", 64, "MQTT QoS 1/2: unacknowledged messages per publisher; STOMP: outstanding receipts per producer")
	fs.IntVar(&c.stalled, "stalled", 0, "MQTT: extra subscribers to the same topic(s) that never read after SUBACK (a slow-subscriber run)")
	fs.IntVar(&c.conns, "conns", 1000, "idle: connections to open; soak: connections per storm (default 10000 there); connect: concurrent connect loops (default 16 there)")
	fs.BoolVar(&c.freshIDs, "fresh-ids", true, "connect: a new client id for every attempt (false: one per loop, reused)")
	fs.IntVar(&c.storms, "storms", 3, "soak: connection storms")
	fs.DurationVar(&c.hold, "hold", 10*time.Second, "soak: how long a storm's connections stay open")
	fs.DurationVar(&c.pause, "pause", 10*time.Second, "soak: quiet time after each storm")
	fs.DurationVar(&c.recover, "recover", 3*time.Minute, "soak: longest wait after the storms for the broker to return to its baseline (its RSS comes back after a GC or two)")
	fs.StringVar(&c.metricsURL, "metrics", "", "soak: the broker's Prometheus URL, for goroutines and connections (http://user:pass@host:port/metrics)")
	fs.IntVar(&c.pid, "pid", 0, "idle: broker process whose VmRSS to sample before and after connecting")
	fs.BoolVar(&c.v5, "v5", false, "MQTT 5.0 instead of 3.1.1 (CONNECT level 5, empty property lists)")
	fs.StringVar(&c.user, "user", "", "user name for CONNECT")
	fs.StringVar(&c.pass, "pass", "", "password for CONNECT (needs -user)")
	fs.DurationVar(&c.keepAlive, "keepalive", 30*time.Second, "keep-alive announced in CONNECT; pings every half of it")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "dial + CONNECT/CONNACK + SUBSCRIBE/SUBACK timeout")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "after publishing: longest wait for acknowledgements and deliveries")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "start of the steady window after the first publish")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "idle: wait after the last CONNACK before sampling RSS")
	fs.DurationVar(&c.coalesce, "coalesce", time.Millisecond, "QoS 0 subscribers without -rate: pause this long after small back-to-back reads, to read in batches (0 = off)")
	fs.StringVar(&c.stompAddr, "stomp-addr", "", "mqtt2stomp: the STOMP subscribers' address, when the broker has separate ports (default: -addr)")
	fs.StringVar(&c.login, "login", "", "STOMP login (default: -user)")
	fs.StringVar(&c.passcode, "passcode", "", "STOMP passcode (default: -pass)")
	fs.StringVar(&c.vhost, "vhost", "", "STOMP CONNECT host header, the virtual host (default: the host of -addr; RabbitMQ wants /)")
	fs.StringVar(&c.destPrefix, "dest-prefix", "", "STOMP destination prefix (default: /queue/ in -mode queue, else /topic/); topic levels are joined with '.'")
	fs.StringVar(&c.ack, "ack", "", "STOMP subscribers' ack mode: auto, client or client-individual (default: client-individual in -mode queue, else auto)")
	fs.IntVar(&c.ackEvery, "ack-every", 100, "STOMP -ack client: one cumulative ACK per this many messages")
	fs.IntVar(&c.prefetch, "prefetch", 0, "STOMP consumer window, sent as credit, prefetch-count and activemq.prefetchSize (0 = broker default)")
	fs.BoolVar(&c.persistent, "persistent", false, "STOMP SEND with persistent:true")
	fs.BoolVar(&c.keepSession, "keep-session", false, "MQTT subscribers connect with clean session off: the broker keeps their QoS >= 1 messages in their session rather than dropping them when they fall behind (the sessions are discarded at the end)")
	fs.IntVar(&c.receiptEvery, "receipt-every", 0, "STOMP: ask a receipt every this many SENDs, with -inflight receipts outstanding at most (0 = none)")
	fs.StringVar(&c.transport, "transport", "tcp", "tcp, tls (TCP with TLS), or ws / wss: every connection over WebSocket (RFC 6455), without or with TLS")
	fs.StringVar(&c.wsPath, "ws-path", "", "ws, wss: request path (default: /mqtt for MQTT, /stomp for STOMP connections)")
	fs.BoolVar(&c.insecure, "insecure", false, "tls, wss: do not verify the broker's certificate")
	fs.StringVar(&c.caFile, "cafile", "", "tls, wss: PEM file of the certificates to verify the broker's with (default: the system's)")
	fs.StringVar(&c.cpuProf, "cpuprofile", "", "write lyre-bench's own CPU profile to this file")
	fs.BoolVar(&c.json, "json", false, "print the result as JSON")
	fs.BoolVar(&c.quiet, "q", false, "no per-second progress on stderr")
	fs.BoolVar(&c.verbose, "v", false, "debug logging")
}

// normalize applies the mode defaults and rejects impossible combinations.
func (c *config) normalize() error {
	switch c.proto {
	case "mqtt", "stomp":
	default:
		return badUsage("-proto %q: want mqtt or stomp", c.proto)
	}
	if err := c.normalizeSTOMP(); err != nil {
		return err
	}
	if err := c.normalizeTransport(); err != nil {
		return err
	}
	if err := c.normalizeAddrs(); err != nil {
		return err
	}
	switch c.mode {
	case "fanin", "mqtt2stomp":
		c.pubs, c.subs = orDefault(c.pubs, 8), orDefault(c.subs, 1)
	case "queue":
		c.pubs, c.subs = orDefault(c.pubs, 4), orDefault(c.subs, 4)
		if c.producersOnly {
			c.subs = 0 // measures the producers' side alone, e.g. persistent SENDs; messages stay queued
		}
	case "fanout":
		c.pubs, c.subs = orDefault(c.pubs, 1), orDefault(c.subs, 8)
	case "pairs":
		c.pubs = orDefault(c.pubs, 8)
		if c.subs != 0 && c.subs != c.pubs {
			return badUsage("-mode pairs needs -subs equal to -pubs (or unset)")
		}
		c.subs = c.pubs
	case "soak":
		return c.checkSoak()
	case "connect":
		switch {
		case c.conns < 1 || c.conns > maxConnectLoops:
			return badUsage("-conns %d: want 1 to %d connect loops", c.conns, maxConnectLoops)
		case c.duration <= 0:
			return badUsage("-mode connect runs for -duration")
		}
		return nil
	case "idle":
		if c.conns < 1 {
			return badUsage("-conns must be at least 1")
		}
		if c.pid < 0 {
			return badUsage("-pid must be a process id")
		}
		return nil
	default:
		return badUsage("-mode %q: want fanin, fanout, pairs, queue, mqtt2stomp, idle, soak or connect", c.mode)
	}
	return c.checkRun()
}

// checkRun rejects out-of-range values for the modes that publish.
func (c *config) checkRun() error {
	switch {
	case c.qos < 0 || c.qos > 2:
		return badUsage("-qos %d: want 0, 1 or 2", c.qos)
	case c.pubs < 1 || c.pubs >= maxPubs:
		return badUsage("-pubs %d out of range", c.pubs)
	case c.subs < 1 && !c.producersOnly:
		return badUsage("-subs %d out of range", c.subs)
	case c.size < payloadHeader || c.size > mqttMaxRemaining-len(c.topic)-64:
		return badUsage("-size %d: want %d to %d bytes", c.size, payloadHeader, mqttMaxRemaining-len(c.topic)-64)
	case c.inflight < 1 || c.inflight > 65535:
		return badUsage("-inflight %d: want 1 to 65535", c.inflight)
	case c.rate < 0:
		return badUsage("-rate must not be negative")
	case c.count == 0 && c.duration <= 0:
		return badUsage("set -duration or -count")
	case c.count > seqMask:
		return badUsage("-count over %d", uint64(seqMask))
	}
	return nil
}

// soakDefaults gives the flags a soak run's defaults where the command line left them: 10,000 connections
// per storm, QoS 1 traffic of 4 publishers at 200 msg/s each to 4 subscribers, a 5 s warm-up.
func (c *config) soakDefaults(set map[string]bool) {
	defaults := []struct {
		flag string
		set  func()
	}{
		{"conns", func() { c.conns = 10000 }},
		{"qos", func() { c.qos = 1 }},
		{"rate", func() { c.rate = 200 }},
		{"pubs", func() { c.pubs = 4 }},
		{"subs", func() { c.subs = 4 }},
		{"warmup", func() { c.warmup = 5 * time.Second }},
	}
	for _, d := range defaults {
		if !set[d.flag] {
			d.set()
		}
	}
}

// checkSoak rejects a soak run the clients cannot do.
func (c *config) checkSoak() error {
	switch {
	case c.proto != "mqtt" || c.transport != "tcp":
		return badUsage("-mode soak runs its traffic over MQTT on TCP (its storms use every protocol): leave -proto and -transport")
	case c.qos < 1:
		return badUsage("-mode soak counts every message: -qos 1 or 2")
	case c.conns < 2 || c.storms < 1 || c.hold <= 0 || c.pause < 0 || c.recover < 0:
		return badUsage("-mode soak needs -conns of at least 2, -storms of at least 1 and a -hold")
	case c.pid < 0:
		return badUsage("-pid must be a process id")
	}
	return c.checkRun()
}

// normalizeAddrs splits -pub-addr and -sub-addr, which default to -addr.
func (c *config) normalizeAddrs() error {
	split := func(flag, s string) ([]string, error) {
		if s == "" {
			return []string{c.addr}, nil
		}
		switch c.mode {
		case "fanin", "fanout", "pairs":
		default:
			return nil, badUsage("-%s is for -mode fanin, fanout and pairs", flag)
		}
		var out []string
		for _, a := range strings.Split(s, ",") {
			a = strings.TrimSpace(a)
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, badUsage("-%s %q: want host:port[,host:port...]", flag, s)
			}
			out = append(out, a)
		}
		return out, nil
	}
	var err error
	if c.pubAddrs, err = split("pub-addr", c.pubAddr); err != nil {
		return err
	}
	if c.subAddrs, err = split("sub-addr", c.subAddr); err != nil {
		return err
	}
	if c.subWait < 0 {
		return badUsage("-sub-wait must not be negative")
	}
	return nil
}

// spread reports whether publishers or subscribers go to other brokers than -addr.
func (c *config) spread() bool {
	return c.pubAddr != "" || c.subAddr != ""
}

// badUsage returns an errUsage error.
func badUsage(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// normalizeSTOMP applies the STOMP flags' defaults and checks them.
func (c *config) normalizeSTOMP() error {
	switch {
	case c.mode == "queue" && c.proto != "stomp":
		return badUsage("-mode queue needs -proto stomp")
	case c.mode == "mqtt2stomp" && c.proto != "mqtt":
		return badUsage("-mode mqtt2stomp publishes with MQTT: leave -proto at mqtt")
	}
	if c.ack == "" {
		c.ack = ackAuto
		if c.mode == "queue" {
			c.ack = ackClientIndividual
		}
	}
	if c.destPrefix == "" {
		c.destPrefix = "/topic/"
		if c.mode == "queue" {
			c.destPrefix = "/queue/"
		}
	}
	if c.login == "" {
		c.login, c.passcode = c.user, orString(c.passcode, c.pass)
	}
	if c.stompAddr == "" || c.mode != "mqtt2stomp" {
		c.stompAddr = c.addr
	}
	if c.vhost == "" {
		if host, _, err := net.SplitHostPort(c.stompAddr); err == nil {
			c.vhost = host
		}
	}
	switch {
	case c.ack != ackAuto && c.ack != ackClient && c.ack != ackClientIndividual:
		return badUsage("-ack %q: want auto, client or client-individual", c.ack)
	case c.ackEvery < 1:
		return badUsage("-ack-every must be at least 1")
	case c.prefetch < 0:
		return badUsage("-prefetch must not be negative")
	case c.receiptEvery < 0:
		return badUsage("-receipt-every must not be negative")
	case c.mode == "mqtt2stomp" && (c.persistent || c.receiptEvery > 0):
		return badUsage("-persistent and -receipt-every are for STOMP producers; mqtt2stomp publishes with MQTT (use -qos)")
	}
	return nil
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// normalizeTransport checks the TLS and WebSocket flags and loads -cafile.
func (c *config) normalizeTransport() error {
	switch c.transport {
	case "tcp":
		if c.wsPath != "" || c.insecure || c.caFile != "" {
			return badUsage("-ws-path, -insecure and -cafile need -transport tls, ws or wss")
		}
		return nil
	case "ws":
		if c.insecure || c.caFile != "" {
			return badUsage("-insecure and -cafile need -transport tls or wss")
		}
	case "tls", "wss":
		if c.transport == "tls" && c.wsPath != "" {
			return badUsage("-ws-path needs -transport ws or wss")
		}
		c.tlsConfig = &tls.Config{InsecureSkipVerify: c.insecure}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return badUsage("-cafile: %v", err)
			}
			c.tlsConfig.RootCAs = x509.NewCertPool()
			if !c.tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
				return badUsage("-cafile %s: no PEM certificate", c.caFile)
			}
		}
	default:
		return badUsage("-transport %q: want tcp, tls, ws or wss", c.transport)
	}
	if c.wsPath != "" && !strings.HasPrefix(c.wsPath, "/") {
		return badUsage("-ws-path %q: want a path starting with /", c.wsPath)
	}
	return nil
}
