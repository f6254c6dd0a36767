package cachemgr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

func TestInvalidateTags(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		a, _ := newManager(t, s)
		b, _ := newManager(t, s) // another process
		products := newCache[string](t, a, "product")
		categories := newCache[string](t, a, "category")
		set := func(c *cachemgr.Cache[string], k string, tags ...string) {
			t.Helper()
			if err := c.Set(ctx, k, "v"+k, cachemgr.Tags(tags...)); err != nil {
				t.Fatalf("Set(%q) error = %v", k, err)
			}
		}
		set(products, "1", "category:7", "user:1")
		set(products, "2", "category:7")
		set(products, "3", "category:8")
		set(products, "4")
		set(categories, "7", "category:7")
		for _, k := range []string{"1", "2", "3", "4"} {
			if _, err := products.Get(ctx, k); err != nil {
				t.Fatalf("Get(%q) before invalidation error = %v", k, err)
			}
		}
		if err := b.InvalidateTags(ctx, "category:7"); err != nil {
			t.Fatalf("InvalidateTags() error = %v", err)
		}
		tests := []struct {
			c    *cachemgr.Cache[string]
			key  string
			miss bool
		}{
			{products, "1", true},
			{products, "2", true},
			{products, "3", false},
			{products, "4", false},
			{categories, "7", true},
		}
		for _, tt := range tests {
			_, err := tt.c.Get(ctx, tt.key)
			if got := errors.Is(err, cachemgr.ErrMiss); got != tt.miss {
				t.Errorf("%s.Get(%q) error = %v, want miss %v", tt.c.Name(), tt.key, err, tt.miss)
			}
		}
		if st := a.Stats(); st.Invalidated != 3 {
			t.Errorf("Stats().Invalidated = %d, want 3", st.Invalidated)
		}
		// A value written after the invalidation is readable.
		set(products, "1", "category:7")
		if v, err := products.Get(ctx, "1"); err != nil || v != "v1" {
			t.Errorf("Get after re-Set = %q, %v; want v1", v, err)
		}
	})
}

func TestLoaderAddsTags(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, _ := newManager(t, s)
		c := newCache[string](t, m, "p")
		loads := 0
		load := func(ctx context.Context) (string, error) {
			loads++
			cachemgr.EntryFrom(ctx).AddTags("category:9") // known only after loading
			return fmt.Sprint("load ", loads), nil
		}
		for i := range 2 {
			if v, err := c.Fetch(ctx, "k", load, cachemgr.Tags("user:1")); err != nil || v != "load 1" {
				t.Fatalf("Fetch() #%d = %q, %v; want load 1", i+1, v, err)
			}
		}
		for i, tag := range []string{"category:9", "user:1"} {
			if err := m.InvalidateTags(ctx, tag); err != nil {
				t.Fatalf("InvalidateTags(%q) error = %v", tag, err)
			}
			want := fmt.Sprint("load ", i+2)
			if v, err := c.Fetch(ctx, "k", load, cachemgr.Tags("user:1")); err != nil || v != want {
				t.Errorf("Fetch() after InvalidateTags(%q) = %q, %v; want %q", tag, v, err, want)
			}
		}
	})
}

// TestInvalidateTagsDuringLoad proves guarantee 3 for tags, including for
// a key that was not cached (not yet a "member") when the invalidation ran.
func TestInvalidateTagsDuringLoad(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, _ := newManager(t, s)
		other, _ := newManager(t, s)
		c := newCache[string](t, m, "p")
		blockedFetch(t, c, "k", "old", func() {
			if err := other.InvalidateTags(ctx, "category:1"); err != nil {
				t.Fatalf("InvalidateTags() error = %v", err)
			}
		})
		// The loader above returned no tags; this one attaches the tag.
		c2 := newCache[string](t, m, "q")
		inLoad, release := make(chan struct{}), make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			c2.Fetch(ctx, "k", func(ctx context.Context) (string, error) {
				close(inLoad)
				<-release
				cachemgr.EntryFrom(ctx).AddTags("category:1")
				return "old", nil
			})
		}()
		<-inLoad
		if err := other.InvalidateTags(ctx, "category:1"); err != nil {
			t.Fatalf("InvalidateTags() error = %v", err)
		}
		close(release)
		<-done
		if v, err := c2.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get after InvalidateTags during load = %q, %v; want ErrMiss", v, err)
		}
	})
}

// TestInvalidateTagsClockSkew: a process whose clock is behind by less than
// the skew allowance still invalidates loads that began before it.
func TestInvalidateTagsClockSkew(t *testing.T) {
	s := redistest.StartMini(t)
	ctx := context.Background()
	m, _ := newManager(t, s)
	behind, _ := newManager(t, s, cachemgr.WithClock(func() time.Time { return time.Now().Add(-200 * time.Millisecond) }))
	c := newCache[string](t, m, "p")
	inLoad, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Fetch(ctx, "k", func(context.Context) (string, error) {
			close(inLoad)
			<-release
			return "old", nil
		}, cachemgr.Tags("t"))
	}()
	<-inLoad
	if err := behind.InvalidateTags(ctx, "t"); err != nil {
		t.Fatalf("InvalidateTags() error = %v", err)
	}
	close(release)
	<-done
	if v, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
		t.Errorf("Get after skewed InvalidateTags = %q, %v; want ErrMiss", v, err)
	}
}

// TestTagStampLost: an evicted or expired tag stamp makes its entries
// unreadable rather than stale; new writes are readable.
func TestTagStampLost(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, rdb := newManager(t, s)
		c := newCache[string](t, m, "p")
		if err := c.Set(ctx, "k", "v", cachemgr.Tags("t")); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if n := rdb.Del(ctx, "test:~tag:{tt}").Val(); n != 1 {
			t.Fatalf("DEL tag stamp = %d, want 1", n)
		}
		if _, err := c.Get(ctx, "k"); !errors.Is(err, cachemgr.ErrMiss) {
			t.Errorf("Get after stamp loss error = %v, want ErrMiss", err)
		}
		if err := c.Set(ctx, "k", "again", cachemgr.Tags("t")); err != nil {
			t.Fatalf("Set() error = %v", err)
		}
		if v, err := c.Get(ctx, "k"); err != nil || v != "again" {
			t.Errorf("Get after re-Set = %q, %v; want again", v, err)
		}
		if ttl := rdb.PTTL(ctx, "test:~tag:{tt}").Val(); ttl < time.Minute {
			t.Errorf("tag stamp PTTL = %v, want at least the entry's TTL", ttl)
		}
	})
}

func TestTagsRejectBadInput(t *testing.T) {
	m, _ := newManager(t, redistest.StartMini(t))
	c := newCache[string](t, m, "p")
	ctx := context.Background()
	many := make([]string, 33)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	tests := []struct {
		name string
		tags []string
	}{
		{"empty tag", []string{""}},
		{"too many", many},
		{"too long", []string{strings.Repeat("t", 1025)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.Set(ctx, "k", "v", cachemgr.Tags(tt.tags...)); !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("Set(Tags(%d tags)) error = %v, want ErrInvalidOption", len(tt.tags), err)
			}
			if err := m.InvalidateTags(ctx, tt.tags...); !errors.Is(err, cachemgr.ErrInvalidOption) {
				t.Errorf("InvalidateTags(%d tags) error = %v, want ErrInvalidOption", len(tt.tags), err)
			}
		})
	}
}

func TestTagsWithSpecialCharacters(t *testing.T) {
	redistest.Each(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		m, _ := newManager(t, s)
		c := newCache[string](t, m, "p")
		tags := []string{"*", "a?b", "[x]", `\`, "{", "}", "{}", "a b", strings.Repeat("long", 100)}
		for i, tag := range tags {
			if err := c.Set(ctx, fmt.Sprint(i), "v", cachemgr.Tags(tag)); err != nil {
				t.Fatalf("Set(Tags(%.20q)) error = %v", tag, err)
			}
		}
		if err := m.InvalidateTags(ctx, "{}"); err != nil {
			t.Fatalf("InvalidateTags() error = %v", err)
		}
		for i, tag := range tags {
			_, err := c.Get(ctx, fmt.Sprint(i))
			if got, want := errors.Is(err, cachemgr.ErrMiss), tag == "{}"; got != want {
				t.Errorf("Get(entry tagged %.20q) miss = %v, want %v", tag, got, want)
			}
		}
	})
}
