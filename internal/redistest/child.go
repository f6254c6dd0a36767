package redistest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Child is the test binary run again as another OS process, running one
// test in the role that an environment variable gives it, and talking to
// the parent by lines: the parent writes to its stdin, it prints to its
// stdout (among what the test framework prints).
type Child struct {
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// StartChild starts the test binary again to run test alone, with env set
// to value in its environment. When t ends, its stdin is closed and it
// must exit within a minute (which only stops a hung child), successfully.
func StartChild(t testing.TB, test, env, value string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+value)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child process: %v", err)
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("child process still running a minute after its input ended")
		}
	})
	return &Child{stdin: stdin, out: bufio.NewScanner(stdout)}
}

// Send writes line to the child.
func (c *Child) Send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		t.Fatalf("write to child: %v", err)
	}
}

// Next returns the child's next line that starts with mark, without it;
// it fails t, with what else the child printed, if the child ends first.
func (c *Child) Next(t testing.TB, mark string) string {
	t.Helper()
	var other []string // what the test framework printed: a failure says why
	for c.out.Scan() {
		if line, ok := strings.CutPrefix(c.out.Text(), mark); ok {
			return line
		}
		other = append(other, c.out.Text())
	}
	t.Fatalf("child ended (%v); its output:\n%s", c.out.Err(), strings.Join(other, "\n"))
	return ""
}
