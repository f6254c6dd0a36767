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
// Redis TTLs, measured by Redis's clock: the deadline is stamped by Redis
// when the session is created, and every read or write restarts the idle
// timeout (PEXPIRE) in the same pipeline as the command, so it costs no
// extra round trip. When the deadline is nearer than the idle timeout the
// same pipeline caps the TTL at it (PEXPIREAT ... LT). A request that does
// not touch the session does not extend it.
//
// # IDs
//
// An ID is 40 base64url characters: 192 random bits from crypto/rand and
// the session's deadline. [Session.Renew] moves the data to a new ID
// atomically, keeping 48 bits (the Redis Cluster hash tag, so both keys
// share a slot) and drawing 144 new ones; call it at login against session
// fixation. An ID that is malformed, forged, expired or unknown to Redis
// gives a new, empty session, with a fresh ID once something is saved: it
// never fails the request and never reaches another user's data.
//
// # Cluster
//
// A session is one key, and the scripts that touch two keys (Renew) use
// keys of one hash tag, so the package works on Redis Cluster as on a
// single node.
package session
