package store_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: store and memstore use the standard library only, badgerstore adds badger and never
// zap (it takes a Logger), and nothing under store reaches the router or the front-ends.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	list := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for _, pkg := range []string{"github.com/lyremq/lyre/store", "github.com/lyremq/lyre/store/memstore"} {
		for _, dep := range list(pkg) {
			if !strings.HasPrefix(dep, "github.com/lyremq/lyre/store") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
	for _, dep := range list("github.com/lyremq/lyre/store/badgerstore") {
		if strings.Contains(dep, "go.uber.org/zap") || strings.Contains(dep, "lyre/router") || strings.Contains(dep, "lyre/protocol") {
			t.Errorf("badgerstore depends on %s", dep)
		}
	}
}
