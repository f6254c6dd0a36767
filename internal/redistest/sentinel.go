package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a redis-server in sentinel mode, for one test, monitoring
// one master. It is killed when the test ends.
type Sentinel struct {
	t      testing.TB
	name   string
	proc   *proc
	client *redis.SentinelClient
}

// StartSentinel starts a Sentinel on a free loopback port that monitors
// master under name, with a quorum of 1 and a master taken for down after
// downAfter without a reply, and waits until it knows every replica the
// master has now. Like [Start], it skips the test when no redis-server is
// on PATH, or fails it when CI is true.
func StartSentinel(t testing.TB, name string, master *Server, downAfter time.Duration) *Sentinel {
	t.Helper()
	master.needProcess("StartSentinel")
	bin := lookBinary(t, "redis-server")
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(master.Addr())
	s := &Sentinel{t: t, name: name}
	var err error
	for range 5 {
		var p int
		if p, err = freePort(); err != nil {
			break
		}
		// Sentinel rewrites its configuration file, so it must be one.
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", p))
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s 10000\n",
			p, dir, filepath.Join(dir, "sentinel.log"), name, host, port, name, downAfter.Milliseconds(), name)
		if err = os.WriteFile(conf, []byte(text), 0o600); err != nil {
			break
		}
		if s.proc, err = start(bin, []string{conf, "--sentinel"}, p, filepath.Join(dir, "sentinel.log")); !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: sentinel: %v", err)
	}
	t.Cleanup(s.stop)
	s.client = redis.NewSentinelClient(&redis.Options{Addr: s.proc.addr, ReadTimeout: adminTimeout, WriteTimeout: adminTimeout})
	info, err := master.Do(context.Background(), "INFO", "replication").Text()
	if err != nil {
		t.Fatalf("redistest: INFO replication on %s: %v", master.Addr(), err)
	}
	want := 0
	if _, err := fmt.Sscanf(afterField(info, "connected_slaves:"), "%d", &want); err != nil {
		t.Fatalf("redistest: INFO replication on %s: no connected_slaves: %v", master.Addr(), err)
	}
	s.waitFor(fmt.Sprintf("%d replicas known", want), func(ctx context.Context) (bool, error) {
		r, err := s.client.Replicas(ctx, name).Result()
		return len(r) >= want, err
	})
	return s
}

// afterField returns what follows field in an INFO reply, up to the end of
// its line.
func afterField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ReplicaOf makes s a replica of master and waits until its link to the
// master is up and the initial sync done, failing the test after a minute.
func (s *Server) ReplicaOf(master *Server) {
	s.t.Helper()
	s.needProcess("ReplicaOf")
	ctx := context.Background() // Do bounds each command by the admin timeout
	host, port, _ := net.SplitHostPort(master.Addr())
	if err := s.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		s.t.Fatalf("redistest: REPLICAOF on %s: %v", s.Addr(), err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := s.Do(ctx, "INFO", "replication").Text()
		if err == nil && afterField(info, "master_link_status:") == "up" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: %s: replication link to %s not up within a minute: %v", s.Addr(), master.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr returns the Sentinel's host:port.
func (s *Sentinel) Addr() string { return s.proc.addr }

// MasterAddr returns the address of the master as the Sentinel sees it
// now.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	hp, err := s.client.GetMasterAddrByName(ctx, s.name).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME %s = %v", s.name, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// WaitFailover waits until the Sentinel names a master other than old,
// failing the test if none is named within a minute.
func (s *Sentinel) WaitFailover(old string) string {
	s.t.Helper()
	var addr string
	s.waitFor("a master other than "+old, func(ctx context.Context) (bool, error) {
		var err error
		addr, err = s.MasterAddr(ctx)
		return err == nil && addr != old, err
	})
	return addr
}

// waitFor polls cond every 20 ms until it holds, failing the test after
// a minute.
func (s *Sentinel) waitFor(what string, cond func(context.Context) (bool, error)) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		ok, err := cond(ctx)
		cancel()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: sentinel on %s: no %s within a minute: %v; log:\n%s", s.Addr(), what, err, s.proc.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Sentinel) stop() {
	if s.client != nil {
		_ = s.client.Close()
	}
	if err := s.proc.kill(); err != nil {
		s.t.Errorf("redistest: cleanup: %v", err)
	}
}
