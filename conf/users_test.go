package conf_test

import (
	"bytes"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"github.com/lyremq/lyre/conf"
)

const testHash = "$2a$04$KSbLR1x52L4HdjFntm8.NuoQ16xVd4PWGU.SjnZpyNGfov2z2xyei"

func b64(n int, c byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{c}, n)) }

// A users file of the older form (password only) and one with SCRAM credentials both load.
func TestParseUsersSCRAM(t *testing.T) {
	src := `user "old" {
  password = "` + testHash + `"
}
user "new" {
  password = "` + testHash + `"
  scram_sha_256 {
    salt       = "` + b64(16, 1) + `"
    iterations = 8192
    stored_key = "` + b64(32, 2) + `"
    server_key = "` + b64(32, 3) + `"
  }
  groups = ["g"]
}
user "default-iterations" {
  password = "` + testHash + `"
  scram_sha_256 {
    salt       = "` + b64(8, 4) + `"
    stored_key = "` + b64(32, 5) + `"
    server_key = "` + b64(32, 6) + `"
  }
}
`
	users, err := conf.ParseUsers([]byte(src), "u.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := []conf.User{
		{Name: "old", PasswordHash: testHash},
		{Name: "new", PasswordHash: testHash, Groups: []string{"g"}, SCRAM: &conf.SCRAMCredentials{
			Salt: bytes.Repeat([]byte{1}, 16), Iterations: 8192, StoredKey: bytes.Repeat([]byte{2}, 32), ServerKey: bytes.Repeat([]byte{3}, 32),
		}},
		{Name: "default-iterations", PasswordHash: testHash, SCRAM: &conf.SCRAMCredentials{
			Salt: bytes.Repeat([]byte{4}, 8), Iterations: conf.SCRAMIterations, StoredKey: bytes.Repeat([]byte{5}, 32), ServerKey: bytes.Repeat([]byte{6}, 32),
		}},
	}
	if !reflect.DeepEqual(users, want) {
		t.Errorf("users =\n%+v\nwant\n%+v", users, want)
	}
}

func TestParseUsersSCRAMErrors(t *testing.T) {
	src := `user "a" {
  password = "` + testHash + `"
  scram_sha_256 {
    salt       = "not base64!"
    iterations = 4095
    stored_key = "` + b64(31, 1) + `"
  }
  scram_sha_256 {
  }
  scram_sha256 {
  }
}
user "b" {
  password = "` + testHash + `"
  scram_sha_256 "x" {
  }
  scram_sha_256 {
    salt       = "` + b64(7, 1) + `"
    iterations = 10000001
    stored_key = "` + b64(32, 1) + `"
    server_key = "` + b64(32, 1) + `"
    pepper     = "x"
  }
}
`
	_, err := conf.ParseUsers([]byte(src), "u.hcl")
	want := strings.Join([]string{
		`u.hcl:3:3: scram_sha_256 block of user "a" needs server_key = "<base64>" (see lyre passwd)`,
		`u.hcl:4:18: salt of user "a" is not base64 (see lyre passwd)`,
		`u.hcl:5:18: iterations of user "a" must be from 4096 to 10000000`,
		`u.hcl:6:18: stored_key of user "a" must be 32 bytes, not 31`,
		`u.hcl:8:3: duplicate scram_sha_256 block (first at u.hcl:3:3)`,
		`u.hcl:10:3: unknown block "scram_sha256"; did you mean "scram_sha_256"?`,
		`u.hcl:15:17: scram_sha_256 block takes no name`,
		`u.hcl:18:18: salt of user "b" must be 8 to 64 bytes, not 7`,
		`u.hcl:19:18: iterations of user "b" must be from 4096 to 10000000`,
		`u.hcl:22:5: unknown attribute "pepper"`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("ParseUsers:\n%v\nwant:\n%s", err, want)
	}
}

// Format writes what ParseUsers reads back, whatever the names hold.
func TestUserFormatRoundTrip(t *testing.T) {
	s := &conf.SCRAMCredentials{Salt: []byte("0123456789abcdef"), Iterations: 4096, StoredKey: bytes.Repeat([]byte{0xfe}, 32), ServerKey: bytes.Repeat([]byte{7}, 32)}
	in := []conf.User{
		{Name: "plain", PasswordHash: testHash},
		{Name: `q"uo\te ${x} %{y} $$ tab	é`, PasswordHash: testHash, SCRAM: s, Groups: []string{"g1", "${g2}", "\x01"}},
		{Name: "no-groups", PasswordHash: testHash, SCRAM: s, Groups: []string{}},
	}
	var src strings.Builder
	for _, u := range in {
		src.WriteString(u.Format())
	}
	out, err := conf.ParseUsers([]byte(src.String()), "u.hcl")
	if err != nil {
		t.Fatalf("%v\n%s", err, src.String())
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("read back\n%+v\nwant\n%+v\nfrom\n%s", out, in, src.String())
	}
}
