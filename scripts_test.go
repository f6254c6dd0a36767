package cachemgr

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"reflect"
	"testing"

	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/cachemgr/cachemgr/internal/luatest"
	"github.com/cachemgr/cachemgr/internal/redistest"
)

// TestScriptBuilders checks, without a server, that each builder sends its
// script by a registered hash, with as many KEYS and ARGV as the script
// reads, in the order it reads them.
func TestScriptBuilders(t *testing.T) {
	ctx := context.Background()
	const k = "p:c:k"
	val := []byte("envelope")
	cases := []struct {
		call scriptCall
		s    script
		keys []string
		argv []any
	}{
		{claimArgs{key: k, token: "tok", leaseMS: 5, newMarker: "m", markerTTLMS: 7, deadlineMS: 9},
			claimScript, []string{k, keys.Marker(k), keys.Lease(k), keys.Waiters(k)}, []any{"tok", int64(5), "m", int64(7), int64(9)}},
		// The batch's claim takes no lease: ARGV[2] is 0, and the script
		// returns before it reads the deadline.
		{claimArgs{key: k, newMarker: "m", markerTTLMS: 7},
			claimScript, []string{k, keys.Marker(k), keys.Lease(k), keys.Waiters(k)}, []any{"", int64(0), "m", int64(7), int64(0)}},
		{releaseArgs{key: k, token: "tok", channel: "ch"},
			releaseScript, []string{keys.Lease(k), keys.Waiters(k), k}, []any{"tok", "ch"}},
		{refreshClaimArgs{key: k, token: "tok", leaseMS: 5, staleSHA1: "sha", newMarker: "m", markerTTLMS: 7, deadlineMS: 9},
			refreshClaimScript, []string{k, keys.Marker(k), keys.Lease(k)}, []any{"tok", int64(5), "sha", "m", int64(7), int64(9)}},
		{writeBackArgs{key: k, marker: "m", value: val, ttlMS: 3, token: "tok", staleSHA1: "sha", channel: "ch"},
			writeBackScript, []string{k, keys.Marker(k), keys.Lease(k), keys.Waiters(k)}, []any{"m", val, int64(3), "tok", "sha", "ch"}},
		{writeBackArgs{key: k, marker: "m", value: val, ttlMS: 3},
			writeBackScript, []string{k, keys.Marker(k), keys.Lease(k), keys.Waiters(k)}, []any{"m", val, int64(3), "", "", ""}},
		{dropArgs{key: k, badSHA1: "sha"},
			dropScript, []string{k}, []any{"sha"}},
		{deleteArgs{key: k, newMarker: "m", markerTTLMS: 7},
			deleteScript, []string{k, keys.Marker(k)}, []any{"m", int64(7)}},
		{versionInitArgs{key: "v", newVersion: "abc", ttlMS: 4},
			versionInitScript, []string{"v"}, []any{"abc", int64(4)}},
		{bumpArgs{key: "v", seed: "s", ttlMS: 4},
			bumpScript, []string{"v"}, []any{"s", int64(4)}},
		{tagWriteArgs{key: "t", stamp: 42, keepMS: 8},
			tagWriteScript, []string{"t"}, []any{int64(42), int64(8), int64(0)}},
		// From the server's clock: ARGV[1] is empty, whatever stamp holds.
		{tagWriteArgs{key: "t", byServer: true, stamp: 42, keepMS: 8, skewUS: 6},
			tagWriteScript, []string{"t"}, []any{"", int64(8), int64(6)}},
		{setStampedArgs{key: k, value: val, stampOffset: 2, ttlMS: 3, skewUS: 1},
			setStampedScript, []string{k}, []any{val, 2, int64(3), int64(1)}},
		{tagLowerArgs{key: "t", stamp: 42},
			tagLowerScript, []string{"t"}, []any{int64(42)}},
		{tagInvalidateArgs{key: "t", keepMS: 8},
			tagInvalidateScript, []string{"t"}, []any{int64(8)}},
	}
	built := map[string]bool{}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%T", c.s.name, c.call), func(t *testing.T) {
			args := c.call.cmd(ctx).Args()
			if args[0] != "evalsha" || args[1] != c.s.hash {
				t.Fatalf("sends %v %v, want evalsha of %s", args[0], args[1], c.s.name)
			}
			if scriptSources[c.s.hash] != c.s.src {
				t.Fatalf("%s is not registered in scriptSources", c.s.name)
			}
			nk, ok := args[2].(int)
			if !ok || nk != len(c.keys) || len(args) < 3+nk {
				t.Fatalf("numkeys %v, want %d", args[2], len(c.keys))
			}
			var gotKeys []string
			for _, a := range args[3 : 3+nk] {
				gotKeys = append(gotKeys, a.(string))
			}
			if !reflect.DeepEqual(gotKeys, c.keys) {
				t.Errorf("KEYS %q, want %q", gotKeys, c.keys)
			}
			if argv := args[3+nk:]; !reflect.DeepEqual(argv, c.argv) {
				t.Errorf("ARGV %#v, want %#v", argv, c.argv)
			}
			// The script reads no KEYS or ARGV beyond what is sent.
			if n := luatest.HighestIndex(c.s.src, "KEYS"); n != nk {
				t.Errorf("script reads %d KEYS, builder sends %d", n, nk)
			}
			if n := luatest.HighestIndex(c.s.src, "ARGV"); n != len(args)-3-nk {
				t.Errorf("script reads %d ARGV, builder sends %d", n, len(args)-3-nk)
			}
		})
		built[c.s.hash] = true
	}
	// Every registered script has a builder tested above, and its hash is
	// the SHA-1 that Redis computes.
	for _, s := range scripts {
		if !built[s.hash] {
			t.Errorf("script %s has no builder case", s.name)
		}
		sum := sha1.Sum([]byte(s.src))
		if s.hash != hex.EncodeToString(sum[:]) {
			t.Errorf("script %s: hash %s is not its source's SHA-1", s.name, s.hash)
		}
	}
	if len(scriptSources) != len(scripts) {
		t.Errorf("%d sources for %d scripts: two scripts share a source", len(scriptSources), len(scripts))
	}
}

// TestBumpReplayMakesNewVersion: a Bump sent again after another Bump has
// landed (a retry of an attempt that ran but lost its reply) moves the cache
// to yet another version, never back to the one it made the first time:
// that namespace holds entries loaded before the other Bump's change to the
// source, and a read must not find them again.
func TestBumpReplayMakesNewVersion(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	if err := rdb.ScriptLoad(ctx, bumpScript.src).Err(); err != nil {
		t.Fatal(err)
	}
	run := func(a bumpArgs) string {
		t.Helper()
		if err := rdb.Process(ctx, a.cmd(ctx)); err != nil {
			t.Fatalf("bump: %v", err)
		}
		v, err := rdb.Get(ctx, a.key).Result()
		if err != nil {
			t.Fatalf("GET version: %v", err)
		}
		return v
	}
	first := bumpArgs{key: "c~v", seed: "first", ttlMS: 60000}
	v1 := run(first)
	v2 := run(bumpArgs{key: "c~v", seed: "other", ttlMS: 60000})
	v3 := run(first) // the first Bump's retry, landing late
	if v1 == v2 || v3 == v1 || v3 == v2 {
		t.Errorf("versions %q, %q, then the first Bump replayed %q: want three different ones", v1, v2, v3)
	}
}
