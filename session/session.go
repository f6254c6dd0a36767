package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// MaxFieldLen is the longest field name, in bytes.
const MaxFieldLen = 256

// createScript makes a new session hash, unless the key exists. The
// deadline is in the key, so the caller picks it; the script refuses one
// more than clockTolerance away from Redis's clock (now + lifetime) and
// returns Redis's instead, for the caller to try again with. It writes the
// deadline field and the fields, and sets the TTL to the idle timeout,
// capped at the deadline. It returns 1 once created, -1 when the key is
// taken, or the deadline to use.
//
// KEYS[1] the key; ARGV[1] the deadline field, ARGV[2] the deadline,
// ARGV[3] idle ms, ARGV[4] lifetime ms, ARGV[5] the tolerance in ms, then
// field, value pairs.
var createScript = redis.NewScript(`
local t = redis.call('TIME')
local d = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
if math.abs(d - tonumber(ARGV[2])) > tonumber(ARGV[5]) then return d end
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 6, #ARGV, 2 do
	redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'LT')
return 1
`)

// clockTolerance is how far the deadline a process proposes for a new
// session may be from the one Redis's clock gives.
const clockTolerance = time.Second

// renewScript moves a session to a new key of the same hash tag, keeping
// its data and deadline, and restarts its idle timeout. It returns 1, 0
// when the old key holds no session, or -1 when the new key is taken.
//
// KEYS[1] the old key, KEYS[2] the new key; ARGV[1] the deadline field,
// ARGV[2] the deadline, ARGV[3] idle ms.
var renewScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], ARGV[2], 'LT')
return 1
`)

// repairScript settles a key that a write found without a TTL: a session
// (one with the deadline field) gets its TTL back and 1 is returned;
// anything else is what the write left at an unknown ID, and is deleted.
//
// KEYS[1] the key; ARGV[1] the deadline field, ARGV[2] the deadline,
// ARGV[3] idle ms.
var repairScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
	redis.call('PEXPIRE', KEYS[1], ARGV[3])
	redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'LT')
	return 1
end
redis.call('DEL', KEYS[1])
return 0
`)

// repairTimeout bounds the repair after a write to an unknown ID, which
// runs even when the caller's context has ended, so that no key is left
// without a TTL.
const repairTimeout = 5 * time.Second

// idTries bounds the tries to create or renew a session: a draw whose key
// is taken, which with 144 random bits does not happen unless the random
// source is broken, and a deadline Redis's clock corrected.
const idTries = 3

// errNoFreeID reports idTries draws of an ID whose key was taken.
var errNoFreeID = errors.New("session: no free ID after several draws")

// Session is one session as seen by one unit of work, such as a request. It
// reads fields from Redis when first asked and remembers them, and it keeps
// changes (Set, Delete) until Save writes them, all in one round trip and
// only the fields that changed. Every call that reaches Redis also restarts
// the idle timeout, in the same round trip.
//
// A Session whose ID Redis does not know (never issued, expired, destroyed,
// forged) behaves as a new, empty session: reads find no field, and Save
// creates a session under a fresh ID. It never reads or writes another
// session.
//
// A Session is safe for concurrent use. It is not a cache: open a new one
// for each request, or its reads may be old.
type Session struct {
	st *Store

	mu       sync.Mutex
	id       parsedID // zero while the session is new
	key      string   // "" while new
	deadline string   // id.deadline as the hash stores it
	loaded   map[string]loadedValue
	pending  map[string][]byte // nil value: delete the field
	// For the middleware: w is its writer, nil outside it; sendCookie and
	// clearCookie say what the response must do with the cookie.
	w           *writer
	sendCookie  bool
	clearCookie bool
}

// loadedValue is a field as read from Redis.
type loadedValue struct {
	v  string
	ok bool // false: the session has no such field
}

// setID makes p the session's ID.
func (s *Session) setID(p parsedID) {
	s.id = p
	s.key = s.st.key(p.id)
	s.deadline = formatDeadline(p.deadline)
}

// reset turns s into a new, empty session, keeping unsaved changes: the
// ID it had is unknown to Redis, or gone.
func (s *Session) reset() {
	if s.key != "" {
		s.clearCookie = true
	}
	s.id, s.key, s.deadline = parsedID{}, "", ""
	s.loaded = nil
	s.sendCookie = false
}

// ID returns the session's ID, the value of its cookie, or "" for a new
// session that Save has not written yet.
func (s *Session) ID() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id.id
}

// validField reports whether name can be a field name.
func validField(name string) error {
	if name == "" || len(name) > MaxFieldLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w: %q", ErrInvalidField, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q", ErrInvalidField, name)
		}
	}
	return nil
}

// Get returns the field of s decoded into a T. It calls Redis only the first
// time s is asked for the field, or not at all after Load, Set or Delete of
// it; that call also restarts the idle timeout. A field the session does not
// hold returns ErrNoField; a stored value that does not decode into T
// returns ErrDecode and the zero T, and leaves every other field readable.
func Get[T any](ctx context.Context, s *Session, field string) (T, error) {
	var v T
	if s == nil {
		return v, ErrNoSession
	}
	if err := validField(field); err != nil {
		return v, err
	}
	b, err := s.raw(ctx, field)
	if err != nil {
		return v, err
	}
	if err := s.st.decode(b, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: %q into %T: %w", ErrDecode, field, v, err)
	}
	return v, nil
}

// raw returns the stored bytes of field.
func (s *Session) raw(ctx context.Context, field string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.pending[field]; ok {
		if b == nil {
			return nil, fmt.Errorf("%w: %q", ErrNoField, field)
		}
		return b, nil
	}
	lv, ok := s.loaded[field]
	if !ok && s.key != "" {
		if err := s.fetch(ctx, []string{field}); err != nil {
			return nil, err
		}
		lv, ok = s.loaded[field]
	}
	if !ok || !lv.ok {
		return nil, fmt.Errorf("%w: %q", ErrNoField, field)
	}
	// Codecs neither keep nor change what they decode, so the string's
	// bytes serve as they are.
	return unsafe.Slice(unsafe.StringData(lv.v), len(lv.v)), nil
}

// Load reads fields in one round trip, so that Get answers them without
// calling Redis. Fields already read or changed are not read again, and
// Load makes no call when none is left. Fields the session does not hold
// are remembered as absent. The error is for the call as a whole; a field
// that does not decode is reported by its Get.
func (s *Session) Load(ctx context.Context, fields ...string) error {
	if s == nil {
		return ErrNoSession
	}
	for _, f := range fields {
		if err := validField(f); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key == "" {
		return nil
	}
	need := make([]string, 0, len(fields))
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		_, pending := s.pending[f]
		_, loaded := s.loaded[f]
		if !pending && !loaded && !seen[f] {
			seen[f] = true
			need = append(need, f)
		}
	}
	if len(need) == 0 {
		return nil
	}
	return s.fetch(ctx, need)
}

// Set encodes v as the new value of field. Nothing is written until Save.
// It returns an error, and changes nothing, when the name is invalid or v
// does not encode.
func (s *Session) Set(field string, v any) error {
	if s == nil {
		return ErrNoSession
	}
	if err := validField(field); err != nil {
		return err
	}
	b, err := s.st.encode(v)
	if err != nil {
		return fmt.Errorf("session: encode %q: %w", field, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = make(map[string][]byte)
	}
	s.pending[field] = b
	return nil
}

// Delete removes fields from the session. Nothing is written until Save.
func (s *Session) Delete(fields ...string) error {
	if s == nil {
		return ErrNoSession
	}
	for _, f := range fields {
		if err := validField(f); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = make(map[string][]byte, len(fields))
	}
	for _, f := range fields {
		s.pending[f] = nil
	}
	return nil
}

// Save writes the changes made by Set and Delete since the last Save, in
// one round trip: only those fields are written, so concurrent Saves of
// other fields of the same session are kept. A new session (or one Redis
// no longer knows) is created under a fresh ID, which ID then returns and
// the middleware sends as the cookie. Save with no changes makes no call.
// When Save fails the changes stay pending.
func (s *Session) Save(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.save(ctx)
}

func (s *Session) save(ctx context.Context) error {
	if len(s.pending) == 0 {
		return nil
	}
	if s.key != "" {
		ok, err := s.write(ctx)
		if err != nil {
			return err
		}
		if ok {
			s.applyPending()
			return nil
		}
		// The session is unknown; write reset s to new.
	}
	if !s.hasSets() {
		s.pending = nil
		return nil
	}
	if s.w != nil && s.w.committed {
		return ErrHeadersWritten
	}
	if err := s.create(ctx); err != nil {
		return err
	}
	s.applyPending()
	return nil
}

// hasSets reports whether any pending change is a Set.
func (s *Session) hasSets() bool {
	for _, b := range s.pending {
		if b != nil {
			return true
		}
	}
	return false
}

// applyPending records the pending changes as read, since Redis now holds
// them, and clears them.
func (s *Session) applyPending() {
	if s.loaded == nil {
		s.loaded = make(map[string]loadedValue, len(s.pending))
	}
	for f, b := range s.pending {
		if b == nil {
			s.loaded[f] = loadedValue{}
		} else {
			// b came from encode and nothing changes it any more.
			s.loaded[f] = loadedValue{v: unsafe.String(unsafe.SliceData(b), len(b)), ok: true}
		}
	}
	s.pending = nil
}

// needCap reports whether a call must also cap the TTL at the deadline.
// Far from the deadline the idle timeout ends first and the cap would be a
// no-op, so it is left out; the margin of an idle timeout and a minute
// absorbs any skew between this process's clock and Redis's, which alone
// decides when the key expires.
func (s *Session) needCap() bool {
	return time.UnixMilli(s.id.deadline).Sub(s.st.now()) < 2*s.st.idle+time.Minute
}

// fetch reads fields into s.loaded, with the deadline field that every
// session has, and restarts the idle timeout, in one round trip. If the
// key holds no session, s becomes new.
func (s *Session) fetch(ctx context.Context, fields []string) error {
	args := make([]string, 0, len(fields)+1)
	args = append(append(args, deadlineField), fields...)
	pipe := s.st.client.Pipeline()
	hm := pipe.HMGet(ctx, s.key, args...)
	exists := pipe.PExpire(ctx, s.key, s.st.idle)
	if s.needCap() {
		pipe.Do(ctx, "PEXPIREAT", s.key, s.deadline, "LT")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return redisErr(ctx, err)
	}
	vals := hm.Val()
	if len(vals) != len(args) {
		return fmt.Errorf("%w: HMGET returned %d values for %d fields", errBadReply, len(vals), len(args))
	}
	if vals[0] != s.deadline {
		if exists.Val() {
			// A hash without the deadline field is what a write to an
			// unknown ID left; the PEXPIRE above gave it a TTL in any case.
			_ = s.st.client.Del(ctx, s.key).Err()
		}
		s.reset()
		return nil
	}
	if s.loaded == nil {
		s.loaded = make(map[string]loadedValue, len(fields))
	}
	for i, f := range fields {
		v, ok := vals[i+1].(string)
		s.loaded[f] = loadedValue{v: v, ok: ok}
	}
	return nil
}

// errBadReply reports a reply of a shape Redis does not send.
var errBadReply = errors.New("session: unexpected reply")

// write sends the pending changes and restarts the idle timeout in one
// round trip. PEXPIRE XX finds out, in the same round trip, whether the key
// held a session: every session has a TTL, and a key the HSET has just
// created has none. It reports false, with s reset to new, when the key
// held no session; the hash the changes made is then deleted.
func (s *Session) write(ctx context.Context) (bool, error) {
	sets := make([]any, 0, 2*len(s.pending))
	var dels []string
	for f, b := range s.pending {
		if b == nil {
			dels = append(dels, f)
		} else {
			sets = append(sets, f, b)
		}
	}
	pipe := s.st.client.Pipeline()
	if len(sets) > 0 {
		pipe.HSet(ctx, s.key, sets...)
	}
	if len(dels) > 0 {
		pipe.HDel(ctx, s.key, dels...)
	}
	live := redis.NewBoolCmd(ctx, "pexpire", s.key, s.st.idle.Milliseconds(), "xx")
	_ = pipe.Process(ctx, live)
	if s.needCap() {
		pipe.Do(ctx, "PEXPIREAT", s.key, s.deadline, "LT")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, redisErr(ctx, err)
	}
	if live.Val() {
		return true, nil
	}
	// Even if the caller has gone, the key must not stay without a TTL.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), repairTimeout)
	defer cancel()
	n, err := repairScript.Run(rctx, s.st.client, []string{s.key},
		deadlineField, s.deadline, s.st.idle.Milliseconds()).Int64()
	if err != nil {
		return false, redisErr(ctx, err)
	}
	if n == 1 {
		return true, nil
	}
	s.reset()
	return false, nil
}

// create writes the pending fields as a new session under a fresh ID. The
// deadline is now plus the lifetime by this process's clock, corrected by
// what Redis's clock said last time; if Redis's clock disagrees by more
// than clockTolerance, its deadline is used and remembered.
func (s *Session) create(ctx context.Context) error {
	args := make([]any, 5, 5+2*len(s.pending))
	args[0], args[2], args[3], args[4] = deadlineField, s.st.idle.Milliseconds(), s.st.lifetime.Milliseconds(), clockTolerance.Milliseconds()
	for f, b := range s.pending {
		if b != nil {
			args = append(args, f, b)
		}
	}
	local := s.st.now().Add(s.st.lifetime).UnixMilli()
	deadline := local + s.st.skew.Load()
	var r [tagLen + secretLen]byte
	for range idTries {
		s.st.random(r[:])
		p := makeID(r[:tagLen], r[tagLen:], deadline)
		args[1] = p.deadline
		n, err := createScript.Run(ctx, s.st.client, []string{s.st.key(p.id)}, args...).Int64()
		if err != nil {
			return redisErr(ctx, err)
		}
		switch {
		case n == 1:
			s.setID(p)
			s.sendCookie, s.clearCookie = true, false
			return nil
		case n > 1:
			deadline = n
			s.st.skew.Store(n - local)
		}
	}
	return errNoFreeID
}

// Destroy deletes the session from Redis and discards unsaved changes. s is
// then a new, empty session, and the middleware clears the cookie unless
// the session is saved again. Destroying a new session makes no call.
func (s *Session) Destroy(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != "" {
		if err := s.st.client.Del(ctx, s.key).Err(); err != nil {
			return redisErr(ctx, err)
		}
	}
	s.pending = nil
	s.reset()
	return nil
}

// Renew moves the session to a new ID and keeps its data, its deadline and
// unsaved changes, in one atomic step: the old ID stops working at once. Call
// it when the privileges behind a session change, as at login, so that an
// ID planted in the victim's browser before (session fixation) is worth
// nothing after. The new ID keeps the old one's first 48 bits (its Redis
// Cluster hash tag) and its deadline, and has 144 new random bits.
//
// A new session has no ID yet, so Renew does nothing for it; Save will draw
// a fresh one. A session Redis does not know becomes new. A request that
// still uses the old ID while Renew runs sees an unknown session.
func (s *Session) Renew(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key == "" {
		return nil
	}
	if s.w != nil && s.w.committed {
		return ErrHeadersWritten
	}
	var secret [secretLen]byte
	for range idTries {
		s.st.random(secret[:])
		next := parsedID{id: s.id.id[:tagChars] + encodeSecret(secret[:]) + s.id.id[tagChars+secretChars:], deadline: s.id.deadline}
		n, err := renewScript.Run(ctx, s.st.client, []string{s.key, s.st.key(next.id)},
			deadlineField, s.deadline, s.st.idle.Milliseconds()).Int64()
		if err != nil {
			return redisErr(ctx, err)
		}
		switch n {
		case 1:
			s.setID(next)
			s.sendCookie, s.clearCookie = true, false
			return nil
		case 0:
			s.reset()
			return nil
		}
	}
	return errNoFreeID
}
