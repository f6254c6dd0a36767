package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"text/tabwriter"
)

// row is one line of the table.
type row struct {
	workload, lib string
	na            string // why the workload did not run, if it did not
	failed        bool
	res           testing.BenchmarkResult // the median round
	spread        float64                 // (max-min)/median ns/op over the rounds
	stampede      bool
	libIndex      int
}

func (r row) ns() float64 { return float64(r.res.T.Nanoseconds()) / float64(r.res.N) }

// cpu returns the process's CPU time per op.
func (r row) cpu() float64 { return r.res.Extra["cpu-ns/op"] }

// cells returns the row's cells: workload, library, ns/op, allocs/op,
// B/op, loader calls per op, time relative to cachemgr.
func (r row) cells(base *row) []string {
	switch {
	case r.na != "":
		return []string{r.workload, r.lib, "n/a", "", "", "", "", "", "", r.na}
	case r.failed:
		return []string{r.workload, r.lib, "failed", "", "", "", "", "", "", "run `go test -bench` for the error"}
	}
	loads := ""
	if r.stampede {
		loads = fmt.Sprintf("%.0f", r.res.Extra["loads/op"])
	}
	ratio, cpuRatio := "–", "–"
	if base != nil && base.na == "" && !base.failed {
		ratio = fmt.Sprintf("%.2fx", r.ns()/base.ns())
		cpuRatio = fmt.Sprintf("%.2fx", r.cpu()/base.cpu())
	}
	return []string{
		r.workload, r.lib,
		formatNs(r.ns()),
		fmt.Sprintf("%.0f%%", 100*r.spread),
		formatNs(r.cpu()),
		fmt.Sprint(r.res.AllocsPerOp()),
		fmt.Sprint(r.res.AllocedBytesPerOp()),
		loads, ratio, cpuRatio,
	}
}

// formatNs prints ns/op with thousands separators.
func formatNs(ns float64) string {
	s := fmt.Sprintf("%.0f", ns)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

var header = []string{"workload", "library", "ns/op", "spread", "CPU ns/op", "allocs/op", "B/op", "loader calls", "time vs cachemgr", "CPU vs cachemgr"}

// baseOf returns the cachemgr row of each workload.
func baseOf(rows []row) map[string]*row {
	base := map[string]*row{}
	for i := range rows {
		if rows[i].lib == "cachemgr" || strings.HasPrefix(rows[i].lib, "cachemgr ") {
			base[rows[i].workload] = &rows[i]
		}
	}
	return base
}

func writeText(w io.Writer, rows []row) {
	base := baseOf(rows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	prev := ""
	for _, r := range rows {
		c := r.cells(base[r.workload])
		if r.workload == prev {
			c[0] = ""
		}
		prev = r.workload
		fmt.Fprintln(tw, strings.Join(c, "\t")+"\t")
	}
	tw.Flush()
}

func writeMarkdown(w io.Writer, rows []row) {
	base := baseOf(rows)
	fmt.Fprintln(w, "| "+strings.Join(header, " | ")+" |")
	fmt.Fprintln(w, "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|")
	prev := ""
	for _, r := range rows {
		c := r.cells(base[r.workload])
		if r.workload == prev {
			c[0] = ""
		}
		prev = r.workload
		fmt.Fprintln(w, "| "+strings.Join(c, " | ")+" |")
	}
}

// machine describes where the numbers come from.
func machine(s *server) []string {
	where := "spawned on " + s.opt.Addr
	if s.ns != "" {
		where = "REDIS_URL"
	}
	return []string{
		fmt.Sprintf("%s %s/%s, %d CPUs (GOMAXPROCS %d), %s", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), cpuModel()),
		fmt.Sprintf("redis-server %s, %s, same machine, loopback", s.version, where),
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// versions returns "module version" for each library, as built.
func versions(ls []lib) []string {
	dep := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			dep[d.Path] = d.Version
			if d.Replace != nil {
				dep[d.Path] = "replaced by " + d.Replace.Path + treeState(d.Replace.Path)
			}
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range ls {
		if seen[l.module] {
			continue
		}
		seen[l.module] = true
		v := dep[l.module]
		if v == "" {
			v = "(unknown)"
		}
		out = append(out, l.module+" "+v)
	}
	for _, m := range []string{"github.com/eko/gocache/store/redis/v4", "github.com/vmihailenco/msgpack/v5"} {
		if v := dep[m]; v != "" {
			out = append(out, m+" "+v)
		}
	}
	return out
}

// treeState describes the git checkout at dir, which the benchmark built
// cachemgr from: its commit and the files that differ from it (this
// module's own excepted), or "" when dir is not a checkout.
func treeState(dir string) string {
	head, err := exec.Command("git", "-C", dir, "log", "-1", "--format=%h").Output()
	if err != nil {
		return ""
	}
	out, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--", ".", ":(exclude)bench/compare").Output()
	if err != nil {
		return ""
	}
	var changed []string
	for line := range strings.Lines(string(out)) {
		if len(line) > 3 {
			changed = append(changed, strings.TrimSpace(line[3:]))
		}
	}
	state := ", commit " + strings.TrimSpace(string(head))
	if len(changed) > 0 {
		state += fmt.Sprintf(" plus uncommitted changes to %s", strings.Join(changed, ", "))
	}
	return state
}
