package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
)

// curveLevels are the first offered rates of -curve, in msg/s; after the last, each level adds curveStep.
var curveLevels = []float64{5e3, 10e3, 20e3, 40e3, 80e3, 120e3, 160e3}

const curveStep = 40e3

// curveLevel returns the offered rate of level i.
func curveLevel(i int) float64 {
	if i < len(curveLevels) {
		return curveLevels[i]
	}
	return curveLevels[len(curveLevels)-1] + float64(i-len(curveLevels)+1)*curveStep
}

// curvePoint is one broker's figures at one offered rate.
type curvePoint struct {
	ran            bool
	err            bool
	saturated      bool
	achieved       float64
	p50, p99, p999 float64
}

// curveScenario is the fan-in 8→1 at offered msg/s, the publishers paced to an eighth each.
func (cc *compareConfig) curveScenario(offered float64) *scenario {
	name := fmt.Sprintf("MQTT QoS %d fan-in 8→1 at %s msg/s", cc.curveQoS, fmtCount(offered))
	lat := func(f func(o *outcome) float64) metric { return metric{value: f, format: fmtUs} }
	return &scenario{id: "curve", name: name, kind: kindBench, mqtt: true, offered: offered,
		args: []string{"-mode", "fanin", "-qos", strconv.Itoa(cc.curveQoS), "-rate", strconv.FormatFloat(offered/8, 'f', -1, 64)},
		metrics: []metric{{value: rateOf, format: fmtCount},
			lat(func(o *outcome) float64 { return o.P50 }),
			lat(func(o *outcome) float64 { return o.P99 }),
			lat(func(o *outcome) float64 { return o.P999 })}}
}

// runCurve measures latency against offered load: the levels from 5k msg/s up, reps runs per broker at
// each, the brokers taking turns, until every broker has saturated (see saturated) or -curve-max. A broker
// that saturated at one level is not run at the next. It prints a table ready for the README.
func (cmp *comparison) runCurve(ctx context.Context, w io.Writer) {
	var tgs []*target
	for _, tg := range cmp.targets {
		if tg.supports(&scenario{mqtt: true}) && tg.peer == nil {
			tgs = append(tgs, tg)
		}
	}
	var levels []float64
	var points []map[string]curvePoint
	done := map[string]bool{} // saturated, or failed
	for i := 0; curveLevel(i) <= float64(cmp.cc.curveMax) && len(done) < len(tgs) && ctx.Err() == nil; i++ {
		offered := curveLevel(i)
		sc := cmp.cc.curveScenario(offered)
		delete(cmp.results, sc.id)
		for rep := range cmp.cc.reps {
			for j := range tgs {
				tg := tgs[(j+rep)%len(tgs)]
				if done[tg.name] || ctx.Err() != nil {
					continue
				}
				cmp.record(sc, tg, rep, cmp.runOnce(ctx, sc, tg))
			}
		}
		row := map[string]curvePoint{}
		for _, tg := range tgs {
			runs := cmp.results[sc.id][tg.name]
			if done[tg.name] || len(runs) < cmp.cc.reps {
				continue // not run, or interrupted
			}
			p := curvePointOf(offered, runs)
			row[tg.name] = p
			if p.saturated || p.err {
				done[tg.name] = true
			}
		}
		levels, points = append(levels, offered), append(points, row)
	}
	cmp.stopped = cmp.stopped || ctx.Err() != nil
	cmp.printCurve(w, tgs, levels, points)
}

// curvePointOf takes the medians of one broker's runs at offered msg/s and applies the saturation rule.
func curvePointOf(offered float64, runs []outcome) curvePoint {
	p := curvePoint{ran: true}
	var rate, p50, p99, p999 []float64
	for _, o := range runs {
		if o.Err != "" {
			p.err = true
		}
		rate, p50, p99, p999 = append(rate, o.Rate), append(p50, o.P50), append(p99, o.P99), append(p999, o.P999)
	}
	p.achieved, p.p50, p.p99, p.p999 = median(rate), median(p50), median(p99), median(p999)
	p.saturated = saturated(offered, p.achieved, totalLost(runs))
	return p
}

func (cmp *comparison) printCurve(w io.Writer, tgs []*target, levels []float64, points []map[string]curvePoint) {
	fmt.Fprintf(w, "Latency against offered load, MQTT QoS %d fan-in 8→1: %s\n\n", cmp.cc.curveQoS, cmp.headline())
	if cmp.stopped {
		fmt.Fprintf(w, "INTERRUPTED: partial results.\n\n")
	}
	t := &mdTable{header: []string{"offered msg/s"}}
	for _, tg := range tgs {
		t.header = append(t.header, tg.name+" achieved", tg.name+" p50", tg.name+" p99", tg.name+" p99.9")
	}
	for i, offered := range levels {
		row := []string{fmtCount(offered)}
		for _, tg := range tgs {
			p := points[i][tg.name]
			switch {
			case !p.ran:
				row = append(row, "—", "—", "—", "—")
				continue
			case p.err:
				row = append(row, "error")
			case p.saturated:
				row = append(row, fmtCount(p.achieved)+" saturated")
			default:
				row = append(row, fmtCount(p.achieved))
			}
			row = append(row, fmtUs(p.p50), fmtUs(p.p99), fmtUs(p.p999))
		}
		t.add(row...)
	}
	t.write(w)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- A broker is saturated at the first offered rate at which it delivers less than %.0f%% of it, or loses messages; it is not run at higher rates.\n", saturationShare*100)
	for _, n := range cmp.notes(true) {
		fmt.Fprintln(w, "- "+n)
	}
}
