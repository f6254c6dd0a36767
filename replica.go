package cachemgr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cachemgr/cachemgr/internal/breaker"
	"github.com/cachemgr/cachemgr/internal/transport"
	"github.com/redis/go-redis/v9"
)

// Reads from replicas. Only the GET of a data key may go to a replica, and
// only its hit is taken from there: a miss, a failure or an error reply is
// asked of the master again. Everything that decides whether a value may be
// served stays on the master: the namespace version of a versioned cache
// (so a versioned cache reads from the master only), tag stamps, markers,
// leases, and every script. A replica that lags can thus return an old
// value only where no check on the master catches it: a key whose Set or
// Delete it has not applied yet. Every write is therefore followed, on the
// same connection, by WAIT for the replicas, and returns only once they
// have applied it (or fails, and is kept for retry). See docs/replicas.md.

// ErrReplicaLag reports a write that reached the master but that the
// replicas named by WithReplicaReads did not all acknowledge within the
// maximum lag. It also matches ErrUnavailable: the invalidation is kept for
// retry, and meanwhile this process does not serve what it covers.
var ErrReplicaLag = errors.New("cachemgr: replicas did not acknowledge the write in time")

// replicaReads is the configuration and state of WithReplicaReads.
type replicaReads struct {
	client   redis.UniversalClient
	replicas int           // WAIT numreplicas
	lag      time.Duration // WAIT timeout
	breaker  *breaker.Breaker
	rd       *transport.Reader // sends to client; set by connect
}

// connect sends the replica reads through tr: concurrent ones share
// pipelines, as the master's do (WithCoalescing), when client bounds
// socket I/O by the context deadline. r may be nil.
func (r *replicaReads) connect(tr *transport.Transport) {
	if r != nil {
		r.rd = tr.Reader(r.client)
	}
}

// close fails the reads queued for the replicas with ErrClosed. r may be
// nil.
func (r *replicaReads) close() {
	if r != nil {
		r.rd.Close()
	}
}

// WithReplicaReads sends the reads of cache hits to client, a client
// connected to replicas of the Manager's master, such as a Sentinel
// failover client with ReplicaOnly set, or a plain client of one replica
// (a Dialer that spreads connections over several replicas works too).
// Only the GET of a stored value goes there, for caches without
// WithVersioned; a miss there, or a replica that fails, is asked of the
// master, and every check that decides whether a value may be served (tag
// stamps, invalidation markers, leases, namespace versions, scripts) stays
// on the master.
//
// replicas is how many replicas client can reach: every write (Set,
// Delete, Bump, InvalidateTags, InvalidatePrefix) waits, with WAIT, until
// that many replicas have applied it, for at most maxLag. Only then does it
// return, so a read that starts after an invalidation returned never sees
// what it invalidated, on any replica. When fewer replicas acknowledge in
// time the call returns an error wrapping ErrReplicaLag and ErrUnavailable,
// and the invalidation is kept for retry as any that did not reach Redis
// (see WithWriteTimeout). On a loaded 2-core machine with two local
// replicas, they applied a write within 58µs (median), 1.9ms (99th
// percentile) and 61ms (worst of 10,000); across hosts the lag is at least
// their round trip (docs/replicas.md). maxLag must be below the write timeout and the
// client's ReadTimeout. The Manager's own client must be a *redis.Client
// (one master, or Sentinel failover): WAIT must follow the write on the
// connection that made it, which a Cluster or Ring client does not ensure.
// The caller keeps ownership of client. Default: reads go to the master.
func WithReplicaReads(client redis.UniversalClient, replicas int, maxLag time.Duration) Option {
	return func(c *config) error {
		switch {
		case client == nil:
			return fmt.Errorf("%w: nil replica client", ErrInvalidOption)
		case replicas < 1:
			return fmt.Errorf("%w: %d replicas (want at least 1)", ErrInvalidOption, replicas)
		case maxLag < time.Millisecond:
			return fmt.Errorf("%w: replica lag %v (want at least 1ms)", ErrInvalidOption, maxLag)
		}
		c.replica = &replicaReads{client: client, replicas: replicas, lag: maxLag}
		return nil
	}
}

// checkReplicaSetup refuses clients that would let a replica answer a read
// that must see the master: a Cluster client that routes read-only
// commands to replicas sends there the namespace version and tag-stamp
// checks too, and nothing waits for those replicas. With WithReplicaReads
// it also checks what WAIT needs. cfg is the checked configuration.
func checkReplicaSetup(client redis.UniversalClient, cfg *config) error {
	if err := checkClusterReads(client); err != nil {
		return err
	}
	if cfg.replica == nil {
		return nil
	}
	return checkReplicaReads(client, cfg)
}

// checkClusterReads refuses a Cluster client that routes read-only
// commands to replicas.
func checkClusterReads(client redis.UniversalClient) error {
	if cc, ok := client.(*redis.ClusterClient); ok {
		if o := cc.Options(); o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return fmt.Errorf("%w: a Cluster client with ReadOnly, RouteByLatency or RouteRandomly would read version and tag stamps from replicas that may lag; give cachemgr a client without them (see docs/replicas.md)", ErrInvalidOption)
		}
	}
	return nil
}

// checkReplicaReads checks what WithReplicaReads needs: a *redis.Client
// (WAIT goes to its master), and a lag below the write timeout and the
// client's ReadTimeout. It then gives the replica its breaker.
func checkReplicaReads(client redis.UniversalClient, cfg *config) error {
	r := cfg.replica
	rc, ok := client.(*redis.Client)
	if !ok {
		return fmt.Errorf("%w: WithReplicaReads needs a *redis.Client (one master or Sentinel failover) as the Manager's client, not %T", ErrInvalidOption, client)
	}
	if r.lag >= cfg.writeTimeout {
		return fmt.Errorf("%w: replica lag %v not below the write timeout %v", ErrInvalidOption, r.lag, cfg.writeTimeout)
	}
	if rt := rc.Options().ReadTimeout; rt > 0 && r.lag >= rt {
		return fmt.Errorf("%w: replica lag %v not below the client's ReadTimeout %v", ErrInvalidOption, r.lag, rt)
	}
	r.breaker = breaker.New(cfg.failures, cfg.cooldown, cfg.now)
	return nil
}

// getData returns the value of data key rkey (redis.Nil: none): from a
// replica with WithReplicaReads, keeping a hit, and from the master
// otherwise or when the replica misses, fails or is behind its breaker
// (the thresholds of WithBreaker). A replica that fails costs up to an op
// timeout before the master is asked. Errors are do's.
func (m *Manager) getData(ctx context.Context, rkey string) (string, error) {
	if r := m.replica; r != nil && r.breaker.Allow() {
		if v, hit, err := r.get(ctx, rkey); hit || err != nil {
			return v, err
		}
	}
	// A command of its own: an abandoned call may still write to the
	// replica's.
	cmd := redis.NewStringCmd(ctx, "get", rkey)
	if err := m.do(ctx, cmd); err != nil {
		return "", err
	}
	return cmd.Val(), nil
}

// get reads data key rkey from the replica and records the outcome in its
// breaker. It reports a hit, or the caller's context's end as the error;
// a miss, an error reply or a failure leaves the read to the master.
func (r *replicaReads) get(ctx context.Context, rkey string) (string, bool, error) {
	cmd := redis.NewStringCmd(ctx, "get", rkey)
	err := r.rd.Do(ctx, cmd)
	switch {
	case err == nil:
		r.breaker.Success()
		return cmd.Val(), true, nil
	case ctx.Err() != nil:
		return "", false, context.Cause(ctx)
	case errors.Is(err, redis.Nil) || isReply(err):
		r.breaker.Success() // it answered; the master decides
	default:
		r.breaker.Failure()
	}
	return "", false, nil
}

// withWait returns cmds followed by a WAIT for the replicas, and that
// WAIT; cmds as they are and nil without WithReplicaReads. Sent in one
// pipeline, the WAIT follows the writes on their connection.
func (m *Manager) withWait(ctx context.Context, cmds []redis.Cmder) ([]redis.Cmder, *redis.IntCmd) {
	r := m.replica
	if r == nil {
		return cmds, nil
	}
	wait := redis.NewIntCmd(ctx, "wait", r.replicas, r.lag.Milliseconds())
	return append(slices.Clip(cmds), wait), wait
}

// acked returns nil when wait (from withWait; nil: none) saw every replica
// apply the writes before it, or an error wrapping ErrReplicaLag and
// ErrUnavailable.
func (m *Manager) acked(wait *redis.IntCmd) error {
	if wait == nil {
		return nil
	}
	n, err := wait.Result()
	switch {
	case err != nil:
		return fmt.Errorf("%w: WAIT: %w", ErrUnavailable, err)
	case n < int64(m.replica.replicas):
		return fmt.Errorf("%w: %w: %d of %d replicas within %v", ErrUnavailable, ErrReplicaLag, n, m.replica.replicas, m.replica.lag)
	}
	return nil
}
