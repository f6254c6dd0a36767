package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// event is one message of a Manager's event channel, as the Manager
// encodes it.
type event struct {
	Origin string          `json:"o"`
	Kind   string          `json:"k"` // key, version, tags, prefix or user
	Cache  string          `json:"c,omitempty"`
	Prefix string          `json:"p,omitempty"`
	Keys   []string        `json:"ks,omitempty"`
	Tags   []string        `json:"t,omitempty"`
	Topic  string          `json:"tp,omitempty"`
	Data   json.RawMessage `json:"d,omitempty"`
}

// received is an event as the events command prints it with -json.
type received struct {
	At      time.Time `json:"at"`
	Channel string    `json:"channel"`
	Event   *event    `json:"event,omitempty"` // nil when the payload did not parse
	Raw     string    `json:"raw,omitempty"`   // the payload, when it did not parse
}

// channel returns the event channel of prefix.
func channel(prefix string) string {
	if prefix == "" {
		return "~events"
	}
	return prefix + ":~events"
}

func runEvents(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	var c common
	c.register(fs)
	n := fs.Int("n", 0, "stop after `n` events (0: run until interrupted)")
	cache := fs.String("cache", "", "print only the events of this cache (and the tag events, which reach every cache)")
	if ok, err := parse(fs, &c, args, "cachemgr events [flags]", stdout); !ok {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return fmt.Errorf("events: unexpected argument %q", fs.Arg(0))
	case *n < 0:
		return fmt.Errorf("-n %d: want >= 0", *n)
	}
	rdb, closeRedis, err := c.connect(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted before it began
		}
		return err
	}
	defer closeRedis()
	return follow(ctx, rdb, c, *cache, *n, stdout)
}

// follow prints the events of c.prefix's channel until ctx ends or n have
// been printed (n 0: no limit).
func follow(ctx context.Context, rdb *redis.Client, c common, cache string, n int, out io.Writer) error {
	ch := channel(c.prefix)
	ps := rdb.Subscribe(ctx, ch)
	defer ps.Close()
	// go-redis bounds a blocking read by deadlines, not by cancellation:
	// closing the subscription is what ends a Receive when ctx does.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	// Receive returns the confirmation first: from then on nothing
	// published is missed.
	sctx, cancel := context.WithTimeout(ctx, c.timeout)
	_, err := ps.Receive(sctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscribe to %q: %w", ch, err)
	}
	if !c.json {
		fmt.Fprintf(out, "following %s (Ctrl-C to stop)\n", ch)
	}
	for printed := 0; n == 0 || printed < n; {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: the normal end
			}
			return fmt.Errorf("receive from %q: %w", ch, err)
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue
		}
		r := received{At: time.Now(), Channel: m.Channel}
		var e event
		if err := json.Unmarshal([]byte(m.Payload), &e); err != nil || e.Kind == "" {
			r.Raw = m.Payload
		} else {
			r.Event = &e
		}
		if cache != "" && r.Event != nil && r.Event.Cache != cache && r.Event.Kind != "tags" {
			continue
		}
		if c.json {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s\n", b)
		} else {
			fmt.Fprintln(out, r.text())
		}
		printed++
	}
	return nil
}

// text is the one-line form of r.
func (r received) text() string {
	at := r.At.Format("15:04:05.000")
	e := r.Event
	if e == nil {
		return fmt.Sprintf("%s  unparsable payload %q (counted as BadEvents by Managers)", at, r.Raw)
	}
	from := e.Origin
	if len(from) > 8 {
		from = from[:8]
	}
	var what string
	switch e.Kind {
	case "key":
		what = fmt.Sprintf("cache %s: keys %s changed (Set or Delete)", e.Cache, quoted(e.Keys))
	case "version":
		what = fmt.Sprintf("cache %s: Bump, every entry moved out of reach", e.Cache)
	case "tags":
		what = fmt.Sprintf("InvalidateTags %s", quoted(e.Tags))
	case "prefix":
		what = fmt.Sprintf("cache %s: keys starting with %q invalidated", e.Cache, e.Prefix)
	case "user":
		what = fmt.Sprintf("user event on topic %q: %s", e.Topic, e.Data)
	default:
		what = fmt.Sprintf("unknown kind %q (counted as BadEvents by Managers)", e.Kind)
	}
	return fmt.Sprintf("%s  %-7s %s  (from Manager %s)", at, e.Kind, what, from)
}

func quoted(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
