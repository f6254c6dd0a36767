package session

import (
	"encoding/base64"
	"encoding/binary"
)

// A session ID is 30 bytes in unpadded base64url, 40 characters:
//
//	tag (6 random bytes) | secret (18 random bytes) | deadline (6 bytes)
//
// The Redis key is "prefix:name:{tag}secret-and-deadline": the whole ID,
// with the tag as a Redis Cluster hash tag. Renew keeps the tag and the
// deadline and draws a new secret, so the old and the new key share a slot
// and one script can rename the one to the other. The secret is 144 bits
// from crypto/rand. The deadline is the end of the session's lifetime in
// Unix milliseconds, checked against Redis's clock at creation; since it is
// part of the key, an ID with another deadline names another key, which
// holds no session. Every 3-byte group maps to 4 characters, so each part is
// a fixed slice of the string.
const (
	tagLen      = 6
	secretLen   = 18
	deadlineLen = 6
	rawIDLen    = tagLen + secretLen + deadlineLen
	idLen       = rawIDLen / 3 * 4

	tagChars    = tagLen / 3 * 4
	secretChars = secretLen / 3 * 4
)

// deadlineField is the hash field holding the session's deadline, in Unix
// milliseconds as decimal text. Every session has it from its creation; a
// hash without it holds only what a write to an unknown ID left behind,
// and is not a session. Field names users may pass cannot hold a NUL, so
// they never clash with it.
const deadlineField = "\x00deadline"

// sentinelField is a hash field that every session has from its creation,
// with an empty value. Writes set it again: when HSET reports it among the
// fields it added, the key held no session. Unlike the deadline field, a
// hash that such a write leaves does not pass for a session.
const sentinelField = "\x00s"

// parsedID is a well-formed session ID taken apart.
type parsedID struct {
	id       string // the 40 characters
	deadline int64  // Unix ms
}

// parseID reports whether s is a well-formed ID: 40 base64url characters
// whose deadline is positive. It says nothing of whether Redis knows it.
func parseID(s string) (parsedID, bool) {
	if len(s) != idLen {
		return parsedID{}, false
	}
	var raw [rawIDLen]byte
	n, err := base64.RawURLEncoding.Strict().Decode(raw[:], []byte(s))
	if err != nil || n != rawIDLen {
		return parsedID{}, false
	}
	var d [8]byte
	copy(d[8-deadlineLen:], raw[tagLen+secretLen:])
	deadline := int64(binary.BigEndian.Uint64(d[:]))
	if deadline <= 0 {
		return parsedID{}, false
	}
	return parsedID{id: s, deadline: deadline}, true
}

// makeID returns the ID of tag and secret (random bytes, tagLen and
// secretLen long) with the deadline in Unix ms.
func makeID(tag, secret []byte, deadline int64) parsedID {
	var raw [rawIDLen]byte
	copy(raw[:], tag)
	copy(raw[tagLen:], secret)
	var d [8]byte
	binary.BigEndian.PutUint64(d[:], uint64(deadline))
	copy(raw[tagLen+secretLen:], d[8-deadlineLen:])
	return parsedID{id: base64.RawURLEncoding.EncodeToString(raw[:]), deadline: deadline}
}

// key returns the Redis key of the session id.
func (st *Store) key(id string) string {
	return st.base + "{" + id[:tagChars] + "}" + id[tagChars:]
}

// encodeTagSecret returns tag and secret in base64url, the start of an ID.
func encodeTagSecret(tag, secret []byte) string {
	return base64.RawURLEncoding.EncodeToString(tag) + encodeSecret(secret)
}

// encodeSecret returns secret in base64url.
func encodeSecret(secret []byte) string { return base64.RawURLEncoding.EncodeToString(secret) }
