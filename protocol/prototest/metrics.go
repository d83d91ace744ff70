package prototest

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics are the metric families of one Prometheus scrape, parsed by the Prometheus text parser.
type Metrics map[string]*dto.MetricFamily

// ScrapeStatus GETs url (http://host:port/metrics) with basic auth user:password (none when user is
// empty) and returns the status code, and the parsed metrics of a 200.
func ScrapeStatus(t testing.TB, url, user, password string) (int, Metrics) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("prototest: %v", err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("prototest: scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("prototest: scrape %s: Content-Type %q, want the text format", url, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("prototest: scrape %s: %v", url, err)
	}
	return resp.StatusCode, Metrics(fams)
}

// Scrape is ScrapeStatus for a scrape that must succeed.
func Scrape(t testing.TB, url, user, password string) Metrics {
	t.Helper()
	code, m := ScrapeStatus(t, url, user, password)
	if code != http.StatusOK {
		t.Fatalf("prototest: scrape %s as %q: status %d", url, user, code)
	}
	return m
}

// Value returns the value of the counter, gauge or untyped sample of family name whose labels include
// the given name/value pairs; ok is false when there is none, and it is an error (reported by Get) when
// several match.
func (ms Metrics) Value(name string, labels ...string) (v float64, ok bool, err error) {
	f := ms[name]
	if f == nil {
		return 0, false, nil
	}
	n := 0
	for _, m := range f.Metric {
		if !hasLabels(m, labels) {
			continue
		}
		n++
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Untyped != nil:
			v = m.Untyped.GetValue()
		default:
			return 0, false, fmt.Errorf("%s%v is a %s", name, labels, f.GetType())
		}
	}
	if n > 1 {
		return 0, false, fmt.Errorf("%s%v matches %d samples", name, labels, n)
	}
	return v, n == 1, nil
}

// Get is Value for a sample that must exist.
func (ms Metrics) Get(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok, err := ms.Value(name, labels...)
	if err != nil {
		t.Fatalf("prototest: %v", err)
	}
	if !ok {
		t.Fatalf("prototest: no sample %s%v", name, labels)
	}
	return v
}

// Sum adds up the samples of family name whose labels include the given pairs (0 when there is none).
func (ms Metrics) Sum(name string, labels ...string) float64 {
	var sum float64
	if f := ms[name]; f != nil {
		for _, m := range f.Metric {
			if hasLabels(m, labels) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			}
		}
	}
	return sum
}

// Histogram returns the histogram sample of family name whose labels include the given pairs, or nil.
func (ms Metrics) Histogram(name string, labels ...string) *dto.Histogram {
	if f := ms[name]; f != nil {
		for _, m := range f.Metric {
			if hasLabels(m, labels) && m.Histogram != nil {
				return m.Histogram
			}
		}
	}
	return nil
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool {
			return l.GetName() == pairs[i] && l.GetValue() == pairs[i+1]
		}) {
			return false
		}
	}
	return true
}
