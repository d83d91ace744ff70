package conf

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validate checks a Config built in Go, the way Parse checks a file, and fills each connector's Network
// and Address from its Bind. It returns Errors listing every problem, or nil. Parse and Load already
// call it. On a parsed Config, positions are looked up by connector and host index: append to the
// slices freely, but reordering them makes later errors point at the wrong block.
func (c *Config) Validate() error {
	return c.validate().errors()
}

type validator struct {
	c    *Config
	errs problems
}

// errf reports a problem at the position recorded under key, or the nearest enclosing one
// ("c0.mqtt.max_inflight", then "c0.mqtt", then "c0", then the file).
func (v *validator) errf(key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for k := key; ; {
		if r, ok := v.c.pos[k]; ok {
			v.errs = append(v.errs, problem{Error{Pos: posOf(r), Msg: msg}, r})
			return
		}
		if k == "" {
			break
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			k = ""
		} else {
			k = k[:i]
		}
	}
	v.errs = append(v.errs, problem{Error: Error{Pos: v.describe(key), Msg: msg}})
}

// describe names the place of key in a Config without source positions.
func (v *validator) describe(key string) string {
	src := v.c.Source
	if src == "" {
		src = "<config>"
	}
	head, _, _ := strings.Cut(key, ".")
	if len(head) < 2 {
		return src
	}
	i, err := strconv.Atoi(head[1:])
	if err != nil {
		return src
	}
	switch {
	case head[0] == 'c' && i < len(v.c.Connectors):
		return fmt.Sprintf("%s: connector %q", src, v.c.Connectors[i].Name)
	case head[0] == 'v' && i < len(v.c.VirtualHosts):
		return fmt.Sprintf("%s: virtual_host %q", src, v.c.VirtualHosts[i].Name)
	case head[0] == 'a' && i < len(v.c.AccessRules):
		return fmt.Sprintf("%s: access_rule %d", src, i+1)
	}
	return src
}

// where renders the position of key for "first defined at" hints.
func (v *validator) where(key string) string {
	if r, ok := v.c.pos[key]; ok {
		return posOf(r)
	}
	return v.describe(key)
}

func (c *Config) validate() problems {
	v := &validator{c: c}
	if len(c.VirtualHosts) == 0 {
		v.errf("", "no virtual_host defined; at least one is required")
	}
	if len(c.Connectors) == 0 {
		v.errf("", "no connector defined; at least one is required")
	}
	if c.SysInterval != 0 && c.SysInterval < time.Second {
		v.errf("sys_interval", "sys_interval must be 0 (off) or at least 1s, not %v", c.SysInterval)
	}
	v.accessRules("a", c.AccessRules)
	v.hosts()
	v.connectors()
	v.cluster()
	return v.errs
}

// cluster checks the cluster block: a node name, and either an embedded server's listener (with its
// routes) or an external NATS, not both.
func (v *validator) cluster() {
	c := v.c.Cluster
	if c == nil {
		return
	}
	if c.Name == "" || !natsName(c.Name) {
		v.errf("cluster.name", "cluster name %q must be non-empty letters, digits, '-' or '_'", c.Name)
	}
	if c.Node == "" {
		v.errf("cluster", "cluster needs a node name, unique in the cluster: node = \"n1\"")
	} else if !natsName(c.Node) {
		v.errf("cluster.node", "node name %q must be letters, digits, '-' or '_'", c.Node)
	}
	switch {
	case c.NATSURL != "" && (c.Listen != "" || len(c.Routes) > 0 || c.Advertise != ""):
		v.errf("cluster.nats_url", "nats_url connects to an external NATS; listen, advertise and routes run an embedded one: give one or the other")
	case c.NATSURL != "":
		if c.Directory != "" {
			v.errf("cluster.directory", "directory is the embedded server's JetStream storage; with nats_url the external NATS stores the streams")
		}
		for i, u := range strings.Split(c.NATSURL, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil || (pu.Scheme != "nats" && pu.Scheme != "tls") || pu.Host == "" {
				v.errf("cluster.nats_url", "nats_url entry %d %q is not a nats://host:port URL", i+1, u)
			}
		}
	case c.Listen == "":
		v.errf("cluster", "cluster needs listen (and routes) for an embedded NATS, or nats_url for an external one")
	default:
		if err := hostPort(c.Listen); err != nil {
			v.errf("cluster.listen", "listen %q: %v", c.Listen, err)
		}
		if c.Advertise != "" {
			if err := hostPort(c.Advertise); err != nil {
				v.errf("cluster.advertise", "advertise %q: %v", c.Advertise, err)
			}
		}
		seen := map[string]int{}
		for i, r := range c.Routes {
			k := "cluster.routes." + strconv.Itoa(i)
			if err := hostPort(r); err != nil {
				v.errf(k, "route %q: %v", r, err)
			} else if j, dup := seen[r]; dup {
				v.errf(k, "route %q listed twice; first at %s", r, v.where("cluster.routes."+strconv.Itoa(j)))
			} else if r == c.Listen {
				v.errf(k, "route %q is this node's own listen address", r)
			}
			seen[r] = i
		}
	}
	if c.Directory != "" && c.NATSURL == "" && len(c.Routes) == 0 {
		v.errf("cluster.directory", "JetStream forms its cluster from the configured routes: list the other nodes in routes on every node")
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		v.errf("cluster.replicas", "replicas %d: JetStream keeps 1 to 5 copies", c.Replicas)
	}
}

// natsName reports whether s is usable as a NATS server or cluster name: no spaces, dots or wildcards.
func natsName(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// hostPort checks a host:port with a numeric port (0 = any free port).
func hostPort(s string) error {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port")
	}
	if h == "" {
		return fmt.Errorf("want a host (0.0.0.0 for every interface)")
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return nil
}

func (v *validator) hosts() {
	names := map[string]int{}      // lower-case host name -> index
	aliases := map[string]string{} // lower-case host_names entry -> its key
	dirs := map[string]int{}       // cleaned store directory -> host index
	for i := range v.c.VirtualHosts {
		h := &v.c.VirtualHosts[i]
		k := "v" + strconv.Itoa(i)
		lower := strings.ToLower(h.Name)
		switch first, dup := names[lower]; {
		case h.Name == "":
			v.errf(k+".name", "virtual_host name must not be empty")
		case dup:
			v.errf(k+".name", "duplicate virtual_host %q (first defined at %s)", h.Name, v.where("v"+strconv.Itoa(first)+".name"))
		default:
			names[lower] = i
		}
	}
	for i := range v.c.VirtualHosts {
		h := &v.c.VirtualHosts[i]
		k := "v" + strconv.Itoa(i)
		for j, n := range h.HostNames {
			ek := k + ".host_names." + strconv.Itoa(j)
			lower := strings.ToLower(n)
			if n == "" {
				v.errf(ek, "host_names entry must not be empty")
				continue
			}
			if first, dup := aliases[lower]; dup {
				v.errf(ek, "host name %q is listed twice (first at %s)", n, v.where(first))
				continue
			}
			aliases[lower] = ek
			// Hosts are looked up by name and host name alike, so one host's alias must not be another's name.
			if other, ok := names[lower]; ok && other != i {
				v.errf(ek, "host name %q of virtual_host %q is the name of virtual_host %q", n, h.Name, v.c.VirtualHosts[other].Name)
			}
		}
		v.hostSecurity(k, h)
		if h.Store == nil {
			continue
		}
		if h.Store.Directory == "" {
			v.errf(k+".store.directory", "store directory is required")
		} else {
			dir := filepath.Clean(h.Store.Directory)
			if first, dup := dirs[dir]; dup {
				v.errf(k+".store.directory", "store directory %q is already used by virtual_host %q", h.Store.Directory, v.c.VirtualHosts[first].Name)
			} else {
				dirs[dir] = i
			}
		}
		if h.Store.FlushDelay < 0 {
			v.errf(k+".store.flush_delay", "flush_delay must not be negative")
		}
	}
}

// listenAddr is a parsed bind address used to find port clashes.
type listenAddr struct {
	host string // "" for every interface
	port int
	idx  int // connector index
}

func (v *validator) connectors() {
	names := map[string]int{}
	var binds []listenAddr
	for i := range v.c.Connectors {
		cn := &v.c.Connectors[i]
		k := "c" + strconv.Itoa(i)
		switch first, dup := names[cn.Name]; {
		case cn.Name == "":
			v.errf(k+".name", "connector name must not be empty")
		case dup:
			v.errf(k+".name", "duplicate connector %q (first defined at %s)", cn.Name, v.where("c"+strconv.Itoa(first)+".name"))
		default:
			names[cn.Name] = i
		}

		if cn.Bind == "" {
			v.errf(k, "bind is required, e.g. bind = \"tcp://127.0.0.1:1883\"")
		} else if network, host, port, err := parseBind(cn.Bind); err != nil {
			v.errf(k+".bind", "%v", err)
		} else {
			cn.Network, cn.Address = network, net.JoinHostPort(host, strconv.Itoa(port))
			la := listenAddr{host: normalHost(host), port: port, idx: i}
			for _, o := range binds {
				if o.port == la.port && la.port != 0 && (o.host == la.host || o.host == "" || la.host == "") {
					v.errf(k+".bind", "port %d is already bound by connector %q (%s)",
						la.port, v.c.Connectors[o.idx].Name, v.where("c"+strconv.Itoa(o.idx)+".bind"))
				}
			}
			binds = append(binds, la)
		}

		v.protocols(k, cn)
		v.tls(k, cn)
		v.http(k, cn)
		if cn.DetectTimeout <= 0 {
			v.errf(k+".detect_timeout", "detect_timeout must be positive")
		}
		if cn.MaxConnections <= 0 {
			v.errf(k+".max_connections", "max_connections must be > 0, not %d", cn.MaxConnections)
		}
		if cn.VirtualHost != "" && v.c.Host(cn.VirtualHost) == nil {
			v.errf(k+".virtual_host", "virtual_host %q is not defined", cn.VirtualHost)
		}
		if protocolsValid(cn) {
			for _, p := range cn.Protocols() {
				switch p {
				case "mqtt":
					v.grammar(k+".mqtt", &cn.MQTT.Grammar)
					v.mqtt(k+".mqtt", &cn.MQTT)
				case "stomp":
					v.grammar(k+".stomp", &cn.STOMP.Grammar)
					v.stomp(k+".stomp", &cn.STOMP)
				}
			}
		}
	}
}

func (v *validator) protocols(k string, cn *Connector) {
	switch {
	case cn.BindsWebSocket() && cn.Detect != nil:
		v.errf(k+".detect", "a %s:// connector serves WebSocket only: leave detect out (protocol = \"mqtt\" or \"stomp\" restricts it to one front-end)", cn.scheme())
	case cn.BindsWebSocket():
	case cn.Protocol != "" && cn.Detect != nil:
		v.errf(k+".detect", "set either protocol or detect, not both")
	case cn.Protocol == "" && cn.Detect == nil:
		v.errf(k, "set protocol = \"mqtt\" or \"stomp\", or detect = [\"mqtt\", \"stomp\"]")
	}
	if cn.Protocol != "" && !knownProtocol(cn.Protocol) {
		v.errf(k+".protocol", "unknown protocol %q (want \"mqtt\" or \"stomp\")", cn.Protocol)
	}
	if cn.Protocol == "http" {
		v.errf(k+".protocol", "http is not an application protocol: bind = \"ws://...\", or detect = [\"mqtt\", \"stomp\", \"http\"]")
	}
	if cn.Detect != nil && len(cn.Detect) == 0 {
		v.errf(k+".detect", "detect must list at least one protocol")
	}
	if cn.Protocol == "tls" {
		v.errf(k+".protocol", "tls is not an application protocol: bind = \"tls://...\" with protocol = \"mqtt\" or \"stomp\", or detect = [\"tls\", ...]")
	}
	seen := map[string]bool{}
	for j, p := range cn.Detect {
		ek := k + ".detect." + strconv.Itoa(j)
		switch {
		case !knownProtocol(p):
			v.errf(ek, "unknown protocol %q in detect (want \"mqtt\", \"stomp\", \"tls\" or \"http\")", p)
		case seen[p]:
			v.errf(ek, "protocol %q is listed twice in detect", p)
		case p == "tls" && len(cn.Detect) < 2:
			v.errf(ek, "detect = [\"tls\"] needs at least one protocol to speak inside TLS, e.g. [\"tls\", \"mqtt\", \"stomp\"]")
		case p == "tls" && cn.BindsTLS():
			v.errf(ek, "\"tls\" in detect on a tls:// connector: every connection is TLS already")
		}
		seen[p] = true
	}
}

func (v *validator) grammar(k string, g *Grammar) {
	type tok struct{ name, val string }
	required := []tok{
		{"path_separator", g.PathSeparator},
		{"any_child_wildcard", g.AnyChildWildcard},
		{"any_descendant_wildcard", g.AnyDescendantWildcard},
	}
	for _, t := range required {
		if t.val == "" {
			v.errf(k+"."+t.name, "%s must not be empty", t.name)
		}
	}
	switch {
	case g.RegexWildcardStart != "" && g.RegexWildcardEnd == "":
		v.errf(k+".regex_wildcard_start", "regex_wildcard_start is set but regex_wildcard_end is not")
	case g.RegexWildcardStart == "" && g.RegexWildcardEnd != "":
		v.errf(k+".regex_wildcard_end", "regex_wildcard_end is set but regex_wildcard_start is not")
	}
	// Each special token must be told apart from the others when a name is split.
	special := append(required,
		tok{"regex_wildcard_start", g.RegexWildcardStart},
		tok{"regex_wildcard_end", g.RegexWildcardEnd},
		tok{"destination_separator", g.DestinationSeparator})
	for i, a := range special {
		if a.val == "" {
			continue
		}
		for _, b := range special[:i] {
			if b.val == a.val {
				v.errf(v.setKey(k, a.name, b.name), "%s %q is the same as %s", a.name, a.val, b.name)
			} else if b.name == "path_separator" && b.val != "" && strings.Contains(a.val, b.val) {
				v.errf(v.setKey(k, a.name, b.name), "%s %q contains the path_separator %q", a.name, a.val, b.val)
			}
		}
	}
	if g.PartPattern != "" {
		if _, err := regexp.Compile(g.PartPattern); err != nil {
			v.errf(k+".part_pattern", "invalid part_pattern: %v", err)
		}
	}
	prefixes := []tok{
		{"queue_prefix", g.QueuePrefix},
		{"topic_prefix", g.TopicPrefix},
		{"dsub_prefix", g.DsubPrefix},
		{"temp_queue_prefix", g.TempQueuePrefix},
		{"temp_topic_prefix", g.TempTopicPrefix},
	}
	for i, a := range prefixes {
		for _, b := range prefixes[:i] {
			if a.val != "" && a.val == b.val {
				v.errf(v.setKey(k, a.name, b.name), "%s %q is the same as %s", a.name, a.val, b.name)
			}
		}
	}
}

// setKey returns the key of whichever of two clashing attributes the file sets (a when both or neither
// are), so the error points at what the user wrote rather than at a default.
func (v *validator) setKey(block, a, b string) string {
	if _, ok := v.c.pos[block+"."+a]; !ok {
		if _, ok := v.c.pos[block+"."+b]; ok {
			return block + "." + b
		}
	}
	return block + "." + a
}

func (v *validator) mqtt(k string, m *MQTT) {
	v.commonLimits(k, m.MaxMessageLength, m.DieDelay)
	if m.MaxInflight < 1 || m.MaxInflight > 65535 {
		// Packet identifiers are 16-bit and non-zero [MQTT-2.3.1-1], so no more can be in flight.
		v.errf(k+".max_inflight", "max_inflight must be between 1 and 65535, not %d", m.MaxInflight)
	}
	if m.MaxQueuedMessages < 0 {
		v.errf(k+".max_queued_messages", "max_queued_messages must not be negative")
	}
	if m.MaxSubscriptions < 1 {
		v.errf(k+".max_subscriptions", "max_subscriptions must be at least 1, not %d", m.MaxSubscriptions)
	}
	if m.MaxTopicLevels < 1 {
		v.errf(k+".max_topic_levels", "max_topic_levels must be at least 1, not %d", m.MaxTopicLevels)
	}
	if m.ReceiveMaximum < 1 || m.ReceiveMaximum > 65535 {
		// A two-byte integer, and 0 is a protocol error [MQTT-3.2.2.3.3].
		v.errf(k+".receive_maximum", "receive_maximum must be between 1 and 65535, not %d", m.ReceiveMaximum)
	}
	if m.TopicAliasMaximum < 0 || m.TopicAliasMaximum > 65535 {
		v.errf(k+".topic_alias_maximum", "topic_alias_maximum must be between 0 and 65535, not %d", m.TopicAliasMaximum)
	}
	if m.MaxSessionExpiry < 0 || m.MaxSessionExpiry > 0xFFFFFFFE*time.Second {
		v.errf(k+".max_session_expiry", "max_session_expiry must be between 0 (no cap) and 4294967294s")
	}
	if m.MaxKeepAlive < 0 || m.MaxKeepAlive > 65535*time.Second {
		v.errf(k+".max_keep_alive", "max_keep_alive must be between 0 (no cap) and 65535s")
	}
	if m.MaxSessionExpiry%time.Second != 0 {
		v.errf(k+".max_session_expiry", "max_session_expiry must be whole seconds, not %v", m.MaxSessionExpiry)
	}
	if m.MaxKeepAlive%time.Second != 0 {
		v.errf(k+".max_keep_alive", "max_keep_alive must be whole seconds, not %v", m.MaxKeepAlive)
	}
}

func (v *validator) stomp(k string, s *STOMP) {
	v.commonLimits(k, s.MaxMessageLength, s.DieDelay)
	if s.MaxHeaders < 1 {
		v.errf(k+".max_headers", "max_headers must be at least 1, not %d", s.MaxHeaders)
	}
	if s.MaxHeaderLength <= 0 {
		v.errf(k+".max_header_length", "max_header_length must be positive")
	}
	if s.MaxTransactions < 1 {
		v.errf(k+".max_transactions", "max_transactions must be at least 1, not %d", s.MaxTransactions)
	}
	if s.MaxTransactionFrames < 1 {
		v.errf(k+".max_transaction_frames", "max_transaction_frames must be at least 1, not %d", s.MaxTransactionFrames)
	}
	if s.MaxSelectorLength <= 0 {
		v.errf(k+".max_selector_length", "max_selector_length must be positive")
	}
	if s.MaxSubscriptions < 1 {
		v.errf(k+".max_subscriptions", "max_subscriptions must be at least 1, not %d", s.MaxSubscriptions)
	}
	for _, h := range []struct{ name, val string }{
		{"add_user_header", s.AddUserHeader},
		{"add_timestamp_header", s.AddTimestampHeader},
		{"add_redeliveries_header", s.AddRedeliveriesHeader},
	} {
		// STOMP 1.2 "Value Encoding": a header name cannot hold ':' or an end of line.
		if strings.ContainsAny(h.val, ":\r\n") {
			v.errf(k+"."+h.name, "%s %q is not a valid STOMP header name", h.name, h.val)
		}
	}
}

func (v *validator) commonLimits(k string, maxLen int64, dieDelay time.Duration) {
	if maxLen <= 0 {
		v.errf(k+".max_message_length", "max_message_length must be positive")
	}
	if dieDelay < 0 {
		v.errf(k+".die_delay", "die_delay must not be negative")
	}
}

// parseBind splits "tcp://host:port" or "tls://host:port" (both listen on TCP). The host may be empty (every interface), an IP (IPv6 in
// brackets) or a host name; port 0 picks a free port.
func parseBind(bind string) (network, host string, port int, err error) {
	scheme, rest, ok := strings.Cut(bind, "://")
	if !ok {
		return "", "", 0, fmt.Errorf("invalid bind %q: want scheme://host:port, e.g. \"tcp://127.0.0.1:1883\"", bind)
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case "tcp", "tls", "ws", "wss", "http", "https":
	case "ssl":
		return "", "", 0, fmt.Errorf("bind %q: ssl:// is spelled tls:// here", bind)
	default:
		return "", "", 0, fmt.Errorf("bind %q: unknown scheme %q (want tcp://, tls://, ws://, wss://, http:// or https://)", bind, scheme)
	}
	if strings.ContainsAny(rest, "/?#@") {
		return "", "", 0, fmt.Errorf("invalid bind %q: want %s://host:port with no path", bind, scheme)
	}
	host, portStr, err := net.SplitHostPort(rest)
	if err != nil {
		return "", "", 0, fmt.Errorf("invalid bind %q: want %s://host:port (%v)", bind, scheme, err)
	}
	p, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", "", 0, fmt.Errorf("invalid bind %q: port %q is not a number from 0 to 65535", bind, portStr)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostName(host) {
		return "", "", 0, fmt.Errorf("invalid bind %q: %q is neither an IP address nor a host name", bind, host)
	}
	return "tcp", host, int(p), nil
}

// validHostName accepts DNS names: dot-separated labels of letters, digits and '-'.
func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// normalHost maps the spellings of one interface onto one key: "" for every interface.
func normalHost(h string) string {
	if strings.EqualFold(h, "localhost") {
		return "127.0.0.1"
	}
	ip := net.ParseIP(h)
	switch {
	case h == "" || ip != nil && ip.IsUnspecified():
		return ""
	case ip != nil:
		return ip.String()
	}
	return strings.ToLower(h)
}
