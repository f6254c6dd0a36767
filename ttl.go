package cachemgr

import (
	"fmt"
	"time"
)

// MaxTTL is the longest TTL cachemgr accepts. Longer ones are rejected
// rather than truncated, so a typo cannot cache a value for centuries.
const MaxTTL = 10 * 365 * 24 * time.Hour

// ttlPolicy is a cache's TTL configuration.
type ttlPolicy struct {
	ttl         time.Duration
	jitter      float64
	negativeTTL time.Duration
}

// WithTTL sets how long values of the cache stay fresh. It must be
// positive and at most MaxTTL. Default: 1m.
func WithTTL(d time.Duration) CacheOption {
	return func(c *cacheConfig) error {
		if err := checkTTL(d); err != nil {
			return invalidOption(err)
		}
		c.ttl.ttl = d
		return nil
	}
}

// WithJitter spreads expiries: each written TTL is scaled by a random factor
// in [1-f, 1+f], so keys written together do not expire together. f must be
// in [0, 0.5]; 0 turns jitter off. Default: 0.1.
func WithJitter(f float64) CacheOption {
	return func(c *cacheConfig) error {
		if !(f >= 0 && f <= 0.5) {
			return fmt.Errorf("%w: jitter %v outside [0, 0.5]", ErrInvalidOption, f)
		}
		c.ttl.jitter = f
		return nil
	}
}

// WithNegativeTTL sets how long a loader's ErrNotFound is cached. 0 turns
// negative caching off: every Fetch of a missing value calls the loader.
// Default: 10s.
func WithNegativeTTL(d time.Duration) CacheOption {
	return func(c *cacheConfig) error {
		if d == 0 {
			c.ttl.negativeTTL = 0
			return nil
		}
		if err := checkTTL(d); err != nil {
			return invalidOption(err)
		}
		c.ttl.negativeTTL = d
		return nil
	}
}

// checkTTL rejects TTLs that go-redis would store as "no expiry" (zero,
// negative) and ones long enough to overflow.
func checkTTL(d time.Duration) error {
	if d <= 0 || d > MaxTTL {
		return fmt.Errorf("%w: %v (want > 0 and <= %v)", ErrInvalidTTL, d, MaxTTL)
	}
	return nil
}

// expiry returns the TTL to write for a value meant to live d: d scaled by
// jitter, never below 1ms (Redis' resolution) and never below d*(1-jitter).
// r is a uniform random number in [0, 1).
func (p ttlPolicy) expiry(d time.Duration, r float64) time.Duration {
	if p.jitter > 0 {
		d = time.Duration(float64(d) * (1 + p.jitter*(2*r-1)))
	}
	return max(d, time.Millisecond)
}
