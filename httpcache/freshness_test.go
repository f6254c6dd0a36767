package httpcache

import (
	"net/http"
	"testing"
	"time"
)

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		maxAge time.Duration
		noStore,
		noCache bool
	}{
		{"plain", []string{"max-age=60"}, 60 * time.Second, false, false},
		{"leading zeros", []string{"max-age=0060"}, 60 * time.Second, false, false},
		{"case", []string{"Max-Age=60, NO-STORE"}, 60 * time.Second, true, false},
		{"two values keep the shorter", []string{"max-age=1800, max-age=1"}, time.Second, false, false},
		{"two lines keep the shorter", []string{"max-age=1", "max-age=1800"}, time.Second, false, false},
		{"quoted value", []string{`max-age="60"`}, -1, false, false},
		{"single quotes", []string{`max-age='60'`}, -1, false, false},
		{"inside a quoted string", []string{`ext="max-age=3600, no-store", max-age=1`}, time.Second, false, false},
		{"space before =", []string{"max-age =60"}, -1, false, false},
		{"space after =", []string{"max-age= 60"}, -1, false, false},
		{"decimal", []string{"max-age=60.0"}, -1, false, false},
		{"negative", []string{"max-age=-1"}, -1, false, false},
		{"trailing letters", []string{"max-age=60a"}, -1, false, false},
		{"huge", []string{"max-age=99999999999999999999"}, maxDelta * time.Second, false, false},
		{"no-cache with fields", []string{`no-cache="Set-Cookie"`}, -1, false, true},
		{"empty members", []string{", ,max-age=5,"}, 5 * time.Second, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := parseCacheControl(tt.values)
			if d.delta[ccMaxAge] != tt.maxAge || d.has[ccNoStore] != tt.noStore || d.has[ccNoCache] != tt.noCache {
				t.Errorf("parseCacheControl(%q) = max-age %v, no-store %v, no-cache %v; want %v, %v, %v",
					tt.values, d.delta[ccMaxAge], d.has[ccNoStore], d.has[ccNoCache], tt.maxAge, tt.noStore, tt.noCache)
			}
		})
	}
}

func TestParseAge(t *testing.T) {
	tests := []struct {
		values []string
		want   time.Duration
	}{
		{nil, 0},
		{[]string{"30"}, 30 * time.Second},
		{[]string{"abc"}, 0},
		{[]string{"-5"}, 0},
		{[]string{"1.5"}, 0},
		{[]string{"2147483648"}, maxDelta * time.Second},
		{[]string{"9999, 0"}, 9999 * time.Second},
		{[]string{"0, 9999"}, 0},
		{[]string{"0", "9999"}, 0},
	}
	for _, tt := range tests {
		if got := parseAge(tt.values); got != tt.want {
			t.Errorf("parseAge(%q) = %v, want %v", tt.values, got, tt.want)
		}
	}
}

func TestParseHTTPDate(t *testing.T) {
	tests := []struct {
		value string
		ok    bool
	}{
		{"Thu, 18 Aug 2050 02:01:18 GMT", true},
		{"THU, 18 AUG 2050 02:01:18 GMT", true},
		{"Thu, 18 Aug 2050 02:01:18 UTC", false},
		{"Thu, 18 Aug 50 02:01:18 GMT", false},
		{"Thu 18 Aug 2050 02:01:18 GMT", false},
		{"Thu, 18  Aug  2050 02:01:18 GMT", false},
		{"Thu, 18-Aug-2050 02:01:18 GMT", false},
		{"Thu, 18 Aug 2050 02.01.18 GMT", false},
		{"Thu, 18 Aug 2050 2:01:18 GMT", false},
		{"Thu, 18 Aug 2050 02:01:18 gMT", true},
		{"Thursday, 18-Aug-50 02:01:18 GMT", true},
		{"Thursday, 18-Aug-50 02:01:18 UTC", false},
		{"Thu Aug 18 02:01:18 2050", true},
		{"Thu Aug  8 02:01:18 2050", true},
		{"Thu Aug 8 02:01:18 2050", false},
		{"0", false},
	}
	for _, tt := range tests {
		if _, ok := parseHTTPDate([]string{tt.value}); ok != tt.ok {
			t.Errorf("parseHTTPDate(%q) ok = %v, want %v", tt.value, ok, tt.ok)
		}
	}
	if _, ok := parseHTTPDate([]string{"Thu, 18 Aug 2050 02:01:18 GMT", "Thu, 18 Aug 2050 02:01:19 GMT"}); ok {
		t.Error("parseHTTPDate(two lines) ok = true, want false")
	}
}

func TestParseCDNCacheControl(t *testing.T) {
	tests := []struct {
		value  string
		ok     bool
		maxAge time.Duration
	}{
		{"max-age=60", true, time.Minute},
		{"foobar, max-age=60", true, time.Minute},
		{"max-age=60;a=1, private", true, time.Minute},
		{"foo", true, -1},
		{"max-age=60, &&&&&", false, -1},
		{`max-age="60"`, false, -1},
		{"MaX-aGe=60", false, -1},
		{"max-age =60", false, -1},
		{"max-age= 60", false, -1},
		{"max-age=6.0", false, -1},
		{"max-age", false, -1},
		{"max-age=60,", false, -1},
		{"", false, -1},
	}
	for _, tt := range tests {
		d, ok := parseCDNCacheControl([]string{tt.value})
		if ok != tt.ok || ok && d.delta[ccMaxAge] != tt.maxAge {
			t.Errorf("parseCDNCacheControl(%q) = max-age %v, %v; want %v, %v", tt.value, d.delta[ccMaxAge], ok, tt.maxAge, tt.ok)
		}
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &Cache{ttl: time.Hour}
	get := &http.Request{Header: http.Header{}}
	auth := &http.Request{Header: http.Header{"Authorization": {"x"}}}
	date := now.Format(http.TimeFormat)
	tests := []struct {
		name     string
		req      *http.Request
		status   int
		header   http.Header
		store    bool
		lifetime time.Duration
	}{
		{"nothing", get, 200, http.Header{}, false, 0},
		{"max-age", get, 200, http.Header{"Cache-Control": {"max-age=60"}}, true, time.Minute},
		{"capped by the TTL", get, 200, http.Header{"Cache-Control": {"max-age=86400"}}, true, time.Hour},
		{"s-maxage wins", get, 200, http.Header{"Cache-Control": {"max-age=600, s-maxage=60"}}, true, time.Minute},
		{"Expires", get, 200, http.Header{"Date": {date}, "Expires": {now.Add(time.Minute).Format(http.TimeFormat)}}, true, time.Minute},
		{"invalid Expires", get, 200, http.Header{"Expires": {"0"}}, false, 0},
		{"max-age over Expires", get, 200, http.Header{"Cache-Control": {"max-age=60"}, "Expires": {"0"}}, true, time.Minute},
		{"public", get, 200, http.Header{"Cache-Control": {"public"}}, true, time.Hour},
		{"heuristic", get, 200, http.Header{"Date": {date}, "Last-Modified": {now.Add(-10 * time.Hour).Format(http.TimeFormat)}}, true, time.Hour},
		{"heuristic not for 403", get, 403, http.Header{"Date": {date}, "Last-Modified": {now.Add(-10 * time.Hour).Format(http.TimeFormat)}}, true, 0},
		{"validators only", get, 200, http.Header{"Etag": {`"x"`}}, true, 0},
		{"private", get, 200, http.Header{"Cache-Control": {"private, max-age=60"}}, false, 0},
		{"Authorization", auth, 200, http.Header{"Cache-Control": {"max-age=60"}}, false, 0},
		{"Authorization, public", auth, 200, http.Header{"Cache-Control": {"public, max-age=60"}}, true, time.Minute},
		{"must-understand, known status", get, 200, http.Header{"Cache-Control": {"no-store, must-understand, max-age=60"}}, true, time.Minute},
		{"must-understand, unknown status", get, 599, http.Header{"Cache-Control": {"no-store, must-understand, max-age=60"}}, false, 0},
		{"CDN-Cache-Control", get, 200, http.Header{"Cache-Control": {"max-age=600"}, "Cdn-Cache-Control": {"max-age=60"}}, true, time.Minute},
		{"invalid CDN-Cache-Control", get, 200, http.Header{"Cache-Control": {"max-age=600"}, "Cdn-Cache-Control": {`max-age="60"`}}, true, 10 * time.Minute},
		{"stale-if-error only", get, 200, http.Header{"Cache-Control": {"max-age=0, stale-if-error=60"}}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := c.decide(tt.req, tt.status, tt.header, now, now)
			if p.store != tt.store || p.store && p.lifetime != tt.lifetime {
				t.Errorf("decide(%d, %v) = store %v, lifetime %v; want %v, %v", tt.status, tt.header, p.store, p.lifetime, tt.store, tt.lifetime)
			}
		})
	}
}
