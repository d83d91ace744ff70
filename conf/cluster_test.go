package conf_test

import (
	"reflect"
	"testing"

	"github.com/lyremq/lyre/conf"
)

const clusterBase = mqttConn + "}\n" + host

func TestClusterBlock(t *testing.T) {
	c := mustParse(t, clusterBase)
	if c.Cluster != nil {
		t.Fatalf("no cluster block, but Cluster = %+v", c.Cluster)
	}
	c = mustParse(t, clusterBase+`cluster {
  node   = "n1"
  listen = "127.0.0.1:7422"
  routes = ["127.0.0.1:7423", "127.0.0.1:7424"]
  advertise = "10.0.0.1:17422"
}
`)
	want := &conf.Cluster{Name: "lyre", Node: "n1", Listen: "127.0.0.1:7422", Routes: []string{"127.0.0.1:7423", "127.0.0.1:7424"},
		Replicas: 3, Advertise: "10.0.0.1:17422"}
	if !reflect.DeepEqual(c.Cluster, want) {
		t.Fatalf("Cluster = %+v, want %+v", c.Cluster, want)
	}
	c = mustParse(t, clusterBase+"cluster {\n  name = \"prod\"\n  node = \"n2\"\n  nats_url = \"nats://a:4222, nats://b:4222\"\n}\n")
	if c.Cluster.Name != "prod" || c.Cluster.NATSURL != "nats://a:4222, nats://b:4222" || c.Cluster.Replicas != 2 {
		t.Fatalf("Cluster = %+v", c.Cluster)
	}
	// JetStream: a directory for the embedded server's streams, and replicas given or defaulted.
	c = mustParse(t, clusterBase+"cluster {\n  node = \"n1\"\n  listen = \"127.0.0.1:0\"\n  routes = [\"h:1\"]\n  directory = \"data/cluster\"\n}\n")
	if c.Cluster.Directory != "data/cluster" || c.Cluster.Replicas != 2 {
		t.Fatalf("two nodes with a directory: Cluster = %+v, want replicas 2", c.Cluster)
	}
	c = mustParse(t, clusterBase+"cluster {\n  node = \"n1\"\n  listen = \"127.0.0.1:0\"\n  routes = [\"h:1\"]\n  replicas = 2\n}\n")
	if c.Cluster.Replicas != 2 {
		t.Fatalf("replicas = 2 read as %d", c.Cluster.Replicas)
	}
}

func TestClusterErrors(t *testing.T) {
	// Line 8 is the cluster block's first line.
	for _, c := range []struct {
		name, src string
		want      []string
	}{
		{"no node", "cluster {\n  listen = \"127.0.0.1:7422\"\n}\n",
			[]string{`t.hcl:8:1: cluster needs a node name, unique in the cluster: node = "n1"`}},
		{"misspelt attribute", "cluster {\n  node = \"n1\"\n  listen = \"127.0.0.1:1\"\n  route = []\n}\n",
			[]string{`t.hcl:11:3: unknown attribute "route"; did you mean "routes"?`}},
		{"both kinds", "cluster {\n  node = \"n1\"\n  listen = \"127.0.0.1:1\"\n  nats_url = \"nats://x:4222\"\n}\n",
			[]string{`t.hcl:11:14: nats_url connects to an external NATS; listen, advertise and routes run an embedded one: give one or the other`}},
		{"neither", "cluster {\n  node = \"n1\"\n}\n",
			[]string{`t.hcl:8:1: cluster needs listen (and routes) for an embedded NATS, or nats_url for an external one`}},
		{"bad addresses", "cluster {\n  node = \"n.1\"\n  listen = \"127.0.0.1\"\n  routes = [\"h:99999\", \"h:1\", \"h:1\"]\n}\n",
			[]string{
				`t.hcl:9:10: node name "n.1" must be letters, digits, '-' or '_'`,
				`t.hcl:10:12: listen "127.0.0.1": want host:port`,
				`t.hcl:11:13: route "h:99999": port "99999" is not a number from 0 to 65535`,
				`t.hcl:11:31: route "h:1" listed twice; first at t.hcl:11:24`,
			}},
		{"advertise without its port", "cluster {\n  node = \"n1\"\n  listen = \"127.0.0.1:1\"\n  advertise = \"10.0.0.1\"\n}\n",
			[]string{`t.hcl:11:15: advertise "10.0.0.1": want host:port`}},
		{"advertise with nats_url", "cluster {\n  node = \"n1\"\n  advertise = \"10.0.0.1:1\"\n  nats_url = \"nats://x:4222\"\n}\n",
			[]string{`t.hcl:11:14: nats_url connects to an external NATS; listen, advertise and routes run an embedded one: give one or the other`}},
		{"bad url", "cluster {\n  node = \"n1\"\n  nats_url = \"http://x\"\n}\n",
			[]string{`t.hcl:10:14: nats_url entry 1 "http://x" is not a nats://host:port URL`}},
		{"directory with nats_url", "cluster {\n  node = \"n1\"\n  nats_url = \"nats://x:1\"\n  directory = \"d\"\n}\n",
			[]string{`t.hcl:11:15: directory is the embedded server's JetStream storage; with nats_url the external NATS stores the streams`}},
		{"directory without routes", "cluster {\n  node = \"n1\"\n  listen = \"127.0.0.1:0\"\n  directory = \"d\"\n}\n",
			[]string{`t.hcl:11:15: JetStream forms its cluster from the configured routes: list the other nodes in routes on every node`}},
		{"replicas", "cluster {\n  node = \"n1\"\n  listen = \"127.0.0.1:0\"\n  replicas = 7\n}\n",
			[]string{`t.hcl:11:14: replicas 7: JetStream keeps 1 to 5 copies`}},
		{"twice", "cluster {\n  node = \"n1\"\n  nats_url = \"nats://x:1\"\n}\ncluster {\n}\n",
			[]string{`t.hcl:12:1: cluster block given twice; first at t.hcl:8:1`}},
		{"misspelt block", "clustr {\n}\n",
			[]string{`t.hcl:8:1: unknown block "clustr"; did you mean "cluster"?`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := parseErrors(t, clusterBase+c.src)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("errors:\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}
