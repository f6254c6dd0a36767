package session_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	redis.SetLogger(discardPrintf{}) // some tests dial a dead port
	goleak.VerifyTestMain(m)
}

type discardPrintf struct{}

func (discardPrintf) Printf(context.Context, string, ...any) {}

// quiet is a logger for tests that provoke errors on purpose.
var quiet = slog.New(slog.DiscardHandler)

// recorder is a go-redis hook that counts round trips and keeps every
// command sent, so tests can tell how many calls an operation made and
// what it wrote.
type recorder struct {
	mu    sync.Mutex
	trips int
	cmds  [][]any
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.add(cmd)
		return next(ctx, cmd)
	}
}

func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.add(cmds...)
		return next(ctx, cmds)
	}
}

func (r *recorder) add(cmds ...redis.Cmder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sent := false
	for _, c := range cmds {
		// go-redis sends HELLO and CLIENT SETINFO on each new connection.
		args := c.Args()
		if c.Name() == "hello" || c.Name() == "client" && len(args) > 1 && fmt.Sprint(args[1]) == "setinfo" {
			continue
		}
		r.cmds = append(r.cmds, args)
		sent = true
	}
	if sent {
		r.trips++
	}
}

// reset forgets what was recorded.
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips, r.cmds = 0, nil
}

// count returns the round trips recorded.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trips
}

// named returns the recorded commands called name, as "NAME arg arg".
func (r *recorder) named(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, args := range r.cmds {
		if strings.EqualFold(fmt.Sprint(args[0]), name) {
			out = append(out, strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
		}
	}
	return out
}

// env is a Store on a Server, with the client it uses and a recorder on it.
type env struct {
	st  *session.Store
	rdb redis.UniversalClient
	rec *recorder
	srv *redistest.Server // nil on a cluster
}

// newEnv returns a Store on a fresh client of srv, with prefix "test".
func newEnv(t *testing.T, srv *redistest.Server, opts ...session.Option) *env {
	t.Helper()
	rdb := srv.ClientWith(t, func(o *redis.Options) {
		o.ReadTimeout, o.WriteTimeout = 5*time.Second, 5*time.Second
	})
	e := onClient(t, rdb, opts...)
	e.srv = srv
	return e
}

// onClient returns a Store on rdb, with prefix "test".
func onClient(t testing.TB, rdb redis.UniversalClient, opts ...session.Option) *env {
	t.Helper()
	rec := &recorder{}
	rdb.AddHook(rec)
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("test"), cachemgr.WithOpTimeout(5*time.Second), cachemgr.WithLogger(quiet))
	if err != nil {
		t.Fatalf("cachemgr.New() error = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	st, err := session.New(m, append([]session.Option{session.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("session.New() error = %v", err)
	}
	return &env{st: st, rdb: rdb, rec: rec}
}

// create saves a new session holding fields and returns its ID.
func (e *env) create(t testing.TB, fields map[string]any) string {
	t.Helper()
	s := e.st.Open("")
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		if err := s.Set(f, fields[f]); err != nil {
			t.Fatalf("Set(%q) error = %v", f, err)
		}
	}
	if err := s.Save(context.Background()); err != nil {
		t.Fatalf("Save() of a new session error = %v", err)
	}
	if s.ID() == "" {
		t.Fatal("ID() after Save of a new session = \"\", want an ID")
	}
	return s.ID()
}

// key returns the Redis key of the session id.
func key(id string) string { return "test:session:{" + id[:8] + "}" + id[8:] }

// raw returns the hash of session id as stored, without the package's own
// fields (the deadline and the sentinel, whose names start with NUL).
func (e *env) raw(t *testing.T, id string) map[string]string {
	t.Helper()
	h, err := e.rdb.HGetAll(context.Background(), key(id)).Result()
	if err != nil {
		t.Fatalf("HGETALL %s error = %v", key(id), err)
	}
	maps.DeleteFunc(h, func(f, _ string) bool { return strings.HasPrefix(f, "\x00") })
	return h
}

// pttl returns the TTL of session id's key.
func (e *env) pttl(t *testing.T, id string) time.Duration {
	t.Helper()
	d, err := e.rdb.PTTL(context.Background(), key(id)).Result()
	if err != nil {
		t.Fatalf("PTTL %s error = %v", key(id), err)
	}
	return d
}

// getString reads field of session id through a new Session.
func (e *env) getString(t *testing.T, id, field string) (string, error) {
	t.Helper()
	return session.Get[string](context.Background(), e.st.Open(id), field)
}

type profile struct {
	Name  string
	Roles []string
}

func TestGetSetTypes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		want := profile{Name: "Ada", Roles: []string{"admin"}}
		id := e.create(t, map[string]any{"user": want, "visits": 3, "theme": "dark", "blob": []byte{0, 1, 2}})
		s := e.st.Open(id)
		if got, err := session.Get[profile](ctx, s, "user"); err != nil || got.Name != want.Name || !slices.Equal(got.Roles, want.Roles) {
			t.Errorf("Get[profile](user) = %+v, %v, want %+v, nil", got, err, want)
		}
		if got, err := session.Get[int](ctx, s, "visits"); err != nil || got != 3 {
			t.Errorf("Get[int](visits) = %d, %v, want 3, nil", got, err)
		}
		if got, err := session.Get[string](ctx, s, "theme"); err != nil || got != "dark" {
			t.Errorf("Get[string](theme) = %q, %v, want dark, nil", got, err)
		}
		if got, err := session.Get[[]byte](ctx, s, "blob"); err != nil || !slices.Equal(got, []byte{0, 1, 2}) {
			t.Errorf("Get[[]byte](blob) = %v, %v, want [0 1 2], nil", got, err)
		}
		if _, err := session.Get[string](ctx, s, "absent"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(absent) error = %v, want ErrNoField", err)
		}
		if s.ID() != id {
			t.Errorf("ID() after reads = %q, want %q", s.ID(), id)
		}
	})
}

func TestNewSessionMakesNoCall(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		s := e.st.Open("")
		if _, err := session.Get[string](ctx, s, "user"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(user) on a new session error = %v, want ErrNoField", err)
		}
		if err := s.Load(ctx, "a", "b"); err != nil {
			t.Errorf("Load on a new session error = %v", err)
		}
		if err := s.Save(ctx); err != nil {
			t.Errorf("Save with no change error = %v", err)
		}
		if err := s.Renew(ctx); err != nil {
			t.Errorf("Renew of a new session error = %v", err)
		}
		if err := s.Destroy(ctx); err != nil {
			t.Errorf("Destroy of a new session error = %v", err)
		}
		if n := e.rec.count(); n != 0 {
			t.Errorf("round trips for a new session = %d, want 0", n)
		}
		if s.ID() != "" {
			t.Errorf("ID() of an unsaved session = %q, want empty", s.ID())
		}
	})
}

func TestSeveralFieldsOneRoundTrip(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "1", "b": "2", "c": "3"})

		e.rec.reset()
		s := e.st.Open(id)
		if err := s.Load(ctx, "a", "b", "c", "d", "a"); err != nil {
			t.Fatalf("Load error = %v", err)
		}
		for _, f := range []string{"a", "b", "c"} {
			if _, err := session.Get[string](ctx, s, f); err != nil {
				t.Errorf("Get(%q) after Load error = %v", f, err)
			}
		}
		if _, err := session.Get[string](ctx, s, "d"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(d) after Load error = %v, want ErrNoField", err)
		}
		if n := e.rec.count(); n != 1 {
			t.Errorf("round trips for Load of 4 fields and 4 Gets = %d, want 1: %q", n, e.rec.cmds)
		}

		e.rec.reset()
		for _, f := range []string{"a", "b", "e"} {
			if err := s.Set(f, "new-"+f); err != nil {
				t.Fatalf("Set(%q) error = %v", f, err)
			}
		}
		if err := s.Save(ctx); err != nil {
			t.Fatalf("Save error = %v", err)
		}
		if n := e.rec.count(); n != 1 {
			t.Errorf("round trips for Save of 3 fields = %d, want 1", n)
		}
		want := map[string]string{"a": "new-a", "b": "new-b", "c": "3", "e": "new-e"}
		for f, v := range want {
			if got, err := e.getString(t, id, f); got != v || err != nil {
				t.Errorf("Get(%q) after Save = %q, %v, want %q, nil", f, got, err, v)
			}
		}
	})
}

func TestReadYourWrites(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "old", "b": "keep"})
		s := e.st.Open(id)
		if err := s.Set("a", "new"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete("b"); err != nil {
			t.Fatal(err)
		}
		e.rec.reset()
		if got, err := session.Get[string](ctx, s, "a"); got != "new" || err != nil {
			t.Errorf("Get(a) after Set, before Save = %q, %v, want new, nil", got, err)
		}
		if _, err := session.Get[string](ctx, s, "b"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(b) after Delete, before Save error = %v, want ErrNoField", err)
		}
		if n := e.rec.count(); n != 0 {
			t.Errorf("round trips to read unsaved changes = %d, want 0", n)
		}
		if got, _ := e.getString(t, id, "a"); got != "old" {
			t.Errorf("stored a before Save = %q, want old", got)
		}
	})
}

func TestDeleteField(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "1", "b": "2"})
		s := e.st.Open(id)
		if err := s.Delete("a"); err != nil {
			t.Fatalf("Delete(a) error = %v", err)
		}
		if err := s.Save(ctx); err != nil {
			t.Fatalf("Save error = %v", err)
		}
		if got := e.raw(t, id); len(got) != 1 || got["b"] == "" {
			t.Errorf("hash after Delete(a) = %q, want only b", got)
		}
		// Deleting every field keeps the session.
		if err := s.Delete("b"); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx); err != nil {
			t.Fatalf("Save error = %v", err)
		}
		if err := s.Set("c", "3"); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx); err != nil {
			t.Fatalf("Save error = %v", err)
		}
		if s.ID() != id {
			t.Errorf("ID() after deleting every field and saving again = %q, want %q", s.ID(), id)
		}
		if got, err := e.getString(t, id, "c"); got != "3" || err != nil {
			t.Errorf("Get(c) = %q, %v, want 3, nil", got, err)
		}
	})
}

func TestDestroy(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "1"})
		s := e.st.Open(id)
		if err := s.Set("b", "pending"); err != nil {
			t.Fatal(err)
		}
		if err := s.Destroy(ctx); err != nil {
			t.Fatalf("Destroy error = %v", err)
		}
		if n, _ := e.rdb.Exists(ctx, key(id)).Result(); n != 0 {
			t.Errorf("EXISTS %s after Destroy = %d, want 0", key(id), n)
		}
		if s.ID() != "" {
			t.Errorf("ID() after Destroy = %q, want empty", s.ID())
		}
		if _, err := session.Get[string](ctx, s, "b"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(b) of a change made before Destroy error = %v, want ErrNoField", err)
		}
		if _, err := e.getString(t, id, "a"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(a) with the destroyed ID error = %v, want ErrNoField", err)
		}
		// A stale handle writing to the destroyed ID gets a new session;
		// the old ID stays dead.
		stale := e.st.Open(id)
		if err := stale.Set("c", "3"); err != nil {
			t.Fatal(err)
		}
		if err := stale.Save(ctx); err != nil {
			t.Fatalf("Save to a destroyed ID error = %v", err)
		}
		if stale.ID() == id || stale.ID() == "" {
			t.Errorf("ID() after Save to a destroyed ID = %q, want a new ID", stale.ID())
		}
		if n, _ := e.rdb.Exists(ctx, key(id)).Result(); n != 0 {
			t.Errorf("EXISTS %s after a write to the destroyed ID = %d, want 0", key(id), n)
		}
		if got, err := e.getString(t, stale.ID(), "c"); got != "3" || err != nil {
			t.Errorf("Get(c) of the new session = %q, %v, want 3, nil", got, err)
		}
	})
}

func TestRenew(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "1", "b": "2"})
		before := e.pttl(t, id)
		s := e.st.Open(id)
		if err := s.Set("c", "3"); err != nil {
			t.Fatal(err)
		}
		if err := s.Renew(ctx); err != nil {
			t.Fatalf("Renew error = %v", err)
		}
		next := s.ID()
		if next == id || len(next) != len(id) {
			t.Fatalf("ID() after Renew = %q, want a new ID as long as %q", next, id)
		}
		if next[:8] != id[:8] || next[32:] != id[32:] {
			t.Errorf("Renew(%q) = %q, want the same hash tag and deadline", id, next)
		}
		if next[8:32] == id[8:32] {
			t.Errorf("Renew(%q) = %q, want a new secret", id, next)
		}
		if _, err := e.getString(t, id, "a"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(a) with the old ID error = %v, want ErrNoField", err)
		}
		// The change made before Renew is still pending, for the new ID.
		if err := s.Save(ctx); err != nil {
			t.Fatalf("Save after Renew error = %v", err)
		}
		want := map[string]string{"a": "1", "b": "2", "c": "3"}
		for f, v := range want {
			if got, err := e.getString(t, next, f); got != v || err != nil {
				t.Errorf("Get(%q) with the new ID = %q, %v, want %q, nil", f, got, err, v)
			}
		}
		if got := e.pttl(t, next); got <= 0 || got > before+time.Second {
			t.Errorf("PTTL after Renew = %v, want in (0, %v]", got, before)
		}
		// Renewing an unknown ID gives a new session.
		gone := e.st.Open(id)
		if err := gone.Renew(ctx); err != nil {
			t.Fatalf("Renew of an unknown ID error = %v", err)
		}
		if gone.ID() != "" {
			t.Errorf("ID() after Renew of an unknown ID = %q, want empty (new session)", gone.ID())
		}
	})
}

func TestIdleTimeoutSlides(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		const idle = 10 * time.Minute
		// Every use refreshes: TestRefreshInterval covers the default.
		e := newEnv(t, srv, session.WithIdleTimeout(idle), session.WithLifetime(24*time.Hour), session.WithRefreshInterval(0))
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "1"})
		if got := e.pttl(t, id); got < idle-time.Minute || got > idle {
			t.Errorf("PTTL of a new session = %v, want about %v", got, idle)
		}
		tests := []struct {
			name string
			use  func(s *session.Session) error
		}{
			{"Get", func(s *session.Session) error { _, err := session.Get[string](ctx, s, "a"); return err }},
			{"Load", func(s *session.Session) error { return s.Load(ctx, "a", "b") }},
			{"Save", func(s *session.Session) error { s.Set("b", "2"); return s.Save(ctx) }},
			{"Delete", func(s *session.Session) error { s.Delete("b"); return s.Save(ctx) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// As if the session had been idle for all but a second.
				if err := e.rdb.PExpire(ctx, key(id), time.Second).Err(); err != nil {
					t.Fatal(err)
				}
				e.rec.reset()
				if err := tt.use(e.st.Open(id)); err != nil {
					t.Fatalf("%s error = %v", tt.name, err)
				}
				if n := e.rec.count(); n != 1 {
					t.Errorf("round trips for %s = %d, want 1 (the refresh rides along)", tt.name, n)
				}
				if got := e.pttl(t, id); got < idle-time.Minute {
					t.Errorf("PTTL after %s = %v, want about %v", tt.name, got, idle)
				}
			})
		}
	})
}

// advance moves srv's clock by d on miniredis, whose keys expire only so,
// and does nothing on a real server, whose clock runs.
func advance(srv *redistest.Server, d time.Duration) {
	if srv.Kind() == redistest.KindMiniredis {
		srv.FastForward(d)
	}
}

// waitGone polls until field of session id reads as absent, failing t if
// that has not happened after a generous deadline.
func (e *env) waitGone(t *testing.T, id, field string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := e.getString(t, id, field)
		if errors.Is(err, session.ErrNoField) {
			return
		}
		if err != nil {
			t.Fatalf("Get(%q) error = %v", field, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s still readable after 20s", id)
		}
		<-time.After(20 * time.Millisecond)
	}
}

func TestIdleExpiry(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, session.WithIdleTimeout(300*time.Millisecond), session.WithLifetime(time.Hour))
		id := e.create(t, map[string]any{"a": "1"})
		advance(srv, 400*time.Millisecond)
		// Reads refresh the session, so wait on the key, not on reads.
		deadline := time.Now().Add(20 * time.Second)
		for e.rdb.Exists(context.Background(), key(id)).Val() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("idle session %s still in Redis after 20s", id)
			}
			<-time.After(20 * time.Millisecond)
		}
		if _, err := e.getString(t, id, "a"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(a) after the idle timeout error = %v, want ErrNoField", err)
		}
	})
}

func TestLifetimeCapsIdle(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		const lifetime = 1500 * time.Millisecond
		e := newEnv(t, srv, session.WithIdleTimeout(time.Hour), session.WithLifetime(lifetime))
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "1"})
		if got := e.pttl(t, id); got <= 0 || got > lifetime {
			t.Errorf("PTTL of a new session = %v, want in (0, %v]", got, lifetime)
		}
		// Uses of every kind restart the idle timeout but never past the
		// deadline.
		s := e.st.Open(id)
		if _, err := session.Get[string](ctx, s, "a"); err != nil {
			t.Fatalf("Get(a) error = %v", err)
		}
		s.Set("b", "2")
		if err := s.Save(ctx); err != nil {
			t.Fatalf("Save error = %v", err)
		}
		if got := e.pttl(t, id); got <= 0 || got > lifetime {
			t.Errorf("PTTL after use = %v, want in (0, %v]", got, lifetime)
		}
		if err := s.Renew(ctx); err != nil {
			t.Fatalf("Renew error = %v", err)
		}
		next := s.ID()
		if got := e.pttl(t, next); got <= 0 || got > lifetime {
			t.Errorf("PTTL after Renew = %v, want in (0, %v]", got, lifetime)
		}
		// A session used all the time still ends at its deadline.
		advance(srv, 2*lifetime)
		e.waitGone(t, next, "a")
	})
}

func TestDecodeErrorIsPerField(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"name": "Ada", "n": 7})
		// Values no codec wrote: an unknown codec byte, malformed
		// msgpack, an empty value, JSON that is not an int.
		bad := map[string]string{
			"codec":   "\xffabc",
			"msgpack": "\x01\xc1",
			"empty":   "",
			"json":    "\x02\"x\"",
		}
		for f, v := range bad {
			if err := e.rdb.HSet(ctx, key(id), f, v).Err(); err != nil {
				t.Fatal(err)
			}
		}
		s := e.st.Open(id)
		for f := range bad {
			if got, err := session.Get[int](ctx, s, f); !errors.Is(err, session.ErrDecode) || got != 0 {
				t.Errorf("Get[int](%q) = %d, %v, want 0, ErrDecode", f, got, err)
			}
		}
		if got, err := session.Get[int](ctx, s, "name"); !errors.Is(err, session.ErrDecode) || got != 0 {
			t.Errorf("Get[int](name) of a string = %d, %v, want 0, ErrDecode", got, err)
		}
		if got, err := session.Get[string](ctx, s, "name"); got != "Ada" || err != nil {
			t.Errorf("Get[string](name) after a failed decode = %q, %v, want Ada, nil", got, err)
		}
		if got, err := session.Get[int](ctx, s, "n"); got != 7 || err != nil {
			t.Errorf("Get[int](n) beside undecodable fields = %d, %v, want 7, nil", got, err)
		}
		if s.ID() != id {
			t.Errorf("ID() after decode errors = %q, want %q (same session)", s.ID(), id)
		}
	})
}

func TestCodecs(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		e := newEnv(t, srv, session.WithCodec(codec.JSON()))
		id := e.create(t, map[string]any{"user": profile{Name: "Ada"}})
		if got := e.raw(t, id)["user"]; got != "\x02"+`{"Name":"Ada","Roles":null}` {
			t.Errorf("stored user with the JSON codec = %q", got)
		}
		// A Store with another default codec still reads it.
		other := onClient(t, e.rdb, session.WithCodec(codec.Msgpack()))
		if got, err := session.Get[profile](ctx, other.st.Open(id), "user"); got.Name != "Ada" || err != nil {
			t.Errorf("Get[profile](user) with the msgpack codec = %+v, %v, want Ada, nil", got, err)
		}
	})
}

func TestInvalidFieldNames(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "1"})
		tests := []struct {
			name  string
			field string
		}{
			{"empty", ""},
			{"deadline field", "\x00deadline"},
			{"control", "a\nb"},
			{"delete char", "a\x7f"},
			{"not UTF-8", "\xff"},
			{"too long", strings.Repeat("a", session.MaxFieldLen+1)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := e.st.Open(id)
				if _, err := session.Get[string](ctx, s, tt.field); !errors.Is(err, session.ErrInvalidField) {
					t.Errorf("Get(%q) error = %v, want ErrInvalidField", tt.field, err)
				}
				if err := s.Load(ctx, "a", tt.field); !errors.Is(err, session.ErrInvalidField) {
					t.Errorf("Load(a, %q) error = %v, want ErrInvalidField", tt.field, err)
				}
				if err := s.Set(tt.field, "x"); !errors.Is(err, session.ErrInvalidField) {
					t.Errorf("Set(%q) error = %v, want ErrInvalidField", tt.field, err)
				}
				if err := s.Delete("a", tt.field); !errors.Is(err, session.ErrInvalidField) {
					t.Errorf("Delete(a, %q) error = %v, want ErrInvalidField", tt.field, err)
				}
				if err := s.Save(ctx); err != nil {
					t.Errorf("Save after refused changes error = %v", err)
				}
			})
		}
		if got := e.raw(t, id); len(got) != 1 {
			t.Errorf("hash after refused changes = %q, want a alone", got)
		}
		if _, err := session.Get[string](ctx, e.st.Open(id), strings.Repeat("a", session.MaxFieldLen)); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get of a %d-byte name error = %v, want ErrNoField", session.MaxFieldLen, err)
		}
	})
}

func TestEncodeError(t *testing.T) {
	e := newEnv(t, redistest.StartMini(t))
	s := e.st.Open("")
	if err := s.Set("f", func() {}); err == nil {
		t.Errorf("Set(f, func) error = nil, want an encode error")
	}
	if err := s.Save(context.Background()); err != nil || s.ID() != "" {
		t.Errorf("Save after a refused Set = %v, ID %q, want nil and no session", err, s.ID())
	}
}

func TestNilSession(t *testing.T) {
	var s *session.Session
	ctx := context.Background()
	if _, err := session.Get[string](ctx, s, "a"); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Get on nil error = %v, want ErrNoSession", err)
	}
	errs := map[string]error{
		"Load":    s.Load(ctx, "a"),
		"Set":     s.Set("a", 1),
		"Delete":  s.Delete("a"),
		"Save":    s.Save(ctx),
		"Destroy": s.Destroy(ctx),
		"Renew":   s.Renew(ctx),
	}
	for name, err := range errs {
		if !errors.Is(err, session.ErrNoSession) {
			t.Errorf("%s on nil error = %v, want ErrNoSession", name, err)
		}
	}
	if s.ID() != "" {
		t.Errorf("ID() of nil = %q, want empty", s.ID())
	}
}

func TestUnknownIDs(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		victim := e.create(t, map[string]any{"secret": "victim's"})
		before := e.raw(t, victim)
		other := e.create(t, map[string]any{"x": "1"})
		tests := []struct {
			name string
			id   string
		}{
			{"empty", ""},
			{"garbage", "not-a-session-id"},
			{"truncated", victim[:39]},
			{"extended", victim + "A"},
			{"brace", "{" + victim[1:]},
			{"padding", victim[:38] + "=="},
			{"other tag", other[:8] + victim[8:]},
			{"never issued", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" + victim[32:]},
			{"zero deadline", victim[:32] + "AAAAAAAA"},
			{"forged deadline", victim[:32] + "_" + victim[33:]},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := e.st.Open(tt.id)
				if _, err := session.Get[string](ctx, s, "secret"); !errors.Is(err, session.ErrNoField) {
					t.Errorf("Get(secret) with ID %q error = %v, want ErrNoField", tt.id, err)
				}
				s.Set("mine", "attacker")
				if err := s.Save(ctx); err != nil {
					t.Fatalf("Save with ID %q error = %v", tt.id, err)
				}
				if got := s.ID(); got == tt.id || got == victim || got == "" {
					t.Errorf("ID() after Save with ID %q = %q, want a fresh ID", tt.id, got)
				}
				if got, err := e.getString(t, s.ID(), "mine"); got != "attacker" || err != nil {
					t.Errorf("Get(mine) of the new session = %q, %v, want attacker, nil", got, err)
				}
				if _, err := e.getString(t, s.ID(), "secret"); !errors.Is(err, session.ErrNoField) {
					t.Errorf("Get(secret) of the new session error = %v, want ErrNoField", err)
				}
			})
		}
		if got := e.raw(t, victim); !maps.Equal(got, before) {
			t.Errorf("victim's hash after the attempts = %q, want %q", got, before)
		}
		// No key was left behind by writes to unknown IDs: the two
		// sessions, and one per case.
		keys, err := e.rdb.Keys(ctx, "test:session:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2+len(tests) {
			t.Errorf("session keys after the attempts = %d, want %d", len(keys), 2+len(tests))
		}
	})
}

func TestForgedDeadline(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		const lifetime = time.Hour
		e := newEnv(t, srv, session.WithIdleTimeout(10*time.Minute), session.WithLifetime(lifetime))
		ctx := context.Background()
		id := e.create(t, map[string]any{"a": "1"})
		// Same key, a deadline years later: the ID is not the session's.
		forged := id[:32] + "_" + id[33:]
		if err := e.rdb.PExpire(ctx, key(id), time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := e.getString(t, forged, "a"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(a) with a forged deadline error = %v, want ErrNoField", err)
		}
		// The deadline is part of the key: the forged ID touched another,
		// empty key, neither refreshing the session nor leaving a key.
		if got := e.pttl(t, id); got > time.Minute {
			t.Errorf("PTTL after a read with a forged deadline = %v, want at most 1m (not refreshed)", got)
		}
		if n := e.rdb.Exists(ctx, key(forged)).Val(); n != 0 {
			t.Errorf("EXISTS of the forged ID's key = %d, want 0", n)
		}
		if got, err := e.getString(t, id, "a"); got != "1" || err != nil {
			t.Errorf("Get(a) with the real ID = %q, %v, want 1, nil", got, err)
		}
	})
}

func TestConcurrentSavesOfOtherFields(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"base": "0"})
		const n = 32
		// Every writer reads the session before any of them saves, the
		// interleaving that loses changes in blob-per-session stores.
		var read, wg sync.WaitGroup
		read.Add(n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				s := e.st.Open(id)
				_, err := session.Get[string](ctx, s, "base")
				read.Done()
				if err != nil {
					t.Errorf("Get(base) error = %v", err)
					return
				}
				<-start
				s.Set(fmt.Sprintf("f%d", i), i)
				if err := s.Save(ctx); err != nil {
					t.Errorf("Save(f%d) error = %v", i, err)
				}
			})
		}
		read.Wait()
		close(start)
		wg.Wait()
		s := e.st.Open(id)
		for i := range n {
			if got, err := session.Get[int](ctx, s, fmt.Sprintf("f%d", i)); got != i || err != nil {
				t.Errorf("Get(f%d) after concurrent Saves = %d, %v, want %d, nil", i, got, err, i)
			}
		}
	})
}

func TestRedisDown(t *testing.T) {
	e := deadEnv(t)
	ctx := context.Background()
	const id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGKJ5Tw" // well formed
	ops := map[string]func(s *session.Session) error{
		"Get":     func(s *session.Session) error { _, err := session.Get[string](ctx, s, "a"); return err },
		"Load":    func(s *session.Session) error { return s.Load(ctx, "a") },
		"Save":    func(s *session.Session) error { s.Set("a", 1); return s.Save(ctx) },
		"Destroy": func(s *session.Session) error { return s.Destroy(ctx) },
		"Renew":   func(s *session.Session) error { return s.Renew(ctx) },
	}
	for name, op := range ops {
		if err := op(e.st.Open(id)); !errors.Is(err, cachemgr.ErrUnavailable) {
			t.Errorf("%s with Redis down error = %v, want ErrUnavailable", name, err)
		}
	}
	s := e.st.Open("")
	s.Set("a", 1)
	if err := s.Save(ctx); !errors.Is(err, cachemgr.ErrUnavailable) {
		t.Errorf("Save of a new session with Redis down error = %v, want ErrUnavailable", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := session.Get[string](cancelled, e.st.Open(id), "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context error = %v, want context.Canceled", err)
	}
}

// deadEnv returns a Store whose client dials a loopback port where nothing
// listens.
func deadEnv(t *testing.T, opts ...session.Option) *env {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return onClient(t, rdb, opts...)
}

func TestOptions(t *testing.T) {
	m, err := cachemgr.New(redistest.StartMini(t).Client(t), cachemgr.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tests := []struct {
		name string
		opts []session.Option
	}{
		{"nil option", []session.Option{nil}},
		{"empty name", []session.Option{session.WithName("")}},
		{"name with colon", []session.Option{session.WithName("a:b")}},
		{"name with brace", []session.Option{session.WithName("a{b")}},
		{"zero idle", []session.Option{session.WithIdleTimeout(0)}},
		{"negative lifetime", []session.Option{session.WithLifetime(-time.Second)}},
		{"nil codec", []session.Option{session.WithCodec(nil)}},
		{"empty cookie name", []session.Option{session.WithCookieName("")}},
		{"cookie name with space", []session.Option{session.WithCookieName("a b")}},
		{"cookie path with semicolon", []session.Option{session.WithCookiePath("/a;b")}},
		{"cookie domain with space", []session.Option{session.WithCookieDomain("a b")}},
		{"SameSite out of range", []session.Option{session.WithSameSite(99)}},
		{"SameSite None without Secure", []session.Option{session.WithSameSite(http.SameSiteNoneMode), session.WithSecure(false)}},
		{"nil logger", []session.Option{session.WithLogger(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if st, err := session.New(m, tt.opts...); !errors.Is(err, cachemgr.ErrInvalidOption) || st != nil {
				t.Errorf("New(%s) = %v, %v, want nil, ErrInvalidOption", tt.name, st, err)
			}
		})
	}
	if st, err := session.New(nil); !errors.Is(err, cachemgr.ErrInvalidOption) || st != nil {
		t.Errorf("New(nil) = %v, %v, want nil, ErrInvalidOption", st, err)
	}
	ok := []session.Option{
		session.WithName("sess"), session.WithIdleTimeout(time.Minute), session.WithLifetime(time.Hour),
		session.WithCodec(codec.JSON()), session.WithCookieName("sid"), session.WithCookiePath("/app"),
		session.WithCookieDomain("example.com"), session.WithSecure(true), session.WithHTTPOnly(true),
		session.WithSameSite(http.SameSiteNoneMode), session.WithLogger(quiet),
	}
	if _, err := session.New(m, ok...); err != nil {
		t.Errorf("New with valid options error = %v", err)
	}
}

// TestRenewConcurrent: Renew moves the session in one atomic step, so of
// several requests renewing the same session at once, exactly one gets the
// data under a new ID; the others find the ID unknown and become new, and
// the data is under exactly one key, never copied or lost.
func TestRenewConcurrent(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		id := e.create(t, map[string]any{"user": "ada"})
		const n = 8
		var wg sync.WaitGroup
		ids := make([]string, n)
		for i := range n {
			wg.Go(func() {
				s := e.st.Open(id)
				if err := s.Renew(ctx); err != nil {
					t.Errorf("Renew error = %v", err)
				}
				ids[i] = s.ID()
			})
		}
		wg.Wait()
		var renewed []string
		for _, got := range ids {
			if got != "" {
				renewed = append(renewed, got)
			}
		}
		if len(renewed) != 1 || renewed[0] == id {
			t.Fatalf("IDs after %d concurrent Renews = %q, want one new ID and %d new sessions", n, ids, n-1)
		}
		if got, err := e.getString(t, renewed[0], "user"); got != "ada" || err != nil {
			t.Errorf("Get(user) with the renewed ID = %q, %v, want ada, nil", got, err)
		}
		keys, err := e.rdb.Keys(ctx, "test:session:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != key(renewed[0]) {
			t.Errorf("session keys = %q, want only the renewed one", keys)
		}
	})
}
