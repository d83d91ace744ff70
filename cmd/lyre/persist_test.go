package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
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
