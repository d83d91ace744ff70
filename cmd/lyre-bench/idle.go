package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// idleResult is the outcome of an idle run.
type idleResult struct {
	Proto          string   `json:"proto"`
	Transport      string   `json:"transport"`
	Addr           string   `json:"addr"`
	Conns          int      `json:"conns"`
	Connected      int      `json:"connected"`
	ConnectSeconds float64  `json:"connect_seconds"`
	HeldSeconds    float64  `json:"held_seconds"`
	Dropped        int      `json:"dropped"` // connections that failed a keep-alive ping while held
	PID            int      `json:"pid,omitempty"`
	RSSBeforeKiB   int64    `json:"rss_before_kib,omitempty"`
	RSSAfterKiB    int64    `json:"rss_after_kib,omitempty"`
	KiBPerConn     float64  `json:"kib_per_conn,omitempty"`
	Interrupted    bool     `json:"interrupted"`
	Errors         []string `json:"errors,omitempty"`
}

func (r *idleResult) failed() bool { return len(r.Errors) > 0 || r.Dropped > 0 }

// readRSS returns VmRSS of process pid in KiB, from /proc/PID/status.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("lyre-bench: unexpected VmRSS line %q", strings.TrimSpace(line))
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("lyre-bench: no VmRSS in /proc/%d/status", pid)
}

// idle opens c.conns idle connections, samples the broker's RSS around that when c.pid is set, and holds
// them for c.duration (or until ctx ends), pinging them in sweeps every half keep-alive.
func idle(ctx context.Context, c *config, progress io.Writer) (*idleResult, error) {
	drv := newDriver(c)
	id := runID()
	r := &idleResult{Proto: c.proto, Transport: c.transport, Addr: c.addr, Conns: c.conns, PID: c.pid}
	if c.pid > 0 {
		rss, err := readRSS(c.pid)
		if err != nil {
			return nil, err
		}
		r.RSSBeforeKiB = rss
	}
	conns := make([]idleConn, c.conns)
	defer func() {
		for _, ic := range conns {
			if ic != nil {
				ic.close()
			}
		}
	}()
	if err := r.connect(ctx, drv, id, conns); err != nil {
		r.Interrupted = ctx.Err() != nil
		if !r.Interrupted {
			r.Errors = append(r.Errors, fmt.Sprintf("after %d connections: %v", r.Connected, err))
		}
		return r, nil
	}
	if progress != nil {
		fmt.Fprintf(progress, "%d connections open in %.2fs\n", r.Connected, r.ConnectSeconds)
	}
	r.hold(ctx, c, conns)
	return r, nil
}

// connect opens an idle connection into every element of conns and counts those that opened.
func (r *idleResult) connect(ctx context.Context, drv driver, id string, conns []idleConn) error {
	start := time.Now()
	err := dialAll(ctx, len(conns), func(ctx context.Context, i int) error {
		ic, err := drv.dialIdle(ctx, fmt.Sprintf("lb-%s-i%d", id, i))
		conns[i] = ic
		return err
	})
	r.ConnectSeconds = time.Since(start).Seconds()
	for _, ic := range conns {
		if ic != nil {
			r.Connected++
		}
	}
	return err
}

// hold keeps the connections open for c.duration or until ctx ends, pinging them every half keep-alive.
// With c.pid set it first waits c.settle and samples the broker's RSS.
func (r *idleResult) hold(ctx context.Context, c *config, conns []idleConn) {
	held := time.Now()
	end := held.Add(c.duration)
	ok := true
	if c.pid > 0 {
		if ok = waitUntil(ctx, time.Now().Add(c.settle)); ok {
			r.sampleRSSAfter(c.pid)
		}
	}
	ping := c.keepAlive / 2
	for ok && time.Now().Before(end) {
		next := end
		if t := time.Now().Add(ping); ping > 0 && t.Before(end) {
			next = t
		}
		if ok = waitUntil(ctx, next); ok && next.Before(end) {
			r.Dropped += pingAll(conns, c.timeout)
		}
	}
	r.HeldSeconds = time.Since(held).Seconds()
	r.Interrupted = !ok
}

// waitUntil waits until t and reports true, or false when ctx ends first.
func waitUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// sampleRSSAfter reads the broker's RSS with the connections open, and from it what one connection costs.
func (r *idleResult) sampleRSSAfter(pid int) {
	rss, err := readRSS(pid)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
		return
	}
	r.RSSAfterKiB = rss
	r.KiBPerConn = float64(rss-r.RSSBeforeKiB) / float64(r.Connected)
}

// pingAll pings every connection, first sending all PINGREQs then collecting the PINGRESPs, and closes and
// forgets the connections that fail. It returns how many failed.
func pingAll(conns []idleConn, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	failed := 0
	drop := func(i int) {
		conns[i].close()
		conns[i] = nil
		failed++
	}
	for i, ic := range conns {
		if ic != nil && ic.sendPing(deadline) != nil {
			drop(i)
		}
	}
	for i, ic := range conns {
		if ic != nil && ic.awaitPong(deadline) != nil {
			drop(i)
		}
	}
	return failed
}

func (r *idleResult) print(w io.Writer) {
	fmt.Fprintf(w, "%s idle  %d of %d connections in %.2fs, held %.2fs, dropped %d  addr %s\n",
		protoLabel(r.Proto, r.Transport), r.Connected, r.Conns, r.ConnectSeconds, r.HeldSeconds, r.Dropped, r.Addr)
	if r.Interrupted {
		fmt.Fprintln(w, "  INTERRUPTED: partial results")
	}
	if r.RSSAfterKiB > 0 {
		fmt.Fprintf(w, "  broker pid %d RSS %d KiB -> %d KiB: %.2f KiB per connection\n",
			r.PID, r.RSSBeforeKiB, r.RSSAfterKiB, r.KiBPerConn)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error      %s\n", e)
	}
}
