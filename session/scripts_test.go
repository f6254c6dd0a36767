package session

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/cachemgr/cachemgr/internal/luatest"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestScripts checks that every script compiles on a real redis-server
// (SCRIPT LOAD, which compiles without running, answers the hash that Run
// sends), and that each builder sends as many KEYS and ARGV as its script
// reads.
func TestScripts(t *testing.T) {
	srv := redistest.Start(t)
	redistest.RequireReal(t, srv)
	ctx := context.Background()
	for _, s := range scripts {
		got, err := srv.Do(ctx, "SCRIPT", "LOAD", s.src).Text()
		if err != nil {
			t.Errorf("SCRIPT LOAD of %s: %v", s.name, err)
		} else if got != s.Hash() {
			t.Errorf("SCRIPT LOAD of %s = %s, want the hash Run sends, %s", s.name, got, s.Hash())
		}
	}

	cases := []struct {
		call scriptCall
		// variadic is the first ARGV index of a repeated part that the
		// script reads in a loop, 0 if none.
		variadic int
	}{
		{createArgs{key: "k", deadlineMS: 1, idleMS: 2, lifetimeMS: 3, toleranceMS: 4, fields: []any{"f", "v", "g", "w"}}, 7},
		{renewArgs{from: "a", to: "b", deadlineMS: 1, idleMS: 2}, 0},
		{repairArgs{key: "k"}, 0},
	}
	built := map[string]bool{}
	for _, c := range cases {
		s := c.call.script()
		built[s.name] = true
		keys, argv := c.call.args()
		if n := luatest.HighestIndex(s.src, "KEYS"); n != len(keys) {
			t.Errorf("%s reads %d KEYS, builder sends %d", s.name, n, len(keys))
		}
		fixed := luatest.HighestIndex(s.src, "ARGV")
		if c.variadic != 0 {
			if fixed != c.variadic-1 {
				t.Errorf("%s reads ARGV up to %d before its loop from %d", s.name, fixed, c.variadic)
			}
			if !regexp.MustCompile(`for i = ` + strconv.Itoa(c.variadic) + `, #ARGV`).MatchString(s.src) {
				t.Errorf("%s has no loop over ARGV from %d", s.name, c.variadic)
			}
			fixed = c.variadic - 1 + 4 // the case's two pairs
		}
		if fixed != len(argv) {
			t.Errorf("%s reads %d ARGV, builder sends %d", s.name, fixed, len(argv))
		}
	}
	for _, s := range scripts {
		if !built[s.name] {
			t.Errorf("script %s has no builder case", s.name)
		}
	}
}
