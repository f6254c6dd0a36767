// Package session keeps HTTP sessions in Redis, one hash per session and
// one hash field per value, on a cachemgr Manager's client and key prefix.
//
//	sessions, err := session.New(m, session.WithIdleTimeout(30*time.Minute))
//	mux.Handle("/", sessions.Middleware(app))
//
//	// in a handler
//	s := sessions.From(r.Context())
//	user, err := session.Get[User](r.Context(), s, "user")
//	s.Set("cart", cart) // written, alone, before the response goes out
//
// # Fields, not blobs
//
// A field is read and written on its own: [Get] reads one field (HMGET),
// [Session.Load] several in one round trip, and [Session.Save] writes only
// the fields that [Session.Set] and [Session.Delete] changed (HSET, HDEL).
// So two requests of one user that change different fields at the same time
// both keep their change, where libraries that store the session as one
// encoded blob keep only the last writer's copy. A stored value that does
// not decode into the type asked for is an error ([ErrDecode]) for that
// field alone.
//
// # Expiry
//
// A session ends after an idle timeout ([WithIdleTimeout]) without use, and
// at the latest a lifetime ([WithLifetime]) after its creation. Both are
// Redis TTLs, so Redis's clock decides when a session ends. Every read and
// write restarts the idle timeout with a PEXPIRE sent in the same pipeline
// as the command, so it costs no extra round trip; when the deadline is
// nearer than twice the idle timeout plus a minute, the same pipeline caps
// the TTL at the deadline (PEXPIREAT ... LT). The deadline is fixed at creation, checked
// against Redis's clock, and is part of the ID. A request that does not
// touch the session does not extend it.
//
// # IDs
//
// An ID is 40 base64url characters: 192 random bits from crypto/rand and
// the deadline. [Session.Renew] moves the data to a new ID atomically,
// keeping 48 bits (the Redis Cluster hash tag, so both keys share a slot)
// and drawing 144 new ones; call it at login against session fixation. An
// ID that is malformed, forged, expired or unknown to Redis gives a new,
// empty session, with a fresh ID once something is saved: it never fails
// the request, never reaches another user's data, and is never adopted. A
// write to an unknown ID finds out in its own round trip (PEXPIRE XX: every
// session has a TTL, a hash the write has just created has none) and moves
// to a new session.
//
// # Cluster
//
// A session is one key, and the scripts that touch two keys (Renew) use
// keys of one hash tag, so the package works on Redis Cluster as on a
// single node.
package session
