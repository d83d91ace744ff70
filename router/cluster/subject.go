package cluster

import (
	"errors"
	"strings"

	"github.com/lyremq/lyre/router"
)

// Subjects are "lyre.<vhost>.t.<level>.<level>...", every variable part encoded as one token.
const (
	subjectRoot = "lyre"
	topicMark   = "t" // room for other namespaces ("q" for queues) later
)

var errBadSubject = errors.New("cluster: malformed subject")

// safeByte reports whether b may appear unescaped in a token. Everything NATS treats specially ('.',
// '*', '>', whitespace) and every non-ASCII byte is escaped, so a token is plain printable ASCII.
func safeByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_'
}

const hexDigits = "0123456789ABCDEF"

// appendToken appends level encoded as one NATS token: safe bytes as they are, any other byte as '~'
// and two hex digits, and the empty level as a lone "~" (which no non-empty level encodes to). A level
// that is exactly "*" or ">" becomes "~2A"/"~3E", so a literal never turns into a wildcard.
func appendToken(dst []byte, level string) []byte {
	if level == "" {
		return append(dst, '~')
	}
	for i := 0; i < len(level); i++ {
		b := level[i]
		if safeByte(b) {
			dst = append(dst, b)
		} else {
			dst = append(dst, '~', hexDigits[b>>4], hexDigits[b&15])
		}
	}
	return dst
}

func unhex(b byte) (byte, bool) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', true
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

// decodeToken reverses appendToken; it refuses anything appendToken would not produce, so one level
// has exactly one token.
func decodeToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	if tok == "" {
		return "", errBadSubject
	}
	var sb strings.Builder
	sb.Grow(len(tok))
	for i := 0; i < len(tok); i++ {
		b := tok[i]
		if safeByte(b) {
			sb.WriteByte(b)
			continue
		}
		if b != '~' || i+2 >= len(tok) {
			return "", errBadSubject
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		v := hi<<4 | lo
		if !ok1 || !ok2 || safeByte(v) {
			return "", errBadSubject
		}
		sb.WriteByte(v)
		i += 2
	}
	return sb.String(), nil
}

// topicPrefix is the subject prefix of vhost's topics, ending with '.'.
func topicPrefix(vhost string) string {
	b := appendToken([]byte(subjectRoot+"."), vhost)
	return string(append(b, "."+topicMark+"."...))
}

// topicSubject returns the subject a message on path is published on.
func topicSubject(prefix string, path []string) string {
	n := len(prefix)
	for _, l := range path {
		n += len(l) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	for i, l := range path {
		if i > 0 {
			b = append(b, '.')
		}
		b = appendToken(b, l)
	}
	return string(b)
}

// parseTopicSubject returns the vhost token and the path of a topic subject.
func parseTopicSubject(subj string) (vhostTok string, path []string, err error) {
	rest, ok := strings.CutPrefix(subj, subjectRoot+".")
	if !ok {
		return "", nil, errBadSubject
	}
	vhostTok, rest, ok = strings.Cut(rest, ".")
	if !ok {
		return "", nil, errBadSubject
	}
	rest, ok = strings.CutPrefix(rest, topicMark+".")
	if !ok {
		return "", nil, errBadSubject
	}
	toks := strings.Split(rest, ".")
	path = make([]string, len(toks))
	for i, t := range toks {
		if path[i], err = decodeToken(t); err != nil {
			return "", nil, err
		}
	}
	return vhostTok, path, nil
}

// filterSubjects returns the NATS subjects whose union covers every topic f matches. It may cover more
// (a regex level becomes '*'): the local router matches what arrives against its own trie, so a wider
// subscription costs traffic, never a wrong delivery. A many-level wildcard after at least one level
// also matches the parent topic ("a/#" matches "a"), which NATS's '>' does not, so it takes two
// subjects.
func filterSubjects(prefix string, f router.Filter) []string {
	b := []byte(prefix)
	for i, s := range f.Segs {
		if i > 0 {
			b = append(b, '.')
		}
		switch s.Kind {
		case router.SegLiteral:
			b = appendToken(b, s.Text)
		case router.SegOne, router.SegRegex:
			b = append(b, '*')
		case router.SegMany:
			if i == 0 {
				return []string{string(append(b, '>'))}
			}
			parent := string(b[:len(b)-1])
			return []string{parent, string(append(b, '>'))}
		}
	}
	return []string{string(b)}
}
