package conf

import (
	"fmt"
	"regexp"
	"strings"
)

// CheckPattern reports why p is not a destination pattern in the STOMP default grammar without prefix
// ("orders.**", "devices.*.temp", "a.{v[0-9]+}"), the syntax of access rule ids and of queue and topic
// policy names. It mirrors the router's filter rules so a mistake shows at load time with its position:
// segments are separated by "."; "*" (one level) and "**" (any number of levels, last only) occupy a whole
// segment; "{re}" is one level matched by an RE2 expression; a literal segment is not empty and escapes
// special bytes as %XX. With placeholders, "%u" and "%c" (user name and client id) may appear in literals.
func CheckPattern(p string, placeholders bool) error {
	if p == "" {
		return fmt.Errorf("empty pattern")
	}
	segs, err := splitPattern(p)
	if err != nil {
		return err
	}
	for i, s := range segs {
		switch {
		case s == "*":
		case s == "**":
			if i != len(segs)-1 {
				return fmt.Errorf("\"**\" must be the last level")
			}
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && len(s) >= 2:
			if _, err := regexp.Compile("^(?:" + s[1:len(s)-1] + ")$"); err != nil {
				return fmt.Errorf("level %q: %v", s, err)
			}
		case s == "":
			return fmt.Errorf("empty level (two dots in a row, or a dot at an end)")
		case strings.Contains(s, "*"):
			return fmt.Errorf("level %q: wildcard \"*\" must occupy a whole level", s)
		case strings.ContainsAny(s, "{}"):
			return fmt.Errorf("level %q: a regex level must be wholly enclosed in { }", s)
		default:
			if err := checkEscapes(s, placeholders); err != nil {
				return fmt.Errorf("level %q: %v", s, err)
			}
		}
	}
	return nil
}

// splitPattern splits by "." except inside a "{...}" level, which may hold dots.
func splitPattern(p string) ([]string, error) {
	var out []string
	for {
		if strings.HasPrefix(p, "{") {
			end := -1
			for i := 1; ; {
				j := strings.IndexByte(p[i:], '}')
				if j < 0 {
					break
				}
				e := i + j + 1
				if e == len(p) || p[e] == '.' {
					end = e
					break
				}
				i = e
			}
			if end < 0 {
				return nil, fmt.Errorf("unterminated regex level %q", p)
			}
			out = append(out, p[:end])
			if end == len(p) {
				return out, nil
			}
			p = p[end+1:]
			continue
		}
		i := strings.IndexByte(p, '.')
		if i < 0 {
			return append(out, p), nil
		}
		out = append(out, p[:i])
		p = p[i+1:]
	}
}

func checkEscapes(s string, placeholders bool) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if placeholders && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'c') {
			i++
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			if placeholders {
				return fmt.Errorf("'%%' must start %%XX, %%u or %%c")
			}
			return fmt.Errorf("'%%' must start an escape %%XX")
		}
		i += 2
	}
	return nil
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
