package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directives holds the Cache-Control directives httpcache acts on, of a
// response or a request. Durations are -1 when the directive is absent or
// its value is not a valid delta-seconds.
type directives struct {
	noStore, noCache, private, public   bool
	mustRevalidate, proxyRevalidate     bool
	onlyIfCached, mustUnderstand        bool
	maxAge, sMaxAge, minFresh, maxStale time.Duration
	staleWhileRevalidate, staleIfError  time.Duration
	anyMaxStale                         bool // max-stale without a value
	invalidMaxAge                       bool // max-age present but unusable
}

// maxDelta is the largest delta-seconds value used; larger ones count as
// this, as RFC 9111 (section 1.2.2) asks.
const maxDelta = 1<<31 - 1

// parseCacheControl parses Cache-Control field values. Directive names are
// case-insensitive; values may be tokens or quoted strings, and commas
// inside quotes do not split. A directive given twice keeps the shorter
// duration, the safer choice when they conflict.
func parseCacheControl(values []string) directives {
	d := newDirectives()
	for _, v := range values {
		for v != "" {
			var name, arg string
			var quoted bool
			name, arg, quoted, v = nextDirective(v)
			name = strings.ToLower(name)
			if d.flag(name) {
				continue
			}
			switch name {
			case "max-age":
				if !setDelta(&d.maxAge, arg, quoted) {
					d.invalidMaxAge = true
				}
			case "s-maxage":
				setDelta(&d.sMaxAge, arg, quoted)
			case "min-fresh":
				setDelta(&d.minFresh, arg, quoted)
			case "max-stale":
				if arg == "" && !quoted {
					d.anyMaxStale = true
				} else {
					setDelta(&d.maxStale, arg, quoted)
				}
			case "stale-while-revalidate":
				setDelta(&d.staleWhileRevalidate, arg, quoted)
			case "stale-if-error":
				setDelta(&d.staleIfError, arg, quoted)
			}
		}
	}
	return d
}

// newDirectives returns directives with every duration absent (-1).
func newDirectives() directives {
	return directives{maxAge: -1, sMaxAge: -1, minFresh: -1, maxStale: -1, staleWhileRevalidate: -1, staleIfError: -1}
}

// flag sets the Boolean directive name and reports whether name is one.
// A no-cache="Set-Cookie" argument names fields not to reuse; treating it
// as plain no-cache always revalidates, which is safe.
func (d *directives) flag(name string) bool {
	switch name {
	case "no-store":
		d.noStore = true
	case "no-cache":
		d.noCache = true
	case "private":
		d.private = true
	case "public":
		d.public = true
	case "must-revalidate":
		d.mustRevalidate = true
	case "proxy-revalidate":
		d.proxyRevalidate = true
	case "only-if-cached":
		d.onlyIfCached = true
	case "must-understand":
		d.mustUnderstand = true
	default:
		return false
	}
	return true
}

// nextDirective splits the first directive off a Cache-Control value:
// its name, its argument (unquoted), whether that was a quoted string, and
// the rest of the value after the comma.
func nextDirective(v string) (name, arg string, quoted bool, rest string) {
	i := strings.IndexAny(v, ",=")
	if i < 0 {
		return strings.TrimSpace(v), "", false, ""
	}
	if v[i] == ',' {
		return strings.TrimSpace(v[:i]), "", false, v[i+1:]
	}
	// No space may come between a name and its "=": "max-age =60" is
	// not max-age.
	if name = strings.TrimLeft(v[:i], " \t"); strings.TrimRight(name, " \t") != name {
		name = ""
	}
	v = v[i+1:]
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		j := 1
		for ; j < len(v) && v[j] != '"'; j++ {
			if v[j] == '\\' && j+1 < len(v) {
				j++
			}
			b.WriteByte(v[j])
		}
		rest = v[min(j+1, len(v)):]
		if k := strings.IndexByte(rest, ','); k >= 0 {
			rest = rest[k+1:]
		} else {
			rest = ""
		}
		return name, b.String(), true, rest
	}
	if k := strings.IndexByte(v, ','); k >= 0 {
		return name, v[:k], false, v[k+1:]
	}
	return name, v, false, ""
}

// setDelta sets *d from a delta-seconds argument (digits only, no sign, no
// quotes, no spaces) when it is valid, keeping the smaller of two values,
// and reports whether it was valid.
func setDelta(d *time.Duration, arg string, quoted bool) bool {
	n, ok := parseDelta(arg)
	if !ok || quoted {
		return false
	}
	if *d < 0 || n < *d {
		*d = n
	}
	return true
}

// parseDelta parses delta-seconds, capping large values at maxDelta.
func parseDelta(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return time.Duration(min(n, maxDelta)) * time.Second, true
}

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
	cc := parseCacheControl(headerValues(h, "Cache-Control"))
	cdn, hasCDN := parseCDNCacheControl(headerValues(h, "Cdn-Cache-Control"))
	var p policy
	if cc.public || cc.sMaxAge >= 0 || cc.mustRevalidate {
		p.flags |= flagAuthOK
	}
	if hasCDN {
		// CDN-Cache-Control (RFC 9213) replaces Cache-Control for this
		// cache's own freshness and storage decisions.
		cc = cdn
	}
	auth := req.Header.Get("Authorization") != ""
	switch {
	case cc.noStore && !(cc.mustUnderstand && understoodStatus(status)),
		cc.private && !c.private,
		auth && !c.private && p.flags&flagAuthOK == 0,
		cc.mustUnderstand && !understoodStatus(status):
		return p
	}
	if cc.mustRevalidate || (!c.private && (cc.proxyRevalidate || cc.sMaxAge >= 0)) {
		p.flags |= flagNoStale
	}
	if cc.noCache {
		p.flags |= flagNoCache | flagNoStale
	}

	date, ok := parseHTTPDate(headerValues(h, "Date"))
	if !ok {
		date = respTime
	}
	apparent := max(0, respTime.Sub(date))
	corrected := parseAge(headerValues(h, "Age")) + respTime.Sub(reqTime)
	p.initAge = max(apparent, corrected)

	switch {
	case !c.private && cc.sMaxAge >= 0:
		p.lifetime = cc.sMaxAge
	case cc.maxAge >= 0:
		p.lifetime = cc.maxAge
	case cc.invalidMaxAge:
		p.lifetime = 0
	case len(headerValues(h, "Expires")) > 0:
		if exp, ok := parseHTTPDate(headerValues(h, "Expires")); ok {
			p.lifetime = max(0, exp.Sub(date))
		}
	case cc.public:
		p.lifetime = p.initAge + c.ttl
	default:
		lm, ok := parseHTTPDate(headerValues(h, "Last-Modified"))
		if ok && heuristicStatus(status) && date.After(lm) {
			// The usual heuristic: a tenth of the time since the last change.
			p.lifetime = date.Sub(lm) / 10
		}
	}
	// The TTL bounds how long the response stays fresh here, from now.
	p.lifetime = min(p.lifetime, p.initAge+c.ttl)
	if cc.staleWhileRevalidate > 0 && p.flags&flagNoStale == 0 {
		p.swr = cc.staleWhileRevalidate
	}
	if cc.staleIfError > 0 && p.flags&flagNoStale == 0 {
		p.sie = cc.staleIfError
	}
	// Worth storing: what can be served as it is, now or once stale, and
	// what can be revalidated. A no-cache response without validators is
	// neither.
	validators := hasValidators(h)
	if p.flags&flagNoCache != 0 {
		p.store = validators
	} else {
		p.store = validators || p.initAge < p.lifetime+max(p.swr, p.sie)
	}
	return p
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
