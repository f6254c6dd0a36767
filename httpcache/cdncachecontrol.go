package httpcache

import "strings"

// parseCDNCacheControl parses CDN-Cache-Control (RFC 9213), a Structured
// Field Dictionary (RFC 8941) with Cache-Control's directives. It reports
// false when the field is absent, empty or invalid (not a dictionary, or a
// directive with a value of the wrong type); the cache then follows
// Cache-Control, as RFC 9213 asks.
func parseCDNCacheControl(values []string) (directives, bool) {
	d := newDirectives()
	s := strings.Join(values, ",")
	if strings.TrimLeft(s, " \t") == "" {
		return d, false
	}
	for {
		var key, val string
		var isInt, ok bool
		key, val, isInt, s, ok = sfMember(strings.TrimLeft(s, " \t"))
		if !ok || !d.setCDN(key, val, isInt) {
			return d, false
		}
		var more bool
		if s, more, ok = sfNextMember(s); !ok || !more {
			return d, ok
		}
	}
}

// sfNextMember reads what follows a dictionary member: optional white
// space, then the end of the field (more false) or a comma and the next
// member. ok is false for anything else, and for a trailing comma.
func sfNextMember(s string) (rest string, more, ok bool) {
	s = strings.TrimLeft(s, " \t")
	if s == "" {
		return "", false, true
	}
	if s[0] != ',' {
		return s, false, false
	}
	s = s[1:]
	return s, true, strings.TrimLeft(s, " \t") != ""
}

// sfMember parses one dictionary member at the start of s: its key, its
// value as written ("" for a bare key, which is Boolean true), whether the
// value is an Integer, and the rest of s. Parameters are skipped.
func sfMember(s string) (key, val string, isInt bool, rest string, ok bool) {
	key, s, ok = sfKey(s)
	if !ok {
		return "", "", false, "", false
	}
	if strings.HasPrefix(s, "=") {
		if val, isInt, s, ok = sfItem(s[1:]); !ok {
			return "", "", false, "", false
		}
	}
	if s, ok = sfSkipParams(s); !ok {
		return "", "", false, "", false
	}
	return key, val, isInt, s, true
}

// sfKey reads the key at the start of s: a lower-case letter or "*", then
// lower-case letters, digits, "_", "-", "." and "*".
func sfKey(s string) (key, rest string, ok bool) {
	i := 0
	for i < len(s) && (isLower(s[i]) || s[i] == '*' || i > 0 && (isDigit(s[i]) || strings.IndexByte("_-.", s[i]) >= 0)) {
		i++
	}
	return s[:i], s[i:], i > 0
}

// sfSkipParams skips the parameters (";key" or ";key=item") at the start
// of s.
func sfSkipParams(s string) (rest string, ok bool) {
	for strings.HasPrefix(s, ";") {
		if _, s, ok = sfKey(strings.TrimLeft(s[1:], " ")); !ok {
			return "", false
		}
		if strings.HasPrefix(s, "=") {
			if _, _, s, ok = sfItem(s[1:]); !ok {
				return "", false
			}
		}
	}
	return s, true
}

// sfItem parses a bare item at the start of s: an Integer or Decimal, a
// String, a Token, a Byte Sequence or a Boolean. It returns the item as
// written, whether it is an Integer, and the rest of s.
func sfItem(s string) (val string, isInt bool, rest string, ok bool) {
	var n int
	switch {
	case s == "":
	case s[0] == '-' || isDigit(s[0]):
		n, isInt = sfNumber(s)
	case s[0] == '"':
		n = sfString(s)
	case s[0] == ':':
		n = sfByteSequence(s)
	case s[0] == '?':
		n = sfBoolean(s)
	case isTokenStart(s[0]):
		n = sfToken(s)
	}
	if n == 0 {
		return "", false, "", false
	}
	return s[:n], isInt, s[n:], true
}

// sfNumber returns the length of the Integer or Decimal at the start of s
// (0 when it is invalid) and whether it is an Integer: at most 15 digits,
// or a Decimal with digits on both sides of its point.
func sfNumber(s string) (n int, isInt bool) {
	i, dot := 1, false
	for i < len(s) && (isDigit(s[i]) || s[i] == '.' && !dot) {
		dot = dot || s[i] == '.'
		i++
	}
	if !validNumber(strings.TrimPrefix(s[:i], "-"), dot) {
		return 0, false
	}
	return i, !dot
}

// validNumber reports whether digits, a number without its sign, is a
// valid Integer (at most 15 digits) or, with a point (dot), a Decimal
// with digits after it.
func validNumber(digits string, dot bool) bool {
	return digits != "" && digits[len(digits)-1] != '.' && (dot || len(digits) <= 15)
}

// sfString returns the length of the String (quoted, with backslash
// escapes) at the start of s, or 0 when it is not closed.
func sfString(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return 0
}

// sfByteSequence returns the length of the Byte Sequence (between colons)
// at the start of s, or 0 when it is not closed.
func sfByteSequence(s string) int {
	if j := strings.IndexByte(s[1:], ':'); j >= 0 {
		return j + 2
	}
	return 0
}

// sfBoolean returns the length of the Boolean (?0 or ?1) at the start of
// s, or 0 when it is not one.
func sfBoolean(s string) int {
	if len(s) > 1 && (s[1] == '0' || s[1] == '1') {
		return 2
	}
	return 0
}

// isTokenStart reports whether c can begin a Token: an ASCII letter or
// "*".
func isTokenStart(c byte) bool {
	return isLower(c) || c >= 'A' && c <= 'Z' || c == '*'
}

// sfToken returns the length of the Token at the start of s: its first
// character, then visible ASCII characters other than delimiters.
func sfToken(s string) int {
	i := 1
	for i < len(s) && s[i] > ' ' && s[i] < 0x7f && !strings.ContainsRune(`,;"()<>@[]{}\=`, rune(s[i])) {
		i++
	}
	return i
}

// isLower reports whether c is a lower-case ASCII letter.
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }

// isDigit reports whether c is an ASCII digit.
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
