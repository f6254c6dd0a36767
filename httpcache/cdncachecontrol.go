package httpcache

import "strings"

// parseCDNCacheControl parses CDN-Cache-Control (RFC 9213), a Structured
// Field Dictionary (RFC 8941) with Cache-Control's directives. It reports
// false when the field is absent or invalid (not a dictionary, or a
// directive with a value of the wrong type); the cache then follows
// Cache-Control, as RFC 9213 asks.
func parseCDNCacheControl(values []string) (directives, bool) {
	d := newDirectives()
	if len(values) == 0 {
		return d, false
	}
	s := strings.Join(values, ",")
	for first := true; ; first = false {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			if first {
				return d, false
			}
			return d, true
		}
		var key, val string
		var isInt, ok bool
		key, val, isInt, s, ok = sfMember(s)
		if !ok {
			return d, false
		}
		switch key {
		case "no-store", "no-cache", "private", "public", "must-revalidate", "proxy-revalidate", "must-understand":
			if val != "" {
				return d, false // a Boolean true is written without a value
			}
			d.flag(key)
		case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error":
			if !isInt || strings.HasPrefix(val, "-") {
				return d, false
			}
			n, _ := parseDelta(val)
			switch key {
			case "max-age":
				d.maxAge = n
			case "s-maxage":
				d.sMaxAge = n
			case "stale-while-revalidate":
				d.staleWhileRevalidate = n
			case "stale-if-error":
				d.staleIfError = n
			}
		}
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return d, true
		}
		if s[0] != ',' {
			return d, false
		}
		s = s[1:]
		if strings.TrimLeft(s, " \t") == "" {
			return d, false // a trailing comma
		}
	}
}

// sfMember parses one dictionary member at the start of s: its key, its
// value as written ("" for a bare key, which is Boolean true), whether the
// value is an Integer, and the rest of s. Parameters are skipped.
func sfMember(s string) (key, val string, isInt bool, rest string, ok bool) {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] == '*' ||
		i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '_' || s[i] == '-' || s[i] == '.')) {
		i++
	}
	if i == 0 {
		return "", "", false, "", false
	}
	key, s = s[:i], s[i:]
	if strings.HasPrefix(s, "=") {
		s = s[1:]
		if val, isInt, s, ok = sfItem(s); !ok {
			return "", "", false, "", false
		}
	}
	for strings.HasPrefix(s, ";") {
		s = strings.TrimLeft(s[1:], " ")
		j := 0
		for j < len(s) && (s[j] >= 'a' && s[j] <= 'z' || s[j] == '*' ||
			j > 0 && (s[j] >= '0' && s[j] <= '9' || s[j] == '_' || s[j] == '-' || s[j] == '.')) {
			j++
		}
		if j == 0 {
			return "", "", false, "", false
		}
		s = s[j:]
		if strings.HasPrefix(s, "=") {
			if _, _, s, ok = sfItem(s[1:]); !ok {
				return "", "", false, "", false
			}
		}
	}
	return key, val, isInt, s, true
}

// sfItem parses a bare item at the start of s: an Integer or Decimal, a
// String, a Token, a Byte Sequence or a Boolean.
func sfItem(s string) (val string, isInt bool, rest string, ok bool) {
	if s == "" {
		return "", false, "", false
	}
	switch c := s[0]; {
	case c == '-' || c >= '0' && c <= '9':
		i, dot := 1, false
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' && !dot) {
			dot = dot || s[i] == '.'
			i++
		}
		digits := strings.TrimPrefix(s[:i], "-")
		if digits == "" || digits[len(digits)-1] == '.' || !dot && len(digits) > 15 {
			return "", false, "", false
		}
		return s[:i], !dot, s[i:], true
	case c == '"':
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				return s[:i+1], false, s[i+1:], true
			}
		}
		return "", false, "", false
	case c == ':':
		if j := strings.IndexByte(s[1:], ':'); j >= 0 {
			return s[:j+2], false, s[j+2:], true
		}
		return "", false, "", false
	case c == '?':
		if len(s) > 1 && (s[1] == '0' || s[1] == '1') {
			return s[:2], false, s[2:], true
		}
		return "", false, "", false
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '*':
		i := 1
		for i < len(s) && s[i] > ' ' && s[i] < 0x7f && !strings.ContainsRune(`,;"()<>@[]{}\=`, rune(s[i])) {
			i++
		}
		return s[:i], false, s[i:], true
	}
	return "", false, "", false
}
