package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startTimeout bounds how long a spawned server may take to answer PING.
const startTimeout = 10 * time.Second

// exitTimeout bounds how long a killed server may take to be reaped.
const exitTimeout = 10 * time.Second

// errAddrInUse reports that redis-server could not bind its port, which
// happens when another process takes a free port between our probe and the
// server's bind.
var errAddrInUse = errors.New("address already in use")

// proc is one redis-server process. Its methods are not safe for concurrent
// use; Server serializes them.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	log    string        // path of the server's logfile
	done   chan struct{} // closed once Wait has returned
	paused bool
}

// launch starts redis-server on port with its files in dir, and waits
// until it answers PING. On error no process is left running.
func launch(bin string, port int, dir string, extra ...string) (*proc, error) {
	logPath := filepath.Join(dir, "redis.log")
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--enable-debug-command", "local",
		"--protected-mode", "no",
		"--logfile", logPath,
	}
	return start(bin, append(args, extra...), port, logPath)
}

// start runs bin with args, a redis-server that will listen on port and
// log to logPath, and waits until it answers PING. On error no process is
// left running.
func start(bin string, args []string, port int, logPath string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{
		cmd:  cmd,
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		log:  logPath,
		done: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(); err != nil {
		_ = p.kill()
		return nil, err
	}
	return p, nil
}

// waitReady polls PING until the server answers, exits or startTimeout
// passes.
func (p *proc) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if ping(p.addr, 250*time.Millisecond) == nil {
			return nil
		}
		select {
		case <-p.done:
			tail := p.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("redis-server on %s: %w", p.addr, errAddrInUse)
			}
			return fmt.Errorf("redis-server on %s exited during start (%v); log:\n%s", p.addr, p.cmd.ProcessState, tail)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %v; log:\n%s", p.addr, startTimeout, p.logTail())
		}
	}
}

// signal sends sig to the process unless it has already exited.
func (p *proc) signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("redis-server on %s has exited (%v)", p.addr, p.cmd.ProcessState)
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// kill sends SIGKILL, resuming the process first if it is stopped, and
// waits until it has been reaped.
func (p *proc) kill() error {
	if p.paused {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.paused = false
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("redis-server on %s (pid %d) still running %v after SIGKILL", p.addr, p.cmd.Process.Pid, exitTimeout)
	}
}

// logTail returns the last lines of the server's logfile.
func (p *proc) logTail() string {
	f, err := os.Open(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 20 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// ping sends one inline PING to addr and checks for +PONG.
func ping(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING = %q, want +PONG", strings.TrimSpace(line))
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago. The
// caller must cope with losing a race for it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}
