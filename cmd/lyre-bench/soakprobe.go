package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// brokerSample is what the soak knows of the broker at one moment. A figure the probe cannot read is -1.
type brokerSample struct {
	AtSeconds  float64 `json:"at_seconds"`
	Phase      string  `json:"phase"`
	RSSKiB     int64   `json:"rss_kib"`
	HeapKiB    int64   `json:"heap_inuse_kib"` // go_memstats_heap_inuse_bytes: RSS less what Go has not yet returned
	Goroutines int64   `json:"goroutines"`
	Conns      int64   `json:"connections"` // lyre_connector_connections, summed over connectors
	OpenFDs    int64   `json:"open_fds"`
	BenchFDs   int64   `json:"bench_fds"` // lyre-bench's own open files (its storm connections)
}

// unsampled is a sample with no figure read yet.
func unsampled() brokerSample {
	return brokerSample{RSSKiB: -1, HeapKiB: -1, Goroutines: -1, Conns: -1, OpenFDs: -1, BenchFDs: -1}
}

// brokerProbe reads the broker's figures: RSS and open files from /proc when pid is set, goroutines,
// connections (and RSS and open files without a pid) from a Prometheus scrape of metricsURL when set.
// Credentials for the scrape go in the URL (http://user:pass@host:port/metrics).
type brokerProbe struct {
	pid        int
	metricsURL string
	client     *http.Client
}

func newBrokerProbe(pid int, metricsURL string) *brokerProbe {
	// One kept-alive connection for every scrape: the probe adds a steady one to the broker's count.
	return &brokerProbe{pid: pid, metricsURL: metricsURL,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}}
}

// close drops the scrape's kept-alive connection.
func (p *brokerProbe) close() { p.client.CloseIdleConnections() }

// sample reads the broker's figures now.
func (p *brokerProbe) sample(ctx context.Context) (brokerSample, error) {
	s := unsampled()
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.BenchFDs = int64(len(fds))
	}
	if p.metricsURL != "" {
		m, err := p.scrape(ctx)
		if err != nil {
			return s, err
		}
		s.Goroutines = int64OrMissing(m, "go_goroutines")
		s.Conns = int64OrMissing(m, "lyre_connector_connections")
		s.OpenFDs = int64OrMissing(m, "process_open_fds")
		if v, ok := m["process_resident_memory_bytes"]; ok {
			s.RSSKiB = int64(v / 1024)
		}
		if v, ok := m["go_memstats_heap_inuse_bytes"]; ok {
			s.HeapKiB = int64(v / 1024)
		}
	}
	if p.pid > 0 {
		rss, err := readRSS(p.pid)
		if err != nil {
			return s, err
		}
		s.RSSKiB = rss
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid)); err == nil {
			s.OpenFDs = int64(len(fds))
		}
	}
	return s, nil
}

func int64OrMissing(m map[string]float64, name string) int64 {
	if v, ok := m[name]; ok {
		return int64(v)
	}
	return -1
}

// scrape fetches the metrics and sums each metric's samples over their labels.
func (p *brokerProbe) scrape(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("lyre-bench: %s: %s", p.metricsURL, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format and returns each metric's value summed over its label
// sets (a counter or gauge per connector becomes the broker's total).
func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if j := strings.LastIndexByte(rest, '}'); j >= 0 {
			rest = rest[j+1:]
		}
		f := strings.Fields(rest) // value, and maybe a timestamp
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("lyre-bench: metrics line %q: %w", line, err)
		}
		m[name] += v
	}
	return m, sc.Err()
}

// describe renders the sampled figures for a progress line.
func (s brokerSample) describe() string {
	f := func(v int64) string {
		if v < 0 {
			return "-"
		}
		return strconv.FormatInt(v, 10)
	}
	mib := func(kib int64) string {
		if kib < 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
	}
	return fmt.Sprintf("rss %9s (heap %9s)  goroutines %6s  conns %6s  fds %6s (bench %6s)", mib(s.RSSKiB), mib(s.HeapKiB),
		f(s.Goroutines), f(s.Conns), f(s.OpenFDs), f(s.BenchFDs))
}
