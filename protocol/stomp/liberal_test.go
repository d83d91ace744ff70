package stomp

import (
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// TestVersion10_AckClientIndividual (issue 13, item 15): a STOMP 1.0 client may subscribe with
// ack:client-individual, the de-facto extension ActiveMQ and RabbitMQ accepted before 1.1 named it; an ACK
// then settles that message alone, not the earlier ones as ack:client would.
func TestVersion10_AckClientIndividual(t *testing.T) {
	b := startBroker(t, nil)
	pub := b.dial(t)
	for _, body := range []string{"a", "b"} {
		send(t, pub, "/queue/v10ind", body)
	}
	c := b.dial(t, stomp.ConnOpt.AcceptVersion(stomp.V10))
	if c.Version() != stomp.V10 {
		t.Fatalf("version %s", c.Version())
	}
	sub := subscribe(t, c, "/queue/v10ind", stomp.AckClientIndividual)
	ma, mb := recv(t, sub), recv(t, sub)
	if string(ma.Body)+string(mb.Body) != "ab" {
		t.Fatalf("got %q %q", ma.Body, mb.Body)
	}
	if err := c.Ack(mb); err != nil { // b only: individual, not cumulative
		t.Fatal(err)
	}
	unsubscribe(t, sub) // a returns to the queue
	again := subscribe(t, c, "/queue/v10ind", stomp.AckClientIndividual)
	if m := recv(t, again); string(m.Body) != "a" {
		t.Fatalf("redelivered %q, want a", m.Body)
	}
	expectNone(t, again, 50*time.Millisecond)
}

// TestVersion10_Nack: a STOMP 1.0 client may NACK by message-id (1.0 has no NACK; it means what it means
// in 1.1, as the package doc lists): the message is redelivered.
func TestVersion10_Nack(t *testing.T) {
	b := startBroker(t, nil)
	r := b.raw(t)
	if f := r.connect("host:default"); f.Header.Get(frame.Version) != "1.0" {
		t.Fatalf("connected %v", f.Header)
	}
	r.send("SUBSCRIBE\ndestination:/queue/v10nack\nack:client-individual\n\n\x00SEND\ndestination:/queue/v10nack\n\nm\x00")
	m := r.read()
	if m.Command != frame.MESSAGE || string(m.Body) != "m" {
		t.Fatalf("got %s %q", m.Command, m.Body)
	}
	r.send("NACK\nmessage-id:" + m.Header.Get(frame.MessageId) + "\n\n\x00")
	if m = r.read(); m.Command != frame.MESSAGE || m.Header.Get("redelivered") != "true" {
		t.Fatalf("after NACK got %s %v", m.Command, m.Header)
	}
}
