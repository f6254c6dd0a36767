package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// product is the small sample: one catalogue entry, about 200 bytes of JSON.
type product struct {
	ID        int64     `json:"id"`
	SKU       string    `json:"sku"`
	Name      string    `json:"name"`
	Brand     string    `json:"brand"`
	Price     float64   `json:"price"`
	Currency  string    `json:"currency"`
	Stock     int       `json:"stock"`
	Active    bool      `json:"active"`
	Tags      []string  `json:"tags"`
	Rating    float64   `json:"rating"`
	UpdatedAt time.Time `json:"updated_at"`
}

// order is the medium sample, about 2 KiB of JSON, and the element of the
// large one.
type order struct {
	ID        string            `json:"id"`
	Number    int64             `json:"number"`
	Status    string            `json:"status"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	Customer  customer          `json:"customer"`
	Lines     []orderLine       `json:"lines"`
	Currency  string            `json:"currency"`
	Subtotal  float64           `json:"subtotal"`
	Shipping  float64           `json:"shipping"`
	Tax       float64           `json:"tax"`
	Total     float64           `json:"total"`
	Meta      map[string]string `json:"meta"`
	History   []orderEvent      `json:"history"`
}

type customer struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	Email    string   `json:"email"`
	Phone    string   `json:"phone"`
	Address  address  `json:"address"`
	Segments []string `json:"segments"`
}

type address struct {
	Street     string `json:"street"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

type orderLine struct {
	SKU       string            `json:"sku"`
	Name      string            `json:"name"`
	Quantity  int               `json:"quantity"`
	UnitPrice float64           `json:"unit_price"`
	Discount  float64           `json:"discount"`
	Options   map[string]string `json:"options,omitempty"`
}

type orderEvent struct {
	At     time.Time `json:"at"`
	Status string    `json:"status"`
	Note   string    `json:"note,omitempty"`
}

// orderPage is the large sample, about 64 KiB of JSON: one page of an
// order listing, as an API response or a precomputed report would cache it.
type orderPage struct {
	Page       int     `json:"page"`
	PerPage    int     `json:"per_page"`
	TotalCount int     `json:"total_count"`
	NextCursor string  `json:"next_cursor"`
	Orders     []order `json:"orders"`
}

// sampleGen builds the built-in samples from its own seeded source: the
// same seed always gives the same payloads, hence the same sizes.
type sampleGen struct {
	r     *rand.Rand
	epoch time.Time // anchors the timestamps, whenever the command runs
	words vocabulary
}

// vocabulary is the generated text. Real payloads repeat words and keys
// much like this, which is what gives compression something to find.
type vocabulary struct {
	adjectives, nouns, brands, categories, colours, sizes []string
	firstNames, lastNames, streets, cities, countries     []string
	segments, channels, statuses, notes                   []string
	shipping                                              []float64
}

func newSampleGen(seed uint64) *sampleGen {
	return &sampleGen{
		r:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		epoch: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC),
		words: vocabulary{
			adjectives: []string{"Compact", "Rugged", "Classic", "Wireless", "Ergonomic", "Premium", "Foldable", "Quiet", "Smart", "Vintage"},
			nouns:      []string{"Kettle", "Backpack", "Desk Lamp", "Headphones", "Office Chair", "Blender", "Tent", "Keyboard", "Water Bottle", "Monitor Arm"},
			brands:     []string{"Acme Home", "Northwind", "Globex Outdoor", "Initech Office", "Umbrella Audio"},
			categories: []string{"kitchen", "outdoor", "office", "audio", "home", "travel", "sale", "new"},
			colours:    []string{"black", "white", "graphite", "forest green", "navy", "sand"},
			sizes:      []string{"S", "M", "L", "XL"},
			firstNames: []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus"},
			lastNames:  []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Wirth"},
			streets:    []string{"Market Street", "Rue de Rivoli", "Hauptstraße", "Calle Mayor", "King's Road", "Via Roma"},
			cities:     []string{"Amsterdam", "Berlin", "Lisbon", "Paris", "Madrid", "London", "Milan", "Vienna"},
			countries:  []string{"NL", "DE", "PT", "FR", "ES", "GB", "IT", "AT"},
			segments:   []string{"vip", "newsletter", "b2b", "returning", "mobile-app", "loyalty-gold"},
			channels:   []string{"web", "ios", "android", "pos"},
			statuses:   []string{"created", "paid", "packed", "shipped", "delivered"},
			notes: []string{
				"Customer asked for delivery after 5pm.",
				"Payment captured by card; 3-D Secure passed.",
				"Split shipment: remaining items ship from the second warehouse.",
				"Gift wrap requested, no invoice in the parcel.",
				"",
			},
			shipping: []float64{0, 4.95, 9.95},
		},
	}
}

func pick[T any](g *sampleGen, from []T) T { return from[g.r.IntN(len(from))] }

// money returns an amount in [lo, hi) rounded to cents.
func (g *sampleGen) money(lo, hi float64) float64 {
	return math.Round((lo+g.r.Float64()*(hi-lo))*100) / 100
}

// at returns a time within days of epoch, with millisecond precision as
// most databases and APIs give it.
func (g *sampleGen) at(days int) time.Time {
	return g.epoch.Add(time.Duration(g.r.Int64N(int64(days) * int64(24*time.Hour))).Truncate(time.Millisecond))
}

func (g *sampleGen) product() product {
	id := 10_000 + g.r.Int64N(90_000)
	tags := make([]string, 1+g.r.IntN(3))
	for i := range tags {
		tags[i] = pick(g, g.words.categories)
	}
	return product{
		ID:        id,
		SKU:       fmt.Sprintf("SKU-%06d", id),
		Name:      pick(g, g.words.adjectives) + " " + pick(g, g.words.nouns),
		Brand:     pick(g, g.words.brands),
		Price:     g.money(5, 400),
		Currency:  "EUR",
		Stock:     g.r.IntN(500),
		Active:    g.r.IntN(10) > 0,
		Tags:      tags,
		Rating:    float64(30+g.r.IntN(21)) / 10,
		UpdatedAt: g.at(30),
	}
}

func (g *sampleGen) customer() customer {
	first, last := pick(g, g.words.firstNames), pick(g, g.words.lastNames)
	segs := make([]string, g.r.IntN(3))
	for i := range segs {
		segs[i] = pick(g, g.words.segments)
	}
	i := g.r.IntN(len(g.words.cities))
	return customer{
		ID:    1 + g.r.Int64N(5_000_000),
		Name:  first + " " + last,
		Email: fmt.Sprintf("%s.%s%d@example.com", strings.ToLower(first), strings.ToLower(last), g.r.IntN(100)),
		Phone: fmt.Sprintf("+31 6 %04d %04d", g.r.IntN(10_000), g.r.IntN(10_000)),
		Address: address{
			Street:     fmt.Sprintf("%s %d", pick(g, g.words.streets), 1+g.r.IntN(300)),
			City:       g.words.cities[i],
			PostalCode: fmt.Sprintf("%05d", g.r.IntN(100_000)),
			Country:    g.words.countries[i],
		},
		Segments: segs,
	}
}

// order returns an order of n lines.
func (g *sampleGen) order(n int) order {
	created := g.at(60)
	o := order{
		ID:        fmt.Sprintf("ord_%016x", g.r.Uint64()),
		Number:    100_000 + g.r.Int64N(900_000),
		CreatedAt: created,
		Customer:  g.customer(),
		Currency:  "EUR",
		Meta: map[string]string{
			"channel":  pick(g, g.words.channels),
			"campaign": fmt.Sprintf("spring-%02d", g.r.IntN(20)),
			"ip":       fmt.Sprintf("203.0.113.%d", g.r.IntN(256)),
		},
	}
	for range n {
		p := g.product()
		l := orderLine{
			SKU:       p.SKU,
			Name:      p.Name,
			Quantity:  1 + g.r.IntN(4),
			UnitPrice: p.Price,
		}
		if g.r.IntN(4) == 0 {
			l.Discount = math.Round(l.UnitPrice*10) / 100
		}
		if g.r.IntN(2) == 0 {
			l.Options = map[string]string{"colour": pick(g, g.words.colours), "size": pick(g, g.words.sizes)}
		}
		o.Lines = append(o.Lines, l)
		o.Subtotal += float64(l.Quantity)*l.UnitPrice - l.Discount
	}
	o.Subtotal = math.Round(o.Subtotal*100) / 100
	o.Shipping = pick(g, g.words.shipping)
	o.Tax = math.Round(o.Subtotal*21) / 100
	o.Total = math.Round((o.Subtotal+o.Shipping+o.Tax)*100) / 100
	t := created
	for _, s := range g.words.statuses[:1+g.r.IntN(len(g.words.statuses))] {
		o.History = append(o.History, orderEvent{At: t, Status: s, Note: pick(g, g.words.notes)})
		t = t.Add(time.Duration(1+g.r.IntN(48)) * time.Hour)
	}
	o.Status = o.History[len(o.History)-1].Status
	o.UpdatedAt = o.History[len(o.History)-1].At
	return o
}

func (g *sampleGen) orderPage(orders int) orderPage {
	p := orderPage{Page: 3, PerPage: orders, TotalCount: 1_000 + g.r.IntN(50_000)}
	for range orders {
		p.Orders = append(p.Orders, g.order(2+g.r.IntN(5)))
	}
	p.NextCursor = fmt.Sprintf("c_%016x%016x", g.r.Uint64(), g.r.Uint64())
	return p
}

// sampleNames are the names of the built-in samples, in order.
var sampleNames = []string{"small", "medium", "large"}

// samples returns the built-in payloads: a product (about 200 B as JSON),
// an order (about 2 KiB) and a page of orders (about 64 KiB), each
// measured as its Go struct type.
func samples() []payload {
	g := newSampleGen(1)
	return []payload{
		typed("small", "one catalogue product", g.product()),
		typed("medium", "an order of 10 lines with its customer", g.order(10)),
		typed("large", "a page of 50 orders", g.orderPage(50)),
	}
}
