// Command cachemgr inspects what cachemgr keeps in Redis: one entry, a
// whole cache, or the invalidation events as they happen.
//
//	cachemgr key [flags] CACHE KEY     decode the entry of KEY in cache CACHE
//	cachemgr key [flags] -raw REDISKEY decode the entry stored at REDISKEY
//	cachemgr scan [flags] CACHE        sample the keys of cache CACHE
//	cachemgr events [flags]            print invalidation events until Ctrl-C
//
// Every subcommand takes -redis URL (default redis://127.0.0.1:6379) and
// -prefix, the Manager's WithPrefix. It only reads: nothing is written,
// deleted or refreshed.
//
// key finds the Redis key the way the library builds it (with the cache's
// current namespace version if it is versioned, and hashing user keys
// longer than -maxkey, WithMaxKeyLen's default 200) and reports what the
// stored value says: codec, compression, whether it is a cached
// "not found", when it stops being fresh, how long its load took, the TTL
// left, its tags and, for each tag, whether an InvalidateTags since the
// entry was written has made it unreadable; the invalidation marker and
// the refresh lease next to it; then whether a read would serve it, and
// why not. The value itself is decoded into a generic form (maps, lists,
// numbers) and shown as JSON; whether it fits the cache's Go type is not
// checked.
//
// scan walks the cache's keys with SCAN (never KEYS) and reports, for up to
// -sample entries: how many there are (data keys of the current and of
// older namespace versions, markers and leases apart), the memory Redis
// reports for them (MEMORY USAGE), the spread of their TTLs, what the
// headers say (negative, stale, compressed, tagged, unreadable), and the
// -top biggest keys.
//
// events subscribes to the prefix's event channel and prints each event:
// the keys a Set or Delete changed, a cache's Bump, the tags an
// InvalidateTags reached, and user events from cachemgr.Publish. Only
// Managers with WithEvents(true), or an L1 tier, publish events; -n stops
// after that many.
//
// -json prints the result as JSON, for scripts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cachemgr/cachemgr/internal/demoredis"
	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachemgr:", err)
		os.Exit(1)
	}
}

const usage = `Usage:
  cachemgr key [flags] CACHE KEY       decode the entry of KEY in cache CACHE
  cachemgr key [flags] -raw REDISKEY   decode the entry stored at REDISKEY
  cachemgr scan [flags] CACHE          sample the keys of cache CACHE
  cachemgr events [flags]              print invalidation events until Ctrl-C

Run "cachemgr COMMAND -h" for a command's flags.
`

// common is what every subcommand takes.
type common struct {
	redis   string
	prefix  string
	maxKey  int
	json    bool
	timeout time.Duration
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.redis, "redis", "redis://127.0.0.1:6379", "Redis `URL`")
	fs.StringVar(&c.prefix, "prefix", "", "key prefix of the Manager (WithPrefix)")
	fs.IntVar(&c.maxKey, "maxkey", 200, "user key length above which keys are hashed (WithMaxKeyLen)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "bound of each Redis call")
}

func (c *common) check() error {
	switch {
	case c.maxKey < 1:
		return fmt.Errorf("-maxkey %d: want at least 1", c.maxKey)
	case c.timeout <= 0:
		return fmt.Errorf("-timeout %v: want > 0", c.timeout)
	}
	if err := keys.ValidatePrefix(c.prefix); err != nil {
		return fmt.Errorf("-prefix: %w", err)
	}
	return nil
}

// connect returns a client for c.redis, checked with a PING.
func (c *common) connect(ctx context.Context) (*redis.Client, func(), error) {
	opts, err := redis.ParseURL(c.redis)
	if err != nil {
		return nil, nil, fmt.Errorf("-redis: %w", err)
	}
	opts.ReadTimeout, opts.WriteTimeout = c.timeout, c.timeout
	rdb, _, closeFn, err := demoredis.Connect(ctx, opts, 4)
	if err != nil {
		return nil, nil, err
	}
	return rdb, closeFn, nil
}

// run is the command; main only adds signal handling and the exit code.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "key":
		return runKey(ctx, args, stdout)
	case "scan":
		return runScan(ctx, args, stdout)
	case "events":
		return runEvents(ctx, args, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q (want key, scan or events)", cmd)
}

// parse registers c's flags on fs, parses args and checks c. It reports
// false when the command should stop: after -h, which prints the usage
// (err nil), or on an error.
func parse(fs *flag.FlagSet, c *common, args []string, synopsis string, stdout io.Writer) (bool, error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: %s\n\nFlags:\n", synopsis)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return false, nil
		}
		return false, err
	}
	if err := c.check(); err != nil {
		return false, err
	}
	return true, nil
}

// ago describes t relative to now: "in 9m58s" or "12.3s ago".
func ago(t, now time.Time) string {
	d := t.Sub(now)
	if d >= 0 {
		return "in " + round(d).String()
	}
	return round(-d).String() + " ago"
}

// round rounds d to a precision that reads well.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// ttl describes a PTTL reply in milliseconds: -1 no expiry, -2 no key.
func ttl(ms int64) string {
	switch {
	case ms == -1:
		return "no expiry"
	case ms < 0:
		return "gone"
	}
	return round(time.Duration(ms) * time.Millisecond).String()
}
