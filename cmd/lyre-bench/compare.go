package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// compareConfig is the parsed command line of lyre-bench compare.
type compareConfig struct {
	lyre            string
	mosquitto       string
	mosquittoPasswd string
	duration        time.Duration
	reps            int
	only            *regexp.Regexp
	list            bool
	curve           bool
	curveQoS        int
	curveMax        int // msg/s
	size            int
	conns           int // connect loops
	idleConns       int
	settle          time.Duration // idle rows: wait before sampling the RSS
	peers           []peerSpec
	keep            bool
	quiet           bool
	verbose         bool
}

// peerSpec is a -stomp-peer: a STOMP broker already running, measured in the STOMP rows.
type peerSpec struct {
	name, addr, login, passcode string
	vhost                       string // CONNECT host header; "/" unless vhost= (RabbitMQ's default host is "/")
	mqtt                        string // its MQTT address, for the MQTT → STOMP row; "" = not measured there
}

// parsePeer parses NAME=ADDR[,LOGIN,PASSCODE][,vhost=HOST][,mqtt=ADDR].
func parsePeer(s string) (peerSpec, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return peerSpec{}, badUsage("-stomp-peer %q: want NAME=ADDR[,LOGIN,PASSCODE][,vhost=HOST][,mqtt=ADDR]", s)
	}
	p := peerSpec{name: name, vhost: "/"}
	var plain []string
	for i, f := range strings.Split(rest, ",") {
		switch k, v, kv := strings.Cut(f, "="); {
		case i > 0 && kv && k == "vhost":
			p.vhost = v
		case i > 0 && kv && k == "mqtt":
			p.mqtt = v
		case kv && i > 0:
			return peerSpec{}, badUsage("-stomp-peer %q: unknown option %q", s, k)
		default:
			plain = append(plain, f)
		}
	}
	switch len(plain) {
	case 1:
	case 3:
		p.login, p.passcode = plain[1], plain[2]
	default:
		return peerSpec{}, badUsage("-stomp-peer %q: want NAME=ADDR or NAME=ADDR,LOGIN,PASSCODE", s)
	}
	p.addr = plain[0]
	for _, a := range []string{p.addr, p.mqtt} {
		if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
			return peerSpec{}, badUsage("-stomp-peer %q: %v", s, err)
		}
	}
	return p, nil
}

func parseCompareFlags(args []string, out io.Writer) (*compareConfig, error) {
	cc := &compareConfig{}
	fs := flag.NewFlagSet("lyre-bench compare", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, `usage: lyre-bench compare [flags]
Starts Lyre and mosquitto on free loopback ports, runs every scenario against both in turn and prints a
markdown table of the medians (-curve: latency against offered load instead). See go doc ./cmd/lyre-bench.
`)
		fs.PrintDefaults()
	}
	var only string
	fs.StringVar(&cc.lyre, "lyre", "", "Lyre binary (default: lyre next to lyre-bench, else built from the module around the working directory)")
	fs.StringVar(&cc.mosquitto, "mosquitto", "/usr/sbin/mosquitto", "mosquitto binary; when missing, Lyre runs alone")
	fs.StringVar(&cc.mosquittoPasswd, "mosquitto-passwd", "/usr/bin/mosquitto_passwd", "mosquitto_passwd, for mosquitto's password file")
	fs.DurationVar(&cc.duration, "duration", 5*time.Second, "publishing (connecting) time of each run")
	fs.IntVar(&cc.reps, "reps", 3, "runs of each scenario against each broker, the brokers taking turns; the median is reported")
	fs.StringVar(&only, "only", "", "run only the scenarios whose id or name matches this regular expression (see -list)")
	fs.BoolVar(&cc.list, "list", false, "list the scenarios and exit")
	fs.BoolVar(&cc.curve, "curve", false, "instead of the scenarios: latency against offered load (MQTT fan-in 8→1), 5k msg/s up to saturation")
	fs.IntVar(&cc.curveQoS, "qos", 1, "-curve: QoS of the fan-in")
	fs.IntVar(&cc.curveMax, "curve-max", 1000000, "-curve: the highest offered msg/s tried")
	fs.IntVar(&cc.size, "size", 100, "payload bytes")
	fs.IntVar(&cc.conns, "conns", defaultConnectLoops, "connection rate scenarios: concurrent connect loops")
	fs.IntVar(&cc.idleConns, "idle-conns", 5000, "idle scenario: connections (each broker is started afresh for it)")
	fs.DurationVar(&cc.settle, "settle", 2*time.Second, "idle scenario: wait after the last CONNACK before sampling the broker's RSS")
	fs.Func("stomp-peer", "NAME=ADDR[,LOGIN,PASSCODE][,vhost=HOST][,mqtt=ADDR]: a STOMP broker already running, one more column for the STOMP rows (repeatable)", func(s string) error {
		p, err := parsePeer(s)
		if err == nil {
			cc.peers = append(cc.peers, p)
		}
		return err
	})
	fs.BoolVar(&cc.keep, "keep", false, "keep the brokers' directory (configurations, logs) and print its path")
	fs.BoolVar(&cc.quiet, "q", false, "no progress on stderr")
	fs.BoolVar(&cc.verbose, "v", false, "debug logging, and every run's lyre-bench flags")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, badUsage("compare: unexpected argument %q", fs.Arg(0))
	case cc.duration <= 0 || cc.reps < 1:
		return nil, badUsage("compare: -duration and -reps must be positive")
	case cc.size < payloadHeader:
		return nil, badUsage("compare: -size %d: want at least %d", cc.size, payloadHeader)
	case cc.conns < 1 || cc.conns > maxConnectLoops || cc.idleConns < 1:
		return nil, badUsage("compare: -conns must be 1 to %d, -idle-conns positive", maxConnectLoops)
	case cc.curveQoS < 0 || cc.curveQoS > 2 || float64(cc.curveMax) < curveLevels[0]:
		return nil, badUsage("compare: -qos 0, 1 or 2, -curve-max at least %.0f", curveLevels[0])
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return nil, badUsage("compare: -only: %v", err)
		}
		cc.only = re
	}
	return cc, nil
}

// comparison is a compare run in progress: its brokers and what they measured.
type comparison struct {
	cc       *compareConfig
	env      *brokerEnv
	targets  []*target
	log      *zap.Logger
	progress io.Writer                       // nil with -q
	results  map[string]map[string][]outcome // scenario id, target name -> runs
	failures []string                        // "broker, scenario, run n: error"
	total    int                             // runs planned, for the progress lines
	done     int
	stopped  bool // by Ctrl-C: the figures are partial
}

// compareMain runs lyre-bench compare and returns the exit code: 1 when a run failed, 130 after Ctrl-C.
func compareMain(args []string, stdout, stderr io.Writer) int {
	cc, err := parseCompareFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintln(stderr, err)
		}
		return 2
	}
	if cc.list {
		for _, sc := range cc.selected() {
			fmt.Fprintf(stdout, "%-13s %s%s  %s\n", sc.id, sc.name, strings.Repeat(" ", max(0, 36-utf8.RuneCountInString(sc.name))), strings.Join(sc.args, " "))
		}
		return 0
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	context.AfterFunc(ctx, cancel) // a second Ctrl-C kills
	log := newLogger(cc.verbose)
	defer log.Sync()
	cmp := &comparison{cc: cc, log: log, results: map[string]map[string][]outcome{}}
	if !cc.quiet {
		cmp.progress = stderr
	}
	if err := cmp.setup(ctx); err != nil {
		fmt.Fprintf(stderr, "lyre-bench compare: %v\n", err)
		cmp.teardown(stderr)
		return exitCode(ctx)
	}
	if cc.curve {
		cmp.runCurve(ctx, stdout)
	} else {
		cmp.runScenarios(ctx)
		cmp.stopped = cmp.stopped || ctx.Err() != nil
		cmp.printTable(stdout)
	}
	cmp.teardown(stderr)
	switch {
	case cmp.stopped:
		return 130
	case len(cmp.failures) > 0:
		return 1
	}
	return 0
}

// setup makes the brokers' directory and certificate, and starts Lyre and mosquitto.
func (cmp *comparison) setup(ctx context.Context) error {
	cc := cmp.cc
	dir, err := os.MkdirTemp("", "lyre-bench-compare-")
	if err != nil {
		return err
	}
	cmp.env = &brokerEnv{dir: dir}
	if cmp.env.certFile, cmp.env.keyFile, err = selfSignedCert(dir); err != nil {
		return err
	}
	bin, rev, err := findLyre(ctx, cc.lyre, dir, cmp.progress)
	if err != nil {
		return err
	}
	addrs, err := freeAddrs(5) // every broker's at once, so that none gets another's
	if err != nil {
		return err
	}
	lyre, err := newLyre(ctx, bin, cmp.env, addrs[:3])
	if err != nil {
		return err
	}
	cmp.targets = append(cmp.targets, &target{name: "Lyre", version: lyreVersion(bin, rev), proc: lyre, addrs: lyre.addrs, auth: lyre.auth})
	mosq := &target{name: "mosquitto"}
	if _, err := os.Stat(cc.mosquitto); err != nil {
		mosq.missing = "not found at " + cc.mosquitto
	} else {
		mosq.version = mosquittoVersion(cc.mosquitto)
		if mosq.proc, err = newMosquitto(ctx, cc.mosquitto, cc.mosquittoPasswd, cmp.env, addrs[3:]); err != nil {
			return err
		}
		mosq.addrs, mosq.auth = mosq.proc.addrs, mosq.proc.auth
	}
	cmp.targets = append(cmp.targets, mosq)
	for i := range cc.peers {
		p := &cc.peers[i]
		cmp.targets = append(cmp.targets, &target{name: p.name, peer: p, addrs: brokerAddrs{stomp: p.addr, mqtt: p.mqtt}})
	}
	for _, tg := range cmp.targets {
		if tg.proc != nil {
			if err := tg.proc.start(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// teardown stops the brokers and removes their directory (unless -keep). A broker that had exited on its
// own is a failure.
func (cmp *comparison) teardown(stderr io.Writer) {
	for _, tg := range cmp.targets {
		if tg.proc != nil && tg.proc.cmd != nil && !tg.proc.stop() {
			fmt.Fprintf(stderr, "lyre-bench compare: %s had exited (%v):\n%s\n", tg.name, tg.proc.err, logTail(tg.proc.logPath))
			cmp.failures = append(cmp.failures, tg.name+" exited before the end")
		}
	}
	if cmp.env == nil {
		return
	}
	if cmp.cc.keep || len(cmp.failures) > 0 {
		fmt.Fprintf(stderr, "lyre-bench compare: configurations and broker logs kept in %s\n", cmp.env.dir)
		return
	}
	os.RemoveAll(cmp.env.dir)
}

// runScenarios runs every selected scenario reps times against each target that supports it, the
// targets taking turns: in run r the order starts r places further along, so that no broker always
// runs first, on a machine fresh from the previous scenario.
func (cmp *comparison) runScenarios(ctx context.Context) {
	scs := cmp.cc.selected()
	for _, sc := range scs {
		for _, tg := range cmp.targets {
			if tg.supports(sc) {
				cmp.total += cmp.cc.reps
			}
		}
	}
	for _, sc := range scs {
		for rep := range cmp.cc.reps {
			for i := range cmp.targets {
				tg := cmp.targets[(i+rep)%len(cmp.targets)]
				if !tg.supports(sc) {
					continue
				}
				if ctx.Err() != nil {
					cmp.stopped = true
					return
				}
				cmp.record(sc, tg, rep, cmp.runOnce(ctx, sc, tg))
			}
		}
	}
}

// record keeps a run's outcome and reports it.
func (cmp *comparison) record(sc *scenario, tg *target, rep int, o outcome) {
	if cmp.results[sc.id] == nil {
		cmp.results[sc.id] = map[string][]outcome{}
	}
	cmp.results[sc.id][tg.name] = append(cmp.results[sc.id][tg.name], o)
	if o.Interrupted {
		cmp.stopped = true
	} else if o.Err != "" {
		cmp.failures = append(cmp.failures, fmt.Sprintf("%s, %s, run %d: %s", tg.name, sc.name, rep+1, o.Err))
	}
	cmp.done++
	if cmp.progress == nil {
		return
	}
	fig := o.Err
	if fig == "" {
		var figs []string
		for _, m := range sc.metrics {
			figs = append(figs, m.format(m.value(&o)))
		}
		fig = strings.Join(figs, " / ")
	}
	of := ""
	if cmp.total > 0 {
		of = "/" + strconv.Itoa(cmp.total)
	}
	fmt.Fprintf(cmp.progress, "[%d%s] %s, %s, run %d: %s\n", cmp.done, of, tg.name, sc.name, rep+1, fig)
}

// runOnce runs sc against tg: in this process, with the mode's own code and lyre-bench's flags.
func (cmp *comparison) runOnce(ctx context.Context, sc *scenario, tg *target) outcome {
	if p := tg.proc; p != nil && (sc.fresh || p.cmd == nil || exited(p)) {
		if p.cmd != nil && exited(p) {
			cmp.failures = append(cmp.failures, fmt.Sprintf("%s exited (%v); restarted", tg.name, p.err))
		}
		if err := p.restart(ctx); err != nil {
			return outcome{Err: err.Error(), Interrupted: ctx.Err() != nil}
		}
	}
	args := cmp.cc.benchArgs(sc, tg, cmp.env.certFile)
	if cmp.cc.verbose && cmp.progress != nil {
		fmt.Fprintf(cmp.progress, "lyre-bench %s\n", strings.Join(args, " "))
	}
	c, err := parseFlags(args, io.Discard)
	if err != nil {
		return outcome{Err: err.Error()}
	}
	// A moment for the broker to finish with the previous run's connections, or to settle after its start
	// before the idle mode samples its RSS.
	pause := 250 * time.Millisecond
	if sc.fresh {
		pause = time.Second
	}
	waitUntil(ctx, time.Now().Add(pause))
	var o outcome
	switch sc.kind {
	case kindIdle:
		r, err := idle(ctx, c, nil)
		if err != nil {
			return outcome{Err: err.Error(), Interrupted: ctx.Err() != nil}
		}
		o = outcome{KiBPerConn: r.KiBPerConn, Interrupted: r.Interrupted}
		if r.failed() {
			o.Err = firstError(r.Errors, fmt.Sprintf("%d connections dropped", r.Dropped))
		}
	case kindConnect:
		r := connectRun(ctx, c, nil)
		o = outcome{Rate: r.Rate, P50: r.Latency.P50Us, P99: r.Latency.P99Us, P999: r.Latency.P999Us, Interrupted: r.Interrupted}
		if r.failed() {
			o.Err = firstError(r.Errors, fmt.Sprintf("refused %d, failed %d", r.Refused, r.Failed))
		}
	default:
		r, err := bench(ctx, c, nil, cmp.log)
		if err != nil {
			return outcome{Err: err.Error(), Interrupted: ctx.Err() != nil}
		}
		o = outcome{Rate: r.RecvRate, Lost: r.Lost, P50: r.Latency.P50Us, P99: r.Latency.P99Us, P999: r.Latency.P999Us, Interrupted: r.Interrupted}
		if r.failed() {
			o.Err = firstError(r.Errors, "failed")
		}
	}
	if o.Interrupted && o.Err == "" {
		o.Err = "interrupted"
	}
	return o
}

// exited reports whether a started broker's process has ended.
func exited(p *brokerProc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func firstError(errs []string, def string) string {
	if len(errs) > 0 {
		return errs[0]
	}
	return def
}
