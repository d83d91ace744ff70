// Package conf turns Lyre's HCL configuration into typed values.
//
// The schema (block and attribute names) is a contract shared with other tooling; see DESIGN.md §3, §6, §7.
// Every field comment gives the default applied when the attribute is absent. conf is a leaf package:
// it depends only on HCL and the standard library, and each other package receives only its own section.
//
// Parse and Load are strict, so a typo never silently falls back to a default: unknown attributes and
// blocks, values of the wrong type and expressions that are not literals (variables, functions) are
// errors. Every problem found is reported in one Errors value, each with its file:line:col, in source order.
// Beyond the per-field rules, these combinations are refused:
//   - two connectors on one port where the addresses overlap (same host, or either on every interface);
//   - an mqtt or stomp block on a connector that does not speak that protocol;
//   - one host name listed twice (case-insensitively), or a host name that is another virtual host's
//     name, since hosts are looked up by name and host name alike;
//   - two virtual hosts storing into the same directory;
//   - a tls:// bind or "tls" in detect without a tls block, a tls block on a connector that uses neither,
//     "tls" alone in detect or on a tls:// connector, client_auth request/require without client_ca_file,
//     cert_identity with client_auth "none", cert_identity_hosts without cert_identity or naming no
//     virtual host;
//   - an access_rule with both allow and deny, or neither;
//   - a users file naming a user like a group it is not in, or a client_ids pattern with a '%' that
//     does not start "%u".
//
// Files (users_file, cert_file, key_file, client_ca_file) must exist when the config is loaded; a relative
// path is resolved against the directory of the config file and stored resolved. A users file is decoded
// too (see LoadUsers), its problems reported at the users_file attribute with their own file:line:col.
// Access rule ids and queue/topic policy names are patterns checked by CheckPattern.
//
// Sizes are bytes, as a number or a string with a binary unit ("512B", "10KB", "100MB", "1GB");
// durations are strings in time.ParseDuration syntax ("5s", "250ms"). Neither may be negative.
package conf

import (
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Config is a whole, validated broker configuration.
type Config struct {
	// Source is the file the config was read from ("<default>" for the embedded one).
	Source       string
	Connectors   []Connector
	VirtualHosts []VirtualHost // the first one is the default host
	// AccessRules at broker level are checked before each host's own.
	AccessRules []AccessRule
	// SysInterval is how often each host's $SYS topics are refreshed; 0 turns them off. Default 10s.
	SysInterval time.Duration
	// Cluster joins this node to a cluster of Lyre nodes over NATS; nil (no cluster block) = standalone,
	// no NATS at all.
	Cluster *Cluster

	// pos maps a position key to the source range it was decoded from, so Validate can name file:line:col.
	// Keys: "" (file start), "c<i>" (connector i), "c<i>.name", "c<i>.bind", "c<i>.detect.<j>",
	// "c<i>.mqtt.max_inflight", "v<i>" (virtual host i), "v<i>.host_names.<j>", "v<i>.store.directory", ...
	// nil for a Config built in Go.
	pos map[string]hcl.Range
}

// Connector is one listening socket.
type Connector struct {
	Name string
	// Bind is the address as written, e.g. "tcp://127.0.0.1:61613".
	Bind string
	// Network ("tcp") and Address ("127.0.0.1:61613") are parsed from Bind.
	Network string
	Address string
	// Protocol is the one protocol spoken on this connector ("mqtt" or "stomp"), or "" when Detect is used.
	Protocol string
	// Detect lists the protocols sniffed on this connector, in preference order. Empty when Protocol is set.
	Detect []string
	// DetectTimeout closes a connection that has not sent enough bytes to be recognised. Default 5s.
	DetectTimeout time.Duration
	// MaxConnections caps concurrent connections; excess ones are refused. Default 10000.
	MaxConnections int
	// VirtualHost names the host MQTT clients of this connector use. Default "" = the first host.
	VirtualHost string
	MQTT        MQTT
	STOMP       STOMP
	// TLS is set for tls:// and wss:// binds, and for detect lists containing "tls". nil otherwise.
	TLS *TLS
	// HTTP is the connector's http block: WebSocket settings for a connector that serves HTTP (ws:// or
	// wss:// bind, or "http" in detect). nil = the defaults (DefaultHTTP).
	HTTP *HTTP
	// Management serves the management API, Prometheus metrics and the web console to HTTP requests
	// that are not WebSocket upgrades. Only on a connector that serves HTTP.
	Management bool
}

// HTTP is a connector's `http { }` block: how its HTTP side accepts WebSocket clients.
type HTTP struct {
	// AllowedOrigins lists the browser origins ("https://app.example.com") allowed to open a WebSocket;
	// "*" allows any. Empty: only pages served from the host the request names (Origin host = Host),
	// and clients that send no Origin (not browsers).
	AllowedOrigins []string
	// MQTTPath and STOMPPath choose the front-end of a WebSocket request that names no known
	// sub-protocol. Defaults "/mqtt" and "/stomp".
	MQTTPath  string
	STOMPPath string
	// MaxHeaderBytes bounds the request line and headers. Default 8 KiB.
	MaxHeaderBytes int64
	// UpgradeTimeout bounds the time from the first byte to a completed WebSocket handshake. Default 10s.
	UpgradeTimeout time.Duration
}

// DefaultHTTP returns the defaults of an http block.
func DefaultHTTP() HTTP {
	return HTTP{MQTTPath: "/mqtt", STOMPPath: "/stomp", MaxHeaderBytes: DefaultMaxHeaderBytes, UpgradeTimeout: DefaultUpgradeTimeout}
}

// WithDefaults returns h with its unset fields set to the defaults.
func (h HTTP) WithDefaults() HTTP {
	d := DefaultHTTP()
	if h.MQTTPath == "" {
		h.MQTTPath = d.MQTTPath
	}
	if h.STOMPPath == "" {
		h.STOMPPath = d.STOMPPath
	}
	h.MaxHeaderBytes = or(h.MaxHeaderBytes, d.MaxHeaderBytes)
	h.UpgradeTimeout = or(h.UpgradeTimeout, d.UpgradeTimeout)
	return h
}

// Protocols returns the application protocols accepted on the connector ("mqtt", "stomp"), raw or over
// WebSocket, without the layers "tls" and "http" a detect list may hold. A connector that serves HTTP
// and names no application protocol (ws://, wss://, detect = ["http"]) accepts both over WebSocket.
func (c *Connector) Protocols() []string {
	if c.Protocol != "" {
		return []string{c.Protocol}
	}
	if !slices.Contains(c.Detect, "tls") && !slices.Contains(c.Detect, "http") && !c.BindsWebSocket() {
		return c.Detect
	}
	out := make([]string, 0, len(c.Detect))
	for _, p := range c.Detect {
		if p != "tls" && p != "http" {
			out = append(out, p)
		}
	}
	if len(out) == 0 && c.ServesHTTP() {
		out = append(out, "mqtt", "stomp")
	}
	return out
}

// Sniffed returns what the connector recognises from a connection's first bytes (inside TLS, for a
// TLS-only connector): its detect list, or "http" for a ws:// or wss:// connector. nil when the
// connector speaks one protocol without sniffing.
func (c *Connector) Sniffed() []string {
	if c.BindsWebSocket() {
		return []string{"http"}
	}
	return c.Detect
}

// scheme is the lower-case scheme of Bind.
func (c *Connector) scheme() string {
	s, _, _ := strings.Cut(c.Bind, "://")
	return strings.ToLower(s)
}

// BindsTLS reports whether the connector binds "tls://", "wss://" or "https://": every connection starts
// with a TLS handshake.
func (c *Connector) BindsTLS() bool { s := c.scheme(); return s == "tls" || s == "wss" || s == "https" }

// BindsWebSocket reports whether the connector binds "ws://", "wss://", "http://" or "https://": every
// connection is an HTTP request, upgraded to a WebSocket or (with management on) answered by the
// management API. The four schemes differ only in name and TLS.
func (c *Connector) BindsWebSocket() bool {
	switch c.scheme() {
	case "ws", "wss", "http", "https":
		return true
	}
	return false
}

// ServesHTTP reports whether the connector answers HTTP: a ws://, wss://, http:// or https:// bind, or
// "http" in detect.
func (c *Connector) ServesHTTP() bool { return c.BindsWebSocket() || slices.Contains(c.Detect, "http") }

// DetectsTLS reports whether the autodetecting connector recognises a TLS ClientHello ("tls" in detect)
// and sniffs the application protocol again inside the TLS session.
func (c *Connector) DetectsTLS() bool { return slices.Contains(c.Detect, "tls") }

// Grammar maps wire destination names onto the router's canonical paths (DESIGN.md §3).
// An empty string means "unset" (the feature is off) unless a protocol default applies.
type Grammar struct {
	PathSeparator         string // MQTT "/", STOMP "."
	AnyChildWildcard      string // MQTT "+", STOMP "*"
	AnyDescendantWildcard string // MQTT "#", STOMP "**"
	RegexWildcardStart    string // MQTT unset, STOMP "{"
	RegexWildcardEnd      string // MQTT unset, STOMP "}"
	PartPattern           string // unset: any segment; else an RE2 regex every literal segment must match
	QueuePrefix           string // MQTT unset, STOMP "/queue/"
	TopicPrefix           string // MQTT unset, STOMP "/topic/"
	DsubPrefix            string // MQTT unset, STOMP "/dsub/"
	TempQueuePrefix       string // MQTT unset, STOMP "/temp-queue/"
	TempTopicPrefix       string // MQTT unset, STOMP "/temp-topic/"
	DestinationSeparator  string // MQTT unset, STOMP ","
}

// MQTT holds the options of a connector's `mqtt { }` block.
type MQTT struct {
	Grammar
	// MaxMessageLength rejects larger packets from their fixed header. Default 100MB.
	MaxMessageLength int64
	// DieDelay bounds how long a connection lingers after a protocol error. Default 5s.
	DieDelay time.Duration
	// MaxInflight is the per-client window of unacknowledged outbound QoS 1/2 messages. Default 128: a
	// window of 32 held one subscriber to 32 messages per round trip, the limit of a QoS 1 fan-in and the
	// knee of its latency curve. An MQTT 5 client's Receive Maximum lowers it.
	MaxInflight int
	// MaxQueuedMessages bounds QoS 1/2 messages held for a client beyond its window. Default 1000.
	MaxQueuedMessages int
	// MaxSubscriptions bounds the subscriptions of one client (its session's, when it resumes one);
	// more filters are refused in SUBACK, and a SUBSCRIBE or UNSUBSCRIBE listing more than this many is
	// refused while it is decoded (the connection closes; MQTT 5: DISCONNECT 0x97). Default 1000.
	MaxSubscriptions int
	// MaxTopicLevels in a topic name or filter. Default 128.
	MaxTopicLevels int

	// MQTT 5 only: the limits the broker announces in CONNACK and enforces.

	// ReceiveMaximum bounds the QoS 1 and 2 PUBLISH packets a client may have unacknowledged towards the
	// broker; one more ends the connection with DISCONNECT 0x93. Default 1024, at most 65535.
	ReceiveMaximum int
	// TopicAliasMaximum bounds the topic aliases a client may set (inbound) and the broker assigns for a
	// client that accepts them (outbound, also bounded by the client's own maximum); 0 disables them.
	// Default 64, at most 65535.
	TopicAliasMaximum int
	// MaxSessionExpiry caps the session expiry interval a client may ask for; the CONNACK tells the
	// client the value granted. 0 = no cap (0xFFFFFFFF, never expire, allowed). Default 0.
	MaxSessionExpiry time.Duration
	// MaxKeepAlive caps the keep-alive a client may ask for (also a keep-alive of 0, none): the CONNACK's
	// Server Keep Alive then tells it the value to use. 0 = no cap. Default 0.
	MaxKeepAlive time.Duration
	// ResponseTopicPrefix is what a client that asks for Response Information gets: this prefix followed
	// by its client id, a topic under which to receive responses. Default "reply/".
	ResponseTopicPrefix string
}

// STOMP holds the options of a connector's `stomp { }` block.
type STOMP struct {
	Grammar
	// MaxMessageLength rejects larger frames from their headers. Default 100MB.
	MaxMessageLength int64
	// DieDelay bounds how long a connection lingers after an ERROR frame. Default 5s.
	DieDelay time.Duration
	// MaxHeaders per frame. Default 1000.
	MaxHeaders int
	// MaxHeaderLength of one header line. Default 10KB.
	MaxHeaderLength int64
	// AddUserHeader, when set, names a header stamped with the sender's user id. Default unset.
	AddUserHeader string
	// AddTimestampHeader, when set, names a header stamped with the receive time (epoch ms). Default unset.
	AddTimestampHeader string
	// AddRedeliveriesHeader, when set, names a header carrying the redelivery count. Default unset.
	AddRedeliveriesHeader string
	// MaxTransactions bounds the transactions one connection has open; BEGIN of one more is an ERROR.
	// Default 100.
	MaxTransactions int
	// MaxTransactionFrames bounds the SEND, ACK and NACK frames buffered in all the open transactions
	// of one connection together; one more is an ERROR. Default 10000.
	MaxTransactionFrames int
	// MaxTransactionBytes bounds the bytes (command, headers and body of each frame) buffered in all
	// the open transactions of one connection together; more is an ERROR. Default (0): the block's
	// MaxMessageLength, so a transaction holds no more than one message could.
	MaxTransactionBytes int64
	// MaxSelectorLength bounds a SUBSCRIBE's selector header, in bytes: a selector costs each message
	// it is evaluated on time proportional to its length and the message's header lengths. Default 4KB.
	MaxSelectorLength int64
	// MaxSubscriptions bounds the destinations one connection subscribes to, counting each destination
	// of a composite SUBSCRIBE; one more is an ERROR. Default 1000.
	MaxSubscriptions int
}

// VirtualHost is one tenant.
type VirtualHost struct {
	Name      string
	HostNames []string
	// Anonymous lets clients in without credentials. Default false (the embedded config sets it true).
	Anonymous bool
	// Store is nil when the host has no `store { }` block: it then keeps everything in memory.
	Store *Store
	// UsersFile is an HCL file of `user "NAME" { password = "<bcrypt>" groups = [..] client_ids = [..] }`
	// blocks, each optionally with a `scram_sha_256 { }` block of SCRAM credentials (see User), and of
	// `group "NAME" { client_ids = [..] }` blocks (see Group), resolved relative to the config file.
	// Default "" = no users.
	UsersFile string
	// AccessRules are checked in order after the broker-level Config.AccessRules; first match wins.
	AccessRules []AccessRule
	// ClientIDs are client id patterns (CheckClientIDPattern) every client of the host claims, besides
	// those its users file entry and groups give it: "%u-*" lets each user use client ids starting with
	// its name; "*" lets anyone claim any client id, so that "%c" in access rules is no security boundary
	// (the behaviour before client ids were bound to users). Default none.
	ClientIDs []string
	// MaxConnections to this host; 0 = unlimited. Default 0.
	MaxConnections int
	// MaxQueues this host may hold; 0 = unlimited. Default 0.
	MaxQueues int
	// MaxMessageLength for this host, on top of each connector's; 0 = the connector's. Default 0.
	MaxMessageLength int64
	// Quota bounds the bytes each queue and durable subscription of the host holds, unless a policy
	// says otherwise; 0 = the router default (64MB). Default 0.
	Quota int64
	// QuotaMessages bounds the messages each queue and durable subscription holds likewise; 0 = the
	// router default (100000). Default 0.
	QuotaMessages int
	// MaxSubscriptions bounds the subscriptions all the host's clients hold together: topic
	// subscriptions and queue consumers, one per destination a SUBSCRIBE names. One more is refused
	// (MQTT SUBACK failure, STOMP ERROR). 0 = the router default (1000000). Default 0.
	MaxSubscriptions int
	// MaxDurableSubscriptions bounds the host's durable subscriptions (STOMP /dsub/..., and those of
	// MQTT sessions kept across connections); creating one more is refused. 0 = the router default
	// (100000). Default 0.
	MaxDurableSubscriptions int
	// MaxConcurrentLogins bounds the password checks (bcrypt, tens of milliseconds of CPU each) the
	// host runs at once, for clients and management requests together; others wait their turn, at most
	// 5s, then are refused. 0 = one per CPU (GOMAXPROCS). Default 0.
	MaxConcurrentLogins int
	// MaxConcurrentLoginsPerAddress bounds the logins from one IP address under way at once, a failed
	// one counting until the delay it earned is over. 0 = DefaultMaxConcurrentLoginsPerAddress (4).
	// Default 0.
	MaxConcurrentLoginsPerAddress int
	// CredentialCache is how long a user name and password that bcrypt verified are trusted again without
	// bcrypt, so that a client reconnecting with the same credentials costs microseconds instead of
	// tens of milliseconds (see virtualhost's package doc for what it holds and why it is safe). A reload
	// forgets it. 0 = no cache. Default DefaultCredentialCache (30s) in a configuration file; a
	// VirtualHost built in Go without it has no cache.
	CredentialCache time.Duration
	// CredentialCacheSize bounds the users whose credentials the cache holds at once; a newly verified
	// one then takes the place of another. 0 = DefaultCredentialCacheSize (10000). Default 0.
	CredentialCacheSize int
	// Queues are `queue "PATTERN" { }` policies, first matching pattern wins.
	Queues []QueuePolicy
	// Dsubs are `dsub "PATTERN" { }` policies for durable subscriptions (STOMP /dsub/<id>, and an MQTT
	// session's, named $mqtt.<client id>.<filter>), with a queue policy's attributes; first match wins.
	Dsubs []QueuePolicy
	// Topics are `topic "PATTERN" { }` policies, first matching pattern wins.
	Topics []TopicPolicy
	// SharedSubscriptionStrategy picks the member of a shared-subscription group (MQTT 5
	// $share/{group}/{filter}) that receives each message. Default ShareRoundRobin; "" in a config built
	// in Go means the same.
	SharedSubscriptionStrategy ShareStrategy
}

// ShareStrategy is a virtual host's shared_subscription_strategy.
type ShareStrategy string

// Shared-subscription strategies. Whichever member is picked, one that is full (or may not receive the
// message) is passed over for the next.
const (
	ShareRoundRobin   ShareStrategy = "round_robin"   // each message to the next member in turn
	ShareRandom       ShareStrategy = "random"        // a member picked at random
	ShareSticky       ShareStrategy = "sticky"        // one member until it leaves or is full
	ShareHashClientID ShareStrategy = "hash_clientid" // by the publisher's client id: one publisher, one member
	ShareHashTopic    ShareStrategy = "hash_topic"    // by the topic: one topic, one member
)

// ShareStrategies lists the valid shared_subscription_strategy values.
var ShareStrategies = []ShareStrategy{ShareRoundRobin, ShareRandom, ShareSticky, ShareHashClientID, ShareHashTopic}

// AccessRule is one `access_rule { }` block (Apollo style). Exactly one of Allow and Deny is set.
type AccessRule struct {
	Allow []string // users or groups; "+" any authenticated user, "*" anyone
	Deny  []string
	// Actions: connect send receive consume create destroy admin monitor. Empty = all.
	Actions []string
	// Kind: connector virtual_host broker topic queue dsub temp_queue temp_topic, or "*". "" = all.
	Kind string
	// ID is a destination pattern in the STOMP default grammar without prefix (orders.**); %u and %c
	// stand for the user name and client id, %c only for a client id the user claims (client_ids of the
	// users file and the host). "" = all.
	ID string
}

// FullPolicy says what a queue does when it reaches its quota.
type FullPolicy string

// Queue full policies.
const (
	FullBlock    FullPolicy = "block"     // the producer waits (STOMP) or is refused (MQTT)
	FullDropHead FullPolicy = "drop_head" // the oldest message is dropped to make room
	FullDropTail FullPolicy = "drop_tail" // the new message is dropped
)

// QueuePolicy is one `queue "PATTERN" { }` block of a virtual host. Pattern uses the STOMP default grammar
// without prefix ("orders.**"); the block applies to queues whose name matches.
type QueuePolicy struct {
	Pattern string
	// NakLimit: after this many redeliveries a message goes to DLQ (or is dropped). 0 = unlimited. Default 0.
	NakLimit int
	// DLQ names the dead-letter queue (STOMP default grammar, no prefix); "*" in it is replaced by the
	// queue's name. Default "" = drop, logged.
	DLQ string
	// Quota in bytes of message bodies held; 0 = the router default (64MB). Default 0.
	Quota int64
	// QuotaMessages held; 0 = the router default (100000). Default 0.
	QuotaMessages int
	// FullPolicy when a quota is reached. Default FullBlock.
	FullPolicy FullPolicy
	// AutoDeleteAfter deletes a queue that stayed empty and unconsumed this long; 0 = never. Default 0.
	AutoDeleteAfter time.Duration
}

// SlowConsumerPolicy says what a topic does with a subscriber that cannot keep up.
type SlowConsumerPolicy string

// Topic slow-consumer policies.
const (
	// SlowBlock: the publisher's socket is not read while a subscriber is over its window, for a bounded
	// time; then the subscriber drops what does not fit. The default, also for topics no block matches.
	SlowBlock SlowConsumerPolicy = "block"
	// SlowQueue: messages wait in the subscriber's bounded queue, then drop; publishers never wait.
	SlowQueue SlowConsumerPolicy = "queue"
)

// TopicPolicy is one `topic "PATTERN" { }` block of a virtual host.
type TopicPolicy struct {
	Pattern            string
	SlowConsumerPolicy SlowConsumerPolicy // default SlowBlock
}

// TLS is a connector's `tls { }` block.
type TLS struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string // "" = no client certificate verification
	// ClientAuth: "none" (default), "request", "require".
	ClientAuth string
	// MinVersion: "1.2" (default) or "1.3".
	MinVersion string
	// CertIdentity: "" (certificates are not identities), "cn" or "dn".
	CertIdentity string
	// CertIdentityHosts names the virtual hosts on which a certificate identity is a user ("*": every
	// host); on any other host the certificate is ignored, as if the client had none. Default: the
	// connector's virtual_host, else the first virtual host. A configuration built in Go that leaves it
	// empty gets the connector's virtual_host only, or no host when that is unset.
	CertIdentityHosts []string
}

// CertIdentityValidOn reports whether a certificate identity of connector c is a user on virtual host
// name (see TLS.CertIdentityHosts).
func (c *Connector) CertIdentityValidOn(name string) bool {
	if c.TLS == nil || c.TLS.CertIdentity == "" {
		return false
	}
	hosts := c.TLS.CertIdentityHosts
	if len(hosts) == 0 && c.VirtualHost != "" {
		hosts = []string{c.VirtualHost}
	}
	for _, h := range hosts {
		if h == "*" || strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// Store holds a host's `store { }` block.
type Store struct {
	// Directory holds the host's badger files. Required.
	Directory string
	// Sync makes each commit durable before acknowledging. Default true.
	Sync bool
	// FlushDelay batches writes for this long. Default 0.
	FlushDelay time.Duration
}

// Protocol defaults, shared with the router tests so the two never drift.
var (
	MQTTGrammarDefaults = Grammar{
		PathSeparator:         "/",
		AnyChildWildcard:      "+",
		AnyDescendantWildcard: "#",
	}
	STOMPGrammarDefaults = Grammar{
		PathSeparator:         ".",
		AnyChildWildcard:      "*",
		AnyDescendantWildcard: "**",
		RegexWildcardStart:    "{",
		RegexWildcardEnd:      "}",
		QueuePrefix:           "/queue/",
		TopicPrefix:           "/topic/",
		DsubPrefix:            "/dsub/",
		TempQueuePrefix:       "/temp-queue/",
		TempTopicPrefix:       "/temp-topic/",
		DestinationSeparator:  ",",
	}
)

// Default sizes and durations.
const (
	DefaultMaxMessageLength  = 100 << 20
	DefaultDieDelay          = 5 * time.Second
	DefaultDetectTimeout     = 5 * time.Second
	DefaultMaxConnections    = 10000
	DefaultMaxInflight       = 128
	DefaultMaxQueuedMessages = 1000
	DefaultMaxTopicLevels    = 128
	DefaultReceiveMaximum    = 1024
	DefaultTopicAliasMaximum = 64
	DefaultResponsePrefix    = "reply/"
	DefaultMaxHeaders        = 1000
	DefaultMaxHeaderLength   = 10 << 10
	DefaultMaxHeaderBytes    = 8 << 10
	DefaultUpgradeTimeout    = 10 * time.Second
	DefaultSysInterval       = 10 * time.Second
	DefaultClusterName       = "lyre"
)

// Default bounds on what one client may make the broker hold (see each field for what it bounds).
const (
	DefaultMaxTransactions      = 100   // STOMP max_transactions
	DefaultMaxTransactionFrames = 10000 // STOMP max_transaction_frames
	DefaultMaxSelectorLength    = 4 << 10
	DefaultMaxSubscriptions     = 1000 // MQTT and STOMP max_subscriptions, per client
	// DefaultMaxConcurrentLoginsPerAddress is a virtual host's max_concurrent_logins_per_address.
	DefaultMaxConcurrentLoginsPerAddress = 4
	// DefaultCredentialCache is a virtual host's credential_cache in a configuration file.
	DefaultCredentialCache = 30 * time.Second
	// DefaultCredentialCacheSize is a virtual host's credential_cache_size.
	DefaultCredentialCacheSize = 10000
)

// Cluster is the cluster block: topics published on one node reach subscribers on every node, and with
// JetStream (Directory, or an external NATS that has it) named queues are one replicated queue across the
// nodes. Either Listen (with Routes) runs an embedded NATS server, or NATSURL connects to an external NATS.
type Cluster struct {
	// Name is the cluster's name; nodes of another cluster are refused. Default "lyre".
	Name string
	// Node names this node, unique in the cluster. Required.
	Node string
	// Listen is the host:port of the embedded NATS server's route listener.
	Listen string
	// Routes are the host:port route listeners of the other nodes.
	Routes []string
	// Advertise is the host:port the other nodes are told to dial to reach this node's route listener
	// (NATS gossips it, so a node joining through one seed connects to all); default "" = Listen. Set it
	// when Listen is not reachable as written: a wildcard address, NAT, a container, a proxy.
	Advertise string
	// NATSURL is a comma-separated list of nats:// URLs of an external NATS, instead of Listen and Routes.
	NATSURL string
	// Directory turns JetStream on in the embedded server and keeps its streams there (the replicated
	// state: retained messages, persistent queues, sessions). With nats_url the external NATS stores them
	// and Directory is not allowed; JetStream must be enabled there.
	Directory string
	// Replicas is how many nodes keep a copy of each replicated stream (JetStream's R). Default 1 for a
	// single node, else 3 (or the node count when fewer are listed); at most 5.
	Replicas int
}
