package protocol_test

import (
	"errors"
	"testing"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// Recheck's decisions after a reload, one per case: who may stay, which subscriptions go, which need a
// gate they lack.
func TestRecheckDecides(t *testing.T) {
	rules := []conf.AccessRule{
		{Deny: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "a.secret.**"},
		{Allow: []string{"*"}, Actions: []string{"receive"}, Kind: "topic", ID: "a.**"},
		{Allow: []string{"*"}, Actions: []string{"consume"}, Kind: "queue", ID: "q1"},
		{Allow: []string{"*"}, Actions: []string{"connect"}},
	}
	h := virtualhost.New(conf.VirtualHost{Name: "h", Anonymous: true, AccessRules: rules}, router.Options{})
	t.Cleanup(h.Close)
	g, err := router.NewGrammar(router.STOMPGrammarConfig())
	if err != nil {
		t.Fatal(err)
	}
	held := func(name string, whole, gated bool) protocol.Held {
		f, err := g.ParseFilter(name)
		if err != nil {
			t.Fatal(err)
		}
		return protocol.Held{Name: name, Filter: f, Whole: whole, Gated: gated}
	}
	anon := virtualhost.Principal{}
	for _, tt := range []struct {
		name    string
		held    []protocol.Held
		err     error
		revoked int
	}{
		{"allowed whole", []protocol.Held{held("/topic/a.b", false, false), held("/queue/q1", false, false)}, nil, 0},
		{"allowed in part, gated", []protocol.Held{held("/topic/a.**", false, true)}, nil, 0},
		{"allowed in part, no gate", []protocol.Held{held("/topic/a.**", false, false)}, protocol.ErrAccessChanged, 0},
		{"durable must be whole", []protocol.Held{held("/topic/a.**", true, false)}, protocol.ErrRevoked, 1},
		{"nothing allowed", []protocol.Held{held("/topic/b.*", false, false), held("/queue/q2", false, false), held("/topic/a.b", false, false)}, protocol.ErrRevoked, 2},
		{"temporary destinations are judged too", []protocol.Held{held("/temp-queue/x", false, false)}, protocol.ErrRevoked, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := protocol.Recheck(h, anon, "c", tt.held)
			if !errors.Is(v.Err, tt.err) || (v.Err == nil) != (tt.err == nil) || len(v.Revoked) != tt.revoked {
				t.Fatalf("Verdict %+v, want err %v and %d revoked", v, tt.err, tt.revoked)
			}
		})
	}
	c := h.Config()
	c.Anonymous = false
	if err := h.Update(c); err != nil {
		t.Fatal(err)
	}
	if v := protocol.Recheck(h, anon, "c", nil); !errors.Is(v.Err, virtualhost.ErrNotAuthorized) {
		t.Fatalf("anonymous after anonymous access ended: %v", v.Err)
	}
	h.Retire()
	if v := protocol.Recheck(h, anon, "c", nil); !errors.Is(v.Err, protocol.ErrHostRemoved) {
		t.Fatalf("retired host: %v", v.Err)
	}
}
