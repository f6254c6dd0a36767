package codectest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cachemgr/cachemgr/codectest"
)

// Product stands for a type of your own; measure the real one.
type Product struct {
	ID    int64    `json:"id" msgpack:"id"`
	Name  string   `json:"name" msgpack:"name"`
	Price float64  `json:"price" msgpack:"price"`
	Tags  []string `json:"tags" msgpack:"tags"`
}

// ExampleMeasure compares codecs and compressions for a page of products.
// StoredBytes has what cachemgr stored, header included; the timings (left
// out here, as they vary from run to run) are in Encode, Decode and
// RoundTrip, and Report.WriteText prints them all as a table.
func ExampleMeasure() {
	page := make([]Product, 30)
	for i := range page {
		page[i] = Product{ID: int64(i), Name: fmt.Sprintf("Compact Kettle %d", i), Price: 19.95, Tags: []string{"kitchen", "sale"}}
	}
	rep, err := codectest.Measure(context.Background(), page, codectest.Runs(3), codectest.BlockTime(5*time.Millisecond))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Type)
	for _, r := range rep.Results {
		fmt.Printf("%s+%s: %d B encoded, compressed %t, smallest stored %t\n", r.Codec, r.Compression, r.EncodedBytes, r.Compressed, r.Smallest)
	}
	for _, s := range rep.Skipped {
		fmt.Println("skipped", s.Codec)
	}
	// Output:
	// []codectest_test.Product
	// msgpack+lz4: 2093 B encoded, compressed true, smallest stored true
	// msgpack+none: 2093 B encoded, compressed false, smallest stored false
	// json+lz4: 2291 B encoded, compressed true, smallest stored false
	// json+none: 2291 B encoded, compressed false, smallest stored false
	// skipped raw
}
