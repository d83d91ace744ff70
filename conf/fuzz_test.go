package conf_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lyremq/lyre/conf"
)

// FuzzParse checks that Parse never panics, is deterministic, and returns either a config that
// validates or only positioned errors.
func FuzzParse(f *testing.F) {
	f.Add(conf.DefaultHCL())
	if full, err := os.ReadFile("testdata/full.hcl"); err == nil {
		f.Add(full)
	}
	for _, c := range errorCases {
		f.Add([]byte(c.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
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
