package stomp

import (
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/lyremq/lyre/protocol/prototest"
)

// A client connecting again with the same login and passcode is let in by the host's credential cache,
// without bcrypt; a wrong passcode after that is still refused after bcrypt, and does not spoil the
// cache for the right one.
func TestConnectCredentialCache(t *testing.T) {
	b := startBroker(t, nil)
	usersHost(t, b)
	hc := b.host.Config()
	hc.CredentialCache = time.Minute
	if err := b.host.Update(hc); err != nil {
		t.Fatal(err)
	}
	connect := func(passcode string) error {
		c, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.Host("default"), stomp.ConnOpt.HeartBeat(0, 0),
			stomp.ConnOpt.Logger(prototest.NopStompLogger{}), stomp.ConnOpt.Login("alice", passcode))
		if err == nil {
			err = c.Disconnect()
		}
		return err
	}
	expect := func(step string, checks, hits uint64) {
		t.Helper()
		if c := b.host.Counters(); c.PasswordChecks != checks || c.CredentialCacheHits != hits {
			t.Fatalf("%s: %d password checks, %d cache hits; want %d and %d", step, c.PasswordChecks, c.CredentialCacheHits, checks, hits)
		}
	}
	if err := connect("wonderland"); err != nil {
		t.Fatal(err)
	}
	expect("first connect", 1, 0)
	for range 3 {
		if err := connect("wonderland"); err != nil {
			t.Fatal(err)
		}
	}
	expect("three more", 1, 3)
	if err := connect("wonderlan"); err == nil {
		t.Fatal("wrong passcode accepted")
	}
	expect("a wrong passcode", 2, 3)
	if c := b.host.Counters(); c.AuthFailures != 1 {
		t.Fatalf("%d authentication failures, want 1", c.AuthFailures)
	}
	if err := connect("wonderland"); err != nil {
		t.Fatal(err)
	}
	expect("the right one again", 2, 4)
}
