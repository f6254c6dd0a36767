//go:build coherence

package coherence

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachemgr/cachemgr/internal/redistest"
	"go.uber.org/goleak"
)

// childEnv, when set, makes the test binary a child process: it holds the
// child's Spec as JSON.
const childEnv = "CACHEMGR_COHERENCE_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec))
	}
	goleak.VerifyTestMain(m)
}

// childMain runs a child: commands on stdin, progress on file descriptor
// 3, its Manager's log on stderr.
func childMain(js string) int {
	var spec Spec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", childEnv, err)
		return 2
	}
	progress := os.NewFile(3, "progress")
	if err := RunChild(spec, os.Stdin, progress, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", spec.Name, err)
		return 1
	}
	return 0
}

// Faults the parent knows how to inject, in the order a run takes them.
var allFaults = []string{"kill", "stop", "pause", "cut", "stall"}

const (
	// freezeFor is how long "stop" (SIGSTOP) and "pause" (CLIENT PAUSE
	// ALL) keep Redis from answering.
	freezeFor = 300 * time.Millisecond
	// stallFor is how long "stall" keeps the subscriptions silent before
	// cutting them: longer than the default bound for a stalled
	// subscription (Delivery plus Liveness, 2s), so that a process that
	// does not notice serves stale values past it.
	stallFor = 3 * time.Second
)

// config is what the environment asks of a run.
type config struct {
	reads      int64         // key reads in all, when duration is 0
	duration   time.Duration // run this long instead
	faultEvery int64         // key reads between faults, with duration
	faults     []string
	bounds     Bounds
	dir        string // keep the histories here
}

// readConfig reads the CACHEMGR_COHERENCE_* variables.
func readConfig(t *testing.T) config {
	t.Helper()
	c := config{
		reads:      5_000,
		faultEvery: 20_000,
		faults:     allFaults,
		bounds:     Bounds{Delivery: time.Second, Liveness: time.Second},
	}
	env := func(name string, parse func(string) error) {
		t.Helper()
		if v := os.Getenv(name); v != "" {
			if err := parse(v); err != nil {
				t.Fatalf("%s=%q: %v", name, v, err)
			}
		}
	}
	positive := func(p *int64) func(string) error {
		return func(s string) error {
			n, err := strconv.ParseInt(s, 10, 64)
			if err == nil && n <= 0 {
				err = fmt.Errorf("want a positive count")
			}
			*p = n
			return err
		}
	}
	duration := func(p *time.Duration) func(string) error {
		return func(s string) error {
			d, err := time.ParseDuration(s)
			if err == nil && d <= 0 {
				err = fmt.Errorf("want a positive duration")
			}
			*p = d
			return err
		}
	}
	env("CACHEMGR_COHERENCE_READS", positive(&c.reads))
	env("CACHEMGR_COHERENCE_DURATION", duration(&c.duration))
	env("CACHEMGR_COHERENCE_FAULT_EVERY", positive(&c.faultEvery))
	env("CACHEMGR_COHERENCE_DELIVERY", duration(&c.bounds.Delivery))
	env("CACHEMGR_COHERENCE_LIVENESS", duration(&c.bounds.Liveness))
	env("CACHEMGR_COHERENCE_FAULTS", func(s string) error {
		c.faults = nil
		if s == "none" {
			return nil
		}
		for _, f := range strings.Split(s, ",") {
			if !slices.Contains(allFaults, f) {
				return fmt.Errorf("unknown fault %q, want none or a list of %s", f, strings.Join(allFaults, ","))
			}
			c.faults = append(c.faults, f)
		}
		return nil
	})
	c.dir = os.Getenv("CACHEMGR_COHERENCE_DIR")
	if c.dir == "" {
		c.dir = t.TempDir()
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		t.Fatalf("CACHEMGR_COHERENCE_DIR: %v", err)
	}
	return c
}

// TestCoherence runs four processes against one redis-server while faults
// are injected, and checks their merged history: see the package doc.
func TestCoherence(t *testing.T) {
	cfg := readConfig(t)
	cache := redistest.Start(t)
	db := redistest.Start(t)
	clk := NewClock()

	roles := []struct {
		name       string
		l1, behind bool
		writers    []int
	}{
		{"a", true, false, []int{0, 2}}, // L1, writes
		{"b", false, true, []int{1, 3}}, // no L1, writes (with events, for the others' L1), write-behind
		{"c", true, true, nil},          // L1, reads only, write-behind
		{"d", false, false, nil},        // no L1, reads only
	}
	notify := make(chan struct{}, 1)
	exited := make(chan *child, len(roles))
	var children []*child
	for i, r := range roles {
		spec := Spec{
			Name: r.name, Index: i, CacheAddr: cache.Addr(), DBAddr: db.Addr(), L1: r.l1, WriteBehind: r.behind,
			WriterIDs: r.writers, Writers: 4, Readers: 6, ReadsPerInvalidation: 16,
			Keys: 8, Large: 256 << 10, Seed: uint64(i + 1),
			History: filepath.Join(cfg.dir, r.name+".jsonl"),
		}
		children = append(children, startChild(t, spec, filepath.Join(cfg.dir, r.name+".log"), notify, exited))
	}
	total := func() int64 {
		var n int64
		for _, c := range children {
			n += c.reads.Load()
		}
		return n
	}

	var deadline <-chan time.Time
	faultAt := func(i int) int64 { return cfg.faultEvery * int64(i+1) }
	if cfg.duration > 0 {
		deadline = time.After(cfg.duration)
	} else {
		faultAt = func(i int) int64 { return cfg.reads * int64(i+1) / int64(len(cfg.faults)+1) }
	}
	var faults []Record
	inject := func(name string) {
		start := clk.Now()
		end := int64(0)
		switch name {
		case "kill":
			cache.Restart()
		case "stop":
			cache.Pause()
			<-time.After(freezeFor)
			cache.Resume()
		case "pause":
			cache.ClientPause(freezeFor, "ALL")
			end = start + int64(freezeFor)
		case "cut":
			for _, c := range children {
				c.send(t, "cut")
			}
		case "stall":
			for _, c := range children {
				c.send(t, "stall")
			}
			<-time.After(stallFor)
			for _, c := range children {
				c.send(t, "unstall")
			}
		}
		if end == 0 {
			end = clk.Now()
		}
		faults = append(faults, Record{Kind: KindFault, Op: name, Start: start, End: end})
	}

	began := time.Now()
run:
	for next := 0; ; {
		n := total()
		if cfg.duration == 0 && n >= cfg.reads {
			break
		}
		if len(cfg.faults) > 0 && (cfg.duration > 0 || next < len(cfg.faults)) && n >= faultAt(next) {
			inject(cfg.faults[next%len(cfg.faults)])
			next++
			continue
		}
		select {
		case <-notify:
		case <-deadline:
			break run
		case c := <-exited:
			t.Errorf("child %s exited during the run: %v\n%s", c.name, c.err, c.logTail())
			break run
		}
	}
	for _, c := range children {
		c.stop()
	}
	for _, c := range children {
		<-c.done
		if c.err != nil {
			t.Errorf("child %s: %v\n%s", c.name, c.err, c.logTail())
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("ran %v, %d key reads; histories in %s", time.Since(began).Round(time.Millisecond), total(), cfg.dir)

	var paths []string
	for _, c := range children {
		paths = append(paths, c.history)
	}
	recs, err := ReadLogs(paths...)
	if err != nil {
		t.Fatalf("ReadLogs() error = %v", err)
	}
	rep := Check(append(recs, faults...), cfg.bounds)
	t.Logf("\n%s", rep)

	if len(rep.Strategies) != len(Strategies) {
		t.Errorf("report has %d strategies, want %d: %v", len(rep.Strategies), len(Strategies), rep.Strategies)
	}
	for _, s := range rep.Strategies {
		if s.Invalidations == 0 || s.Checked == 0 {
			t.Errorf("%s: %d invalidations, %d checked reads: the run judged nothing", s.Strategy, s.Invalidations, s.Checked)
		}
		if n := s.Violations(); n > 0 {
			t.Errorf("%s: %d of %d checked reads broke coherence (stale %d, L1 after the event %d, L1 beyond the bound %d, wrong key %d, impossible %d), worst %v after the invalidation returned",
				s.Strategy, n, s.Checked, s.Stale, s.AfterEvent, s.BeyondBound, s.WrongKey, s.Impossible, s.Worst.Round(time.Microsecond))
		}
	}
	var l1 uint64
	for _, st := range rep.Stats {
		l1 += st["l1hits"]
	}
	if l1 == 0 {
		t.Errorf("no read was answered by an L1 tier: the L1 check judged nothing")
	}
}

// child is one child process.
type child struct {
	name    string
	history string
	log     string
	stdin   io.WriteCloser
	reads   atomic.Int64 // as last reported
	done    chan struct{}
	err     error // once done is closed
	stopped bool
}

// startChild starts the test binary as the child spec describes. Each
// progress report pokes notify; exited receives the child if it ends.
// The child is stopped and waited for when the test ends.
func startChild(t *testing.T, spec Spec, logPath string, notify chan<- struct{}, exited chan<- *child) *child {
	t.Helper()
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatalf("marshal spec: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable() error = %v", err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create child log: %v", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("os.Pipe() error = %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	c := &child{name: spec.Name, history: spec.History, log: logPath, done: make(chan struct{})}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("StdinPipe() error = %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child %s: %v", spec.Name, err)
	}
	pw.Close()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if n, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
				c.reads.Store(n)
			}
			select {
			case notify <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		c.err = cmd.Wait()
		<-progressDone
		pr.Close()
		logf.Close()
		close(c.done)
		exited <- c
	}()
	t.Cleanup(func() {
		c.stop()
		<-c.done
	})
	return c
}

// send writes one command to the child.
func (c *child) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := fmt.Fprintln(c.stdin, cmd); err != nil {
		t.Errorf("send %q to child %s: %v", cmd, c.name, err)
	}
}

// stop tells the child to finish; it also stops when its stdin closes,
// as it does if the parent dies.
func (c *child) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	fmt.Fprintln(c.stdin, "stop")
	c.stdin.Close()
}

// logTail returns the end of the child's stdout and stderr.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
