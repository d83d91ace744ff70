package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// The user compare creates in both brokers' password files, for the connection rate with a password.
const (
	benchUser     = "bench"
	benchPassword = "lyre-bench-secret"
)

// brokerStartWait bounds how long a broker compare starts may take to open its ports; brokerStopWait how
// long it may take to exit after SIGTERM (Lyre's graceful shutdown takes at most 5 s) before it is killed.
const (
	brokerStartWait = 20 * time.Second
	brokerStopWait  = 10 * time.Second
)

// brokerAddrs are where a broker listens. An empty address is a listener the broker does not have.
type brokerAddrs struct {
	mqtt  string // MQTT over TCP
	tls   string // MQTT over TLS, with the certificate in brokerEnv
	stomp string // STOMP over TCP
}

// brokerEnv is what compare gives every broker it starts: a directory of its own and a TLS certificate.
type brokerEnv struct {
	dir      string
	certFile string
	keyFile  string
}

// brokerProc is a broker process compare started, and how to start it again on the same ports.
type brokerProc struct {
	name    string
	argv    []string
	logPath string
	addrs   brokerAddrs
	auth    bool   // benchUser can log in with benchPassword
	hash    string // how benchPassword is kept: "bcrypt, cost 10"

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been waited for
	err  error         // from Wait, set before done is closed
}

// start starts the process and waits until each of its addresses accepts connections.
func (b *brokerProc) start(ctx context.Context) error {
	logFile, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(b.argv[0], b.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = filepath.Dir(b.logPath)
	// A process group of its own: Ctrl-C on the terminal reaches lyre-bench, which stops the broker after
	// reporting, rather than the broker in the middle of a run.
	cmd.SysProcAttr = brokerProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", b.name, err)
	}
	b.cmd, b.done, b.err = cmd, make(chan struct{}), nil
	go func() { b.err = cmd.Wait(); close(b.done) }()
	deadline := time.Now().Add(brokerStartWait)
	for _, addr := range []string{b.addrs.mqtt, b.addrs.tls, b.addrs.stomp} {
		if addr == "" {
			continue
		}
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-b.done:
				return fmt.Errorf("%s exited at start (%v):\n%s", b.name, b.err, logTail(b.logPath))
			case <-ctx.Done():
				b.stop()
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				b.stop()
				return fmt.Errorf("%s: %s not listening after %v:\n%s", b.name, addr, brokerStartWait, logTail(b.logPath))
			}
		}
	}
	return nil
}

// pid is the running process's id.
func (b *brokerProc) pid() int { return b.cmd.Process.Pid }

// stop ends the process with SIGTERM, or SIGKILL after brokerStopWait, and waits for it. It reports
// whether the process was still running, which it should be.
func (b *brokerProc) stop() (wasRunning bool) {
	if b.cmd == nil {
		return false
	}
	defer func() { b.cmd = nil }()
	select {
	case <-b.done:
		return false
	default:
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(brokerStopWait):
		b.cmd.Process.Kill()
		<-b.done
	}
	return true
}

// restart stops the broker and starts it afresh, for figures an earlier run must not influence.
func (b *brokerProc) restart(ctx context.Context) error {
	b.stop()
	return b.start(ctx)
}

// logTail returns the end of a log file, for an error message.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// freeAddrs returns n loopback addresses whose ports were free a moment ago. The listeners are held until
// all are chosen, so the n ports differ: choose every broker's at once.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs, nil
}

// lyreConfig is Lyre's configuration for compare (addresses, certificate, key, users file): everything
// in memory (no store block), MQTT on an MQTT-only connector like the built-in configuration's port
// 1883, STOMP on an autodetecting one like its 61613, MQTT over TLS on a third. Connection limits are
// raised for the idle rows (within the open-file limit of 20,000 here, which Lyre warns about past it);
// everything else is at its default.
const lyreConfig = `connector "mqtt" {
  bind            = "tcp://%s"
  protocol        = "mqtt"
  max_connections = 15000
}
connector "stomp" {
  bind            = "tcp://%s"
  detect          = ["mqtt", "stomp"]
  max_connections = 15000
}
connector "tls" {
  bind            = "tls://%s"
  protocol        = "mqtt"
  max_connections = 15000
  tls {
    cert_file = %q
    key_file  = %q
  }
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
  users_file = %q
}
`

// newLyre prepares Lyre (the binary at bin) in env.dir/lyre, with a users file holding benchUser's bcrypt
// hash made by `lyre passwd`, listening on a[0] (MQTT), a[1] (STOMP) and a[2] (MQTT over TLS). Call start
// to run it.
func newLyre(ctx context.Context, bin string, env *brokerEnv, a []string) (*brokerProc, error) {
	dir := filepath.Join(env.dir, "lyre")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "passwd")
	cmd.Stdin = strings.NewReader(benchPassword + "\n")
	attrs, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s passwd: %w", bin, exitErr(err))
	}
	users := filepath.Join(dir, "users.hcl")
	if err := os.WriteFile(users, fmt.Appendf(nil, "user %q {\n%s}\n", benchUser, attrs), 0o600); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "lyre.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, lyreConfig, a[0], a[1], a[2], env.certFile, env.keyFile, users), 0o644); err != nil {
		return nil, err
	}
	return &brokerProc{name: "Lyre", argv: []string{bin, "-config", cfg, "-log-level", "warn"},
		logPath: filepath.Join(dir, "lyre.log"), addrs: brokerAddrs{mqtt: a[0], stomp: a[1], tls: a[2]}, auth: true,
		hash: describeHash(string(attrs))}, nil
}

// hashFormats recognises the password hashes of a Lyre users file (bcrypt: $2a$COST$) and a mosquitto
// password file ($7$ITERATIONS$ is PBKDF2-SHA512, $6$ one round of salted SHA-512).
var hashFormats = []struct {
	re   *regexp.Regexp
	desc string // %s: the number the hash carries
}{
	{regexp.MustCompile(`\$2[aby]\$(\d+)\$`), "bcrypt, cost %s"},
	{regexp.MustCompile(`:\$7\$(\d+)\$`), "PBKDF2-SHA512, %s iterations"},
	{regexp.MustCompile(`:\$6\$()`), "salted SHA-512%s"},
}

// describeHash names the kind of password hash in a users or password file, for the table's notes.
func describeHash(file string) string {
	for _, f := range hashFormats {
		if m := f.re.FindStringSubmatch(file); m != nil {
			return fmt.Sprintf(f.desc, m[1])
		}
	}
	return "unknown hash"
}

// mosquittoConfig is mosquitto's configuration for compare. max_queued_messages 0 lifts the queue limit
// (1000 by default, beyond which it drops QoS 1 and 2 messages for a client) and persistence is off, so
// that it keeps and delivers every message in memory, as Lyre does. max_inflight_messages 0 lifts the
// limit of 20 unacknowledged messages per client: mosquitto 2.0 disconnects an MQTT 3.1.1 publisher with
// more QoS 2 messages in flight, and lyre-bench's publishers keep 64.
const mosquittoConfig = `per_listener_settings false
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
log_dest file %s
log_type error
log_type warning
`

// newMosquitto prepares mosquitto (the binary at bin) in env.dir/mosquitto, listening on a[0] (MQTT) and
// a[1] (MQTT over TLS), with a password file for benchUser made with passwdBin (mosquitto_passwd) when that
// exists.
func newMosquitto(ctx context.Context, bin, passwdBin string, env *brokerEnv, a []string) (*brokerProc, error) {
	dir := filepath.Join(env.dir, "mosquitto")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "mosquitto.log")
	cfg := fmt.Sprintf(mosquittoConfig, logPath)
	if os.Geteuid() == 0 {
		cfg += "user root\n" // else it drops to user mosquitto, who may not read this directory
	}
	auth, hash := false, ""
	if _, err := os.Stat(passwdBin); err == nil {
		pwFile := filepath.Join(dir, "passwd")
		if out, err := exec.CommandContext(ctx, passwdBin, "-c", "-b", pwFile, benchUser, benchPassword).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w: %s", passwdBin, err, bytes.TrimSpace(out))
		}
		cfg += "password_file " + pwFile + "\n"
		auth = true
		b, err := os.ReadFile(pwFile)
		if err != nil {
			return nil, err
		}
		hash = describeHash(string(b))
	}
	_, plain, _ := net.SplitHostPort(a[0])
	_, tlsPort, _ := net.SplitHostPort(a[1])
	cfg += fmt.Sprintf("listener %s 127.0.0.1\nlistener %s 127.0.0.1\ncertfile %s\nkeyfile %s\n", plain, tlsPort, env.certFile, env.keyFile)
	cfgPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return &brokerProc{name: "mosquitto", argv: []string{bin, "-c", cfgPath}, logPath: logPath,
		addrs: brokerAddrs{mqtt: a[0], tls: a[1]}, auth: auth, hash: hash}, nil
}

// exitErr adds a command's standard error to its exit error.
func exitErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}

// lyreVersion describes the Lyre binary at bin: what `lyre -version` prints and the commit it was built
// from: rev when set, else the one the binary records, if any.
func lyreVersion(bin, rev string) string {
	out, err := exec.Command(bin, "-version").Output()
	v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "lyre "))
	if err != nil || v == "" {
		v = "unknown version"
	}
	if rev != "" {
		return v + " (" + rev + ")"
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return v
	}
	var dirty string
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 7:
			rev = s.Value[:7]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev != "" {
		v += " (" + rev + dirty + ")"
	}
	return v
}

// mosquittoVersion is the version mosquitto -h prints first: "mosquitto version 2.0.11".
func mosquittoVersion(bin string) string {
	out, _ := exec.Command(bin, "-h").CombinedOutput() // exits 3 after printing its usage
	first, _, _ := strings.Cut(string(out), "\n")
	if v, ok := strings.CutPrefix(strings.TrimSpace(first), "mosquitto version "); ok {
		return v
	}
	return "unknown version"
}

// findLyre returns the Lyre binary compare runs: flagPath when set, else a lyre binary next to this
// executable, else one built from the module around the working directory into dir. For a binary it built,
// rev is the source's git commit ("473cbe9", "473cbe9-dirty"), when git knows it.
func findLyre(ctx context.Context, flagPath, dir string, progress io.Writer) (bin, rev string, err error) {
	if flagPath != "" {
		return flagPath, "", nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "lyre")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, "", nil
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "bin", "lyre") // dir/lyre is the broker's own directory
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", "", err
	}
	if progress != nil {
		fmt.Fprintf(progress, "building lyre from %s\n", root)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/lyre")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/lyre: %w\n%s", err, out)
	}
	// The build may not stamp the commit (-buildvcs=false in GOFLAGS, a git worktree): ask git.
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--always", "--dirty", "--abbrev=7").Output(); err == nil {
		rev = strings.TrimSpace(string(out))
	}
	return bin, rev, nil
}

// lyreModule is the module whose ./cmd/lyre compare builds when no lyre binary is at hand.
const lyreModule = "github.com/lyremq/lyre"

// moduleRoot finds the directory of Lyre's go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for line := range strings.Lines(string(b)) {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == lyreModule {
					return dir, nil
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("lyre-bench compare: no lyre binary next to lyre-bench and not inside the Lyre module to build one: pass -lyre PATH")
		}
		dir = parent
	}
}
