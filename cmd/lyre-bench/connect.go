package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// connectErrorPause is how long a connect loop waits after a failed attempt, so that a broker refusing
// connections outright is not hammered in a tight loop.
const connectErrorPause = 10 * time.Millisecond

// stompDisconnectNow is a DISCONNECT without a receipt: the connect mode closes right after it.
var stompDisconnectNow = []byte("DISCONNECT\n\n\x00")

// connectResult is the outcome of a connect run.
type connectResult struct {
	Proto     string  `json:"proto"`
	Transport string  `json:"transport"`
	Addr      string  `json:"addr"`
	Conns     int     `json:"conns"` // concurrent connect loops
	User      string  `json:"user,omitempty"`
	FreshIDs  bool    `json:"fresh_ids"`
	Seconds   float64 `json:"seconds"`
	Connects  uint64  `json:"connects"` // accepted: CONNACK 0, or CONNECTED
	Rate      float64 `json:"connects_per_sec"`
	Refused   uint64  `json:"refused"` // a CONNACK refusing, or an ERROR instead of CONNECTED
	Failed    uint64  `json:"failed"`  // any other failure: dial, TLS, timeout, protocol
	// Latency runs from the dial (TCP, then TLS or WebSocket handshakes) to the CONNACK or CONNECTED.
	Latency     latencySummary `json:"latency"`
	Interrupted bool           `json:"interrupted"`
	Errors      []string       `json:"errors,omitempty"`
}

// failed reports whether the run should exit non-zero: any attempt that did not connect.
func (r *connectResult) failed() bool { return r.Refused > 0 || r.Failed > 0 || len(r.Errors) > 0 }

// connectFunc opens one connection and completes CONNECT; bye disconnects politely and closes it.
type connectFunc func(ctx context.Context, clientID string) (bye func(), err error)

// newConnectFunc returns c's protocol's connectFunc.
func newConnectFunc(c *config) connectFunc {
	if c.proto == "stomp" {
		d := newSTOMPDriver(c)
		return func(ctx context.Context, _ string) (func(), error) {
			sc, err := dialSTOMP(ctx, &d.opt, 256, 256)
			if err != nil {
				return nil, err
			}
			return func() {
				sc.nc.SetWriteDeadline(time.Now().Add(d.opt.timeout))
				sc.nc.Write(stompDisconnectNow)
				sc.close()
			}, nil
		}
	}
	d := newDriver(c)
	return func(ctx context.Context, clientID string) (func(), error) {
		ic, err := d.dialIdle(ctx, clientID) // the smallest buffers; close sends DISCONNECT
		if err != nil {
			return nil, err
		}
		return func() { ic.close() }, nil
	}
}

// connectLoop is one of the run's loops: its counters and latencies. Only the atomics are read while it runs.
type connectLoop struct {
	connects atomic.Uint64
	refused  atomic.Uint64
	failed   atomic.Uint64
	lat      hist
}

// connectRun runs -mode connect: c.conns loops connect and disconnect new clients as fast as they can for
// c.duration. progress gets a line per second unless nil.
func connectRun(ctx context.Context, c *config, progress io.Writer) *connectResult {
	r := &connectResult{Proto: c.proto, Transport: c.transport, Addr: c.addr, Conns: c.conns, FreshIDs: c.freshIDs}
	if c.proto == "stomp" {
		r.User = c.login
	} else {
		r.User = c.user
	}
	connect, id := newConnectFunc(c), runID()
	loops := make([]connectLoop, c.conns)
	var stop atomic.Bool
	var errs errList
	var wg sync.WaitGroup
	start := time.Now()
	for i := range loops {
		wg.Go(func() { loops[i].run(ctx, connect, c, loopClientID(id, i), &stop, &errs) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	end := time.NewTimer(c.duration)
	defer end.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last uint64
	for running := true; running; {
		select {
		case <-end.C:
			stop.Store(true) // attempts under way complete and count
		case <-ctx.Done():
			stop.Store(true)
			r.Interrupted = true
			<-done
			running = false
		case <-done:
			running = false
		case now := <-tick.C:
			if progress != nil {
				n := sumConnects(loops)
				fmt.Fprintf(progress, "%6.1fs  %8d connects/s\n", now.Sub(start).Seconds(), n-last)
				last = n
			}
		}
	}
	r.Seconds = time.Since(start).Seconds()
	var lat hist
	for i := range loops {
		l := &loops[i]
		r.Connects += l.connects.Load()
		r.Refused += l.refused.Load()
		r.Failed += l.failed.Load()
		lat.merge(&l.lat)
	}
	r.Rate = float64(r.Connects) / r.Seconds
	r.Latency = lat.summary()
	r.Errors = errs.list()
	return r
}

// loopClientID returns the client identifier of loop i's attempts: with -fresh-ids, a prefix that the
// attempt's number completes.
func loopClientID(id string, i int) string { return "lb-" + id + "-" + strconv.Itoa(i) }

func sumConnects(loops []connectLoop) (n uint64) {
	for i := range loops {
		n += loops[i].connects.Load()
	}
	return n
}

// run connects and disconnects until stop is set or ctx ends. An attempt that fails because ctx ended
// (Ctrl-C) is not counted.
func (l *connectLoop) run(ctx context.Context, connect connectFunc, c *config, clientID string, stop *atomic.Bool, errs *errList) {
	buf := make([]byte, 0, len(clientID)+16)
	for n := uint64(0); !stop.Load() && ctx.Err() == nil; n++ {
		id := clientID
		if c.freshIDs {
			// Unique per attempt, so that no attempt takes over a session the broker is still closing.
			buf = strconv.AppendUint(append(append(buf[:0], clientID...), '-'), n, 36)
			id = string(buf)
		}
		t0 := time.Now()
		bye, err := connect(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errRefused) {
				l.refused.Add(1)
			} else {
				l.failed.Add(1)
			}
			errs.add(err)
			waitUntil(ctx, time.Now().Add(connectErrorPause))
			continue
		}
		l.lat.record(int64(time.Since(t0)))
		l.connects.Add(1)
		bye()
	}
}

func (r *connectResult) print(w io.Writer) {
	ids := "one client id per loop"
	if r.FreshIDs {
		ids = "a fresh client id per attempt"
	}
	fmt.Fprintf(w, "%s connect  %d loops, %s", protoLabel(r.Proto, r.Transport), r.Conns, ids)
	if r.User != "" {
		fmt.Fprintf(w, ", user %s", r.User)
	}
	fmt.Fprintf(w, "  addr %s\n", r.Addr)
	if r.Interrupted {
		fmt.Fprintln(w, "  INTERRUPTED: partial results")
	}
	fmt.Fprintf(w, "  connects   %d in %.2fs (%.0f connects/s), refused %d, failed %d\n", r.Connects, r.Seconds, r.Rate, r.Refused, r.Failed)
	l := r.Latency
	fmt.Fprintf(w, "  latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s (dial to CONNACK)\n",
		fmtUs(l.P50Us), fmtUs(l.P90Us), fmtUs(l.P99Us), fmtUs(l.P999Us), fmtUs(l.MaxUs), fmtUs(l.MeanUs))
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error      %s\n", e)
	}
}
