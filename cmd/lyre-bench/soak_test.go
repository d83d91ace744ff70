package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/lyremq/lyre/protocol/prototest"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
process_resident_memory_bytes 2.5165824e+07
go_memstats_heap_inuse_bytes 1.048576e+06
lyre_connector_connections{connector="a"} 3
lyre_connector_connections{connector="b",x="{}"} 4
lyre_messages_received_total{connector="a",protocol="mqtt",vhost=""} 7 1700000000000
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"go_goroutines": 42, "process_resident_memory_bytes": 25165824,
		"lyre_connector_connections": 7, "lyre_messages_received_total": 7} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines many\n")); err == nil {
		t.Error("a value that is no number parsed")
	}
}

func TestSoakFlags(t *testing.T) {
	c, err := parseFlags([]string{"-mode", "soak"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.conns != 10000 || c.qos != 1 || c.rate != 200 || c.pubs != 4 || c.subs != 4 || c.storms != 3 || c.coalesce != 0 {
		t.Errorf("soak defaults: %+v", c)
	}
	if c, _ := parseFlags([]string{"-mode", "soak", "-conns", "50", "-rate", "10"}, &bytes.Buffer{}); c.conns != 50 || c.rate != 10 {
		t.Errorf("explicit flags overridden: conns %d rate %v", c.conns, c.rate)
	}
	for _, args := range [][]string{{"-qos", "0"}, {"-proto", "stomp"}, {"-storms", "0"}, {"-conns", "1"}, {"-transport", "ws"}} {
		if _, err := parseFlags(append([]string{"-mode", "soak"}, args...), &bytes.Buffer{}); err == nil {
			t.Errorf("-mode soak %v accepted", args)
		}
	}
	// Half the connections behave, every kind has its share.
	var n [numStormKinds]int
	for i := range 1000 {
		n[kindOf(i)]++
	}
	for k, c := range n {
		if good := k < numGood; good && c != 500/numGood || !good && (c < 500/numBad || c > 500/numBad+1) {
			t.Errorf("%s: %d of 1000", stormKind(k), c)
		}
	}
}

// soakConfig is the broker's configuration for TestSoak (%s: the address): one port for MQTT, STOMP,
// WebSocket and /metrics, room for a storm of 10,000 connections and the traffic beside it.
const soakConfig = `
sys_interval = "0s"
connector "soak" {
  bind            = "tcp://%s"
  detect          = ["mqtt", "stomp", "http"]
  max_connections = 15000
  management      = true
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
}
`

// TestSoak builds the broker from this tree, runs it as a process of its own (so that it and this test
// each stay far below 20,000 open files) and soaks it (-mode soak's defaults: 3 storms of 10,000
// connections). It takes a few minutes and runs only when LYRE_SOAK is set:
//
//	LYRE_SOAK=1 go test ./cmd/lyre-bench -run TestSoak -v -timeout 30m
//
// LYRE_SOAK_ARGS adds lyre-bench flags ("-conns 1000 -storms 1" for a quick look); LYRE_SOAK_JSON names a
// file for the JSON result, samples included; LYRE_SOAK_LOG one for the broker's log (else it goes with
// the test's temporary directory).
func TestSoak(t *testing.T) {
	if os.Getenv("LYRE_SOAK") == "" {
		t.Skip("set LYRE_SOAK=1 to run the soak (minutes)")
	}
	addr, pid, logPath := startLyreProcess(t)
	args := append([]string{"-mode", "soak", "-addr", addr, "-pid", strconv.Itoa(pid),
		"-metrics", "http://" + addr + "/metrics"}, strings.Fields(os.Getenv("LYRE_SOAK_ARGS"))...)
	c, err := parseFlags(args, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := soak(context.Background(), c, testWriter{t}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.print(&out)
	t.Logf("%s\nbroker log: %s", out.String(), logPath)
	if path := os.Getenv("LYRE_SOAK_JSON"); path != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Error(err)
		}
	}
	if r.failed() {
		t.Error("the soak failed (see above)")
	}
	if r.Peak.OpenFDs >= 20000 || r.Peak.BenchFDs >= 20000 {
		t.Errorf("open files: broker %d, lyre-bench %d; the limit here is 20,000", r.Peak.OpenFDs, r.Peak.BenchFDs)
	}
}

// startLyreProcess builds cmd/lyre and starts it on a free loopback port with soakConfig, logging at info
// to a file. The test's end stops it with SIGTERM and checks that it exits cleanly.
func startLyreProcess(t *testing.T) (addr string, pid int, logPath string) {
	t.Helper()
	dir, bin := t.TempDir(), lyreBinary(t)
	addr = freeAddr(t)
	cfgPath, logPath := filepath.Join(dir, "lyre.hcl"), filepath.Join(dir, "lyre.log")
	if p := os.Getenv("LYRE_SOAK_LOG"); p != "" {
		logPath = p // kept after the test
	}
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, soakConfig, addr), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgPath, "-log-level", "info")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("broker exit: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("broker still running 30s after SIGTERM")
			<-done
		}
		logFile.Close()
	})
	prototest.WaitForErr(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr, cmd.Process.Pid, logPath
}

// testWriter writes progress lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
