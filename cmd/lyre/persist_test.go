package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/mqtt/packet"
	"github.com/lyremq/lyre/store"
)

// durableConfig is testConfig with a store for the default host in dir.
func durableConfig(dir string) string {
	return fmt.Sprintf(`
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
  mqtt  { queue_prefix = "queue/" }
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
  store { directory = %q }
}
`, dir)
}

func TestSecondBrokerOnSameStoreRefused(t *testing.T) {
	dir := t.TempDir()
	startBroker(t, durableConfig(dir))
	cfg, err := conf.Parse([]byte(durableConfig(dir)), "second.hcl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(cfg, zaptest.NewLogger(t))
	if err == nil {
		b.Shutdown(t.Context())
		t.Fatal("a second broker opened a store directory in use")
	}
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), `virtual_host "default"`) {
		t.Fatalf("unclear refusal: %v", err)
	}
}

// startDurable starts a broker on the durable config for dir; the test stops it.
func startDurable(t *testing.T, dir string) (*Broker, string) {
	t.Helper()
	cfg, err := conf.Parse([]byte(durableConfig(dir)), "durable.hcl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return b, b.Addrs()["auto"].String()
}

func stopBroker(t *testing.T, b *Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// A graceful restart keeps every persisted item: queue messages, retained messages and a persistent
// MQTT session with what arrived for it while offline.
func TestGracefulRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	b, addr := startDurable(t, dir)
	keeper, _, err := mqDial(addr, "keeper", false)
	if err != nil {
		t.Fatal(err)
	}
	keeper.send(&packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "keep/#", QoS: 1}}})
	if p, err := keeper.next(5 * time.Second); err != nil || p.Type() != packet.Suback {
		t.Fatalf("suback: %v %v", err, p)
	}
	keeper.send(&packet.DisconnectPacket{})
	keeper.nc.Close()

	sc, err := stomp.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"j1", "j2", "j3"} {
		if err := sc.Send("/queue/jobs", "text/plain", []byte(body), stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.Send("/topic/keep.stomp", "text/plain", []byte("s1"), stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
		t.Fatal(err)
	}
	_ = sc.Disconnect()
	pub, _, err := mqDial(addr, "pub", true)
	if err != nil {
		t.Fatal(err)
	}
	pub.send(&packet.PublishPacket{Topic: "keep/mqtt", QoS: 1, PacketID: 1, Payload: []byte("m1")},
		&packet.PublishPacket{Topic: "status/a", QoS: 1, PacketID: 2, Retain: true, Payload: []byte("up")})
	for range 2 {
		if p, err := pub.next(5 * time.Second); err != nil || p.Type() != packet.Puback {
			t.Fatalf("puback: %v %v", err, p)
		}
	}
	pub.nc.Close()
	stopBroker(t, b)

	b, addr = startDurable(t, dir)
	defer stopBroker(t, b)
	if c := b.Hosts().Default().Recovered(); c.Sessions != 1 || c.QueueEntries != 3 || c.Retained != 1 || c.DurableSubEntries != 2 {
		t.Fatalf("recovered %+v", c)
	}
	got := drainSession(t, addr, "keeper", 300*time.Millisecond, nil)
	if got["s1"] != 1 || got["m1"] != 1 || len(got) != 2 {
		t.Fatalf("session after restart got %v, want s1 and m1 once", got)
	}
	sc, err = stomp.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Disconnect()
	sub, err := sc.Subscribe("/queue/jobs", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"j1", "j2", "j3"} {
		if m := readStomp(t, sub); string(m.Body) != want {
			t.Fatalf("queue after restart: got %q, want %q", m.Body, want)
		}
	}
	other, _, err := mqDial(addr, "other", true)
	if err != nil {
		t.Fatal(err)
	}
	defer other.nc.Close()
	other.send(&packet.SubscribePacket{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "status/#", QoS: 1}}})
	for {
		p, err := other.next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if pp, ok := p.(*packet.PublishPacket); ok {
			if string(pp.Payload) != "up" || !pp.Retain {
				t.Fatalf("retained after restart: %+v", pp)
			}
			break
		}
	}
}
