package main

import (
	"math/rand/v2"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Item is the value every library caches: a product record whose msgpack
// encoding is about 1 KiB (see itemSize), mostly text as real records are.
type Item struct {
	ID          int64
	SKU         string
	Name        string
	Price       float64
	Stock       int32
	Tags        []string
	Description string
	UpdatedAt   int64
}

// newItem returns the same Item on every call.
func newItem() Item {
	words := []string{"steel", "frame", "light", "blue", "outdoor", "weather", "proof",
		"handmade", "oak", "finish", "compact", "travel", "warranty", "cotton", "grip"}
	r := rand.New(rand.NewPCG(1, 2))
	var d strings.Builder
	for d.Len() < 840 {
		d.WriteString(words[r.IntN(len(words))])
		d.WriteByte(' ')
	}
	return Item{
		ID:          42,
		SKU:         "SKU-0000042-XL",
		Name:        "Compact travel frame, oak finish",
		Price:       129.95,
		Stock:       17,
		Tags:        []string{"outdoor", "travel", "sale"},
		Description: d.String(),
		UpdatedAt:   1_700_000_000,
	}
}

// itemSize returns the size of the Item as msgpack.
func itemSize() int {
	b, _ := msgpack.Marshal(newItem()) // a plain struct always encodes
	return len(b)
}
