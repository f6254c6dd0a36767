package transport

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/breaker"
	"github.com/redis/go-redis/v9"
)

// fake is a go-redis hook that answers every command itself: no server,
// no network (its dial fails). It keeps a map for GET and SET, knows no
// script (EVALSHA gets NOSCRIPT, EVAL runs), and lets a test hold calls,
// fail them, or watch how they were grouped.
type fake struct {
	mu        sync.Mutex
	data      map[string]string
	scripts   map[string]bool // SHA1s loaded by an EVAL
	singles   []string        // names of commands sent one by one
	pipelines [][]string      // names of the commands of each pipeline
	fail      error           // non-nil: every call fails with it
	failPipe  error           // non-nil: pipelines fail with it, no command marked

	// hold, when set, makes calls whose first argument passes it wait until
	// released or their context ends; started receives one value per held
	// call.
	hold    func(args []any) bool
	release chan struct{}
	started chan string
}

func newFake() *fake {
	return &fake{data: map[string]string{}, scripts: map[string]bool{}, release: make(chan struct{}), started: make(chan string, 1024)}
}

// replyErr is an error reply of the fake server.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

func (f *fake) DialHook(redis.DialHook) redis.DialHook {
	return func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("fake: no network")
	}
}

func (f *fake) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		f.mu.Lock()
		f.singles = append(f.singles, cmd.Name())
		f.mu.Unlock()
		return f.answer(ctx, cmd)
	}
}

func (f *fake) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		f.mu.Lock()
		f.pipelines = append(f.pipelines, names)
		failPipe := f.failPipe
		f.mu.Unlock()
		if failPipe != nil {
			return failPipe
		}
		var first error
		for _, c := range cmds {
			if err := f.answer(ctx, c); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
}

// answer sets cmd's reply, as the server would.
func (f *fake) answer(ctx context.Context, cmd redis.Cmder) error {
	if f.hold != nil && f.hold(cmd.Args()) {
		f.started <- cmd.Name()
		select {
		case <-f.release:
		case <-ctx.Done():
			cmd.SetErr(ctx.Err())
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		cmd.SetErr(f.fail)
		return f.fail
	}
	args := cmd.Args()
	if cmd.Name() == "incr" {
		err := replyErr("WRONGTYPE Operation against a key holding the wrong kind of value")
		cmd.SetErr(err)
		return err
	}
	switch c := cmd.(type) {
	case *redis.StringCmd: // GET
		v, ok := f.data[args[1].(string)]
		if !ok {
			c.SetErr(redis.Nil)
			return redis.Nil
		}
		c.SetVal(v)
	case *redis.StatusCmd: // SET, PING
		if cmd.Name() == "set" {
			f.data[args[1].(string)] = string(toBytes(args[2]))
		}
		c.SetVal("OK")
	case *redis.IntCmd: // WAIT
		c.SetVal(1)
	case *redis.Cmd: // EVALSHA, EVAL: the script returns its first ARGV
		if cmd.Name() == "evalsha" && !f.scripts[args[1].(string)] {
			err := replyErr("NOSCRIPT No matching script")
			c.SetErr(err)
			return err
		}
		if cmd.Name() == "eval" {
			f.scripts[sha1hex(args[1].(string))] = true
		}
		c.SetVal(args[len(args)-1])
	case *redis.ScanCmd:
		var keys []string
		for k := range f.data {
			keys = append(keys, k)
		}
		c.SetVal(keys, 0)
	}
	return nil
}

func toBytes(a any) []byte {
	switch v := a.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}

// names returns the commands sent one by one and the pipelines, so far.
func (f *fake) sent() (singles []string, pipelines [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.singles...), append([][]string(nil), f.pipelines...)
}

// rig is a Transport over a fake, and what it reports.
type rig struct {
	t       *Transport
	fake    *fake
	closed  atomic.Bool
	life    context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	dead    bool
	skipped atomic.Uint64
	errs    atomic.Uint64
	moves   chan bool // the breaker opened (true) or closed
}

// rigOpts tune newRig.
type rigOpts struct {
	direct   bool // a client that bounds socket I/O by the context
	coalesce bool
	failures int              // breaker threshold; 0: off
	now      func() time.Time // the breaker's clock; nil: time.Now
	op       time.Duration
}

// newRig returns a Transport over a fake-backed client: a *redis.Client
// when direct, else a Ring (no bounded reader: every call is guarded).
func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	if o.op == 0 {
		o.op = 5 * time.Second // generous: tests that are not about time
	}
	r := &rig{fake: newFake(), moves: make(chan bool, 16)}
	var client redis.UniversalClient
	if o.direct {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1})
		c.AddHook(r.fake)
		client = c
	} else {
		c := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}, MaxRetries: -1})
		c.AddHook(r.fake)
		client = c
	}
	if o.now == nil {
		o.now = time.Now
	}
	r.life, r.stop = context.WithCancel(context.Background())
	r.t = New(Config{
		Client:    client,
		OpTimeout: o.op,
		Breaker:   breaker.New(o.failures, time.Hour, o.now),
		Coalesce:  o.coalesce,
		Sources:   map[string]string{sha1hex("return ARGV[1]"): "return ARGV[1]"},
		Lifetime:  r.life,
		Closed:    &r.closed,
		Go:        r.spawn,
		Skipped:   &r.skipped,
		Errors:    &r.errs,
		OnBreaker: func(_ context.Context, open bool, _ error) { r.moves <- open },
	})
	t.Cleanup(func() {
		r.close()
		client.Close()
	})
	return r
}

// spawn is Config.Go.
func (r *rig) spawn(fn func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
	return true
}

// close closes the Transport as the Manager does, releases held calls
// and waits for every goroutine.
func (r *rig) close() {
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return
	}
	r.dead = true
	r.mu.Unlock()
	r.closed.Store(true)
	r.stop()
	r.t.Close()
	close(r.fake.release)
	r.wg.Wait()
}

// holdGets makes GETs of keys starting with prefix wait for release.
func (f *fake) holdGets(prefix string) {
	f.hold = func(args []any) bool {
		k, ok := args[1].(string)
		return strings.EqualFold(args[0].(string), "get") && ok && strings.HasPrefix(k, prefix)
	}
}

// waitStarted waits for n held calls to start.
func (f *fake) waitStarted(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-f.started:
		case <-time.After(10 * time.Second):
			t.Fatalf("held call did not start")
		}
	}
}

func sha1hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
