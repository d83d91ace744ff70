package conf

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Error is one configuration problem.
type Error struct {
	// Pos is "file:line:col" of the offending text, or just the file (or "<config>") for a config
	// built in Go, which has no source positions.
	Pos string
	Msg string
}

func (e Error) Error() string { return e.Pos + ": " + e.Msg }

// Errors lists every problem found in one configuration, in source order. Parse, Load and Validate
// return it (as a value) so a caller can print each problem on its own line or inspect them with errors.As.
type Errors []Error

// Error lists every problem, one per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is/As look at each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// problem is an Error with the source range it was found at, to order errors.
type problem struct {
	Error
	rng hcl.Range // zero for errors without a source position
}

// problems collects Errors while decoding and validating.
type problems []problem

// errors orders ps by file position (errors without one keep their relative order and come first)
// and returns them as Errors, or nil if there are none.
func (ps problems) errors() error {
	if len(ps) == 0 {
		return nil
	}
	slices.SortStableFunc(ps, func(a, b problem) int {
		return cmp.Or(
			cmp.Compare(a.rng.Filename, b.rng.Filename),
			cmp.Compare(a.rng.Start.Byte, b.rng.Start.Byte),
			cmp.Compare(a.rng.Start.Line, b.rng.Start.Line),
			cmp.Compare(a.rng.Start.Column, b.rng.Start.Column),
		)
	})
	es := make(Errors, len(ps))
	for i, p := range ps {
		es[i] = p.Error
	}
	return es
}

// posOf renders an hcl range's start as file:line:col.
func posOf(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// diagErrors turns HCL diagnostics (syntax errors) into Errors.
func diagErrors(diags hcl.Diagnostics, file string) problems {
	var es problems
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			es = append(es, problem{Error{Pos: posOf(*d.Subject), Msg: msg}, *d.Subject})
		} else {
			es = append(es, problem{Error: Error{Pos: file, Msg: msg}})
		}
	}
	return es
}
