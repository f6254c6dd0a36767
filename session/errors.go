package session

import "errors"

// The errors the session package returns. Match them with errors.Is: most
// are wrapped with the field name and the cause. Redis failures wrap
// cachemgr.ErrUnavailable and the network error.
var (
	// ErrNoField reports a field the session does not hold. A new, unknown
	// or expired session holds no fields.
	ErrNoField = errors.New("session: no such field")
	// ErrDecode reports a stored field that does not decode into the type
	// asked for. Only that field is affected: the session and its other
	// fields stay usable.
	ErrDecode = errors.New("session: field does not decode")
	// ErrInvalidField reports a field name that is empty, longer than
	// MaxFieldLen bytes, not UTF-8, or holds a control character.
	ErrInvalidField = errors.New("session: invalid field name")
	// ErrHeadersWritten reports a change of session ID (the first Save of a
	// new session, or Renew) after the middleware sent the response headers:
	// the new ID could not reach the client, so nothing was written.
	ErrHeadersWritten = errors.New("session: response headers already written")
	// ErrNoSession reports a call on a nil *Session, such as one that
	// Store.From returned for a request the middleware did not wrap.
	ErrNoSession = errors.New("session: no session")
)
