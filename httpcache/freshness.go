package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// parseAge returns the Age of a response: the first member of the first
// field line, when it is delta-seconds. Anything else counts as no Age.
func parseAge(values []string) time.Duration {
	if len(values) == 0 {
		return 0
	}
	first, _, _ := strings.Cut(values[0], ",")
	age, ok := parseDelta(strings.TrimSpace(first))
	if !ok {
		return 0
	}
	return age
}

// parseHTTPDate parses an HTTP date: an IMF-fixdate, or one of the two
// obsolete forms recipients must accept (RFC 850 and asctime, RFC 9110
// section 5.6.7), written exactly; "GMT" may be in any case. Anything
// else, and two field lines, is invalid, as a date written wrongly by an
// origin is more likely a mistake than a meaning.
func parseHTTPDate(values []string) (time.Time, bool) {
	if len(values) != 1 {
		return time.Time{}, false
	}
	s := values[0]
	if n := len(s); n > 3 && strings.EqualFold(s[n-3:], "GMT") {
		s = s[:n-3] + "GMT"
	}
	for _, layout := range [...]string{http.TimeFormat, "Monday, 02-Jan-06 15:04:05 GMT", time.ANSIC} {
		// Written exactly: formatting the time gives the text back, but
		// for the day name, which need not match the date.
		t, err := time.Parse(layout, s)
		if err == nil && strings.EqualFold(afterSpace(t.Format(layout)), afterSpace(s)) {
			return t, true
		}
	}
	return time.Time{}, false
}

// afterSpace returns s after its first space.
func afterSpace(s string) string {
	_, after, _ := strings.Cut(s, " ")
	return after
}

// heuristicStatus reports whether responses with status may be given a
// heuristic freshness lifetime (RFC 9110, section 15.1).
func heuristicStatus(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus reports whether httpcache knows the caching rules of
// status, for must-understand.
func understoodStatus(status int) bool {
	return heuristicStatus(status) || status == 302 || status == 303 || status == 307 ||
		(status >= 400 && status < 600 && http.StatusText(status) != "")
}

// policy is what the cache decided about one response: whether to store
// it, how long it is fresh, and how it may be served once stale.
type policy struct {
	store    bool
	lifetime time.Duration // freshness lifetime, capped by the cache's TTL
	initAge  time.Duration // corrected initial age
	flags    uint8
	swr, sie time.Duration // stale-while-revalidate and stale-if-error windows
}

// Flags of a stored response.
const (
	// flagNoStale forbids serving it stale (must-revalidate,
	// proxy-revalidate, s-maxage, no-cache).
	flagNoStale uint8 = 1 << iota
	// flagNoCache makes every use revalidate (no-cache).
	flagNoCache
	// flagAuthOK lets it answer requests with Authorization (public,
	// s-maxage, must-revalidate).
	flagAuthOK
)

// decide applies RFC 9111 to a response the handler gave for req, which
// was sent at reqTime and answered at respTime.
func (c *Cache) decide(req *http.Request, status int, h http.Header, reqTime, respTime time.Time) policy {
	cc, authOK := responseDirectives(h)
	var p policy
	if authOK {
		p.flags |= flagAuthOK
	}
	if !c.mayStore(req, status, cc, authOK) {
		return p
	}
	p.flags |= c.revalidationFlags(cc)
	date, ok := parseHTTPDate(headerValues(h, "Date"))
	if !ok {
		date = respTime
	}
	p.initAge = initialAge(h, date, reqTime, respTime)
	// The TTL bounds how long the response stays fresh here, from now.
	p.lifetime = min(c.lifetime(status, h, cc, date, p.initAge), p.initAge+c.ttl)
	if p.flags&flagNoStale == 0 {
		p.swr = max(cc.delta[ccStaleWhileRevalidate], 0)
		p.sie = max(cc.delta[ccStaleIfError], 0)
	}
	p.store = p.worthStoring(hasValidators(h))
	return p
}

// responseDirectives returns the directives that rule how this cache
// stores a response with header h: CDN-Cache-Control's when it has a
// valid one (RFC 9213 lets it replace Cache-Control for this cache's own
// freshness and storage decisions), else Cache-Control's. authOK reports
// whether Cache-Control lets the response answer requests with
// Authorization (public, s-maxage, must-revalidate).
func responseDirectives(h http.Header) (cc directives, authOK bool) {
	cc = parseCacheControl(headerValues(h, "Cache-Control"))
	authOK = cc.has[ccPublic] || cc.delta[ccSMaxAge] >= 0 || cc.has[ccMustRevalidate]
	if cdn, ok := parseCDNCacheControl(headerValues(h, "Cdn-Cache-Control")); ok {
		cc = cdn
	}
	return cc, authOK
}

// mayStore reports whether directives cc let this cache store a response
// with status to req.
func (c *Cache) mayStore(req *http.Request, status int, cc directives, authOK bool) bool {
	return storeAllowed(cc, status) && c.sharedMayStore(req, cc, authOK)
}

// storeAllowed applies no-store and must-understand (RFC 9111, section
// 5.2.2.3): with must-understand, a response is stored if and only if the
// cache understands its status, whatever no-store says.
func storeAllowed(cc directives, status int) bool {
	if cc.has[ccMustUnderstand] {
		return understoodStatus(status)
	}
	return !cc.has[ccNoStore]
}

// sharedMayStore applies what only a shared cache obeys (RFC 9111,
// sections 3.5 and 5.2.2.7): it stores no private response, and a response
// to a request with Authorization only when the response allows it
// (authOK).
func (c *Cache) sharedMayStore(req *http.Request, cc directives, authOK bool) bool {
	if c.private {
		return true
	}
	return !cc.has[ccPrivate] && (authOK || req.Header.Get("Authorization") == "")
}

// revalidationFlags returns the flags by which directives cc forbid
// serving a response stale or make every use of it revalidate.
func (c *Cache) revalidationFlags(cc directives) uint8 {
	var f uint8
	if cc.has[ccMustRevalidate] || (!c.private && (cc.has[ccProxyRevalidate] || cc.delta[ccSMaxAge] >= 0)) {
		f |= flagNoStale
	}
	if cc.has[ccNoCache] {
		f |= flagNoCache | flagNoStale
	}
	return f
}

// initialAge returns the corrected initial age (RFC 9111, section 4.2.3)
// of a response with header h dated date, requested at reqTime and
// received at respTime.
func initialAge(h http.Header, date, reqTime, respTime time.Time) time.Duration {
	apparent := max(0, respTime.Sub(date))
	corrected := parseAge(headerValues(h, "Age")) + respTime.Sub(reqTime)
	return max(apparent, corrected)
}

// lifetime returns the freshness lifetime of a response with status and
// header h, dated date (RFC 9111, section 4.2.1), before the cache's TTL
// bounds it: s-maxage (in a shared cache), max-age, Expires, the TTL for
// a public response without any of them, else a heuristic.
func (c *Cache) lifetime(status int, h http.Header, cc directives, date time.Time, initAge time.Duration) time.Duration {
	switch {
	case !c.private && cc.delta[ccSMaxAge] >= 0:
		return cc.delta[ccSMaxAge]
	case cc.delta[ccMaxAge] >= 0:
		return cc.delta[ccMaxAge]
	case cc.invalidMaxAge:
		return 0
	case len(headerValues(h, "Expires")) > 0:
		return expiresLifetime(headerValues(h, "Expires"), date)
	case cc.has[ccPublic]:
		return initAge + c.ttl
	}
	return heuristicLifetime(status, h, date)
}

// expiresLifetime returns the lifetime that an Expires header of values
// gives a response dated date: 0 when it is invalid or in the past.
func expiresLifetime(values []string, date time.Time) time.Duration {
	exp, ok := parseHTTPDate(values)
	if !ok {
		return 0
	}
	return max(0, exp.Sub(date))
}

// heuristicLifetime returns the usual heuristic freshness lifetime of a
// response dated date: a tenth of the time since its last change, for
// the statuses that allow one.
func heuristicLifetime(status int, h http.Header, date time.Time) time.Duration {
	lm, ok := parseHTTPDate(headerValues(h, "Last-Modified"))
	if ok && heuristicStatus(status) && date.After(lm) {
		return date.Sub(lm) / 10
	}
	return 0
}

// worthStoring reports whether a response under policy p is worth
// storing: what can be served as it is, now or once stale, and what can
// be revalidated (validators). A no-cache response without validators is
// neither.
func (p policy) worthStoring(validators bool) bool {
	if p.flags&flagNoCache != 0 {
		return validators
	}
	return validators || p.initAge < p.lifetime+max(p.swr, p.sie)
}

// keep returns how long Redis should keep a response stored under policy
// p: while it is fresh, then while it may still be served stale or
// revalidated. A response with validators is kept for the cache's TTL past
// its freshness, to be revalidated rather than fetched again.
func (c *Cache) keep(p policy, validators bool) time.Duration {
	d := max(p.lifetime-p.initAge, 0) + max(p.swr, p.sie)
	if validators {
		d += c.ttl
	}
	return min(max(d, time.Second), c.ttl+maxKeep)
}

// maxKeep bounds how long a stale response is kept beyond the TTL.
const maxKeep = 24 * time.Hour

// age returns the current age of s at now (RFC 9111, section 4.2.3).
func (s *stored) age(now time.Time) time.Duration {
	return time.Duration(s.InitAge) + now.Sub(time.Unix(0, s.Resp))
}

// ageHeader formats age as an Age field value: whole seconds.
func ageHeader(age time.Duration) string {
	return strconv.FormatInt(int64(max(age, 0)/time.Second), 10)
}
