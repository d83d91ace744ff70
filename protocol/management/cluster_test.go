package management_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/management"
	"github.com/lyremq/lyre/protocol/prototest"
	"github.com/lyremq/lyre/virtualhost"
)

// getJSON GETs url as mon and decodes the answer into out; it returns the status.
func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.SetBasicAuth("mon", "mon-pass")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// The cluster state reaches GET /api/v1/cluster, the broker's cluster section, the lyre_cluster_
// metrics and $SYS/broker/cluster/...; a change is published on $SYS at once, not at the next
// sys_interval.
func TestClusterState(t *testing.T) {
	h := monitoredHost(t)
	since := time.Date(2026, 12, 3, 1, 2, 3, 0, time.UTC)
	var state atomic.Pointer[management.ClusterInfo]
	state.Store(&management.ClusterInfo{Name: "c", Node: "a", Mode: "embedded", Connected: true, Since: since, Routes: 3,
		Peers:    []management.ClusterPeer{{Name: "b", Connected: true, Since: since}},
		Messages: management.ClusterMessages{Sent: 5, Received: 7, Dropped: 1, Duplicates: 2, InDropped: 4}})
	changed := make(chan struct{}, 1)
	// An hour: after the first tick, only a change signalled publishes.
	cfg := &conf.Config{SysInterval: time.Hour}
	m := management.New(management.Options{Version: "test", Hosts: virtualhost.NewRegistry(h), Config: func() *conf.Config { return cfg },
		Cluster: state.Load, ClusterChanged: changed})
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)

	var got management.ClusterInfo
	if s := getJSON(t, srv.URL+"/api/v1/cluster", &got); s != http.StatusOK || !reflect.DeepEqual(&got, state.Load()) {
		t.Fatalf("GET /api/v1/cluster: %d %+v, want %+v", s, got, state.Load())
	}
	var b struct{ Cluster *management.ClusterInfo }
	if getJSON(t, srv.URL+"/api/v1/broker", &b); b.Cluster == nil || !b.Cluster.Connected || b.Cluster.Node != "a" {
		t.Fatalf("broker's cluster section: %+v", b.Cluster)
	}
	ms := prototest.Scrape(t, srv.URL+"/metrics", "mon", "mon-pass")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lyre_cluster_info", []string{"cluster", "c", "node", "a", "mode", "embedded"}, 1},
		{"lyre_cluster_connected", nil, 1},
		{"lyre_cluster_peers", nil, 1},
		{"lyre_cluster_routes", nil, 3},
		{"lyre_cluster_peer_connected", []string{"peer", "b"}, 1},
		{"lyre_cluster_messages_sent_total", nil, 5},
		{"lyre_cluster_messages_received_total", nil, 7},
		{"lyre_cluster_messages_dropped_total", nil, 1},
		{"lyre_cluster_messages_duplicate_total", nil, 2},
		{"lyre_cluster_messages_in_dropped_total", nil, 4},
		{"lyre_cluster_disconnects_total", nil, 0},
	} {
		if v := ms.Get(t, c.name, c.labels...); v != c.want {
			t.Errorf("%s%q = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	for name, want := range map[string]string{"cluster/name": "c", "cluster/node": "a", "cluster/state": "1",
		"cluster/peers/connected": "1", "cluster/peers/b/state": "1", "cluster/messages/sent": "5"} {
		waitRetained(t, h, name, func(body string, _ bool) bool { return body == want })
	}

	// The node loses the cluster.
	state.Store(&management.ClusterInfo{Name: "c", Node: "a", Mode: "embedded", Since: since.Add(time.Minute), Disconnects: 1,
		Peers: []management.ClusterPeer{{Name: "b", Since: since.Add(time.Minute)}}})
	changed <- struct{}{}
	waitRetained(t, h, "cluster/state", func(body string, _ bool) bool { return body == "0" })
	waitRetained(t, h, "cluster/peers/b/state", func(body string, _ bool) bool { return body == "0" })
	ms = prototest.Scrape(t, srv.URL+"/metrics", "mon", "mon-pass")
	if c, p, d := ms.Get(t, "lyre_cluster_connected"), ms.Get(t, "lyre_cluster_peer_connected", "peer", "b"),
		ms.Get(t, "lyre_cluster_disconnects_total"); c != 0 || p != 0 || d != 1 {
		t.Errorf("after the loss: connected %v, peer b %v, disconnects %v", c, p, d)
	}
}

// A node without a cluster: 404, and no lyre_cluster_ metric.
func TestNoCluster(t *testing.T) {
	h := monitoredHost(t)
	_, url := newManager(t, sysOff, h)
	if s := getJSON(t, url+"/api/v1/cluster", nil); s != http.StatusNotFound {
		t.Fatalf("GET /api/v1/cluster without a cluster: %d, want 404", s)
	}
	ms := prototest.Scrape(t, url+"/metrics", "mon", "mon-pass")
	if _, ok, _ := ms.Value("lyre_cluster_connected"); ok {
		t.Fatal("lyre_cluster_connected on a node without a cluster")
	}
}
