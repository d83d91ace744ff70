package management_test

import (
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/store/memstore"
	"github.com/lyremq/lyre/virtualhost"
)

// sysNames are the topics below $SYS/broker/ every host gets (clients/disconnected needs a Sessions
// source, which these tests have not).
var sysNames = []string{
	"version", "uptime", "clients/connected", "clients/maximum", "clients/total",
	"messages/received", "messages/sent", "messages/stored", "store/messages/count", "publish/messages/dropped",
	"subscriptions/count", "retained messages/count",
	"bytes/received", "bytes/sent", "heap/current", "heap/maximum",
	"load/messages/received/1min", "load/messages/received/5min", "load/messages/received/15min",
	"load/messages/sent/1min", "load/messages/sent/5min", "load/messages/sent/15min",
	"load/bytes/received/1min", "load/bytes/received/5min", "load/bytes/received/15min",
	"load/bytes/sent/1min", "load/bytes/sent/5min", "load/bytes/sent/15min",
	"load/connections/1min", "load/connections/5min", "load/connections/15min",
}

// The $SYS values are retained on every host, published again only when they change, never written to
// the host's store, and cleared when sys_interval turns to 0; turning it on again republishes them.
func TestSysPublishesChangesOnly(t *testing.T) {
	st := memstore.New(memstore.Options{})
	h := monitoredHost(t, virtualhost.WithStore(st))
	other := virtualhost.New(conf.VirtualHost{Name: "w", Anonymous: true}, router.Options{})
	t.Cleanup(other.Close)
	var cfg atomic.Pointer[conf.Config]
	cfg.Store(&conf.Config{SysInterval: 20 * time.Millisecond})
	commits := st.Stats().Commits

	sink := make(chanSink, 10000)
	g, _ := router.NewGrammar(router.MQTTGrammarConfig())
	f, _ := g.ParseFilter("$SYS/broker/#")
	if err := h.Router.Subscribe(&router.Subscription{Filter: f, Sink: sink}); err != nil {
		t.Fatal(err)
	}
	newManager(t, cfg.Load, h, other)

	for _, host := range []*virtualhost.Host{h, other} {
		for _, name := range sysNames {
			waitRetained(t, host, name, func(_ string, found bool) bool { return found })
		}
		waitRetained(t, host, "version", func(b string, _ bool) bool { return b == "lyre version test" })
		waitRetained(t, host, "uptime", func(b string, _ bool) bool { return regexp.MustCompile(`^\d+ seconds$`).MatchString(b) })
		waitRetained(t, host, "load/messages/received/1min", func(b string, _ bool) bool { return b == "0.00" })
	}
	// Let a few more ticks pass: values that did not change are not published again.
	waitRetained(t, h, "uptime", func(b string, _ bool) bool { return b != "0 seconds" })
	published := map[string]int{}
	for len(sink) > 0 {
		d := <-sink
		published[strings.Join(d.Msg.Dest.Path[2:], "/")]++
		if !d.Msg.Internal || !d.Msg.Retain {
			t.Errorf("%v: internal %v retain %v", d.Msg.Dest.Path, d.Msg.Internal, d.Msg.Retain)
		}
	}
	for _, name := range []string{"version", "clients/connected", "messages/received", "load/bytes/sent/15min"} {
		if published[name] != 1 {
			t.Errorf("%s published %d times, want once", name, published[name])
		}
	}
	if published["uptime"] < 2 {
		t.Errorf("uptime published %d times", published["uptime"])
	}
	if c := st.Stats().Commits; c != commits {
		t.Errorf("the store committed %d times for $SYS", c-commits)
	}
	if s := h.Router.Stats(); s.Published != 0 {
		t.Errorf("router counts %d $SYS messages as published", s.Published)
	}

	// Off: every value is cleared (within the publisher's off-poll, a second).
	cfg.Store(&conf.Config{})
	for _, name := range sysNames {
		waitRetained(t, h, name, func(_ string, found bool) bool { return !found })
	}
	// On again: published again.
	cfg.Store(&conf.Config{SysInterval: 20 * time.Millisecond})
	waitRetained(t, h, "version", func(b string, _ bool) bool { return b == "lyre version test" })
}

// With sys_interval 0 from the start nothing is published.
func TestSysOff(t *testing.T) {
	h := monitoredHost(t)
	sink := make(chanSink, 100)
	g, _ := router.NewGrammar(router.MQTTGrammarConfig())
	f, _ := g.ParseFilter("$SYS/#")
	if err := h.Router.Subscribe(&router.Subscription{Filter: f, Sink: sink}); err != nil {
		t.Fatal(err)
	}
	newManager(t, sysOff, h)
	time.Sleep(1500 * time.Millisecond) // past the first tick and an off-poll
	if len(sink) != 0 || h.Router.Stats().Retained != 0 {
		t.Errorf("%d $SYS messages, %d retained with sys_interval 0", len(sink), h.Router.Stats().Retained)
	}
}
