package cluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A claim reaches the node that holds the session, and only while it holds it: NATS interest is the
// directory, and a claim nobody holds is answered "no responders" at once, without waiting.
func TestSessionClaimReachesHolder(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0].l, nodes[1].l
	got := make(chan string, 1)
	a.ServeSessions(func(req []byte) []byte {
		got <- string(req)
		return []byte("handed:" + string(req))
	})
	b.ServeSessions(func([]byte) []byte { t.Error("b holds nothing and was asked"); return nil })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, held, err := b.ClaimSession(ctx, "v", "dev1", []byte("c1")); held || err != nil {
		t.Fatalf("nobody holds dev1: held %v, %v", held, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a claim nobody holds took %v", d)
	}

	a.HoldSession("v", "dev1")
	a.HoldSession("v", "dev1") // counted: one release leaves it held
	waitFor(t, "a's hold on b", func() bool { return b.SessionHolders("v", "dev1") == 1 })
	reply, held, err := b.ClaimSession(ctx, "v", "dev1", []byte("c2"))
	if !held || err != nil || string(reply) != "handed:c2" || <-got != "c2" {
		t.Fatalf("claim of a held session: %q %v %v", reply, held, err)
	}
	// Another vhost's client id of the same name is another session.
	if _, held, _ := b.ClaimSession(ctx, "w", "dev1", nil); held {
		t.Error("dev1 of vhost w reached v's holder")
	}

	a.ReleaseSession("v", "dev1")
	a.ReleaseSession("v", "dev1")
	waitFor(t, "a's release on b", func() bool { return b.SessionHolders("v", "dev1") == 0 })
	if _, held, err := b.ClaimSession(ctx, "v", "dev1", nil); held || err != nil {
		t.Fatalf("after the release: held %v, %v", held, err)
	}
}

// A holder that does not answer leaves the claimer with its deadline's error.
func TestSessionClaimWithoutAnswer(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0].l, nodes[1].l
	a.ServeSessions(func([]byte) []byte { return nil })
	a.HoldSession("v", "x")
	waitFor(t, "a's hold on b", func() bool { return b.SessionHolders("v", "x") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, held, err := b.ClaimSession(ctx, "v", "x", nil); !held || err == nil {
		t.Fatalf("held %v, err %v; want held and the deadline", held, err)
	}
}

// Client ids of any bytes and length name one subject each; a long one is hashed, and the hash is
// no encoded level.
func TestSessionSubject(t *testing.T) {
	long := strings.Repeat("é", 100)
	for _, tc := range []struct{ vhost, id, want string }{
		{"v", "dev1", "lyre.v.s.dev1"},
		{"v", "a.b*>", "lyre.v.s.a~2Eb~2A~3E"},
		{"v", "", "lyre.v.s.~"},
		{"v", long, "lyre.v.s.~h"},
	} {
		got := sessionSubject(tc.vhost, tc.id)
		if tc.id == long {
			if !strings.HasPrefix(got, tc.want) || len(got) != len(tc.want)+64 {
				t.Errorf("long id: %q", got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("sessionSubject(%q, %q) = %q, want %q", tc.vhost, tc.id, got, tc.want)
		}
	}
	if sessionSubject("v", long) == sessionSubject("v", long+"x") {
		t.Error("two long ids share a subject")
	}
}
