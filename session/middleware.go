package session

import (
	"context"
	"net/http"
)

// ctxKey is the context key of the request's session, one per Store.
type ctxKey struct{ st *Store }

// Middleware wraps next so that its handlers find the request's session
// with From. It calls Redis only when a handler reads or saves the session:
// a request that does not touch it costs nothing. The session's ID comes
// from the cookie; a missing, malformed or unknown one gives a new, empty
// session, never an error.
//
// Changes a handler made and did not Save are saved just before the
// response headers go out (the first Write, WriteHeader or Flush) or when
// the handler returns, and only the changed fields are written. Errors of
// that save go to the logger (WithLogger); a handler that must know calls
// Save itself. The cookie is set when the session got a new ID (its first
// Save, Renew) and cleared after Destroy or when the client's ID turned out
// to be unknown. It is a browser-session cookie, without Max-Age: Redis
// alone decides when a session ends.
func (st *Store) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &Session{st: st}
		present := false
		for _, c := range r.CookiesNamed(st.cookie.Name) {
			present = true
			if p, ok := parseID(c.Value); ok {
				s.setID(p)
				break
			}
		}
		// A cookie that cannot be an ID is not sent back to us again.
		s.clearCookie = present && s.key == ""
		sw := &writer{ResponseWriter: w, s: s, ctx: r.Context()}
		s.w = sw
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{st}, s)))
		sw.commit()
	})
}

// From returns the session of a request wrapped by st's Middleware, given
// the request's context. Outside the middleware it returns nil, whose
// methods return ErrNoSession.
func (st *Store) From(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{st}).(*Session)
	return s
}

// writer saves the session and sets its cookie before the response
// headers go out.
type writer struct {
	http.ResponseWriter
	s         *Session
	ctx       context.Context // the request's
	committed bool            // guarded by s.mu: headers are on their way
}

// commit saves pending changes and sets or clears the cookie, once.
func (sw *writer) commit() {
	s := sw.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if sw.committed {
		return
	}
	if err := s.save(sw.ctx); err != nil {
		s.st.logger.ErrorContext(sw.ctx, "session: save before the response", "err", err)
	}
	sw.committed = true
	c := s.st.cookie
	switch {
	case s.sendCookie:
		c.Value = s.id.id
	case s.clearCookie:
		c.MaxAge = -1
	default:
		return
	}
	http.SetCookie(sw.ResponseWriter, &c)
}

// WriteHeader saves the session first, except for informational (1xx)
// responses, which other headers follow.
func (sw *writer) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		sw.ResponseWriter.WriteHeader(code)
		return
	}
	sw.commit()
	sw.ResponseWriter.WriteHeader(code)
}

// Write saves the session first.
func (sw *writer) Write(b []byte) (int, error) {
	sw.commit()
	return sw.ResponseWriter.Write(b)
}

// Flush saves the session first, then flushes the response if the
// underlying writer can.
func (sw *writer) Flush() {
	sw.commit()
	_ = http.NewResponseController(sw.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (sw *writer) Unwrap() http.ResponseWriter { return sw.ResponseWriter }
