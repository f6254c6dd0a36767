package httpcache

import (
	"net/http"
	"strings"
	"time"
)

// hopByHop are the header fields that describe one connection, not the
// response: they are never stored (RFC 9111, section 3.1).
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authentication-Info", "Proxy-Authorization", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade",
}

// storedHeader returns the header to store of a response that arrived at
// respTime: h without hop-by-hop fields, fields its Connection names, or
// StatusHeader, and with a Date when it had none, so that a stored
// response keeps the date it was made.
func storedHeader(h http.Header, respTime time.Time) http.Header {
	out := h.Clone()
	dropHopByHop(out)
	if len(headerValues(out, "Date")) == 0 {
		out["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	return out
}

// dropHopByHop deletes from h the fields that are never stored.
func dropHopByHop(h http.Header) {
	for _, v := range headerValues(h, "Connection") {
		for _, name := range strings.Split(v, ",") {
			deleteField(h, strings.TrimSpace(name))
		}
	}
	for _, name := range hopByHop {
		deleteField(h, name)
	}
	deleteField(h, StatusHeader)
}

// deleteField deletes name from h, also under keys not in canonical form.
func deleteField(h http.Header, name string) {
	for k := range h {
		if strings.EqualFold(k, name) {
			delete(h, k)
		}
	}
}

// mergeHeader returns the header of a stored response updated by the
// header of a 304 that confirmed it (RFC 9111, section 3.2): the 304's
// fields replace the stored ones, except Content-Length, which describes
// the 304's own (empty) body.
func mergeHeader(old, fresh http.Header) http.Header {
	out := old.Clone()
	upd := fresh.Clone()
	dropHopByHop(upd)
	deleteField(upd, "Content-Length")
	for k, v := range upd {
		deleteField(out, k)
		out[k] = v
	}
	return out
}

// hasValidators reports whether h has a validator the cache can send back
// in a conditional request.
func hasValidators(h http.Header) bool {
	return len(headerValues(h, "Etag")) > 0 || len(headerValues(h, "Last-Modified")) > 0
}

// notModified reports whether the conditional GET or HEAD r is answered
// by a 304 for a stored 200 with header h (RFC 9110, section 13.2.2):
// If-None-Match, by weak comparison, takes precedence over
// If-Modified-Since.
func notModified(r *http.Request, status int, h http.Header) bool {
	switch inm := r.Header.Values("If-None-Match"); {
	case status != http.StatusOK:
		return false
	case len(inm) > 0:
		return etagMatches(inm, strings.TrimPrefix(h.Get("Etag"), "W/"))
	}
	return notModifiedSince(r.Header.Get("If-Modified-Since"), h)
}

// etagMatches reports whether the If-None-Match values inm match etag (its
// opaque part), by weak comparison.
func etagMatches(inm []string, etag string) bool {
	for _, v := range inm {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || etag != "" && strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// notModifiedSince reports whether a response with header h has not been
// modified since the If-Modified-Since value ims. Without a
// Last-Modified, the date the response was made stands in (RFC 9111,
// section 4.3.2).
func notModifiedSince(ims string, h http.Header) bool {
	since, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil {
		lm, err = http.ParseTime(h.Get("Date"))
	}
	return err == nil && !lm.After(since)
}

// writeNotModified sends a 304 for a stored response with header h, with
// the fields a 304 carries: all but those that describe the body.
func writeNotModified(w http.ResponseWriter, h http.Header, state, age string) {
	dst := w.Header()
	for k, v := range h {
		dst[k] = v
	}
	for _, k := range [...]string{"Content-Type", "Content-Length", "Content-Encoding", "Content-Range"} {
		deleteField(dst, k)
	}
	if age != "" {
		dst["Age"] = []string{age}
	}
	dst.Set(StatusHeader, state)
	w.WriteHeader(http.StatusNotModified)
}

// send sends s to w as the answer to r, with state in StatusHeader: a 304
// when r's validators match it, the whole response otherwise. A response
// that came from storage gets its current Age.
func (c *Cache) send(w http.ResponseWriter, r *http.Request, s *stored, state string) {
	var age string
	if state != Miss {
		age = ageHeader(s.age(c.now()))
	}
	if notModified(r, s.Status, s.Header) {
		writeNotModified(w, s.Header, state, age)
		return
	}
	replay(w, r, &s.response, nil, state, age)
}
