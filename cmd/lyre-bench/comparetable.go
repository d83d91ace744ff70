package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// cell is one broker's figure in a row: the median of its runs, with the metric's note.
type cell struct {
	text   string
	median float64 // NaN when there is none
	runs   []outcome
}

// cell returns tg's figure for metric m of scenario sc: "—" when tg does not run sc, "error" when a run
// failed (the notes say why), else the median, its note, and the rate achieved when a paced scenario
// saturated the broker.
func (cmp *comparison) cell(sc *scenario, m *metric, tg *target) cell {
	c := cell{text: "—", median: nan()}
	if !tg.supports(sc) {
		return c
	}
	runs := cmp.results[sc.id][tg.name]
	if len(runs) == 0 {
		return c
	}
	c.runs = runs
	vs := make([]float64, 0, len(runs))
	for i := range runs {
		if runs[i].Interrupted {
			c.text = "interrupted"
			return c
		}
		if runs[i].Err != "" {
			c.text = "error"
			return c
		}
		vs = append(vs, m.value(&runs[i]))
	}
	c.median = median(vs)
	c.text = m.format(c.median)
	if m.note != nil {
		c.text += m.note(runs)
	}
	if sc.offered > 0 {
		rates := make([]float64, len(runs))
		for i := range runs {
			rates[i] = runs[i].Rate
		}
		if got := median(rates); saturated(sc.offered, got, totalLost(runs)) {
			c.text += " (achieved " + fmtCount(got) + ")"
		}
	}
	return c
}

// printTable prints the header, the table and the notes.
func (cmp *comparison) printTable(w io.Writer) {
	cc := cmp.cc
	fmt.Fprintln(w, cmp.headline())
	fmt.Fprintln(w)
	if cmp.stopped {
		fmt.Fprintln(w, "INTERRUPTED: partial results.")
		fmt.Fprintln(w)
	}
	t := &mdTable{header: []string{"run"}}
	for _, tg := range cmp.targets {
		h := tg.name
		if tg.missing != "" {
			h += " (" + tg.missing + ")"
		}
		t.header = append(t.header, h)
	}
	t.header = append(t.header, "ratio", "goal")
	for _, sc := range cc.selected() {
		for i := range sc.metrics {
			m := &sc.metrics[i]
			row := []string{m.label}
			var cells []cell
			for _, tg := range cmp.targets {
				c := cmp.cell(sc, m, tg)
				cells = append(cells, c)
				row = append(row, c.text)
			}
			medians := make([]float64, len(cells))
			for i, c := range cells {
				medians[i] = c.median
			}
			t.add(append(row, fmtRatio(cells[0].median, cells[1].median), m.judge(medians, cells[0].runs))...)
		}
	}
	t.write(w)
	fmt.Fprintln(w)
	for _, n := range cmp.notes(false) {
		fmt.Fprintln(w, "- "+n)
	}
}

// headline says what was compared, how.
func (cmp *comparison) headline() string {
	var names []string
	for _, tg := range cmp.targets {
		switch {
		case tg.missing != "":
		case tg.version != "":
			names = append(names, tg.name+" "+tg.version)
		default:
			names = append(names, tg.name)
		}
	}
	runs := "one run per broker"
	if cmp.cc.reps > 1 {
		runs = fmt.Sprintf("median of %d runs, the brokers taking turns", cmp.cc.reps)
	}
	return fmt.Sprintf("%s on %d CPUs (%s/%s); %d B payloads, %v per run, %s.",
		strings.Join(names, " vs "), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cmp.cc.size, cmp.cc.duration, runs)
}

// notes are the lines under the table (curve: under the curve's): how the brokers were set up, what the
// figures mean, what failed.
func (cmp *comparison) notes(curve bool) []string {
	var notes []string
	if !curve {
		notes = append(notes, "ratio is Lyre ÷ mosquitto: above 1 is better for rates, below 1 for latency and memory.")
	}
	notes = append(notes, "Lyre: everything in memory (no store block), default limits; MQTT on an MQTT-only port, STOMP on an autodetecting one. "+
		"mosquitto: max_queued_messages 0 and persistence false, so that it queues and delivers every message, as Lyre does "+
		"(by default it drops QoS 1 and 2 messages beyond 1000 queued for a client); max_inflight_messages 0, as at its "+
		"default of 20 it disconnects a QoS 2 publisher with more in flight (lyre-bench keeps 64).")
	if !curve {
		notes = append(notes, "Latency rows: each publisher paced to its share of the offered rate; \"achieved\" marks a broker that delivered "+
			"less than 95% of it, or lost messages. Connection rates: "+strconv.Itoa(cmp.cc.conns)+" loops each dialling, CONNECT, "+
			"CONNACK, DISCONNECT, close; p99 from dial to CONNACK. TLS: ECDSA P-256, a full handshake each time.")
		var hashes []string
		for _, tg := range cmp.targets {
			if tg.proc != nil && tg.proc.hash != "" {
				hashes = append(hashes, tg.name+": "+tg.proc.hash)
			}
		}
		if len(hashes) > 0 {
			notes = append(notes, "Password hashes (made by lyre passwd and mosquitto_passwd): "+strings.Join(hashes, "; ")+".")
		}
	}
	notes = append(notes, "Reproduce: go run ./cmd/lyre-bench compare"+map[bool]string{true: " -curve", false: ""}[curve]+
		" (-v prints each run's lyre-bench flags).")
	for _, tg := range cmp.targets {
		if tg.missing != "" {
			notes = append(notes, fmt.Sprintf("%s %s: Lyre only.", tg.name, tg.missing))
		} else if tg.proc != nil && !tg.auth && !curve {
			notes = append(notes, fmt.Sprintf("%s: no password file (%s missing), so no password row.", tg.name, cmp.cc.mosquittoPasswd))
		}
	}
	for _, f := range cmp.failures {
		notes = append(notes, "error: "+f)
	}
	return notes
}

func nan() float64 { return median(nil) }

// judge returns the goal cell of a row: the goal, marked met or not from every column's median (Lyre's
// first, NaN where a broker did not run) and Lyre's runs; unmarked when Lyre has no figure, and "no peer"
// when the brokers the goal compares with did not run.
func (m *metric) judge(medians []float64, runs []outcome) string {
	goal := m.goal
	switch {
	case goal == "" || m.met == nil || math.IsNaN(medians[0]):
	case m.peersFrom > 0 && !slices.ContainsFunc(medians[min(m.peersFrom, len(medians)):], func(v float64) bool { return !math.IsNaN(v) }):
		goal += " (no peer in this run)"
	case m.met(medians, runs):
		goal += " ✓"
	default:
		goal += " ✗"
	}
	return goal
}
