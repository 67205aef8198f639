package status

import (
	"encoding/json"
	"net/http"
)

// Handler serves the picture that source takes for each request: HTML by
// default, JSON with ?format=json.
func Handler(source func(*http.Request) Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := source(r)
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Query().Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(n)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := renderHTML(w, n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}
