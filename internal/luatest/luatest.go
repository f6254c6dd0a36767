// Package luatest helps tests check Lua scripts against the code that
// calls them.
package luatest

import (
	"regexp"
	"strconv"
)

// HighestIndex returns the highest n of name[n] in src (name is KEYS or
// ARGV), 0 if there is none: how many of them the script reads, when it
// reads them by literal index.
func HighestIndex(src, name string) int {
	top := 0
	for _, m := range regexp.MustCompile(regexp.QuoteMeta(name)+`\[(\d+)\]`).FindAllStringSubmatch(src, -1) {
		n, _ := strconv.Atoi(m[1])
		top = max(top, n)
	}
	return top
}
