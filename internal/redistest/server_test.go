package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestEach(t *testing.T) {
	var kinds []string
	Each(t, func(t *testing.T, s *Server) {
		kinds = append(kinds, s.Kind())
		if !strings.HasSuffix(t.Name(), "/"+s.Kind()) {
			t.Errorf("Kind() = %q in subtest %q", s.Kind(), t.Name())
		}
		ctx := context.Background()
		c := s.Client(t)
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatalf("Set(k) = %v", err)
		}
		if got, err := c.Get(ctx, "k").Result(); got != "v" || err != nil {
			t.Fatalf("Get(k) = %q, %v, want v, nil", got, err)
		}
		s.FlushAll(t)
		if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
			t.Fatalf("Get(k) after FlushAll = %v, want redis.Nil", err)
		}
	})
	want := []string{KindMiniredis}
	if _, err := exec.LookPath("redis-server"); err == nil {
		want = []string{KindRedis, KindMiniredis}
	}
	for _, k := range want {
		if !slices.Contains(kinds, k) {
			t.Errorf("Each ran on %v, want it to include %s", kinds, k)
		}
	}
}

func TestKillRestart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("Set(k) = %v", err)
	}
	addr := s.Addr()
	s.Kill()
	if err := c.Get(ctx, "k").Err(); err == nil || errors.Is(err, redis.Nil) {
		t.Fatalf("Get(k) after Kill = %v, want a connection error", err)
	}
	s.Restart()
	if s.Addr() != addr {
		t.Errorf("Addr() after Restart = %s, want %s", s.Addr(), addr)
	}
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("Get(k) after Restart = %v, want redis.Nil (empty data)", err)
	}
	// Restart of a live server is a crash and relaunch.
	s.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Ping after second Restart = %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("Set(k) = %v", err)
	}
	s.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Get(ctx, "k").Err()
	if elapsed := time.Since(start); err == nil || elapsed > time.Second {
		t.Fatalf("Get(k) while paused = %v after %v, want a timeout near 200ms", err, elapsed)
	}
	if !isTimeout(err) {
		t.Errorf("Get(k) while paused = %v, want a timeout error", err)
	}
	s.Resume()
	if got, err := c.Get(context.Background(), "k").Result(); got != "v" || err != nil {
		t.Fatalf("Get(k) after Resume = %q, %v, want v, nil", got, err)
	}
}

func TestClientPauseWrite(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	const pause = 300 * time.Millisecond
	s.ClientPause(pause, "write")
	start := time.Now()
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("Get(k) during CLIENT PAUSE WRITE = %v, want redis.Nil", err)
	}
	if elapsed := time.Since(start); elapsed > pause/2 {
		t.Errorf("Get(k) during CLIENT PAUSE WRITE took %v, want it served at once", elapsed)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("Set(k) during CLIENT PAUSE WRITE = %v", err)
	}
	if elapsed := time.Since(start); elapsed < pause*3/4 {
		t.Errorf("Set(k) during CLIENT PAUSE WRITE returned after %v, want about %v", elapsed, pause)
	}
}

func TestDo(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	// DEBUG is refused unless the server was started to allow it.
	if err := s.Do(ctx, "DEBUG", "SLEEP", "0").Err(); err != nil {
		t.Errorf("Do(DEBUG SLEEP 0) = %v", err)
	}
	if err := s.Do(ctx, "CONFIG", "SET", "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Errorf("Do(CONFIG SET) = %v", err)
	}
	got, err := s.Do(ctx, "CONFIG", "GET", "maxmemory-policy").StringSlice()
	if want := []string{"maxmemory-policy", "noeviction"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Do(CONFIG GET) = %q, %v, want %q", got, err, want)
	}
}

func TestNoProcessOutlivesTest(t *testing.T) {
	tests := []struct {
		name string
		last func(s *Server)
	}{
		{"running", func(s *Server) {}},
		{"paused", func(s *Server) { s.Pause() }},
		{"killed", func(s *Server) { s.Kill() }},
	}
	for _, tt := range tests {
		var pids []int
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t)
			pids = append(pids, s.proc.cmd.Process.Pid)
			s.Restart()
			pids = append(pids, s.proc.cmd.Process.Pid)
			tt.last(s)
		})
		for _, pid := range pids {
			// Cleanup reaped the process, so the pid no longer exists.
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s: kill(%d, 0) after the test = %v, want ESRCH", tt.name, pid, err)
			}
		}
	}
}

func TestFromURL(t *testing.T) {
	real := Start(t)
	s := FromURL(t, "redis://"+real.Addr()+"/0")
	if s.Kind() != KindURL || s.Real() {
		t.Errorf("FromURL: Kind() = %q, Real() = %t, want url, false", s.Kind(), s.Real())
	}
	ctx := context.Background()
	if err := s.Client(t).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("Set(k) = %v", err)
	}
	if got, err := real.Client(t).Get(ctx, "k").Result(); got != "v" || err != nil {
		t.Fatalf("Get(k) on the spawned server = %q, %v, want v, nil", got, err)
	}
}

func TestMiniFastForward(t *testing.T) {
	s := StartMini(t)
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatalf("Set(k) = %v", err)
	}
	s.FastForward(2 * time.Minute)
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("Get(k) after FastForward = %v, want redis.Nil", err)
	}
	if s.Miniredis().Exists("k") {
		t.Errorf("Miniredis().Exists(k) = true after FastForward")
	}
}

// fatalTB records the first Fatalf or Skipf and stops the goroutine, like
// testing.T does, so tests can check that a helper fails cleanly.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = "fatal: " + fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalTB) Skipf(format string, args ...any) {
	f.msg = "skip: " + fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// capture runs fn on its own goroutine and returns what it reported to f.
func (f *fatalTB) capture(fn func()) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	return f.msg
}

func TestUnsupportedKind(t *testing.T) {
	tests := []struct {
		name  string
		start func(testing.TB) *Server
		op    func(s *Server)
		want  string
	}{
		{"Kill/miniredis", StartMini, func(s *Server) { s.Kill() }, "Kill needs a spawned redis-server"},
		{"Restart/miniredis", StartMini, func(s *Server) { s.Restart() }, "Restart needs a spawned redis-server"},
		{"Pause/miniredis", StartMini, func(s *Server) { s.Pause() }, "Pause needs a spawned redis-server"},
		{"Resume/miniredis", StartMini, func(s *Server) { s.Resume() }, "Resume needs a spawned redis-server"},
		{"ClientPause/miniredis", StartMini, func(s *Server) { s.ClientPause(time.Millisecond, "ALL") }, "ClientPause needs a spawned redis-server"},
		{"FastForward/redis", Start, func(s *Server) { s.FastForward(time.Second) }, "FastForward needs Kind miniredis"},
		{"Miniredis/redis", Start, func(s *Server) { s.Miniredis() }, "Miniredis needs Kind miniredis"},
		{"Pause/killed", Start, func(s *Server) { s.Kill(); s.Pause() }, "is not running"},
		{"ClientPause/bad mode", Start, func(s *Server) { s.ClientPause(time.Millisecond, "READ") }, `mode "READ"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fatalTB{TB: t}
			s := tt.start(f)
			if got := f.capture(func() { tt.op(s) }); !strings.Contains(got, tt.want) {
				t.Errorf("%s reported %q, want it to contain %q", tt.name, got, tt.want)
			}
		})
	}
}

func TestMissingBinary(t *testing.T) {
	tests := []struct {
		name string
		ci   string
		want string
	}{
		{"local", "", "skip: redistest: redis-server not found"},
		{"CI", "true", "fatal: redistest: redis-server not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv("CI", tt.ci)
			f := &fatalTB{TB: t}
			if got := f.capture(func() { Start(f) }); !strings.HasPrefix(got, tt.want) {
				t.Errorf("Start with no binary reported %q, want prefix %q", got, tt.want)
			}
			if got := f.capture(func() { StartCluster(f, 1) }); !strings.HasPrefix(got, tt.want) {
				t.Errorf("StartCluster with no binary reported %q, want prefix %q", got, tt.want)
			}
		})
	}
}

// isTimeout reports whether err is a deadline or network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
