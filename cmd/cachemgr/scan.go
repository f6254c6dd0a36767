package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

// census is what the scan command reports of one cache.
type census struct {
	Cache string `json:"cache"`
	Base  string `json:"base"` // the part every key of the cache starts with
	// Version is the current namespace version; "" when there is none.
	Version string `json:"version,omitempty"`
	// Complete tells whether SCAN walked the whole cache; otherwise it
	// stopped at the sample limit and the counts are lower bounds.
	Complete bool `json:"complete"`

	// Data keys, by namespace: Current holds the entries reads can reach
	// (all of them in a cache that is not versioned); OldVersions those of
	// namespaces a Bump left behind, unreachable until their TTL ends.
	Current     int `json:"current"`
	OldVersions int `json:"old_versions"`
	Markers     int `json:"markers"`
	Leases      int `json:"leases"`
	Waiters     int `json:"waiters"` // keys marking that another process waits for a lease
	Other       int `json:"other"`

	// Sampled is how many data keys the figures below cover.
	Sampled     int   `json:"sampled"`
	MemoryBytes int64 `json:"memory_bytes"` // sum of MEMORY USAGE over the sample; 0 when unsupported
	StoredBytes int64 `json:"stored_bytes"` // sum of value lengths over the sample
	NoExpiry    int   `json:"no_expiry"`
	// TTL spread of the sampled keys that expire, in milliseconds.
	TTLMin, TTLMedian, TTLP90, TTLMax int64

	// Header census of the sample.
	Fresh, Stale, Negative, Tagged, Compressed, Unreadable int
	Codecs                                                 map[string]int `json:"codecs"`

	Biggest []sized `json:"biggest"`
}

// sized is one key with its size.
type sized struct {
	Key         string `json:"key"`
	MemoryBytes int64  `json:"memory_bytes"`
	StoredBytes int64  `json:"stored_bytes"`
	TTLMillis   int64  `json:"ttl_ms"`
}

func runScan(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	var c common
	c.register(fs)
	sample := fs.Int("sample", 1000, "stop after this many data keys")
	top := fs.Int("top", 10, "list this many of the biggest keys")
	maxValue := fs.Int("maxvalue", 8<<20, "largest value a Manager accepts, in bytes (WithMaxValueSize)")
	if ok, err := parse(fs, &c, args, "cachemgr scan [flags] CACHE", stdout); !ok {
		return err
	}
	switch {
	case fs.NArg() != 1:
		return errors.New("scan: want CACHE")
	case *sample < 1:
		return fmt.Errorf("-sample %d: want at least 1", *sample)
	case *top < 0:
		return fmt.Errorf("-top %d: want >= 0", *top)
	case *maxValue < 1:
		return fmt.Errorf("-maxvalue %d: want at least 1", *maxValue)
	}
	if err := keys.ValidateName(fs.Arg(0)); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	rdb, closeRedis, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer closeRedis()
	s := scanner{rdb: rdb, c: c, sample: *sample, top: *top, maxValue: *maxValue, now: time.Now}
	cs, err := s.scan(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(stdout, cs)
	}
	return cs.writeText(stdout)
}

// scanner samples the keyspace of caches.
type scanner struct {
	rdb      redis.UniversalClient
	c        common
	sample   int
	top      int
	maxValue int
	now      func() time.Time
}

// scan walks the keys of cache name with SCAN until it has seen s.sample
// data keys, then reads the size, TTL and header of those.
func (s scanner) scan(ctx context.Context, name string) (*census, error) {
	b := keys.New(s.c.prefix, name, s.c.maxKey)
	cs := &census{Cache: name, Base: b.Base(), Codecs: map[string]int{}}
	cctx, cancel := context.WithTimeout(ctx, s.c.timeout)
	ver, err := s.rdb.Get(cctx, b.Version()).Result()
	cancel()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read version of cache %q: %w", name, err)
	}
	cs.Version = ver
	current := b.Base()
	if ver != "" {
		current = b.VersionedBase(ver)
	}

	var data []string
	var cursor uint64
	for {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		cctx, cancel := context.WithTimeout(ctx, s.c.timeout)
		batch, next, err := s.rdb.Scan(cctx, cursor, keys.EscapeGlob(b.Base())+"*", 1000).Result()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("scan %q: %w", b.Base(), err)
		}
		for _, k := range batch {
			switch kind(k, b.Base(), current, b.Version()) {
			case "current":
				cs.Current++
				data = append(data, k)
			case "old":
				cs.OldVersions++
				data = append(data, k)
			case "marker":
				cs.Markers++
			case "lease":
				cs.Leases++
			case "waiters":
				cs.Waiters++
			case "version":
			default:
				cs.Other++
			}
		}
		cursor = next
		if cursor == 0 {
			cs.Complete = true
			break
		}
		if len(data) >= s.sample {
			break
		}
	}
	data = data[:min(len(data), s.sample)]
	if err := s.measure(ctx, cs, data); err != nil {
		return nil, err
	}
	return cs, nil
}

// kind classifies key k of the cache whose keys start with base, whose
// reachable data keys start with current, and whose version key is ver.
func kind(k, base, current, ver string) string {
	switch {
	case k == ver:
		return "version"
	case keys.IsData(k) && strings.HasPrefix(k, current) && strings.HasPrefix(k[len(current):], "{"):
		return "current"
	case keys.IsData(k) && strings.HasPrefix(k, base+"v"):
		return "old"
	case keys.IsData(k):
		// A data key of the unversioned layout in a versioned cache: from
		// before the cache was versioned, unreachable now.
		return "old"
	}
	if i := strings.LastIndexByte(k, '}'); i > 0 {
		switch d := k[:i+1]; k {
		case keys.Marker(d):
			return "marker"
		case keys.Lease(d):
			return "lease"
		case keys.Waiters(d):
			return "waiters"
		}
	}
	return "other"
}

// measure reads the memory, TTL and value of every key of data, in
// pipelines of 100.
func (s scanner) measure(ctx context.Context, cs *census, data []string) error {
	var ttls []int64
	var all []sized
	memoryKnown := true
	for len(data) > 0 {
		batch := data[:min(len(data), 100)]
		data = data[len(batch):]
		cctx, cancel := context.WithTimeout(ctx, s.c.timeout)
		pipe := s.rdb.Pipeline()
		mems := make([]*redis.IntCmd, len(batch))
		pttls := make([]*redis.DurationCmd, len(batch))
		gets := make([]*redis.StringCmd, len(batch))
		for i, k := range batch {
			if memoryKnown {
				mems[i] = pipe.MemoryUsage(cctx, k)
			}
			pttls[i] = pipe.PTTL(cctx, k)
			gets[i] = pipe.Get(cctx, k)
		}
		_, err := pipe.Exec(cctx)
		cancel()
		if err != nil && !isReplyOrNil(err) {
			return fmt.Errorf("read sample: %w", err)
		}
		for i, k := range batch {
			v, err := gets[i].Result()
			if err != nil {
				continue // gone since the scan, or not a string
			}
			cs.Sampled++
			z := sized{Key: k, StoredBytes: int64(len(v)), TTLMillis: millisOf(pttls[i].Val())}
			if memoryKnown {
				if n, err := mems[i].Result(); err == nil {
					z.MemoryBytes = n
				} else {
					// The server lacks MEMORY USAGE: stop asking.
					memoryKnown = false
				}
			}
			cs.MemoryBytes += z.MemoryBytes
			cs.StoredBytes += z.StoredBytes
			if z.TTLMillis >= 0 {
				ttls = append(ttls, z.TTLMillis)
			} else {
				cs.NoExpiry++
			}
			all = append(all, z)
			s.classify(cs, []byte(v))
		}
	}
	if !memoryKnown {
		cs.MemoryBytes = 0
		for i := range all {
			all[i].MemoryBytes = 0
		}
	}
	if len(ttls) > 0 {
		slices.Sort(ttls)
		q := func(p float64) int64 { return ttls[min(int(p*float64(len(ttls))), len(ttls)-1)] }
		cs.TTLMin, cs.TTLMedian, cs.TTLP90, cs.TTLMax = ttls[0], q(0.5), q(0.9), ttls[len(ttls)-1]
	}
	slices.SortFunc(all, func(a, b sized) int {
		if a.MemoryBytes != b.MemoryBytes {
			return cmp.Compare(b.MemoryBytes, a.MemoryBytes)
		}
		return cmp.Compare(b.StoredBytes, a.StoredBytes)
	})
	cs.Biggest = all[:min(len(all), s.top)]
	return nil
}

// classify counts what the header of one stored value says.
func (s scanner) classify(cs *census, v []byte) {
	h, _, err := envelope.Parse(v, s.maxValue)
	if err != nil {
		cs.Unreadable++
		return
	}
	name := fmt.Sprintf("custom (ID %d)", h.Codec)
	if cd := builtinCodec(h.Codec); cd != nil {
		name = cd.Name()
	}
	cs.Codecs[name]++
	switch {
	case h.Negative:
		cs.Negative++
	case s.now().UnixMilli() < h.FreshUntil:
		cs.Fresh++
	default:
		cs.Stale++
	}
	if h.Tagged {
		cs.Tagged++
	}
	if h.Compressor != compress.NoneID {
		cs.Compressed++
	}
}

// writeText prints the census.
func (cs *census) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	line("cache", "%s (keys %s*)", cs.Cache, cs.Base)
	if cs.Version != "" {
		line("version", "%s (versioned: reads reach only this namespace)", cs.Version)
	}
	bound := ""
	if !cs.Complete {
		bound = "at least "
	}
	line("data keys", "%s%d reachable, %s%d in older namespaces (left by Bump, unreachable until their TTL ends)",
		bound, cs.Current, bound, cs.OldVersions)
	line("companions", "%s%d invalidation markers, %s%d leases (loads or refreshes in flight), %s%d waited for by other processes", bound, cs.Markers, bound, cs.Leases, bound, cs.Waiters)
	if cs.Other > 0 {
		line("other keys", "%s%d under the cache's base that cachemgr did not write", bound, cs.Other)
	}
	if !cs.Complete {
		line("", "SCAN stopped at the -sample limit: counts are lower bounds")
	}
	if cs.Sampled == 0 {
		line("sample", "no data keys")
		return tw.Flush()
	}
	line("sample", "%d data keys", cs.Sampled)
	if cs.MemoryBytes > 0 {
		line("memory", "%d B (MEMORY USAGE), %d B per key; values %d B, %d B per key",
			cs.MemoryBytes, cs.MemoryBytes/int64(cs.Sampled), cs.StoredBytes, cs.StoredBytes/int64(cs.Sampled))
	} else {
		line("memory", "MEMORY USAGE unsupported; values %d B, %d B per key", cs.StoredBytes, cs.StoredBytes/int64(cs.Sampled))
	}
	line("TTL left", "min %s, median %s, p90 %s, max %s; %d keys without expiry",
		ttl(cs.TTLMin), ttl(cs.TTLMedian), ttl(cs.TTLP90), ttl(cs.TTLMax), cs.NoExpiry)
	var codecs []string
	for name, n := range cs.Codecs {
		codecs = append(codecs, fmt.Sprintf("%s %d", name, n))
	}
	slices.Sort(codecs)
	line("entries", "%d fresh, %d stale, %d negative, %d tagged, %d compressed, %d unreadable; codecs: %s",
		cs.Fresh, cs.Stale, cs.Negative, cs.Tagged, cs.Compressed, cs.Unreadable, strings.Join(codecs, ", "))
	for i, z := range cs.Biggest {
		label := ""
		if i == 0 {
			label = "biggest"
		}
		mem := ""
		if z.MemoryBytes > 0 {
			mem = fmt.Sprintf("%d B in memory, ", z.MemoryBytes)
		}
		line(label, "%s%d B stored, TTL %s  %s", mem, z.StoredBytes, ttl(z.TTLMillis), z.Key)
	}
	return tw.Flush()
}
