package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/cachemgr/cachemgr/codec"
	"github.com/cachemgr/cachemgr/compress"
	"github.com/cachemgr/cachemgr/internal/envelope"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

// entry is what the key command reports of one stored value.
type entry struct {
	Key     string `json:"key"` // the Redis key
	Cache   string `json:"cache,omitempty"`
	UserKey string `json:"user_key,omitempty"`
	// Version is the cache's current namespace version; "" when the cache
	// has none (not versioned, or its version key is gone).
	Version string `json:"version,omitempty"`

	Exists bool `json:"exists"`
	// Readable tells whether a Get would serve the entry (a negative entry
	// is served as ErrNotFound); Why says why, or why not.
	Readable bool   `json:"readable"`
	State    string `json:"state"` // absent, fresh, stale, negative, unreadable, foreign
	Why      string `json:"why"`

	StoredBytes int   `json:"stored_bytes,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"` // MEMORY USAGE; 0 when unknown
	TTLMillis   int64 `json:"ttl_ms"`                 // PTTL: -1 no expiry, -2 absent

	CodecID      byte      `json:"codec_id,omitempty"`
	Codec        string    `json:"codec,omitempty"`
	CompressorID byte      `json:"compressor_id,omitempty"`
	Compression  string    `json:"compression,omitempty"`
	RawBytes     int       `json:"raw_bytes,omitempty"` // payload before compression
	Negative     bool      `json:"negative,omitempty"`
	FreshUntil   time.Time `json:"fresh_until,omitzero"`
	LoadMillis   int64     `json:"load_ms,omitempty"`
	// Shape is the fingerprint of the Go type the value was written for
	// (cachemgr.Shape): a reader of another shape misses it.
	Shape uint32 `json:"shape,omitempty"`

	// Stamp is when the entry's data was current (its load began, or the
	// Set ran): it stays readable while every tag was last invalidated
	// before it.
	Stamp time.Time `json:"stamp,omitzero"`
	Tags  []tag     `json:"tags,omitempty"`

	Marker *companion `json:"marker,omitempty"`
	Lease  *companion `json:"lease,omitempty"`

	Value     string `json:"value,omitempty"` // JSON of the decoded value, or the raw text
	Truncated bool   `json:"value_truncated,omitempty"`
}

// tag is one tag of an entry and what its stamp says.
type tag struct {
	Tag string `json:"tag"`
	Key string `json:"key"` // the Redis key of its stamp
	// Invalidated is the time of the tag's last invalidation (or of its
	// first use, when it was never invalidated); zero when the stamp key
	// is missing.
	Invalidated time.Time `json:"invalidated,omitzero"`
	// Valid tells whether the stamp leaves the entry readable.
	Valid bool   `json:"valid"`
	Note  string `json:"note"`
}

// companion is a key that lives beside a data key.
type companion struct {
	Key       string `json:"key"`
	Value     string `json:"value"`
	TTLMillis int64  `json:"ttl_ms"`
}

func runKey(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("key", flag.ContinueOnError)
	var c common
	c.register(fs)
	raw := fs.String("raw", "", "inspect this Redis `key` instead of CACHE KEY")
	maxValue := fs.Int("maxvalue", 8<<20, "largest value a Manager accepts, in bytes (WithMaxValueSize)")
	show := fs.Int("show", 2048, "show at most this many bytes of the value (0: none)")
	if ok, err := parse(fs, &c, args, "cachemgr key [flags] CACHE KEY | cachemgr key [flags] -raw REDISKEY", stdout); !ok {
		return err
	}
	switch {
	case *raw == "" && fs.NArg() != 2:
		return errors.New("key: want CACHE KEY, or -raw REDISKEY")
	case *raw != "" && fs.NArg() != 0:
		return errors.New("key: -raw takes no CACHE KEY")
	case *maxValue < 1:
		return fmt.Errorf("-maxvalue %d: want at least 1", *maxValue)
	case *show < 0:
		return fmt.Errorf("-show %d: want >= 0", *show)
	}
	if *raw == "" {
		if err := keys.ValidateName(fs.Arg(0)); err != nil {
			return fmt.Errorf("key: %w", err)
		}
	}
	rdb, closeRedis, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer closeRedis()

	in := inspector{rdb: rdb, c: c, maxValue: *maxValue, show: *show, now: time.Now}
	var e *entry
	if *raw != "" {
		e, err = in.inspect(ctx, *raw)
	} else {
		e, err = in.lookup(ctx, fs.Arg(0), fs.Arg(1))
	}
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(stdout, e)
	}
	return e.writeText(stdout, time.Now())
}

// inspector reads and explains entries.
type inspector struct {
	rdb      redis.UniversalClient
	c        common
	maxValue int
	show     int
	now      func() time.Time
}

// lookup inspects the entry of user key key in cache name, in the cache's
// current namespace version if it has one.
func (in inspector) lookup(ctx context.Context, name, key string) (*entry, error) {
	b := keys.New(in.c.prefix, name, in.c.maxKey)
	cctx, cancel := context.WithTimeout(ctx, in.c.timeout)
	ver, err := in.rdb.Get(cctx, b.Version()).Result()
	cancel()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read version of cache %q: %w", name, err)
	}
	rkey := b.Key(key)
	if ver != "" {
		rkey = b.KeyAt(ver, key)
	}
	e, err := in.inspect(ctx, rkey)
	if err != nil {
		return nil, err
	}
	e.Cache, e.UserKey, e.Version = name, key, ver
	return e, nil
}

// inspect reads the data key rkey, its companions and its tags' stamps,
// and explains them.
func (in inspector) inspect(ctx context.Context, rkey string) (*entry, error) {
	cctx, cancel := context.WithTimeout(ctx, in.c.timeout)
	defer cancel()
	pipe := in.rdb.Pipeline()
	get := pipe.Get(cctx, rkey)
	pttl := pipe.PTTL(cctx, rkey)
	typ := pipe.Type(cctx, rkey)
	marker, markerTTL := pipe.Get(cctx, keys.Marker(rkey)), pipe.PTTL(cctx, keys.Marker(rkey))
	lease, leaseTTL := pipe.Get(cctx, keys.Lease(rkey)), pipe.PTTL(cctx, keys.Lease(rkey))
	if _, err := pipe.Exec(cctx); err != nil && !isReplyOrNil(err) {
		return nil, fmt.Errorf("read %q: %w", rkey, err)
	}
	e := &entry{Key: rkey, TTLMillis: pttl.Val().Milliseconds()}
	if pttl.Val() < 0 {
		e.TTLMillis = int64(pttl.Val()) // -1 and -2 are not durations
	}
	if v, err := marker.Result(); err == nil {
		e.Marker = &companion{Key: keys.Marker(rkey), Value: v, TTLMillis: millisOf(markerTTL.Val())}
	}
	if v, err := lease.Result(); err == nil {
		e.Lease = &companion{Key: keys.Lease(rkey), Value: v, TTLMillis: millisOf(leaseTTL.Val())}
	}
	if typ.Val() != "none" {
		e.Exists = true
		// MEMORY USAGE is not on every server (miniredis lacks it): it is
		// reported when known.
		if n, err := in.rdb.MemoryUsage(cctx, rkey).Result(); err == nil {
			e.MemoryBytes = n
		}
	}

	switch {
	case !e.Exists:
		e.State, e.Why = "absent", absentWhy(e)
		return e, nil
	case typ.Val() != "string":
		e.State, e.Why = "foreign", fmt.Sprintf("a Redis %s, not a cachemgr entry (entries are strings)", typ.Val())
		return e, nil
	}
	data := []byte(get.Val())
	e.StoredBytes = len(data)
	in.decode(ctx, e, data)
	return e, nil
}

// absentWhy explains a missing data key by what is left beside it.
func absentWhy(e *entry) string {
	why := "no value: never written, expired, evicted or deleted"
	if e.Lease != nil {
		why += "; a load holds the lease, so its value should arrive within " + ttl(e.Lease.TTLMillis)
	}
	if e.Marker != nil {
		why += "; the invalidation marker is present: a Delete or a load touched the key in the last " +
			"marker lifetime, and loads that began before the last Delete will not write back"
	}
	return why
}

// decode parses the envelope of data into e and decides whether a read
// would serve it.
func (in inspector) decode(ctx context.Context, e *entry, data []byte) {
	unreadable := func(why string) {
		e.State, e.Readable, e.Why = "unreadable", false, why
	}
	h, payload, err := envelope.Parse(data, in.maxValue)
	if err != nil {
		unreadable(fmt.Sprintf("%v; a read counts it as a decode error and a miss, and deletes it", err))
		return
	}
	e.CodecID, e.CompressorID, e.Negative = h.Codec, h.Compressor, h.Negative
	e.FreshUntil = time.UnixMilli(h.FreshUntil)
	e.LoadMillis = h.Load.Milliseconds()
	e.RawBytes = h.RawLen
	e.Shape = h.Shape
	cd := builtinCodec(h.Codec)
	e.Codec = fmt.Sprintf("custom (ID %d)", h.Codec)
	if cd != nil {
		e.Codec = cd.Name()
	}
	cp := builtinCompressor(h.Compressor)
	e.Compression = fmt.Sprintf("custom (ID %d)", h.Compressor)
	if cp != nil {
		e.Compression = cp.Name()
	}
	if h.Tagged {
		var stamp int64
		var tags []string
		if stamp, tags, payload, err = envelope.ParseTags(payload); err != nil {
			unreadable(fmt.Sprintf("%v; a read counts it as a decode error and a miss, and deletes it", err))
			return
		}
		e.Stamp = time.UnixMicro(stamp)
		if err := in.checkTags(ctx, e, stamp, tags); err != nil {
			unreadable(fmt.Sprintf("tag stamps could not be read: %v", err))
			return
		}
	}

	var problems []string
	if !h.Negative {
		problems = in.decodeValue(e, cd, cp, h, payload)
	}
	for _, t := range e.Tags {
		if !t.Valid {
			problems = append(problems, fmt.Sprintf("tag %q: %s", t.Tag, t.Note))
		}
	}
	if len(problems) > 0 {
		unreadable(strings.Join(problems, "; "))
		return
	}
	now := in.now()
	e.Readable = true
	switch {
	case h.Negative:
		e.State, e.Why = "negative", "a cached \"not found\": Get and Fetch return ErrNotFound without loading"
	case now.Before(e.FreshUntil):
		e.State, e.Why = "fresh", "served as it is until "+e.FreshUntil.Format(time.RFC3339Nano)
	default:
		e.State, e.Why = "stale", "past its fresh time, kept by WithStale: Get serves it, "+
			"and Fetch serves it while one background refresh runs"
	}
}

// decodeValue decompresses and decodes the payload into a generic value for
// e.Value, and returns what keeps it from being read.
func (in inspector) decodeValue(e *entry, cd codec.Codec, cp compress.Compressor, h envelope.Header, payload []byte) []string {
	if cd == nil {
		return []string{fmt.Sprintf("codec ID %d is not built in: only a Manager configured with it "+
			"(WithCodec, WithCacheCodec) reads the entry; others count a decode error and delete it", h.Codec)}
	}
	if h.Compressor != compress.NoneID {
		if cp == nil {
			return []string{fmt.Sprintf("compressor ID %d is not built in: only a Manager configured with it "+
				"(WithCompressor) reads the entry; others count a decode error and delete it", h.Compressor)}
		}
		out, err := cp.Decompress(nil, payload, h.RawLen)
		if err != nil {
			return []string{fmt.Sprintf("decompress with %s: %v; a read deletes it", cp.Name(), err)}
		}
		payload = out
	}
	var text string
	switch cd.ID() {
	case codec.RawID:
		text = rawText(payload)
	default:
		var v any
		if err := cd.Unmarshal(payload, &v); err != nil {
			return []string{fmt.Sprintf("does not decode with %s: %v; a read deletes it", cd.Name(), err)}
		}
		b, err := json.Marshal(jsonable(v))
		if err != nil {
			text = fmt.Sprintf("%v", v)
		} else {
			text = string(b)
		}
	}
	if in.show == 0 {
		return nil
	}
	if len(text) > in.show {
		cut := in.show
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text, e.Truncated = text[:cut], true
	}
	e.Value = text
	return nil
}

// rawText shows raw bytes as text when they are UTF-8, quoted otherwise.
func rawText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strconv.Quote(string(b))
}

// jsonable turns what msgpack decodes (maps with keys of any type) into
// something encoding/json accepts.
func jsonable(v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case map[string]any:
		for k, x := range v {
			v[k] = jsonable(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = jsonable(x)
		}
		return v
	case []byte:
		return rawText(v)
	}
	return v
}

// checkTags reads the stamp of every tag and records whether each leaves
// the entry, stamped stamp, readable: as a read decides, a stamp must exist,
// parse, and be older than the entry's.
func (in inspector) checkTags(ctx context.Context, e *entry, stamp int64, tags []string) error {
	cctx, cancel := context.WithTimeout(ctx, in.c.timeout)
	defer cancel()
	pipe := in.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(tags))
	for i, t := range tags {
		cmds[i] = pipe.Get(cctx, keys.Tag(in.c.prefix, t, in.c.maxKey))
	}
	if _, err := pipe.Exec(cctx); err != nil && !isReplyOrNil(err) {
		return err
	}
	for i, t := range tags {
		r := tag{Tag: t, Key: keys.Tag(in.c.prefix, t, in.c.maxKey)}
		s, err := cmds[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			r.Note = fmt.Sprintf("stamp key %s missing (expired or evicted): the entry is unreadable, "+
				"so that losing a stamp never serves stale data", r.Key)
			if in.c.prefix == "" {
				r.Note += " (if the Manager has a prefix, give it with -prefix)"
			}
		case err != nil:
			r.Note = fmt.Sprintf("stamp unreadable: %v", err)
		default:
			v, perr := strconv.ParseInt(s, 10, 64)
			switch {
			case perr != nil:
				r.Note = fmt.Sprintf("stamp %q is not a number: the entry is unreadable", s)
			case v < stamp:
				r.Valid = true
				r.Invalidated = time.UnixMicro(v)
				r.Note = "last invalidated before the entry's stamp: still valid"
			default:
				r.Invalidated = time.UnixMicro(v)
				r.Note = fmt.Sprintf("invalidated at %s, not before the entry's stamp %s: the entry is stale, and a read deletes it",
					r.Invalidated.Format(time.RFC3339Nano), time.UnixMicro(stamp).Format(time.RFC3339Nano))
			}
		}
		e.Tags = append(e.Tags, r)
	}
	return nil
}

// builtinCodec returns the built-in codec of ID id, or nil.
func builtinCodec(id byte) codec.Codec {
	for _, cd := range []codec.Codec{codec.Msgpack(), codec.JSON(), codec.Raw()} {
		if cd.ID() == id {
			return cd
		}
	}
	return nil
}

// builtinCompressor returns the built-in compressor of ID id, or nil (also
// for 0, which means none).
func builtinCompressor(id byte) compress.Compressor {
	for _, cp := range []compress.Compressor{compress.LZ4(), compress.None()} {
		if cp.ID() == id {
			return cp
		}
	}
	return nil
}

// isReplyOrNil reports whether a pipeline error is only a command's reply
// (a miss, WRONGTYPE), which the commands carry, rather than a failure to
// reach Redis.
func isReplyOrNil(err error) bool {
	var rerr redis.Error
	return errors.Is(err, redis.Nil) || errors.As(err, &rerr)
}

func millisOf(d time.Duration) int64 {
	if d < 0 {
		return int64(d)
	}
	return d.Milliseconds()
}

// writeText prints e as aligned lines of label and value.
func (e *entry) writeText(w io.Writer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	line("key", "%s", e.Key)
	if e.Cache != "" {
		v := "none (not versioned, or its version key is gone)"
		if e.Version != "" {
			v = e.Version
		}
		line("cache", "%s, user key %q, namespace version %s", e.Cache, e.UserKey, v)
	}
	readable := "no"
	if e.Readable {
		readable = "yes"
	}
	line("state", "%s (readable: %s)", e.State, readable)
	line("why", "%s", e.Why)
	if e.Exists {
		mem := "MEMORY USAGE unsupported"
		if e.MemoryBytes > 0 {
			mem = fmt.Sprintf("%d B in memory", e.MemoryBytes)
		}
		line("stored", "%d B (%s), TTL left %s", e.StoredBytes, mem, ttl(e.TTLMillis))
	}
	if e.Codec != "" {
		line("codec", "%s (ID %d)", e.Codec, e.CodecID)
		if e.CompressorID == compress.NoneID {
			line("compression", "none")
		} else {
			line("compression", "%s (ID %d), %d B before compression", e.Compression, e.CompressorID, e.RawBytes)
		}
		line("negative", "%t", e.Negative)
		line("fresh until", "%s (%s)", e.FreshUntil.Format(time.RFC3339Nano), ago(e.FreshUntil, now))
		line("load took", "%v", time.Duration(e.LoadMillis)*time.Millisecond)
		line("type shape", "%08x", e.Shape)
	}
	if !e.Stamp.IsZero() {
		line("tag stamp", "%s: valid while every tag was last invalidated before it", e.Stamp.Format(time.RFC3339Nano))
		for i, t := range e.Tags {
			mark, label := "ok", ""
			if !t.Valid {
				mark = "INVALID"
			}
			if i == 0 {
				label = "tags"
			}
			line(label, "%q %s: %s", t.Tag, mark, t.Note)
		}
	}
	if e.Marker != nil {
		line("marker", "%s = %q, TTL %s (set by a load's claim, rotated by Delete: a load writes back only if it is unchanged)", e.Marker.Key, e.Marker.Value, ttl(e.Marker.TTLMillis))
	} else {
		line("marker", "none")
	}
	if e.Lease != nil {
		line("lease", "held: token %q, TTL %s (one process loads or refreshes the key; others wait for its value)", e.Lease.Value, ttl(e.Lease.TTLMillis))
	} else {
		line("lease", "none (no load or refresh in flight)")
	}
	if e.Value != "" {
		more := ""
		if e.Truncated {
			more = " …(truncated; -show to see more)"
		}
		line("value", "%s%s", e.Value, more)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
