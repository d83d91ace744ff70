package management

import (
	"fmt"
	"math"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// sysOffPoll is how often the $SYS publisher looks at sys_interval again while it is 0 (off), so a
// reload turning it on takes effect within that time.
const sysOffPoll = time.Second

// startSys starts the $SYS publisher (see the package doc, $SYS); Close stops it.
func (m *Manager) startSys() {
	if m.o.Hosts == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		p := &sysPublisher{m: m, hosts: make(map[*virtualhost.Host]*sysHost)}
		t := time.NewTimer(p.tick(time.Now()))
		defer t.Stop()
		for {
			select {
			case <-m.quit:
				return
			case now := <-t.C:
				t.Reset(p.tick(now))
			case <-m.o.ClusterChanged:
				t.Reset(p.tick(time.Now()))
			}
		}
	}()
}

// sysInterval returns the running sys_interval.
func (m *Manager) sysInterval() time.Duration {
	if c := m.config(); c != nil {
		return c.SysInterval
	}
	return 0
}

// sysPublisher publishes every host's $SYS topics. Only its goroutine uses it.
type sysPublisher struct {
	m     *Manager
	hosts map[*virtualhost.Host]*sysHost
	heap  [1]metrics.Sample
	// maxHeap is the largest heap/current published.
	maxHeap uint64
}

// sysHost is what the publisher remembers of one host between ticks.
type sysHost struct {
	// last holds the value last published for each topic (below $SYS/broker/), so an unchanged value is
	// not published again.
	last map[string]string
	// at and prev are the time and counters of the previous tick, for the load figures.
	at         time.Time
	prev       sysCounters
	load       [len(sysCounterNames)]loadAvg
	maxClients int
}

// sysCounters are the counters the load figures are rates of, in sysCounterNames' order.
type sysCounters [5]uint64

// sysCounterNames name the load figures: $SYS/broker/load/<name>/{1min,5min,15min}.
var sysCounterNames = [...]string{"messages/received", "messages/sent", "bytes/received", "bytes/sent", "connections"}

// tick publishes what changed since the last one on every host and returns when to tick again.
func (p *sysPublisher) tick(now time.Time) time.Duration {
	every := p.m.sysInterval()
	if every <= 0 {
		p.clear()
		return sysOffPoll
	}
	s := p.m.snapshot()
	var accepted uint64 // broker-wide: connections are accepted before anyone knows their host
	for _, cs := range s.connectors {
		accepted += cs.Accepted
	}
	p.heap[0].Name = "/memory/classes/heap/objects:bytes"
	metrics.Read(p.heap[:])
	var heap uint64
	if p.heap[0].Value.Kind() == metrics.KindUint64 {
		heap = p.heap[0].Value.Uint64()
	}
	p.maxHeap = max(p.maxHeap, heap)
	cluster := sysCluster(p.m.cluster()) // broker-wide, on every host
	seen := make(map[*virtualhost.Host]bool, len(s.hosts))
	for i := range s.hosts {
		hs := &s.hosts[i]
		seen[hs.host] = true
		sh := p.hosts[hs.host]
		if sh == nil {
			sh = &sysHost{last: make(map[string]string)}
			p.hosts[hs.host] = sh
		}
		cur := sysCounters{hs.traffic.MessagesIn, hs.traffic.MessagesOut, hs.traffic.BytesIn, hs.traffic.BytesOut, accepted}
		if !sh.at.IsZero() {
			if dt := now.Sub(sh.at).Seconds(); dt > 0 {
				for i := range cur {
					sh.load[i].update(cur[i]-min(cur[i], sh.prev[i]), dt)
				}
			}
		}
		sh.at, sh.prev = now, cur
		sh.maxClients = max(sh.maxClients, hs.clients)
		for _, v := range append(p.values(hs, sh, now, heap), cluster...) {
			if sh.last[v.name] == v.value {
				continue
			}
			sh.last[v.name] = v.value
			publishSys(hs.host, v.name, v.value)
		}
	}
	for h := range p.hosts {
		if !seen[h] {
			delete(p.hosts, h) // a host removed by a reload
		}
	}
	return every
}

type sysValue struct{ name, value string }

// values returns a host's $SYS values now, under mosquitto's names.
func (p *sysPublisher) values(hs *hostSnapshot, sh *sysHost, now time.Time, heap uint64) []sysValue {
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	i := func(n int) string { return strconv.Itoa(n) }
	rs := &hs.router
	var dropped uint64 // mosquitto's: messages lost to limits; a publish nobody subscribed to is not one
	for _, d := range hs.drops() {
		if d.reason != dropNoRoute {
			dropped += d.n
		}
	}
	uptime := max(now.Sub(p.m.o.Started), 0)
	vs := []sysValue{
		{"version", "lyre version " + p.m.o.Version},
		{"uptime", fmt.Sprintf("%d seconds", int64(uptime/time.Second))},
		{"clients/connected", i(hs.clients)},
		{"clients/maximum", i(sh.maxClients)},
		{"messages/received", u(hs.traffic.MessagesIn)},
		{"messages/sent", u(hs.traffic.MessagesOut)},
		{"messages/stored", i(hs.stored())},
		{"store/messages/count", i(hs.stored())},
		{"publish/messages/dropped", u(dropped)},
		{"subscriptions/count", i(rs.Subscriptions)},
		{"retained messages/count", i(rs.Retained)},
		{"bytes/received", u(hs.traffic.BytesIn)},
		{"bytes/sent", u(hs.traffic.BytesOut)},
		{"heap/current", u(heap)},
		{"heap/maximum", u(p.maxHeap)},
	}
	if ss := hs.sessions; ss != nil {
		// mosquitto: disconnected clients are persistent sessions waiting for their client; total counts
		// them with the connected ones.
		vs = append(vs, sysValue{"clients/disconnected", i(ss.count[1])},
			sysValue{"clients/total", i(hs.clients + ss.count[1])})
	} else {
		vs = append(vs, sysValue{"clients/total", i(hs.clients)})
	}
	for c, name := range sysCounterNames {
		for w, win := range loadWindowNames {
			vs = append(vs, sysValue{"load/" + name + "/" + win, strconv.FormatFloat(sh.load[c][w], 'f', 2, 64)})
		}
	}
	return vs
}

// clear removes every $SYS value published (sys_interval turned to 0): stale figures would mislead. The
// load figures start again from zero when it is turned on again.
func (p *sysPublisher) clear() {
	for h, sh := range p.hosts {
		for name := range sh.last {
			publishSys(h, name, "")
		}
		delete(p.hosts, h)
	}
}

// publishSys publishes value as the retained message of $SYS/broker/<name> on h; an empty value clears
// it. The message is Internal: kept in memory only, never written to the host's store.
func publishSys(h *virtualhost.Host, name, value string) {
	path := append([]string{"$SYS", "broker"}, strings.Split(name, "/")...)
	h.Router.Publish(&router.Message{Dest: router.Destination{Kind: router.Topic, Path: path},
		Body: []byte(value), Retain: true, Internal: true, ContentType: "text/plain"})
}

// loadAvg is one of mosquitto's load figures: a counter's rate per minute, smoothed exponentially over
// 1, 5 and 15 minutes as sys_tree.c does it. Each tick, with dt seconds since the previous one and r
// the counter's increase over them per minute, load = r + exp(-dt/window) * (load - r).
type loadAvg [3]float64

var (
	loadWindows     = [3]float64{60, 300, 900}
	loadWindowNames = [3]string{"1min", "5min", "15min"}
)

func (l *loadAvg) update(delta uint64, dt float64) {
	r := float64(delta) * 60 / dt
	for i, w := range loadWindows {
		l[i] = r + math.Exp(-dt/w)*(l[i]-r)
	}
}
