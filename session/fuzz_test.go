package session_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"github.com/cachemgr/cachemgr/session"
)

// FuzzCookie sends arbitrary cookie values through the middleware beside a
// victim's session: every request gets a working session of its own, never
// an error and never the victim's data.
//
// Only a cookie shaped like an ID reaches Redis; for those the handler also
// writes a field, and the test reads it back under the cookie the response
// set. Every other cookie is a new session before any Redis call, so its
// run is pure parsing: the fuzzer's minimization of each new input, which
// may run the target thousands of times and counts no execs meanwhile,
// then takes milliseconds instead of stalling the run (it did, when every
// input made three round trips to Redis).
func FuzzCookie(f *testing.F) {
	e := onClient(f, redistest.StartMini(f).Client(f))
	victim := e.create(f, map[string]any{"secret": "victim's"})
	for _, seed := range []string{"", "x", victim, victim[:39], victim + "A", "{" + victim[1:], victim[:32] + "_" + victim[33:], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGKJ5Tw"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, cookie string) {
		if strings.Contains(cookie, victim) {
			return // knowing the victim's ID is not forging it
		}
		shaped := e.st.Open(cookie).ID() != ""
		res := e.serve(t, cookie, func(w http.ResponseWriter, r *http.Request) {
			s := e.st.From(r.Context())
			if _, err := session.Get[string](r.Context(), s, "secret"); !errors.Is(err, session.ErrNoField) {
				t.Errorf("Get(secret) with cookie %q error = %v, want ErrNoField", cookie, err)
			}
			if shaped {
				s.Set("mine", cookie)
			}
		})
		if res.StatusCode != http.StatusOK {
			t.Errorf("status with cookie %q = %d, want 200", cookie, res.StatusCode)
		}
		c := sessionCookie(res)
		if c != nil && c.Value == victim {
			t.Fatalf("Set-Cookie with cookie %q = the victim's session", cookie)
		}
		if !shaped {
			return
		}
		if c == nil || c.Value == cookie {
			t.Fatalf("Set-Cookie with cookie %q = %v, want a session of its own", cookie, c)
		}
		if got, err := e.getString(t, c.Value, "mine"); got != cookie || err != nil {
			t.Errorf("Get(mine) = %q, %v, want %q, nil", got, err, cookie)
		}
	})
}
