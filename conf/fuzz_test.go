package conf_test

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lyremq/lyre/conf"
)

// FuzzParse checks that Parse never panics, is deterministic, and returns either a config that
// validates or only positioned errors.
func FuzzParse(f *testing.F) {
	// The embedded file is mostly comments; its statements alone keep the seed small, which matters:
	// the fuzzer minimizes every interesting input, and minimizing 4KB of comments stalls a short run.
	f.Add(stripComments(conf.DefaultHCL()))
	if full, err := os.ReadFile("testdata/full.hcl"); err == nil {
		f.Add(stripComments(full))
	}
	for _, c := range errorCases {
		f.Add([]byte(c.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > maxFuzzInput {
			return
		}
		c, err := conf.Parse(src, "f.hcl")
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if verr := c.Validate(); verr != nil {
				t.Fatalf("parsed config does not validate: %v", verr)
			}
			for _, cn := range c.Connectors {
				if cn.Network != "tcp" || cn.Address == "" || len(cn.Protocols()) == 0 {
					t.Fatalf("accepted connector is incomplete: %+v", cn)
				}
			}
			return
		}
		if c != nil {
			t.Fatal("Parse returned a config along with an error")
		}
		var errs conf.Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("Parse error is not a non-empty conf.Errors: %T %v", err, err)
		}
		for _, e := range errs {
			if !strings.HasPrefix(e.Pos, "f.hcl") || e.Msg == "" {
				t.Fatalf("error without position or message: %+v", e)
			}
		}
		if _, err2 := conf.Parse(src, "f.hcl"); err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("Parse is not deterministic:\n%v\nthen:\n%v", err, err2)
		}
	})
}

// maxFuzzInput skips large inputs: HCL's scanner costs about a microsecond a byte, far more under
// coverage instrumentation, and size adds nothing the seeds do not already cover.
const maxFuzzInput = 2048

// stripComments drops comment-only and blank lines and trailing "  # ..." comments.
func stripComments(src []byte) []byte {
	var out []byte
	for _, line := range strings.Split(string(src), "\n") {
		if i := strings.Index(line, "  #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimRight(line, " ")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, line+"\n"...)
	}
	return out
}

func TestStrippedDefaultIsTheDefault(t *testing.T) {
	src := stripComments(conf.DefaultHCL())
	if len(src) > maxFuzzInput {
		t.Fatalf("stripped default is %d bytes, over the fuzz input cap", len(src))
	}
	c, err := conf.Parse(src, conf.DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Connectors, conf.Default().Connectors) || !reflect.DeepEqual(c.VirtualHosts, conf.Default().VirtualHosts) {
		t.Errorf("stripped default differs: %+v", c)
	}
}

// FuzzParseUsers checks that a users file never panics the parser and that what it accepts keeps the
// promises ParseUsersFile documents: unique, non-empty, bounded names that are not rule wildcards, bcrypt
// hashes, SCRAM credentials within their bounds, client id patterns that check, and no user named like a
// group it is not in. Refusals carry a position and are deterministic.
func FuzzParseUsers(f *testing.F) {
	if users, err := os.ReadFile("testdata/users.hcl"); err == nil {
		f.Add(stripComments(users))
	}
	f.Add([]byte("user \"a\" {\n  password = \"" + testHash + "\"\n  groups = [\"g\"]\n  client_ids = [\"%u-*\"]\n}\ngroup \"g\" {\n  client_ids = [\"dev-+\"]\n}\n"))
	f.Add([]byte("user \"n\" {\n  password = \"" + testHash + "\"\n  scram_sha_256 {\n    salt = \"" + b64(16, 1) +
		"\"\n    iterations = 4096\n    stored_key = \"" + b64(32, 2) + "\"\n    server_key = \"" + b64(32, 3) + "\"\n  }\n}\n"))
	f.Add([]byte("user \"+\" {\n  password = \"x\"\n  groups = [\"\"]\n}\nteam \"t\" {}\nmode = 1\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > maxFuzzInput {
			return
		}
		file, err := conf.ParseUsersFile(src, "u.hcl")
		if err != nil {
			if file != nil {
				t.Fatal("ParseUsersFile returned a file along with an error")
			}
			var errs conf.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty conf.Errors: %T %v", err, err)
			}
			for _, e := range errs {
				if !strings.HasPrefix(e.Pos, "u.hcl") || e.Msg == "" {
					t.Fatalf("error without position or message: %+v", e)
				}
			}
			if _, err2 := conf.ParseUsersFile(src, "u.hcl"); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("not deterministic:\n%v\nthen:\n%v", err, err2)
			}
			return
		}
		checkUsersFile(t, file)
	})
}

// checkUsersFile fails t where an accepted users file breaks a documented promise.
func checkUsersFile(t *testing.T, f *conf.UsersFile) {
	t.Helper()
	name := func(kind, n string) {
		if n == "" || n == "+" || n == "*" || len(n) > conf.MaxUserNameLength {
			t.Fatalf("accepted %s name %q", kind, n)
		}
	}
	patterns := func(owner string, ps []string) {
		for _, p := range ps {
			if err := conf.CheckClientIDPattern(p); err != nil {
				t.Fatalf("%s: accepted client_ids entry %q: %v", owner, p, err)
			}
		}
	}
	groups := map[string]bool{}
	for _, g := range f.Groups {
		name("group", g.Name)
		if groups[g.Name] {
			t.Fatalf("duplicate group %q accepted", g.Name)
		}
		groups[g.Name] = true
		patterns(g.Name, g.ClientIDs)
	}
	for _, u := range f.Users {
		for _, g := range u.Groups {
			name("group", g)
			groups[g] = true
		}
	}
	seen := map[string]bool{}
	for _, u := range f.Users {
		name("user", u.Name)
		if seen[u.Name] {
			t.Fatalf("duplicate user %q accepted", u.Name)
		}
		seen[u.Name] = true
		if len(u.PasswordHash) != 60 || !strings.HasPrefix(u.PasswordHash, "$2") {
			t.Fatalf("user %q: accepted password hash %q", u.Name, u.PasswordHash)
		}
		if s := u.SCRAM; s != nil {
			if len(s.Salt) < conf.SCRAMMinSalt || len(s.Salt) > conf.SCRAMMaxSalt ||
				s.Iterations < conf.SCRAMIterations || s.Iterations > conf.SCRAMMaxIterations ||
				len(s.StoredKey) != conf.SCRAMKeyLength || len(s.ServerKey) != conf.SCRAMKeyLength {
				t.Fatalf("user %q: accepted SCRAM credentials %+v", u.Name, s)
			}
		}
		patterns(u.Name, u.ClientIDs)
		if groups[u.Name] && !slices.Contains(u.Groups, u.Name) {
			t.Fatalf("user %q shares a group's name without being in it", u.Name)
		}
	}
}
