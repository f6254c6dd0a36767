package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestOpCtxContract: an opCtx follows context.Context: Err is nil while
// Done is open, even after its caller cancelled (the op timeout bounds the
// call; a queued caller leaves on its own context, TestCoalescerCallerLeaves).
func TestOpCtxContract(t *testing.T) {
	caller, cancel := context.WithCancel(context.WithValue(context.Background(), "k", "v"))
	bound, cancelBound := context.WithCancel(context.Background())
	defer cancelBound()
	c := &opCtx{Context: caller, bound: bound}
	cancel()
	select {
	case <-c.Done():
		t.Fatal("Done closed by the caller's cancellation; want only the bound's")
	default:
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err() = %v while Done is open, want nil", err)
	}
	if c.Value("k") != "v" || c.Value(boundedKey{}) != true {
		t.Error("opCtx lost the caller's values or the bounded mark")
	}
	cancelBound()
	<-c.Done()
	if err := c.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err() = %v after Done, want the bound's error", err)
	}
}

// TestDeadlinesShared: calls that start within a quarter op timeout of
// each other share one deadline context, which ends between 1 and 1.25 op
// timeouts after it was made, and with its parent.
func TestDeadlinesShared(t *testing.T) {
	var ds deadlines
	parent, cancel := context.WithCancel(context.Background())
	const d = time.Hour
	start := time.Now()
	a := ds.get(parent, d)
	b := ds.get(parent, d)
	if a != b {
		t.Error("two calls a moment apart got different deadline contexts")
	}
	dl, ok := a.Deadline()
	if !ok || dl.Before(start.Add(d)) || dl.After(time.Now().Add(d+d/4)) {
		t.Errorf("deadline %v from now, want between %v and %v", dl.Sub(start), d, d+d/4)
	}
	if c := ds.get(parent, 2*d); c == a {
		t.Error("a call with a longer timeout got a deadline with less left than it")
	}
	cancel()
	<-a.Done() // the Transport's end ends every call's deadline
}

// TestNoScript: a script Redis does not know is sent again as EVAL of its
// source, and the original command holds that reply; a WAIT that closed
// the pipeline goes again behind it.
func TestNoScript(t *testing.T) {
	r := newRig(t, rigOpts{direct: true})
	src := "return ARGV[1]"
	script := redis.NewCmd(context.Background(), "evalsha", sha1hex(src), 0, "hello")
	wait := redis.NewIntCmd(context.Background(), "wait", 1, 10)
	if err := r.t.DoAll(context.Background(), script, wait); err != nil {
		t.Fatalf("DoAll() error = %v", err)
	}
	if v, err := script.Result(); err != nil || v != "hello" {
		t.Errorf("script reply = %v, %v; want hello, nil", v, err)
	}
	_, pipes := r.fake.sent()
	want := [][]string{{"evalsha", "wait"}, {"eval", "wait"}}
	if !slices.EqualFunc(pipes, want, slices.Equal) {
		t.Errorf("pipelines sent = %v, want %v", pipes, want)
	}
	if r.errs.Load() != 0 {
		t.Errorf("NOSCRIPT counted as %d Redis errors, want 0", r.errs.Load())
	}
}

// TestPipelineOutcome: an error reply in a pipeline is the command's, not
// a failure (Redis is up: the breaker closes, the reply is counted); a
// failure that no command carries fails the pipeline with ErrUnavailable.
func TestPipelineOutcome(t *testing.T) {
	r := newRig(t, rigOpts{direct: true, failures: 1})
	ctx := context.Background()
	bad := redis.NewIntCmd(ctx, "incr", "k") // WRONGTYPE
	get := redis.NewStringCmd(ctx, "get", "missing")
	if err := r.t.DoAll(ctx, bad, get); err != nil {
		t.Fatalf("DoAll() error = %v; want replies in the commands", err)
	}
	if !errors.Is(get.Err(), redis.Nil) || bad.Err() == nil {
		t.Errorf("replies = %v, %v; want an error reply and redis.Nil", bad.Err(), get.Err())
	}
	if r.errs.Load() != 1 {
		t.Errorf("%d Redis errors counted, want 1 (the WRONGTYPE)", r.errs.Load())
	}
	select {
	case open := <-r.moves:
		t.Errorf("breaker moved (open %v) on replies", open)
	default:
	}
	r.fake.failPipe = errors.New("hook failed the pipeline")
	a, b := redis.NewStringCmd(ctx, "get", "a"), redis.NewStringCmd(ctx, "get", "b")
	if err := r.t.DoAll(ctx, a, b); !errors.Is(err, ErrUnavailable) {
		t.Errorf("DoAll() with a failed pipeline error = %v, want ErrUnavailable", err)
	}
	if open := <-r.moves; !open {
		t.Error("the breaker did not open on the pipeline's failure")
	}
}

// TestBreakerAdmission: after the threshold of failures, reads are skipped
// (counted, nothing sent) while writes still go; a write that fails while
// the breaker is open holds writes back too; a success lets them go again.
func TestBreakerAdmission(t *testing.T) {
	r := newRig(t, rigOpts{direct: true, failures: 2})
	ctx := context.Background()
	write := Policy{Timeout: time.Second, Write: true}
	r.fake.fail = errors.New("connection reset")
	for range 2 {
		if err := r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "k")); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Do() error = %v, want ErrUnavailable", err)
		}
	}
	if open := <-r.moves; !open {
		t.Fatal("breaker did not report opening")
	}
	singles, _ := r.fake.sent()
	if err := r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "k")); !errors.Is(err, errBreakerOpen) {
		t.Errorf("read behind an open breaker: error = %v, want errBreakerOpen", err)
	}
	if after, _ := r.fake.sent(); len(after) != len(singles) || r.skipped.Load() != 1 {
		t.Errorf("skipped read: %d commands sent, %d skipped; want 0 sent, 1 skipped", len(after)-len(singles), r.skipped.Load())
	}
	// A write goes, and fails: writes are held from now on.
	if err := r.t.DoWith(ctx, write, redis.NewStatusCmd(ctx, "set", "k", "v")); !errors.Is(err, ErrUnavailable) || errors.Is(err, errBreakerOpen) {
		t.Fatalf("write behind an open breaker: error = %v, want it sent and failed", err)
	}
	if err := r.t.DoWith(ctx, write, redis.NewStatusCmd(ctx, "set", "k", "v")); !errors.Is(err, errBreakerOpen) {
		t.Errorf("write after a held write: error = %v, want errBreakerOpen", err)
	}
}

// TestBreakerCloses: after the cooldown a probe that succeeds closes the
// breaker (reported), and writes held back go again.
func TestBreakerCloses(t *testing.T) {
	var clock atomic.Int64 // the breaker's clock, in ns; the cooldown is an hour
	r := newRig(t, rigOpts{direct: true, failures: 1, now: func() time.Time { return time.Unix(0, clock.Load()) }})
	ctx := context.Background()
	write := Policy{Timeout: time.Second, Write: true}
	set := func() error { return r.t.DoWith(ctx, write, redis.NewStatusCmd(ctx, "set", "k", "v")) }
	r.fake.fail = errors.New("connection reset")
	_ = r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "k")) // opens the breaker
	if open := <-r.moves; !open {
		t.Fatal("breaker did not open")
	}
	_ = set() // fails while open: writes are held from now on
	if err := set(); !errors.Is(err, errBreakerOpen) {
		t.Fatalf("held write: error = %v, want errBreakerOpen", err)
	}
	r.fake.fail = nil
	clock.Add(int64(2 * time.Hour))
	if err := r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "k")); !errors.Is(err, redis.Nil) {
		t.Fatalf("probe after the cooldown: error = %v, want redis.Nil (an answer)", err)
	}
	if open := <-r.moves; open {
		t.Error("the probe's success reported the breaker opening")
	}
	if err := set(); err != nil {
		t.Errorf("write after the breaker closed: error = %v", err)
	}
}

// TestClosed: after Close nothing is sent and calls return ErrClosed;
// commands queued in the coalescer fail with ErrClosed.
func TestClosed(t *testing.T) {
	r := newRig(t, rigOpts{direct: true, coalesce: true})
	ctx := context.Background()
	r.fake.holdGets("held")
	first := make(chan error, coalescePipelines)
	for range coalescePipelines { // both round trips in flight: the next queues
		go func() { first <- r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "held")) }()
		r.fake.waitStarted(t, 1)
	}
	queued := make(chan error, 1)
	go func() { queued <- r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "q")) }()
	waitQueued(t, r.t.co, 1)
	r.close()
	if err := <-queued; !errors.Is(err, ErrClosed) {
		t.Errorf("queued command after Close: error = %v, want ErrClosed", err)
	}
	<-first
	<-first
	before, _ := r.fake.sent()
	if err := r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Do() after Close error = %v, want ErrClosed", err)
	}
	if after, _ := r.fake.sent(); len(after) != len(before) {
		t.Error("a command went out after Close")
	}
}

// waitQueued waits until n commands are queued in co.
func waitQueued(t *testing.T, co *coalescer, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		co.mu.Lock()
		got := len(co.queue)
		co.mu.Unlock()
		if got >= n {
			return
		}
	}
	t.Fatalf("fewer than %d commands queued", n)
}

// TestCoalescerBatches: a lone command goes out alone, on its caller's
// goroutine; commands that arrive while it is in flight go out together in
// one pipeline, and each caller gets its own reply.
func TestCoalescerBatches(t *testing.T) {
	r := newRig(t, rigOpts{direct: true, coalesce: true})
	ctx := context.Background()
	const n = 50
	for i := range n {
		r.fake.data[fmt.Sprint("k", i)] = fmt.Sprint("v", i)
	}
	r.fake.holdGets("held")
	first := make(chan error, 1)
	go func() { first <- r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "held")) }()
	r.fake.waitStarted(t, 1)
	// Two round trips may be in flight: hold the second one too, so the
	// rest queue behind both.
	second := make(chan error, 1)
	go func() { second <- r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "held2")) }()
	r.fake.waitStarted(t, 1)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			cmd := redis.NewStringCmd(ctx, "get", fmt.Sprint("k", i))
			if err := r.t.Do(ctx, cmd); err != nil {
				errs[i] = err
			} else if cmd.Val() != fmt.Sprint("v", i) {
				errs[i] = fmt.Errorf("got %q, want v%d", cmd.Val(), i)
			}
		})
	}
	waitQueued(t, r.t.co, n)
	r.fake.release <- struct{}{}
	r.fake.release <- struct{}{}
	wg.Wait()
	<-first
	<-second
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	singles, pipes := r.fake.sent()
	if len(singles) != 1 {
		t.Errorf("%d commands went out alone, want 1 (the lone first)", len(singles))
	}
	got := 0
	for _, p := range pipes {
		got += len(p)
	}
	if got != n+1 || len(pipes) > 2 {
		t.Errorf("pipelines %v: %d commands in %d pipelines; want %d in at most 2", len(pipes), got, len(pipes), n+1)
	}
}

// TestCoalescerCallerLeaves: a queued caller whose context ends returns
// its context's error at once, though the op timeout is far; its command
// is then never sent, and the others still get their replies.
func TestCoalescerCallerLeaves(t *testing.T) {
	r := newRig(t, rigOpts{direct: true, coalesce: true})
	bg := context.Background()
	r.fake.data["other"] = "x"
	r.fake.holdGets("held")
	for range coalescePipelines {
		go func() { _ = r.t.Do(bg, redis.NewStringCmd(bg, "get", "held")) }()
		r.fake.waitStarted(t, 1)
	}
	ctx, cancel := context.WithCancel(bg)
	left := make(chan error, 1)
	go func() { left <- r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "gone")) }()
	waitQueued(t, r.t.co, 1)
	other := redis.NewStringCmd(bg, "get", "other")
	stays := make(chan error, 1)
	go func() { stays <- r.t.Do(bg, other) }()
	waitQueued(t, r.t.co, 2)
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Errorf("caller that left: error = %v, want context.Canceled", err)
	}
	for range coalescePipelines {
		r.fake.release <- struct{}{}
	}
	if err := <-stays; err != nil || other.Val() != "x" {
		t.Errorf("caller that stayed: %q, %v; want x, nil", other.Val(), err)
	}
	_, pipes := r.fake.sent()
	for _, p := range pipes {
		if len(p) != 1 {
			t.Errorf("pipeline %v: want only the staying caller's GET", p)
		}
	}
}

// TestCoalescerBytesGoAlone: a command with a []byte argument is written
// before process returns (the caller reuses the buffer then): it goes out
// on its caller's goroutine even while round trips are in flight.
func TestCoalescerBytesGoAlone(t *testing.T) {
	r := newRig(t, rigOpts{direct: true, coalesce: true})
	bg := context.Background()
	r.fake.holdGets("held")
	for range coalescePipelines {
		go func() { _ = r.t.Do(bg, redis.NewStringCmd(bg, "get", "held")) }()
		r.fake.waitStarted(t, 1)
	}
	set := redis.NewStatusCmd(bg, "set", "k", []byte("value"))
	if err := r.t.Do(bg, set); err != nil {
		t.Fatalf("Do(SET []byte) error = %v", err)
	}
	if r.fake.data["k"] != "value" {
		t.Error("the SET had not reached the server when Do returned")
	}
}

// TestBuffersOwnership: a buffer a command carried is reused only when no
// abandoned call can still hold it (direct clients); on a guarded client
// it is never handed out again, even after an abandoned call.
func TestBuffersOwnership(t *testing.T) {
	guarded := newRig(t, rigOpts{op: 20 * time.Millisecond})
	guarded.fake.hold = func(args []any) bool { return args[0] == "set" }
	b := guarded.t.Buffers()
	p := b.Get()
	*p = append(*p, "value"...)
	bg := context.Background()
	err := guarded.t.DoWith(bg, Policy{Timeout: 20 * time.Millisecond, Write: true}, redis.NewStatusCmd(bg, "set", "k", *p))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("held write error = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}
	b.Release(p) // its goroutine still holds the command
	for range 1000 {
		if b.Get() == p {
			t.Fatal("a buffer an abandoned call may hold was handed out again")
		}
	}
	direct := newRig(t, rigOpts{direct: true})
	d := direct.t.Buffers()
	q := d.Get()
	reused := false
	for range 100 { // sync.Pool may drop a Put (always, sometimes, under -race)
		d.Release(q)
		if d.Get() == q {
			reused = true
			break
		}
	}
	if !reused {
		t.Error("a direct client's released buffer was never reused")
	}
}

// TestGuardedDeadline: on a client that does not bound socket I/O by the
// context, a call that hangs returns at the op timeout with ErrUnavailable
// (its goroutine abandoned, tracked until it ends); a caller whose deadline
// is sooner gets its own error. Bounds are generous: the timeouts are 50ms
// and the waits 5s, so only a call that ignored its deadline fails.
func TestGuardedDeadline(t *testing.T) {
	r := newRig(t, rigOpts{op: 50 * time.Millisecond})
	r.fake.holdGets("held")
	bg := context.Background()
	start := time.Now()
	err := r.t.Do(bg, redis.NewStringCmd(bg, "get", "held"))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung read error = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("hung read returned after %v, want about the 50ms op timeout", took)
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Millisecond)
	defer cancel()
	if err := r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "held")); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Errorf("read past its caller's deadline: error = %v, want the caller's DeadlineExceeded, not ErrUnavailable", err)
	}
}

// TestScan: Scan walks the keys and doOn wraps failures in ErrUnavailable.
func TestScan(t *testing.T) {
	r := newRig(t, rigOpts{direct: true})
	r.fake.data["a"], r.fake.data["b"] = "1", "2"
	var got []string
	if err := r.t.Scan(context.Background(), "*", 10, func(keys []string) error {
		got = append(got, keys...)
		return nil
	}); err != nil {
		t.Fatalf("Scan() error = %v", err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Scan found %v, want [a b]", got)
	}
	r.fake.fail = errors.New("connection reset")
	if err := r.t.Scan(context.Background(), "*", 10, func([]string) error { return nil }); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Scan() on a failing server: error = %v, want ErrUnavailable", err)
	}
}

// TestReader: a Reader sends to its own client, not through the
// Transport's breaker (an open breaker does not stop it), and refuses
// calls after Close.
func TestReader(t *testing.T) {
	r := newRig(t, rigOpts{direct: true, coalesce: true, failures: 1})
	secondary := newFake()
	secondary.data["k"] = "replica"
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1})
	c.AddHook(secondary)
	defer c.Close()
	rd := r.t.Reader(c)
	defer rd.Close()
	if rd.co == nil {
		t.Error("a Reader of a direct client on a coalescing Transport does not coalesce")
	}
	ctx := context.Background()
	r.fake.fail = errors.New("master down")
	_ = r.t.Do(ctx, redis.NewStringCmd(ctx, "get", "k")) // opens the breaker
	cmd := redis.NewStringCmd(ctx, "get", "k")
	if err := rd.Do(ctx, cmd); err != nil || cmd.Val() != "replica" {
		t.Errorf("Reader.Do = %q, %v; want replica, nil", cmd.Val(), err)
	}
	r.close()
	if err := rd.Do(ctx, redis.NewStringCmd(ctx, "get", "k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Reader.Do after Close: error = %v, want ErrClosed", err)
	}
}
