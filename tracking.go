package cachemgr

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Server-assisted invalidation. A Manager with an L1 tier asks Redis to
// tell it about every change to the keys of its L1 caches, whoever makes
// it: CLIENT TRACKING in broadcast mode (BCAST) with one PREFIX per L1
// cache ("prefix:name:"). Redis then sends the name of every key under those
// prefixes that is written, deleted, expired or evicted, and a null key list
// for FLUSHALL and FLUSHDB, which drop everything.
//
// Each tracking connection is a dedicated RESP2 connection that enables
// tracking with REDIRECT to itself and then subscribes to
// __redis__:invalidate, where Redis publishes the invalidations of RESP2
// clients. Tracking lives and dies with the connection that receives its
// messages, so there is no second connection whose loss would go unseen;
// go-redis parses these messages (Message.PayloadSlice), reconnects a failed
// subscription and runs OnConnect on every new connection, which
// re-enables tracking before it resubscribes. RESP3 push would need the
// client's own push-notification processor on pooled connections, which
// go-redis reserves for its ClientSideCache and maintenance notifications.
//
// A tracking connection is a source of the L1 tier's trust, like the event
// subscription (events.go): while any is down or silent beyond the liveness
// bound, L1 tiers are neither read nor filled, and every (re)subscription
// flushes them. Invalidations drop entries through l1Store.remove, so the
// late-fill protection of l1Store covers them: a GET that was in flight when
// the key changed does not fill L1 with the old value.
//
// One tracking connection runs per Redis that holds keys: the node of a
// *redis.Client (through Sentinel for a failover client: a connection
// re-established after a failover dials the master Sentinel names), each
// master of a Cluster (found again every liveness period, so new masters are
// tracked and removed ones dropped) and each shard of a Ring. Other
// UniversalClient implementations get no tracking: events only.

// trackingChannel is where Redis publishes invalidations for RESP2
// clients that redirect tracking to a subscribed connection.
const trackingChannel = "__redis__:invalidate"

// trackers are the Manager's tracking connections.
type trackers struct {
	once     sync.Once
	messages atomic.Uint64 // tracking messages received, for tests
	mu       sync.Mutex
	nodes    map[string]*trackNode // by address
}

// trackNode is one tracking connection, to the node at addr.
type trackNode struct {
	source string
	client *redis.Client
	ctx    context.Context
	cancel context.CancelFunc

	// unsupported is set when the node refused to enable tracking (Redis
	// before 6, or a server without it): events only, for that node.
	unsupported atomic.Bool

	mu      sync.Mutex
	ps      *redis.PubSub
	stopped bool // track returned: n is no source any more
}

// startTracking starts the tracking connections, once; the first L1 cache
// does.
func (m *Manager) startTracking() {
	m.ev.tr.once.Do(func() {
		switch cl := m.client.(type) {
		case *redis.Client:
			m.reconcileTracking(map[string]*redis.Options{cl.Options().Addr: cl.Options()})
		case *redis.ClusterClient:
			m.superviseTracking(func(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
				return cl.ForEachMaster(ctx, fn)
			})
		case *redis.Ring:
			m.superviseTracking(cl.ForEachShard)
		}
	})
}

// superviseTracking keeps one tracking connection per node that each
// lists, checking every liveness period. Until the first list, the L1 tier
// stays untrusted.
func (m *Manager) superviseTracking(each func(context.Context, func(context.Context, *redis.Client) error) error) {
	const first = "tracking (nodes not listed yet)"
	m.sourceDown(first, "", nil)
	m.goTracked(func() {
		for listed := false; ; {
			ctx, cancel := context.WithTimeout(m.ctx, m.liveness)
			var mu sync.Mutex
			nodes := map[string]*redis.Options{}
			err := each(ctx, func(_ context.Context, c *redis.Client) error {
				mu.Lock()
				defer mu.Unlock()
				nodes[c.Options().Addr] = c.Options()
				return nil
			})
			cancel()
			if err == nil && len(nodes) > 0 {
				m.reconcileTracking(nodes)
				if !listed {
					listed = true
					m.sourceUp(first, false)
				}
			}
			pause(m.ctx, m.liveness)
			if m.ctx.Err() != nil {
				return
			}
		}
	})
}

// reconcileTracking starts a tracking connection to every node of nodes
// that has none and stops those to nodes no longer listed.
func (m *Manager) reconcileTracking(nodes map[string]*redis.Options) {
	tr := &m.ev.tr
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if m.ctx.Err() != nil {
		return
	}
	if tr.nodes == nil {
		tr.nodes = map[string]*trackNode{}
	}
	for addr, n := range tr.nodes {
		if _, ok := nodes[addr]; !ok {
			n.cancel()
			delete(tr.nodes, addr)
			m.sourceGone(n.source)
		}
	}
	for addr, opt := range nodes {
		if _, ok := tr.nodes[addr]; ok {
			continue
		}
		n := &trackNode{source: "tracking " + addr}
		n.ctx, n.cancel = context.WithCancel(m.ctx)
		n.client = redis.NewClient(m.trackingOptions(opt, n))
		tr.nodes[addr] = n
		m.sourceDown(n.source, "", nil)
		m.goTracked(func() { m.track(n) })
	}
}

// trackingOptions returns the options of n's connection to the node of
// opt: the same node, credentials and TLS, on RESP2, without the
// client-side features that need RESP3, enabling tracking on connect. A
// node that refuses tracking stops n.
func (m *Manager) trackingOptions(opt *redis.Options, n *trackNode) *redis.Options {
	o := *opt
	o.Protocol = 2
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns = 1, 0, 0
	o.ClientSideCache, o.ClientSideCacheConfig = nil, nil
	o.PushNotificationProcessor = nil
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	user := opt.OnConnect
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if user != nil {
			if err := user(ctx, cn); err != nil {
				return err
			}
		}
		id, err := cn.ClientID(ctx).Result()
		if err == nil {
			args := []any{"client", "tracking", "on", "redirect", id, "bcast"}
			for _, p := range m.trackedPrefixes() {
				args = append(args, "prefix", p)
			}
			err = cn.Do(ctx, args...).Err()
		}
		if err != nil && isReply(err) {
			n.unsupported.Store(true)
			n.cancel()
		}
		return err
	}
	return &o
}

// trackedPrefixes returns the key base of every L1 cache.
func (m *Manager) trackedPrefixes() []string {
	var out []string
	for _, h := range m.holdersOf("") {
		if !slices.Contains(out, h.keyBase()) {
			out = append(out, h.keyBase())
		}
	}
	return out
}

// track receives n's invalidations until n is stopped, subscribing again
// whenever the subscription is lost or silent.
func (m *Manager) track(n *trackNode) {
	defer n.client.Close()
	defer n.closeSubscription()
	defer func() {
		n.mu.Lock()
		n.stopped = true
		n.mu.Unlock()
		if n.unsupported.Load() && m.ctx.Err() == nil {
			m.logger.Info("cachemgr: Redis refused CLIENT TRACKING; L1 tiers learn of changes from cachemgr's events only", "node", n.source)
			m.sourceGone(n.source)
		}
	}()
	subscribed := false
	for {
		n.mu.Lock()
		if n.ctx.Err() != nil {
			n.mu.Unlock()
			return
		}
		n.ps = n.client.Subscribe(n.ctx, trackingChannel)
		ps := n.ps
		n.mu.Unlock()
		if !m.receiveWhileAlive(n.ctx, ps, n.source, &subscribed, m.invalidatedByRedis) {
			return
		}
		n.closeSubscription()
		pause(n.ctx, 50*time.Millisecond)
	}
}

func (n *trackNode) closeSubscription() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ps != nil {
		n.ps.Close()
		n.ps = nil
	}
}

// retrack makes every tracking connection enable tracking again, with the
// current prefixes: a cache with an L1 tier was added.
func (m *Manager) retrack() {
	tr := &m.ev.tr
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, n := range tr.nodes {
		n.mu.Lock()
		if !n.stopped {
			m.sourceDown(n.source, "", nil)
			if n.ps != nil {
				n.ps.Close()
				n.ps = nil
			}
		}
		n.mu.Unlock()
	}
}

// invalidatedByRedis applies one tracking message: the keys Redis saw
// change, or none for a flush of the whole database.
func (m *Manager) invalidatedByRedis(msg *redis.Message) {
	if msg.Channel != trackingChannel {
		return
	}
	m.ev.tr.messages.Add(1)
	holders := m.holdersOf("")
	if len(msg.PayloadSlice) == 0 {
		// FLUSHALL, FLUSHDB, or tracking was reset.
		for _, h := range holders {
			h.dropAll()
		}
		return
	}
	for _, rkey := range msg.PayloadSlice {
		for _, h := range holders {
			rest, ok := strings.CutPrefix(rkey, h.keyBase())
			if !ok {
				continue
			}
			switch key, kind := keys.UserKey(rest); kind {
			case keys.Plain:
				h.dropKeys([]string{key})
			case keys.Hashed:
				h.dropPrefix(key)
			case keys.Namespace:
				h.dropAll()
			}
		}
	}
}

// isFlushMessage reports whether err is go-redis's report of a pub/sub
// message with a null payload, which only a tracking message for a flush
// of the whole database has.
func isFlushMessage(err error) bool {
	return err != nil && strings.HasSuffix(err.Error(), "unsupported pubsub message payload: <nil>")
}

// keyBase returns "prefix:name:", the start of every key of the cache.
func (c *Cache[T]) keyBase() string { return c.keys.Base() }
