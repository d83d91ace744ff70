package conf_test

import (
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
)

// The per-client bounds (issue 13): each attribute is read, and left out takes its documented default.
func TestClientBoundsAttributes(t *testing.T) {
	c := mustParse(t, `
connector "c" {
  bind     = "tcp://127.0.0.1:0"
  protocol = "stomp"
  stomp {
    max_message_length     = "2MB"
    max_transactions       = 4
    max_transaction_frames = 500
    max_transaction_bytes  = "1MB"
    max_selector_length    = "1KB"
    max_subscriptions      = 20
  }
}
connector "d" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["stomp", "mqtt"]
  stomp {
    max_message_length = "2MB"
  }
}

virtual_host "v" {
  max_subscriptions         = 500
  max_durable_subscriptions = 50

  max_concurrent_logins             = 8
  max_concurrent_logins_per_address = 2

  credential_cache      = "2m"
  credential_cache_size = 100
}
virtual_host "off" {
  credential_cache = "0s"
}
virtual_host "defaults" {
}
`)
	if v := c.VirtualHosts[0]; v.MaxSubscriptions != 500 || v.MaxDurableSubscriptions != 50 ||
		v.MaxConcurrentLogins != 8 || v.MaxConcurrentLoginsPerAddress != 2 ||
		v.CredentialCache != 2*time.Minute || v.CredentialCacheSize != 100 {
		t.Errorf("host: %+v", v)
	}
	if v := c.VirtualHosts[1]; v.CredentialCache != 0 {
		t.Errorf("credential_cache = \"0s\" gave %v, want 0 (no cache)", v.CredentialCache)
	}
	if v := c.VirtualHosts[2]; v.CredentialCache != conf.DefaultCredentialCache || v.CredentialCacheSize != 0 {
		t.Errorf("credential cache left out: %v, size %d; want the default, 0", v.CredentialCache, v.CredentialCacheSize)
	}
	got := c.Connectors[0].STOMP
	if got.MaxTransactions != 4 || got.MaxTransactionFrames != 500 || got.MaxTransactionBytes != 1<<20 ||
		got.MaxSelectorLength != 1<<10 || got.MaxSubscriptions != 20 {
		t.Errorf("set: %+v", got)
	}
	def := c.Connectors[1].WithDefaults().STOMP
	if def.MaxTransactions != conf.DefaultMaxTransactions || def.MaxTransactionFrames != conf.DefaultMaxTransactionFrames ||
		def.MaxTransactionBytes != 2<<20 || def.MaxSelectorLength != conf.DefaultMaxSelectorLength ||
		def.MaxSubscriptions != conf.DefaultMaxSubscriptions || c.Connectors[1].MQTT.MaxSubscriptions != conf.DefaultMaxSubscriptions {
		t.Errorf("defaults: %+v, want max_transaction_bytes = max_message_length", def)
	}
}
