package session

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// This file holds every Lua script the package runs, each with a builder:
// a struct whose fields are the script's KEYS and ARGV by name, and whose
// call method lays them out in the order the script reads them. Call sites
// fill a builder, never a positional list.

// script is a Lua script with a name for tests and messages. Run sends it
// by its SHA-1 hash, and its source when the server does not know it yet
// (first use, SCRIPT FLUSH, a restart, a new cluster node).
type script struct {
	name, src string
	*redis.Script
}

func newScript(name, src string) script {
	return script{name: name, src: src, Script: redis.NewScript(src)}
}

// scripts lists every script of the package (TestScripts loads each on a
// server and checks its builder).
var scripts = []script{createScript, renewScript, repairScript}

// scriptCall is a script with its KEYS and ARGV: what each builder is.
type scriptCall interface {
	script() script
	args() (keys []string, argv []any)
}

// run runs call on c.
func run(ctx context.Context, c redis.Scripter, call scriptCall) *redis.Cmd {
	keys, argv := call.args()
	return call.script().Run(ctx, c, keys, argv...)
}

// createScript makes a new session hash, unless the key exists. The
// deadline is in the key, so the caller picks it; the script refuses one
// more than the tolerance away from Redis's clock (now + lifetime) and
// returns Redis's instead, for the caller to try again with. It writes the
// deadline field, the sentinel field and the fields, and sets the TTL to
// the idle timeout, capped at the deadline. It returns 1 once created, -1
// when the key is taken, or the deadline to use.
var createScript = newScript("create", `
local t = redis.call('TIME')
local d = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
if math.abs(d - tonumber(ARGV[2])) > tonumber(ARGV[5]) then return d end
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[6], '')
for i = 7, #ARGV, 2 do
	redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'LT')
return 1
`)

// createArgs are createScript's arguments.
type createArgs struct {
	key         string // KEYS[1]
	deadlineMS  int64  // ARGV[2] (ARGV[1] is deadlineField)
	idleMS      int64  // ARGV[3]
	lifetimeMS  int64  // ARGV[4]
	toleranceMS int64  // ARGV[5] (ARGV[6] is sentinelField)
	fields      []any  // field, value pairs: ARGV[7] on
}

func (createArgs) script() script { return createScript }

func (a createArgs) args() ([]string, []any) {
	argv := make([]any, 0, 6+len(a.fields))
	argv = append(argv, deadlineField, a.deadlineMS, a.idleMS, a.lifetimeMS, a.toleranceMS, sentinelField)
	return []string{a.key}, append(argv, a.fields...)
}

// renewScript moves a session to a new key of the same hash tag, keeping
// its data and deadline, and restarts its idle timeout. It returns 1, 0
// when the old key holds no session, or -1 when the new key is taken.
var renewScript = newScript("renew", `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], ARGV[2], 'LT')
return 1
`)

// renewArgs are renewScript's arguments.
type renewArgs struct {
	from, to   string // KEYS[1], KEYS[2]
	deadlineMS int64  // ARGV[2] (ARGV[1] is deadlineField)
	idleMS     int64  // ARGV[3]
}

func (renewArgs) script() script { return renewScript }

func (a renewArgs) args() ([]string, []any) {
	return []string{a.from, a.to}, []any{deadlineField, a.deadlineMS, a.idleMS}
}

// repairScript settles a key that a write found was no session: the
// write's HSET created it, or found what an earlier such write left. A key
// without the deadline field is deleted and 0 returned; a session (which
// only a broken random source could have put there in the meantime) is
// left alone and 1 returned.
var repairScript = newScript("repair", `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
redis.call('DEL', KEYS[1])
return 0
`)

// repairArgs are repairScript's arguments.
type repairArgs struct {
	key string // KEYS[1] (ARGV[1] is deadlineField)
}

func (repairArgs) script() script { return repairScript }

func (a repairArgs) args() ([]string, []any) {
	return []string{a.key}, []any{deadlineField}
}
