package httpcache

import (
	"context"
	"net/http"
	"net/url"
)

// serveUnsafe serves a request with an unsafe method (POST, PUT, DELETE
// and any method RFC 9110 does not call safe) and, once the handler has
// given a successful (2xx or 3xx) status, deletes the stored responses of
// the request's URL and of the URLs in its Location and Content-Location
// fields that are on the same host (RFC 9111, section 4.4). The deletion
// happens when the status is written, before any of the response reaches
// the client, so a client that reads again after it sees the change.
func (c *Cache) serveUnsafe(w http.ResponseWriter, r *http.Request, next http.Handler) {
	iw := &invalidator{ResponseWriter: w, c: c, r: r}
	next.ServeHTTP(iw, r)
	if !iw.done {
		// A handler that wrote nothing sends a 200 when it returns.
		iw.done = true
		c.invalidate(r, w.Header())
	}
}

// invalidator is the ResponseWriter of an unsafe request.
type invalidator struct {
	http.ResponseWriter
	c    *Cache
	r    *http.Request
	done bool
}

// WriteHeader invalidates, for a successful final status, then writes it.
func (iw *invalidator) WriteHeader(code int) {
	if !iw.done && code >= 200 {
		iw.done = true
		if code < 400 {
			iw.c.invalidate(iw.r, iw.Header())
		}
	}
	iw.ResponseWriter.WriteHeader(code)
}

// Write writes the implicit 200 status first, as net/http does.
func (iw *invalidator) Write(p []byte) (int, error) {
	if !iw.done {
		iw.WriteHeader(http.StatusOK)
	}
	return iw.ResponseWriter.Write(p)
}

// Flush flushes the underlying writer, if it can.
func (iw *invalidator) Flush() {
	if !iw.done {
		iw.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(iw.ResponseWriter).Flush()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (iw *invalidator) Unwrap() http.ResponseWriter { return iw.ResponseWriter }

// invalidate deletes the stored responses of r's URL and of the same-host
// URLs in h's Location and Content-Location.
func (c *Cache) invalidate(r *http.Request, h http.Header) {
	// The deletes must land even if the client has gone; each is bounded
	// by the Manager's op timeout. An error leaves the entry to expire:
	// the handler's own response still goes out.
	ctx := context.WithoutCancel(r.Context())
	targets := invalidationTargets(r, h)
	seen := make(map[string]bool, len(targets))
	for _, u := range targets {
		g := r.Clone(ctx)
		g.Method = http.MethodGet
		g.URL = &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
		key, ok := c.key(g)
		if !ok || seen[key] {
			continue
		}
		seen[key] = true
		_ = c.cache.Delete(ctx, key)
	}
}

// invalidationTargets returns r's URL and the URLs in h's Location and
// Content-Location that are on r's host (RFC 9111, section 4.4).
func invalidationTargets(r *http.Request, h http.Header) []*url.URL {
	targets := []*url.URL{r.URL}
	for _, name := range [...]string{"Location", "Content-Location"} {
		v := h.Get(name)
		if v == "" {
			continue
		}
		u, err := r.URL.Parse(v)
		if err != nil || u.Host != "" && u.Host != r.Host && u.Host != r.URL.Host {
			continue
		}
		targets = append(targets, u)
	}
	return targets
}
