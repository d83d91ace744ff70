package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserConfig is one autodetecting connector serving raw MQTT, raw STOMP and HTTP (WebSocket) on one port.
// The page comes from another origin (the httptest server), which allowed_origins names (the %q).
const browserConfig = `
connector "auto" {
  bind   = "tcp://127.0.0.1:0"
  detect = ["mqtt", "stomp", "http"]
  http { allowed_origins = [%q] }
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
}
`

// chromiumBinary returns the path of a Chromium (or Chrome) executable on PATH, or "".
func chromiumBinary() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// requireChromium returns the Chromium to drive. Without one the test skips, naming the package to install,
// unless CI is set: there it fails (.ci/run installs the package).
func requireChromium(t *testing.T) string {
	t.Helper()
	bin := chromiumBinary()
	if bin == "" {
		const msg = "no chromium binary on PATH: install Debian's chromium package (apt-get install chromium); .ci/run does"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// browserOptions start a headless Chromium bin for the browser tests.
func browserOptions(bin string, more ...chromedp.ExecAllocatorOption) []chromedp.ExecAllocatorOption {
	return append(append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		// Chromium refuses to run as root with its sandbox; test machines and CI containers often are root.
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
	), more...)
}

// browserResult is window.lyreResult, the verdict of testdata/browser/test.js.
type browserResult struct {
	Done   bool              `json:"done"`
	OK     bool              `json:"ok"`
	Checks map[string]string `json:"checks"`
	Error  string            `json:"error"`
	Log    []string          `json:"log"`
}

// TestBrowser is issue 11's real-browser acceptance: headless Chromium loads testdata/browser/index.html, whose
// MQTT.js (3.1.1 and 5) and @stomp/stompjs clients connect over ws:// to a broker's autodetecting port and
// send a message each way between the protocols, MQTT 5 user properties arriving as STOMP headers and back.
// It needs Debian's chromium package; without it the test skips, unless CI is set (.ci/run installs it).
func TestBrowser(t *testing.T) {
	bin := requireChromium(t)
	page := httptest.NewServer(http.FileServer(http.Dir("testdata/browser")))
	defer page.Close()
	_, addr := startBroker(t, fmt.Sprintf(browserConfig, page.URL))

	res := runBrowserPage(t, bin, page.URL+"/index.html?broker="+url.QueryEscape(addr))
	t.Logf("page log:\n%s", strings.Join(res.Log, "\n"))
	for _, name := range []string{"stomp_version", "mqtt5_to_stomp", "mqtt311_to_stomp", "stomp_to_mqtt5", "stomp_to_mqtt311"} {
		if got, ok := res.Checks[name]; !ok {
			t.Errorf("%s: not checked", name)
		} else if got != "ok" {
			t.Errorf("%s: %s", name, got)
		}
	}
	if res.Error != "" || !res.OK {
		t.Errorf("page: ok=%v, error %q", res.OK, res.Error)
	}
}

// runBrowserPage loads pageURL in a headless Chromium and returns the page's window.lyreResult once it says
// done. Everything is bounded: the browser's start, the page's run and its shutdown.
func runBrowserPage(t *testing.T, bin, pageURL string) browserResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	actx, acancel := chromedp.NewExecAllocator(ctx, browserOptions(bin)...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()

	if err := chromedp.Do(bctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("browser: load %s: %v", pageURL, err)
	}
	// test.js bounds each of its steps (10 s); this bounds the whole page. The poll returns the result once
	// it says done.
	res, err := chromedp.Run(bctx, chromedp.Poll[browserResult](
		`window.lyreResult && window.lyreResult.done && window.lyreResult`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		// Read whatever the page got to before giving up, with a fresh bound.
		rctx, rcancel := context.WithTimeout(bctx, 5*time.Second)
		defer rcancel()
		if partial, err := chromedp.Run(rctx, chromedp.Evaluate[browserResult](`window.lyreResult`)); err == nil {
			t.Logf("page log so far:\n%s", strings.Join(partial.Log, "\n"))
		}
		t.Fatalf("browser: waiting for the page's result: %v", err)
	}
	// Close the browser and wait for its process before the broker shuts down (the test's cleanup).
	if err := chromedp.Cancel(bctx); err != nil {
		t.Logf("closing chromium: %v", err)
	}
	return res
}
