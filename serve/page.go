package serve

import (
	"embed"
	"io/fs"
	"net/http"
)

// The page is plain HTML, CSS and JavaScript with no library: the
// timeline is drawn as SVG by app.js. Nothing is fetched from elsewhere,
// so it works on a sensor with no Internet access.
//
//go:embed page
var pageFiles embed.FS

func pageHandler() http.Handler {
	sub, _ := fs.Sub(pageFiles, "page")
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The page's state is in its query string; every path that is
		// not a file is the page.
		if r.URL.Path != "/" && r.URL.Path != "/app.js" && r.URL.Path != "/app.css" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
