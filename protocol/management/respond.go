package management

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Paging: ?page=N (from 1) and ?page_size=M (default 100, at most 1000), as RabbitMQ's API.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Page is one page of a listing.
type Page[T any] struct {
	Items    []T `json:"items"`
	Page     int `json:"page"`
	PageSize int `json:"page_size"`
	Total    int `json:"total"`
}

// paginate cuts the page the request asks for out of all (already in a stable order); a bad parameter
// is an error for a 400.
func paginate[T any](r *http.Request, all []T) (Page[T], error) {
	p := Page[T]{Page: 1, PageSize: defaultPageSize, Total: len(all)}
	var err error
	if s := r.URL.Query().Get("page"); s != "" {
		if p.Page, err = strconv.Atoi(s); err != nil || p.Page < 1 {
			return p, fmt.Errorf("page must be a positive integer, not %q", s)
		}
	}
	if s := r.URL.Query().Get("page_size"); s != "" {
		if p.PageSize, err = strconv.Atoi(s); err != nil || p.PageSize < 1 || p.PageSize > maxPageSize {
			return p, fmt.Errorf("page_size must be 1 to %d, not %q", maxPageSize, s)
		}
	}
	from := min((p.Page-1)*p.PageSize, len(all))
	to := min(from+p.PageSize, len(all))
	p.Items = all[from:to]
	if p.Items == nil {
		p.Items = []T{}
	}
	return p, nil
}

// writePage writes the requested page of all, or a 400 for bad paging parameters.
func writePage[T any](w http.ResponseWriter, r *http.Request, all []T) {
	p, err := paginate(r, all)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// writeJSON writes v as the JSON response body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
}

// writeError writes an error response with a JSON body {"error": "..."}.
func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, apiError{Error: fmt.Sprintf(format, args...)})
}
