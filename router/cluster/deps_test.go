package cluster

import (
	"os/exec"
	"strings"
	"testing"
)

// The link depends on the router and NATS; the router never on the link or NATS, and the link never on
// a front-end or the virtual hosts (DESIGN.md §2); nor do the MQTT front-end and the virtual hosts depend
// on the link or NATS.
func TestDependencyDirection(t *testing.T) {
	for pkg, banned := range map[string][]string{
		"github.com/lyremq/lyre/router":         {"github.com/nats-io/", "github.com/lyremq/lyre/router/cluster"},
		"github.com/lyremq/lyre/router/cluster": {"github.com/lyremq/lyre/protocol", "github.com/lyremq/lyre/virtualhost"},
		// Session takeover goes through virtualhost.SessionDirectory, which cmd/lyre wires to the link.
		"github.com/lyremq/lyre/protocol/mqtt": {"github.com/nats-io/", "github.com/lyremq/lyre/router/cluster"},
		"github.com/lyremq/lyre/virtualhost":   {"github.com/nats-io/", "github.com/lyremq/lyre/router/cluster"},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range banned {
				if strings.HasPrefix(dep, b) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
