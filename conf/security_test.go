package conf_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
)

func TestSecurityOptionsDecoded(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"users.hcl", "cert.pem", "key.pem", "ca.pem"} {
		src, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			src, err = os.ReadFile(filepath.Join("testdata", "tls", f))
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), src, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := `
access_rule {
  allow  = ["admins"]
  action = "admin"
}
connector "tls" {
  bind     = "tls://127.0.0.1:8883"
  protocol = "mqtt"
  tls {
    cert_file      = "cert.pem"
    key_file       = "key.pem"
    client_ca_file = "ca.pem"
    client_auth    = "require"
    min_version    = "1.3"
    cert_identity  = "cn"
  }
}
connector "auto" {
  bind   = "tcp://127.0.0.1:61613"
  detect = ["tls", "mqtt", "stomp"]
  tls {
    cert_file = "` + filepath.Join(dir, "cert.pem") + `"
    key_file  = "key.pem"
  }
}
virtual_host "a" {
  users_file         = "users.hcl"
  anonymous          = true
  max_connections    = 10
  max_queues         = 20
  max_message_length = "1MB"
  client_ids         = ["%u-*", "dev-*"]
  access_rule {
    deny   = ["bob"]
    action = ["send", "receive"]
    kind   = "topic"
    id     = "secret.**"
  }
  access_rule {
    allow = ["+"]
    kind  = "*"
    id    = "devices.%c.**"
  }
  queue "orders.**" {
    nak_limit         = 3
    dlq               = "dlq.*"
    quota             = "10MB"
    quota_messages    = 500
    full_policy       = "drop_head"
    auto_delete_after = "1m"
  }
  queue "**" {
  }
  topic "feeds.*" {
    slow_consumer_policy = "block"
  }
  topic "{v[0-9]+}.**" {
  }
}
`
	path := filepath.Join(dir, "lyre.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	// Relative files resolve against the config file's directory, not the working directory.
	c, err := conf.Load(path)
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	if want := []conf.AccessRule{{Allow: []string{"admins"}, Actions: []string{"admin"}}}; !reflect.DeepEqual(c.AccessRules, want) {
		t.Errorf("broker access rules = %+v, want %+v", c.AccessRules, want)
	}
	wantTLS := &conf.TLS{
		CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
		ClientCAFile: filepath.Join(dir, "ca.pem"), ClientAuth: "require", MinVersion: "1.3", CertIdentity: "cn",
		CertIdentityHosts: []string{"a"}, // the default: the connector's host, here the first one
	}
	tc := c.Connector("tls")
	if !reflect.DeepEqual(tc.TLS, wantTLS) || !tc.BindsTLS() || tc.DetectsTLS() || tc.Network != "tcp" || tc.Address != "127.0.0.1:8883" {
		t.Errorf("tls connector = %+v (tls %+v)", tc, tc.TLS)
	}
	ac := c.Connector("auto")
	wantAuto := &conf.TLS{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"), ClientAuth: "none", MinVersion: "1.2"}
	if !reflect.DeepEqual(ac.TLS, wantAuto) || ac.BindsTLS() || !ac.DetectsTLS() {
		t.Errorf("auto connector tls = %+v", ac.TLS)
	}
	if got := ac.Protocols(); !reflect.DeepEqual(got, []string{"mqtt", "stomp"}) {
		t.Errorf("Protocols() = %q, want the application protocols only", got)
	}
	h := c.VirtualHosts[0]
	if h.UsersFile != filepath.Join(dir, "users.hcl") || !h.Anonymous || h.MaxConnections != 10 || h.MaxQueues != 20 || h.MaxMessageLength != 1<<20 ||
		!reflect.DeepEqual(h.ClientIDs, []string{"%u-*", "dev-*"}) {
		t.Errorf("host = %+v", h)
	}
	wantRules := []conf.AccessRule{
		{Deny: []string{"bob"}, Actions: []string{"send", "receive"}, Kind: "topic", ID: "secret.**"},
		{Allow: []string{"+"}, Kind: "*", ID: "devices.%c.**"},
	}
	if !reflect.DeepEqual(h.AccessRules, wantRules) {
		t.Errorf("host access rules = %+v, want %+v", h.AccessRules, wantRules)
	}
	wantQueues := []conf.QueuePolicy{
		{Pattern: "orders.**", NakLimit: 3, DLQ: "dlq.*", Quota: 10 << 20, QuotaMessages: 500, FullPolicy: conf.FullDropHead, AutoDeleteAfter: time.Minute},
		{Pattern: "**", FullPolicy: conf.FullBlock},
	}
	if !reflect.DeepEqual(h.Queues, wantQueues) {
		t.Errorf("queue policies = %+v, want %+v", h.Queues, wantQueues)
	}
	wantTopics := []conf.TopicPolicy{{Pattern: "feeds.*", SlowConsumerPolicy: conf.SlowBlock}, {Pattern: "{v[0-9]+}.**", SlowConsumerPolicy: conf.SlowBlock}}
	if !reflect.DeepEqual(h.Topics, wantTopics) {
		t.Errorf("topic policies = %+v, want %+v", h.Topics, wantTopics)
	}
}

func TestLoadUsers(t *testing.T) {
	users, err := conf.LoadUsers("testdata/users.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Name != "alice" || !reflect.DeepEqual(users[0].Groups, []string{"admins", "devices"}) ||
		users[1].Name != "bob" || users[1].Groups != nil || !strings.HasPrefix(users[1].PasswordHash, "$2a$04$") {
		t.Errorf("users = %+v", users)
	}
}

func TestParseUsersErrors(t *testing.T) {
	const hash = `"$2a$04$KSbLR1x52L4HdjFntm8.NuoQ16xVd4PWGU.SjnZpyNGfov2z2xyei"`
	src := "user \"a\" {\n  password = " + hash + "\n}\n" +
		"user \"a\" {\n  password = " + hash + "\n}\n" +
		"user \"+\" {\n  password = \"secret\"\n  groups = [\"\", \"ok\"]\n}\n" +
		"user \"c\" {\n  colour = 1\n}\n" +
		"team \"g\" {\n}\n" +
		"mode = 1\n" +
		"group \"ok\" {\n  client_ids = [\"dev-*\", \"dev-%c\"]\n}\n" +
		"group \"ok\" {\n}\n" +
		"user \"ok\" {\n  password = " + hash + "\n  client_ids = [\"\"]\n}\n"
	_, err := conf.ParseUsers([]byte(src), "u.hcl")
	want := strings.Join([]string{
		`u.hcl:4:6: duplicate user "a" (first defined at u.hcl:1:6)`,
		`u.hcl:7:6: user name "+" is reserved for access rules ("+" any authenticated user, "*" anyone)`,
		`u.hcl:8:14: password of user "+" is not a bcrypt hash (see lyre passwd)`,
		`u.hcl:9:13: group name "" must not be empty`,
		`u.hcl:11:1: user "c" needs a password = "<bcrypt hash>" (see lyre passwd)`,
		`u.hcl:12:3: unknown attribute "colour"`,
		`u.hcl:14:1: unknown block "team"`,
		`u.hcl:16:1: unknown attribute "mode"`,
		`u.hcl:18:26: client_ids entry "dev-%c": "%" may only start "%u" (the user name)`,
		`u.hcl:20:7: duplicate group "ok" (first defined at u.hcl:17:7)`,
		`u.hcl:22:6: user "ok" is also the name of a group it is not in; access rules name users and groups alike, so the name would stand for both`,
		`u.hcl:24:17: client_ids entry "": empty pattern`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("ParseUsers:\n%v\nwant:\n%s", err, want)
	}
	// A user in a group of its own name: the name means the group, which holds the user.
	if _, err := conf.ParseUsers([]byte("user \"admin\" {\n  password = "+hash+"\n  groups = [\"admin\"]\n}\n"), "u.hcl"); err != nil {
		t.Errorf("a user in its own group: %v", err)
	}
	if long := strings.Repeat("x", conf.MaxUserNameLength+1); true {
		_, err := conf.ParseUsers([]byte("user \""+long+"\" {\n  password = "+hash+"\n}\n"), "u.hcl")
		if err == nil || !strings.Contains(err.Error(), "is longer than 256 bytes") {
			t.Errorf("over-long user name: %v", err)
		}
	}
}

func TestCheckPattern(t *testing.T) {
	for _, tt := range []struct {
		p            string
		placeholders bool
		wantErr      string
	}{
		{p: "orders.**"},
		{p: "devices.*.temp"},
		{p: "**"},
		{p: "a.{v1.*}.b"},
		{p: "a%2Eb.c"},
		{p: "devices.%c.**", placeholders: true},
		{p: "users.%u", placeholders: true},
		{p: "users.%u", wantErr: "'%' must start an escape %XX"},
		{p: "", wantErr: "empty pattern"},
		{p: "a.**.b", wantErr: `"**" must be the last level`},
		{p: "a..b", wantErr: "empty level"},
		{p: ".a", wantErr: "empty level"},
		{p: "a.b*", wantErr: `wildcard "*" must occupy a whole level`},
		{p: "a.{[}", wantErr: "missing closing ]"},
		{p: "a.{x", wantErr: "unterminated regex level"},
		{p: "a.x}", wantErr: "must be wholly enclosed"},
	} {
		err := conf.CheckPattern(tt.p, tt.placeholders)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckPattern(%q, %v) = %v, want %q", tt.p, tt.placeholders, err, tt.wantErr)
		}
	}
}
