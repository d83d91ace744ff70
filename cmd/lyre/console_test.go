package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap/zaptest"

	"github.com/lyremq/lyre/conf"
	"github.com/lyremq/lyre/protocol/prototest"
)

// consoleConfig is the default config's shape: one autodetecting loopback connector with management on,
// and an anonymous host, so the console needs no login.
const consoleConfig = `
connector "auto" {
  bind       = "tcp://127.0.0.1:0"
  detect     = ["mqtt", "stomp", "http"]
  management = true
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  anonymous  = true
}
`

// TestConsole is issue 12's real-browser acceptance of the web console: headless Chromium loads /console/
// from a running broker, shows an MQTT connection the test opened, disconnects it through the page, and
// publishes through the form to an MQTT subscriber. A screenshot is written under the test's temp dir, and
// any error the page logs (exceptions, console.error, CSP violations, failed requests) fails the test.
func TestConsole(t *testing.T) {
	bin := requireChromium(t)
	_, addr := startBroker(t, consoleConfig)
	api := &consoleAPI{t: t, base: "http://" + addr} // anonymous
	const devID, subID = "console-test-dev", "console-test-sub"
	lost := make(chan error, 1)
	dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(devID).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	if tok := dev.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect %s: %v", devID, tok.Error())
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	sub := mqttClient(t, addr, subID)
	msgs := mqttSubscribe(t, sub, "console/test/#", 1)

	b := newConsoleBrowser(t, bin)
	b.do("open the connections page", chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(api.base+"/console/#connections"))

	// The connection's row, then its Disconnect button and the confirmation dialog's.
	row := fmt.Sprintf(`//tr[td[normalize-space()=%q]]`, devID)
	b.do("wait for the connection's row", chromedp.WaitVisible(chromedp.Search(row)))
	b.screenshot("connections")
	b.do("disconnect it", chromedp.Click(chromedp.Search(row+`//button[normalize-space()="Disconnect"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")))
	select {
	case err := <-lost:
		t.Logf("paho %s lost its connection: %v", devID, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still connected 10 s after Disconnect was clicked", devID)
	}
	prototest.WaitForErr(t, 5*time.Second, func() error {
		if out := api.mustDo("GET", "/api/v1/vhosts/default/connections", "", http.StatusOK); strings.Contains(out, devID) {
			return fmt.Errorf("the API still lists %s: %s", devID, out)
		}
		return nil
	})
	// A poll may drop the row before the DELETE's answer comes back: wait for both.
	b.do("wait for the row to go", chromedp.WaitNotPresent(chromedp.Search(row)),
		chromedp.WaitVisible(chromedp.Search(`//*[@id="status"][contains(., "Disconnected `+devID+`")]`)))

	// Publish through the form. The body has a newline, markup and non-ASCII: it must arrive byte for byte.
	const body = "hello from the console\n<b>&amp;</b> ✓"
	b.do("fill the publish form", chromedp.Click(chromedp.Search(`//nav//a[normalize-space()="Publish"]`)),
		chromedp.WaitVisible(chromedp.ID("publish-form")),
		chromedp.SendKeys(chromedp.ID("pub-name"), "console.test.greeting"),
		chromedp.SendKeys(chromedp.ID("pub-body"), body),
		chromedp.SetValue(chromedp.ID("pub-qos"), "1"),
		chromedp.Click(chromedp.ID("pub-submit")))
	select {
	case m := <-msgs:
		if m.Topic() != "console/test/greeting" || string(m.Payload()) != body {
			t.Errorf("subscriber got %q on %s, want %q on console/test/greeting", m.Payload(), m.Topic(), body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no message on console/test/# 10 s after the form was submitted (status %q, alert %q)",
			b.text("#status"), b.text("#alert-text"))
	}
	b.do("wait for the publish confirmation",
		chromedp.WaitVisible(chromedp.Search(`//*[@id="status"][contains(., "Published to topic console.test.greeting")]`)))

	// The overview, with MQTT traffic going on: 50 msg/s in and out, which the page's rates must show.
	load := mqttClient(t, addr, "console-test-load")
	if tok := load.Subscribe("console/load", 0, func(paho.Client, paho.Message) {}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe console/load: %v", tok.Error())
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				load.Publish("console/load", 0, false, "tick")
			}
		}
	})
	b.do("open the overview", chromedp.Click(chromedp.Search(`//nav//a[normalize-space()="Overview"]`)),
		chromedp.WaitVisible(chromedp.ID("rates-graph")))
	// Four polls at least: a few points of the graph.
	rates, err := chromedp.Run(b.ctx, chromedp.Poll[[]string](`(() => {
		const r = [document.getElementById('ov-rate-in').textContent, document.getElementById('ov-rate-out').textContent];
		window.lyreRates = (window.lyreRates || 0) + (Number(r[0]) >= 10 && Number(r[1]) >= 10 ? 1 : 0);
		return window.lyreRates >= 2 && r;
	})()`, chromedp.WithPollingInterval(2*time.Second), chromedp.WithPollingTimeout(20*time.Second)))
	close(stop)
	wg.Wait()
	if err != nil {
		t.Errorf("overview: no message rates of 10/s or more in and out within 20 s: %v (in %q, out %q)", err,
			b.text("#ov-rate-in"), b.text("#ov-rate-out"))
	} else {
		t.Logf("overview: %s msg/s in, %s msg/s out", rates[0], rates[1])
	}
	b.screenshot("overview")
	b.checkCSP()
	b.close()
	b.checkConsole()
}

// consoleRightsConfig is a host with users only: "boss" in group admins may do anything, "viewer" may
// only monitor.
const consoleRightsConfig = `
connector "auto" {
  bind       = "tcp://127.0.0.1:0"
  detect     = ["mqtt", "stomp", "http"]
  management = true
}
virtual_host "default" {
  host_names = ["localhost", "127.0.0.1"]
  users_file = "users.hcl"
  access_rule {
    allow = ["admins"]
  }
  access_rule {
    allow  = ["viewer"]
    action = ["monitor"]
  }
}
`

// TestConsoleActions signs in through the console's own form on a host without anonymous access and
// takes every change the console offers through the page. A user with monitor only sees the queues but
// is refused a purge, and the page shows the API's 403 text. Signed in again as an admin: a dead-letter
// queue's messages are moved to another queue, which is purged, the emptied one deleted, a retained
// message and an offline MQTT session deleted; the API confirms each. The 401s before each login and the
// one 403 are the only errors the browser may log.
func TestConsoleActions(t *testing.T) {
	bin := requireChromium(t)
	const viewerPass, bossPass = "viewer-pass-ü", "boss-pass-ß"
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.hcl"), fmt.Sprintf(`
user "boss" {
  password = %q
  groups   = ["admins"]
}
user "viewer" {
  password = %q
}
`, hashFor(t, bossPass), hashFor(t, viewerPass)))
	path := filepath.Join(dir, "lyre.hcl")
	writeFile(t, path, consoleRightsConfig)
	cfg, err := conf.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	b, err := Start(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { shutdown(t, b) })
	addr := b.Addrs()["auto"].String()
	api := &consoleAPI{t: t, base: "http://" + addr, user: "boss", pass: bossPass}

	// What the pages will show: three dead letters, a queue to delete, a retained message, an offline
	// session.
	const dlq, work, old, lamp, sleeper = "console.dlq", "console.work", "console.old", "console.lamp", "console-sleeper"
	for i := range 3 {
		api.mustDo("POST", "/api/v1/vhosts/default/queues/"+dlq, fmt.Sprintf("dead letter %d", i), http.StatusCreated)
	}
	api.mustDo("POST", "/api/v1/vhosts/default/queues/"+old, "forgotten", http.StatusCreated)
	api.mustDo("POST", "/api/v1/vhosts/default/topics/"+lamp+"?retain=true", "on", http.StatusCreated)
	sc := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(sleeper).
		SetUsername("boss").SetPassword(bossPass).SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false))
	if tok := sc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect %s: %v", sleeper, tok.Error())
	}
	mqttSubscribe(t, sc, "console/sleeper/#", 1)
	sc.Disconnect(100)

	br := newConsoleBrowser(t, bin)
	signIn := func(user, pass string) {
		t.Helper()
		// The user field is empty: nobody signed in yet, or signed out.
		br.do("sign in as "+user, chromedp.WaitVisible(chromedp.ID("login-password")),
			chromedp.SendKeys(chromedp.ID("login-user"), user),
			chromedp.SendKeys(chromedp.ID("login-password"), pass+"\n"),
			chromedp.WaitNotVisible(chromedp.ID("login")),
			chromedp.WaitVisible(chromedp.Search(`//*[@id="who"][normalize-space()="signed in as `+user+`"]`)))
	}
	row := func(name string) string { return fmt.Sprintf(`//tr[td[normalize-space()=%q]]`, name) }
	// act clicks a row's button, fills the confirmation dialog's fields, confirms and waits for the status
	// line to say done.
	act := func(page, name, button, done string, fields ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		steps := []chromedp.Action[chromedp.Void]{
			chromedp.Click(chromedp.Search(`//nav//a[@href="#` + page + `"]`)),
			chromedp.WaitVisible(chromedp.Search(row(name))),
			chromedp.Click(chromedp.Search(row(name) + `//button[normalize-space()="` + button + `"]`)),
			chromedp.WaitVisible(chromedp.ID("confirm")),
		}
		steps = append(steps, fields...)
		steps = append(steps, chromedp.Click(chromedp.ID("confirm-ok")))
		if done != "" {
			steps = append(steps, chromedp.WaitVisible(chromedp.Search(`//*[@id="status"][contains(., `+xpathString(done)+`)]`)))
		}
		br.do(button+" "+name, steps...)
	}

	// No anonymous access: the page asks for a login at once.
	br.do("open the console", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(api.base+"/console/#queues"))
	signIn("viewer", viewerPass)
	act("queues", dlq, "Purge", "")
	br.do("wait for the refusal", chromedp.WaitVisible(chromedp.ID("alert")))
	if got := br.text("#alert-text"); !strings.Contains(got, "Not allowed") || !strings.Contains(got, "admin") {
		t.Errorf("alert after a refused purge: %q", got)
	}
	br.screenshot("refused")
	if d := api.depth(dlq); d != "3" {
		t.Errorf("depth of %s after a refused purge: %s, want 3", dlq, d)
	}

	// Signing out leaves no credentials: the host asks again, and the form opens by itself.
	br.do("sign out", chromedp.Click(chromedp.ID("signout")))
	signIn("boss", bossPass)
	act("queues", dlq, "Move to…", "Moved 3 messages from queue "+dlq+" to "+work,
		chromedp.SendKeys(chromedp.ID("move-to"), work))
	// An emptied queue nobody consumes from may be gone from the listing at once.
	if d, w := api.depth(dlq), api.depth(work); (d != "0" && d != "none") || w != "3" {
		t.Errorf("after the move: %s holds %s, %s holds %s; want 0 and 3", dlq, d, work, w)
	}
	act("queues", work, "Purge", "Purged 3 messages from queue "+work)
	if w := api.depth(work); w != "0" && w != "none" {
		t.Errorf("after the purge %s holds %s", work, w)
	}
	act("queues", old, "Delete", "Deleted queue "+old)
	br.do("wait for the queue's row to go", chromedp.WaitNotPresent(chromedp.Search(row(old))))
	if d := api.depth(old); d != "none" {
		t.Errorf("deleted queue %s still listed, depth %s", old, d)
	}

	act("retained", lamp, "Delete", "Deleted the retained message of "+lamp)
	if out := api.mustDo("GET", "/api/v1/vhosts/default/retained", "", http.StatusOK); strings.Contains(out, lamp) {
		t.Errorf("retained message of %s still listed: %s", lamp, out)
	}
	br.screenshot("retained")

	act("sessions", sleeper, "Delete", "Deleted session "+sleeper)
	if out := api.mustDo("GET", "/api/v1/vhosts/default/sessions", "", http.StatusOK); strings.Contains(out, sleeper) {
		t.Errorf("session %s still listed: %s", sleeper, out)
	}
	br.checkCSP()
	br.close()
	br.checkConsole(
		regexp.MustCompile(`status of 401 \(Unauthorized\).*/api/v1/`),
		regexp.MustCompile(`status of 403 \(Forbidden\).*/api/v1/vhosts/default/queues/`+regexp.QuoteMeta(dlq)+`/messages`),
	)
}

// consoleAPI calls the management API as one user, or anonymously when user is "".
type consoleAPI struct {
	t                *testing.T
	base, user, pass string
}

// mustDo sends a request and fails the test unless it is answered with status want; it returns the body.
func (a *consoleAPI) mustDo(method, path, body string, want int) string {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if a.user != "" {
		req.SetBasicAuth(a.user, a.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != want {
		a.t.Fatalf("%s %s: %s %s (%v), want %d", method, path, resp.Status, out, err, want)
	}
	return string(out)
}

// depth returns the depth of a queue as the API lists it, or "none".
func (a *consoleAPI) depth(queue string) string {
	a.t.Helper()
	var page struct {
		Items []struct {
			Name  string `json:"name"`
			Depth int    `json:"depth"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(a.mustDo("GET", "/api/v1/vhosts/default/queues", "", http.StatusOK)), &page); err != nil {
		a.t.Fatalf("list queues: %v", err)
	}
	for _, q := range page.Items {
		if q.Name == queue {
			return strconv.Itoa(q.Depth)
		}
	}
	return "none"
}

// xpathString quotes s as an XPath 1.0 string literal (s holds no double quote).
func xpathString(s string) string { return `"` + s + `"` }

// consoleBrowser is a headless Chromium on one tab, with everything the page writes to its console.
type consoleBrowser struct {
	t      *testing.T
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the console reader has stopped
	once   sync.Once

	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func newConsoleBrowser(t *testing.T, bin string) *consoleBrowser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	actx, acancel := chromedp.NewExecAllocator(ctx, browserOptions(bin, chromedp.WindowSize(1280, 800))...)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	b := &consoleBrowser{t: t, ctx: bctx, done: make(chan struct{}),
		cancel: func() { bcancel(); acancel(); cancel() }}
	t.Cleanup(b.close)
	if err := chromedp.Do(bctx); err != nil { // starts the browser and opens the tab
		t.Fatalf("browser: start: %v", err)
	}
	// Subscribed before the page loads, so nothing it logs is missed: console API calls, uncaught
	// exceptions, and the browser's log (CSP violations, failed requests).
	messages := chromedp.Console(bctx)
	go func() {
		defer close(b.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.msgs = append(b.msgs, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs steps, failing the test with what they were for.
func (b *consoleBrowser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.screenshot("failed")
		b.mu.Lock()
		for _, m := range b.msgs {
			b.t.Logf("browser console: %s (%s:%d) [%s]", m, m.URL, m.Line+1, m.Source)
		}
		b.mu.Unlock()
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// text returns the text of the element sel selects, or the error as text.
func (b *consoleBrowser) text(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		return fmt.Sprintf("(%s: %v)", sel, err)
	}
	return s
}

// screenshot writes the viewport as a PNG under the test's temp dir and logs its path. With
// LYRE_SCREENSHOT_DIR set, it is written there instead, to outlive the test.
func (b *consoleBrowser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	dir := os.Getenv("LYRE_SCREENSHOT_DIR")
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(dir, "console-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", p)
}

// close closes the browser and waits for it and the console reader; the test's cleanup then stops the broker.
func (b *consoleBrowser) close() {
	b.once.Do(func() {
		if err := chromedp.Cancel(b.ctx); err != nil {
			b.t.Logf("closing chromium: %v", err)
		}
		b.cancel()
		<-b.done
	})
}

// checkCSP checks that the Content-Security-Policy holds and that checkConsole would see it broken: an
// inline script the test adds does not run, and the browser logs the violation, which is then taken out of
// the messages checkConsole fails on.
func (b *consoleBrowser) checkCSP() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	ran, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const s = document.createElement('script');
		s.textContent = 'window.lyreCSPBroken = true';
		document.body.append(s);
		return window.lyreCSPBroken === true;
	})()`))
	if err != nil {
		b.t.Fatalf("csp check: %v", err)
	}
	if ran {
		b.t.Error("an inline script ran: the console's Content-Security-Policy does not hold")
	}
	isViolation := func(m chromedp.ConsoleMessage) bool {
		if strings.Contains(m.Text, "Content Security Policy") && strings.Contains(m.Text, "inline script") {
			b.t.Logf("expected CSP violation: %s [%s]", m, m.Source)
			return true
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.msgs)
		b.msgs = slices.DeleteFunc(b.msgs, isViolation)
		seen := len(b.msgs) < n
		b.mu.Unlock()
		if seen {
			return
		}
		if time.Now().After(deadline) {
			b.t.Error("the browser logged no CSP violation for an inline script: checkConsole would miss one")
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkConsole fails the test for every error or warning the page logged: a console.error or
// console.warn call, an uncaught exception or rejection, and the browser's own log entries at those levels
// (a CSP violation, a failed request) or from its security source, except those an expected pattern
// matches (the message with its place). Everything is logged.
func (b *consoleBrowser) checkConsole(expected ...*regexp.Regexp) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.msgs {
		where := ""
		if m.URL != "" {
			where = fmt.Sprintf(" (%s:%d:%d)", m.URL, m.Line+1, m.Column+1)
		}
		if m.Source != "" {
			where += " [" + m.Source + "]"
		}
		line := m.String() + where
		switch {
		case slices.ContainsFunc(expected, func(re *regexp.Regexp) bool { return re.MatchString(line) }):
			b.t.Logf("browser console (expected): %s", line)
		case m.IsException(), m.Type == chromedp.ConsoleError, m.Type == chromedp.ConsoleWarning, m.Source == "security":
			b.t.Errorf("browser console: %s", line)
		default:
			b.t.Logf("browser console: %s", line)
		}
	}
	b.msgs = nil
}
