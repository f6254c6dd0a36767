package cachemgr

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Invalidation events travel on one classic pub/sub channel per prefix,
// "prefix:~events". Classic, not sharded, pub/sub: on a Cluster a PUBLISH
// reaches subscribers on every node, so one subscription per Manager is
// enough wherever the Redis is. Delivery is at most once: when the
// subscription drops, the Manager stops trusting its L1 tier, and flushes
// it once it is subscribed again, since it cannot know what it missed.

// WithEvents makes the Manager publish an invalidation event for every
// Set, Delete, Bump and InvalidateTags, so that the L1 tiers of other
// processes drop what changed. A Manager with an L1 tier always does; a
// process that writes without an L1 tier of its own needs WithEvents(true)
// whenever other processes run one. Default: false (true with WithL1).
func WithEvents(on bool) Option {
	return func(c *config) error {
		c.events = on
		return nil
	}
}

// event is one message on the channel, JSON-encoded.
type event struct {
	Origin string          `json:"o"`
	Kind   string          `json:"k"` // "key", "version", "tags", "prefix" or "user"
	Cache  string          `json:"c,omitempty"`
	Keys   []string        `json:"ks,omitempty"`
	Prefix string          `json:"p,omitempty"`
	Tags   []string        `json:"t,omitempty"`
	Topic  string          `json:"tp,omitempty"`
	Data   json.RawMessage `json:"d,omitempty"`
}

// l1Holder is a cache with an L1 tier, as the event listener sees it.
type l1Holder interface {
	dropKeys(keys []string)
	dropAll()
	dropTags(tags []string)
	dropPrefix(prefix string)
	keyBase() string
}

// events is the Manager's pub/sub side.
type events struct {
	channel string
	id      string      // this Manager's origin id; its own events are ignored
	enabled atomic.Bool // publish invalidation events
	once    sync.Once
	tr      trackers

	// down holds the sources of invalidations (the subscription, tracking
	// connections) that are not up; the L1 tier is trusted only while it is
	// empty.
	trustMu sync.Mutex
	down    map[string]bool

	// fills holds the channels of lease waits (see fillWaiter), by data key.
	fills sync.Map

	mu       sync.Mutex
	ps       *redis.PubSub // the current subscription
	holders  []l1Holder
	handlers map[string][]*handler
}

type handler struct {
	fn func(context.Context, json.RawMessage) error
}

func newEvents(prefix string) *events {
	ch := "~events"
	if prefix != "" {
		ch = prefix + ":" + ch
	}
	return &events{channel: ch, id: rand.Text(), handlers: map[string][]*handler{}, down: map[string]bool{}}
}

// WithEventsLiveness bounds how long the Manager trusts its L1 tier
// without proof that its event subscription is alive. The listener pings
// the subscription four times per d; when nothing at all (event, reply,
// confirmation) has arrived for d, the connection is taken for dead even
// if it was never closed (a half-open TCP connection, a stalled proxy):
// the L1 tier stops serving at once, and is flushed when a new subscription
// is up. It bounds how long a silently lost invalidation can be served,
// independently of the L1 TTL. Default: 1s.
func WithEventsLiveness(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond || d > time.Minute {
			return fmt.Errorf("%w: events liveness %v outside [10ms, 1m]", ErrInvalidOption, d)
		}
		c.liveness = d
		return nil
	}
}

// eventsSource names the event subscription among the L1 tier's sources.
const eventsSource = "event subscription"

// startEvents starts the listener, once.
func (m *Manager) startEvents() {
	m.ev.once.Do(func() {
		m.sourceDown(eventsSource, "", nil)
		m.goTracked(m.listen)
	})
}

// subscribe opens a new subscription, unless the Manager is closing; the
// Manager's Close closes it.
func (m *Manager) subscribe() *redis.PubSub {
	m.ev.mu.Lock()
	defer m.ev.mu.Unlock()
	if m.ctx.Err() != nil {
		return nil
	}
	m.ev.ps = m.client.Subscribe(m.ctx, m.ev.channel)
	return m.ev.ps
}

// closeSubscription closes the current subscription, if any.
func (m *Manager) closeSubscription() {
	m.ev.mu.Lock()
	defer m.ev.mu.Unlock()
	if m.ev.ps != nil {
		m.ev.ps.Close()
		m.ev.ps = nil
	}
}

// sourceDown marks source as down: L1 reads and fills stop until every
// source is up again, and the L1 tiers are flushed, since their entries
// can no longer be invalidated. why and err are logged, unless why is
// empty.
func (m *Manager) sourceDown(source, why string, err error) {
	m.ev.trustMu.Lock()
	defer m.ev.trustMu.Unlock()
	m.ev.down[source] = true
	if m.l1Trusted.Swap(false) {
		m.flushL1()
		if why != "" {
			m.logError(source+" "+why+"; L1 tier off until it is back", err)
		}
	}
}

// sourceUp marks source as up, having (re)subscribed, and flushes the L1
// tier when flush is set, since what it missed is unknown; the tier is
// trusted again once every source is up.
func (m *Manager) sourceUp(source string, flush bool) {
	m.ev.trustMu.Lock()
	defer m.ev.trustMu.Unlock()
	delete(m.ev.down, source)
	if flush {
		m.flushL1()
	}
	m.l1Trusted.Store(len(m.ev.down) == 0)
}

// sourceGone forgets source: its node no longer holds keys.
func (m *Manager) sourceGone(source string) { m.sourceUp(source, false) }

// listen receives events until Close, on subscriptions it opens itself.
// go-redis reconnects and resubscribes a subscription whose connection
// failed; one that went silent is closed here and replaced. Each loss
// makes the L1 untrusted; each (re)subscription flushes it.
func (m *Manager) listen() {
	defer m.closeSubscription()
	subscribed := false
	for {
		ps := m.subscribe()
		if ps == nil {
			return
		}
		if !m.receiveWhileAlive(m.ctx, ps, eventsSource, &subscribed, m.receiveMessage) {
			return
		}
		m.closeSubscription()
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-t.C:
		case <-m.ctx.Done():
			t.Stop()
			return
		}
	}
}

// receiveWhileAlive handles what ps, the subscription of source, delivers,
// pinging it, until it has been silent for the liveness bound; on passes
// each message. It reports false when ctx ended.
func (m *Manager) receiveWhileAlive(ctx context.Context, ps *redis.PubSub, source string, subscribed *bool, on func(*redis.Message)) bool {
	tick := m.liveness / 4
	alive := monotonic()
	var pinged time.Time
	for {
		if time.Since(pinged) >= tick {
			pinged = monotonic()
			// An error shows in Receive; a ping into a dead connection
			// shows as silence.
			_ = ps.Ping(ctx)
		}
		msg, err := ps.ReceiveTimeout(ctx, tick)
		switch {
		case ctx.Err() != nil:
			return false
		case errors.Is(err, redis.ErrClosed):
			m.sourceDown(source, "", nil) // closed to be replaced
			return true
		case isFlushMessage(err):
			// A tracking message with a null key list: FLUSHALL or
			// FLUSHDB. go-redis reports it as an error, having read it.
			alive = monotonic()
			on(&redis.Message{Channel: trackingChannel})
		case err != nil && time.Since(alive) > m.liveness:
			m.stats.livenessLost.Add(1)
			m.sourceDown(source, "silent for longer than the liveness bound", err)
			return true
		case err != nil:
			if !isTimeout(err) {
				// A failed connection: go-redis reconnects on the next
				// Receive; what was sent meanwhile is lost.
				m.sourceDown(source, "lost", err)
				pause(ctx, 50*time.Millisecond)
			}
		default:
			alive = monotonic()
			m.deliver(msg, source, subscribed, on)
		}
	}
}

// deliver handles msg, from the subscription of source: the confirmation
// of the subscription marks the source up (a resync when it had been
// subscribed before), and a message goes to on.
func (m *Manager) deliver(msg any, source string, subscribed *bool, on func(*redis.Message)) {
	switch msg := msg.(type) {
	case *redis.Subscription:
		if msg.Kind != "subscribe" {
			return
		}
		if *subscribed {
			m.stats.resyncs.Add(1)
		}
		m.sourceUp(source, true)
		*subscribed = true
	case *redis.Message:
		on(msg)
	}
}

// isTimeout reports whether err is a read that timed out.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// receiveMessage applies one message of the event channel.
func (m *Manager) receiveMessage(msg *redis.Message) { m.receive(msg.Payload) }

// receive applies one event from another Manager.
func (m *Manager) receive(payload string) {
	var e event
	if err := json.Unmarshal([]byte(payload), &e); err != nil || e.Origin == "" || e.Kind == "" {
		m.stats.badEvents.Add(1)
		return
	}
	if e.Origin == m.ev.id {
		return
	}
	switch e.Kind {
	case "filled":
		m.filled(e.Keys)
	case "key", "version", "prefix":
		m.stats.eventsReceived.Add(1)
		for _, h := range m.holdersOf(e.Cache) {
			e.drop(h)
		}
	case "tags":
		m.stats.eventsReceived.Add(1)
		for _, h := range m.holdersOf("") {
			h.dropTags(e.Tags)
		}
	case "user":
		m.stats.eventsReceived.Add(1)
		m.runHandlers(e.Topic, e.Data)
	default:
		m.stats.badEvents.Add(1)
	}
}

// drop drops from h what a "key", "version" or "prefix" event retires.
func (e *event) drop(h l1Holder) {
	switch e.Kind {
	case "key":
		h.dropKeys(e.Keys)
	case "prefix":
		h.dropPrefix(e.Prefix)
	default:
		h.dropAll()
	}
}

// runHandlers runs the handlers of topic (Handle) on a user event's data.
func (m *Manager) runHandlers(topic string, data json.RawMessage) {
	m.ev.mu.Lock()
	hs := append([]*handler(nil), m.ev.handlers[topic]...)
	m.ev.mu.Unlock()
	for _, h := range hs {
		if err := h.fn(m.ctx, data); err != nil {
			m.stats.badEvents.Add(1)
			m.logError("event handler", err, "topic", topic)
		}
	}
}

// holdersOf returns the L1 holders of cache name, or all of them for "".
func (m *Manager) holdersOf(name string) []l1Holder {
	m.ev.mu.Lock()
	defer m.ev.mu.Unlock()
	if name == "" {
		return append([]l1Holder(nil), m.ev.holders...)
	}
	var out []l1Holder
	for _, h := range m.ev.holders {
		if c, ok := h.(interface{ Name() string }); ok && c.Name() == name {
			out = append(out, h)
		}
	}
	return out
}

// addHolder registers a cache with an L1 tier: the Manager publishes
// events from now on, listens to them, and tracks the cache's keys.
func (m *Manager) addHolder(h l1Holder) {
	m.ev.mu.Lock()
	m.ev.holders = append(m.ev.holders, h)
	m.ev.mu.Unlock()
	m.ev.enabled.Store(true)
	m.startEvents()
	m.startTracking()
	m.retrack()
}

// flushL1 empties every cache's L1 tier.
func (m *Manager) flushL1() {
	for _, h := range m.holdersOf("") {
		h.dropAll()
	}
}

// publish sends invalidation event e to the other Managers, as a write
// (see doWrite): an event lost would leave their L1 tiers stale, so a
// failure fails the invalidation, which its caller queues for retry.
func (m *Manager) publish(ctx context.Context, e event) error {
	if !m.ev.enabled.Load() {
		return nil
	}
	return m.send(ctx, e, m.doWrite)
}

// send publishes e through do.
func (m *Manager) send(ctx context.Context, e event, do func(context.Context, ...redis.Cmder) error) error {
	e.Origin = m.ev.id
	payload, err := json.Marshal(e)
	if err != nil {
		return err
	}
	cmd := redis.NewIntCmd(ctx, "publish", m.ev.channel, payload)
	// Route it like the subscriptions, by the channel's slot: on a
	// Cluster it then reaches them without a cluster bus hop.
	cmd.SetFirstKeyPos(1)
	if err := do(ctx, cmd); err != nil {
		return err
	}
	if err := cmd.Err(); err != nil {
		return err
	}
	m.stats.eventsSent.Add(1)
	return nil
}

// Publish sends a user event of type E on topic to every Manager with the
// same prefix (this one excluded), where Handle delivers it. The event is
// JSON-encoded. Delivery is at most once: a subscriber that is
// disconnected when it is sent never sees it.
func Publish[E any](ctx context.Context, m *Manager, topic string, e E) error {
	if m.done.Load() {
		return ErrClosed
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("publish %q: %w", topic, err)
	}
	if err := m.send(ctx, event{Kind: "user", Topic: topic, Data: data}, m.doAll); err != nil {
		return fmt.Errorf("publish %q: %w", topic, err)
	}
	return nil
}

// Handle calls fn with each event of topic that other Managers Publish,
// on the Manager's listener goroutine (keep it quick), with a context that
// ends at Close. A payload that does not decode as E is counted in
// Stats().BadEvents. The returned func stops the delivery.
func Handle[E any](m *Manager, topic string, fn func(context.Context, E)) (stop func()) {
	h := &handler{fn: func(ctx context.Context, data json.RawMessage) error {
		var e E
		if err := json.Unmarshal(data, &e); err != nil {
			return err
		}
		fn(ctx, e)
		return nil
	}}
	m.ev.mu.Lock()
	m.ev.handlers[topic] = append(m.ev.handlers[topic], h)
	m.ev.mu.Unlock()
	m.startEvents()
	return func() {
		m.ev.mu.Lock()
		defer m.ev.mu.Unlock()
		hs := m.ev.handlers[topic]
		for i, x := range hs {
			if x == h {
				m.ev.handlers[topic] = append(hs[:i:i], hs[i+1:]...)
				return
			}
		}
	}
}
