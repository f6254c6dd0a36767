package session_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
)

// serve sends one request with the cookie value id ("" for none) through
// e's middleware around h, and returns the response.
func (e *env) serve(t *testing.T, id string, h http.HandlerFunc) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if id != "" {
		r.Header.Add("Cookie", "session="+id) // as sent, even if malformed
	}
	w := httptest.NewRecorder()
	e.st.Middleware(h).ServeHTTP(w, r)
	return w.Result()
}

// sessionCookie returns the response's session cookie, or nil.
func sessionCookie(res *http.Response) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == "session" {
			return c
		}
	}
	return nil
}

func TestMiddlewareLazy(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		id := e.create(t, map[string]any{"a": "1"})
		tests := []struct {
			name   string
			cookie string
			h      http.HandlerFunc
		}{
			{"untouched with cookie", id, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) }},
			{"untouched without cookie", "", func(w http.ResponseWriter, r *http.Request) {}},
			{"read without cookie", "", func(w http.ResponseWriter, r *http.Request) {
				if _, err := session.Get[string](r.Context(), e.st.From(r.Context()), "a"); !errors.Is(err, session.ErrNoField) {
					t.Errorf("Get(a) without a cookie error = %v, want ErrNoField", err)
				}
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.rec.reset()
				res := e.serve(t, tt.cookie, tt.h)
				if n := e.rec.count(); n != 0 {
					t.Errorf("round trips = %d, want 0: %q", n, e.rec.cmds)
				}
				if c := sessionCookie(res); c != nil {
					t.Errorf("Set-Cookie = %v, want none", c)
				}
			})
		}
	})
}

func TestMiddlewareCookie(t *testing.T) {
	srv := redistest.StartMini(t)
	tests := []struct {
		name string
		opts []session.Option
		want string
	}{
		{"defaults", nil, "; Path=/; HttpOnly; Secure; SameSite=Lax"},
		{"options", []session.Option{
			session.WithCookieName("session"), session.WithCookiePath("/app"), session.WithCookieDomain("example.com"),
			session.WithHTTPOnly(false), session.WithSecure(false), session.WithSameSite(http.SameSiteStrictMode),
		}, "; Path=/app; Domain=example.com; SameSite=Strict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, srv, tt.opts...)
			var id string
			res := e.serve(t, "", func(w http.ResponseWriter, r *http.Request) {
				s := e.st.From(r.Context())
				s.Set("a", "1")
				if err := s.Save(r.Context()); err != nil {
					t.Errorf("Save error = %v", err)
				}
				id = s.ID()
			})
			if got, want := res.Header.Get("Set-Cookie"), "session="+id+tt.want; got != want {
				t.Errorf("Set-Cookie = %q, want %q", got, want)
			}
		})
	}
}

func TestMiddlewareSavesBeforeHeaders(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		tests := []struct {
			name  string
			write func(w http.ResponseWriter)
		}{
			{"return", func(w http.ResponseWriter) {}},
			{"Write", func(w http.ResponseWriter) { w.Write([]byte("body")) }},
			{"WriteHeader", func(w http.ResponseWriter) { w.WriteHeader(http.StatusCreated) }},
			{"Flush", func(w http.ResponseWriter) { http.NewResponseController(w).Flush() }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := e.serve(t, "", func(w http.ResponseWriter, r *http.Request) {
					e.st.From(r.Context()).Set("a", tt.name)
					tt.write(w)
				})
				c := sessionCookie(res)
				if c == nil {
					t.Fatalf("no session cookie after %s", tt.name)
				}
				if got, err := e.getString(t, c.Value, "a"); got != tt.name || err != nil {
					t.Errorf("Get(a) of the cookie's session = %q, %v, want %q, nil", got, err, tt.name)
				}
			})
		}
	})
}

func TestMiddlewareEarlyHints(t *testing.T) {
	e := newEnv(t, redistest.StartMini(t))
	ts := httptest.NewServer(e.st.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := e.st.From(r.Context())
		s.Set("a", "1")
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		if s.ID() != "" {
			t.Errorf("ID() after a 103 = %q, want the session unsaved until the final header", s.ID())
		}
		w.Write([]byte("ok"))
	})))
	t.Cleanup(ts.Close)
	res, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	c := sessionCookie(res)
	if c == nil {
		t.Fatalf("no session cookie on the final response")
	}
	if got, err := e.getString(t, c.Value, "a"); got != "1" || err != nil {
		t.Errorf("Get(a) = %q, %v, want 1, nil", got, err)
	}
}

func TestMiddlewareWritesOnlyChangedFields(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		id := e.create(t, map[string]any{"a": "1", "b": "2", "c": "3"})
		e.rec.reset()
		res := e.serve(t, id, func(w http.ResponseWriter, r *http.Request) {
			s := e.st.From(r.Context())
			if err := s.Load(r.Context(), "a", "b", "c"); err != nil {
				t.Errorf("Load error = %v", err)
			}
			s.Set("b", "changed")
			s.Delete("c")
		})
		if c := sessionCookie(res); c != nil {
			t.Errorf("Set-Cookie for an existing session = %v, want none", c)
		}
		// The sentinel field, then b alone (msgpack, codec ID 1).
		want := []string{strings.TrimSuffix(fmt.Sprintln("hset", key(id), "\x00s", "", "b", []byte("\x01\xa7changed")), "\n")}
		if got := e.rec.named("hset"); !slices.Equal(got, want) {
			t.Errorf("HSETs = %q, want %q", got, want)
		}
		if got := e.rec.named("hdel"); len(got) != 1 || got[0] != "hdel "+key(id)+" c" {
			t.Errorf("HDELs = %q, want one of c", got)
		}
		if n := e.rec.count(); n != 2 {
			t.Errorf("round trips = %d, want 2 (Load, save)", n)
		}
		if got := e.raw(t, id); len(got) != 2 || got["a"] == "" {
			t.Errorf("hash = %q, want a and b", got)
		}
	})
}

func TestMiddlewareConcurrentRequests(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		id := e.create(t, map[string]any{"user": "ada"})
		const n = 16
		// Every request reads the session before any of them writes, the
		// interleaving in which blob stores keep only the last writer's copy.
		var read, wg sync.WaitGroup
		read.Add(n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				e.serve(t, id, func(w http.ResponseWriter, r *http.Request) {
					s := e.st.From(r.Context())
					_, err := session.Get[string](r.Context(), s, "user")
					read.Done()
					if err != nil {
						t.Errorf("Get(user) error = %v", err)
					}
					<-start
					s.Set(fmt.Sprintf("f%d", i), i)
				})
			})
		}
		read.Wait()
		close(start)
		wg.Wait()
		got := e.raw(t, id)
		if len(got) != n+1 {
			t.Errorf("fields after %d concurrent requests = %d, want %d: %q", n, len(got), n+1, slices.Sorted(maps.Keys(got)))
		}
		s := e.st.Open(id)
		for i := range n {
			if v, err := session.Get[int](context.Background(), s, fmt.Sprintf("f%d", i)); v != i || err != nil {
				t.Errorf("Get(f%d) = %d, %v, want %d, nil", i, v, err, i)
			}
		}
	})
}

func TestMiddlewareBadCookies(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		victim := e.create(t, map[string]any{"secret": "victim's"})
		before := e.raw(t, victim)
		tests := []struct {
			name   string
			cookie string
		}{
			{"garbage", "not-a-session-id"},
			{"truncated", victim[:39]},
			{"extended", victim + "A"},
			{"brace", "{" + victim[1:]},
			{"quoted", `"` + victim[1:39] + `"`},
			{"never issued", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" + victim[32:]},
			{"long", strings.Repeat("A", 4000)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := e.serve(t, tt.cookie, func(w http.ResponseWriter, r *http.Request) {
					s := e.st.From(r.Context())
					if _, err := session.Get[string](r.Context(), s, "secret"); !errors.Is(err, session.ErrNoField) {
						t.Errorf("Get(secret) error = %v, want ErrNoField", err)
					}
					s.Set("mine", "x")
				})
				if res.StatusCode != http.StatusOK {
					t.Errorf("status = %d, want 200", res.StatusCode)
				}
				c := sessionCookie(res)
				if c == nil || c.Value == tt.cookie || c.Value == victim || c.MaxAge < 0 {
					t.Fatalf("Set-Cookie = %v, want a fresh session ID", c)
				}
				if got, err := e.getString(t, c.Value, "mine"); got != "x" || err != nil {
					t.Errorf("Get(mine) of the fresh session = %q, %v, want x, nil", got, err)
				}
			})
		}
		if got := e.raw(t, victim); !maps.Equal(got, before) {
			t.Errorf("victim's hash = %q, want %q", got, before)
		}
	})
}

func TestMiddlewareClearsDeadCookie(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		id := e.create(t, map[string]any{"a": "1"})
		if err := e.st.Open(id).Destroy(context.Background()); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name   string
			cookie string
			h      http.HandlerFunc
		}{
			{"unknown, read", id, func(w http.ResponseWriter, r *http.Request) {
				session.Get[string](r.Context(), e.st.From(r.Context()), "a")
			}},
			{"malformed, untouched", "garbage", func(w http.ResponseWriter, r *http.Request) {}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := sessionCookie(e.serve(t, tt.cookie, tt.h))
				if c == nil || c.MaxAge >= 0 || c.Value != "" {
					t.Errorf("Set-Cookie = %v, want the cookie cleared", c)
				}
			})
		}
	})
}

func TestMiddlewareLoginRenews(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		// The attacker's own session, whose ID they plant in the
		// victim's browser.
		planted := e.create(t, map[string]any{"cart": "1 book"})
		res := e.serve(t, planted, func(w http.ResponseWriter, r *http.Request) {
			s := e.st.From(r.Context())
			if err := s.Renew(r.Context()); err != nil {
				t.Errorf("Renew error = %v", err)
			}
			s.Set("user", "victim")
			w.Write([]byte("welcome"))
		})
		c := sessionCookie(res)
		if c == nil || c.Value == planted {
			t.Fatalf("Set-Cookie after login = %v, want a new ID", c)
		}
		if got, err := e.getString(t, c.Value, "cart"); got != "1 book" || err != nil {
			t.Errorf("Get(cart) after Renew = %q, %v, want the data kept", got, err)
		}
		if got, err := e.getString(t, c.Value, "user"); got != "victim" || err != nil {
			t.Errorf("Get(user) after login = %q, %v, want victim, nil", got, err)
		}
		if _, err := e.getString(t, planted, "user"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(user) with the planted ID error = %v, want ErrNoField", err)
		}
	})
}

func TestMiddlewareLogout(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		id := e.create(t, map[string]any{"user": "ada"})
		res := e.serve(t, id, func(w http.ResponseWriter, r *http.Request) {
			if err := e.st.From(r.Context()).Destroy(r.Context()); err != nil {
				t.Errorf("Destroy error = %v", err)
			}
		})
		if c := sessionCookie(res); c == nil || c.MaxAge >= 0 {
			t.Errorf("Set-Cookie after Destroy = %v, want the cookie cleared", c)
		}
		if _, err := e.getString(t, id, "user"); !errors.Is(err, session.ErrNoField) {
			t.Errorf("Get(user) after logout error = %v, want ErrNoField", err)
		}
	})
}

func TestMiddlewareHeadersWritten(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		id := e.create(t, map[string]any{"a": "1"})
		// An existing session can still be saved after the body: its
		// cookie does not change.
		e.serve(t, id, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("body"))
			s := e.st.From(r.Context())
			s.Set("late", "yes")
			if err := s.Save(r.Context()); err != nil {
				t.Errorf("Save of an existing session after the body error = %v", err)
			}
			if err := s.Renew(r.Context()); !errors.Is(err, session.ErrHeadersWritten) {
				t.Errorf("Renew after the body error = %v, want ErrHeadersWritten", err)
			}
		})
		if got, err := e.getString(t, id, "late"); got != "yes" || err != nil {
			t.Errorf("Get(late) = %q, %v, want yes, nil", got, err)
		}
		// A new session cannot: its ID would never reach the client.
		e.rec.reset()
		res := e.serve(t, "", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			s := e.st.From(r.Context())
			s.Set("a", "1")
			if err := s.Save(r.Context()); !errors.Is(err, session.ErrHeadersWritten) {
				t.Errorf("Save of a new session after the headers error = %v, want ErrHeadersWritten", err)
			}
		})
		if c := sessionCookie(res); c != nil {
			t.Errorf("Set-Cookie = %v, want none", c)
		}
		if n := e.rec.count(); n != 0 {
			t.Errorf("round trips = %d, want 0: %q", n, e.rec.cmds)
		}
	})
}

func TestMiddlewareLogsSaveErrors(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	e := deadEnv(t, session.WithLogger(logger))
	res := e.serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		e.st.From(r.Context()).Set("a", "1")
		w.Write([]byte("ok"))
	})
	if res.StatusCode != http.StatusOK {
		t.Errorf("status = %d, want 200 (the handler's)", res.StatusCode)
	}
	if c := sessionCookie(res); c != nil {
		t.Errorf("Set-Cookie = %v, want none (nothing saved)", c)
	}
	if !strings.Contains(logs.String(), "session: save before the response") || !strings.Contains(logs.String(), "unavailable") {
		t.Errorf("log = %q, want the failed save", logs.String())
	}
}

func TestFromOutsideMiddleware(t *testing.T) {
	e := newEnv(t, redistest.StartMini(t))
	s := e.st.From(context.Background())
	if s != nil {
		t.Fatalf("From(a context without a session) = %v, want nil", s)
	}
	if err := s.Set("a", 1); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Set on From's nil error = %v, want ErrNoSession", err)
	}
	// Two Stores do not see each other's sessions.
	other := newEnv(t, redistest.StartMini(t))
	e.serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		if got := other.st.From(r.Context()); got != nil {
			t.Errorf("other Store's From inside this Store's middleware = %v, want nil", got)
		}
	})
}
