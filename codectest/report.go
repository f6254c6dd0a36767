package codectest

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is what Measure found for one sample type.
type Report struct {
	// Type is the Go type of the sample, as the values were decoded into.
	Type string `json:"type"`
	// Runs is how many times every measurement was timed.
	Runs int `json:"runs"`
	// Threshold is the compression threshold in bytes.
	Threshold int `json:"threshold"`
	// RoundTrips tells whether RoundTrip was measured (the Redis option).
	RoundTrips bool `json:"round_trips"`
	// Results has one row per pair of codec and compressor, in the order
	// of the options: codecs outer, compressors inner.
	Results []Result `json:"results"`
	// Skipped lists the codecs that cannot encode the sample's type.
	Skipped []Skip `json:"skipped,omitempty"`
}

// Skip is a codec left out of a Report, and why.
type Skip struct {
	// Codec is the codec's name.
	Codec string `json:"codec"`
	// Reason is its error on encoding the sample.
	Reason string `json:"reason"`
}

// Result is one row of a Report: one codec with one compressor.
type Result struct {
	// Codec and Compression name the pair, as codec.Codec.Name and
	// compress.Compressor.Name do.
	Codec       string `json:"codec"`
	Compression string `json:"compression"`
	// EncodedBytes is the codec's output, before compression and without
	// the header.
	EncodedBytes int `json:"encoded_bytes"`
	// StoredBytes is the length of the value in Redis, header included:
	// the memory the choice costs per key, before Redis's own overhead.
	StoredBytes int `json:"stored_bytes"`
	// Compressed tells whether the stored payload is compressed: a
	// compressor is not applied under the threshold, nor kept when it
	// would not shrink the payload.
	Compressed bool `json:"compressed"`
	// Ratio is EncodedBytes over the stored payload (StoredBytes without
	// the header): 1 when stored uncompressed, above 1 by what compression
	// saved.
	Ratio float64 `json:"ratio"`
	// Smallest marks the smallest StoredBytes of the report (every row
	// that ties).
	Smallest bool `json:"smallest"`
	// Encode is the codec's Append plus compression, as Cache.Set does
	// them before talking to Redis.
	Encode Timing `json:"encode"`
	// Decode is decompression plus the codec's Unmarshal into a new value,
	// as Cache.Get does them after Redis answered.
	Decode Timing `json:"decode"`
	// RoundTrip is one Cache.Set and one Cache.Get of the sample against
	// Redis; zero unless Report.RoundTrips.
	RoundTrip Timing `json:"round_trip"`
}

// timing returns the Timing of operation name ("encode", "decode",
// "roundtrip").
func (r *Result) timing(name string) *Timing {
	switch name {
	case "encode":
		return &r.Encode
	case "decode":
		return &r.Decode
	}
	return &r.RoundTrip
}

// Timing is one operation of one row, over every run.
type Timing struct {
	// Ops is how many operations each run timed.
	Ops int `json:"ops"`
	// NsPerOp is the median over the runs. LowNsPerOp and HighNsPerOp
	// bound its 95% confidence interval, read off the sorted runs as
	// benchstat does: with 10 runs, the second fastest and the second
	// slowest; with fewer than 6, the fastest and the slowest, which then
	// bound it with less confidence.
	NsPerOp     float64 `json:"ns_per_op"`
	LowNsPerOp  float64 `json:"low_ns_per_op"`
	HighNsPerOp float64 `json:"high_ns_per_op"`
	// AllocsPerOp and BytesPerOp are the median heap allocations per
	// operation, as go test -benchmem counts them.
	AllocsPerOp float64 `json:"allocs_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	// Fastest marks the row that is clearly the fastest at this operation.
	// Each run times every row once, so the rows compare run by run: a
	// row is marked when, against every other row, the 95% confidence
	// interval of the per-run ratio of their times lies wholly on its
	// side. Otherwise, and with fewer than 6 runs, no row is marked: the
	// difference is within the noise, or cannot be told from it.
	Fastest bool `json:"fastest"`

	runs []float64 // ns per op of each run, in run order
}

// Spread returns the distance from the median to the farther end of its
// interval, as a fraction of the median.
func (t Timing) Spread() float64 {
	if t.NsPerOp <= 0 {
		return 0
	}
	return max(t.HighNsPerOp-t.NsPerOp, t.NsPerOp-t.LowNsPerOp) / t.NsPerOp
}

// mark sets Smallest and the Fastest of each operation.
func (rep *Report) mark() {
	rows := rep.Results
	if len(rows) == 0 {
		return
	}
	smallest := rows[0].StoredBytes
	for _, r := range rows {
		smallest = min(smallest, r.StoredBytes)
	}
	for i := range rows {
		rows[i].Smallest = rows[i].StoredBytes == smallest
	}
	ops := []string{"encode", "decode"}
	if rep.RoundTrips {
		ops = append(ops, "roundtrip")
	}
	for _, op := range ops {
		if i := clearlyFastest(rows, op); i >= 0 {
			rows[i].timing(op).Fastest = true
		}
	}
}

// minRunsToMark is the fewest runs whose order gives a 95% confidence
// interval of a median: with fewer, no row is called the fastest.
const minRunsToMark = 6

// clearlyFastest returns the row with the lowest median time of op if,
// against every other row, the confidence interval of the per-run ratio
// (other / it) lies above 1; else -1 (and for fewer than two rows).
func clearlyFastest(rows []Result, op string) int {
	if len(rows) < 2 {
		return -1
	}
	best := 0
	for i := range rows {
		if rows[i].timing(op).NsPerOp < rows[best].timing(op).NsPerOp {
			best = i
		}
	}
	b := rows[best].timing(op).runs
	for i := range rows {
		if i == best {
			continue
		}
		o := rows[i].timing(op).runs
		if len(o) != len(b) || len(b) < minRunsToMark {
			return -1
		}
		ratios := make([]float64, len(b))
		for k := range b {
			ratios[k] = o[k] / b[k]
		}
		if lo, _ := interval(ratios); !(lo > 1) {
			return -1
		}
	}
	return best
}

// WriteText writes the report as an aligned table, with a line on what was
// measured above it and on how to read the marks below it.
func (rep *Report) WriteText(w io.Writer) error {
	runs := fmt.Sprintf("median of %d runs", rep.Runs)
	if rep.Runs == 1 {
		runs = "1 run, no spread"
	}
	fmt.Fprintf(w, "values of type %s, %s, compression from %d B\n", rep.Type, runs, rep.Threshold)
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "%s: not measured, it cannot encode %s (%s)\n", s.Codec, rep.Type, s.Reason)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"codec", "compression", "stored B", "ratio", "encode ns/op", "allocs", "decode ns/op", "allocs"}
	if rep.RoundTrips {
		head = append(head, "round trip µs/op")
	}
	fmt.Fprintln(tw, strings.Join(append(head, "  best"), "\t"))
	for _, r := range rep.Results {
		var best []string
		if r.Smallest {
			best = append(best, "smallest")
		}
		cells := []string{
			r.Codec, r.Compression, fmt.Sprint(r.StoredBytes), fmt.Sprintf("%.2f", r.Ratio),
			ns(r.Encode, 1), fmt.Sprintf("%.0f", r.Encode.AllocsPerOp),
			ns(r.Decode, 1), fmt.Sprintf("%.0f", r.Decode.AllocsPerOp),
		}
		if r.Encode.Fastest {
			best = append(best, "fastest encode")
		}
		if r.Decode.Fastest {
			best = append(best, "fastest decode")
		}
		if rep.RoundTrips {
			cells = append(cells, ns(r.RoundTrip, 1e3))
			if r.RoundTrip.Fastest {
				best = append(best, "fastest round trip")
			}
		}
		// The last cell is not a column of its own: AlignRight pads cells
		// on the left, so it gets its own spacing.
		marks := ""
		if len(best) > 0 {
			marks = "  " + strings.Join(best, ", ")
		}
		fmt.Fprintln(tw, strings.Join(append(cells, marks), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "times: median ± the farther end of its 95% confidence interval; \"fastest\" marks a row only when it beat every other row run by run, beyond that interval")
	return err
}

// ns formats a timing in units of unit nanoseconds, with its spread.
func ns(t Timing, unit float64) string {
	return fmt.Sprintf("%.*f ±%.0f%%", decimals(t.NsPerOp/unit), t.NsPerOp/unit, 100*t.Spread())
}

// decimals is how many decimals show a value to about three digits.
func decimals(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}
