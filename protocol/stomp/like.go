package stomp

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// maxLikeSegment bounds the runes of a LIKE segment holding '_' (see likeSeg), so that its shift-and
// state fits a fixed array on the stack: evaluation allocates nothing.
const maxLikeSegment = 64 * likeWords

// likeWords is the number of 64-bit words of a shift-and state.
const likeWords = 16

// likeTok is one element of a LIKE pattern: a literal rune, '_' (any one rune) or '%' (any run).
type likeTok struct {
	r    rune
	kind uint8 // 0 literal, 1 any one, 2 any run
}

// compileLike reads a LIKE pattern into tokens, undoing the escape character esc (-1 for none).
func compileLike(pat string, esc rune) []likeTok {
	var out []likeTok
	escaped := false
	for _, r := range pat {
		switch {
		case escaped:
			out = append(out, likeTok{r: r})
			escaped = false
		case r == esc:
			escaped = true
		case r == '_':
			out = append(out, likeTok{kind: 1})
		case r == '%':
			out = append(out, likeTok{kind: 2})
		default:
			out = append(out, likeTok{r: r})
		}
	}
	return out
}

// likePattern is a LIKE pattern compiled to match in time linear in the value (see the package doc):
// split at its '%', it is a list of segments of fixed length in runes. Without '%' the one segment must
// match the whole value; with, the first must match at the start, the last at the end, and each between
// at the leftmost place after the one before it. Leftmost is never worse than any other place (it
// leaves the most room for the rest), so no choice is ever undone: each byte of the value is looked at
// a bounded number of times, whatever the pattern, where a backtracking matcher retries a long segment
// at every position.
type likePattern struct {
	segs     []likeSeg
	floating bool // the pattern has a '%'
}

// likeSeg is one segment. One without '_' (nor U+FFFD, which also stands for an invalid byte of the
// value) is searched as bytes with strings.Index; one with '_' by a bit-parallel shift-and scan over the
// runes of the value: bit j of the state says the last j+1 runes match the segment's first j+1.
type likeSeg struct {
	toks  []likeTok
	isLit bool   // searched as bytes: lit holds it
	lit   string // the segment as UTF-8
	// Shift-and tables of a segment with '_': anyBits has the bits of its '_' positions, masks one row
	// of bits per literal rune of the segment, after a row of zeros for the runes it does not hold;
	// lits lists those runes sorted (row i+1 is lits[i]), ascii indexes the rows of ASCII runes.
	words   int
	anyBits []uint64
	lits    []rune
	masks   []uint64 // words per row
	ascii   *[128]uint16
}

// newLikePattern compiles tokens; a segment with '_' longer than maxLikeSegment runes is refused.
func newLikePattern(toks []likeTok) (*likePattern, bool) {
	p := &likePattern{}
	start := 0
	for i := 0; i <= len(toks); i++ {
		if i < len(toks) && toks[i].kind != 2 {
			continue
		}
		last := i == len(toks)
		p.floating = p.floating || !last
		seg := toks[start:i]
		start = i + 1
		// Empty segments between two '%' match anywhere; the first and last anchor, so they stay.
		if len(seg) == 0 && len(p.segs) > 0 && !last {
			continue
		}
		s, ok := newLikeSeg(seg)
		if !ok {
			return nil, false
		}
		p.segs = append(p.segs, s)
	}
	return p, true
}

func newLikeSeg(toks []likeTok) (likeSeg, bool) {
	s := likeSeg{toks: toks}
	var b strings.Builder
	for _, t := range toks {
		if t.kind != 0 || t.r == utf8.RuneError {
			return s.shiftAnd()
		}
		b.WriteRune(t.r)
	}
	s.lit, s.isLit = b.String(), true
	return s, true
}

// shiftAnd builds the tables of a segment with '_'.
func (s likeSeg) shiftAnd() (likeSeg, bool) {
	if len(s.toks) > maxLikeSegment {
		return s, false
	}
	s.words = (len(s.toks) + 63) / 64
	s.anyBits = make([]uint64, s.words)
	for _, t := range s.toks {
		if t.kind == 0 {
			s.lits = append(s.lits, t.r)
		}
	}
	slices.Sort(s.lits)
	s.lits = slices.Compact(s.lits)
	s.masks = make([]uint64, (len(s.lits)+1)*s.words)
	s.ascii = new([128]uint16)
	for i, r := range s.lits {
		if r < 128 {
			s.ascii[r] = uint16(i + 1)
		}
	}
	for j, t := range s.toks {
		w, bit := j/64, uint64(1)<<(j%64)
		if t.kind != 0 {
			s.anyBits[w] |= bit
			continue
		}
		i, _ := slices.BinarySearch(s.lits, t.r)
		s.masks[(i+1)*s.words+w] |= bit
	}
	return s, true
}

// match reports whether the whole of v matches the pattern.
func (p *likePattern) match(v string) bool {
	first := &p.segs[0]
	pos, ok := first.matchAt(v, 0)
	if !ok {
		return false
	}
	if !p.floating {
		return pos == len(v)
	}
	last := len(p.segs) - 1
	for i := 1; i < last; i++ {
		if pos, ok = p.segs[i].find(v, pos); !ok {
			return false
		}
	}
	return p.segs[last].matchEnd(v, pos)
}

// matchAt matches the segment at byte pos of v and returns where it ends.
func (s *likeSeg) matchAt(v string, pos int) (int, bool) {
	if s.isLit {
		return pos + len(s.lit), strings.HasPrefix(v[pos:], s.lit)
	}
	for _, t := range s.toks {
		if pos >= len(v) {
			return pos, false
		}
		r, size := utf8.DecodeRuneInString(v[pos:])
		if t.kind == 0 && t.r != r {
			return pos, false
		}
		pos += size
	}
	return pos, true
}

// matchEnd reports whether the segment matches the end of v, at or after byte pos.
func (s *likeSeg) matchEnd(v string, pos int) bool {
	if s.isLit {
		// A valid UTF-8 literal found in v starts where a rune of v starts: no rune is cut.
		return len(v)-len(s.lit) >= pos && strings.HasSuffix(v, s.lit)
	}
	// The segment's runes are the last len(toks) runes of v, counted forwards as DecodeRune reads them.
	skip := utf8.RuneCountInString(v[pos:]) - len(s.toks)
	if skip < 0 {
		return false
	}
	for ; skip > 0; skip-- {
		_, size := utf8.DecodeRuneInString(v[pos:])
		pos += size
	}
	end, ok := s.matchAt(v, pos)
	return ok && end == len(v)
}

// find returns the end of the leftmost match of the segment in v at or after byte pos.
func (s *likeSeg) find(v string, pos int) (int, bool) {
	if s.isLit {
		i := strings.Index(v[pos:], s.lit)
		return pos + i + len(s.lit), i >= 0
	}
	var state [likeWords]uint64
	st, anyBits := state[:s.words], s.anyBits[:s.words]
	top, topBit := s.words-1, uint64(1)<<((len(s.toks)-1)%64)
	for pos < len(v) {
		r, size := utf8.DecodeRuneInString(v[pos:])
		pos += size
		row := s.row(r)
		row = row[:len(st)]
		carry := uint64(1) // a match may start at every rune
		for w := range st {
			next := (st[w]<<1 | carry) & (anyBits[w] | row[w])
			carry = st[w] >> 63
			st[w] = next
		}
		// The earliest end is the leftmost start: every match has the same number of runes.
		if st[top]&topBit != 0 {
			return pos, true
		}
	}
	return pos, false
}

// row returns the bits of rune r in the segment: zeros when the segment does not hold it.
func (s *likeSeg) row(r rune) []uint64 {
	i := 0
	if r >= 0 && r < 128 {
		i = int(s.ascii[r])
	} else if j, found := slices.BinarySearch(s.lits, r); found {
		i = j + 1
	}
	return s.masks[i*s.words : (i+1)*s.words]
}
