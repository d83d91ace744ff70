package conf_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lyremq/lyre/conf"
)

// mqttConn is a valid connector header for cases about other attributes.
const mqttConn = "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"mqtt\"\n"

// errorCases list every error Parse must report for each source, in order, as "file:line:col: message".
// FuzzParse is seeded with them.
var errorCases = []struct {
	name string
	src  string
	want []string
}{
	{
		name: "syntax error",
		src:  "connector \"c\" {\n  bind = \n}\n",
		want: []string{"t.hcl:2:10: Invalid expression: Expected the start of an expression, but found an invalid expression token."},
	},
	{
		name: "unknown attribute in connector",
		src:  mqttConn + "  foo = 1\n}\n" + host,
		want: []string{`t.hcl:4:3: unknown attribute "foo"`},
	},
	{
		name: "unknown attribute with suggestion",
		src:  mqttConn + "  max_conections = 1\n}\n" + host,
		want: []string{`t.hcl:4:3: unknown attribute "max_conections"; did you mean "max_connections"?`},
	},
	{
		name: "unknown top-level attribute",
		src:  "log_level = \"debug\"\n" + mqttConn + "}\n" + host,
		want: []string{`t.hcl:1:1: unknown attribute "log_level"`},
	},
	{
		name: "unknown attribute in mqtt block",
		src:  mqttConn + "  mqtt {\n    max_headers = 3\n  }\n}\n" + host,
		want: []string{`t.hcl:5:5: unknown attribute "max_headers"`},
	},
	{
		name: "unknown attribute in store block",
		src:  mqttConn + "}\nvirtual_host \"h\" {\n  store {\n    dir = \"x\"\n  }\n}\n",
		want: []string{
			`t.hcl:6:3: store directory is required`,
			`t.hcl:7:5: unknown attribute "dir"`,
		},
	},
	{
		name: "unknown top-level block",
		src:  "listener \"l\" {\n}\n" + mqttConn + "}\n" + host,
		want: []string{`t.hcl:1:1: unknown block "listener"`},
	},
	{
		name: "unknown block in connector",
		src:  mqttConn + "  amqp {\n  }\n}\n" + host,
		want: []string{`t.hcl:4:3: unknown block "amqp"`},
	},
	{
		name: "unknown block in virtual_host",
		src:  mqttConn + "}\nvirtual_host \"h\" {\n  users {\n  }\n}\n",
		want: []string{`t.hcl:6:3: unknown block "users"`},
	},
	{
		name: "block inside mqtt block",
		src:  mqttConn + "  mqtt {\n    limits {\n    }\n  }\n}\n" + host,
		want: []string{`t.hcl:5:5: unknown block "limits"`},
	},
	{
		name: "connector without name",
		src:  "connector {\n}\n" + mqttConn + "}\n" + host,
		want: []string{`t.hcl:1:1: connector block needs exactly one name, as in connector "default" { ... }`},
	},
	{
		name: "store with a name",
		src:  mqttConn + "}\nvirtual_host \"h\" {\n  store \"s\" {\n  }\n}\n",
		want: []string{`t.hcl:6:9: store block takes no name`},
	},
	{
		name: "duplicate mqtt block",
		src:  mqttConn + "  mqtt {\n  }\n  mqtt {\n  }\n}\n" + host,
		want: []string{`t.hcl:6:3: duplicate mqtt block (first at t.hcl:4:3)`},
	},
	{
		name: "duplicate store block",
		src:  mqttConn + "}\nvirtual_host \"h\" {\n  store {\n    directory = \"a\"\n  }\n  store {\n  }\n}\n",
		want: []string{`t.hcl:9:3: duplicate store block (first at t.hcl:6:3)`},
	},
	{
		name: "block for a protocol the connector does not speak",
		src:  mqttConn + "  stomp {\n  }\n}\n" + host,
		want: []string{`t.hcl:4:3: stomp block on connector "c", which does not speak stomp`},
	},
	{
		name: "variables are not allowed",
		src:  mqttConn + "  max_connections = var.n\n}\n" + host,
		want: []string{`t.hcl:4:21: Variables not allowed: Variables may not be used here.`},
	},
	{
		name: "wrong types",
		src: "connector \"c\" {\n  bind = 1883\n  detect = \"mqtt\"\n  max_connections = \"many\"\n  detect_timeout = 5\n" +
			"  mqtt {\n    path_separator = true\n    max_inflight = 1.5\n    max_message_length = true\n  }\n}\n" +
			"virtual_host \"h\" {\n  host_names = [\"a\", [\"b\"]]\n  anonymous = \"yes\"\n  store {\n    directory = \"d\"\n    sync = null\n  }\n}\n",
		want: []string{
			`t.hcl:1:1: bind is required, e.g. bind = "tcp://127.0.0.1:1883"`,
			`t.hcl:1:1: set protocol = "mqtt" or "stomp", or detect = ["mqtt", "stomp"]`,
			`t.hcl:2:10: bind must be a string, not number`,
			`t.hcl:3:12: detect must be a list of strings, not string`,
			`t.hcl:4:21: max_connections must be a whole number, not string`,
			`t.hcl:5:20: detect_timeout must be a duration string such as "5s", not number`,
			`t.hcl:7:22: path_separator must be a string, not bool`,
			`t.hcl:8:20: max_inflight must be a whole number, not 1.5`,
			`t.hcl:9:26: max_message_length must be a size such as "100MB", not bool`,
			`t.hcl:13:22: host_names must be a list of strings, but element 1 is tuple`,
			`t.hcl:14:15: anonymous must be true or false, not string`,
			`t.hcl:17:12: sync must not be null`,
		},
	},
	{
		name: "bad sizes",
		src:  mqttConn + "  mqtt {\n    max_message_length = \"10XB\"\n  }\n}\n" + host,
		want: []string{`t.hcl:5:26: max_message_length: invalid size "10XB": unknown unit "XB" (want B, KB, MB, GB or TB)`},
	},
	{
		name: "negative and fractional sizes",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"stomp\"\n  stomp {\n" +
			"    max_message_length = -5\n    max_header_length = \"-1KB\"\n  }\n}\n" + host,
		want: []string{
			`t.hcl:5:26: max_message_length: invalid size -5 (want bytes as a whole number, or e.g. "100MB")`,
			`t.hcl:6:25: max_header_length: size "-1KB" is negative`,
		},
	},
	{
		name: "bad durations",
		src: mqttConn + "  detect_timeout = \"5\"\n  mqtt {\n    die_delay = \"-1s\"\n  }\n}\n" +
			"virtual_host \"h\" {\n  store {\n    directory = \"d\"\n    flush_delay = \"soon\"\n  }\n}\n",
		want: []string{
			`t.hcl:4:20: detect_timeout: invalid duration "5" (want e.g. "5s", "250ms")`,
			`t.hcl:6:17: die_delay: duration "-1s" is negative`,
			`t.hcl:12:19: flush_delay: invalid duration "soon" (want e.g. "5s", "250ms")`,
		},
	},
	{
		name: "zero detect_timeout",
		src:  mqttConn + "  detect_timeout = \"0s\"\n}\n" + host,
		want: []string{`t.hcl:4:20: detect_timeout must be positive`},
	},
	{
		name: "invalid part_pattern",
		src:  mqttConn + "  mqtt {\n    part_pattern = \"[a-z\"\n  }\n}\n" + host,
		want: []string{"t.hcl:5:20: invalid part_pattern: error parsing regexp: missing closing ]: `[a-z`"},
	},
	{
		name: "part_pattern with a Perl-only construct is not RE2",
		src:  mqttConn + "  mqtt {\n    part_pattern = \"(?=a)\"\n  }\n}\n" + host,
		want: []string{"t.hcl:5:20: invalid part_pattern: error parsing regexp: invalid or unsupported Perl syntax: `(?=`"},
	},
	{
		name: "bind without scheme",
		src:  "connector \"c\" {\n  bind = \"127.0.0.1:1883\"\n  protocol = \"mqtt\"\n}\n" + host,
		want: []string{`t.hcl:2:10: invalid bind "127.0.0.1:1883": want scheme://host:port, e.g. "tcp://127.0.0.1:1883"`},
	},
	{
		name: "bind with tls scheme and no tls block",
		src:  "connector \"c\" {\n  bind = \"tls://127.0.0.1:8883\"\n  protocol = \"mqtt\"\n}\n" + host,
		want: []string{`t.hcl:2:10: a tls:// connector needs a tls { cert_file = ... key_file = ... } block`},
	},
	{
		name: "bind with unknown scheme",
		src:  "connector \"c\" {\n  bind = \"udp://127.0.0.1:1883\"\n  protocol = \"mqtt\"\n}\n" + host,
		want: []string{`t.hcl:2:10: bind "udp://127.0.0.1:1883": unknown scheme "udp" (want tcp://, tls://, ws://, wss://, http:// or https://)`},
	},
	{
		name: "bind without port",
		src:  "connector \"c\" {\n  bind = \"tcp://localhost\"\n  protocol = \"mqtt\"\n}\n" + host,
		want: []string{`t.hcl:2:10: invalid bind "tcp://localhost": want tcp://host:port (address localhost: missing port in address)`},
	},
	{
		name: "bind with bad port",
		src:  "connector \"c\" {\n  bind = \"tcp://localhost:99999\"\n  protocol = \"mqtt\"\n}\n" + host,
		want: []string{`t.hcl:2:10: invalid bind "tcp://localhost:99999": port "99999" is not a number from 0 to 65535`},
	},
	{
		name: "unknown protocol",
		src:  "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"amqp\"\n}\n" + host,
		want: []string{`t.hcl:3:14: unknown protocol "amqp" (want "mqtt" or "stomp")`},
	},
	{
		name: "unknown and duplicate protocols in detect",
		src:  "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  detect = [\"mqtt\", \"amqp\", \"mqtt\"]\n}\n" + host,
		want: []string{
			`t.hcl:3:21: unknown protocol "amqp" in detect (want "mqtt", "stomp", "tls" or "http")`,
			`t.hcl:3:29: protocol "mqtt" is listed twice in detect`,
		},
	},
	{
		name: "empty detect",
		src:  "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  detect = []\n}\n" + host,
		want: []string{`t.hcl:3:12: detect must list at least one protocol`},
	},
	{
		name: "both protocol and detect",
		src:  mqttConn + "  detect = [\"mqtt\", \"stomp\"]\n}\n" + host,
		want: []string{`t.hcl:4:12: set either protocol or detect, not both`},
	},
	{
		name: "neither protocol nor detect",
		src:  "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n}\n" + host,
		want: []string{`t.hcl:1:1: set protocol = "mqtt" or "stomp", or detect = ["mqtt", "stomp"]`},
	},
	{
		name: "duplicate connector names",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"mqtt\"\n}\n" +
			"connector \"c\" {\n  bind = \"tcp://127.0.0.1:61613\"\n  protocol = \"stomp\"\n}\n" + host,
		want: []string{`t.hcl:5:11: duplicate connector "c" (first defined at t.hcl:1:11)`},
	},
	{
		name: "empty names",
		src:  "connector \"\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"mqtt\"\n}\nvirtual_host \"\" {\n}\n",
		want: []string{
			`t.hcl:1:11: connector name must not be empty`,
			`t.hcl:5:14: virtual_host name must not be empty`,
		},
	},
	{
		name: "duplicate virtual_host names, case-insensitively",
		src:  mqttConn + "}\nvirtual_host \"h\" {\n}\nvirtual_host \"H\" {\n}\n",
		want: []string{`t.hcl:7:14: duplicate virtual_host "H" (first defined at t.hcl:5:14)`},
	},
	{
		name: "duplicate host_names across hosts",
		src: mqttConn + "}\nvirtual_host \"a\" {\n  host_names = [\"x.example\", \"y.example\"]\n}\n" +
			"virtual_host \"b\" {\n  host_names = [\"z.example\", \"Y.example\"]\n}\n",
		want: []string{`t.hcl:9:30: host name "Y.example" is listed twice (first at t.hcl:6:30)`},
	},
	{
		name: "host name of one host is the name of another",
		src:  mqttConn + "}\nvirtual_host \"a\" {\n  host_names = [\"b\"]\n}\nvirtual_host \"b\" {\n}\n",
		want: []string{`t.hcl:6:17: host name "b" of virtual_host "a" is the name of virtual_host "b"`},
	},
	{
		name: "empty host name",
		src:  mqttConn + "}\nvirtual_host \"a\" {\n  host_names = [\"\"]\n}\n",
		want: []string{`t.hcl:6:17: host_names entry must not be empty`},
	},
	{
		name: "two hosts in one store directory",
		src: mqttConn + "}\nvirtual_host \"a\" {\n  store {\n    directory = \"data/x\"\n  }\n}\n" +
			"virtual_host \"b\" {\n  store {\n    directory = \"data/./x/\"\n  }\n}\n",
		want: []string{`t.hcl:12:17: store directory "data/./x/" is already used by virtual_host "a"`},
	},
	{
		name: "port clash on the same address",
		src: "connector \"a\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"mqtt\"\n}\n" +
			"connector \"b\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"stomp\"\n}\n" + host,
		want: []string{`t.hcl:6:10: port 1883 is already bound by connector "a" (t.hcl:2:10)`},
	},
	{
		name: "port clash with 0.0.0.0",
		src: "connector \"a\" {\n  bind = \"tcp://0.0.0.0:1883\"\n  protocol = \"mqtt\"\n}\n" +
			"connector \"b\" {\n  bind = \"tcp://10.0.0.1:1883\"\n  protocol = \"stomp\"\n}\n" + host,
		want: []string{`t.hcl:6:10: port 1883 is already bound by connector "a" (t.hcl:2:10)`},
	},
	{
		name: "port clash with [::] and with an empty host",
		src: "connector \"a\" {\n  bind = \"tcp://[::1]:1883\"\n  protocol = \"mqtt\"\n}\n" +
			"connector \"b\" {\n  bind = \"tcp://[::]:1883\"\n  protocol = \"stomp\"\n}\n" +
			"connector \"c\" {\n  bind = \"tcp://:1883\"\n  protocol = \"stomp\"\n}\n" + host,
		want: []string{
			`t.hcl:6:10: port 1883 is already bound by connector "a" (t.hcl:2:10)`,
			`t.hcl:10:10: port 1883 is already bound by connector "a" (t.hcl:2:10)`,
			`t.hcl:10:10: port 1883 is already bound by connector "b" (t.hcl:6:10)`,
		},
	},
	{
		name: "port clash between localhost and 127.0.0.1",
		src: "connector \"a\" {\n  bind = \"tcp://localhost:1883\"\n  protocol = \"mqtt\"\n}\n" +
			"connector \"b\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"stomp\"\n}\n" + host,
		want: []string{`t.hcl:6:10: port 1883 is already bound by connector "a" (t.hcl:2:10)`},
	},
	{
		name: "empty separators and wildcards",
		src: mqttConn + "  mqtt {\n    path_separator = \"\"\n    any_child_wildcard = \"\"\n" +
			"    any_descendant_wildcard = \"\"\n  }\n}\n" + host,
		want: []string{
			`t.hcl:5:22: path_separator must not be empty`,
			`t.hcl:6:26: any_child_wildcard must not be empty`,
			`t.hcl:7:31: any_descendant_wildcard must not be empty`,
		},
	},
	{
		name: "separator equal to a wildcard",
		src:  mqttConn + "  mqtt {\n    path_separator = \"#\"\n  }\n}\n" + host,
		want: []string{`t.hcl:5:22: any_descendant_wildcard "#" is the same as path_separator`},
	},
	{
		name: "wildcards equal to each other",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"stomp\"\n  stomp {\n" +
			"    any_child_wildcard = \"**\"\n    destination_separator = \"}\"\n  }\n}\n" + host,
		want: []string{
			`t.hcl:5:26: any_descendant_wildcard "**" is the same as any_child_wildcard`,
			`t.hcl:6:29: destination_separator "}" is the same as regex_wildcard_end`,
		},
	},
	{
		name: "wildcard containing the separator",
		src:  mqttConn + "  mqtt {\n    any_descendant_wildcard = \"/#\"\n  }\n}\n" + host,
		want: []string{`t.hcl:5:31: any_descendant_wildcard "/#" contains the path_separator "/"`},
	},
	{
		name: "regex start without end",
		src:  mqttConn + "  mqtt {\n    regex_wildcard_start = \"{\"\n  }\n}\n" + host,
		want: []string{`t.hcl:5:28: regex_wildcard_start is set but regex_wildcard_end is not`},
	},
	{
		name: "regex end without start",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"stomp\"\n  stomp {\n" +
			"    regex_wildcard_start = \"\"\n  }\n}\n" + host,
		want: []string{`t.hcl:4:3: regex_wildcard_end is set but regex_wildcard_start is not`},
	},
	{
		name: "two prefixes alike",
		src:  mqttConn + "  mqtt {\n    queue_prefix = \"q/\"\n    topic_prefix = \"q/\"\n  }\n}\n" + host,
		want: []string{`t.hcl:6:20: topic_prefix "q/" is the same as queue_prefix`},
	},
	{
		name: "undefined virtual_host reference",
		src:  mqttConn + "  virtual_host = \"nope\"\n}\n" + host,
		want: []string{`t.hcl:4:18: virtual_host "nope" is not defined`},
	},
	{
		name: "no virtual_host",
		src:  mqttConn + "}\n",
		want: []string{`t.hcl:1:1: no virtual_host defined; at least one is required`},
	},
	{
		name: "no connector",
		src:  "virtual_host \"h\" {\n}\n",
		want: []string{`t.hcl:1:1: no connector defined; at least one is required`},
	},
	{
		name: "empty file",
		src:  "",
		want: []string{
			`t.hcl:1:1: no virtual_host defined; at least one is required`,
			`t.hcl:1:1: no connector defined; at least one is required`,
		},
	},
	{
		name: "max_connections not positive",
		src:  mqttConn + "  max_connections = 0\n}\n" + host,
		want: []string{`t.hcl:4:21: max_connections must be > 0, not 0`},
	},
	{
		name: "number out of range",
		src:  mqttConn + "  max_connections = 1e30\n}\n" + host,
		want: []string{`t.hcl:4:21: max_connections: 1e+30 is out of range`},
	},
	{
		name: "max_inflight zero",
		src:  mqttConn + "  mqtt {\n    max_inflight = 0\n  }\n}\n" + host,
		want: []string{`t.hcl:5:20: max_inflight must be between 1 and 65535, not 0`},
	},
	{
		name: "max_inflight above the packet identifier space",
		src:  mqttConn + "  mqtt {\n    max_inflight = 65536\n  }\n}\n" + host,
		want: []string{`t.hcl:5:20: max_inflight must be between 1 and 65535, not 65536`},
	},
	{
		name: "mqtt 5 limits",
		src: mqttConn + "  mqtt {\n    receive_maximum = 0\n    topic_alias_maximum = 70000\n" +
			"    max_keep_alive = \"20h\"\n    max_session_expiry = \"1500ms\"\n  }\n}\n" + host,
		want: []string{
			`t.hcl:5:23: receive_maximum must be between 1 and 65535, not 0`,
			`t.hcl:6:27: topic_alias_maximum must be between 0 and 65535, not 70000`,
			`t.hcl:7:22: max_keep_alive must be between 0 (no cap) and 65535s`,
			`t.hcl:8:26: max_session_expiry must be whole seconds, not 1.5s`,
		},
	},
	{
		name: "other mqtt limits",
		src: mqttConn + "  mqtt {\n    max_queued_messages = -1\n    max_subscriptions = -1\n" +
			"    max_topic_levels = 0\n    max_message_length = 0\n  }\n}\n" + host,
		want: []string{
			`t.hcl:5:27: max_queued_messages must not be negative`,
			`t.hcl:6:25: max_subscriptions must be at least 1, not -1`,
			`t.hcl:7:24: max_topic_levels must be at least 1, not 0`,
			`t.hcl:8:26: max_message_length must be positive`,
		},
	},
	{
		name: "stomp limits and header names",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"stomp\"\n  stomp {\n" +
			"    max_headers = 0\n    max_header_length = 0\n    add_user_header = \"user:id\"\n  }\n}\n" + host,
		want: []string{
			`t.hcl:5:19: max_headers must be at least 1, not 0`,
			`t.hcl:6:25: max_header_length must be positive`,
			`t.hcl:7:23: add_user_header "user:id" is not a valid STOMP header name`,
		},
	},
	{
		name: "host subscription bounds",
		src:  mqttConn + "}\nvirtual_host \"h\" {\n  max_subscriptions = -1\n  max_durable_subscriptions = -2\n}\n",
		want: []string{
			`t.hcl:6:23: max_subscriptions must not be negative (0 means the default)`,
			`t.hcl:7:31: max_durable_subscriptions must not be negative (0 means the default)`,
		},
	},
	{
		name: "host credential cache",
		src:  mqttConn + "}\nvirtual_host \"h\" {\n  credential_cache = \"-1s\"\n  credential_cache_size = -1\n}\n",
		want: []string{
			`t.hcl:6:22: credential_cache: duration "-1s" is negative`,
			`t.hcl:7:27: credential_cache_size must not be negative (0 means the default)`,
		},
	},
	{
		name: "stomp transaction bounds",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"stomp\"\n  stomp {\n" +
			"    max_transactions = 0\n    max_transaction_frames = -1\n    max_transaction_bytes = \"-1KB\"\n" +
			"    max_selector_length = 0\n  }\n}\n" + host,
		want: []string{
			`t.hcl:5:24: max_transactions must be at least 1, not 0`,
			`t.hcl:6:30: max_transaction_frames must be at least 1, not -1`,
			`t.hcl:7:29: max_transaction_bytes: size "-1KB" is negative`,
			`t.hcl:8:27: max_selector_length must be positive`,
		},
	},
	{
		name: "access_rule with both allow and deny, unknown action and kind",
		src: mqttConn + "}\nvirtual_host \"h\" {\n  access_rule {\n    allow = [\"+\"]\n    deny = [\"bob\"]\n" +
			"    action = [\"send\", \"recieve\"]\n    kind = \"topics\"\n  }\n}\n",
		want: []string{
			`t.hcl:8:12: access_rule sets both allow and deny; use one rule for each`,
			`t.hcl:9:23: unknown action "recieve"; did you mean "receive"? (want one of connect, send, receive, consume, create, destroy, admin, monitor)`,
			`t.hcl:10:12: unknown kind "topics"; did you mean "topic"? (want "*" or one of connector, virtual_host, broker, topic, queue, dsub, temp_queue, temp_topic)`,
		},
	},
	{
		name: "access_rule without allow or deny, with an empty list and a bad id",
		src: "access_rule {\n  action = \"connect\"\n}\naccess_rule {\n  allow = []\n  id = \"a.**.b\"\n}\n" +
			"access_rule {\n  deny = [\"\"]\n  id = \"a..b\"\n}\naccess_rule {\n  allow = [\"*\"]\n  id = \"a%zz.{[}\"\n}\n" + mqttConn + "}\n" + host,
		want: []string{
			`t.hcl:1:1: access_rule needs allow = [...] or deny = [...] (users, groups, "+" or "*")`,
			`t.hcl:5:11: allow must list at least one user or group, "+" or "*"`,
			`t.hcl:6:8: invalid id "a.**.b": "**" must be the last level`,
			`t.hcl:9:11: deny entry "" must not be empty`,
			`t.hcl:10:8: invalid id "a..b": empty level (two dots in a row, or a dot at an end)`,
			`t.hcl:14:8: invalid id "a%zz.{[}": level "a%zz": '%' must start %XX, %u or %c`,
		},
	},
	{
		name: "access_rule block with a name, host limits negative",
		src: mqttConn + "}\nvirtual_host \"h\" {\n  max_connections = -1\n  max_queues = -2\n  max_message_length = \"-1KB\"\n" +
			"  access_rule \"x\" {\n  }\n}\n",
		want: []string{
			`t.hcl:6:21: max_connections must not be negative (0 means unlimited)`,
			`t.hcl:7:16: max_queues must not be negative (0 means unlimited)`,
			`t.hcl:8:24: max_message_length: size "-1KB" is negative`,
			`t.hcl:9:15: access_rule block takes no name`,
		},
	},
	{
		name: "users_file missing or invalid",
		src: mqttConn + "}\nvirtual_host \"h\" {\n  users_file = \"testdata/nope.hcl\"\n}\n" +
			"virtual_host \"i\" {\n  users_file = \"testdata/full.hcl\"\n}\n",
		want: []string{
			`t.hcl:6:16: users_file: open testdata/nope.hcl: no such file or directory`,
			`t.hcl:9:16: users_file: testdata/full.hcl:2:1: unknown block "connector"`,
			`t.hcl:9:16: users_file: testdata/full.hcl:58:1: unknown block "connector"`,
			`t.hcl:9:16: users_file: testdata/full.hcl:63:1: unknown block "virtual_host"`,
			`t.hcl:9:16: users_file: testdata/full.hcl:73:1: unknown block "virtual_host"`,
		},
	},
	{
		name: "queue and topic policies",
		src: mqttConn + "}\nvirtual_host \"h\" {\n  queue \"orders.**\" {\n    nak_limit = -1\n    dlq = \"dlq..*\"\n" +
			"    quota_messages = -5\n    full_policy = \"drop\"\n  }\n  queue \"orders.**\" {\n  }\n  queue \"a.*b\" {\n  }\n" +
			"  topic \"t.**\" {\n    slow_consumer_policy = \"drop\"\n  }\n  topic {\n  }\n}\n",
		want: []string{
			`t.hcl:7:17: nak_limit must not be negative (0 means unlimited)`,
			`t.hcl:8:11: invalid dlq "dlq..*": want a queue name such as "dlq.*" ("*" is the queue's name)`,
			`t.hcl:9:22: quota_messages must not be negative (0 means the default)`,
			`t.hcl:10:19: unknown full_policy "drop" (want "block", "drop_head" or "drop_tail")`,
			`t.hcl:12:9: duplicate queue pattern "orders.**" (first at t.hcl:6:9); the first matching block wins, so this one never applies`,
			`t.hcl:14:9: invalid queue pattern "a.*b": level "*b": wildcard "*" must occupy a whole level`,
			`t.hcl:17:28: unknown slow_consumer_policy "drop" (want "block" or "queue")`,
			`t.hcl:19:3: topic block needs exactly one name, as in topic "default" { ... }`,
		},
	},
	{
		name: "shared_subscription_strategy unknown or empty",
		src: mqttConn + "}\nvirtual_host \"h\" {\n  shared_subscription_strategy = \"round-robin\"\n}\n" +
			"virtual_host \"i\" {\n  shared_subscription_strategy = \"\"\n}\n" +
			"virtual_host \"j\" {\n  shared_subscription_strategy = \"fifo\"\n}\n",
		want: []string{
			`t.hcl:6:34: unknown shared_subscription_strategy "round-robin"; did you mean "round_robin"? (want "round_robin", "random", "sticky", "hash_clientid" or "hash_topic")`,
			`t.hcl:9:34: unknown shared_subscription_strategy "" (want "round_robin", "random", "sticky", "hash_clientid" or "hash_topic")`,
			`t.hcl:12:34: unknown shared_subscription_strategy "fifo" (want "round_robin", "random", "sticky", "hash_clientid" or "hash_topic")`,
		},
	},
	{
		name: "http block problems",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:1883\"\n  protocol = \"mqtt\"\n  http {\n    mqtt_path = \"mqtt\"\n  }\n}\n" +
			"connector \"w\" {\n  bind = \"ws://127.0.0.1:8080\"\n  detect = [\"mqtt\"]\n  http {\n" +
			"    stomp_path = \"/mqtt\"\n    max_header_bytes = 100\n    allowed_origins = [\"*\", \"app.example.com\", \"https://a.example.com/x\"]\n  }\n}\n" + host,
		want: []string{
			`t.hcl:4:3: http block on connector "c", which neither binds ws://, wss://, http:// or https:// nor lists "http" in detect`,
			`t.hcl:5:17: mqtt_path must be a URL path starting with "/", not "mqtt"`,
			`t.hcl:10:12: a ws:// connector serves WebSocket only: leave detect out (protocol = "mqtt" or "stomp" restricts it to one front-end)`,
			`t.hcl:12:18: mqtt_path and stomp_path are both "/mqtt"`,
			`t.hcl:13:24: max_header_bytes must be at least 1KB, not 100`,
			`t.hcl:14:29: allowed origin "app.example.com": want "*" or scheme://host[:port], e.g. "https://app.example.com"`,
			`t.hcl:14:48: allowed origin "https://a.example.com/x": want "*" or scheme://host[:port], e.g. "https://app.example.com"`,
		},
	},
	{
		name: "tls block problems",
		src: "connector \"c\" {\n  bind = \"tls://127.0.0.1:8883\"\n  protocol = \"mqtt\"\n  tls {\n" +
			"    key_file = \"testdata/tls/missing.pem\"\n    client_ca_file = \"testdata\"\n    client_auth = \"always\"\n" +
			"    min_version = \"1.1\"\n    cert_identity = \"email\"\n  }\n}\n" + host,
		want: []string{
			`t.hcl:4:3: cert_file is required`,
			`t.hcl:5:16: key_file: stat testdata/tls/missing.pem: no such file or directory`,
			`t.hcl:6:22: client_ca_file: testdata is a directory`,
			`t.hcl:7:19: unknown client_auth "always" (want "none", "request" or "require")`,
			`t.hcl:8:19: unsupported min_version "1.1" (want "1.2" or "1.3")`,
			`t.hcl:9:21: unknown cert_identity "email" (want "cn" or "dn")`,
		},
	},
	{
		name: "tls options that need client certificates",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:8883\"\n  detect = [\"tls\", \"mqtt\"]\n  tls {\n" +
			"    cert_file = \"testdata/tls/cert.pem\"\n    key_file = \"testdata/tls/key.pem\"\n" +
			"    client_auth = \"require\"\n  }\n}\nconnector \"d\" {\n  bind = \"tcp://127.0.0.1:8884\"\n  protocol = \"mqtt\"\n  tls {\n" +
			"    cert_file = \"testdata/tls/cert.pem\"\n    key_file = \"testdata/tls/key.pem\"\n    cert_identity = \"cn\"\n  }\n}\n" + host,
		want: []string{
			`t.hcl:7:19: client_auth = "require" needs client_ca_file to verify client certificates`,
			`t.hcl:13:3: tls block on connector "d", which neither binds tls:// or wss:// nor lists "tls" in detect`,
			`t.hcl:16:21: cert_identity = "cn" needs client_auth = "request" or "require"`,
		},
	},
	{
		name: "cert_identity_hosts and client_ids",
		src: "connector \"c\" {\n  bind = \"tls://127.0.0.1:8883\"\n  protocol = \"mqtt\"\n  tls {\n" +
			"    cert_file = \"testdata/tls/cert.pem\"\n    key_file = \"testdata/tls/key.pem\"\n" +
			"    cert_identity_hosts = [\"*\", \"nowhere\"]\n  }\n}\nconnector \"d\" {\n  bind = \"tls://127.0.0.1:8884\"\n" +
			"  protocol = \"mqtt\"\n  tls {\n    cert_file = \"testdata/tls/cert.pem\"\n    key_file = \"testdata/tls/key.pem\"\n" +
			"    client_ca_file = \"testdata/tls/cert.pem\"\n    client_auth = \"require\"\n    cert_identity = \"cn\"\n" +
			"    cert_identity_hosts = [\"H\", \"other\"]\n  }\n}\n" +
			"virtual_host \"h\" {\n  anonymous = true\n  client_ids = [\"%u-*\", \"%c\", \"\"]\n}\n",
		want: []string{
			`t.hcl:7:27: cert_identity_hosts without cert_identity: certificates are no identities here`,
			`t.hcl:19:33: cert_identity_hosts entry "other" names no virtual host`,
			`t.hcl:24:25: client_ids entry "%c": "%" may only start "%u" (the user name)`,
			`t.hcl:24:31: client_ids entry "": empty pattern`,
		},
	},
	{
		name: "tls in detect alone, without a tls block, or on a tls bind",
		src: "connector \"c\" {\n  bind = \"tcp://127.0.0.1:8883\"\n  detect = [\"tls\"]\n}\n" +
			"connector \"d\" {\n  bind = \"tls://127.0.0.1:8884\"\n  detect = [\"tls\", \"stomp\"]\n  tls {\n" +
			"    cert_file = \"testdata/tls/cert.pem\"\n    key_file = \"testdata/tls/key.pem\"\n  }\n}\n" +
			"connector \"e\" {\n  bind = \"tcp://127.0.0.1:8885\"\n  protocol = \"tls\"\n}\n" + host,
		want: []string{
			`t.hcl:3:12: detecting "tls" needs a tls { cert_file = ... key_file = ... } block`,
			`t.hcl:3:13: detect = ["tls"] needs at least one protocol to speak inside TLS, e.g. ["tls", "mqtt", "stomp"]`,
			`t.hcl:7:13: "tls" in detect on a tls:// connector: every connection is TLS already`,
			`t.hcl:15:14: tls is not an application protocol: bind = "tls://..." with protocol = "mqtt" or "stomp", or detect = ["tls", ...]`,
		},
	},
	{
		name: "attribute redefined",
		src:  mqttConn + "  protocol = \"stomp\"\n}\n" + host,
		want: []string{`t.hcl:4:3: Attribute redefined: The argument "protocol" was already set at t.hcl:3,3-11. Each argument may be set only once.`},
	},
}

func TestErrorsNameFileLineCol(t *testing.T) {
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErrors(t, tt.src)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tt.want, "\n     "))
			}
		})
	}
}

// One run reports every problem, in source order, one per line of the error text.
func TestMultipleErrorsReportedTogether(t *testing.T) {
	src := `connector "a" {
  bind = "tcp://127.0.0.1:1883"
  protocol = "mqtt"
  colour = "blue"
  max_connections = -1
  mqtt {
    max_inflight = 70000
    part_pattern = "("
  }
}
connector "a" {
  bind = "tls://127.0.0.1:1884"
  detect = ["stomp", "xmpp"]
  virtual_host = "missing"
}
virtual_host "h" {
  host_names = ["h.example", "h.example"]
  store {
    flush_delay = "-1ms"
  }
}
`
	want := []string{
		`t.hcl:4:3: unknown attribute "colour"`,
		`t.hcl:5:21: max_connections must be > 0, not -1`,
		`t.hcl:7:20: max_inflight must be between 1 and 65535, not 70000`,
		"t.hcl:8:20: invalid part_pattern: error parsing regexp: missing closing ): `(`",
		`t.hcl:11:11: duplicate connector "a" (first defined at t.hcl:1:11)`,
		`t.hcl:12:10: a tls:// connector needs a tls { cert_file = ... key_file = ... } block`,
		`t.hcl:13:22: unknown protocol "xmpp" in detect (want "mqtt", "stomp", "tls" or "http")`,
		`t.hcl:14:18: virtual_host "missing" is not defined`,
		`t.hcl:17:30: host name "h.example" is listed twice (first at t.hcl:17:17)`,
		`t.hcl:18:3: store directory is required`,
		`t.hcl:19:19: flush_delay: duration "-1ms" is negative`,
	}
	_, err := conf.Parse([]byte(src), "t.hcl")
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("error text:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	var errs conf.Errors
	if !errors.As(err, &errs) || len(errs) != len(want) {
		t.Fatalf("errors.As(conf.Errors) = %v, %d errors; want %d", errs, len(errs), len(want))
	}
	if errs[0] != (conf.Error{Pos: "t.hcl:4:3", Msg: `unknown attribute "colour"`}) {
		t.Errorf("errs[0] = %+v", errs[0])
	}
	var one conf.Error
	if !errors.As(err, &one) || one.Pos != "t.hcl:4:3" {
		t.Errorf("errors.As(conf.Error) = %+v, want the first problem", one)
	}
}

// A Config built in Go has no positions: problems name the connector or host instead.
func TestValidateBuiltInGo(t *testing.T) {
	good := conf.NewConnector("m", "tcp://127.0.0.1:0")
	good.Protocol = "mqtt"
	c := &conf.Config{
		Connectors:   []conf.Connector{good},
		VirtualHosts: []conf.VirtualHost{{Name: "h"}},
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Connectors[0].Network != "tcp" || c.Connectors[0].Address != "127.0.0.1:0" {
		t.Errorf("Validate did not fill Network/Address: %+v", c.Connectors[0])
	}

	bad := conf.NewConnector("s", "tcp://127.0.0.1:0")
	bad.Detect = []string{"stomp"}
	bad.STOMP.MaxHeaders = 0
	c.Connectors = append(c.Connectors, bad, conf.Connector{Name: "z", Protocol: "mqtt", MQTT: conf.DefaultMQTT()})
	c.VirtualHosts = append(c.VirtualHosts, conf.VirtualHost{Name: "h"}, conf.VirtualHost{Name: "x", SharedSubscriptionStrategy: "fifo"})
	err := c.Validate()
	want := strings.Join([]string{
		`<config>: virtual_host "h": duplicate virtual_host "h" (first defined at <config>: virtual_host "h")`,
		`<config>: virtual_host "x": unknown shared_subscription_strategy "fifo" (want "round_robin", "random", "sticky", "hash_clientid" or "hash_topic")`,
		`<config>: connector "s": max_headers must be at least 1, not 0`,
		`<config>: connector "z": bind is required, e.g. bind = "tcp://127.0.0.1:1883"`,
		`<config>: connector "z": detect_timeout must be positive`,
		`<config>: connector "z": max_connections must be > 0, not 0`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Validate:\n%v\nwant:\n%s", err, want)
	}
}

// management needs a connector that serves HTTP; sys_interval is off or at least a second.
func TestManagementAndSysIntervalErrors(t *testing.T) {
	got := parseErrors(t, `sys_interval = "10ms"
connector "c" {
  bind       = "tcp://127.0.0.1:1883"
  protocol   = "mqtt"
  management = true
}
virtual_host "h" {}
`)
	want := []string{
		`t.hcl:1:16: sys_interval must be 0 (off) or at least 1s, not 10ms`,
		`t.hcl:5:16: management on connector "c", which serves no HTTP: bind http:// (or https://), or add "http" to detect`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	c, err := conf.Parse([]byte(`sys_interval = "0s"
connector "api" {
  bind       = "http://127.0.0.1:8080"
  management = true
}
virtual_host "h" {}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cn := c.Connectors[0]; !cn.Management || !cn.ServesHTTP() || cn.BindsTLS() || c.SysInterval != 0 {
		t.Errorf("http:// management connector = %+v, SysInterval %v", cn, c.SysInterval)
	}
}
