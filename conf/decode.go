package conf

import (
	"fmt"
	"math"
	"math/big"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// decoder walks the HCL syntax tree, fills typed values over their defaults and records the source range
// of everything it sets, so validation can point at the exact attribute. It keeps going after a problem
// so one run reports them all. Only the native HCL syntax is accepted, and no variables or functions:
// every value must be a literal.
type decoder struct {
	file string
	errs problems
	pos  map[string]hcl.Range // position key (see Config.pos) -> source range
}

// attrFunc decodes one attribute's value; key is the attribute's position key.
type attrFunc func(d *decoder, key string, a *hclsyntax.Attribute)

func (d *decoder) errAt(r hcl.Range, format string, args ...any) {
	d.errs = append(d.errs, problem{Error{Pos: posOf(r), Msg: fmt.Sprintf(format, args...)}, r})
}

// parse decodes src into a Config without semantic validation. A syntax error stops at the parse.
func parse(src []byte, filename string) (*Config, problems) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, diagErrors(diags, filename)
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil, problems{{Error: Error{Pos: filename, Msg: "not a native HCL file"}}}
	}
	d := &decoder{file: filename, pos: make(map[string]hcl.Range)}
	return d.config(body), d.errs
}

func (d *decoder) config(body *hclsyntax.Body) *Config {
	c := &Config{Source: d.file, pos: d.pos}
	d.pos[""] = hcl.Range{Filename: d.file, Start: hcl.InitialPos, End: hcl.InitialPos}
	c.SysInterval = DefaultSysInterval
	d.attrs(body, "", map[string]attrFunc{"sys_interval": duration(&c.SysInterval)})
	for _, b := range body.Blocks {
		switch b.Type {
		case "connector":
			if d.labels(b, 1) {
				key := "c" + strconv.Itoa(len(c.Connectors))
				c.Connectors = append(c.Connectors, d.connector(b, key))
			}
		case "virtual_host":
			if d.labels(b, 1) {
				key := "v" + strconv.Itoa(len(c.VirtualHosts))
				c.VirtualHosts = append(c.VirtualHosts, d.virtualHost(b, key))
			}
		case "access_rule":
			if d.labels(b, 0) {
				c.AccessRules = append(c.AccessRules, d.accessRule(b, "a"+strconv.Itoa(len(c.AccessRules))))
			}
		case "cluster":
			if !d.labels(b, 0) {
				break
			}
			if c.Cluster != nil {
				d.errAt(b.TypeRange, "cluster block given twice; first at %s", posOf(d.pos["cluster"]))
				break
			}
			c.Cluster = d.cluster(b)
		default:
			d.unknownBlock(b, "connector", "virtual_host", "access_rule", "cluster")
		}
	}
	return c
}

func (d *decoder) connector(b *hclsyntax.Block, key string) Connector {
	c := Connector{
		Name:           b.Labels[0],
		DetectTimeout:  DefaultDetectTimeout,
		MaxConnections: DefaultMaxConnections,
		MQTT:           DefaultMQTT(),
		STOMP:          DefaultSTOMP(),
	}
	d.pos[key] = b.TypeRange
	d.pos[key+".name"] = b.LabelRanges[0]
	d.attrs(b.Body, key, map[string]attrFunc{
		"bind":            str(&c.Bind),
		"protocol":        str(&c.Protocol),
		"detect":          strList(&c.Detect),
		"detect_timeout":  duration(&c.DetectTimeout),
		"max_connections": integer(&c.MaxConnections),
		"virtual_host":    str(&c.VirtualHost),
		"management":      boolean(&c.Management),
	})
	var sub = map[string]*hclsyntax.Block{}
	for _, sb := range b.Body.Blocks {
		switch sb.Type {
		case "tls":
			if c.TLS != nil {
				d.errAt(sb.TypeRange, "duplicate tls block (first at %s)", posOf(d.pos[key+".tls"]))
				continue
			}
			if !d.labels(sb, 0) {
				continue
			}
			d.pos[key+".tls"] = sb.TypeRange
			c.TLS = &TLS{ClientAuth: "none", MinVersion: "1.2"}
			d.attrs(sb.Body, key+".tls", map[string]attrFunc{
				"cert_file":      file(&c.TLS.CertFile),
				"key_file":       file(&c.TLS.KeyFile),
				"client_ca_file": file(&c.TLS.ClientCAFile),
				"client_auth":    str(&c.TLS.ClientAuth),
				"min_version":    str(&c.TLS.MinVersion),
				"cert_identity":  str(&c.TLS.CertIdentity),

				"cert_identity_hosts": strList(&c.TLS.CertIdentityHosts),
			})
			d.noBlocks(sb.Body)
		case "http":
			if c.HTTP != nil {
				d.errAt(sb.TypeRange, "duplicate http block (first at %s)", posOf(d.pos[key+".http"]))
				continue
			}
			if !d.labels(sb, 0) {
				continue
			}
			d.pos[key+".http"] = sb.TypeRange
			h := DefaultHTTP()
			c.HTTP = &h
			d.attrs(sb.Body, key+".http", map[string]attrFunc{
				"allowed_origins":  strList(&h.AllowedOrigins),
				"mqtt_path":        str(&h.MQTTPath),
				"stomp_path":       str(&h.STOMPPath),
				"max_header_bytes": size(&h.MaxHeaderBytes),
				"upgrade_timeout":  duration(&h.UpgradeTimeout),
			})
			d.noBlocks(sb.Body)
		case "mqtt", "stomp":
			if first, dup := sub[sb.Type]; dup {
				d.errAt(sb.TypeRange, "duplicate %s block (first at %s)", sb.Type, posOf(first.TypeRange))
				continue
			}
			sub[sb.Type] = sb
			if !d.labels(sb, 0) {
				continue
			}
			k := key + "." + sb.Type
			d.pos[k] = sb.TypeRange
			if sb.Type == "mqtt" {
				d.attrs(sb.Body, k, mqttAttrs(&c.MQTT))
			} else {
				d.attrs(sb.Body, k, stompAttrs(&c.STOMP))
			}
			d.noBlocks(sb.Body)
		default:
			d.unknownBlock(sb, "mqtt", "stomp", "tls", "http")
		}
	}
	// A block for a protocol the connector does not speak is most likely a mistake in protocol/detect.
	if protocolsValid(&c) {
		for _, p := range []string{"mqtt", "stomp"} {
			if sb := sub[p]; sb != nil && !slices.Contains(c.Protocols(), p) {
				d.errAt(sb.TypeRange, "%s block on connector %q, which does not speak %s", p, c.Name, p)
			}
		}
	}
	return c
}

// protocolsValid reports whether exactly one of protocol and detect is set, naming only known protocols.
func protocolsValid(c *Connector) bool {
	switch {
	case c.BindsWebSocket() && len(c.Detect) > 0: // ws:// takes protocol (optional), not detect
		return false
	case !c.BindsWebSocket() && (c.Protocol != "") == (len(c.Detect) > 0):
		return false
	}
	for _, p := range c.Protocols() {
		if !knownProtocol(p) {
			return false
		}
	}
	return true
}

func knownProtocol(p string) bool { return p == "mqtt" || p == "stomp" || p == "tls" || p == "http" }

func grammarAttrs(g *Grammar) map[string]attrFunc {
	return map[string]attrFunc{
		"path_separator":          str(&g.PathSeparator),
		"any_child_wildcard":      str(&g.AnyChildWildcard),
		"any_descendant_wildcard": str(&g.AnyDescendantWildcard),
		"regex_wildcard_start":    str(&g.RegexWildcardStart),
		"regex_wildcard_end":      str(&g.RegexWildcardEnd),
		"part_pattern":            str(&g.PartPattern),
		"queue_prefix":            str(&g.QueuePrefix),
		"topic_prefix":            str(&g.TopicPrefix),
		"dsub_prefix":             str(&g.DsubPrefix),
		"temp_queue_prefix":       str(&g.TempQueuePrefix),
		"temp_topic_prefix":       str(&g.TempTopicPrefix),
		"destination_separator":   str(&g.DestinationSeparator),
	}
}

func mqttAttrs(m *MQTT) map[string]attrFunc {
	a := grammarAttrs(&m.Grammar)
	a["max_message_length"] = size(&m.MaxMessageLength)
	a["die_delay"] = duration(&m.DieDelay)
	a["max_inflight"] = integer(&m.MaxInflight)
	a["max_queued_messages"] = integer(&m.MaxQueuedMessages)
	a["max_subscriptions"] = integer(&m.MaxSubscriptions)
	a["max_topic_levels"] = integer(&m.MaxTopicLevels)
	a["receive_maximum"] = integer(&m.ReceiveMaximum)
	a["topic_alias_maximum"] = integer(&m.TopicAliasMaximum)
	a["max_session_expiry"] = duration(&m.MaxSessionExpiry)
	a["max_keep_alive"] = duration(&m.MaxKeepAlive)
	a["response_topic_prefix"] = str(&m.ResponseTopicPrefix)
	return a
}

func stompAttrs(s *STOMP) map[string]attrFunc {
	a := grammarAttrs(&s.Grammar)
	a["max_message_length"] = size(&s.MaxMessageLength)
	a["die_delay"] = duration(&s.DieDelay)
	a["max_headers"] = integer(&s.MaxHeaders)
	a["max_header_length"] = size(&s.MaxHeaderLength)
	a["add_user_header"] = str(&s.AddUserHeader)
	a["add_timestamp_header"] = str(&s.AddTimestampHeader)
	a["add_redeliveries_header"] = str(&s.AddRedeliveriesHeader)
	a["max_transactions"] = integer(&s.MaxTransactions)
	a["max_transaction_frames"] = integer(&s.MaxTransactionFrames)
	a["max_transaction_bytes"] = size(&s.MaxTransactionBytes)
	a["max_selector_length"] = size(&s.MaxSelectorLength)
	a["max_subscriptions"] = integer(&s.MaxSubscriptions)
	return a
}

func (d *decoder) virtualHost(b *hclsyntax.Block, key string) VirtualHost {
	h := VirtualHost{Name: b.Labels[0], SharedSubscriptionStrategy: ShareRoundRobin, CredentialCache: DefaultCredentialCache}
	d.pos[key] = b.TypeRange
	d.pos[key+".name"] = b.LabelRanges[0]
	d.attrs(b.Body, key, map[string]attrFunc{
		"host_names":         strList(&h.HostNames),
		"anonymous":          boolean(&h.Anonymous),
		"users_file":         file(&h.UsersFile),
		"client_ids":         strList(&h.ClientIDs),
		"max_connections":    integer(&h.MaxConnections),
		"max_queues":         integer(&h.MaxQueues),
		"max_message_length": size(&h.MaxMessageLength),
		"quota":              size(&h.Quota),
		"quota_messages":     integer(&h.QuotaMessages),

		"max_subscriptions":         integer(&h.MaxSubscriptions),
		"max_durable_subscriptions": integer(&h.MaxDurableSubscriptions),

		"max_concurrent_logins":             integer(&h.MaxConcurrentLogins),
		"max_concurrent_logins_per_address": integer(&h.MaxConcurrentLoginsPerAddress),
		"credential_cache":                  duration(&h.CredentialCache),
		"credential_cache_size":             integer(&h.CredentialCacheSize),

		"shared_subscription_strategy": str((*string)(&h.SharedSubscriptionStrategy)),
	})
	var first *hclsyntax.Block
	for _, sb := range b.Body.Blocks {
		switch sb.Type {
		case "store":
		case "access_rule":
			if d.labels(sb, 0) {
				k := key + ".access_rule." + strconv.Itoa(len(h.AccessRules))
				h.AccessRules = append(h.AccessRules, d.accessRule(sb, k))
			}
			continue
		case "queue":
			if d.labels(sb, 1) {
				h.Queues = append(h.Queues, d.queuePolicy(sb, key+".queue."+strconv.Itoa(len(h.Queues))))
			}
			continue
		case "dsub":
			if d.labels(sb, 1) {
				h.Dsubs = append(h.Dsubs, d.queuePolicy(sb, key+".dsub."+strconv.Itoa(len(h.Dsubs))))
			}
			continue
		case "topic":
			if d.labels(sb, 1) {
				h.Topics = append(h.Topics, d.topicPolicy(sb, key+".topic."+strconv.Itoa(len(h.Topics))))
			}
			continue
		default:
			d.unknownBlock(sb, "store", "access_rule", "queue", "dsub", "topic")
			continue
		}
		if first != nil {
			d.errAt(sb.TypeRange, "duplicate store block (first at %s)", posOf(first.TypeRange))
			continue
		}
		first = sb
		if !d.labels(sb, 0) {
			continue
		}
		k := key + ".store"
		d.pos[k] = sb.TypeRange
		h.Store = &Store{Sync: true}
		d.attrs(sb.Body, k, map[string]attrFunc{
			"directory":   str(&h.Store.Directory),
			"sync":        boolean(&h.Store.Sync),
			"flush_delay": duration(&h.Store.FlushDelay),
		})
		d.noBlocks(sb.Body)
	}
	return h
}

func (d *decoder) cluster(b *hclsyntax.Block) *Cluster {
	c := &Cluster{Name: DefaultClusterName}
	d.pos["cluster"] = b.TypeRange
	d.attrs(b.Body, "cluster", map[string]attrFunc{
		"name":      str(&c.Name),
		"node":      str(&c.Node),
		"listen":    str(&c.Listen),
		"routes":    strList(&c.Routes),
		"advertise": str(&c.Advertise),
		"nats_url":  str(&c.NATSURL),
		"directory": str(&c.Directory),
		"replicas":  integer(&c.Replicas),
	})
	d.noBlocks(b.Body)
	if c.Replicas == 0 {
		// One copy per node up to JetStream's usual 3: routes (or external URLs) plus this node.
		n := 1 + len(c.Routes)
		if c.NATSURL != "" {
			n = len(strings.Split(c.NATSURL, ","))
		}
		c.Replicas = min(3, n)
	}
	return c
}

func (d *decoder) accessRule(b *hclsyntax.Block, key string) AccessRule {
	var r AccessRule
	d.pos[key] = b.TypeRange
	d.attrs(b.Body, key, map[string]attrFunc{
		"allow":  strList(&r.Allow),
		"deny":   strList(&r.Deny),
		"action": strOrList(&r.Actions),
		"kind":   str(&r.Kind),
		"id":     str(&r.ID),
	})
	d.noBlocks(b.Body)
	return r
}

func (d *decoder) queuePolicy(b *hclsyntax.Block, key string) QueuePolicy {
	q := QueuePolicy{Pattern: b.Labels[0], FullPolicy: FullBlock}
	d.pos[key] = b.TypeRange
	d.pos[key+".pattern"] = b.LabelRanges[0]
	var full string
	d.attrs(b.Body, key, map[string]attrFunc{
		"nak_limit":         integer(&q.NakLimit),
		"dlq":               str(&q.DLQ),
		"quota":             size(&q.Quota),
		"quota_messages":    integer(&q.QuotaMessages),
		"full_policy":       str(&full),
		"auto_delete_after": duration(&q.AutoDeleteAfter),
	})
	if full != "" {
		q.FullPolicy = FullPolicy(full)
	}
	d.noBlocks(b.Body)
	return q
}

func (d *decoder) topicPolicy(b *hclsyntax.Block, key string) TopicPolicy {
	t := TopicPolicy{Pattern: b.Labels[0], SlowConsumerPolicy: SlowBlock}
	d.pos[key] = b.TypeRange
	d.pos[key+".pattern"] = b.LabelRanges[0]
	var slow string
	d.attrs(b.Body, key, map[string]attrFunc{
		"slow_consumer_policy": str(&slow),
	})
	if slow != "" {
		t.SlowConsumerPolicy = SlowConsumerPolicy(slow)
	}
	d.noBlocks(b.Body)
	return t
}

// attrs decodes body's attributes with the functions in known; any other attribute is an error.
func (d *decoder) attrs(body *hclsyntax.Body, key string, known map[string]attrFunc) {
	list := make([]*hclsyntax.Attribute, 0, len(body.Attributes))
	for _, a := range body.Attributes {
		list = append(list, a)
	}
	// Attributes is a map; walk in source order so errors come out stable.
	slices.SortFunc(list, func(a, b *hclsyntax.Attribute) int { return a.SrcRange.Start.Byte - b.SrcRange.Start.Byte })
	for _, a := range list {
		f, ok := known[a.Name]
		if !ok {
			d.errAt(a.NameRange, "unknown attribute %q%s", a.Name, suggest(a.Name, keys(known)))
			continue
		}
		k := a.Name
		if key != "" {
			k = key + "." + a.Name
		}
		f(d, k, a)
	}
}

func (d *decoder) noBlocks(body *hclsyntax.Body) {
	for _, b := range body.Blocks {
		d.unknownBlock(b)
	}
}

func (d *decoder) unknownBlock(b *hclsyntax.Block, known ...string) {
	d.errAt(b.TypeRange, "unknown block %q%s", b.Type, suggest(b.Type, known))
}

// labels checks that b has n labels and reports it otherwise.
func (d *decoder) labels(b *hclsyntax.Block, n int) bool {
	if len(b.Labels) == n {
		return true
	}
	if n == 0 {
		d.errAt(b.LabelRanges[0], "%s block takes no name", b.Type)
	} else {
		d.errAt(b.TypeRange, "%s block needs exactly one name, as in %s \"default\" { ... }", b.Type, b.Type)
	}
	return false
}

// value evaluates a's expression as a literal and records its range under key.
func (d *decoder) value(key string, a *hclsyntax.Attribute) (cty.Value, bool) {
	r := a.Expr.Range()
	d.pos[key] = r
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		d.errs = append(d.errs, diagErrors(diags, d.file)...)
		return cty.NilVal, false
	}
	if v.IsNull() {
		d.errAt(r, "%s must not be null", a.Name)
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() {
		d.errAt(r, "%s must be a literal value", a.Name)
		return cty.NilVal, false
	}
	return v, true
}

func (d *decoder) wrongType(a *hclsyntax.Attribute, want string, v cty.Value) {
	d.errAt(a.Expr.Range(), "%s must be %s, not %s", a.Name, want, v.Type().FriendlyName())
}

func str(p *string) attrFunc {
	return func(d *decoder, key string, a *hclsyntax.Attribute) {
		v, ok := d.value(key, a)
		if !ok {
			return
		}
		if v.Type() != cty.String {
			d.wrongType(a, "a string", v)
			return
		}
		*p = v.AsString()
	}
}

// file decodes a path; a relative one is resolved against the directory of the file being decoded, so a
// config can name its neighbours wherever the broker is started from.
func file(p *string) attrFunc {
	return func(d *decoder, key string, a *hclsyntax.Attribute) {
		var s string
		str(&s)(d, key, a)
		if s != "" && !filepath.IsAbs(s) && d.file != DefaultSource {
			s = filepath.Join(filepath.Dir(d.file), s)
		}
		*p = s
	}
}

// strOrList decodes a string or a list of strings ("send" or ["send", "receive"]).
func strOrList(p *[]string) attrFunc {
	return func(d *decoder, key string, a *hclsyntax.Attribute) {
		if v, diags := a.Expr.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
			var s string
			str(&s)(d, key, a)
			*p = []string{s}
			return
		}
		strList(p)(d, key, a)
	}
}

func boolean(p *bool) attrFunc {
	return func(d *decoder, key string, a *hclsyntax.Attribute) {
		v, ok := d.value(key, a)
		if !ok {
			return
		}
		if v.Type() != cty.Bool {
			d.wrongType(a, "true or false", v)
			return
		}
		*p = v.True()
	}
}

func integer(p *int) attrFunc {
	return func(d *decoder, key string, a *hclsyntax.Attribute) {
		v, ok := d.value(key, a)
		if !ok {
			return
		}
		if v.Type() != cty.Number {
			d.wrongType(a, "a whole number", v)
			return
		}
		f := v.AsBigFloat()
		if !f.IsInt() {
			d.errAt(a.Expr.Range(), "%s must be a whole number, not %s", a.Name, f.Text('g', 10))
			return
		}
		n, ok := wholeNumber(f)
		if !ok || n < math.MinInt || n > math.MaxInt {
			d.errAt(a.Expr.Range(), "%s: %s is out of range", a.Name, f.Text('g', 10))
			return
		}
		*p = int(n)
	}
}

// wholeNumber returns f as an int64 if it is an integer that fits.
func wholeNumber(f *big.Float) (int64, bool) {
	if !f.IsInt() {
		return 0, false
	}
	n, acc := f.Int64()
	return n, acc == big.Exact
}

func size(p *int64) attrFunc {
	return func(d *decoder, key string, a *hclsyntax.Attribute) {
		v, ok := d.value(key, a)
		if !ok {
			return
		}
		switch v.Type() {
		case cty.Number:
			n, ok := wholeNumber(v.AsBigFloat())
			if !ok || n < 0 {
				d.errAt(a.Expr.Range(), "%s: invalid size %s (want bytes as a whole number, or e.g. \"100MB\")", a.Name, v.AsBigFloat().Text('g', 10))
				return
			}
			*p = n
		case cty.String:
			n, err := ParseSize(v.AsString())
			if err != nil {
				d.errAt(a.Expr.Range(), "%s: %v", a.Name, err)
				return
			}
			*p = n
		default:
			d.wrongType(a, "a size such as \"100MB\"", v)
		}
	}
}

func duration(p *time.Duration) attrFunc {
	return func(d *decoder, key string, a *hclsyntax.Attribute) {
		v, ok := d.value(key, a)
		if !ok {
			return
		}
		if v.Type() != cty.String {
			d.wrongType(a, "a duration string such as \"5s\"", v)
			return
		}
		t, err := ParseDuration(v.AsString())
		if err != nil {
			d.errAt(a.Expr.Range(), "%s: %v", a.Name, err)
			return
		}
		*p = t
	}
}

// strList decodes a list of strings and records each element's range as key.N.
func strList(p *[]string) attrFunc {
	return func(d *decoder, key string, a *hclsyntax.Attribute) {
		v, ok := d.value(key, a)
		if !ok {
			return
		}
		if !v.Type().IsTupleType() && !v.Type().IsListType() {
			d.wrongType(a, "a list of strings", v)
			return
		}
		var elems []hclsyntax.Expression
		if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && len(t.Exprs) == v.LengthInt() {
			elems = t.Exprs
		}
		out := make([]string, 0, v.LengthInt())
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, e := it.Element()
			r := a.Expr.Range()
			if elems != nil {
				r = elems[i].Range()
				d.pos[key+"."+strconv.Itoa(i)] = r
			}
			if e.IsNull() || e.Type() != cty.String {
				d.errAt(r, "%s must be a list of strings, but element %d is %s", a.Name, i, e.Type().FriendlyName())
				return
			}
			out = append(out, e.AsString())
		}
		*p = out
	}
}

func keys(m map[string]attrFunc) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// suggest returns `; did you mean "x"?` for the known name closest to a likely typo, or "".
func suggest(name string, known []string) string {
	best, bestDist := "", 3 // more than two edits away is not a typo
	slices.Sort(known)
	for _, k := range known {
		if dist := editDistance(name, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
