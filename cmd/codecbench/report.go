package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/cachemgr/cachemgr/codectest"
)

// output is everything a run prints; -format json prints it as it is.
type output struct {
	Redis     string     `json:"redis"`
	Threshold int        `json:"threshold"`
	Runs      int        `json:"runs"`
	PerRun    string     `json:"per_run"` // time or operations per measurement and run
	Payloads  []measured `json:"payloads"`
}

// measured is one payload and its report.
type measured struct {
	Name      string            `json:"name"`
	About     string            `json:"about"`
	JSONBytes int               `json:"json_bytes"`
	Report    *codectest.Report `json:"report"`
}

func writeText(w io.Writer, out output) error {
	fmt.Fprintf(w, "codecbench: %s; each time is the median of %d runs of %s per measurement\n", out.Redis, out.Runs, out.PerRun)
	fmt.Fprintf(w, "measured per codec and compression: the bytes cachemgr stored (read back from Redis, header included);\n"+
		"encode (codec + compression, as Set does before Redis); decode (decompression + unmarshal into a new\n"+
		"value of the type below, as Get does after Redis); round trip (one Set and one Get against Redis)\n")
	for _, p := range out.Payloads {
		fmt.Fprintf(w, "\n%s: %s, %d B as JSON\n", p.Name, p.About, p.JSONBytes)
		if err := p.Report.WriteText(w); err != nil {
			return err
		}
	}
	return nil
}

// csvHeader is the header row of -format csv.
var csvHeader = []string{
	"payload", "type", "codec", "compression", "encoded_bytes", "stored_bytes", "compressed", "ratio",
	"encode_ns_per_op", "encode_low_ns", "encode_high_ns", "encode_allocs_per_op",
	"decode_ns_per_op", "decode_low_ns", "decode_high_ns", "decode_allocs_per_op",
	"round_trip_us_per_op", "round_trip_low_us", "round_trip_high_us",
	"smallest", "fastest_encode", "fastest_decode", "fastest_round_trip",
}

func writeCSV(w io.Writer, out output) error {
	cw := csv.NewWriter(w)
	cw.Write(csvHeader)
	f := func(v, unit float64) string { return strconv.FormatFloat(v/unit, 'f', 1, 64) }
	for _, p := range out.Payloads {
		for _, r := range p.Report.Results {
			cw.Write([]string{
				p.Name, p.Report.Type, r.Codec, r.Compression,
				strconv.Itoa(r.EncodedBytes), strconv.Itoa(r.StoredBytes),
				strconv.FormatBool(r.Compressed), strconv.FormatFloat(r.Ratio, 'f', 3, 64),
				f(r.Encode.NsPerOp, 1), f(r.Encode.LowNsPerOp, 1), f(r.Encode.HighNsPerOp, 1), f(r.Encode.AllocsPerOp, 1),
				f(r.Decode.NsPerOp, 1), f(r.Decode.LowNsPerOp, 1), f(r.Decode.HighNsPerOp, 1), f(r.Decode.AllocsPerOp, 1),
				f(r.RoundTrip.NsPerOp, 1e3), f(r.RoundTrip.LowNsPerOp, 1e3), f(r.RoundTrip.HighNsPerOp, 1e3),
				strconv.FormatBool(r.Smallest), strconv.FormatBool(r.Encode.Fastest),
				strconv.FormatBool(r.Decode.Fastest), strconv.FormatBool(r.RoundTrip.Fastest),
			})
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeJSON(w io.Writer, out output) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
