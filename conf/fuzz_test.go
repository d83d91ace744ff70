package conf_test

import (
	"errors"
	"os"
	"reflect"
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
