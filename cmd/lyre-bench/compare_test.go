package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// built is cmd/lyre, built once for the package's tests; TestMain removes it.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

// lyreBinary builds cmd/lyre from this tree, once for all tests.
func lyreBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "lyre-bench-test-"); built.err != nil {
			return
		}
		bin := filepath.Join(built.dir, "lyre")
		if out, err := exec.Command("go", "build", "-o", bin, lyreModule+"/cmd/lyre").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built.bin = bin
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func removeLyreBinary() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// childProcesses lists this process's children as "pid (command)", from /proc.
func childProcesses(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var kids []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses, so split after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			kids = append(kids, string(b[:i+1]))
		}
	}
	return kids
}

// runCompare runs lyre-bench compare with args and returns the exit code and what it printed. It checks
// that the brokers are gone afterwards and that their directory was removed.
func runCompare(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where compare makes the brokers' directory
	var out, errOut bytes.Buffer
	code = compareMain(args, &out, &errOut)
	if kids := childProcesses(t); len(kids) > 0 {
		t.Errorf("processes left running: %v", kids)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 && code == 0 {
		t.Errorf("%s left in the temporary directory", left[0].Name())
	}
	t.Logf("compare %s\n%s", strings.Join(args, " "), out.String())
	return code, out.String(), errOut.String()
}

// tableRow returns the cells of the table row whose first cell starts with label.
func tableRow(t *testing.T, table, label string) []string {
	t.Helper()
	for line := range strings.Lines(table) {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) > 1 && strings.HasPrefix(cells[0], label) {
			return cells
		}
	}
	t.Fatalf("no row %q in\n%s", label, table)
	return nil
}

var (
	figure   = regexp.MustCompile(`^[0-9.]+[kM]?`)
	duration = regexp.MustCompile(`^[0-9.]+(µs|ms|s)`)
)

// compare runs Lyre alone (mosquitto "not installed"), with a STOMP peer, through a few scenarios of each
// kind: throughput with loss counted, paced latency, STOMP, idle RSS with a fresh broker, and connection
// rates plain, over TLS and with a bcrypt password.
func TestCompareLyre(t *testing.T) {
	bin := lyreBinary(t)
	peer := newStompPeer(t, "1.2", 0)
	code, out, errOut := runCompare(t, "-lyre", bin, "-mosquitto", "/nonexistent/mosquitto", "-duration", "300ms", "-reps", "1",
		"-only", "qos1-fanin|qos1-80k|stomp-fanin|^idle$|^connect", "-idle-conns", "50", "-settle", "200ms", "-q",
		"-stomp-peer", "peer="+peer.addr+",guest,guest")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if h := tableRow(t, out, "run"); strings.Join(h, "|") != "run|Lyre|mosquitto (not found at /nonexistent/mosquitto)|peer|ratio|goal" {
		t.Fatalf("header %q", h)
	}
	checks := []struct {
		label string
		lyre  *regexp.Regexp
		peer  bool // the STOMP peer has a figure
	}{
		{"MQTT QoS 1 fan-in 8→1, msg/s", regexp.MustCompile(`^[0-9.]+[kM]?, 0 lost$`), false},
		{"MQTT QoS 1 fan-in 8→1 at 80k msg/s offered, p99 latency", duration, false},
		{"STOMP fan-in 8→1 without receipts, msg/s", regexp.MustCompile(`^[0-9.]+[kM]?, [0-9]+ lost$`), true},
		{"Idle MQTT connection (50 open)", regexp.MustCompile(`^-?[0-9.]+ KiB$`), false},
		{"Connection rate, plain", figure, false},
		{"Connection rate, TLS", figure, false},
		{"Connection rate with a password", figure, false},
	}
	for _, c := range checks {
		row := tableRow(t, out, c.label)
		if !c.lyre.MatchString(row[1]) || row[2] != "—" || row[4] != "—" {
			t.Errorf("%s: %q", c.label, row)
		}
		if c.peer != figure.MatchString(row[3]) {
			t.Errorf("%s: peer column %q", c.label, row[3])
		}
	}
	// A goal relative to mosquitto cannot be met without it; one in absolute terms is judged either way.
	if row := tableRow(t, out, "MQTT QoS 1 fan-in 8→1, msg/s"); row[5] != "≥ 2× mosquitto, 0 lost ✗" {
		t.Errorf("goal %q, want it unmet without mosquitto", row[5])
	}
	if row := tableRow(t, out, "STOMP fan-in 8→1 without receipts"); !strings.HasPrefix(row[5], "≥ 120k, 0 lost ") {
		t.Errorf("goal %q", row[5])
	}
	if !strings.Contains(out, "mosquitto not found at /nonexistent/mosquitto: Lyre only.") {
		t.Error("no note that mosquitto is missing")
	}
	if strings.Count(out, "\n| ") != 2+len(checks)+2 { // header, separator, rows (80k has 3)
		t.Errorf("%d table lines", strings.Count(out, "\n| "))
	}

	t.Run("mosquitto", func(t *testing.T) {
		if _, err := os.Stat("/usr/sbin/mosquitto"); err != nil {
			t.Skip("/usr/sbin/mosquitto not installed")
		}
		code, out, errOut := runCompare(t, "-lyre", bin, "-duration", "300ms", "-reps", "2",
			"-only", "qos1-fanin|^connect$|connect-auth|^idle$", "-idle-conns", "50", "-settle", "200ms", "-q")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		if !strings.Contains(out, "Lyre 0.1.0-dev vs mosquitto 2.") || !strings.Contains(out, "median of 2 runs") {
			t.Errorf("headline: %s", out)
		}
		for _, label := range []string{"MQTT QoS 1 fan-in 8→1, msg/s", "Idle MQTT connection", "Connection rate, plain", "Connection rate with a password"} {
			row := tableRow(t, out, label)
			// 50 idle connections may not grow mosquitto's RSS by a page: no ratio then.
			if !figure.MatchString(row[1]) || !figure.MatchString(row[2]) || !figure.MatchString(row[3]) && !strings.HasPrefix(label, "Idle") {
				t.Errorf("%s: %q", label, row)
			}
		}
	})
}

// -curve climbs the offered rates up to -curve-max. Without -lyre, compare builds Lyre from the module
// around the working directory (here, this package's). A failed setup (a Lyre that does not exist) is
// exit 1.
func TestCompareCurve(t *testing.T) {
	code, out, errOut := runCompare(t, "-mosquitto", "/nonexistent/mosquitto", "-curve", "-curve-max", "10000",
		"-duration", "300ms", "-reps", "1")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if h := tableRow(t, out, "offered"); strings.Join(h, "|") != "offered msg/s|Lyre achieved|Lyre p50|Lyre p99|Lyre p99.9" {
		t.Fatalf("header %q", h)
	}
	// A loaded machine can saturate Lyre at the first rate of a 300 ms run: the curve then stops there.
	for _, level := range []string{"5.00k", "10.0k"} {
		row := tableRow(t, out, level)
		if !figure.MatchString(row[1]) || !duration.MatchString(row[2]) || !duration.MatchString(row[4]) {
			t.Errorf("%s: %q", level, row)
		}
		if strings.Contains(row[1], "saturated") {
			if level == "5.00k" && strings.Contains(out, "10.0k") {
				t.Error("ran on past the rate at which Lyre saturated")
			}
			break
		}
	}
	if strings.Contains(out, "20.0k") {
		t.Error("ran beyond -curve-max")
	}
	if !strings.Contains(errOut, "building lyre from ") || !regexp.MustCompile(`Lyre [^ ]+ \([0-9a-f]{7}`).MatchString(out) {
		t.Errorf("not built from the module, or without its commit:\n%s\n%s", errOut, out)
	}

	code, _, errOut = runCompare(t, "-lyre", filepath.Join(t.TempDir(), "no-lyre"), "-q", "-only", "qos0-fanin")
	if code != 1 || !strings.Contains(errOut, "no-lyre") {
		t.Fatalf("missing lyre: exit %d, %s", code, errOut)
	}
}

func TestCompareFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-reps", "0"}, {"-duration", "0"}, {"-size", "8"}, {"-conns", "0"}, {"-only", "("}, {"-qos", "3"},
		{"-curve-max", "100"}, {"-stomp-peer", "nope"}, {"extra"},
	} {
		var out bytes.Buffer
		if code := compareMain(args, &out, &out); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	var out bytes.Buffer
	if code := compareMain([]string{"-list", "-only", "^connect"}, &out, &out); code != 0 {
		t.Fatalf("-list: exit %d", code)
	}
	if got := strings.Count(out.String(), "\n"); got != 3 || !strings.HasPrefix(out.String(), "connect ") {
		t.Errorf("-list -only ^connect:\n%s", out.String())
	}
}

// -mode connect against a Lyre process: plain, TLS and with a bcrypt password, each accepted; a wrong
// password is refused and fails the run.
func TestConnectModeLyre(t *testing.T) {
	env := &brokerEnv{dir: t.TempDir()}
	var err error
	if env.certFile, env.keyFile, err = selfSignedCert(env.dir); err != nil {
		t.Fatal(err)
	}
	addrs, err := freeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	lyre, err := newLyre(context.Background(), lyreBinary(t), env, addrs)
	if err != nil {
		t.Fatal(err)
	}
	if err := lyre.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !lyre.stop() {
			t.Errorf("Lyre had exited: %v\n%s", lyre.err, logTail(lyre.logPath))
		}
	}()
	for _, c := range []struct {
		name    string
		args    []string
		refused bool
	}{
		{"plain", []string{"-addr", lyre.addrs.mqtt}, false},
		{"tls", []string{"-addr", lyre.addrs.tls, "-transport", "tls", "-cafile", env.certFile}, false},
		{"password", []string{"-addr", lyre.addrs.mqtt, "-user", benchUser, "-pass", benchPassword}, false},
		{"stomp", []string{"-proto", "stomp", "-addr", lyre.addrs.stomp, "-login", benchUser, "-passcode", benchPassword}, false},
		{"wrong password", []string{"-addr", lyre.addrs.mqtt, "-user", benchUser, "-pass", "wrong"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(append([]string{"-mode", "connect", "-conns", "2", "-duration", "300ms"}, c.args...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := connectRun(context.Background(), cfg, nil)
			if c.refused {
				if r.Refused == 0 || r.Connects != 0 || !r.failed() {
					t.Fatalf("%+v", r)
				}
				return
			}
			if r.failed() || r.Connects == 0 || r.Latency.Count != r.Connects {
				t.Fatalf("%+v", r)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("a 300ms run took %v", d)
			}
		})
	}
}
