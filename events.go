package cachemgr

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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
	Kind   string          `json:"k"` // "key", "version", "tags" or "user"
	Cache  string          `json:"c,omitempty"`
	Keys   []string        `json:"ks,omitempty"`
	Tags   []string        `json:"t,omitempty"`
	Topic  string          `json:"tp,omitempty"`
	Data   json.RawMessage `json:"d,omitempty"`
}

// l1Holder is a cache with an L1 tier, as the event listener sees it.
type l1Holder interface {
	dropKeys(keys []string)
	dropAll()
	dropTags(tags []string)
}

// events is the Manager's pub/sub side.
type events struct {
	channel string
	id      string // this Manager's origin id; its own events are ignored
	enabled bool   // publish invalidation events
	once    sync.Once
	ps      *redis.PubSub

	mu       sync.Mutex
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
	return &events{channel: ch, id: rand.Text(), handlers: map[string][]*handler{}}
}

// startEvents subscribes to the channel and starts the listener, once.
func (m *Manager) startEvents() {
	m.ev.once.Do(func() {
		ps := m.client.Subscribe(m.ctx, m.ev.channel)
		m.ev.ps = ps
		if !m.goTracked(func() { m.listen(ps) }) {
			ps.Close()
		}
	})
}

// listen receives events until Close. go-redis reconnects and resubscribes
// on its own; each drop makes the L1 untrusted, each (re)subscription
// after the first flushes it.
func (m *Manager) listen(ps *redis.PubSub) {
	subscribed := false
	for {
		msg, err := ps.Receive(m.ctx)
		if err != nil {
			if m.ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
				return
			}
			if m.l1Trusted.Swap(false) {
				m.logError("event subscription lost; L1 tier off until it is back", err)
			}
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-t.C:
			case <-m.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		switch msg := msg.(type) {
		case *redis.Subscription:
			if msg.Kind != "subscribe" {
				continue
			}
			if subscribed {
				m.stats.resyncs.Add(1)
			}
			m.flushL1()
			subscribed = true
			m.l1Trusted.Store(true)
		case *redis.Message:
			m.receive(msg.Payload)
		}
	}
}

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
	case "key", "version", "tags", "user":
		m.stats.eventsReceived.Add(1)
	default:
		m.stats.badEvents.Add(1)
		return
	}
	switch e.Kind {
	case "key", "version":
		for _, h := range m.holdersOf(e.Cache) {
			if e.Kind == "key" {
				h.dropKeys(e.Keys)
			} else {
				h.dropAll()
			}
		}
	case "tags":
		for _, h := range m.holdersOf("") {
			h.dropTags(e.Tags)
		}
	case "user":
		m.ev.mu.Lock()
		hs := append([]*handler(nil), m.ev.handlers[e.Topic]...)
		m.ev.mu.Unlock()
		for _, h := range hs {
			if err := h.fn(m.ctx, e.Data); err != nil {
				m.stats.badEvents.Add(1)
				m.logError("event handler", err, "topic", e.Topic)
			}
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

func (m *Manager) addHolder(h l1Holder) {
	m.ev.mu.Lock()
	defer m.ev.mu.Unlock()
	m.ev.holders = append(m.ev.holders, h)
}

// flushL1 empties every cache's L1 tier.
func (m *Manager) flushL1() {
	for _, h := range m.holdersOf("") {
		h.dropAll()
	}
}

// publish sends e to the other Managers. A failure is logged, not
// returned: the invalidation itself is done in Redis, and other processes'
// L1 entries expire by the L1 TTL.
func (m *Manager) publish(ctx context.Context, e event) {
	if !m.ev.enabled {
		return
	}
	if err := m.send(ctx, e); err != nil && !errors.Is(err, ErrClosed) {
		m.logError("publish invalidation event", err, "kind", e.Kind)
	}
}

func (m *Manager) send(ctx context.Context, e event) error {
	e.Origin = m.ev.id
	payload, err := json.Marshal(e)
	if err != nil {
		return err
	}
	cmd := redis.NewIntCmd(ctx, "publish", m.ev.channel, payload)
	if err := m.do(ctx, cmd); err != nil {
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
	if err := m.send(ctx, event{Kind: "user", Topic: topic, Data: data}); err != nil {
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
