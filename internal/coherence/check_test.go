package coherence

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ms returns a time n milliseconds into a run.
func ms(n int) int64 { return int64(n) * int64(time.Millisecond) }

// The history every case starts from: writer w (no L1) bumps row k of the
// "delete" cache to v1 and v2, deleting it after each update.
func baseHistory() []Record {
	return []Record{
		{Kind: KindUpdate, Proc: "w", Strategy: "delete", Key: "k", Start: ms(1), End: ms(2), Version: 1},
		{Kind: KindInvalidate, Proc: "w", Strategy: "delete", Op: "Delete", Keys: []string{"k"}, Start: ms(3), End: ms(4), ID: 1, Sent: 1},
		{Kind: KindUpdate, Proc: "w", Strategy: "delete", Key: "k", Start: ms(100), End: ms(101), Version: 2},
		{Kind: KindInvalidate, Proc: "w", Strategy: "delete", Op: "Delete", Keys: []string{"k"}, Start: ms(102), End: ms(110), ID: 2, Sent: 1},
	}
}

func read(proc string, l1 bool, tier string, start int, v int64) Record {
	return Record{Kind: KindRead, Proc: proc, L1: l1, Strategy: "delete", Key: "k", Op: "Get", Tier: tier,
		Start: ms(start), End: ms(start + 1), Version: v}
}

func TestCheck(t *testing.T) {
	bounds := Bounds{Delivery: 50 * time.Millisecond, Liveness: time.Second}
	tests := []struct {
		name  string
		extra []Record
		want  Result // only the counters are compared
		worst time.Duration
	}{
		{
			name:  "fresh read",
			extra: []Record{read("r", false, TierRedis, 120, 2)},
			want:  Result{Reads: 1, Checked: 1},
		},
		{
			name:  "stale read without L1",
			extra: []Record{read("r", false, TierRedis, 130, 1)},
			want:  Result{Reads: 1, Checked: 1, Stale: 1},
			worst: 20 * time.Millisecond,
		},
		{
			name:  "read began before the invalidation returned",
			extra: []Record{read("r", false, TierRedis, 105, 1)},
			want:  Result{Reads: 1, Checked: 1},
		},
		{
			name:  "first read after the first invalidation",
			extra: []Record{read("r", false, TierRedis, 5, 0)},
			want:  Result{Reads: 1, Checked: 1, Stale: 1},
			worst: time.Millisecond,
		},
		{
			name:  "read before any invalidation",
			extra: []Record{read("r", false, TierRedis, 2, 0)},
			want:  Result{Reads: 1},
		},
		{
			name:  "the oldest violated invalidation gives the staleness",
			extra: []Record{read("r", false, TierJoin, 200, 0)},
			want:  Result{Reads: 1, Checked: 1, Stale: 1},
			worst: 196 * time.Millisecond,
		},
		{
			name:  "miss and error are not judged",
			extra: []Record{read("r", false, TierRedis, 130, -1), {Kind: KindRead, Proc: "r", Strategy: "delete", Key: "k", Start: ms(130), End: ms(131), Err: "unavailable"}},
			want:  Result{Misses: 1, Errors: 1},
		},
		{
			name:  "L1 stale within the delivery bound",
			extra: []Record{read("r", true, TierL1, 150, 1)},
			want:  Result{Reads: 1, Checked: 1, Tolerated: 1},
		},
		{
			name:  "L1 stale beyond the delivery bound",
			extra: []Record{read("r", true, TierL1, 170, 1)},
			want:  Result{Reads: 1, Checked: 1, BeyondBound: 1},
			worst: 60 * time.Millisecond,
		},
		{
			name: "L1 stale after the event arrived",
			extra: []Record{
				{Kind: KindEvent, Proc: "r", L1: true, ID: 2, Start: ms(112)},
				read("r", true, TierL1, 115, 1),
			},
			want:  Result{Reads: 1, Checked: 1, AfterEvent: 1},
			worst: 5 * time.Millisecond,
		},
		{
			name: "L1 stale before the event arrived",
			extra: []Record{
				{Kind: KindEvent, Proc: "r", L1: true, ID: 2, Start: ms(140)},
				read("r", true, TierL1, 115, 1),
			},
			want: Result{Reads: 1, Checked: 1, Tolerated: 1},
		},
		{
			name: "another process's event does not count",
			extra: []Record{
				{Kind: KindEvent, Proc: "x", L1: true, ID: 2, Start: ms(112)},
				read("r", true, TierL1, 115, 1),
			},
			want: Result{Reads: 1, Checked: 1, Tolerated: 1},
		},
		{
			name: "a notice without an event sent does not count",
			extra: []Record{
				{Kind: KindInvalidate, Proc: "w", Strategy: "delete", Op: "InvalidatePrefix", Keys: []string{"k"}, Start: ms(102), End: ms(103), ID: 3},
				{Kind: KindEvent, Proc: "r", L1: true, ID: 3, Start: ms(104)},
				read("r", true, TierL1, 105, 1),
			},
			want: Result{Reads: 1, Checked: 1, Tolerated: 1},
		},
		{
			name:  "L1 stale after its own invalidation",
			extra: []Record{read("w", true, TierL1, 111, 1)},
			want:  Result{Reads: 1, Checked: 1, AfterEvent: 1},
			worst: time.Millisecond,
		},
		{
			name:  "a Redis read in an L1 process has no bound",
			extra: []Record{read("r", true, TierRedis, 111, 1)},
			want:  Result{Reads: 1, Checked: 1, Stale: 1},
			worst: time.Millisecond,
		},
		{
			name: "stalled subscription adds the liveness bound",
			extra: []Record{
				{Kind: KindStall, Proc: "r", L1: true, Start: ms(50), End: ms(2000)},
				read("r", true, TierL1, 900, 1),
			},
			want: Result{Reads: 1, Checked: 1, Tolerated: 1},
		},
		{
			name: "stalled subscription beyond the liveness bound",
			extra: []Record{
				{Kind: KindStall, Proc: "r", L1: true, Start: ms(50)},
				read("r", true, TierL1, 1200, 1),
			},
			want:  Result{Reads: 1, Checked: 1, BeyondBound: 1},
			worst: 1090 * time.Millisecond,
		},
		{
			name: "a stall that ended before the invalidation does not count",
			extra: []Record{
				{Kind: KindStall, Proc: "r", L1: true, Start: ms(10), End: ms(20)},
				read("r", true, TierL1, 900, 1),
			},
			want:  Result{Reads: 1, Checked: 1, BeyondBound: 1},
			worst: 790 * time.Millisecond,
		},
		{
			name: "an update after the invalidation began is not covered",
			extra: []Record{
				{Kind: KindUpdate, Proc: "w", Strategy: "delete", Key: "k", Start: ms(104), End: ms(105), Version: 3},
				read("r", false, TierRedis, 120, 2),
			},
			want: Result{Reads: 1, Checked: 1},
		},
		{
			name: "a failed invalidation is not judged",
			extra: []Record{
				{Kind: KindUpdate, Proc: "w", Strategy: "delete", Key: "k", Start: ms(200), End: ms(201), Version: 3},
				{Kind: KindInvalidate, Proc: "w", Strategy: "delete", Op: "Delete", Keys: []string{"k"}, Start: ms(202), End: ms(203), ID: 4, Err: "unavailable"},
				read("r", false, TierRedis, 210, 2),
			},
			want: Result{Reads: 1, Checked: 1},
		},
		{
			name: "an invalidation covers other writers' updates",
			extra: []Record{
				{Kind: KindUpdate, Proc: "v", Strategy: "delete", Key: "k", Start: ms(200), End: ms(201), Version: 3},
				{Kind: KindInvalidate, Proc: "w", Strategy: "delete", Op: "Bump", Keys: []string{"k", "j"}, Start: ms(202), End: ms(203), ID: 4, Sent: 1},
				read("r", false, TierRedis, 210, 2),
			},
			want:  Result{Reads: 1, Checked: 1, Stale: 1},
			worst: 7 * time.Millisecond,
		},
		{
			name:  "another key's value",
			extra: []Record{{Kind: KindRead, Proc: "r", Strategy: "delete", Key: "k", Got: "j", Start: ms(120), End: ms(121), Version: 2}},
			want:  Result{Reads: 1, WrongKey: 1},
		},
		{
			name:  "a version not yet written",
			extra: []Record{read("r", false, TierRedis, 120, 3)},
			want:  Result{Reads: 1, Impossible: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := Check(append(baseHistory(), tt.extra...), bounds)
			got := rep.Strategy("delete")
			if got == nil {
				t.Fatalf("Check() has no result for strategy delete: %v", rep)
			}
			tt.want.Strategy = "delete"
			tt.want.Invalidations = got.Invalidations // not under test here
			tt.want.Failed = got.Failed
			if g := counters(got); g != counters(&tt.want) {
				t.Errorf("Check() = %+v, want %+v\n%s", g, counters(&tt.want), rep)
			}
			if got.Worst != tt.worst {
				t.Errorf("Check() worst staleness = %v, want %v\n%s", got.Worst, tt.worst, rep)
			}
			if n := got.Violations(); n != len(got.Examples) && len(got.Examples) < 5 {
				t.Errorf("Check() has %d violations and %d examples, want one each", n, len(got.Examples))
			}
		})
	}
}

// counters is a Result without its durations and examples, for ==.
type counterSet struct {
	Reads, Misses, Errors, Checked, Invalidations, Failed           int
	Stale, AfterEvent, BeyondBound, Tolerated, WrongKey, Impossible int
}

func counters(r *Result) counterSet {
	return counterSet{r.Reads, r.Misses, r.Errors, r.Checked, r.Invalidations, r.Failed,
		r.Stale, r.AfterEvent, r.BeyondBound, r.Tolerated, r.WrongKey, r.Impossible}
}

func TestCheckCountsInvalidationsAndDelivery(t *testing.T) {
	recs := append(baseHistory(),
		Record{Kind: KindInvalidate, Proc: "w", Strategy: "delete", Op: "Delete", Keys: []string{"k"}, Start: ms(200), End: ms(201), ID: 3, Err: "unavailable"},
		Record{Kind: KindEvent, Proc: "r", ID: 1, Start: ms(6)},
		Record{Kind: KindEvent, Proc: "r", ID: 2, Start: ms(120)},
		Record{Kind: KindEvent, Proc: "r", ID: 2, Start: ms(130)}, // a duplicate: the first counts
	)
	rep := Check(recs, Bounds{})
	got := rep.Strategy("delete")
	if got.Invalidations != 2 || got.Failed != 1 {
		t.Errorf("Check() invalidations = %d ok, %d failed, want 2, 1", got.Invalidations, got.Failed)
	}
	if rep.Events != 2 || rep.DeliveryMax != 10*time.Millisecond || rep.DeliveryP99 != 2*time.Millisecond {
		t.Errorf("Check() events = %d, delivery max %v p99 %v, want 2, 10ms, 2ms", rep.Events, rep.DeliveryMax, rep.DeliveryP99)
	}
	if rep.Span != 200*time.Millisecond {
		t.Errorf("Check() span = %v, want 200ms", rep.Span)
	}
}

func TestLogRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	l, err := CreateLog(path)
	if err != nil {
		t.Fatalf("CreateLog() error = %v", err)
	}
	want := baseHistory()
	want = append(want, read("r", true, TierL1, 5, -1), Record{Kind: KindStats, Proc: "r", Stats: map[string]uint64{"hits": 3}})
	for _, r := range want {
		l.Add(r)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	got, err := ReadLogs(path, path)
	if err != nil {
		t.Fatalf("ReadLogs() error = %v", err)
	}
	if len(got) != 2*len(want) {
		t.Fatalf("ReadLogs(path, path) has %d records, want %d", len(got), 2*len(want))
	}
	for i, r := range want {
		if g := got[i]; g.Kind != r.Kind || g.Version != r.Version || g.Start != r.Start || strings.Join(g.Keys, ",") != strings.Join(r.Keys, ",") || g.Stats["hits"] != r.Stats["hits"] {
			t.Errorf("record %d = %+v, want %+v", i, g, r)
		}
	}
	if _, err := decodeRecords(bytes.NewReader([]byte("{\"k\":")), nil); err == nil {
		t.Errorf("decodeRecords(truncated) error = nil, want an error")
	}
}

func TestRunChildRefusesBadSpecs(t *testing.T) {
	good := Spec{Name: "x", Keys: 8, Readers: 1, WriterIDs: []int{1}, Writers: 2, ReadsPerInvalidation: 4, Large: 1024}
	tests := []struct {
		name   string
		change func(*Spec)
	}{
		{"no keys", func(s *Spec) { s.Keys = 0 }},
		{"no readers", func(s *Spec) { s.Readers = 0 }},
		{"no writers in all", func(s *Spec) { s.Writers = 0 }},
		{"no pacing", func(s *Spec) { s.ReadsPerInvalidation = 0 }},
		{"writer out of range", func(s *Spec) { s.WriterIDs = []int{2} }},
		{"tiny values", func(s *Spec) { s.Large = 8 }},
	}
	if err := good.validate(); err != nil {
		t.Fatalf("validate(%+v) = %v, want nil", good, err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.change(&s)
			if err := RunChild(s, strings.NewReader(""), io.Discard, io.Discard); err == nil {
				t.Errorf("RunChild(%+v) error = nil, want one", s)
			}
		})
	}
}
