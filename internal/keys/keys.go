// Package keys builds the Redis keys cachemgr writes.
//
// A data key is "prefix:name:{=key}". The braces are a Redis Cluster hash
// tag, so a key and its companions (invalidation marker, lease) share one
// slot and one script can touch them all, while different keys of a cache
// spread over every slot. The prefix and name may not contain braces, so the
// first "{" of a key is always ours and user input cannot pick the slot. A
// user key longer than the limit is replaced by "#" and its SHA-256 in
// base64url; "=" and "#" keep the two forms apart.
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
	markerSuffix = ":i"
	leaseSuffix  = ":l"
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

// Key returns the data key for the user key k.
func (b Builder) Key(k string) string {
	if len(k) > b.maxLen {
		sum := sha256.Sum256([]byte(k))
		return b.base + "{#" + base64.RawURLEncoding.EncodeToString(sum[:]) + "}"
	}
	return b.base + "{=" + k + "}"
}

// Marker returns the invalidation marker key that belongs to data key key.
func Marker(key string) string { return key + markerSuffix }

// Lease returns the refresh lease key that belongs to data key key.
func Lease(key string) string { return key + leaseSuffix }
