package cachemgr_test

// Fault tests: keys — injectivity, glob and hash-tag characters, slots
// picked by user input, huge keys and values (docs/reliability.md, groups E
// and F).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestReliabilityKeyInjectivity (scenarios 49, 54): random prefixes, cache
// names and user keys made of separators, hash-tag characters, glob
// characters and the markers of versioned and hashed keys, over plain and
// versioned caches and a short maximum key length. Every distinct
// (prefix, name, versioned, key) reads back its own value: no two map to
// one Redis key, and tenants (prefixes) never see each other's data.
func TestReliabilityKeyInjectivity(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(49, 54))
	pick := func(alphabet []string, n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[rnd.IntN(len(alphabet))])
		}
		return b.String()
	}
	prefixAlphabet := []string{"a", ":", "v", "~", "=", "#", "*", "t", "i"}
	nameAlphabet := []string{"a", "v", "~", "=", "#", "*", "t", "i", "tag"}
	keyAlphabet := []string{"a", ":", "{", "}", "=", "#", "~", "v", "i", "*", `\`, "tag", "{=", "}:i", ":v"}
	type target struct {
		prefix, name string
		versioned    bool
		maxKey       int
		key          string
	}
	managers := map[[2]string]*cachemgr.Manager{}
	caches := map[target]*cachemgr.Cache[string]{}
	cacheFor := func(tg target) *cachemgr.Cache[string] {
		ct := tg
		ct.key = ""
		if c, ok := caches[ct]; ok {
			return c
		}
		mk := [2]string{tg.prefix, strconv.Itoa(tg.maxKey)}
		m, ok := managers[mk]
		if !ok {
			m = managerOn(t, s.Client(t), cachemgr.WithPrefix(tg.prefix), cachemgr.WithMaxKeyLen(tg.maxKey))
			managers[mk] = m
		}
		c := newCache[string](t, m, tg.name, cachemgr.WithVersioned(tg.versioned))
		caches[ct] = c
		return c
	}
	// The maximum key length changes only how long keys are spelled, so
	// one logical key is (prefix, name, versioned, key).
	seen := map[target]bool{}
	var targets []target
	for len(targets) < 400 {
		tg := target{
			prefix:    pick(prefixAlphabet, rnd.IntN(3)),
			name:      pick(nameAlphabet, 1+rnd.IntN(2)),
			versioned: rnd.IntN(3) == 0,
			maxKey:    []int{4, 200}[rnd.IntN(2)],
			key:       pick(keyAlphabet, rnd.IntN(5)),
		}
		id := tg
		id.maxKey = 0
		if !seen[id] {
			seen[id] = true
			targets = append(targets, tg)
		}
	}
	for i, tg := range targets {
		if err := cacheFor(tg).Set(ctx, tg.key, strconv.Itoa(i), cachemgr.Tags(tg.key+"#tag")); err != nil {
			t.Fatalf("Set(%+v) error = %v", tg, err)
		}
	}
	for i, tg := range targets {
		got, err := cacheFor(tg).Get(ctx, tg.key)
		if err != nil || got != strconv.Itoa(i) {
			t.Errorf("Get(%+v) = %q, %v; want its own value %d", tg, got, err, i)
		}
	}
	t.Logf("%d targets over %d caches and %d Managers", len(targets), len(caches), len(managers))
}

// relSlot returns the Redis Cluster hash slot of key (CRC16/XMODEM of the
// hash tag, or of the whole key), as CLUSTER KEYSLOT would.
func relSlot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// TestReliabilityGlobAndHashTagKeys (scenarios 50, 51, 53): glob
// characters in InvalidatePrefix match only themselves; a user key's
// companions (the invalidation marker) share its slot whatever the key
// holds; special characters work on the data path.
func TestReliabilityGlobAndHashTagKeys(t *testing.T) {
	if relSlot("foo") != 12182 || relSlot("{bar}foo") != relSlot("bar") {
		t.Fatalf("relSlot does not match CLUSTER KEYSLOT")
	}
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[string](t, m, "glob")
	keys := []string{`a\b`, `a\bc`, `ab`, `a*`, `aa`, `[ab]x`, `ax`, `bx`, `?x`, `zx`, `{x`, `}x`, `x}`, `a?`, "\r\n", "nul\x00", "\xff"}
	prefixes := []struct {
		prefix string
		want   []string
	}{
		{`a\`, []string{`a\b`, `a\bc`}},
		{`[ab]`, []string{`[ab]x`}},
		{`?`, []string{`?x`}},
		{`a?`, []string{`a?`}},
		{`{`, []string{`{x`}},
		{`}`, []string{`}x`}},
		{"\r", []string{"\r\n"}},
	}
	for _, tt := range prefixes {
		t.Run(fmt.Sprintf("%q", tt.prefix), func(t *testing.T) {
			for _, k := range keys {
				if err := c.Set(ctx, k, k); err != nil {
					t.Fatalf("Set(%q) error = %v", k, err)
				}
			}
			n, err := c.InvalidatePrefix(ctx, tt.prefix)
			if err != nil || n != len(tt.want) {
				t.Errorf("InvalidatePrefix(%q) = %d, %v; want %d", tt.prefix, n, err, len(tt.want))
			}
			for _, k := range keys {
				_, err := c.Get(ctx, k)
				if got, want := errors.Is(err, cachemgr.ErrMiss), slices.Contains(tt.want, k); got != want {
					t.Errorf("after InvalidatePrefix(%q): Get(%q) miss = %v, want %v", tt.prefix, k, got, want)
				}
			}
		})
	}
	for _, k := range []string{"{x}", "}{", "{}", "}", "a}b{c", "{=x}", "}:i"} {
		if err := c.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q) error = %v", k, err)
		}
	}
	for _, key := range rdb.Keys(ctx, "test:glob:*").Val() {
		if !strings.HasSuffix(key, ":i") {
			continue
		}
		data := strings.TrimSuffix(key, ":i")
		if relSlot(key) != relSlot(data) {
			t.Errorf("marker %q in slot %d, its data key %q in slot %d: a script touching both would fail with CROSSSLOT", key, relSlot(key), data, relSlot(data))
		}
	}
}

// TestReliabilityUserKeysCannotPickSlot (scenario 51): keys.go promises
// that "user input cannot pick the slot". User keys that share a prefix
// ending in "}" must still spread over slots like other keys do.
func TestReliabilityUserKeysCannotPickSlot(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s)
	c := newCache[string](t, m, "slots")
	for _, shape := range []string{"user%d", "}%d", "{tenant}%d"} {
		for i := range 100 {
			if err := c.Set(ctx, fmt.Sprintf(shape, i), "v"); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
		}
	}
	bySlot := map[string]map[int]bool{}
	for _, key := range rdb.Keys(ctx, "test:slots:*").Val() {
		user := strings.TrimSuffix(strings.TrimPrefix(key, "test:slots:{="), "}")
		shape := "user%d"
		switch {
		case strings.HasPrefix(user, "}"):
			shape = "}%d"
		case strings.HasPrefix(user, "{tenant}"):
			shape = "{tenant}%d"
		}
		if bySlot[shape] == nil {
			bySlot[shape] = map[int]bool{}
		}
		bySlot[shape][relSlot(key)] = true
	}
	for shape, slots := range bySlot {
		if len(slots) < 90 {
			t.Errorf("100 user keys %q landed in %d slots, want them spread like plain keys (%d slots)", shape, len(slots), len(bySlot["user%d"]))
		}
	}
}

// TestReliabilityHugeKeysAndValues (scenarios 52, 55): a 10 MB key is
// hashed before it reaches Redis and works on every path; a value far over
// the size limit is refused with ErrTooLarge, with one copy allocated and
// nothing written, and a Fetch of one still returns it; a value just under
// the default 8 MiB limit round-trips, and other callers keep being served
// meanwhile.
func TestReliabilityHugeKeysAndValues(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	m, rdb := newManager(t, s, cachemgr.WithOpTimeout(2*time.Second))
	c := newCache[string](t, m, "huge")

	t.Run("10MB key", func(t *testing.T) {
		key := "user:" + strings.Repeat("k", 10<<20)
		start := time.Now()
		if err := c.Set(ctx, key, "v"); err != nil {
			t.Fatalf("Set(10 MB key) error = %v", err)
		}
		if v, err := c.Get(ctx, key); err != nil || v != "v" {
			t.Errorf("Get(10 MB key) = %q, %v", v, err)
		}
		if n, err := c.InvalidatePrefix(ctx, "user:kkk"); err != nil || n != 1 {
			t.Errorf("InvalidatePrefix(user:kkk) = %d, %v; want the hashed key found", n, err)
		}
		if v, err := c.Fetch(ctx, key, func(context.Context) (string, error) { return "loaded", nil }); err != nil || v != "loaded" {
			t.Errorf("Fetch(10 MB key) = %q, %v", v, err)
		}
		if err := c.Delete(ctx, key); err != nil {
			t.Errorf("Delete(10 MB key) error = %v", err)
		}
		// Hashing the key keeps each call cheap; what this catches is
		// work that grows with the key many times over (a loaded machine
		// takes a few seconds for what a quiet one does in 300ms).
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("5 calls with a 10 MB key took %v", took)
		}
		for _, k := range rdb.Keys(ctx, "test:huge:*").Val() {
			if len(k) > 200 {
				t.Errorf("Redis key of %d bytes, want the 10 MB user key hashed", len(k))
			}
		}
		if err := c.Set(ctx, "k", "v", cachemgr.Tags(key)); !errors.Is(err, cachemgr.ErrInvalidOption) {
			t.Errorf("Set(Tags(10 MB tag)) = %v, want ErrInvalidOption", err)
		}
	})
	t.Run("value 16 times the limit", func(t *testing.T) {
		// A 100 MB value over an 8 MiB limit, scaled down 6x so
		// the race detector does not make it slow: 16 MiB over 1 MiB.
		small, _ := newManager(t, s, cachemgr.WithMaxValueSize(1<<20))
		sc := newCache[string](t, small, "huge")
		big := strings.Repeat("x", 16<<20)
		var err error
		alloc := relAllocated(func() { err = sc.Set(ctx, "big", big) })
		if !errors.Is(err, cachemgr.ErrTooLarge) {
			t.Fatalf("Set(16 MiB) error = %v, want ErrTooLarge", err)
		}
		t.Logf("Set(16 MiB) over a 1 MiB limit allocated %d MiB before refusing", alloc>>20)
		if alloc > 3*uint64(len(big)) {
			t.Errorf("Set(16 MiB) allocated %d MiB before refusing, want at most 3 copies", alloc>>20)
		}
		if n := rdb.Exists(ctx, "test:huge:{=big}").Val(); n != 0 {
			t.Errorf("a refused value was written")
		}
		before := small.Stats().WriteErrors
		v, err := sc.Fetch(ctx, "big", func(context.Context) (string, error) { return big, nil })
		if err != nil || len(v) != len(big) {
			t.Errorf("Fetch(16 MiB) = %d bytes, %v; want the value, uncached", len(v), err)
		}
		if small.Stats().WriteErrors != before+1 {
			t.Errorf("WriteErrors = %d, want %d", small.Stats().WriteErrors, before+1)
		}
	})
	t.Run("7MiB value under the limit", func(t *testing.T) {
		if err := c.Set(ctx, "probe", "p"); err != nil {
			t.Fatalf("Set(probe) error = %v", err)
		}
		var probe relLatencies
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if _, err := c.Get(ctx, "probe"); err != nil {
					t.Errorf("probe Get() error = %v", err)
					return
				}
				probe.add(time.Since(start))
			}
		}()
		want := strings.Repeat("0123456789abcdef", 7<<16) // 7 MiB
		if err := c.Set(ctx, "seven", want, cachemgr.TTL(time.Minute)); err != nil {
			t.Fatalf("Set(7 MiB) error = %v", err)
		}
		if got, err := c.Get(ctx, "seven"); err != nil || got != want {
			t.Fatalf("Get(7 MiB) = %d bytes, %v", len(got), err)
		}
		close(stop)
		wg.Wait()
		t.Logf("Get of a small key while 7 MiB values were written and read: %v", &probe)
	})
}
