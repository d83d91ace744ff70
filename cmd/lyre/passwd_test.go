package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
)

func TestPasswdPrintsBcryptHashLast(t *testing.T) {
	for _, in := range []string{"s3cret pass\n", "s3cret pass\r\n", "s3cret pass"} {
		var out, errOut bytes.Buffer
		if code := passwd([]string{"--cost", "4"}, strings.NewReader(in), &out, &errOut); code != 0 {
			t.Fatalf("passwd(%q) = %d, stderr %q", in, code, errOut.String())
		}
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		hash := lines[len(lines)-1]
		if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")); err != nil {
			t.Errorf("input %q: last line %q is not the password's hash: %v", in, hash, err)
		}
		if cost, _ := bcrypt.Cost([]byte(hash)); cost != 4 {
			t.Errorf("cost = %d, want 4", cost)
		}
		// The printed hash is accepted by the users file parser as is.
		if _, err := conf.ParseUsers([]byte("user \"u\" {\n  password = \""+hash+"\"\n}\n"), "u.hcl"); err != nil {
			t.Errorf("users file with the printed hash: %v", err)
		}
		if strings.Contains(out.String()+errOut.String(), "s3cret") {
			t.Error("the password was echoed")
		}
	}
}

func TestPasswdRefusals(t *testing.T) {
	for _, tt := range []struct {
		args []string
		in   string
		code int
		msg  string
	}{
		{nil, "\n", 1, "empty password"},
		{nil, "", 1, "empty password"},
		{nil, strings.Repeat("x", 73) + "\n", 1, "longer than 72 bytes"},
		{nil, strings.Repeat("x", 10000), 1, "longer than 72 bytes"},
		{[]string{"--cost", "3"}, "pw\n", 2, "--cost must be"},
		{[]string{"pw"}, "", 2, "unexpected argument"},
	} {
		var out, errOut bytes.Buffer
		if code := passwd(tt.args, strings.NewReader(tt.in), &out, &errOut); code != tt.code || !strings.Contains(errOut.String(), tt.msg) || out.Len() != 0 {
			t.Errorf("passwd(%q, %.20q) = %d, stdout %q, stderr %q; want %d and %q", tt.args, tt.in, code, out.String(), errOut.String(), tt.code, tt.msg)
		}
	}
}

// run dispatches the passwd subcommand (stdin is the process's, so only the usage path is driven here).
func TestRunDispatchesPasswd(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"passwd", "--help"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage: lyre passwd") {
		t.Errorf("run(passwd --help) = %d, stderr %q", code, errOut.String())
	}
}

func TestAnonymousWarningOnNonLoopbackBind(t *testing.T) {
	for _, tt := range []struct {
		name, hcl string
		warn      bool
	}{
		{"loopback", `connector "c" {
  bind = "tcp://127.0.0.1:0"
  protocol = "mqtt"
}
virtual_host "h" {
  anonymous = true
}`, false},
		{"every interface", `connector "c" {
  bind = "tcp://0.0.0.0:0"
  protocol = "mqtt"
}
virtual_host "h" {
  anonymous = true
}`, true},
		{"every interface, host closed", `connector "c" {
  bind = "tcp://:0"
  protocol = "mqtt"
}
virtual_host "h" {
}`, false},
		{"mqtt connector pinned to a closed host", `connector "c" {
  bind = "tcp://0.0.0.0:0"
  protocol = "mqtt"
  virtual_host = "closed"
}
virtual_host "open" {
  anonymous = true
}
virtual_host "closed" {
}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := conf.Parse([]byte(tt.hcl), "t.hcl")
			if err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.WarnLevel)
			warnAnonymous(cfg, zap.New(core))
			got := logs.FilterMessageSnippet("anonymous access is on").Len() > 0
			if got != tt.warn {
				t.Errorf("warned = %v, want %v (%v)", got, tt.warn, logs.All())
			}
		})
	}
}

// --check prints every security problem of a config, each with its position, and fails.
func TestCheckPrintsEverySecurityProblem(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/lyre.hcl"
	writeFile(t, path, `connector "c" {
  bind = "tls://127.0.0.1:8883"
  protocol = "mqtt"
}
virtual_host "h" {
  users_file = "missing.hcl"
  access_rule {
    allow = ["+"]
    deny = ["bob"]
    action = ["publish"]
  }
  queue "a.**.b" {
  }
}
`)
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"--config", path, "--check"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1; stdout %q", code, out.String())
	}
	for _, want := range []string{
		path + ":2:10: a tls:// connector needs a tls { cert_file = ... key_file = ... } block",
		path + ":6:16: users_file: open " + dir + "/missing.hcl: no such file or directory",
		path + `:9:12: access_rule sets both allow and deny; use one rule for each`,
		path + `:10:15: unknown action "publish"`,
		path + `:12:9: invalid queue pattern "a.**.b": "**" must be the last level`,
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("--check output lacks %q:\n%s", want, errOut.String())
		}
	}
}
