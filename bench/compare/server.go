package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is the Redis every library talks to: a redis-server this program
// spawned on a free loopback port, or the one named by REDIS_URL.
type server struct {
	opt     redis.Options // template for go-redis clients
	ns      string        // prefix of every key written; "" on our own server
	version string
	admin   *redis.Client
	cmd     *exec.Cmd
	done    chan struct{}
}

// startServer spawns redis-server, or connects to REDIS_URL when it is set.
// Keys written to a REDIS_URL server carry a per-run prefix and are
// deleted by close; our own server is flushed between workloads instead.
func startServer() (*server, error) {
	s := &server{}
	if url := os.Getenv("REDIS_URL"); url != "" {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		s.opt = *opt
		s.ns = fmt.Sprintf("cmpbench%d-", time.Now().UnixNano()%1e9)
	} else {
		if err := s.spawn(); err != nil {
			return nil, err
		}
	}
	s.opt.ContextTimeoutEnabled = true
	s.admin = s.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := s.admin.Info(ctx, "server").Result()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("redis at %s: %w", s.opt.Addr, err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			s.version = v
		}
	}
	return s, nil
}

// client returns a new go-redis client for the server, with
// ContextTimeoutEnabled as cachemgr recommends; every go-redis based library
// gets the same options.
func (s *server) client() *redis.Client {
	opt := s.opt
	return redis.NewClient(&opt)
}

func (s *server) spawn() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("%w (install redis-server, or set REDIS_URL)", err)
	}
	for range 5 {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--protected-mode", "no")
		cmd.SysProcAttr = sysProcAttr()
		out := &strings.Builder{}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", bin, err)
		}
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		if err := waitReady(addr, done); err != nil {
			_ = cmd.Process.Kill()
			<-done
			if strings.Contains(out.String(), "Address already in use") {
				continue // lost the race for the port
			}
			return fmt.Errorf("%w\n%s", err, out.String())
		}
		s.opt = redis.Options{Addr: addr}
		s.cmd, s.done = cmd, done
		return nil
	}
	return errors.New("redis-server: no free port after 5 tries")
}

// waitReady polls PING until the server answers, exits, or 10s pass.
func waitReady(addr string, done <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(addr) == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited during start", addr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within 10s", addr)
		}
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(250 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING = %q", strings.TrimSpace(line))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// reset empties the server between workloads: FLUSHALL on our own server,
// a SCAN and DEL of this run's keys on a REDIS_URL one.
func (s *server) reset(ctx context.Context) error {
	if s.ns == "" {
		return s.admin.FlushAll(ctx).Err()
	}
	iter := s.admin.Scan(ctx, 0, s.ns+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := s.admin.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return s.admin.Unlink(ctx, batch...).Err()
	}
	return nil
}

// close deletes this run's keys (REDIS_URL) or kills the spawned server.
func (s *server) close() {
	if s.admin != nil {
		if s.ns != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = s.reset(ctx)
			cancel()
		}
		_ = s.admin.Close()
	}
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
