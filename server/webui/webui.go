// Package webui serves the org settings page: plain HTML, CSS and JavaScript
// embedded in the binary, so the page works offline and needs no build step.
// The page talks to the admin API (package adminapi) in its JSON form with
// fetch; it holds the admin's API key in sessionStorage only.
package webui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// Handler serves the page at "/" (exact path) and its assets under "/ui/".
// Register it on the mux for both patterns:
//
//	mux.Handle("GET /{$}", webui.Handler())
//	mux.Handle("GET /ui/", webui.Handler())
//
// Any other path answers 404.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		switch {
		case r.URL.Path == "/":
			// Always revalidate the page so a new binary's page is picked up.
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, sub, "index.html")
		case len(r.URL.Path) > len("/ui/") && r.URL.Path[:len("/ui/")] == "/ui/":
			w.Header().Set("Cache-Control", "no-cache")
			files.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// setSecurityHeaders keeps the page from loading anything but its own
// assets (no inline script, no third-party origin) and from being framed,
// since it handles API keys.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}
