package management

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// consoleFiles are the web console's static files (see the package doc): no data in them, so they are
// served without authentication; everything the page shows comes from /api/v1 as its user.
//
//go:embed console
var consoleFiles embed.FS

// consoleCSP forbids everything the console does not need: no inline script or style, no eval, no
// other origin, no framing. The console fetches only /api/v1 on its own origin.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleTypes are the Content-Types of the console's files, by extension; a file with another extension
// is not served. (mime.TypeByExtension would read the system's tables, which vary.)
var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// consoleFile is one embedded file with its validator.
type consoleFile struct {
	body        []byte
	contentType string
	etag        string
}

// loadConsole reads the embedded files once, keyed by their path under /console/.
func loadConsole() map[string]consoleFile {
	files := make(map[string]consoleFile)
	err := fs.WalkDir(consoleFiles, "console", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := consoleTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		body, err := consoleFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		files[p[len("console/"):]] = consoleFile{body: body, contentType: ct,
			etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic("management: embedded console: " + err.Error()) // the files are compiled in
	}
	return files
}

// consoleHandler serves the embedded console under /console/ ("/console/" is index.html). The files
// change only with the binary: each carries an ETag from its content and Cache-Control no-cache, so a
// browser revalidates (a 304) and never runs a stale app.js beside a new index.html.
func consoleHandler() http.Handler {
	files := loadConsole()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		name := r.PathValue("file")
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			writeError(w, http.StatusNotFound, "no console file %q", name)
			return
		}
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		// ServeContent answers If-None-Match with 304, HEAD without a body, and ranges.
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	})
}

// consoleRoutes registers /console/ (GET and HEAD) and redirects /console to it, so that the page's
// relative URLs (app.js, app.css) resolve under /console/.
func (m *Manager) consoleRoutes() {
	m.mux.Handle("GET /console/{file...}", consoleHandler())
	m.mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
}
