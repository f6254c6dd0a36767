package session_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/session"
	"github.com/redis/go-redis/v9"
)

// exampleStore returns a Store on an embedded miniredis, and a function
// that releases everything.
func exampleStore(opts ...session.Option) (*session.Store, func()) {
	st, _, done := exampleStoreOn(opts...)
	return st, done
}

// exampleStoreOn is exampleStore that also returns the miniredis, whose
// clock the example moves.
func exampleStoreOn(opts ...session.Option) (*session.Store, *miniredis.Miniredis, func()) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("shop"))
	if err != nil {
		panic(err)
	}
	st, err := session.New(m, opts...)
	if err != nil {
		panic(err)
	}
	return st, mr, func() { m.Close(); rdb.Close(); mr.Close() }
}

// User is what the examples keep in a session.
type User struct {
	ID   int
	Name string
}

// login saves a new session holding a user and returns its ID.
func login(st *session.Store) string {
	s := st.Open("")
	s.Set("user", User{ID: 7, Name: "Ada"})
	s.Set("theme", "dark")
	if err := s.Save(context.Background()); err != nil {
		panic(err)
	}
	return s.ID()
}

func ExampleNew() {
	mr, err := miniredis.Run() // embedded Redis for the example
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	m, err := cachemgr.New(rdb, cachemgr.WithPrefix("shop"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	sessions, err := session.New(m,
		session.WithIdleTimeout(30*time.Minute),
		session.WithLifetime(12*time.Hour),
		session.WithCookieName("sid"),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	s := sessions.Open("")
	s.Set("user", User{ID: 7, Name: "Ada"})
	if err := s.Save(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(s.ID()), "characters,", len(mr.Keys()), "key in Redis")
	// Output: 40 characters, 1 key in Redis
}

func ExampleStore_Open() {
	st, done := exampleStore()
	defer done()
	ctx := context.Background()
	id := login(st)

	for _, cookie := range []string{id, "forged", ""} {
		s := st.Open(cookie) // no Redis call yet
		u, err := session.Get[User](ctx, s, "user")
		fmt.Printf("%q %v\n", u.Name, errors.Is(err, session.ErrNoField))
	}
	// Output:
	// "Ada" false
	// "" true
	// "" true
}

func ExampleGet() {
	st, done := exampleStore()
	defer done()
	ctx := context.Background()
	id := login(st)

	s := st.Open(id)
	u, err := session.Get[User](ctx, s, "user")
	fmt.Println(u.Name, err)
	_, err = session.Get[string](ctx, s, "cart")
	fmt.Println(errors.Is(err, session.ErrNoField))
	_, err = session.Get[int](ctx, s, "theme") // stored as a string
	fmt.Println(errors.Is(err, session.ErrDecode))
	// Output:
	// Ada <nil>
	// true
	// true
}

func ExampleSession_Load() {
	st, done := exampleStore()
	defer done()
	ctx := context.Background()
	id := login(st)

	s := st.Open(id)
	// One round trip for both fields; the Gets then make none.
	if err := s.Load(ctx, "user", "theme"); err != nil {
		fmt.Println(err)
		return
	}
	u, _ := session.Get[User](ctx, s, "user")
	theme, _ := session.Get[string](ctx, s, "theme")
	fmt.Println(u.Name, theme)
	// Output: Ada dark
}

func ExampleSession_Set() {
	st, done := exampleStore()
	defer done()
	ctx := context.Background()
	id := login(st)

	s := st.Open(id)
	s.Set("theme", "light")
	s.Set("cart", []string{"book"})
	// Writes the two fields, and only them, in one round trip.
	if err := s.Save(ctx); err != nil {
		fmt.Println(err)
		return
	}
	again := st.Open(id)
	theme, _ := session.Get[string](ctx, again, "theme")
	cart, _ := session.Get[[]string](ctx, again, "cart")
	u, _ := session.Get[User](ctx, again, "user")
	fmt.Println(theme, cart, u.Name)
	// Output: light [book] Ada
}

func ExampleSession_Delete() {
	st, done := exampleStore()
	defer done()
	ctx := context.Background()
	id := login(st)

	s := st.Open(id)
	s.Delete("theme")
	if err := s.Save(ctx); err != nil {
		fmt.Println(err)
		return
	}
	_, err := session.Get[string](ctx, st.Open(id), "theme")
	u, _ := session.Get[User](ctx, st.Open(id), "user")
	fmt.Println(errors.Is(err, session.ErrNoField), u.Name)
	// Output: true Ada
}

func ExampleSession_Destroy() {
	st, done := exampleStore()
	defer done()
	ctx := context.Background()
	id := login(st)

	if err := st.Open(id).Destroy(ctx); err != nil {
		fmt.Println(err)
		return
	}
	_, err := session.Get[User](ctx, st.Open(id), "user")
	fmt.Println(errors.Is(err, session.ErrNoField))
	// Output: true
}

func ExampleSession_Renew() {
	st, done := exampleStore()
	defer done()
	ctx := context.Background()
	id := login(st)

	s := st.Open(id)
	if err := s.Renew(ctx); err != nil {
		fmt.Println(err)
		return
	}
	u, _ := session.Get[User](ctx, st.Open(s.ID()), "user")
	_, err := session.Get[User](ctx, st.Open(id), "user")
	fmt.Println(s.ID() != id, u.Name, errors.Is(err, session.ErrNoField))
	// Output: true Ada true
}

func ExampleStore_Middleware() {
	st, done := exampleStore(session.WithSecure(false)) // plain http:// in this example
	defer done()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := st.From(r.Context())
		if err := s.Renew(r.Context()); err != nil { // against session fixation
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		s.Set("user", User{ID: 7, Name: r.FormValue("name")})
		// Saved, and the cookie set, before the response goes out.
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		u, err := session.Get[User](r.Context(), st.From(r.Context()), "user")
		if errors.Is(err, session.ErrNoField) {
			fmt.Fprintln(w, "hello, stranger")
			return
		}
		fmt.Fprintln(w, "hello,", u.Name)
	})
	ts := httptest.NewServer(st.Middleware(mux))
	defer ts.Close()

	res, err := http.PostForm(ts.URL+"/login", map[string][]string{"name": {"Ada"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	cookie := res.Cookies()[0]
	fmt.Println(cookie.Name, cookie.HttpOnly, cookie.SameSite == http.SameSiteLaxMode)

	for _, c := range []*http.Cookie{nil, cookie, {Name: "session", Value: "forged"}} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL, nil)
		if c != nil {
			req.AddCookie(c)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		var greeting string
		fmt.Fscanln(res.Body, &greeting, &greeting)
		res.Body.Close()
		fmt.Println(res.StatusCode, greeting)
	}
	// Output:
	// session true true
	// 200 stranger
	// 200 Ada
	// 200 stranger
}

func ExampleWithIdleTimeout() {
	// Every use restarts the idle timeout here; with the default refresh
	// interval (a tenth of it), a session ends between 27 and 30 minutes
	// after its last use.
	st, mr, done := exampleStoreOn(session.WithIdleTimeout(30*time.Minute), session.WithRefreshInterval(0))
	defer done()
	ctx := context.Background()
	id := login(st)

	mr.FastForward(20 * time.Minute) // Redis's clock: the TTL decides
	_, err := session.Get[User](ctx, st.Open(id), "user")
	fmt.Println("after 20 minutes:", err)
	mr.FastForward(29 * time.Minute) // 29 minutes after that use
	_, err = session.Get[User](ctx, st.Open(id), "user")
	fmt.Println("29 minutes after its last use:", err)
	mr.FastForward(31 * time.Minute)
	_, err = session.Get[User](ctx, st.Open(id), "user")
	fmt.Println("31 minutes after its last use:", errors.Is(err, session.ErrNoField))
	// Output:
	// after 20 minutes: <nil>
	// 29 minutes after its last use: <nil>
	// 31 minutes after its last use: true
}

func ExampleWithLifetime() {
	st, mr, done := exampleStoreOn(session.WithIdleTimeout(30*time.Minute), session.WithLifetime(time.Hour), session.WithRefreshInterval(0))
	defer done()
	ctx := context.Background()
	now := time.Now()
	mr.SetTime(now) // Redis's clock, which the example moves
	id := login(st)

	// Used every 20 minutes, the session still ends an hour after its
	// creation: each use caps Redis's TTL at the deadline. (The last check
	// is a minute past the hour: the session was created a moment after
	// now.)
	prev := 0
	for _, minutes := range []int{20, 40, 61} {
		mr.SetTime(now.Add(time.Duration(minutes) * time.Minute))
		mr.FastForward(time.Duration(minutes-prev) * time.Minute)
		prev = minutes
		_, err := session.Get[User](ctx, st.Open(id), "user")
		fmt.Println(minutes, "minutes:", err == nil)
	}
	// Output:
	// 20 minutes: true
	// 40 minutes: true
	// 61 minutes: false
}
