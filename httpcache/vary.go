package httpcache

import (
	"net/http"
	"slices"
	"strings"
)

// varyNames returns the request header names of Vary values, canonical,
// sorted and without duplicates, or false when one is "*": such a
// response matches no later request and is not stored.
func varyNames(values []string) ([]string, bool) {
	var names []string
	for _, v := range values {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			switch name {
			case "":
			case "*":
				return nil, false
			default:
				names = append(names, http.CanonicalHeaderKey(name))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), true
}

// varyKey returns the secondary key of r for a response that varies on
// names: the values r has for each, normalised so that requests that
// differ only in spacing or line folding share a variant. A header r
// lacks is told apart from an empty one.
func varyKey(r *http.Request, names []string) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	for _, name := range names {
		vs, ok := r.Header[name]
		if !ok {
			b.WriteString("\x00\n")
			continue
		}
		first := true
		for _, v := range vs {
			for _, part := range strings.Split(v, ",") {
				if !first {
					b.WriteByte(',')
				}
				first = false
				b.WriteString(strings.Join(strings.Fields(part), " "))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// match returns the index of the response in e that may answer r, or -1.
func (e *entry) match(r *http.Request) int {
	for i := range e.R {
		if len(e.R[i].Vary) == 0 || varyKey(r, e.R[i].Vary) == e.R[i].VaryKey {
			return i
		}
	}
	return -1
}

// variantNames returns the Vary names of s, or else of the newest
// response in e: the headers that tell r's variant apart.
func variantNames(e entry, s *stored) []string {
	if s != nil {
		return s.Vary
	}
	if len(e.R) > 0 {
		return e.R[0].Vary
	}
	return nil
}

// equalNames reports whether two sorted name lists are equal.
func equalNames(a, b []string) bool { return slices.Equal(a, b) }
