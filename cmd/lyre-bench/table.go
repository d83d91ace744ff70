package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// saturationShare is the share of the offered rate a broker must deliver, without loss, to count as keeping
// up: below it the broker is saturated and its latency is that of a growing backlog.
const saturationShare = 0.95

// saturated applies the saturation rule to a run offered msg/s: it achieved less than saturationShare of
// that, or lost messages.
func saturated(offered, achieved float64, lost uint64) bool {
	return lost > 0 || achieved < saturationShare*offered
}

// median returns the median of vs (the mean of the middle two for an even count), or NaN for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// fmtCount formats a rate or count to three significant digits with k or M: 950, 9.5, 12.3k, 184k, 1.23M.
func fmtCount(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "—"
	case a >= 999.5e3:
		return sig3(v/1e6) + "M"
	case a >= 999.5:
		return sig3(v/1e3) + "k"
	default:
		return sig3(v)
	}
}

// sig3 formats v with three significant digits, or as an integer from 100 on.
func sig3(v float64) string {
	switch a := math.Abs(v); {
	case a >= 99.95:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 9.995:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// fmtKiB formats a memory figure in KiB.
func fmtKiB(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + " KiB" }

// fmtRatio formats a ÷ b to two decimals, or two significant digits below 0.1, or "—" when either is
// missing or b is zero.
func fmtRatio(a, b float64) string {
	switch r := a / b; {
	case math.IsNaN(a) || math.IsNaN(b) || b == 0:
		return "—"
	case r != 0 && math.Abs(r) < 0.1:
		return strconv.FormatFloat(r, 'g', 2, 64)
	default:
		return strconv.FormatFloat(r, 'f', 2, 64)
	}
}

// mdTable is a markdown table whose columns are padded to a common width, so that it reads as well in a
// terminal as rendered. Column 0 is left-aligned, the others right-aligned, as numbers are.
type mdTable struct {
	header []string
	rows   [][]string
}

func (t *mdTable) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *mdTable) write(w io.Writer) {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c), 3)
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i := range width {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i == 0 {
				fmt.Fprintf(&b, " %s%s |", c, pad)
			} else {
				fmt.Fprintf(&b, " %s%s |", pad, c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.header)
	sep := make([]string, len(width))
	for i, n := range width {
		if i == 0 {
			sep[i] = strings.Repeat("-", n)
		} else {
			sep[i] = strings.Repeat("-", n-1) + ":"
		}
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
}
