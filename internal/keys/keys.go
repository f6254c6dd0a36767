// Package keys builds the Redis keys cachemgr writes.
//
// A data key is "prefix:name:{=key}", or "prefix:name:v<version>:{=key}" in
// a versioned cache. The braces are a Redis Cluster hash tag, so a key and
// its companions (invalidation marker, lease) share one slot and one script
// can touch them all, while different keys of a cache spread over every
// slot. The prefix and name may not contain braces, so the first "{" of a key
// is always ours, and "}" in user input is escaped, so user input cannot
// pick the slot. A user key longer than the limit becomes
// "{#=<SHA-256 in base64url>:<its first min(HashKeep, limit) bytes>}" (so prefix scans
// still find it by its head); "{=" and "{#" keep the two forms apart. The
// version key is "prefix:name:~v". Tag stamp keys are "prefix:~tag:{t<tag>}"
// and the tag epoch "prefix:~tagepoch"; neither collides with data keys,
// which always have "{=" or "{#".
package keys

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid reports a prefix or cache name that cannot be used in a key.
var ErrInvalid = errors.New("keys: invalid name")

// Suffixes of companion keys; they end the key, after the hash tag.
const (
	markerSuffix  = ":i"
	leaseSuffix   = ":l"
	waitersSuffix = ":w"
)

// Builder builds keys for one cache. The zero value is not usable.
type Builder struct {
	base   string // "prefix:name:"
	maxLen int
}

// ValidatePrefix reports whether s can be a key prefix: braces are not
// allowed, since they would move the hash tag.
func ValidatePrefix(s string) error {
	if strings.ContainsAny(s, "{}") {
		return fmt.Errorf("%w: prefix %q contains a brace", ErrInvalid, s)
	}
	return nil
}

// ValidateName reports whether s can be a cache name: non-empty, at most
// 128 bytes, without braces or colons, so that "prefix:name:" parses one way.
func ValidateName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty cache name", ErrInvalid)
	case len(s) > 128:
		return fmt.Errorf("%w: cache name of %d bytes, limit 128", ErrInvalid, len(s))
	case strings.ContainsAny(s, "{}:"):
		return fmt.Errorf("%w: cache name %q contains a brace or colon", ErrInvalid, s)
	}
	return nil
}

// New returns a Builder for prefix and name, which the caller has
// validated. User keys longer than maxLen bytes are hashed.
func New(prefix, name string, maxLen int) Builder {
	base := name + ":"
	if prefix != "" {
		base = prefix + ":" + base
	}
	return Builder{base: base, maxLen: maxLen}
}

// Base returns "prefix:name:", the part every key of the cache starts with.
func (b Builder) Base() string { return b.base }

// HashKeep is how many leading bytes of a hashed user key stay readable in
// its Redis key.
const HashKeep = 32

// hashLen is the length of a SHA-256 in unpadded base64url.
const hashLen = 43

// Key returns the data key for the user key k.
func (b Builder) Key(k string) string {
	return b.base + tagged('=', k, b.maxLen)
}

// KeyAt returns the data key for the user key k under namespace version v.
func (b Builder) KeyAt(v, k string) string {
	return b.base + "v" + v + ":" + tagged('=', k, b.maxLen)
}

// Version returns the key holding the cache's current namespace version.
func (b Builder) Version() string { return b.base + "~v" }

// tagged returns "{" + kind + k + "}", or its hashed form when k is longer
// than maxLen. A "}" in k would end the hash tag early and let user input
// choose the slot, so it is escaped as "%7D" (and "%" as "%25", to keep
// the mapping one-to-one).
func tagged(kind byte, k string, maxLen int) string {
	if len(k) <= maxLen {
		return "{" + string(kind) + escape(k) + "}"
	}
	sum := sha256.Sum256([]byte(k))
	return "{#" + string(kind) + base64.RawURLEncoding.EncodeToString(sum[:]) + ":" + escape(k[:min(HashKeep, maxLen)]) + "}"
}

// escape replaces "%" with "%25" and "}" with "%7D".
func escape(k string) string {
	if !strings.ContainsAny(k, "%}") {
		return k
	}
	return strings.NewReplacer("%", "%25", "}", "%7D").Replace(k)
}

// Tag returns the key of tag's invalidation stamp: the time of the tag's
// last invalidation. Tagged entries record their tags and a stamp of their
// own, and a read accepts an entry only while every tag's stamp is older, so
// no list of a tag's members is kept anywhere.
func Tag(prefix, tag string, maxLen int) string {
	base := "~tag:"
	if prefix != "" {
		base = prefix + ":" + base
	}
	return base + tagged('t', tag, maxLen)
}

// TagEpoch returns the key that every tag invalidation under prefix
// changes: a load that finds it unchanged since it began knows that no tag
// was invalidated meanwhile, even one whose stamp has since been lost.
func TagEpoch(prefix string) string {
	if prefix == "" {
		return "~tagepoch"
	}
	return prefix + ":~tagepoch"
}

// Patterns returns SCAN MATCH patterns that match the data keys of user keys
// starting with p in namespace base (Base() or a versioned base). Glob
// characters in p are escaped. Hashed keys are matched by their readable
// head, so a p longer than HashKeep does not find them. The patterns also
// match companion keys; IsData tells them apart.
func Patterns(base, p string, maxLen int) []string {
	out := []string{EscapeGlob(base) + "{=" + EscapeGlob(escape(p)) + "*"}
	if len(p) <= min(HashKeep, maxLen) {
		out = append(out, EscapeGlob(base)+"{#="+strings.Repeat("?", hashLen)+":"+EscapeGlob(escape(p))+"*")
	}
	return out
}

// IsData reports whether key is a data key rather than a companion.
func IsData(key string) bool { return strings.HasSuffix(key, "}") }

// EscapeGlob escapes the characters that Redis glob patterns give a meaning:
// * ? [ ] and backslash.
func EscapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// VersionedBase returns the part every key of namespace version v starts
// with.
func (b Builder) VersionedBase(v string) string { return b.base + "v" + v + ":" }

// Marker returns the invalidation marker key that belongs to data key key.
func Marker(key string) string { return key + markerSuffix }

// DataOfMarker returns the data key whose invalidation marker key is, and
// whether key is a marker at all.
func DataOfMarker(key string) (string, bool) {
	data, ok := strings.CutSuffix(key, markerSuffix)
	return data, ok && IsData(data)
}

// Lease returns the lease key that belongs to data key key: it holds the
// token of the process loading or refreshing that key.
func Lease(key string) string { return key + leaseSuffix }

// Waiters returns the key that belongs to data key key while another
// process waits for its lease: the write-back that frees the lease
// publishes that the key is filled when it finds it.
func Waiters(key string) string { return key + waitersSuffix }

// Kind says what a key under a cache's base is (see UserKey).
type Kind int

const (
	// Other is a companion key (marker, lease) or not one of ours.
	Other Kind = iota
	// Plain is the data key of a user key.
	Plain
	// Hashed is the data key of a user key too long to keep, hashed.
	Hashed
	// Namespace is the key of the cache's namespace version.
	Namespace
)

// UserKey inverts Key and KeyAt for rest, a key with its cache's Base cut
// off: a Plain data key gives its user key, a Hashed one the readable head
// of its user key (its first HashKeep bytes at most), the namespace version
// key gives Namespace, anything else Other.
func UserKey(rest string) (string, Kind) {
	if rest == "~v" {
		return "", Namespace
	}
	i := strings.IndexByte(rest, '{')
	if i < 0 || !IsData(rest) {
		return "", Other
	}
	inner := rest[i+1 : len(rest)-1]
	switch {
	case strings.HasPrefix(inner, "="):
		return unescape(inner[1:]), Plain
	case strings.HasPrefix(inner, "#=") && len(inner) > 2+hashLen && inner[2+hashLen] == ':':
		return unescape(inner[3+hashLen:]), Hashed
	}
	return "", Other
}

// unescape reverses escape.
func unescape(k string) string {
	if !strings.Contains(k, "%") {
		return k
	}
	return strings.NewReplacer("%7D", "}", "%25", "%").Replace(k)
}
