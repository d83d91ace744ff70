package stomp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lyremq/lyre/router"
)

// ErrSelector is wrapped by every selector syntax error.
var ErrSelector = errors.New("stomp: invalid selector")

// maxSelectorDepth bounds the nesting of a selector expression, so a hostile one cannot exhaust the stack.
const maxSelectorDepth = 64

// selector is a parsed SUBSCRIBE `selector` header: the JMS (SQL-92 subset) message selector syntax that
// ActiveMQ and Apollo accept, evaluated against the message's application headers. Header values are
// strings; compared with a number they are parsed as one, and a value that does not parse is unknown.
// Identifiers follow Java rules (letters, digits, _ and $), so headers with '-' cannot be named.
// Evaluation allocates nothing; unknown (SQL NULL) results do not match.
type selector struct {
	root node
	src  string
}

type valKind uint8

const (
	vNull valKind = iota // unknown
	vBool
	vNum
	vStr
)

type value struct {
	kind valKind
	b    bool
	n    float64
	s    string
}

type node interface {
	eval(m *router.Message) value
}

// parseSelector compiles src.
func parseSelector(src string) (*selector, error) {
	p := &selParser{src: src}
	p.next()
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.errorf("unexpected %q", p.tok.text)
	}
	return &selector{root: n, src: src}, nil
}

// matches reports whether m satisfies the selector; unknown counts as no.
func (s *selector) matches(m *router.Message) bool {
	v := s.root.eval(m)
	return v.kind == vBool && v.b
}

// ---- lexer ----

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tStr
	tNum
	tOp // = <> < > <= >= + - * / ( ) ,
	tErr
)

type token struct {
	kind tokKind
	text string // identifier (as written), operator, or the decoded string literal
	num  float64
	kw   string // upper-cased keyword for identifiers
}

type selParser struct {
	src string
	pos int
	tok token
}

func (p *selParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrSelector, p.pos, fmt.Sprintf(format, args...))
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '.' }

func (p *selParser) next() {
	s := p.src
	for p.pos < len(s) && (s[p.pos] == ' ' || s[p.pos] == '\t' || s[p.pos] == '\n' || s[p.pos] == '\r') {
		p.pos++
	}
	if p.pos >= len(s) {
		p.tok = token{kind: tEOF}
		return
	}
	start := p.pos
	c := s[p.pos]
	switch {
	case isIdentStart(c):
		for p.pos < len(s) && isIdentPart(s[p.pos]) {
			p.pos++
		}
		text := s[start:p.pos]
		p.tok = token{kind: tIdent, text: text, kw: strings.ToUpper(text)}
	case c >= '0' && c <= '9' || c == '.' && p.pos+1 < len(s) && s[p.pos+1] >= '0' && s[p.pos+1] <= '9':
		for p.pos < len(s) && (s[p.pos] >= '0' && s[p.pos] <= '9' || s[p.pos] == '.' || s[p.pos] == 'e' || s[p.pos] == 'E' ||
			(s[p.pos] == '-' || s[p.pos] == '+') && (s[p.pos-1] == 'e' || s[p.pos-1] == 'E')) {
			p.pos++
		}
		text := strings.TrimRight(s[start:p.pos], "lLfFdD")
		n, err := strconv.ParseFloat(text, 64)
		if err != nil {
			p.tok = token{kind: tErr, text: s[start:p.pos]}
			return
		}
		p.tok = token{kind: tNum, text: s[start:p.pos], num: n}
	case c == '\'':
		var b strings.Builder
		p.pos++
		for {
			if p.pos >= len(s) {
				p.tok = token{kind: tErr, text: "unterminated string"}
				return
			}
			if s[p.pos] == '\'' {
				if p.pos+1 < len(s) && s[p.pos+1] == '\'' { // '' is a quote inside a literal
					b.WriteByte('\'')
					p.pos += 2
					continue
				}
				p.pos++
				break
			}
			b.WriteByte(s[p.pos])
			p.pos++
		}
		p.tok = token{kind: tStr, text: b.String()}
	default:
		for _, op := range [...]string{"<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ","} {
			if strings.HasPrefix(s[p.pos:], op) {
				p.pos += len(op)
				p.tok = token{kind: tOp, text: op}
				return
			}
		}
		p.tok = token{kind: tErr, text: s[p.pos : p.pos+1]}
	}
}

func (p *selParser) isKw(kw string) bool { return p.tok.kind == tIdent && p.tok.kw == kw }
func (p *selParser) isOp(op string) bool { return p.tok.kind == tOp && p.tok.text == op }

func (p *selParser) expectKw(kw string) error {
	if !p.isKw(kw) {
		return p.errorf("expected %s, got %q", kw, p.tok.text)
	}
	p.next()
	return nil
}

// ---- parser: precedence OR < AND < NOT < comparison < +- < */ < unary ----

func (p *selParser) or(depth int) (node, error) {
	if depth > maxSelectorDepth {
		return nil, p.errorf("nested too deeply")
	}
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.isKw("OR") {
		p.next()
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &orNode{l, r}
	}
	return l, nil
}

func (p *selParser) and(depth int) (node, error) {
	l, err := p.not(depth)
	if err != nil {
		return nil, err
	}
	for p.isKw("AND") {
		p.next()
		r, err := p.not(depth)
		if err != nil {
			return nil, err
		}
		l = &andNode{l, r}
	}
	return l, nil
}

func (p *selParser) not(depth int) (node, error) {
	if p.isKw("NOT") {
		p.next()
		if depth > maxSelectorDepth {
			return nil, p.errorf("nested too deeply")
		}
		x, err := p.not(depth + 1)
		if err != nil {
			return nil, err
		}
		return &notNode{x}, nil
	}
	return p.cmp(depth)
}

func (p *selParser) cmp(depth int) (node, error) {
	l, err := p.sum(depth)
	if err != nil {
		return nil, err
	}
	if p.tok.kind == tOp {
		switch op := p.tok.text; op {
		case "=", "<>", "<", ">", "<=", ">=":
			p.next()
			r, err := p.sum(depth)
			if err != nil {
				return nil, err
			}
			return &cmpNode{op: op, l: l, r: r}, nil
		}
	}
	negate := false
	if p.isKw("NOT") {
		p.next()
		negate = true
		if !p.isKw("BETWEEN") && !p.isKw("IN") && !p.isKw("LIKE") {
			return nil, p.errorf("expected BETWEEN, IN or LIKE after NOT, got %q", p.tok.text)
		}
	}
	var n node
	switch {
	case p.isKw("BETWEEN"):
		p.next()
		lo, err := p.sum(depth)
		if err != nil {
			return nil, err
		}
		if err := p.expectKw("AND"); err != nil {
			return nil, err
		}
		hi, err := p.sum(depth)
		if err != nil {
			return nil, err
		}
		n = &betweenNode{x: l, lo: lo, hi: hi}
	case p.isKw("IN"):
		p.next()
		if !p.isOp("(") {
			return nil, p.errorf("expected ( after IN")
		}
		in := &inNode{x: l}
		for {
			p.next()
			if p.tok.kind != tStr && p.tok.kind != tNum {
				return nil, p.errorf("IN takes a list of literals, got %q", p.tok.text)
			}
			in.list = append(in.list, litValue(p.tok))
			p.next()
			if p.isOp(")") {
				break
			}
			if !p.isOp(",") {
				return nil, p.errorf("expected , or ) in IN list, got %q", p.tok.text)
			}
		}
		p.next()
		n = in
	case p.isKw("LIKE"):
		p.next()
		if p.tok.kind != tStr {
			return nil, p.errorf("LIKE takes a string pattern")
		}
		pat := p.tok.text
		p.next()
		esc := rune(-1)
		if p.isKw("ESCAPE") {
			p.next()
			if p.tok.kind != tStr || utf8.RuneCountInString(p.tok.text) != 1 {
				return nil, p.errorf("ESCAPE takes a one-character string")
			}
			esc, _ = utf8.DecodeRuneInString(p.tok.text)
			p.next()
		}
		lp, ok := newLikePattern(compileLike(pat, esc))
		if !ok {
			return nil, p.errorf("LIKE pattern has more than %d characters between two %%", maxLikeSegment)
		}
		n = &likeNode{x: l, pat: lp}
	case p.isKw("IS"):
		p.next()
		isNot := false
		if p.isKw("NOT") {
			p.next()
			isNot = true
		}
		if err := p.expectKw("NULL"); err != nil {
			return nil, err
		}
		return &isNullNode{x: l, not: isNot}, nil
	default:
		return l, nil
	}
	if negate {
		n = &notNode{n}
	}
	return n, nil
}

func (p *selParser) sum(depth int) (node, error) {
	l, err := p.prod(depth)
	if err != nil {
		return nil, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.tok.text[0]
		p.next()
		r, err := p.prod(depth)
		if err != nil {
			return nil, err
		}
		l = &arithNode{op: op, l: l, r: r}
	}
	return l, nil
}

func (p *selParser) prod(depth int) (node, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.isOp("*") || p.isOp("/") {
		op := p.tok.text[0]
		p.next()
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &arithNode{op: op, l: l, r: r}
	}
	return l, nil
}

func (p *selParser) unary(depth int) (node, error) {
	if p.isOp("-") || p.isOp("+") {
		neg := p.tok.text == "-"
		p.next()
		if depth > maxSelectorDepth {
			return nil, p.errorf("nested too deeply")
		}
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		if neg {
			return &arithNode{op: '-', l: litNode{value{kind: vNum}}, r: x}, nil
		}
		return x, nil
	}
	return p.primary(depth)
}

func (p *selParser) primary(depth int) (node, error) {
	t := p.tok
	switch t.kind {
	case tNum, tStr:
		p.next()
		return litNode{litValue(t)}, nil
	case tIdent:
		switch t.kw {
		case "TRUE", "FALSE":
			p.next()
			return litNode{value{kind: vBool, b: t.kw == "TRUE"}}, nil
		case "AND", "OR", "NOT", "BETWEEN", "IN", "LIKE", "IS", "NULL", "ESCAPE":
			return nil, p.errorf("unexpected keyword %s", t.kw)
		}
		p.next()
		return identNode(t.text), nil
	case tOp:
		if t.text == "(" {
			p.next()
			x, err := p.or(depth + 1)
			if err != nil {
				return nil, err
			}
			if !p.isOp(")") {
				return nil, p.errorf("expected ), got %q", p.tok.text)
			}
			p.next()
			return x, nil
		}
	case tEOF:
		return nil, p.errorf("unexpected end")
	}
	return nil, p.errorf("unexpected %q", t.text)
}

func litValue(t token) value {
	if t.kind == tNum {
		return value{kind: vNum, n: t.num}
	}
	return value{kind: vStr, s: t.text}
}

// ---- evaluation ----

type litNode struct{ v value }

func (n litNode) eval(*router.Message) value { return n.v }

type identNode string

func (n identNode) eval(m *router.Message) value {
	for i := range m.Headers {
		if m.Headers[i].Name == string(n) {
			return value{kind: vStr, s: m.Headers[i].Value}
		}
	}
	return pseudoHeader(string(n), m)
}

// pseudoHeader gives the JMS message properties a selector may name that are not headers, so that
// messages without headers (MQTT's) can be selected too: JMSDeliveryMode ('PERSISTENT' for a persistent
// or QoS >= 1 message), JMSPriority, JMSXGroupID, JMSMessageID and JMSExpiration (Unix ms, 0 = never).
func pseudoHeader(name string, m *router.Message) value {
	switch name {
	case "JMSDeliveryMode":
		if m.Persistent || m.QoS > 0 {
			return value{kind: vStr, s: "PERSISTENT"}
		}
		return value{kind: vStr, s: "NON_PERSISTENT"}
	case "JMSPriority":
		return value{kind: vStr, s: strconv.Itoa(int(m.Priority))}
	case "JMSXGroupID":
		if m.Group != "" {
			return value{kind: vStr, s: m.Group}
		}
	case "JMSMessageID":
		return value{kind: vStr, s: strconv.FormatUint(m.ID, 10)}
	case "JMSExpiration":
		return value{kind: vStr, s: strconv.FormatInt(m.Expires, 10)}
	}
	return value{}
}

// toNum gives a number for numeric comparison: numbers as they are, strings that parse as numbers.
func toNum(v value) (float64, bool) {
	switch v.kind {
	case vNum:
		return v.n, true
	case vStr:
		n, err := strconv.ParseFloat(strings.TrimSpace(v.s), 64)
		return n, err == nil
	}
	return 0, false
}

type cmpNode struct {
	op   string
	l, r node
}

func (n *cmpNode) eval(m *router.Message) value { return compare(n.op, n.l.eval(m), n.r.eval(m)) }

// compare applies a comparison operator; mismatched or unknown operands give unknown.
func compare(op string, a, b value) value {
	if a.kind == vNull || b.kind == vNull {
		return value{}
	}
	var c int
	switch {
	case a.kind == vNum || b.kind == vNum:
		x, ok1 := toNum(a)
		y, ok2 := toNum(b)
		if !ok1 || !ok2 {
			return value{}
		}
		c = cmpFloat(x, y)
	case a.kind == vStr && b.kind == vStr:
		c = strings.Compare(a.s, b.s)
	case a.kind == vBool && b.kind == vBool && (op == "=" || op == "<>"):
		if a.b != b.b {
			c = 1
		}
	case a.kind == vBool && b.kind == vStr, a.kind == vStr && b.kind == vBool:
		// A header "true"/"false" compares with a boolean literal.
		x, y := a, b
		if x.kind == vStr {
			x, y = y, x
		}
		bv, err := strconv.ParseBool(y.s)
		if err != nil || op != "=" && op != "<>" {
			return value{}
		}
		if bv != x.b {
			c = 1
		}
	default:
		return value{}
	}
	var r bool
	switch op {
	case "=":
		r = c == 0
	case "<>":
		r = c != 0
	case "<":
		r = c < 0
	case ">":
		r = c > 0
	case "<=":
		r = c <= 0
	case ">=":
		r = c >= 0
	}
	return value{kind: vBool, b: r}
}

func cmpFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

type arithNode struct {
	op   byte
	l, r node
}

func (n *arithNode) eval(m *router.Message) value {
	x, ok1 := toNum(n.l.eval(m))
	y, ok2 := toNum(n.r.eval(m))
	if !ok1 || !ok2 {
		return value{}
	}
	switch n.op {
	case '+':
		return value{kind: vNum, n: x + y}
	case '-':
		return value{kind: vNum, n: x - y}
	case '*':
		return value{kind: vNum, n: x * y}
	default:
		if y == 0 {
			return value{}
		}
		return value{kind: vNum, n: x / y}
	}
}

// Three-valued logic (SQL): false AND unknown is false, true OR unknown is true.
type andNode struct{ l, r node }

func (n *andNode) eval(m *router.Message) value {
	a := n.l.eval(m)
	if a.kind == vBool && !a.b {
		return a
	}
	b := n.r.eval(m)
	if b.kind == vBool && !b.b {
		return b
	}
	if a.kind != vBool || b.kind != vBool {
		return value{}
	}
	return value{kind: vBool, b: true}
}

type orNode struct{ l, r node }

func (n *orNode) eval(m *router.Message) value {
	a := n.l.eval(m)
	if a.kind == vBool && a.b {
		return a
	}
	b := n.r.eval(m)
	if b.kind == vBool && b.b {
		return b
	}
	if a.kind != vBool || b.kind != vBool {
		return value{}
	}
	return value{kind: vBool}
}

type notNode struct{ x node }

func (n *notNode) eval(m *router.Message) value {
	v := n.x.eval(m)
	if v.kind != vBool {
		return value{}
	}
	return value{kind: vBool, b: !v.b}
}

type isNullNode struct {
	x   node
	not bool
}

func (n *isNullNode) eval(m *router.Message) value {
	return value{kind: vBool, b: (n.x.eval(m).kind == vNull) != n.not}
}

// betweenNode is x BETWEEN lo AND hi, that is x >= lo AND x <= hi with x evaluated once: nested
// BETWEENs evaluating their operand twice would cost twice as much per level.
type betweenNode struct{ x, lo, hi node }

func (n *betweenNode) eval(m *router.Message) value {
	x := n.x.eval(m)
	a := compare(">=", x, n.lo.eval(m))
	if a.kind == vBool && !a.b {
		return a
	}
	b := compare("<=", x, n.hi.eval(m))
	if b.kind == vBool && !b.b {
		return b
	}
	if a.kind != vBool || b.kind != vBool {
		return value{}
	}
	return value{kind: vBool, b: true}
}

type inNode struct {
	x    node
	list []value
}

func (n *inNode) eval(m *router.Message) value {
	v := n.x.eval(m)
	if v.kind == vNull {
		return value{}
	}
	for _, l := range n.list {
		if r := compare("=", v, l); r.kind == vBool && r.b {
			return r
		}
	}
	return value{kind: vBool}
}

type likeNode struct {
	x   node
	pat *likePattern
}

func (n *likeNode) eval(m *router.Message) value {
	v := n.x.eval(m)
	if v.kind != vStr {
		return value{}
	}
	return value{kind: vBool, b: n.pat.match(v.s)}
}
