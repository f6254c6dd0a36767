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
// Redis TTLs, so Redis's clock decides when a session ends. A process's
// clock only decides whether a use sends the refresh: it never ends a
// session, nor keeps one alive that is not used.
//
// Uses restart the idle timeout with a PEXPIRE in the same round trip as
// the read or write, so the refresh costs no extra round trip. To spare
// the second command on most calls, a process sends it at most once per
// refresh interval ([WithRefreshInterval], default a tenth of the idle
// timeout) per session, so a session ends between idle - interval and idle
// after its last use (27 to 30 minutes by default). WithRefreshInterval(0)
// refreshes with every use. When the deadline is nearer than twice the
// idle timeout plus a minute, each refresh also caps the TTL at the
// deadline (PEXPIREAT ... LT). The deadline is fixed at creation, checked
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
// the request, never reaches another user's data, and is never adopted.
// Every session holds a sentinel field from its creation, which each write
// sets again: when HSET reports it added, the write found no session in
// its own round trip, deletes what it made and moves to a new session. A
// read that carries the refresh also checks the deadline field, and finds
// an unknown ID so; between refreshes, a read of a session that ended
// finds no fields.
//
// # Cluster
//
// A session is one key, and the scripts that touch two keys (Renew) use
// keys of one hash tag, so the package works on Redis Cluster as on a
// single node.
package session
