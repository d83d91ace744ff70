package management

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

// consoleMux is a Manager's mux with only the console's routes.
func consoleMux() http.Handler {
	m := &Manager{mux: http.NewServeMux()}
	m.consoleRoutes()
	return m
}

func consoleGet(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestConsoleFiles(t *testing.T) {
	h := consoleMux()
	for _, c := range []struct {
		target, contentType, contains string
	}{
		{"/console/", "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"/console/index.html", "text/html; charset=utf-8", "<title>Lyre console</title>"},
		{"/console/app.js", "text/javascript; charset=utf-8", "function api("},
		{"/console/app.css", "text/css; charset=utf-8", ":root"},
		{"/console/favicon.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(c.target, func(t *testing.T) {
			w := consoleGet(t, h, "GET", c.target, nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, body %q", w.Code, w.Body)
			}
			for k, want := range map[string]string{
				"Content-Type":            c.contentType,
				"Content-Security-Policy": consoleCSP,
				"X-Frame-Options":         "DENY",
				"Referrer-Policy":         "no-referrer",
				"X-Content-Type-Options":  "nosniff",
				"Cache-Control":           "no-cache",
			} {
				if got := w.Header().Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if !strings.Contains(w.Body.String(), c.contains) {
				t.Errorf("body lacks %q", c.contains)
			}
			etag := w.Header().Get("ETag")
			if !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(etag) {
				t.Fatalf("ETag %q", etag)
			}

			// Revalidation: the same ETag is a 304 without a body.
			w = consoleGet(t, h, "GET", c.target, http.Header{"If-None-Match": {etag}})
			if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
				t.Errorf("If-None-Match: status %d, %d bytes", w.Code, w.Body.Len())
			}
			w = consoleGet(t, h, "GET", c.target, http.Header{"If-None-Match": {`"other"`}})
			if w.Code != http.StatusOK {
				t.Errorf("other ETag: status %d", w.Code)
			}
			w = consoleGet(t, h, "HEAD", c.target, nil)
			if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("ETag") != etag {
				t.Errorf("HEAD: status %d, %d bytes, ETag %q", w.Code, w.Body.Len(), w.Header().Get("ETag"))
			}
		})
	}
}

func TestConsoleRoutes(t *testing.T) {
	h := consoleMux()
	w := consoleGet(t, h, "GET", "/console", nil)
	if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/console/" {
		t.Errorf("/console: status %d, Location %q", w.Code, w.Header().Get("Location"))
	}
	for _, target := range []string{"/console/nope.js", "/console/console/app.js", "/console/app.js/", "/console/.hidden"} {
		w := consoleGet(t, h, "GET", target, nil)
		if w.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", target, w.Code)
		}
		if w.Header().Get("Content-Security-Policy") != consoleCSP {
			t.Errorf("%s: no CSP on the 404", target)
		}
	}
	w = consoleGet(t, h, "POST", "/console/", nil)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", w.Code)
	}
}

// TestConsoleSourcesObeyCSP checks the sources for what the Content-Security-Policy would block at run
// time, or what would put data in the page as HTML: the browser test (cmd/lyre TestConsole) sees only
// the paths it takes.
func TestConsoleSourcesObeyCSP(t *testing.T) {
	read := func(name string) string {
		b, err := consoleFiles.ReadFile("console/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	html, css := read("index.html"), read("app.css")
	var js string // every module, for the checks that apply to all
	entries, err := fs.ReadDir(consoleFiles, "console")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if path.Ext(e.Name()) == ".js" {
			js += read(e.Name())
		}
	}

	for _, bad := range []struct{ re, why string }{
		{`<script(\s[^>]*)?>\s*[^<\s]`, "inline script"},
		{`<style\b`, "inline style element"},
		{`\sstyle\s*=`, "style attribute"},
		{`\son[a-z]+\s*=`, "event handler attribute"},
		{`(?i)javascript:`, "javascript: URL"},
		{`(?i)(src|href)\s*=\s*"(https?:)?//`, "another origin"},
	} {
		if m := regexp.MustCompile(bad.re).FindString(html); m != "" {
			t.Errorf("index.html: %s: %q", bad.why, m)
		}
	}
	for _, tag := range regexp.MustCompile(`<script\b[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(tag, ` src="`) {
			t.Errorf("index.html: script without src: %q", tag)
		}
	}
	for _, bad := range []struct{ re, why string }{
		{`\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write`, "HTML from strings"},
		{`\beval\s*\(|new\s+Function\b|setTimeout\(\s*['"]|setInterval\(\s*['"]`, "eval"},
		{`setAttribute\(\s*['"]style|\.style\.|\.cssText`, "inline style"},
		{`(?i)https?://`, "another origin"},
	} {
		if m := regexp.MustCompile(bad.re).FindString(js); m != "" {
			t.Errorf("console JavaScript: %s: %q", bad.why, m)
		}
	}
	if m := regexp.MustCompile(`(?i)url\(\s*['"]?(https?:)?//|@import`).FindString(css); m != "" {
		t.Errorf("app.css: another origin: %q", m)
	}

	// Every file index.html names, or a module imports, is embedded and served.
	served := loadConsole()
	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(html, -1)
	refs = append(refs, regexp.MustCompile(`(?m)^import .* from '\./([^']+)';$`).FindAllStringSubmatch(js, -1)...)
	for _, m := range refs {
		if _, ok := served[m[1]]; !ok {
			t.Errorf("%q is referred to but not served", m[1])
		}
	}
	// Every embedded file is served: an unknown extension would be left out quietly.
	_ = fs.WalkDir(consoleFiles, "console", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if _, ok := consoleTypes[path.Ext(p)]; !ok {
				t.Errorf("%s: no Content-Type for its extension", p)
			}
		}
		return err
	})
	// Every element the scripts look up by a literal id is in index.html.
	ids := make(map[string]bool)
	for _, m := range regexp.MustCompile(`\sid="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		ids[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`\$\('([^']+)'\)`).FindAllStringSubmatch(js, -1) {
		if !ids[m[1]] {
			t.Errorf("the scripts use id %q, which index.html lacks", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`data-table="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(js, "\n  "+m[1]+": {") {
			t.Errorf("index.html has a table %q that app.js does not define", m[1])
		}
	}
}
