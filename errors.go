package cachemgr

import (
	"errors"
	"strings"

	"github.com/cachemgr/cachemgr/internal/transport"
)

// The errors cachemgr returns. Match them with errors.Is: most are wrapped
// with the key and the underlying cause.
var (
	// ErrMiss reports that a key holds no usable value: absent, expired, or
	// stored bytes that did not decode (those are counted and deleted).
	ErrMiss = errors.New("cachemgr: miss")
	// ErrNotFound is what a loader returns, wrapped or not, when the
	// value does not exist at its source. Fetch then caches a negative entry,
	// and Get and Fetch return ErrNotFound while it lives.
	ErrNotFound = errors.New("cachemgr: not found")
	// ErrClosed reports a call on a Manager after Close.
	ErrClosed = transport.ErrClosed
	// ErrUnavailable reports that Redis could not be used: it failed, timed
	// out, or the circuit breaker is open. The underlying error is wrapped too.
	ErrUnavailable = transport.ErrUnavailable
	// ErrNilLoader reports a Fetch without a loader.
	ErrNilLoader = errors.New("cachemgr: nil loader")
	// ErrInvalidTTL reports a TTL that is zero, negative or too large.
	ErrInvalidTTL = errors.New("cachemgr: invalid ttl")
	// ErrTooLarge reports a value whose encoding is over the Manager's
	// maximum value size; nothing was written.
	ErrTooLarge = errors.New("cachemgr: value too large")
	// ErrInvalidOption reports a bad argument to New, NewCache or a
	// per-call option; a bad TTL also matches ErrInvalidTTL.
	ErrInvalidOption = errors.New("cachemgr: invalid option")
	// ErrNotVersioned reports Bump on a cache made without
	// WithVersioned(true).
	ErrNotVersioned = errors.New("cachemgr: cache not versioned")
	// ErrLoaderPanic reports a loader that panicked; the panic value is in
	// the error text and every caller waiting on that load receives it.
	ErrLoaderPanic = errors.New("cachemgr: loader panicked")
)

// optionError is a bad option that another cachemgr error describes (a bad
// TTL): it matches both, and says "cachemgr:" once.
type optionError struct{ err error }

func (e optionError) Error() string {
	return ErrInvalidOption.Error() + ": " + strings.TrimPrefix(e.err.Error(), "cachemgr: ")
}

func (e optionError) Unwrap() []error { return []error{ErrInvalidOption, e.err} }

// invalidOption wraps err as ErrInvalidOption.
func invalidOption(err error) error { return optionError{err} }
