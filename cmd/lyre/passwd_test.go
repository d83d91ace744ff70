package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// The output goes inside a user block as is: it parses back, its bcrypt hash checks the password, and a
// SCRAM-SHA-256 client logs in with it.
func TestPasswdPrintsUsersFileLines(t *testing.T) {
	for _, tt := range []struct {
		in         string
		args       []string
		iterations int
	}{
		{"s3cret pass\n", []string{"--cost", "4"}, 4096},
		{"s3cret pass\r\n", []string{"--cost", "4", "--iterations", "8192"}, 8192},
		{"s3cret pass", []string{"--cost=4", "--iterations=4096"}, 4096},
	} {
		var out, errOut bytes.Buffer
		if code := passwd(tt.args, strings.NewReader(tt.in), &out, &errOut); code != 0 || errOut.Len() != 0 {
			t.Fatalf("passwd(%q) = %d, stderr %q", tt.in, code, errOut.String())
		}
		path := filepath.Join(t.TempDir(), "users.hcl")
		writeFile(t, path, "user \"u\" {\n"+out.String()+"  groups = [\"g\"]\n}\n")
		users, err := conf.LoadUsers(path)
		if err != nil {
			t.Fatalf("users file with the output:\n%s\n%v", out.String(), err)
		}
		u := users[0]
		if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("s3cret pass")); err != nil {
			t.Errorf("input %q: %q is not the password's hash: %v", tt.in, u.PasswordHash, err)
		}
		if cost, _ := bcrypt.Cost([]byte(u.PasswordHash)); cost != 4 {
			t.Errorf("cost = %d, want 4", cost)
		}
		if u.SCRAM == nil || u.SCRAM.Iterations != tt.iterations || len(u.SCRAM.Salt) != 16 {
			t.Fatalf("SCRAM credentials %+v, want %d iterations", u.SCRAM, tt.iterations)
		}
		if strings.Contains(out.String()+errOut.String(), "s3cret") {
			t.Error("the password was echoed")
		}

		h, err := virtualhost.Open(conf.VirtualHost{Name: "h", UsersFile: path}, router.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := scram.SHA256.NewClient("u", "s3cret pass", "")
		if err != nil {
			t.Fatal(err)
		}
		conv := c.NewConversation()
		x, _ := h.StartAuth("SCRAM-SHA-256")
		c1, _ := conv.Step("")
		s1, _, err := x.Step([]byte(c1))
		c2, cerr := conv.Step(string(s1))
		s2, done, err2 := x.Step([]byte(c2))
		if err != nil || cerr != nil || err2 != nil || !done || x.User() != "u" {
			t.Errorf("SCRAM login with the output: %v, %v, %v (%q)", err, cerr, err2, s2)
		}
		h.Close()
	}
}

// A password SASLprep refuses still gets its bcrypt hash, alone, with a warning.
func TestPasswdWithoutSCRAM(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := passwd([]string{"--cost", "4"}, strings.NewReader("bell\a\n"), &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	users, err := conf.ParseUsers([]byte("user \"u\" {\n"+out.String()+"}\n"), "u.hcl")
	if err != nil || users[0].SCRAM != nil || !strings.Contains(errOut.String(), "no SCRAM-SHA-256 credentials") || strings.Contains(errOut.String(), "bell") {
		t.Errorf("stdout %q, stderr %q, %v", out.String(), errOut.String(), err)
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
		{[]string{"--iterations", "4095"}, "pw\n", 2, "--iterations must be from 4096"},
		{[]string{"--iterations", "x"}, "pw\n", 2, "invalid value"},
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
