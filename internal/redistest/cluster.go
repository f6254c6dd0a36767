package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots in a Redis Cluster.
const clusterSlots = 16384

// clusterTimeout bounds how long a new cluster may take to reach
// cluster_state:ok on every node.
const clusterTimeout = 15 * time.Second

// Cluster is a local Redis Cluster of masters without replicas, for one
// test. Its nodes are killed when the test ends.
type Cluster struct {
	t     testing.TB
	nodes []*Server
}

// StartCluster starts masters redis-server processes in cluster mode on
// free loopback ports (node timeout 1s), splits the hash slots evenly
// between them and returns once every node reports cluster_state:ok. Like
// [Start], it skips the test when no redis-server is on PATH, or fails it
// when CI is true.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 1 {
		t.Fatalf("redistest: StartCluster(%d): need at least one master", masters)
	}
	bin := lookBinary(t, "redis-server")
	c := &Cluster{t: t}
	for range masters {
		s := spawn(t, bin, func() ([]string, error) {
			bus, err := freePort()
			if err != nil {
				return nil, err
			}
			return []string{
				"--cluster-enabled", "yes",
				// Relative to --dir, which is new for every run.
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "1000",
				"--cluster-port", strconv.Itoa(bus),
			}, nil
		})
		c.nodes = append(c.nodes, s)
	}
	c.form()
	return c
}

// form assigns slots, joins the nodes and waits for the cluster to be ok.
// It does what redis-cli --cluster create does, without needing redis-cli
// or at least three masters.
func (c *Cluster) form() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	c.assignSlots(ctx)
	first := c.nodes[0]
	for _, s := range c.nodes[1:] {
		host, port, _ := net.SplitHostPort(s.Addr())
		c.do(ctx, first, "CLUSTER", "MEET", host, port, s.busPort())
	}
	for _, s := range c.nodes {
		c.waitOK(ctx, s)
	}
}

// assignSlots gives each node an equal range of the slots, in order, and
// its own config epoch.
func (c *Cluster) assignSlots(ctx context.Context) {
	c.t.Helper()
	n := len(c.nodes)
	for i, s := range c.nodes {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n-1
		c.do(ctx, s, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
		// Distinct epochs up front spare the nodes an epoch collision
		// round before they agree on slot owners.
		c.do(ctx, s, "CLUSTER", "SET-CONFIG-EPOCH", i+1)
	}
}

// waitOK waits until node s sees the cluster ok with all its nodes,
// failing the test when ctx ends first.
func (c *Cluster) waitOK(ctx context.Context, s *Server) {
	c.t.Helper()
	n := len(c.nodes)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := s.Do(ctx, "CLUSTER", "INFO").Text()
		if err == nil && strings.Contains(info, "cluster_state:ok") &&
			strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r", n)) {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("redistest: cluster of %d not ok on %s within %v: %v\n%s", n, s.Addr(), clusterTimeout, err, info)
		case <-tick.C:
		}
	}
}

// do runs one admin command on s, failing the test on error.
func (c *Cluster) do(ctx context.Context, s *Server, args ...any) {
	c.t.Helper()
	if err := s.Do(ctx, args...).Err(); err != nil {
		c.t.Fatalf("redistest: %v on %s: %v", args, s.Addr(), err)
	}
}

// busPort returns the --cluster-port argument the node was started with.
func (s *Server) busPort() string {
	for i, a := range s.args {
		if a == "--cluster-port" && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

// Addrs returns the host:port of every node.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Nodes returns the nodes, in slot order, for process control and admin
// commands. A node that is restarted comes back empty and outside the
// cluster.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Client returns a new cluster client seeded with every node, closed when
// t ends. Its timeouts are those of [Server.Client]; it follows redirects
// but does not retry.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	return c.ClientWith(t, nil)
}

// ClientWith is like [Cluster.Client] but lets fn change the options first.
func (c *Cluster) ClientWith(t testing.TB, fn func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	opt := &redis.ClusterOptions{
		Addrs:                 c.Addrs(),
		ContextTimeoutEnabled: true,
		DialTimeout:           clientTimeout,
		ReadTimeout:           clientTimeout,
		WriteTimeout:          clientTimeout,
		MaxRetries:            -1,
		DialerRetries:         1,
	}
	if fn != nil {
		fn(opt)
	}
	cc := redis.NewClusterClient(opt)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}
