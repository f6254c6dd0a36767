package compare_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"
)

// The choreography of every test: a user's session holds "user". Two
// requests of that user arrive at once: request "a" sets field a, request
// "b" sets field b. Each loads the session, then waits until the other has
// loaded it too, then makes its change and lets its library save. Then a
// third request reads the session back.

// twoAtOnce sends the requests "/?k=a" and "/?k=b" with cookie through h,
// concurrently, and returns their responses. h must call loaded once the
// session is loaded and before it changes anything; loaded returns when
// both requests have reached that point.
func twoAtOnce(t *testing.T, cookie *http.Cookie, h func(loaded func()) http.Handler) [2]*http.Response {
	t.Helper()
	var both sync.WaitGroup
	both.Add(2)
	loaded := func() {
		both.Done()
		both.Wait()
	}
	handler := h(loaded)
	var res [2]*http.Response
	var wg sync.WaitGroup
	for i, k := range []string{"a", "b"} {
		wg.Go(func() {
			r := httptest.NewRequest(http.MethodGet, "/?k="+k, nil)
			r.AddCookie(cookie)
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, r)
			res[i] = w.Result()
		})
	}
	wg.Wait()
	return res
}

// cookieOf returns the cookie called name that res sets, or nil.
func cookieOf(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// serveOne sends one request with cookie (if any) through h.
func serveOne(h http.Handler, cookie *http.Cookie) *http.Response {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// kept reports which of the two changes a session read back holds.
type kept struct{ a, b bool }

func TestSCSRedisLosesAChange(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	sm := scs.New()
	sm.Store = goredisstore.New(rdb)

	login := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "user", "ada")
	}))
	cookie := cookieOf(serveOne(login, nil), sm.Cookie.Name)
	if cookie == nil {
		t.Fatal("no scs cookie after login")
	}

	twoAtOnce(t, cookie, func(loaded func()) http.Handler {
		// LoadAndSave loads the whole session before the handler runs and
		// writes the whole session back after it.
		return sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			loaded()
			sm.Put(r.Context(), r.FormValue("k"), true)
		}))
	})

	var got kept
	var user string
	serveOne(sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = kept{sm.GetBool(r.Context(), "a"), sm.GetBool(r.Context(), "b")}
		user = sm.GetString(r.Context(), "user")
	})), cookie)
	if user != "ada" {
		t.Fatalf("scs session user = %q, want ada (the session itself survived)", user)
	}
	if got.a == got.b {
		t.Fatalf("scs kept a=%t b=%t; this test expects the blob store to keep exactly one", got.a, got.b)
	}
	t.Logf("scs + goredisstore: after two concurrent changes the session holds a=%t b=%t: one change lost", got.a, got.b)
}

func TestGorillaFilesystemStoreLosesAChange(t *testing.T) {
	store := sessions.NewFilesystemStore(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"))
	const name = "gorilla"

	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.Get(r, name)
		s.Values["user"] = "ada"
		if err := s.Save(r, w); err != nil {
			t.Errorf("Save: %v", err)
		}
	})
	cookie := cookieOf(serveOne(login, nil), name)
	if cookie == nil {
		t.Fatal("no gorilla cookie after login")
	}

	twoAtOnce(t, cookie, func(loaded func()) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, name) // reads the whole session file
			if err != nil {
				t.Errorf("Get: %v", err)
			}
			loaded()
			s.Values[r.FormValue("k")] = true
			if err := s.Save(r, w); err != nil { // rewrites the whole file
				t.Errorf("Save: %v", err)
			}
		})
	})

	var got kept
	var user any
	serveOne(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, name)
		if err != nil {
			t.Errorf("Get: %v", err)
		}
		got = kept{s.Values["a"] == true, s.Values["b"] == true}
		user = s.Values["user"]
	}), cookie)
	if user != "ada" {
		t.Fatalf("gorilla session user = %v, want ada (the session itself survived)", user)
	}
	if got.a == got.b {
		t.Fatalf("gorilla FilesystemStore kept a=%t b=%t; this test expects the blob store to keep exactly one", got.a, got.b)
	}
	t.Logf("gorilla/sessions FilesystemStore: after two concurrent changes the session holds a=%t b=%t: one change lost", got.a, got.b)
}

func TestGorillaCookieStoreLosesAChange(t *testing.T) {
	store := sessions.NewCookieStore([]byte("0123456789abcdef0123456789abcdef"))
	const name = "gorilla"

	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.Get(r, name)
		s.Values["user"] = "ada"
		if err := s.Save(r, w); err != nil {
			t.Errorf("Save: %v", err)
		}
	})
	cookie := cookieOf(serveOne(login, nil), name)
	if cookie == nil {
		t.Fatal("no gorilla cookie after login")
	}

	res := twoAtOnce(t, cookie, func(loaded func()) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, name) // decodes the whole session from the cookie
			if err != nil {
				t.Errorf("Get: %v", err)
			}
			loaded()
			s.Values[r.FormValue("k")] = true
			if err := s.Save(r, w); err != nil { // sends the whole session back
				t.Errorf("Save: %v", err)
			}
		})
	})

	// The browser keeps whichever Set-Cookie arrives last; neither holds
	// both changes.
	for i, r := range res {
		c := cookieOf(r, name)
		if c == nil {
			t.Fatalf("response %d set no cookie", i)
		}
		var got kept
		serveOne(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, name)
			if err != nil {
				t.Errorf("Get: %v", err)
			}
			got = kept{s.Values["a"] == true, s.Values["b"] == true}
		}), c)
		if got.a == got.b {
			t.Fatalf("gorilla CookieStore response %d holds a=%t b=%t; this test expects exactly one", i, got.a, got.b)
		}
		t.Logf("gorilla/sessions CookieStore: response %d's cookie holds a=%t b=%t", i, got.a, got.b)
	}
}

func TestCachemgrSessionKeepsBoth(t *testing.T) {
	srv := redistest.Start(t)
	m, err := cachemgr.New(srv.ClientWith(t, func(o *redis.Options) {
		o.ReadTimeout, o.WriteTimeout = 5*time.Second, 5*time.Second
	}), cachemgr.WithOpTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	st, err := session.New(m)
	if err != nil {
		t.Fatal(err)
	}

	login := st.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.From(r.Context()).Set("user", "ada")
	}))
	cookie := cookieOf(serveOne(login, nil), "session")
	if cookie == nil {
		t.Fatal("no session cookie after login")
	}

	twoAtOnce(t, cookie, func(loaded func()) http.Handler {
		return st.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := st.From(r.Context())
			if _, err := session.Get[string](r.Context(), s, "user"); err != nil {
				t.Errorf("Get(user): %v", err)
			}
			loaded()
			s.Set(r.FormValue("k"), true) // saved, alone, as the response goes out
		}))
	})

	ctx := context.Background()
	s := st.Open(cookie.Value)
	a, errA := session.Get[bool](ctx, s, "a")
	b, errB := session.Get[bool](ctx, s, "b")
	user, errU := session.Get[string](ctx, s, "user")
	if err := errors.Join(errA, errB, errU); err != nil || !a || !b || user != "ada" {
		t.Fatalf("cachemgr session after two concurrent changes: a=%t b=%t user=%q (%v), want both changes and ada", a, b, user, err)
	}
	t.Logf("cachemgr session: after two concurrent changes the session holds a=%t b=%t: both kept", a, b)
}
