package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/go-stomp/stomp/v3"
)

const credCacheConfig = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
}
virtual_host "default" {
  host_names = ["localhost"]
  users_file = "users.hcl"
}
`

// A broker run from a configuration file caches verified credentials (credential_cache's default):
// reconnecting, over MQTT or STOMP, costs no bcrypt. A password changed in the users file and reloaded
// is refused at once, though the old one was cached a moment before.
func TestReloadPasswordChangeWithCredentialCache(t *testing.T) {
	dir := t.TempDir()
	path, users := filepath.Join(dir, "lyre.hcl"), filepath.Join(dir, "users.hcl")
	writeFile(t, users, fmt.Sprintf("user \"alice\" {\n  password = %q\n}\n", hashFor(t, alicePw)))
	writeFile(t, path, credCacheConfig)
	b, _ := startFileBroker(t, path)
	addr := b.Addrs()["auto"].String()
	h := b.hosts.Lookup("default")
	mqttLogin := func(pw string) byte {
		t.Helper()
		c, code := dialWatched(t, addr, "dev", "alice", pw, nil)
		if c != nil && code == connackAccepted {
			c.Disconnect(0)
		}
		return code
	}
	stompLogin := func(pw string) error {
		c, err := stomp.Dial("tcp", addr, stomp.ConnOpt.Login("alice", pw), stomp.ConnOpt.Host("localhost"))
		if err == nil {
			err = c.Disconnect()
		}
		return err
	}
	for i := range 3 {
		if code := mqttLogin(alicePw); code != connackAccepted {
			t.Fatalf("mqtt login %d: CONNACK %#x", i, code)
		}
		if err := stompLogin(alicePw); err != nil {
			t.Fatalf("stomp login %d: %v", i, err)
		}
	}
	if c := h.Counters(); c.PasswordChecks != 1 || c.CredentialCacheHits != 5 {
		t.Fatalf("six logins: %d password checks, %d cache hits; want 1 and 5", c.PasswordChecks, c.CredentialCacheHits)
	}

	writeFile(t, users, fmt.Sprintf("user \"alice\" {\n  password = %q\n}\n", hashFor(t, "changed")))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if code := mqttLogin(alicePw); code != connackBadCredentials {
		t.Fatalf("mqtt, old password after the reload: CONNACK %#x", code)
	}
	if err := stompLogin(alicePw); err == nil {
		t.Fatal("stomp, old password after the reload: accepted")
	}
	if code := mqttLogin("changed"); code != connackAccepted {
		t.Fatalf("mqtt, new password: CONNACK %#x", code)
	}
	if err := stompLogin("changed"); err != nil {
		t.Fatalf("stomp, new password: %v", err)
	}
}
