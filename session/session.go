package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// MaxFieldLen is the longest field name, in bytes.
const MaxFieldLen = 256

// clockTolerance is how far the deadline a process proposes for a new
// session may be from the one Redis's clock gives.
const clockTolerance = time.Second

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
// only the fields that changed. Calls that reach Redis also restart the
// idle timeout, in the same round trip, as WithRefreshInterval describes.
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

	mu      sync.Mutex
	id      parsedID // zero while the session is new
	key     string   // "" while new
	loaded  []loadedValue
	pending []change
	// Room for the first field read and the first change, so that a
	// request that reads or changes one field allocates no slice for it.
	loadedBuf  [1]loadedValue
	pendingBuf [1]change
	// For the middleware: w is its writer, nil outside it; sendCookie and
	// clearCookie say what the response must do with the cookie.
	w           *writer
	sendCookie  bool
	clearCookie bool
}

// loadedValue is a field as read from Redis. A request touches a few
// fields, so a slice searched in order serves better than a map.
type loadedValue struct {
	field, v string
	ok       bool // false: the session has no such field
}

// change is a field changed by Set (b, the stored form) or Delete (b nil).
type change struct {
	field string
	b     []byte
}

// findLoaded returns the field as read, and whether it was.
func (s *Session) findLoaded(field string) (loadedValue, bool) {
	for _, lv := range s.loaded {
		if lv.field == field {
			return lv, true
		}
	}
	return loadedValue{}, false
}

// setLoaded records field as read.
func (s *Session) setLoaded(lv loadedValue) {
	for i := range s.loaded {
		if s.loaded[i].field == lv.field {
			s.loaded[i] = lv
			return
		}
	}
	if s.loaded == nil {
		s.loaded = s.loadedBuf[:0]
	}
	s.loaded = append(s.loaded, lv)
}

// findPending returns the pending change of field, and whether there is one.
func (s *Session) findPending(field string) ([]byte, bool) {
	for _, c := range s.pending {
		if c.field == field {
			return c.b, true
		}
	}
	return nil, false
}

// setPending records a change of field: b is its stored form, nil to delete.
func (s *Session) setPending(field string, b []byte) {
	for i := range s.pending {
		if s.pending[i].field == field {
			s.pending[i].b = b
			return
		}
	}
	if s.pending == nil {
		s.pending = s.pendingBuf[:0]
	}
	s.pending = append(s.pending, change{field, b})
}

// setID makes p the session's ID.
func (s *Session) setID(p parsedID) {
	s.id = p
	s.key = s.st.key(p.id)
}

// reset turns s into a new, empty session, keeping unsaved changes: the
// ID it had is unknown to Redis, or gone.
func (s *Session) reset() {
	if s.key != "" {
		s.clearCookie = true
		s.st.refresh.forget(s.key)
	}
	s.id, s.key = parsedID{}, ""
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

// validFields reports the first of fields that cannot be a field name.
func validFields(fields []string) error {
	for _, f := range fields {
		if err := validField(f); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the field of s decoded into a T. It calls Redis only the first
// time s is asked for the field, or not at all after Load, Set or Delete of
// it; that call also restarts the idle timeout when the refresh is due (see
// WithRefreshInterval). A field the session does not hold returns
// ErrNoField; a stored value that does not decode into T returns ErrDecode
// and the zero T, and leaves every other field readable.
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
	if b, ok := s.findPending(field); ok {
		if b == nil {
			return nil, fmt.Errorf("%w: %q", ErrNoField, field)
		}
		return b, nil
	}
	lv, err := s.readField(ctx, field)
	if err != nil {
		return nil, err
	}
	if !lv.ok {
		return nil, fmt.Errorf("%w: %q", ErrNoField, field)
	}
	// Codecs neither keep nor change what they decode, so the string's
	// bytes serve as they are.
	return unsafe.Slice(unsafe.StringData(lv.v), len(lv.v)), nil
}

// readField returns field as Redis holds it: as read before, else read
// now. A new session (no key) holds no field.
func (s *Session) readField(ctx context.Context, field string) (loadedValue, error) {
	if lv, ok := s.findLoaded(field); ok || s.key == "" {
		return lv, nil
	}
	one := [1]string{field}
	if err := s.fetch(ctx, one[:]); err != nil {
		return loadedValue{}, err
	}
	lv, _ := s.findLoaded(field)
	return lv, nil
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
	if err := validFields(fields); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key == "" {
		return nil
	}
	need := s.unread(fields)
	if len(need) == 0 {
		return nil
	}
	return s.fetch(ctx, need)
}

// unread returns the fields neither read nor changed yet, each once.
func (s *Session) unread(fields []string) []string {
	need := make([]string, 0, len(fields))
	for _, f := range fields {
		_, pending := s.findPending(f)
		_, loaded := s.findLoaded(f)
		if !pending && !loaded && !slices.Contains(need, f) {
			need = append(need, f)
		}
	}
	return need
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
	s.setPending(field, b)
	return nil
}

// Delete removes fields from the session. Nothing is written until Save.
func (s *Session) Delete(fields ...string) error {
	if s == nil {
		return ErrNoSession
	}
	if err := validFields(fields); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fields {
		s.setPending(f, nil)
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
	if s.headersWritten() {
		return ErrHeadersWritten
	}
	if err := s.create(ctx); err != nil {
		return err
	}
	s.applyPending()
	return nil
}

// headersWritten reports whether the middleware's response headers are on
// their way, with or without a cookie: the ID can no longer change.
func (s *Session) headersWritten() bool {
	return s.w != nil && s.w.committed
}

// hasSets reports whether any pending change is a Set.
func (s *Session) hasSets() bool {
	for _, c := range s.pending {
		if c.b != nil {
			return true
		}
	}
	return false
}

// applyPending records the pending changes as read, since Redis now holds
// them, and clears them.
func (s *Session) applyPending() {
	for _, c := range s.pending {
		if c.b == nil {
			s.setLoaded(loadedValue{field: c.field})
		} else {
			// b came from encode and nothing changes it any more.
			s.setLoaded(loadedValue{field: c.field, v: unsafe.String(unsafe.SliceData(c.b), len(c.b)), ok: true})
		}
	}
	s.pending = nil
}

// needCap reports whether a refresh must also cap the TTL at the deadline.
// Far from the deadline the idle timeout ends first and the cap would be a
// no-op, so it is left out; the margin of an idle timeout and a minute
// absorbs a skew between this process's clock and Redis's (which alone
// decides when the key expires) of up to an idle timeout, beyond the skew
// last learned from Redis when creating a session.
func (s *Session) needCap() bool {
	redisNow := s.st.now().Add(time.Duration(s.st.skew.Load()) * time.Millisecond)
	return time.UnixMilli(s.id.deadline).Sub(redisNow) < 2*s.st.idle+time.Minute
}

// queueRefresh queues on pipe the restart of the idle timeout (PEXPIRE)
// and, near the deadline, its cap (PEXPIREAT ... LT). The PEXPIRE's reply
// says whether the key exists.
func (s *Session) queueRefresh(ctx context.Context, pipe redis.Pipeliner) *redis.BoolCmd {
	exists := pipe.PExpire(ctx, s.key, s.st.idle)
	if s.needCap() {
		pipe.Do(ctx, "pexpireat", s.key, s.id.deadline, "lt")
	}
	return exists
}

// exec sends cmds, and the refresh if refresh is set, in one round trip:
// a single command goes alone, more in a pipeline. It returns the
// refresh's PEXPIRE, nil without a refresh. A failed refresh is forgotten,
// so that the next use sends it again.
func (s *Session) exec(ctx context.Context, refresh bool, cmds ...redis.Cmder) (*redis.BoolCmd, error) {
	var err error
	var exists *redis.BoolCmd
	if len(cmds) == 1 && !refresh {
		err = s.st.client.Process(ctx, cmds[0])
	} else {
		pipe := s.st.client.Pipeline()
		for _, c := range cmds {
			_ = pipe.Process(ctx, c)
		}
		if refresh {
			exists = s.queueRefresh(ctx, pipe)
		}
		_, err = pipe.Exec(ctx)
	}
	if err != nil {
		if refresh {
			s.st.refresh.forget(s.key)
		}
		return nil, redisErr(ctx, err)
	}
	return exists, nil
}

// isDeadline reports whether v, a field as HMGET returns it, is the
// session's deadline field.
func (s *Session) isDeadline(v any) bool {
	str, ok := v.(string)
	var buf [20]byte
	return ok && str == string(strconv.AppendInt(buf[:0], s.id.deadline, 10))
}

// fetch reads fields into s.loaded in one round trip. When the refresh of
// the idle timeout is due, the same round trip restarts it and reads the
// deadline field that every session has, to check that the key holds the
// session: if not, s becomes new. Between refreshes, which this process
// made less than a refresh interval ago and which found the session, the
// fields are read alone; a session that another request has destroyed or
// renewed since then reads as holding no fields, and the next write or
// refresh finds its ID unknown.
func (s *Session) fetch(ctx context.Context, fields []string) error {
	due := s.st.refresh.due(s.key)
	args := s.hmgetArgs(fields, due)
	hm := redis.NewSliceCmd(ctx, args...)
	exists, err := s.exec(ctx, due, hm)
	if err != nil {
		return err
	}
	vals := hm.Val()
	if len(vals) != len(args)-2 {
		return fmt.Errorf("%w: HMGET returned %d values for %d fields", errBadReply, len(vals), len(args)-2)
	}
	if due && !s.isDeadline(vals[0]) {
		s.notHeld(ctx, exists.Val())
		return nil
	}
	vals = vals[len(vals)-len(fields):]
	for i, f := range fields {
		v, ok := vals[i].(string)
		s.setLoaded(loadedValue{field: f, v: v, ok: ok})
	}
	return nil
}

// hmgetArgs returns the arguments of the HMGET of fields, after the
// deadline field when due (the refresh then checks that the key holds the
// session).
func (s *Session) hmgetArgs(fields []string, due bool) []any {
	args := make([]any, 0, 3+len(fields))
	args = append(args, "hmget", s.key)
	if due {
		args = append(args, deadlineField)
	}
	for _, f := range fields {
		args = append(args, f)
	}
	return args
}

// notHeld makes s new, as the key turned out not to hold the session; a
// hash there (exists) without the deadline field is what a write to an
// unknown ID left, and is repaired. The PEXPIRE of the refresh gave it a
// TTL in any case.
func (s *Session) notHeld(ctx context.Context, exists bool) {
	if exists {
		_ = run(ctx, s.st.client, repairArgs{key: s.key}).Err()
	}
	s.reset()
}

// errBadReply reports a reply of a shape Redis does not send.
var errBadReply = errors.New("session: unexpected reply")

// write sends the pending changes in one round trip, with the refresh of
// the idle timeout when it is due. Every session has the sentinel field
// from its creation, and the HSET writes it again: HSET counts the fields
// it added, so the sentinel among them means the key held no session. A
// write of deletions only asks HEXISTS of the deadline field instead. It
// reports false, with s reset to new, when the key held no session; the
// hash the HSET made is then deleted.
func (s *Session) write(ctx context.Context) (bool, error) {
	w := s.writeCmds(ctx)
	if _, err := s.exec(ctx, s.st.refresh.due(s.key), w.cmds()...); err != nil {
		return false, err
	}
	if w.held() {
		return true, nil
	}
	if w.hset != nil {
		if held, err := s.repairCreated(ctx); err != nil || held {
			return held, err
		}
	}
	s.reset()
	return false, nil
}

// writeCmds are the commands of one write and the replies that tell
// whether the key held a session.
type writeCmds struct {
	buf   [2]redis.Cmder
	n     int
	hset  *redis.IntCmd  // the HSET of the set fields, nil for deletions only
	found *redis.BoolCmd // the HEXISTS of the deadline field, nil with an HSET
	nsets int            // the number of fields the HSET sets, the sentinel not counted
}

// cmds returns the commands to send.
func (w *writeCmds) cmds() []redis.Cmder { return w.buf[:w.n] }

// add appends c to the commands to send.
func (w *writeCmds) add(c redis.Cmder) {
	w.buf[w.n] = c
	w.n++
}

// held reports whether the key held a session before the write: the HSET
// added no more fields than the pending sets (the sentinel was there), or
// the HEXISTS found the deadline field.
func (w *writeCmds) held() bool {
	if w.hset != nil {
		return w.hset.Val() <= int64(w.nsets)
	}
	return w.found != nil && w.found.Val()
}

// writeCmds builds the HSET (with the sentinel) of the pending sets and
// the HDEL of the pending deletions; a write of deletions only asks
// HEXISTS of the deadline field instead of writing the sentinel.
func (s *Session) writeCmds(ctx context.Context) writeCmds {
	sets, dels, nsets := s.pendingArgs()
	w := writeCmds{nsets: nsets}
	if sets != nil {
		w.hset = redis.NewIntCmd(ctx, sets...)
		w.add(w.hset)
	}
	if dels != nil {
		w.add(redis.NewIntCmd(ctx, dels...))
		if sets == nil {
			w.found = redis.NewBoolCmd(ctx, "hexists", s.key, deadlineField)
			w.add(w.found)
		}
	}
	return w
}

// pendingArgs returns the arguments of the HSET of the pending sets, the
// sentinel first, and of the HDEL of the pending deletions; each is nil
// when there is nothing to send, and the number of pending sets.
func (s *Session) pendingArgs() (sets, dels []any, nsets int) {
	for _, c := range s.pending {
		if c.b != nil {
			nsets++
		}
	}
	if nsets > 0 {
		sets = make([]any, 0, 4+2*nsets)
		sets = append(sets, "hset", s.key, sentinelField, "")
	}
	if nsets < len(s.pending) {
		dels = make([]any, 0, 2+len(s.pending)-nsets)
		dels = append(dels, "hdel", s.key)
	}
	for _, c := range s.pending {
		if c.b != nil {
			sets = append(sets, c.field, c.b)
		} else {
			dels = append(dels, c.field)
		}
	}
	return sets, dels, nsets
}

// repairCreated gives the hash an HSET made at an unknown ID a TTL, or
// deletes it, even if the caller has gone. It reports whether the key
// held a session after all (the repair script's 1).
func (s *Session) repairCreated(ctx context.Context) (bool, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), repairTimeout)
	defer cancel()
	n, err := run(rctx, s.st.client, repairArgs{key: s.key}).Int64()
	if err != nil {
		return false, redisErr(ctx, err)
	}
	return n == 1, nil
}

// create writes the pending fields as a new session under a fresh ID. The
// deadline is now plus the lifetime by this process's clock, corrected by
// what Redis's clock said last time; if Redis's clock disagrees by more
// than clockTolerance, its deadline is used and remembered.
func (s *Session) create(ctx context.Context) error {
	call := createArgs{
		idleMS:      s.st.idle.Milliseconds(),
		lifetimeMS:  s.st.lifetime.Milliseconds(),
		toleranceMS: clockTolerance.Milliseconds(),
		fields:      make([]any, 0, 2*len(s.pending)),
	}
	for _, c := range s.pending {
		if c.b != nil {
			call.fields = append(call.fields, c.field, c.b)
		}
	}
	local := s.st.now().Add(s.st.lifetime).UnixMilli()
	deadline := local + s.st.skew.Load()
	var r [tagLen + secretLen]byte
	for range idTries {
		s.st.random(r[:])
		p := makeID(r[:tagLen], r[tagLen:], deadline)
		call.key, call.deadlineMS = s.st.key(p.id), p.deadline
		n, err := run(ctx, s.st.client, call).Int64()
		if err != nil {
			return redisErr(ctx, err)
		}
		switch {
		case n == 1:
			s.setID(p)
			s.st.refresh.mark(s.key)
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
	if s.headersWritten() {
		return ErrHeadersWritten
	}
	var secret [secretLen]byte
	for range idTries {
		s.st.random(secret[:])
		next := parsedID{id: s.id.id[:tagChars] + encodeSecret(secret[:]) + s.id.id[tagChars+secretChars:], deadline: s.id.deadline}
		n, err := run(ctx, s.st.client, renewArgs{
			from: s.key, to: s.st.key(next.id), deadlineMS: s.id.deadline, idleMS: s.st.idle.Milliseconds(),
		}).Int64()
		if err != nil {
			return redisErr(ctx, err)
		}
		switch n {
		case 1:
			s.st.refresh.forget(s.key)
			s.setID(next)
			s.st.refresh.mark(s.key)
			s.sendCookie, s.clearCookie = true, false
			return nil
		case 0:
			s.reset()
			return nil
		}
	}
	return errNoFreeID
}
