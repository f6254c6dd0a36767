package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cachemgr/cachemgr"
)

// product is what the fake repository stores: a catalogue entry of about
// 400 bytes once encoded with msgpack.
type product struct {
	ID          int64             `msgpack:"id"`
	SKU         string            `msgpack:"sku"`
	Name        string            `msgpack:"name"`
	Description string            `msgpack:"description"`
	PriceCents  int64             `msgpack:"price_cents"`
	Currency    string            `msgpack:"currency"`
	Stock       int               `msgpack:"stock"`
	Tags        []string          `msgpack:"tags"`
	Attributes  map[string]string `msgpack:"attributes"`
	UpdatedAt   time.Time         `msgpack:"updated_at"`
}

// repository is the slow database the cache sits in front of. Every call
// takes latency and is counted. One id in a hundred does not exist.
type repository struct {
	latency time.Duration
	calls   atomic.Uint64
}

// product loads the product with the given id. An id that is a multiple
// of 100 has no product and returns an error wrapping cachemgr.ErrNotFound,
// which Fetch caches as a negative entry.
func (r *repository) product(ctx context.Context, id int64) (product, error) {
	r.calls.Add(1)
	// The simulated query: it gives up when the caller (or, under Fetch, the
	// Manager's load timeout or Close) cancels it, as a real driver would.
	t := time.NewTimer(r.latency)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return product{}, context.Cause(ctx)
	}
	if id%100 == 0 {
		return product{}, fmt.Errorf("product %d: %w", id, cachemgr.ErrNotFound)
	}
	return makeProduct(id), nil
}

// makeProduct builds the product with the given id deterministically, so
// that every load of an id returns the same value.
func makeProduct(id int64) product {
	adjectives := [...]string{"Compact", "Rugged", "Classic", "Wireless", "Ergonomic", "Premium", "Foldable", "Quiet"}
	nouns := [...]string{"Kettle", "Backpack", "Desk Lamp", "Headphones", "Chair", "Blender", "Tent", "Keyboard"}
	colours := [...]string{"black", "white", "graphite", "forest green", "navy", "sand"}
	materials := [...]string{"aluminium", "recycled polyester", "oak", "stainless steel", "ABS plastic"}
	categories := [...]string{"kitchen", "outdoor", "office", "audio", "home"}

	u := uint64(id)
	adj, noun := adjectives[u%uint64(len(adjectives))], nouns[u/8%uint64(len(nouns))]
	colour, material := colours[u%uint64(len(colours))], materials[u%uint64(len(materials))]
	category := categories[u/3%uint64(len(categories))]
	name := fmt.Sprintf("%s %s %d", adj, noun, id)
	return product{
		ID:   id,
		SKU:  fmt.Sprintf("SKU-%08d", id),
		Name: name,
		Description: fmt.Sprintf("The %s is built from %s and finished in %s. "+
			"It is made to last for years of daily use, ships in recyclable packaging "+
			"and is covered by a %d-year warranty.", name, material, colour, 1+u%3),
		PriceCents: int64(499 + (u*7919)%50000),
		Currency:   "EUR",
		Stock:      int(u*31) % 250,
		Tags:       []string{category, strings.ToLower(adj), colour},
		Attributes: map[string]string{
			"colour":   colour,
			"material": material,
			"weight":   fmt.Sprintf("%d g", 150+u*37%4000),
			"origin":   [...]string{"PT", "DE", "VN", "MX"}[u%4],
		},
		UpdatedAt: time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(u) * time.Hour),
	}
}
