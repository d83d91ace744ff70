package conf_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
)

// host is appended to configs whose test is not about virtual hosts; it comes last so line numbers of
// the text under test are unaffected.
const host = "\nvirtual_host \"h\" {\n}\n"

func mustParse(t *testing.T, src string) *conf.Config {
	t.Helper()
	c, err := conf.Parse([]byte(src), "t.hcl")
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

// parseErrors parses src and returns each problem as "file:line:col: msg".
func parseErrors(t *testing.T, src string) []string {
	t.Helper()
	c, err := conf.Parse([]byte(src), "t.hcl")
	if err == nil {
		t.Fatalf("Parse succeeded, want errors; config: %+v", c)
	}
	if c != nil {
		t.Errorf("Parse returned a config along with an error")
	}
	var errs conf.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error %T is not conf.Errors: %v", err, err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(errs) {
		t.Errorf("error text has %d lines for %d errors:\n%v", len(lines), len(errs), err)
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
		if !strings.HasPrefix(e.Pos, "t.hcl:") {
			t.Errorf("error %q has position %q, want t.hcl:line:col", e.Msg, e.Pos)
		}
	}
	return out
}

func TestDefaultConfig(t *testing.T) {
	c := conf.Default()
	if c.Source != conf.DefaultSource {
		t.Errorf("Source = %q, want %q", c.Source, conf.DefaultSource)
	}
	if c.SysInterval != 10*time.Second {
		t.Errorf("SysInterval = %v, want 10s", c.SysInterval)
	}
	wantConnectors := []conf.Connector{
		{
			Name: "default", Bind: "tcp://127.0.0.1:61613", Network: "tcp", Address: "127.0.0.1:61613",
			Detect: []string{"mqtt", "stomp", "http"}, DetectTimeout: 5 * time.Second, MaxConnections: 10000,
			MQTT: conf.DefaultMQTT(), STOMP: conf.DefaultSTOMP(), Management: true,
		},
		{
			Name: "mqtt", Bind: "tcp://127.0.0.1:1883", Network: "tcp", Address: "127.0.0.1:1883",
			Protocol: "mqtt", DetectTimeout: 5 * time.Second, MaxConnections: 10000,
			MQTT: conf.DefaultMQTT(), STOMP: conf.DefaultSTOMP(),
		},
	}
	if !reflect.DeepEqual(c.Connectors, wantConnectors) {
		t.Errorf("connectors:\n got %+v\nwant %+v", c.Connectors, wantConnectors)
	}
	wantHosts := []conf.VirtualHost{{
		Name: "default", HostNames: []string{"localhost", "127.0.0.1"}, Anonymous: true,
		Store: &conf.Store{Directory: "data", Sync: true}, SharedSubscriptionStrategy: conf.ShareRoundRobin,
		CredentialCache: conf.DefaultCredentialCache,
	}}
	if !reflect.DeepEqual(c.VirtualHosts, wantHosts) {
		t.Errorf("virtual hosts:\n got %+v\nwant %+v", c.VirtualHosts, wantHosts)
	}
	if h := c.DefaultHost(); h == nil || h.Name != "default" {
		t.Errorf("DefaultHost = %+v, want the default host", h)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate on the default config: %v", err)
	}

	// Each call is a fresh copy: changing one must not leak into the next.
	c.VirtualHosts[0].HostNames[0] = "changed"
	if conf.Default().VirtualHosts[0].HostNames[0] != "localhost" {
		t.Error("Default() shares state between calls")
	}
	if !strings.Contains(string(conf.DefaultHCL()), `connector "default"`) {
		t.Error("DefaultHCL does not return the embedded file")
	}
}

// The embedded file must keep working as a user's starting point: it parses under a real file name too.
func TestDefaultConfigFileCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lyre.hcl")
	if err := os.WriteFile(path, conf.DefaultHCL(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := conf.Load(path)
	if err != nil {
		t.Fatalf("Load(copy of default): %v", err)
	}
	if c.Source != path || len(c.Connectors) != 2 || len(c.VirtualHosts) != 1 {
		t.Errorf("Load(copy of default) = %+v", c)
	}
}

func TestDefaultsApplied(t *testing.T) {
	c := mustParse(t, `
connector "c" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["stomp", "mqtt"]
}
virtual_host "v" {
  store {
    directory = "d"
  }
}
virtual_host "w" {
}
`)
	cn := c.Connectors[0]
	if cn.DetectTimeout != conf.DefaultDetectTimeout || cn.MaxConnections != conf.DefaultMaxConnections {
		t.Errorf("connector defaults: detect_timeout %v, max_connections %d", cn.DetectTimeout, cn.MaxConnections)
	}
	if cn.Protocol != "" || !reflect.DeepEqual(cn.Protocols(), []string{"stomp", "mqtt"}) {
		t.Errorf("Protocols() = %v, want detect order [stomp mqtt]", cn.Protocols())
	}
	if cn.Address != "127.0.0.1:0" || cn.Network != "tcp" {
		t.Errorf("Network, Address = %q, %q", cn.Network, cn.Address)
	}
	wantMQTT := conf.MQTT{
		Grammar: conf.MQTTGrammarDefaults, MaxMessageLength: 100 << 20, DieDelay: 5 * time.Second,
		MaxInflight: 128, MaxQueuedMessages: 1000, MaxSubscriptions: 1000, MaxTopicLevels: 128,
		ReceiveMaximum: 1024, TopicAliasMaximum: 64, ResponseTopicPrefix: "reply/",
	}
	if cn.MQTT != wantMQTT {
		t.Errorf("mqtt defaults:\n got %+v\nwant %+v", cn.MQTT, wantMQTT)
	}
	wantSTOMP := conf.STOMP{
		Grammar: conf.STOMPGrammarDefaults, MaxMessageLength: 100 << 20, DieDelay: 5 * time.Second,
		MaxHeaders: 1000, MaxHeaderLength: 10 << 10,
		MaxTransactions: 100, MaxTransactionFrames: 10000, MaxSelectorLength: 4 << 10, MaxSubscriptions: 1000,
	}
	if cn.STOMP != wantSTOMP {
		t.Errorf("stomp defaults:\n got %+v\nwant %+v", cn.STOMP, wantSTOMP)
	}
	v := c.Host("v")
	if v == nil || v.Anonymous || v.HostNames != nil || *v.Store != (conf.Store{Directory: "d", Sync: true}) {
		t.Errorf("virtual host v = %+v (store %+v)", v, v.Store)
	}
	if w := c.Host("W"); w == nil || w.Store != nil {
		t.Errorf("Host(\"W\") = %+v, want host w (case-insensitive) with no store", w)
	}
	if c.Host("x") != nil {
		t.Error("Host(\"x\") found an undefined host")
	}
}

// Setting one grammar attribute overrides only that field; "" turns a prefix off.
func TestGrammarOverride(t *testing.T) {
	c := mustParse(t, `
connector "c" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
  mqtt {
    queue_prefix = "queue/"
  }
  stomp {
    topic_prefix = ""
    path_separator = "/"
  }
}
`+host)
	wantM := conf.MQTTGrammarDefaults
	wantM.QueuePrefix = "queue/"
	if got := c.Connectors[0].MQTT.Grammar; got != wantM {
		t.Errorf("mqtt grammar:\n got %+v\nwant %+v", got, wantM)
	}
	wantS := conf.STOMPGrammarDefaults
	wantS.TopicPrefix = ""
	wantS.PathSeparator = "/"
	if got := c.Connectors[0].STOMP.Grammar; got != wantS {
		t.Errorf("stomp grammar:\n got %+v\nwant %+v", got, wantS)
	}
}

func TestFullExample(t *testing.T) {
	c, err := conf.Load("testdata/full.hcl")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []conf.Connector{
		{
			Name: "public", Bind: "tcp://0.0.0.0:61614", Network: "tcp", Address: "0.0.0.0:61614",
			Detect: []string{"stomp", "mqtt"}, DetectTimeout: 250 * time.Millisecond, MaxConnections: 500,
			VirtualHost: "tenant-a",
			MQTT: conf.MQTT{
				Grammar: conf.Grammar{
					PathSeparator: "|", AnyChildWildcard: "?", AnyDescendantWildcard: "@",
					RegexWildcardStart: "<", RegexWildcardEnd: ">", PartPattern: "[a-z0-9_-]+",
					QueuePrefix: "queue/", TopicPrefix: "topic/", DsubPrefix: "dsub/",
					TempQueuePrefix: "tq/", TempTopicPrefix: "tt/", DestinationSeparator: ";",
				},
				MaxMessageLength: 1 << 20, DieDelay: time.Second, MaxInflight: 65535,
				MaxQueuedMessages: 0, MaxSubscriptions: 50, MaxTopicLevels: 16,
				ReceiveMaximum: 100, TopicAliasMaximum: 0, MaxSessionExpiry: time.Hour,
				MaxKeepAlive: 2 * time.Minute, ResponseTopicPrefix: "responses/",
			},
			STOMP: conf.STOMP{
				Grammar: conf.Grammar{
					PathSeparator: "/", AnyChildWildcard: "+", AnyDescendantWildcard: ">",
					RegexWildcardStart: "(", RegexWildcardEnd: ")", PartPattern: `\w+`,
					QueuePrefix: "/q/", TopicPrefix: "", DsubPrefix: "/d/",
					TempQueuePrefix: "/tmpq/", TempTopicPrefix: "/tmpt/", DestinationSeparator: ";",
				},
				MaxMessageLength: 65536, DieDelay: 90 * time.Second, MaxHeaders: 10, MaxHeaderLength: 512,
				AddUserHeader: "JMSXUserID", AddTimestampHeader: "timestamp", AddRedeliveriesHeader: "redeliveries",
				MaxTransactions: 100, MaxTransactionFrames: 10000, MaxSelectorLength: 4 << 10, MaxSubscriptions: 1000,
			},
		},
		{
			Name: "plain", Bind: "tcp://[::1]:1884", Network: "tcp", Address: "[::1]:1884", Protocol: "stomp",
			DetectTimeout: 5 * time.Second, MaxConnections: 10000, MQTT: conf.DefaultMQTT(), STOMP: conf.DefaultSTOMP(),
		},
	}
	if !reflect.DeepEqual(c.Connectors, want) {
		t.Errorf("connectors:\n got %+v\nwant %+v", c.Connectors, want)
	}
	wantHosts := []conf.VirtualHost{
		{
			Name: "tenant-a", HostNames: []string{"a.example.com", "tenant-a.local"},
			Store:                      &conf.Store{Directory: "/var/lib/lyre/a", Sync: false, FlushDelay: 2 * time.Millisecond},
			SharedSubscriptionStrategy: conf.ShareRoundRobin, CredentialCache: conf.DefaultCredentialCache,
		},
		{Name: "tenant-b", Anonymous: true, SharedSubscriptionStrategy: conf.ShareHashClientID, CredentialCache: conf.DefaultCredentialCache},
	}
	if !reflect.DeepEqual(c.VirtualHosts, wantHosts) {
		t.Errorf("virtual hosts:\n got %+v\nwant %+v", c.VirtualHosts, wantHosts)
	}
	if h := c.HostFor(c.Connector("public")); h == nil || h.Name != "tenant-a" {
		t.Errorf("HostFor(public) = %+v, want tenant-a", h)
	}
	if h := c.HostFor(c.Connector("plain")); h == nil || h.Name != "tenant-a" {
		t.Errorf("HostFor(plain) = %+v, want the first host", h)
	}
	if c.Connector("nope") != nil {
		t.Error("Connector(\"nope\") found an undefined connector")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := conf.Load(filepath.Join(t.TempDir(), "absent.hcl"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(absent) = %v, want fs.ErrNotExist", err)
	}
}

func TestLoadErrorsNameThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lyre.hcl")
	src := "connector \"c\" {\n  bind = \"tcp://127.0.0.1:0\"\n  protocol = \"mqtt\"\n  foo = 1\n}\n" + host
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := conf.Load(path)
	want := path + `:4:3: unknown attribute "foo"`
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %s", err, want)
	}
}

// HCL allows one attribute in a one-line block; more must go on separate lines, and the error says where.
func TestOneLineBlocks(t *testing.T) {
	c := mustParse(t, `
connector "c" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp"]
  mqtt  { queue_prefix = "queue/" }
}
`+host)
	if got := c.Connectors[0].MQTT.QueuePrefix; got != "queue/" {
		t.Errorf("queue_prefix = %q", got)
	}
	got := parseErrors(t, "connector \"c\" {\n  mqtt { die_delay = \"1s\"  max_inflight = 5 }\n}\n")
	if len(got) != 1 || !strings.HasPrefix(got[0], "t.hcl:2:28: Invalid single-argument block definition") {
		t.Errorf("errors = %q", got)
	}
}

// Each shared_subscription_strategy value parses; absent means round_robin.
func TestSharedSubscriptionStrategy(t *testing.T) {
	for _, st := range conf.ShareStrategies {
		c := mustParse(t, mqttConn+"}\nvirtual_host \"h\" {\n  shared_subscription_strategy = \""+string(st)+"\"\n}\n")
		if got := c.VirtualHosts[0].SharedSubscriptionStrategy; got != st {
			t.Errorf("%s: parsed %q", st, got)
		}
	}
	if got := mustParse(t, mqttConn+"}\n"+host).VirtualHosts[0].SharedSubscriptionStrategy; got != conf.ShareRoundRobin {
		t.Errorf("default: %q, want round_robin", got)
	}
}

// A ws:// connector and an autodetecting one with "http" serve WebSocket; the http block's defaults
// apply to what it leaves out.
func TestWebSocketConnectors(t *testing.T) {
	c := mustParse(t, `
connector "ws" {
  bind = "ws://127.0.0.1:8080"
}
connector "wss" {
  bind     = "wss://127.0.0.1:8443"
  protocol = "mqtt"
  tls {
    cert_file = "testdata/tls/cert.pem"
    key_file  = "testdata/tls/key.pem"
  }
}
connector "auto" {
  bind   = "tcp://127.0.0.1:61613"
  detect = ["mqtt", "stomp", "http"]
  http {
    allowed_origins = ["*"]
    stomp_path      = "/ws/stomp"
  }
}
virtual_host "h" {}
`)
	ws, wss, auto := c.Connectors[0], c.Connectors[1], c.Connectors[2]
	if !ws.ServesHTTP() || !ws.BindsWebSocket() || ws.BindsTLS() || !slices.Equal(ws.Protocols(), []string{"mqtt", "stomp"}) ||
		!slices.Equal(ws.Sniffed(), []string{"http"}) {
		t.Errorf("ws: serves http %v, tls %v, protocols %v, sniffed %v", ws.ServesHTTP(), ws.BindsTLS(), ws.Protocols(), ws.Sniffed())
	}
	if !wss.BindsTLS() || !slices.Equal(wss.Protocols(), []string{"mqtt"}) {
		t.Errorf("wss: tls %v, protocols %v", wss.BindsTLS(), wss.Protocols())
	}
	if !auto.ServesHTTP() || auto.BindsWebSocket() || !slices.Equal(auto.Protocols(), []string{"mqtt", "stomp"}) {
		t.Errorf("auto: serves http %v, protocols %v", auto.ServesHTTP(), auto.Protocols())
	}
	want := conf.HTTP{AllowedOrigins: []string{"*"}, MQTTPath: "/mqtt", STOMPPath: "/ws/stomp",
		MaxHeaderBytes: conf.DefaultMaxHeaderBytes, UpgradeTimeout: conf.DefaultUpgradeTimeout}
	if auto.HTTP == nil || !reflect.DeepEqual(*auto.HTTP, want) {
		t.Errorf("http block %+v, want %+v", auto.HTTP, want)
	}
	if d := ws.WithDefaults().HTTP; ws.HTTP != nil || d == nil || !reflect.DeepEqual(*d, conf.DefaultHTTP()) {
		t.Errorf("no http block: %+v, with defaults %+v", ws.HTTP, d)
	}
}
