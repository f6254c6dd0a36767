package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// report is everything a run prints; -format json prints it as it is.
type report struct {
	Redis     string        `json:"redis"`
	Threshold int           `json:"threshold"`
	Benchtime string        `json:"benchtime"`
	Payloads  []payloadInfo `json:"payloads"`
	Results   []result      `json:"results"`
}

type payloadInfo struct {
	Name      string `json:"name"`
	JSONBytes int    `json:"json_bytes"`
}

// markBest sets Smallest and Fastest on the rows of each payload. Rows of
// one payload are adjacent.
func markBest(rows []result) {
	for len(rows) > 0 {
		n := 1
		for n < len(rows) && rows[n].Payload == rows[0].Payload {
			n++
		}
		group := rows[:n]
		smallest, fastest := 0, 0
		for i, r := range group {
			if r.StoredBytes < group[smallest].StoredBytes {
				smallest = i
			}
			if r.RoundTripUs < group[fastest].RoundTripUs {
				fastest = i
			}
		}
		for i := range group {
			group[i].Smallest = group[i].StoredBytes == group[smallest].StoredBytes
		}
		group[fastest].Fastest = true
		rows = rows[n:]
	}
}

// textHeader is the header row of the text table.
var textHeader = []string{
	"payload", "codec", "compression", "stored B", "ratio",
	"encode ns/op", "encode allocs", "decode ns/op", "decode allocs",
	"round trip µs/op", "  best",
}

func writeText(w io.Writer, rep report) error {
	sizes := make([]string, len(rep.Payloads))
	for i, p := range rep.Payloads {
		sizes[i] = fmt.Sprintf("%s %d B", p.Name, p.JSONBytes)
	}
	fmt.Fprintf(w, "codecbench: %s, compress threshold %d B, %s per measurement\n", rep.Redis, rep.Threshold, rounds(rep.Benchtime))
	fmt.Fprintf(w, "payloads as JSON: %s\n\n", strings.Join(sizes, ", "))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(textHeader, "\t"))
	for _, r := range rep.Results {
		var best []string
		if r.Smallest {
			best = append(best, "smallest")
		}
		if r.Fastest {
			best = append(best, "fastest")
		}
		marks := ""
		if len(best) > 0 {
			marks = "  " + strings.Join(best, ", ")
		}
		// The last cell is not a column of its own: AlignRight pads cells
		// on the left, so it gets its own spacing.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f\t%.0f\t%d\t%.0f\t%d\t%.1f\t%s\n",
			r.Payload, r.Codec, r.Compression, r.StoredBytes, r.Ratio,
			r.EncodeNs, r.EncodeAllocs, r.DecodeNs, r.DecodeAllocs,
			r.RoundTripUs, marks)
	}
	return tw.Flush()
}

// rounds describes a benchtime setting: "400ms" or "10 rounds".
func rounds(benchtime string) string {
	if n, ok := strings.CutSuffix(benchtime, "x"); ok {
		return n + " rounds"
	}
	return benchtime
}

// csvHeader is the header row of -format csv.
var csvHeader = []string{
	"payload", "codec", "compression", "encoded_bytes", "stored_bytes", "compressed", "ratio",
	"encode_ns_per_op", "encode_allocs_per_op", "decode_ns_per_op", "decode_allocs_per_op",
	"round_trip_us_per_op", "smallest", "fastest",
}

func writeCSV(w io.Writer, rows []result) error {
	cw := csv.NewWriter(w)
	cw.Write(csvHeader)
	for _, r := range rows {
		cw.Write([]string{
			r.Payload, r.Codec, r.Compression,
			strconv.Itoa(r.EncodedBytes),
			strconv.FormatInt(r.StoredBytes, 10),
			strconv.FormatBool(r.Compressed),
			strconv.FormatFloat(r.Ratio, 'f', 3, 64),
			strconv.FormatFloat(r.EncodeNs, 'f', 1, 64),
			strconv.FormatInt(r.EncodeAllocs, 10),
			strconv.FormatFloat(r.DecodeNs, 'f', 1, 64),
			strconv.FormatInt(r.DecodeAllocs, 10),
			strconv.FormatFloat(r.RoundTripUs, 'f', 2, 64),
			strconv.FormatBool(r.Smallest),
			strconv.FormatBool(r.Fastest),
		})
	}
	cw.Flush()
	return cw.Error()
}

func writeJSON(w io.Writer, rep report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
