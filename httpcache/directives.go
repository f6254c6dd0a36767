package httpcache

import (
	"strings"
	"time"
)

// directives holds the Cache-Control directives httpcache acts on, of a
// response or a request: the Boolean ones that are present (has), and the
// delta-seconds ones (delta), which are -1 when the directive is absent or
// its value is not a valid delta-seconds.
type directives struct {
	has           [numFlags]bool
	delta         [numDeltas]time.Duration
	anyMaxStale   bool // max-stale without a value
	invalidMaxAge bool // max-age present but unusable
}

// flagDirective names a Boolean directive, an index of directives.has.
type flagDirective uint8

// The Boolean directives.
const (
	ccNoStore flagDirective = iota
	ccNoCache
	ccPrivate
	ccPublic
	ccMustRevalidate
	ccProxyRevalidate
	ccOnlyIfCached
	ccMustUnderstand
	numFlags
)

// deltaDirective names a delta-seconds directive, an index of
// directives.delta.
type deltaDirective uint8

// The delta-seconds directives.
const (
	ccMaxAge deltaDirective = iota
	ccSMaxAge
	ccMinFresh
	ccMaxStale
	ccStaleWhileRevalidate
	ccStaleIfError
	numDeltas
)

// newDirectives returns directives with every duration absent (-1).
func newDirectives() directives {
	var d directives
	for i := range d.delta {
		d.delta[i] = -1
	}
	return d
}

// directive is what one directive name sets in directives: a Boolean
// (flag) or a delta-seconds duration (delta). Both field grammars,
// Cache-Control's and CDN-Cache-Control's, look names up in directiveTable
// and differ only in how they read and check the argument.
type directive struct {
	isDelta bool
	flag    flagDirective
	delta   deltaDirective
	// cdn marks the response directives CDN-Cache-Control (RFC 9213)
	// carries; the request-only ones are ignored there.
	cdn bool
}

// directiveTable holds the directives httpcache acts on, by lower-case
// name; any other directive is ignored.
var directiveTable = map[string]directive{
	"no-store":               {flag: ccNoStore, cdn: true},
	"no-cache":               {flag: ccNoCache, cdn: true},
	"private":                {flag: ccPrivate, cdn: true},
	"public":                 {flag: ccPublic, cdn: true},
	"must-revalidate":        {flag: ccMustRevalidate, cdn: true},
	"proxy-revalidate":       {flag: ccProxyRevalidate, cdn: true},
	"must-understand":        {flag: ccMustUnderstand, cdn: true},
	"only-if-cached":         {flag: ccOnlyIfCached},
	"max-age":                {isDelta: true, delta: ccMaxAge, cdn: true},
	"s-maxage":               {isDelta: true, delta: ccSMaxAge, cdn: true},
	"stale-while-revalidate": {isDelta: true, delta: ccStaleWhileRevalidate, cdn: true},
	"stale-if-error":         {isDelta: true, delta: ccStaleIfError, cdn: true},
	"min-fresh":              {isDelta: true, delta: ccMinFresh},
	"max-stale":              {isDelta: true, delta: ccMaxStale},
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
			d.setCacheControl(strings.ToLower(name), arg, quoted)
		}
	}
	return d
}

// setCacheControl applies one Cache-Control directive. A Boolean takes any
// argument: a no-cache="Set-Cookie" argument names fields not to reuse,
// and treating it as plain no-cache always revalidates, which is safe.
// max-stale without a value accepts any staleness; a max-age that is not
// delta-seconds makes the response stale at once.
func (d *directives) setCacheControl(name, arg string, quoted bool) {
	dir, ok := directiveTable[name]
	switch {
	case !ok:
	case !dir.isDelta:
		d.has[dir.flag] = true
	case dir.delta == ccMaxStale && arg == "" && !quoted:
		d.anyMaxStale = true
	case !setDelta(&d.delta[dir.delta], arg, quoted) && dir.delta == ccMaxAge:
		d.invalidMaxAge = true
	}
}

// setCDN applies one CDN-Cache-Control dictionary member, a key and its
// value as written (see sfMember), and reports false when the value has
// the wrong type: a Boolean is written without a value, a duration is a
// non-negative Integer. A key given twice keeps the last value, as
// Structured Fields ask.
func (d *directives) setCDN(key, val string, isInt bool) bool {
	dir, ok := directiveTable[key]
	switch {
	case !ok || !dir.cdn:
		return true
	case !dir.isDelta && val != "", dir.isDelta && (!isInt || strings.HasPrefix(val, "-")):
		return false
	case !dir.isDelta:
		d.has[dir.flag] = true
	default:
		d.delta[dir.delta], _ = parseDelta(val)
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
		arg, rest = quotedString(v)
		return name, arg, true, rest
	}
	arg, rest, _ = strings.Cut(v, ",")
	return name, arg, false, rest
}

// quotedString reads the quoted string at the start of v, undoing its
// backslash escapes, and returns it with the rest of v after the comma
// that follows it (anything between the closing quote and that comma is
// dropped).
func quotedString(v string) (s, rest string) {
	var b strings.Builder
	j := 1
	for ; j < len(v) && v[j] != '"'; j++ {
		if v[j] == '\\' && j+1 < len(v) {
			j++
		}
		b.WriteByte(v[j])
	}
	_, rest, _ = strings.Cut(v[min(j+1, len(v)):], ",")
	return b.String(), rest
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
