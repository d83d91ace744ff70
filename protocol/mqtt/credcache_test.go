package mqtt

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/router"
	"github.com/lyremq/lyre/virtualhost"
)

// cachedHost is a host "secure" without anonymous access whose users file has alice ("wonderland"),
// with a credential cache.
func cachedHost(t testing.TB) *virtualhost.Host {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users.hcl")
	if err := os.WriteFile(path, []byte(conf.User{Name: "alice", PasswordHash: string(hash)}.Format()), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := virtualhost.Open(conf.VirtualHost{Name: "secure", UsersFile: path, CredentialCache: time.Minute}, router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// A client connecting again with the same user name and password is let in by the host's credential
// cache, without bcrypt; a wrong password after that is still refused (CONNACK 0x04) after bcrypt, and
// does not spoil the cache for the right one.
func TestConnectCredentialCache(t *testing.T) {
	h := cachedHost(t)
	b := startBroker(t, func(c *conf.Connector) { c.VirtualHost = "secure" }, h)
	connect := func(password string) error {
		o := paho.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID("dev1").SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(waitTime).
			SetUsername("alice").SetPassword(password)
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(waitTime) {
			t.Fatal("paho: connect timed out")
		}
		if tok.Error() == nil {
			c.Disconnect(0)
		}
		return tok.Error()
	}
	expect := func(step string, checks, hits uint64) {
		t.Helper()
		if c := h.Counters(); c.PasswordChecks != checks || c.CredentialCacheHits != hits {
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
	if err := connect("wonderlan"); err == nil || !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("wrong password: %v, want %v", err, packets.ErrorRefusedBadUsernameOrPassword)
	}
	expect("a wrong password", 2, 3)
	if err := connect("wonderland"); err != nil {
		t.Fatal(err)
	}
	expect("the right one again", 2, 4)
}
