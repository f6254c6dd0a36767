package session_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
)

// FuzzCookie sends arbitrary cookie values through the middleware beside a
// victim's session: every request gets a working session of its own, never
// an error and never the victim's data.
func FuzzCookie(f *testing.F) {
	e := onClient(f, redistest.StartMini(f).Client(f))
	victim := e.create(f, map[string]any{"secret": "victim's"})
	for _, seed := range []string{"", "x", victim, victim[:39], victim + "A", "{" + victim[1:], victim[:32] + "_" + victim[33:], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGKJ5Tw"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, cookie string) {
		if cookie == victim {
			return
		}
		res := e.serve(t, cookie, func(w http.ResponseWriter, r *http.Request) {
			s := e.st.From(r.Context())
			if _, err := session.Get[string](r.Context(), s, "secret"); !errors.Is(err, session.ErrNoField) {
				t.Errorf("Get(secret) with cookie %q error = %v, want ErrNoField", cookie, err)
			}
			s.Set("mine", cookie)
		})
		if res.StatusCode != http.StatusOK {
			t.Errorf("status with cookie %q = %d, want 200", cookie, res.StatusCode)
		}
		c := sessionCookie(res)
		if c == nil || c.Value == victim {
			t.Fatalf("Set-Cookie with cookie %q = %v, want a session of its own", cookie, c)
		}
		if got, err := e.getString(t, c.Value, "mine"); got != cookie || err != nil {
			t.Errorf("Get(mine) = %q, %v, want %q, nil", got, err, cookie)
		}
	})
}
