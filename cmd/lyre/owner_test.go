package main

import (
	"testing"
	"time"
)

// A persistent session's owner is stored with it: after a restart another user still may not take the
// session (nor its queued messages) by reusing its client id, and its owner resumes it as before.
func TestRestoredSessionKeepsItsOwner(t *testing.T) {
	start := durableSecurityBroker(t)

	b1, addr := start()
	bob, code, _ := mqttPersistent(t, addr, "bob-dev", "bob", bobPass)
	if code != connackAccepted {
		t.Fatalf("bob CONNACK %#x", code)
	}
	if tok := bob.Subscribe("alerts/public/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	bob.Disconnect(100)
	shutdown(t, b1)

	b2, addr := start()
	t.Cleanup(func() { shutdown(t, b2) })
	pub := mqttLogin(t, addr, "alice-pub", "alice", alicePass)
	mqttPublish(t, pub, "alerts/public/queued", 1, "for bob")
	if _, code, _ := mqttPersistent(t, addr, "bob-dev", "alice", alicePass); code != connackNotAuthorized {
		t.Fatalf("alice taking bob's restored session: CONNACK %#x, want 0x05", code)
	}
	_, code, ch := mqttPersistent(t, addr, "bob-dev", "bob", bobPass)
	if code != connackAccepted {
		t.Fatalf("bob back: CONNACK %#x", code)
	}
	expectMQTT(t, ch, "alerts/public/queued", "for bob")
}
