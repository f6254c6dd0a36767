package coherence_test

import (
	"fmt"
	"time"

	"github.com/cachemgr/cachemgr/internal/coherence"
)

// A writer updates row k to version 2 and deletes it from the cache. A
// process without L1 then reads version 1: a stale read. A process with L1
// reads version 1 from its L1 tier 5ms after the Delete returned, before
// its event arrived: tolerated within the delivery bound.
func ExampleCheck() {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	history := []coherence.Record{
		{Kind: coherence.KindUpdate, Proc: "w", Strategy: "delete", Key: "k", Start: ms(1), End: ms(2), Version: 2},
		{Kind: coherence.KindInvalidate, Proc: "w", Strategy: "delete", Op: "Delete", Keys: []string{"k"}, Start: ms(3), End: ms(4), ID: 1, Sent: 1},
		{Kind: coherence.KindRead, Proc: "r", Strategy: "delete", Key: "k", Op: "Get", Tier: coherence.TierRedis, Start: ms(6), End: ms(7), Version: 1},
		{Kind: coherence.KindRead, Proc: "l", L1: true, Strategy: "delete", Key: "k", Op: "Get", Tier: coherence.TierL1, Start: ms(9), End: ms(9), Version: 1},
		{Kind: coherence.KindEvent, Proc: "l", L1: true, ID: 1, Start: ms(10)},
	}
	rep := coherence.Check(history, coherence.Bounds{Delivery: 100 * time.Millisecond, Liveness: time.Second})
	r := rep.Strategy("delete")
	fmt.Printf("checked %d, stale %d (worst %v), L1 tolerated %d (worst %v)\n", r.Checked, r.Stale, r.Worst, r.Tolerated, r.WorstTolerated)
	fmt.Println(r.Examples[0])
	// Output:
	// checked 2, stale 1 (worst 2ms), L1 tolerated 1 (worst 5ms)
	// stale: r Get(redis) "k" at +5ms saw v1; Delete by w of v2 returned 2ms before
}
