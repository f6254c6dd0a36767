package cachemgr

import (
	"context"
	"fmt"
	"reflect"
)

// Memoize returns fn cached in c: a call looks up the key derived from its
// argument (see MemoKey) and runs fn only on a miss, through c.Fetch, so
// the cache's TTL, tags from EntryFrom, negative caching of ErrNotFound,
// one load per key under concurrency and the answer from fn while Redis is
// down all apply. Errors from fn are returned and not cached; ErrNotFound is
// cached as a negative entry. An argument MemoKey cannot encode makes the
// call return an error wrapping ErrInvalidOption, without calling fn. opts
// (TTL, Tags) apply to every call.
//
// Memoize is NewMemoized for callers that do not check an error: what
// NewMemoized refuses (an argument type that cannot be keyed, a nil cache
// or function, an invalid option) makes every call return that error
// instead, without calling fn.
//
// Give each memoized function a cache of its own: two functions memoized in
// one cache share keys, and one argument would answer for both. Use
// MemoizeKey when the derived key is wrong for A. The returned function is
// safe for concurrent use.
func Memoize[A, R any](c *Cache[R], fn func(context.Context, A) (R, error), opts ...WriteOption) func(context.Context, A) (R, error) {
	memo, err := NewMemoized(c, fn, opts...)
	if err != nil {
		return failing[A, R](err)
	}
	return memo
}

// NewMemoized is Memoize that checks, when it builds the function, what
// would otherwise fail at every call. It returns an error wrapping
// ErrInvalidOption when A cannot be keyed by MemoKey: a func, chan or
// unsafe pointer, a struct with an unexported field that holds data, or a
// struct that may take its String or MarshalText method from an embedded
// field, wherever such a type appears in A (behind pointers, in slices,
// arrays, maps and fields), since only nil or empty values of it could be
// keyed. It also refuses a nil cache (ErrInvalidOption), a nil fn
// (ErrNilLoader) and an invalid option. What an interface in A holds is
// known only at each call, which then returns MemoKey's error as Memoize's
// does.
func NewMemoized[A, R any](c *Cache[R], fn func(context.Context, A) (R, error), opts ...WriteOption) (func(context.Context, A) (R, error), error) {
	if err := keyableType(reflect.TypeFor[A]()); err != nil {
		return nil, fmt.Errorf("memoize: %w", err)
	}
	return memoize(c, func(a A) (string, error) { return MemoKey(a) }, fn, opts)
}

// MemoizeKey is Memoize with the key of each argument given by key, for
// types whose derived key is wrong or impossible: unexported fields, a
// String method that leaves data out, or a cheaper natural key (an ID).
// Arguments with equal keys share one cached result.
func MemoizeKey[A, R any](c *Cache[R], key func(A) string, fn func(context.Context, A) (R, error), opts ...WriteOption) func(context.Context, A) (R, error) {
	if key == nil {
		return failing[A, R](fmt.Errorf("memoize: %w: nil key function", ErrInvalidOption))
	}
	memo, err := memoize(c, func(a A) (string, error) { return key(a), nil }, fn, opts)
	if err != nil {
		return failing[A, R](err)
	}
	return memo
}

func memoize[A, R any](c *Cache[R], key func(A) (string, error), fn func(context.Context, A) (R, error), opts []WriteOption) (func(context.Context, A) (R, error), error) {
	switch {
	case c == nil:
		return nil, fmt.Errorf("memoize: %w: nil cache", ErrInvalidOption)
	case fn == nil:
		return nil, fmt.Errorf("memoize: %w", ErrNilLoader)
	}
	if _, err := writeOptions(opts); err != nil {
		return nil, fmt.Errorf("memoize: %w", err)
	}
	return func(ctx context.Context, a A) (R, error) {
		k, err := key(a)
		if err != nil {
			var zero R
			return zero, err
		}
		return c.Fetch(ctx, k, func(ctx context.Context) (R, error) { return fn(ctx, a) }, opts...)
	}, nil
}

// failing returns a function that always returns err, for a Memoize that
// was given bad arguments and has no error return of its own.
func failing[A, R any](err error) func(context.Context, A) (R, error) {
	return func(context.Context, A) (R, error) {
		var zero R
		return zero, err
	}
}
