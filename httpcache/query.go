package httpcache

import (
	"fmt"
	"net/url"

	"github.com/cachemgr/cachemgr"
)

// queryFilter decides which query parameters are part of the key: only
// those in allow when allow is set, else all but those in deny.
type queryFilter struct {
	allow, deny map[string]bool
}

// apply removes from vals the parameters that are not part of the key.
func (f queryFilter) apply(vals url.Values) {
	for name := range vals {
		if f.allow != nil && !f.allow[name] || f.deny[name] {
			delete(vals, name)
		}
	}
}

// WithQueryKeys makes only the named query parameters part of the key:
// requests that differ in other parameters (tracking tags, cache busters)
// share one entry, so a client cannot make a new entry, and a handler run,
// by adding a parameter. The handler still sees the whole query, and must
// not let the other parameters change its response. Names are matched
// exactly. It cannot be combined with WithoutQueryKeys.
// Default: every parameter is part of the key.
func WithQueryKeys(names ...string) Option {
	return func(c *config) error {
		if c.query.deny != nil {
			return fmt.Errorf("%w: WithQueryKeys with WithoutQueryKeys", cachemgr.ErrInvalidOption)
		}
		c.query.allow = set(names)
		return nil
	}
}

// WithoutQueryKeys leaves the named query parameters out of the key, for
// parameters the response does not depend on (utm_source, a cache buster).
// Names are matched exactly. It cannot be combined with WithQueryKeys.
// Default: every parameter is part of the key.
func WithoutQueryKeys(names ...string) Option {
	return func(c *config) error {
		if c.query.allow != nil {
			return fmt.Errorf("%w: WithoutQueryKeys with WithQueryKeys", cachemgr.ErrInvalidOption)
		}
		c.query.deny = set(names)
		return nil
	}
}

func set(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
