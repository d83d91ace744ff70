package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lyremq/lyre/conf"
)

// Each connector whose max_connections the open-file limit cannot hold is named in a warning; connectors
// that fit alone but not together get one warning with their total.
func TestOpenFilesWarning(t *testing.T) {
	const limit = 20000
	for _, tt := range []struct {
		name       string
		maxConns   []int
		connectors []string // warned about, by name
		total      bool     // the total warning
	}{
		{"fits", []int{10000, 9000}, nil, false},
		{"one over", []int{30000}, []string{"c0"}, false},
		{"reserve counts", []int{limit - 100}, []string{"c0"}, false},
		{"sum over", []int{10000, 10000}, nil, true},
		{"default max_connections, three connectors", []int{0, 0, 0}, nil, true},
		{"one over, sum not repeated", []int{25000, 10}, []string{"c0"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &conf.Config{}
			for i, n := range tt.maxConns {
				cfg.Connectors = append(cfg.Connectors, conf.Connector{Name: fmt.Sprintf("c%d", i), Protocol: "mqtt", MaxConnections: n})
			}
			core, logs := observer.New(zap.WarnLevel)
			checkOpenFiles(cfg, limit, zap.New(core))
			var named []string
			total := false
			for _, e := range logs.All() {
				if c, ok := e.ContextMap()["connector"]; ok {
					named = append(named, c.(string))
				} else {
					total = true
				}
				if e.ContextMap()["open_file_limit"] != uint64(limit) {
					t.Errorf("%q without the limit: %v", e.Message, e.ContextMap())
				}
			}
			if fmt.Sprint(named) != fmt.Sprint(tt.connectors) || total != tt.total {
				t.Errorf("warned about %v (total %v), want %v (total %v)", named, total, tt.connectors, tt.total)
			}
		})
	}
}

// The broker checks at startup against the process's real limit.
func TestStartWarnsAboveOpenFileLimit(t *testing.T) {
	limit, ok := openFileLimit()
	if !ok {
		t.Skip("no open-file limit on this system")
	}
	cfg, err := conf.Parse(fmt.Appendf(nil, `connector "big" {
  bind = "tcp://127.0.0.1:0"
  protocol = "mqtt"
  max_connections = %d
}
virtual_host "h" {
}`, limit+1), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	b, err := Start(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	got := logs.FilterMessageSnippet("max_connections exceeds the open-file limit").FilterField(zap.String("connector", "big")).All()
	if len(got) != 1 || got[0].ContextMap()["open_file_limit"] != limit {
		t.Fatalf("warnings %v; want one naming connector big and the limit %d", logs.All(), limit)
	}
}
