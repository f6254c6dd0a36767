package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Kinds of Server, as returned by [Server.Kind].
const (
	KindRedis     = "redis"     // a redis-server process spawned by Start
	KindMiniredis = "miniredis" // an embedded miniredis started by StartMini
	KindURL       = "url"       // an existing server named by FromURL
)

// Timeouts of clients made by [Server.Client] and of the admin connection.
const (
	clientTimeout = 3 * time.Second
	adminTimeout  = 10 * time.Second
)

// Server is a Redis server for one test. It belongs to the test passed to
// its constructor: call its methods from that test's goroutine or from one
// of its subtests, and do not use it after the test ends. Methods that need
// a Kind the Server is not fail the test with a message saying so.
type Server struct {
	t    testing.TB
	kind string
	base redis.Options // template for clients; Addr is the server's
	mini *miniredis.Miniredis
	bin  string   // redis-server binary, for KindRedis
	dir  string   // parent of each run's --dir, for KindRedis
	args []string // extra redis-server arguments, kept across Restart

	mu    sync.Mutex
	proc  *proc // nil once killed
	admin *redis.Client
}

// Start spawns a redis-server on a free loopback port for the test and
// kills it when the test ends. The server keeps nothing on disk and
// accepts DEBUG commands. Start skips the test when no redis-server is on
// PATH, or fails it when the environment variable CI is true.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := lookBinary(t, "redis-server")
	return spawn(t, bin, func() ([]string, error) { return nil, nil })
}

// spawn starts a KindRedis server. args returns the extra arguments for
// each launch attempt, so it can pick further free ports after a lost bind
// race.
func spawn(t testing.TB, bin string, args func() ([]string, error)) *Server {
	t.Helper()
	s := &Server{t: t, kind: KindRedis, bin: bin, dir: t.TempDir()}
	// Registered after TempDir, so it runs first: the process must be
	// gone before its directory is removed.
	t.Cleanup(s.stop)
	var err error
	for range 5 {
		var run string
		if run, err = os.MkdirTemp(s.dir, "run-"); err != nil {
			break
		}
		var port int
		if port, err = freePort(); err != nil {
			break
		}
		if s.args, err = args(); err != nil {
			break
		}
		if s.proc, err = launch(bin, port, run, s.args...); !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.base = clientDefaults(redis.Options{Addr: s.proc.addr})
	return s
}

// StartMini starts an embedded miniredis for the test and closes it when
// the test ends. It needs no binary, but cannot pause, crash or restart,
// and expires keys only through [Server.FastForward].
func StartMini(t testing.TB) *Server {
	t.Helper()
	m := miniredis.RunT(t)
	s := &Server{t: t, kind: KindMiniredis, mini: m, base: clientDefaults(redis.Options{Addr: m.Addr()})}
	t.Cleanup(s.stop)
	return s
}

// FromURL returns a Server for the existing Redis at url, such as
// "redis://127.0.0.1:6380/2", and fails the test if it does not answer
// PING. The server is shared with whatever else uses it, so point url at a
// disposable database: tests may FLUSHALL it. It supports no process
// control and [Server.Real] reports false for it.
func FromURL(t testing.TB, url string) *Server {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		// The URL may hold a password, so only the error is shown.
		t.Fatalf("redistest: parse REDIS_URL: %v", err)
	}
	s := &Server{t: t, kind: KindURL, base: clientDefaults(*opt)}
	t.Cleanup(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Do(ctx, "PING").Err(); err != nil {
		t.Fatalf("redistest: PING %s: %v", opt.Addr, err)
	}
	return s
}

// clientDefaults fills the options that the caller left zero with values
// that suit tests: fail fast instead of retrying, and honour ctx deadlines.
func clientDefaults(opt redis.Options) redis.Options {
	opt.ContextTimeoutEnabled = true
	if opt.DialTimeout == 0 {
		opt.DialTimeout = clientTimeout
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = clientTimeout
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = clientTimeout
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1 // go-redis reads 0 as "the default, 3"
	}
	if opt.DialerRetries == 0 {
		opt.DialerRetries = 1
	}
	return opt
}

// lookBinary returns the path of name on PATH. If there is none it skips
// the test, or fails it when CI is true.
func lookBinary(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin
	}
	if inCI() {
		t.Fatalf("redistest: %s not found on PATH and CI is set: install it (apt-get install redis-server)", name)
	}
	t.Skipf("redistest: %s not found on PATH, skipping real-server test (install redis-server to run it)", name)
	return ""
}

// inCI reports whether the environment variable CI is set to true.
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// RequireReal skips the test unless s is a spawned redis-server, the only
// Kind that supports process control and destructive admin commands.
func RequireReal(t testing.TB, s *Server) {
	t.Helper()
	if !s.Real() {
		t.Skipf("redistest: needs a spawned redis-server, backend is %s", s.Kind())
	}
}

// Addr returns the server's host:port. It stays the same across
// [Server.Restart].
func (s *Server) Addr() string { return s.base.Addr }

// Kind returns [KindRedis], [KindMiniredis] or [KindURL].
func (s *Server) Kind() string { return s.kind }

// Real reports whether s is a redis-server spawned by this package. Only
// such a server can be killed, paused or restarted, and only it may be
// reconfigured freely; a [KindURL] server is real Redis but shared, so Real
// reports false for it.
func (s *Server) Real() bool { return s.kind == KindRedis }

// Miniredis returns the embedded miniredis. It fails the test unless s is
// [KindMiniredis].
func (s *Server) Miniredis() *miniredis.Miniredis {
	s.t.Helper()
	if s.mini == nil {
		s.t.Fatalf("redistest: Miniredis needs Kind miniredis, this Server is %s", s.kind)
	}
	return s.mini
}

// FastForward advances miniredis's clock by d, expiring keys whose TTL
// has run out. It fails the test on other Kinds, where keys expire in real
// time.
func (s *Server) FastForward(d time.Duration) {
	s.t.Helper()
	if s.mini == nil {
		s.t.Fatalf("redistest: FastForward needs Kind miniredis; on %s keys expire in real time", s.kind)
	}
	s.mini.FastForward(d)
}

// Client returns a new go-redis client for the server, closed when t ends.
// It honours ctx deadlines (ContextTimeoutEnabled), times out dials, reads
// and writes after 1s, dials once per attempt and never retries a command.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	return s.ClientWith(t, nil)
}

// ClientWith is like [Server.Client] but lets fn change the options first,
// for example to set PoolSize, or Addr to dial through a fault proxy. fn
// sees the defaults of Client and may change any of them.
func (s *Server) ClientWith(t testing.TB, fn func(*redis.Options)) *redis.Client {
	t.Helper()
	opt := s.base
	if fn != nil {
		fn(&opt)
	}
	c := redis.NewClient(&opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// FlushAll deletes every key on the server, failing t on error.
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	if s.mini != nil {
		s.mini.FlushAll()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := s.Do(ctx, "FLUSHALL").Err(); err != nil {
		t.Fatalf("redistest: FLUSHALL on %s: %v", s.Addr(), err)
	}
}

// Do sends one command on the admin connection, which is separate from
// every client's pool and speaks RESP2, so replies are flat. Use it for
// CONFIG SET, DEBUG SLEEP, CLIENT KILL, INFO and the like. Do returns
// errors in the Cmd instead of failing the test, and blocks at most until
// ctx ends or 10s pass. The admin connection is itself a client: CLIENT
// PAUSE ALL and SIGSTOP hold it too.
func (s *Server) Do(ctx context.Context, args ...any) *redis.Cmd {
	return s.adminClient().Do(ctx, args...)
}

// adminClient returns the admin client, creating it if needed.
func (s *Server) adminClient() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		opt := s.base
		opt.Protocol = 2
		opt.ClientName = "redistest-admin"
		opt.ReadTimeout = adminTimeout
		opt.WriteTimeout = adminTimeout
		opt.PoolSize = 2
		s.admin = redis.NewClient(&opt)
	}
	return s.admin
}

// closeAdminLocked drops the admin client, whose connections a kill or
// restart has broken.
func (s *Server) closeAdminLocked() {
	if s.admin != nil {
		_ = s.admin.Close()
		s.admin = nil
	}
}

// stop is the test cleanup: it closes the admin client and kills the
// process, resuming it first if it is paused.
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeAdminLocked()
	if s.proc != nil {
		if err := s.proc.kill(); err != nil {
			s.t.Errorf("redistest: cleanup: %v", err)
		}
		s.proc = nil
	}
}

// needProcess fails the test unless s is a spawned redis-server.
func (s *Server) needProcess(op string) {
	s.t.Helper()
	if s.kind != KindRedis {
		s.t.Fatalf("redistest: %s needs a spawned redis-server, this Server is %s; check s.Real() or call RequireReal(t, s) first", op, s.kind)
	}
}

// runningLocked returns the live process, failing the test if there is
// none.
func (s *Server) runningLocked(op string) *proc {
	s.t.Helper()
	if s.proc == nil {
		s.t.Fatalf("redistest: %s: redis-server on %s is not running (killed; call Restart)", op, s.Addr())
	}
	return s.proc
}

// Kill crashes the server with SIGKILL and waits until it has exited.
// Clients then get connection errors until [Server.Restart].
func (s *Server) Kill() {
	s.t.Helper()
	s.needProcess("Kill")
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.runningLocked("Kill")
	s.closeAdminLocked()
	s.proc = nil
	if err := p.kill(); err != nil {
		s.t.Fatalf("redistest: Kill: %v", err)
	}
}

// Restart starts the server again on the same port with empty data, and
// returns once it answers PING. A server still running is killed first,
// so Restart is a crash and relaunch. Existing clients reconnect on their
// next command; connections they had are broken.
func (s *Server) Restart() {
	s.t.Helper()
	s.needProcess("Restart")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeAdminLocked()
	if s.proc != nil {
		p := s.proc
		s.proc = nil
		if err := p.kill(); err != nil {
			s.t.Fatalf("redistest: Restart: %v", err)
		}
	}
	if err := s.relaunchLocked(); err != nil {
		s.t.Fatalf("redistest: Restart: %v", err)
	}
}

// relaunchLocked starts the server process on its port again, in a new
// run directory. The old socket is gone, but a client's ephemeral port
// can briefly hold the number, so a lost bind is retried for 3 s. The
// caller holds s.mu.
func (s *Server) relaunchLocked() error {
	_, portStr, _ := net.SplitHostPort(s.Addr())
	port, _ := strconv.Atoi(portStr)
	deadline := time.Now().Add(3 * time.Second)
	for {
		run, err := os.MkdirTemp(s.dir, "run-")
		if err != nil {
			return err
		}
		s.proc, err = launch(s.bin, port, run, s.args...)
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			return err
		}
		<-time.After(50 * time.Millisecond)
	}
}

// Pause freezes the server with SIGSTOP, like a hung host: the kernel still
// accepts connections, but no reply comes until [Server.Resume]. It
// returns once the process is stopped, and does nothing if it already is.
func (s *Server) Pause() {
	s.t.Helper()
	s.needProcess("Pause")
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.runningLocked("Pause")
	if p.paused {
		return
	}
	if err := p.signal(syscall.SIGSTOP); err != nil {
		s.t.Fatalf("redistest: Pause: %v", err)
	}
	p.paused = true
	if err := waitState(p.cmd.Process.Pid, true); err != nil {
		s.t.Fatalf("redistest: Pause: %v", err)
	}
}

// Resume continues a server frozen by [Server.Pause]. It does nothing if
// the server is not paused.
func (s *Server) Resume() {
	s.t.Helper()
	s.needProcess("Resume")
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.runningLocked("Resume")
	if !p.paused {
		return
	}
	if err := p.signal(syscall.SIGCONT); err != nil {
		s.t.Fatalf("redistest: Resume: %v", err)
	}
	p.paused = false
	if err := waitState(p.cmd.Process.Pid, false); err != nil {
		s.t.Fatalf("redistest: Resume: %v", err)
	}
}

// ClientPause runs CLIENT PAUSE for d on the admin connection. mode is
// "WRITE" (writes block, reads are served) or "ALL"; an empty mode means
// "ALL". Blocked commands run once the pause ends.
func (s *Server) ClientPause(d time.Duration, mode string) {
	s.t.Helper()
	s.needProcess("ClientPause")
	mode = strings.ToUpper(mode)
	if mode == "" {
		mode = "ALL"
	}
	if mode != "ALL" && mode != "WRITE" {
		s.t.Fatalf("redistest: ClientPause mode %q, want WRITE or ALL", mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := s.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), mode).Err(); err != nil {
		s.t.Fatalf("redistest: CLIENT PAUSE %d %s: %v", d.Milliseconds(), mode, err)
	}
}

// String returns the Kind and address, for test logs.
func (s *Server) String() string { return fmt.Sprintf("%s@%s", s.kind, s.Addr()) }
