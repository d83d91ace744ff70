package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol/prototest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeLyreBinary()
		os.Exit(code)
	}))
}

func TestParseFlagsCoalesce(t *testing.T) {
	for _, c := range []struct {
		args []string
		want time.Duration
	}{
		{nil, time.Millisecond},
		{[]string{"-rate", "100"}, 0}, // paced runs measure latency
		{[]string{"-qos", "1"}, 0},    // the broker's delivery window must not wait for us
		{[]string{"-rate", "100", "-coalesce", "2ms"}, 2 * time.Millisecond},
		{[]string{"-coalesce", "0"}, 0},
	} {
		cfg, err := parseFlags(c.args, &bytes.Buffer{})
		if err != nil || cfg.coalesce != c.want {
			t.Errorf("%v: coalesce %v, %v; want %v", c.args, cfg.coalesce, err, c.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, c := range []struct {
		args             []string
		pubs, subs       int
		duration         time.Duration
		wantUsageErrText bool
	}{
		{args: nil, pubs: 8, subs: 1, duration: 10 * time.Second},
		{args: []string{"-mode", "fanout"}, pubs: 1, subs: 8, duration: 10 * time.Second},
		{args: []string{"-mode", "pairs", "-pubs", "3"}, pubs: 3, subs: 3, duration: 10 * time.Second},
		{args: []string{"-count", "100"}, pubs: 8, subs: 1, duration: 0},
		{args: []string{"-count", "100", "-duration", "2s"}, pubs: 8, subs: 1, duration: 2 * time.Second},
		{args: []string{"-mode", "pairs", "-pubs", "3", "-subs", "2"}, wantUsageErrText: true},
		{args: []string{"-proto", "stomp"}, pubs: 8, subs: 1, duration: 10 * time.Second},
		{args: []string{"-proto", "stomp", "-mode", "queue"}, pubs: 4, subs: 4, duration: 10 * time.Second},
		{args: []string{"-proto", "amqp"}, wantUsageErrText: true},
		{args: []string{"-mode", "bogus"}, wantUsageErrText: true},
		{args: []string{"-qos", "3"}, wantUsageErrText: true},
		{args: []string{"-size", "15"}, wantUsageErrText: true},
		{args: []string{"-inflight", "0"}, wantUsageErrText: true},
		{args: []string{"-inflight", "65536"}, wantUsageErrText: true},
		{args: []string{"-duration", "0"}, wantUsageErrText: true},
		{args: []string{"-mode", "idle", "-conns", "0"}, wantUsageErrText: true},
		{args: []string{"extra"}, wantUsageErrText: true},
	} {
		c2, err := parseFlags(c.args, &bytes.Buffer{})
		if c.wantUsageErrText {
			if !errors.Is(err, errUsage) {
				t.Errorf("%v: err = %v, want a usage error", c.args, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if c2.pubs != c.pubs || c2.subs != c.subs || c2.duration != c.duration {
			t.Errorf("%v: pubs %d subs %d duration %v, want %d %d %v", c.args, c2.pubs, c2.subs, c2.duration, c.pubs, c.subs, c.duration)
		}
	}
}

func TestDialAllStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int64
	err := dialAll(context.Background(), 1000, func(ctx context.Context, i int) error {
		calls.Add(1)
		if i == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if n := calls.Load(); n >= 1000 {
		t.Fatalf("dialled all %d after an error", n)
	}
	calls.Store(0)
	if err := dialAll(context.Background(), 50, func(context.Context, int) error { calls.Add(1); return nil }); err != nil || calls.Load() != 50 {
		t.Fatalf("all succeed: err %v, %d calls", err, calls.Load())
	}
}

func TestBenchUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := parseFlags([]string{"-addr", addr, "-count", "10", "-timeout", "2s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bench(context.Background(), c, nil, zap.NewNop()); err == nil {
		t.Fatal("bench against a closed port succeeded")
	}
}

// startMosquitto runs a private mosquitto on a free loopback port, or skips the test when it is not
// installed. The queue and in-flight limits are lifted so that loss can only come from the client:
// mosquitto drops QoS 1 messages past max_queued_messages (1000 by default), and 2.0.11 was seen to drop
// a few QoS 2 messages per hundred under the default max_inflight_messages 20.
func startMosquitto(t *testing.T) (addr string, pid int) {
	t.Helper()
	addr, _, pid = startMosquittoWS(t, false)
	return addr, pid
}

// startMosquittoWS is startMosquitto, with ws set also with a WebSocket listener (protocol websockets) on a
// second free port, whose address it returns as wsAddr.
func startMosquittoWS(t *testing.T, ws bool) (addr, wsAddr string, pid int) {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/mosquitto"); err2 != nil {
			t.Skip("mosquitto not installed")
		}
		bin = "/usr/sbin/mosquitto"
	}
	addr = freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_queued_messages 0\nmax_inflight_messages 0\n", port)
	wait := []string{addr}
	if ws {
		wsAddr = freeAddr(t)
		_, wsPort, _ := net.SplitHostPort(wsAddr)
		cfg += fmt.Sprintf("listener %s 127.0.0.1\nprotocol websockets\n", wsPort)
		wait = append(wait, wsAddr)
	}
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for _, a := range wait {
		prototest.WaitForErr(t, 5*time.Second, func() error {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	return addr, wsAddr, cmd.Process.Pid
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestBenchMosquitto(t *testing.T) {
	addr, _ := startMosquitto(t)
	for _, c := range []struct {
		name     string
		args     []string
		expected uint64
	}{
		{"fanin qos 0", []string{"-mode", "fanin", "-qos", "0", "-pubs", "4", "-count", "500"}, 2000},
		{"fanin qos 1", []string{"-mode", "fanin", "-qos", "1", "-pubs", "4", "-count", "500", "-inflight", "16"}, 2000},
		{"fanout qos 1", []string{"-mode", "fanout", "-qos", "1", "-subs", "3", "-count", "500"}, 1500},
		{"pairs qos 2", []string{"-mode", "pairs", "-qos", "2", "-pubs", "3", "-count", "200", "-size", "1000"}, 600},
		{"fanin qos 2 window 1", []string{"-mode", "fanin", "-qos", "2", "-pubs", "2", "-count", "100", "-inflight", "1"}, 200},
		{"fanin qos 0 rate", []string{"-mode", "fanin", "-qos", "0", "-pubs", "2", "-count", "40", "-rate", "200"}, 80},
		// The stalled subscriber never reads; the measured subscriber must still get everything.
		{"fanin qos 1 with a stalled subscriber", []string{"-mode", "fanin", "-qos", "1", "-pubs", "2", "-count", "200", "-stalled", "1"}, 400},
		// MQTT 5: the same runs with property lists in every packet.
		{"fanin qos 0 v5", []string{"-v5", "-mode", "fanin", "-qos", "0", "-pubs", "2", "-count", "300"}, 600},
		{"fanin qos 1 v5", []string{"-v5", "-mode", "fanin", "-qos", "1", "-pubs", "4", "-count", "500", "-inflight", "16"}, 2000},
		{"pairs qos 2 v5", []string{"-v5", "-mode", "pairs", "-qos", "2", "-pubs", "2", "-count", "200"}, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(append([]string{"-addr", addr, "-rate", "5000", "-topic", "test"}, c.args...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r, err := bench(context.Background(), cfg, nil, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Errors) > 0 || r.failed() || r.Interrupted {
				t.Fatalf("errors: %v (interrupted %v)", r.Errors, r.Interrupted)
			}
			sent := uint64(cfg.pubs) * cfg.count
			if r.Sent != sent || r.Expected != c.expected || r.Received != c.expected || r.Lost != 0 || r.OutOfOrder != 0 || r.Foreign != 0 {
				t.Fatalf("sent %d (want %d) expected %d (want %d) received %d lost %d out of order %d foreign %d",
					r.Sent, sent, r.Expected, c.expected, r.Received, r.Lost, r.OutOfOrder, r.Foreign)
			}
			if cfg.qos > 0 && r.Acked != sent {
				t.Fatalf("acked %d of %d", r.Acked, sent)
			}
			if r.GrantedQoS != cfg.qos {
				t.Fatalf("granted QoS %d, want %d", r.GrantedQoS, cfg.qos)
			}
			if r.Latency.Count != c.expected || r.Latency.P50Us <= 0 || r.Latency.MaxUs < r.Latency.P99Us || r.RecvRate <= 0 {
				t.Fatalf("latency %+v rate %v", r.Latency, r.RecvRate)
			}
			if cfg.rate == 200 {
				// 40 messages at 200/s take about 195 ms: pacing works.
				if d := time.Since(start); d < 150*time.Millisecond {
					t.Fatalf("rate-limited run took only %v", d)
				}
				if r.SendRate > 200*float64(cfg.pubs)*1.5 {
					t.Fatalf("send rate %v over the limit", r.SendRate)
				}
			}
		})
	}
}

func TestBenchMosquittoDuration(t *testing.T) {
	addr, _ := startMosquitto(t)
	cfg, err := parseFlags([]string{"-addr", addr, "-qos", "1", "-pubs", "2", "-duration", "1500ms", "-rate", "2000", "-warmup", "200ms"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	r, err := bench(context.Background(), cfg, &progress, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if r.failed() || r.Lost != 0 || r.Sent == 0 || r.Received != r.Sent {
		t.Fatalf("sent %d received %d lost %d errors %v", r.Sent, r.Received, r.Lost, r.Errors)
	}
	if r.PublishSeconds < 1.4 || r.PublishSeconds > 3 || r.WindowSeconds < 1 {
		t.Fatalf("published for %.2fs, window %.2fs; want about 1.5s and 1.2s", r.PublishSeconds, r.WindowSeconds)
	}
	// 2 publishers at 2000/s: the steady-window rate is close to 4000/s.
	if r.RecvRate < 3000 || r.RecvRate > 5000 {
		t.Fatalf("received %.0f msg/s, want about 4000", r.RecvRate)
	}
	if progress.Len() == 0 {
		t.Fatal("no progress lines")
	}
}

func TestBenchMosquittoInterrupt(t *testing.T) {
	addr, _ := startMosquitto(t)
	cfg, err := parseFlags([]string{"-addr", addr, "-qos", "1", "-pubs", "2", "-duration", "1m", "-rate", "1000"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	r, err := bench(ctx, cfg, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("interrupt took %v", d)
	}
	if !r.Interrupted || r.Sent == 0 || r.Received == 0 || len(r.Errors) > 0 {
		t.Fatalf("interrupted %v sent %d received %d errors %v", r.Interrupted, r.Sent, r.Received, r.Errors)
	}
}

func TestRealMainJSON(t *testing.T) {
	addr, _ := startMosquitto(t)
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"-addr", addr, "-qos", "1", "-pubs", "2", "-count", "100", "-json", "-q"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	var r result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%v in %s", err, stdout.String())
	}
	if r.Mode != "fanin" || r.Received != 200 || r.Lost != 0 || r.Latency.Count != 200 {
		t.Fatalf("result %+v", r)
	}
	if code := realMain([]string{"-qos", "7"}, &stdout, &stderr); code != 2 {
		t.Fatalf("bad flag: exit %d, want 2", code)
	}
}

func TestIdleMosquitto(t *testing.T) {
	addr, pid := startMosquitto(t)
	cfg, err := parseFlags([]string{"-addr", addr, "-mode", "idle", "-conns", "40", "-pid", strconv.Itoa(pid),
		"-duration", "1200ms", "-keepalive", "1s", "-settle", "100ms"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := idle(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.failed() || r.Connected != 40 || r.Dropped != 0 || r.Interrupted {
		t.Fatalf("connected %d dropped %d errors %v", r.Connected, r.Dropped, r.Errors)
	}
	if r.RSSBeforeKiB <= 0 || r.RSSAfterKiB <= 0 || r.HeldSeconds < 1.1 {
		t.Fatalf("rss %d -> %d, held %.2fs", r.RSSBeforeKiB, r.RSSAfterKiB, r.HeldSeconds)
	}
}
