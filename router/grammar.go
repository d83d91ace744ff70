package router

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unsafe"
)

// ErrInvalidGrammar is returned by NewGrammar for an inconsistent configuration.
var ErrInvalidGrammar = errors.New("router: invalid grammar")

// Limits on regex segments, so one SUBSCRIBE cannot make the broker compile or run something huge.
const (
	// MaxRegexLen caps the source length of one regex segment (between the delimiters).
	MaxRegexLen = 256
	// MaxRegexSegments caps the regex segments in one filter.
	MaxRegexSegments = 8
)

// GrammarConfig holds a connector's naming options for one protocol (see DESIGN.md §3). The router does
// not import conf, so the front-end copies the conf values here. An empty token disables that feature.
type GrammarConfig struct {
	PathSeparator, AnyChildWildcard, AnyDescendantWildcard, RegexWildcardStart, RegexWildcardEnd string
	// PartPattern is an RE2 regex every literal segment (after unescaping) must match entirely.
	PartPattern                                                                                  string
	QueuePrefix, TopicPrefix, DsubPrefix, TempQueuePrefix, TempTopicPrefix, DestinationSeparator string
	// DefaultKind is the kind of a name with no known prefix; RequirePrefix makes such a name an error.
	DefaultKind   Kind
	RequirePrefix bool
	// Escape renders special characters of this grammar inside a segment as %XX and unescapes %XX on parse.
	Escape bool
}

// MQTTGrammarConfig returns the MQTT defaults: "/", "+", "#", no regex, no prefixes, unprefixed names are
// topics, segments taken verbatim.
func MQTTGrammarConfig() GrammarConfig {
	return GrammarConfig{
		PathSeparator:         "/",
		AnyChildWildcard:      "+",
		AnyDescendantWildcard: "#",
		DefaultKind:           Topic,
	}
}

// STOMPGrammarConfig returns the STOMP defaults: ".", "*", "**", "{re}", the /queue/, /topic/, /dsub/,
// /temp-queue/ and /temp-topic/ prefixes (one is required), "," for composites and %XX escaping.
func STOMPGrammarConfig() GrammarConfig {
	return GrammarConfig{
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
		DefaultKind:           Topic,
		RequirePrefix:         true,
		Escape:                true,
	}
}

type namePrefix struct {
	text string
	kind Kind
}

// Grammar maps one protocol's wire names onto canonical destinations and filters, and back. It is
// immutable after NewGrammar and safe for concurrent use.
//
// Rendering is the inverse of parsing for every destination the grammar can express. With Escape on, every
// byte of a segment that is '%' or occurs in a token of the grammar (separator, wildcards, regex delimiters,
// destination separator) is written as %XX, so any path renders unambiguously. With Escape off a segment is
// written verbatim, so a path holding the separator or a wildcard token (possible only when it came from an
// escaping grammar) does not survive the trip. A kind the grammar has no prefix for renders as its bare
// path. When a rendered name would start with a longer prefix of another kind ("/t/" and "/t/tmp/", or an
// unprefixed default kind and "queue/"), an escaping grammar escapes the name's first byte to keep its
// kind; without escaping such a name changes kind, so configure prefixes that do not collide with names.
type Grammar struct {
	cfg                            GrammarConfig
	sep, one, many, reStart, reEnd string
	destSep                        string
	part                           *regexp.Regexp
	prefixes                       []namePrefix // longest first
	kindPrefix                     [TempTopic + 1]string
	// shadows[k] lists the prefixes of other kinds that begin with kind k's rendering prefix: a name of
	// kind k whose path starts like the rest of one of them must be escaped to keep its kind.
	shadows [TempTopic + 1][]string
	escape  bool
	special [256]bool // bytes escaped by Render when escape is on
}

// NewGrammar validates c and builds a grammar.
func NewGrammar(c GrammarConfig) (*Grammar, error) {
	bad := func(format string, a ...any) (*Grammar, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidGrammar, fmt.Sprintf(format, a...))
	}
	if c.PathSeparator == "" {
		return bad("path separator is empty")
	}
	if (c.RegexWildcardStart == "") != (c.RegexWildcardEnd == "") {
		return bad("regex wildcard start %q and end %q must be set together", c.RegexWildcardStart, c.RegexWildcardEnd)
	}
	if c.AnyChildWildcard != "" && c.AnyChildWildcard == c.AnyDescendantWildcard {
		return bad("one-level and many-level wildcards are both %q", c.AnyChildWildcard)
	}
	for _, tok := range []string{c.AnyChildWildcard, c.AnyDescendantWildcard, c.RegexWildcardStart, c.RegexWildcardEnd} {
		if tok != "" && strings.Contains(tok, c.PathSeparator) {
			return bad("token %q contains the path separator %q", tok, c.PathSeparator)
		}
		if c.Escape && strings.Contains(tok, "%") {
			return bad("token %q contains '%%', which escaping reserves", tok)
		}
	}
	if c.Escape && strings.Contains(c.PathSeparator, "%") {
		return bad("path separator %q contains '%%', which escaping reserves", c.PathSeparator)
	}
	if c.DefaultKind > TempTopic {
		return bad("default kind %d is unknown", c.DefaultKind)
	}
	g := &Grammar{
		cfg:     c,
		sep:     c.PathSeparator,
		one:     c.AnyChildWildcard,
		many:    c.AnyDescendantWildcard,
		reStart: c.RegexWildcardStart,
		reEnd:   c.RegexWildcardEnd,
		destSep: c.DestinationSeparator,
		escape:  c.Escape,
	}
	if c.PartPattern != "" {
		re, err := regexp.Compile("^(?:" + c.PartPattern + ")$")
		if err != nil {
			return bad("part pattern %q: %v", c.PartPattern, err)
		}
		g.part = re
	}
	for _, p := range []namePrefix{
		{c.QueuePrefix, Queue}, {c.TopicPrefix, Topic}, {c.DsubPrefix, DurableSub},
		{c.TempQueuePrefix, TempQueue}, {c.TempTopicPrefix, TempTopic},
	} {
		if p.text == "" {
			continue
		}
		for _, q := range g.prefixes {
			if q.text == p.text {
				return bad("prefix %q is configured for both %s and %s", p.text, q.kind, p.kind)
			}
		}
		g.prefixes = append(g.prefixes, p)
		g.kindPrefix[p.kind] = p.text
	}
	if c.RequirePrefix && len(g.prefixes) == 0 {
		return bad("a prefix is required but none is configured")
	}
	// Longest prefix wins, so "/topic/" and "/topic/x/" can coexist.
	sort.SliceStable(g.prefixes, func(i, j int) bool { return len(g.prefixes[i].text) > len(g.prefixes[j].text) })
	for k := range g.kindPrefix {
		own := g.kindPrefix[k]
		if own == "" && (c.RequirePrefix || Kind(k) != c.DefaultKind) {
			continue
		}
		for _, p := range g.prefixes {
			if p.kind != Kind(k) && len(p.text) > len(own) && strings.HasPrefix(p.text, own) {
				g.shadows[k] = append(g.shadows[k], p.text)
			}
		}
	}
	if c.Escape {
		g.special['%'] = true
		for _, tok := range []string{g.sep, g.one, g.many, g.reStart, g.reEnd, g.destSep} {
			for i := 0; i < len(tok); i++ {
				g.special[tok[i]] = true
			}
		}
	}
	return g, nil
}

// Config returns the configuration g was built from.
func (g *Grammar) Config() GrammarConfig { return g.cfg }

// kindOf strips the longest matching prefix from name.
func (g *Grammar) kindOf(name string) (Kind, string, bool) {
	for _, p := range g.prefixes {
		if strings.HasPrefix(name, p.text) {
			return p.kind, name[len(p.text):], true
		}
	}
	if g.cfg.RequirePrefix {
		return 0, name, false
	}
	return g.cfg.DefaultKind, name, true
}

func (g *Grammar) prefixList() string {
	var b strings.Builder
	for i, p := range g.prefixes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.text)
	}
	return b.String()
}

// ParseName parses a destination name (SEND destination, PUBLISH topic). Names hold no wildcards and no
// regex segments. Errors wrap ErrInvalidName.
func (g *Grammar) ParseName(name string) (Destination, error) {
	bad := func(format string, a ...any) (Destination, error) {
		return Destination{}, fmt.Errorf("%w %q: %s", ErrInvalidName, name, fmt.Sprintf(format, a...))
	}
	if name == "" {
		return bad("empty name") // [MQTT-4.7.3-1]
	}
	kind, rest, ok := g.kindOf(name)
	if !ok {
		return bad("it must start with one of %s", g.prefixList())
	}
	if rest == "" {
		return bad("empty name after the prefix")
	}
	path := make([]string, 0, strings.Count(rest, g.sep)+1)
	for {
		i := strings.Index(rest, g.sep)
		raw := rest
		if i >= 0 {
			raw = rest[:i]
		}
		if g.isWildcard(raw) {
			return bad("wildcard %q is not allowed in a name", raw) // [MQTT-3.3.2-2]
		}
		if g.isRegex(raw) {
			return bad("regex segment %q is not allowed in a name", raw)
		}
		seg, msg := g.literal(raw)
		if msg != "" {
			return bad("%s", msg)
		}
		path = append(path, seg)
		if i < 0 {
			break
		}
		rest = rest[i+len(g.sep):]
	}
	return Destination{Kind: kind, Path: path}, nil
}

func (g *Grammar) isWildcard(raw string) bool {
	return (g.one != "" && raw == g.one) || (g.many != "" && raw == g.many)
}

func (g *Grammar) isRegex(raw string) bool {
	return g.reStart != "" && len(raw) >= len(g.reStart)+len(g.reEnd) &&
		strings.HasPrefix(raw, g.reStart) && strings.HasSuffix(raw, g.reEnd)
}

// literal validates and unescapes one literal segment; msg explains a rejection.
func (g *Grammar) literal(raw string) (seg string, msg string) {
	for _, tok := range [...]string{g.one, g.many} {
		if tok != "" && strings.Contains(raw, tok) {
			return "", fmt.Sprintf("segment %q: wildcard %q must occupy a whole segment", raw, tok) // [MQTT-4.7.1-2] [MQTT-4.7.1-3]
		}
	}
	for _, tok := range [...]string{g.reStart, g.reEnd} {
		if tok != "" && strings.Contains(raw, tok) {
			return "", fmt.Sprintf("segment %q: regex delimiter %q must enclose a whole segment", raw, tok)
		}
	}
	seg = raw
	if g.escape {
		var err error
		if seg, err = unescape(raw); err != nil {
			return "", fmt.Sprintf("segment %q: %v", raw, err)
		}
	}
	if g.part != nil && !g.part.MatchString(seg) {
		return "", fmt.Sprintf("segment %q does not match the part pattern %q", seg, g.cfg.PartPattern)
	}
	return seg, ""
}

// ParseFilter parses a subscription filter. Wildcards and regex segments must occupy a whole segment and
// the many-level wildcard must be last; regex segments are compiled here, once. Errors wrap
// ErrInvalidFilter.
func (g *Grammar) ParseFilter(name string) (Filter, error) {
	bad := func(format string, a ...any) (Filter, error) {
		return Filter{}, fmt.Errorf("%w %q: %s", ErrInvalidFilter, name, fmt.Sprintf(format, a...))
	}
	if name == "" {
		return bad("empty filter") // [MQTT-4.7.3-1]
	}
	kind, rest, ok := g.kindOf(name)
	if !ok {
		return bad("it must start with one of %s", g.prefixList())
	}
	if rest == "" {
		return bad("empty filter after the prefix")
	}
	raws, msg := g.splitFilter(rest)
	if msg != "" {
		return bad("%s", msg)
	}
	segs := make([]Seg, 0, len(raws))
	nre := 0
	for i, raw := range raws {
		switch {
		case g.one != "" && raw == g.one:
			segs = append(segs, Seg{Kind: SegOne})
		case g.many != "" && raw == g.many:
			if i != len(raws)-1 {
				return bad("wildcard %q must be the last segment", raw) // [MQTT-4.7.1-2]
			}
			segs = append(segs, Seg{Kind: SegMany})
		case g.isRegex(raw):
			nre++
			if nre > MaxRegexSegments {
				return bad("more than %d regex segments", MaxRegexSegments)
			}
			src := raw[len(g.reStart) : len(raw)-len(g.reEnd)]
			re, err := compileSegment(src)
			if err != nil {
				return bad("%v", err)
			}
			segs = append(segs, Seg{Kind: SegRegex, Text: src, Re: re})
		default:
			seg, msg := g.literal(raw)
			if msg != "" {
				return bad("%s", msg)
			}
			segs = append(segs, Seg{Kind: SegLiteral, Text: seg})
		}
	}
	return Filter{Kind: kind, Segs: segs}, nil
}

// compileSegment compiles a regex segment anchored to the whole segment. RE2 runs in linear time, and the
// length cap bounds the compiled program.
func compileSegment(src string) (*regexp.Regexp, error) {
	if len(src) > MaxRegexLen {
		return nil, fmt.Errorf("regex segment longer than %d bytes", MaxRegexLen)
	}
	re, err := regexp.Compile("^(?:" + src + ")$")
	if err != nil {
		return nil, fmt.Errorf("regex segment %q: %v", src, err)
	}
	return re, nil
}

// splitFilter splits by the separator, except inside a regex segment: a segment that starts with the regex
// start delimiter runs to the first end delimiter followed by a separator or the end of the name, so a
// regex may hold the separator ("{v1.*}" in STOMP).
func (g *Grammar) splitFilter(rest string) ([]string, string) {
	raws := make([]string, 0, strings.Count(rest, g.sep)+1)
	for {
		if g.reStart != "" && strings.HasPrefix(rest, g.reStart) {
			end := -1
			for i := len(g.reStart); ; {
				j := strings.Index(rest[i:], g.reEnd)
				if j < 0 {
					break
				}
				e := i + j + len(g.reEnd)
				if e == len(rest) || strings.HasPrefix(rest[e:], g.sep) {
					end = e
					break
				}
				i += j + 1
			}
			if end < 0 {
				return nil, fmt.Sprintf("unterminated regex segment %q", rest)
			}
			raws = append(raws, rest[:end])
			if end == len(rest) {
				return raws, ""
			}
			rest = rest[end+len(g.sep):]
			continue
		}
		i := strings.Index(rest, g.sep)
		if i < 0 {
			return append(raws, rest), ""
		}
		raws = append(raws, rest[:i])
		rest = rest[i+len(g.sep):]
	}
}

// SplitComposite splits a composite destination ("/queue/a,/topic/b") by the destination separator,
// ignoring separators inside regex segments. Without a destination separator it returns [name].
func (g *Grammar) SplitComposite(name string) []string {
	if g.destSep == "" || !strings.Contains(name, g.destSep) {
		return []string{name}
	}
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(name); {
		switch {
		case g.reStart != "" && strings.HasPrefix(name[i:], g.reStart):
			depth++
			i += len(g.reStart)
		case depth > 0 && strings.HasPrefix(name[i:], g.reEnd):
			depth--
			i += len(g.reEnd)
		case depth == 0 && strings.HasPrefix(name[i:], g.destSep):
			out = append(out, name[start:i])
			i += len(g.destSep)
			start = i
		default:
			i++
		}
	}
	return append(out, name[start:])
}

// prefixFor is the text a destination of kind k is rendered with: its prefix, or nothing.
func (g *Grammar) prefixFor(k Kind) string {
	if int(k) < len(g.kindPrefix) {
		return g.kindPrefix[k]
	}
	return ""
}

const upperHex = "0123456789ABCDEF"

func (g *Grammar) appendSeg(dst []byte, s string) []byte {
	if !g.escape {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if g.special[c] {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

func (g *Grammar) segLen(s string) int {
	n := len(s)
	if g.escape {
		for i := 0; i < len(s); i++ {
			if g.special[s[i]] {
				n += 2
			}
		}
	}
	return n
}

// AppendRender appends the wire name of d to dst.
func (g *Grammar) AppendRender(dst []byte, d Destination) []byte {
	dst = append(dst, g.prefixFor(d.Kind)...)
	start := len(dst)
	for i, s := range d.Path {
		if i > 0 {
			dst = append(dst, g.sep...)
		}
		dst = g.appendSeg(dst, s)
	}
	if g.escape && int(d.Kind) < len(g.shadows) && len(d.Path) > 0 && d.Path[0] != "" && !g.special[d.Path[0][0]] {
		if g.shadowed(d.Kind, dst[start-len(g.prefixFor(d.Kind)):]) {
			// Escape the first byte so the name does not parse under a longer prefix of another kind.
			c := dst[start]
			dst = append(dst, 0, 0)
			copy(dst[start+3:], dst[start+1:len(dst)-2])
			dst[start], dst[start+1], dst[start+2] = '%', upperHex[c>>4], upperHex[c&15]
		}
	}
	return dst
}

// shadowed reports whether the rendered name (after head) starts with a longer prefix of another kind.
func (g *Grammar) shadowed(k Kind, name []byte) bool {
	for _, p := range g.shadows[k] {
		if len(name) >= len(p) && string(name[:len(p)]) == p {
			return true
		}
	}
	return false
}

// Render returns the wire name of d; it is the inverse of ParseName.
func (g *Grammar) Render(d Destination) string {
	p := g.prefixFor(d.Kind)
	if len(d.Path) == 1 && p == "" && !g.escape {
		return d.Path[0]
	}
	n := len(p)
	for i, s := range d.Path {
		if i > 0 {
			n += len(g.sep)
		}
		n += g.segLen(s)
	}
	if n == 0 {
		return ""
	}
	b := g.AppendRender(make([]byte, 0, n), d)
	return unsafe.String(&b[0], len(b)) // b is never written again
}

// Represents reports whether Render(d) parses back to d, so that a subscriber using g is told the name
// of the destination a message was sent to rather than of another one. An escaping grammar represents
// every path of a kind it can name. A grammar without escaping cannot represent a segment holding its
// separator (STOMP's "/topic/a.b%2Fc" would read a/b/c in MQTT: three levels, not two), a wildcard token
// or a regex delimiter, a segment its part pattern refuses, an empty name, or a name that would start
// with another kind's longer prefix. It allocates nothing.
func (g *Grammar) Represents(d Destination) bool {
	own := g.prefixFor(d.Kind)
	if own == "" && (g.cfg.RequirePrefix || d.Kind != g.cfg.DefaultKind) {
		return false // rendered bare, it would parse as the default kind
	}
	if len(d.Path) == 0 || (len(d.Path) == 1 && d.Path[0] == "") {
		return false // an empty name
	}
	if g.escape {
		return true
	}
	for _, seg := range d.Path {
		if strings.Contains(seg, g.sep) || g.isWildcard(seg) || g.isRegex(seg) {
			return false
		}
		if _, msg := g.literal(seg); msg != "" {
			return false
		}
	}
	for _, p := range g.shadows[d.Kind] {
		if renderedPrefix(d.Path, g.sep, p[len(own):]) {
			return false
		}
	}
	return true
}

// renderedPrefix reports whether path joined by sep starts with want, without joining it.
func renderedPrefix(path []string, sep, want string) bool {
	for i, seg := range path {
		for j, part := range [2]string{sep, seg} {
			if j == 0 && i == 0 {
				continue
			}
			n := min(len(part), len(want))
			if part[:n] != want[:n] {
				return false
			}
			if want = want[n:]; want == "" {
				return true
			}
		}
	}
	return want == ""
}

// RenderFilter returns the wire text of f; it is the inverse of ParseFilter. A regex segment is rendered
// with "{" and "}" when the grammar has no regex delimiters.
func (g *Grammar) RenderFilter(f Filter) string {
	b := []byte(g.prefixFor(f.Kind))
	for i, s := range f.Segs {
		if i > 0 {
			b = append(b, g.sep...)
		}
		switch s.Kind {
		case SegOne:
			b = append(b, g.one...)
		case SegMany:
			b = append(b, g.many...)
		case SegRegex:
			start, end := g.reStart, g.reEnd
			if start == "" {
				start, end = "{", "}"
			}
			b = append(append(append(b, start...), s.Text...), end...)
		default:
			b = g.appendSeg(b, s.Text)
		}
	}
	return string(b)
}

// RenderMessage returns the name a subscriber using g sees for m: the publisher's own text when it used
// the same grammar (no allocation), else Render(m.Dest).
func (g *Grammar) RenderMessage(m *Message) string {
	if m.OriginGram == g && m.Origin != "" {
		return m.Origin
	}
	return g.Render(m.Dest)
}

// unescape decodes %XX sequences; a '%' not followed by two hex digits is an error.
func unescape(s string) (string, error) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("truncated escape %q", s[i:])
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("invalid escape %q", s[i:i+3])
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// IsLiteral reports whether f has no wildcard or regex segment, so it names exactly one destination.
func (f Filter) IsLiteral() bool {
	for _, s := range f.Segs {
		if s.Kind != SegLiteral {
			return false
		}
	}
	return true
}

// Destination returns the destination a literal filter names (Path holds the literal segments).
func (f Filter) Destination() Destination {
	path := make([]string, len(f.Segs))
	for i, s := range f.Segs {
		path[i] = s.Text
	}
	return Destination{Kind: f.Kind, Path: path}
}
