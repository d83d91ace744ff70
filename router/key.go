package router

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// AppendKey appends the key of d to dst: the kind, then every path segment prefixed with its length. A
// segment may hold any byte (a STOMP name can carry a NUL as %00), so only a length-prefixed encoding is
// unambiguous. It is the one key for every map, cache and store record keyed by destination.
func AppendKey(dst []byte, d Destination) []byte {
	return appendKey(dst, d.Kind, d.Path)
}

// Key returns d's key as a string (see AppendKey).
func Key(d Destination) string {
	var kb [128]byte
	return string(AppendKey(kb[:0], d))
}

func appendKey(dst []byte, k Kind, path []string) []byte {
	dst = append(dst, byte(k))
	for _, s := range path {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// appendLiteralKey appends the key of the destination a literal filter names, without building it.
func appendLiteralKey(dst []byte, f *Filter) []byte {
	dst = append(dst, byte(f.Kind))
	for _, s := range f.Segs {
		dst = binary.AppendUvarint(dst, uint64(len(s.Text)))
		dst = append(dst, s.Text...)
	}
	return dst
}

// ParseKey is the inverse of Key. It reports false for a string Key cannot have produced.
func ParseKey(key string) (Destination, bool) {
	if len(key) == 0 || Kind(key[0]) > TempTopic {
		return Destination{}, false
	}
	d := Destination{Kind: Kind(key[0])}
	rest := key[1:]
	for len(rest) > 0 {
		n, w := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
		if w <= 0 || n > uint64(len(rest)-w) {
			return Destination{}, false
		}
		d.Path = append(d.Path, rest[w:w+int(n)])
		rest = rest[w+int(n):]
	}
	return d, true
}

// AppendFilterKey appends the key of f: the kind, then for every segment its SegKind and its text,
// length-prefixed. It is how a filter is stored (protocol-neutral: no grammar is needed to read it back)
// and how front-ends index subscriptions by filter.
func AppendFilterKey(dst []byte, f Filter) []byte {
	dst = append(dst, byte(f.Kind))
	for _, s := range f.Segs {
		dst = append(dst, byte(s.Kind))
		dst = binary.AppendUvarint(dst, uint64(len(s.Text)))
		dst = append(dst, s.Text...)
	}
	return dst
}

// FilterKey returns f's key as a string (see AppendFilterKey).
func FilterKey(f Filter) string {
	var kb [128]byte
	return string(AppendFilterKey(kb[:0], f))
}

// ParseFilterKey is the inverse of FilterKey; regex segments are compiled and the filter is checked as
// Subscribe checks it.
func ParseFilterKey(key string) (Filter, error) {
	bad := func(why string) (Filter, error) {
		return Filter{}, fmt.Errorf("%w: filter key: %s", ErrInvalidFilter, why)
	}
	if len(key) == 0 || Kind(key[0]) > TempTopic {
		return bad("unknown kind")
	}
	f := Filter{Kind: Kind(key[0])}
	rest := key[1:]
	for len(rest) > 0 {
		sk := SegKind(rest[0])
		if sk > SegRegex {
			return bad("unknown segment kind")
		}
		rest = rest[1:]
		n, w := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
		if w <= 0 || n > uint64(len(rest)-w) {
			return bad("truncated")
		}
		f.Segs = append(f.Segs, Seg{Kind: sk, Text: strings.Clone(rest[w : w+int(n)])})
		rest = rest[w+int(n):]
	}
	if err := checkFilter(&f); err != nil {
		return Filter{}, err
	}
	return f, nil
}

// MatchSegments reports whether filter segments segs match path, as a subscription would: '+'/'*' match
// one level (an empty one too), '#'/'**' zero or more levels ("a/#" matches "a"), a regex segment one
// level by its compiled Re; a wildcard or regex at the first level does not match a first level starting
// with '$' [MQTT-4.7.2-1]. It is the one single-filter matcher: access rules, policies and front-ends use
// it; the trie and the retained store walk their trees by the same rules.
func MatchSegments(segs []Seg, path []string) bool {
	dollar := len(path) > 0 && strings.HasPrefix(path[0], "$")
	for i, s := range segs {
		if i == 0 && dollar && s.Kind != SegLiteral {
			return false
		}
		if s.Kind == SegMany {
			return true
		}
		if i >= len(path) {
			return false
		}
		switch s.Kind {
		case SegLiteral:
			if path[i] != s.Text {
				return false
			}
		case SegRegex:
			if s.Re == nil || !s.Re.MatchString(path[i]) {
				return false
			}
		}
	}
	return len(segs) == len(path)
}

// Match reports whether f matches path (see MatchSegments); the kind is not compared.
func (f *Filter) Match(path []string) bool { return MatchSegments(f.Segs, path) }

// Matches reports whether f matches destination d: the same kind and a matching path.
func (f *Filter) Matches(d Destination) bool {
	return f.Kind == d.Kind && MatchSegments(f.Segs, d.Path)
}
