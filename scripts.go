package cachemgr

import (
	"context"
	"errors"

	"github.com/cachemgr/cachemgr/internal/keys"
	"github.com/redis/go-redis/v9"
)

// This file holds every Lua script the library runs, each with a builder:
// a struct whose fields are the script's KEYS and ARGV by name, and whose
// cmd method lays them out in the order the script reads them. Call sites
// fill a builder (or pass it to runScript), never a positional list.

// script is a Lua script, run by its SHA-1 hash; doAll sends the source
// when a server does not know it yet (first use, SCRIPT FLUSH, a restart,
// a new cluster node).
type script struct {
	name, src, hash string
}

// newScript returns the script with source src. It registers nothing:
// scripts lists the scripts, and scriptSources is built from that list.
func newScript(name, src string) script {
	return script{name: name, src: src, hash: sha1hex(src)}
}

// cmd returns an EVALSHA command for s with keys and args.
func (s script) cmd(ctx context.Context, keys []string, args ...any) *redis.Cmd {
	out := make([]any, 0, 3+len(keys)+len(args))
	out = append(out, "evalsha", s.hash, len(keys))
	for _, k := range keys {
		out = append(out, k)
	}
	return redis.NewCmd(ctx, append(out, args...)...)
}

// scripts is every script the library runs: the registry that the NOSCRIPT
// fallback reads. A script missing here cannot be re-sent after a SCRIPT
// FLUSH (TestScriptBuilders checks each builder's script is listed).
var scripts = []script{
	claimScript, releaseScript, refreshClaimScript, writeBackScript,
	dropScript, deleteScript, versionInitScript, bumpScript,
	tagWriteScript, setStampedScript, tagLowerScript, tagInvalidateScript,
}

// scriptSources maps each script's hash to its source, for that fallback.
// It is built once, from scripts, and never changes.
var scriptSources = sourcesOf(scripts)

func sourcesOf(list []script) map[string]string {
	out := make(map[string]string, len(list))
	for _, s := range list {
		out[s.hash] = s.src
	}
	return out
}

// scriptCall is a script with its KEYS and ARGV: what each builder is.
type scriptCall interface {
	cmd(ctx context.Context) *redis.Cmd
}

// runScript runs call and returns its reply; the error is the reply's error
// or ErrUnavailable.
func (m *Manager) runScript(ctx context.Context, call scriptCall) (*redis.Cmd, error) {
	cmd := call.cmd(ctx)
	if err := m.doAll(ctx, cmd); err != nil {
		return cmd, err
	}
	if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return cmd, err
	}
	return cmd, nil
}

// dataKeys returns the keys the lease scripts take for data key rkey: the
// key, its invalidation marker and its lease.
func dataKeys(rkey string) []string {
	return []string{rkey, keys.Marker(rkey), keys.Lease(rkey)}
}

// claimScript re-reads a missing key from inside the flight and, if it is
// still missing, takes the lease (or finds that the caller holds it: a
// claim sent again after its reply was lost). A claim that finds the lease
// held by another process sets the waiters key (KEYS[4]) for the lease's
// life, so the holder's write-back tells the waiters when the value is
// there (see writeBackScript). It creates the invalidation
// marker when there is none, so a marker lost during the load (eviction, a
// restart with empty data) fails the write-back instead of passing for
// "unchanged". A
// claim that runs after its deadline (by the server's clock) takes no
// lease. It returns {value or nil, marker, 1 if the caller may load, the
// server's time in Unix µs}: the load's tag stamp comes from the same clock
// as InvalidateTags' stamps.
var claimScript = newScript("claim", `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = redis.call('GET', KEYS[1])
local m = redis.call('GET', KEYS[2])
if v then return {v, m or false, 0, now} end
if not m then
  m = ARGV[3]
  redis.call('SET', KEYS[2], m, 'PX', ARGV[4])
end
if ARGV[2] == '0' then return {false, m, 1, now} end
if math.floor(now / 1000) > tonumber(ARGV[5]) then return {false, m, 0, now} end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {false, m, 1, now} end
if redis.pcall('GET', KEYS[3]) == ARGV[1] then return {false, m, 1, now} end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
return {false, m, 0, now}`)

// claimArgs are claimScript's arguments.
type claimArgs struct {
	key         string // KEYS[1], the data key (KEYS[2] its marker, KEYS[3] its lease, KEYS[4] its waiters)
	token       string // ARGV[1], the lease holder's token
	leaseMS     int64  // ARGV[2], the lease's life; 0: take no lease
	newMarker   string // ARGV[3], the marker to create when there is none
	markerTTLMS int64  // ARGV[4], that marker's life
	deadlineMS  int64  // ARGV[5], Unix ms after which no lease is taken
}

func (a claimArgs) cmd(ctx context.Context) *redis.Cmd {
	return claimScript.cmd(ctx, append(dataKeys(a.key), keys.Waiters(a.key)), a.token, a.leaseMS, a.newMarker, a.markerTTLMS, a.deadlineMS)
}

// releaseScript deletes a lease only if the caller still holds it: a
// holder that stalled past its lease never frees the next holder's. Other
// processes waiting for the lease are told (see notifyWaiters).
var releaseScript = newScript("release", `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])`+notifyWaiters("KEYS[2]", "KEYS[3]", "ARGV[2]")+`
  return 1
end
return 0`)

// notifyWaiters is the Lua that a script which frees a lease runs: when
// waiters (the key named by the expression waiters) are set, it deletes
// them and publishes a "filled" event of data key dataKey on channel, so
// that their claims run again at once instead of at their next poll. A
// PUBLISH that fails (an ACL without pub/sub) does not fail the script,
// which has done its work by then: the waiters poll.
func notifyWaiters(waiters, dataKey, channel string) string {
	return `
  if ` + channel + ` ~= '' and redis.call('DEL', ` + waiters + `) == 1 then
    redis.pcall('PUBLISH', ` + channel + `, cjson.encode({o = '~fill', k = 'filled', ks = {` + dataKey + `}}))
  end`
}

// releaseArgs are releaseScript's arguments.
type releaseArgs struct {
	key     string // the data key; KEYS[1] is its lease, KEYS[2] its waiters, KEYS[3] itself
	token   string // ARGV[1], the holder's token
	channel string // ARGV[2], the events channel to tell waiters on; "" none
}

func (a releaseArgs) cmd(ctx context.Context) *redis.Cmd {
	return releaseScript.cmd(ctx, []string{keys.Lease(a.key), keys.Waiters(a.key), a.key}, a.token, a.channel)
}

// refreshClaimScript takes the lease to refresh a stale value, unless the
// value changed meanwhile (someone refreshed it: -1) or another process
// holds the lease or the claim runs past its deadline (0). On success it
// returns {1, marker, the server's time in Unix µs}, creating the marker as
// claimScript does.
var refreshClaimScript = newScript("refreshClaim", `
local cur = redis.call('GET', KEYS[1])
if cur and redis.sha1hex(cur) ~= ARGV[3] then return {-1, false} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if math.floor(now / 1000) > tonumber(ARGV[6]) then return {0, false} end
if ARGV[2] ~= '0' and not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, false} end
local m = redis.call('GET', KEYS[2])
if not m then
  m = ARGV[4]
  redis.call('SET', KEYS[2], m, 'PX', ARGV[5])
end
return {1, m, now}`)

// refreshClaimArgs are refreshClaimScript's arguments.
type refreshClaimArgs struct {
	key         string // KEYS[1], the data key (KEYS[2] its marker, KEYS[3] its lease)
	token       string // ARGV[1], the lease holder's token
	leaseMS     int64  // ARGV[2], the lease's life; 0: take no lease
	staleSHA1   string // ARGV[3], SHA-1 (hex) of the stale value to replace
	newMarker   string // ARGV[4], the marker to create when there is none
	markerTTLMS int64  // ARGV[5], that marker's life
	deadlineMS  int64  // ARGV[6], Unix ms after which the claim fails
}

func (a refreshClaimArgs) cmd(ctx context.Context) *redis.Cmd {
	return refreshClaimScript.cmd(ctx, dataKeys(a.key), a.token, a.leaseMS, a.staleSHA1, a.newMarker, a.markerTTLMS, a.deadlineMS)
}

// writeBackScript stores a loaded value only if the key's invalidation
// marker is what it was before the load (else -1), and either no value
// arrived meanwhile or, for a refresh, the value is still the stale one it
// replaces (else 0). A load (not a refresh) that does not write returns
// {rc, the value the key holds} when it holds one: what a read would find
// now. It releases the lease if the caller still holds it, and then tells
// the processes waiting for it (notifyWaiters).
var writeBackScript = newScript("writeBack", `
local rc = -1
if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
  if ARGV[5] == '' then
    rc = redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX') and 1 or 0
  else
    local cur = redis.call('GET', KEYS[1])
    rc = 0
    if not cur or redis.sha1hex(cur) == ARGV[5] then
      redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
      rc = 1
    end
  end
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])`+notifyWaiters("KEYS[4]", "KEYS[1]", "ARGV[6]")+`
end
if rc ~= 1 and ARGV[5] == '' then
  local cur = redis.call('GET', KEYS[1])
  if cur then return {rc, cur} end
end
return rc`)

// writeBackArgs are writeBackScript's arguments.
type writeBackArgs struct {
	key       string // KEYS[1], the data key (KEYS[2] its marker, KEYS[3] its lease)
	marker    string // ARGV[1], the marker read before the load
	value     []byte // ARGV[2], the envelope to store
	ttlMS     int64  // ARGV[3], its life in Redis
	token     string // ARGV[4], the lease to release; "" for none
	staleSHA1 string // ARGV[5], for a refresh the stale value's SHA-1 (hex); "" otherwise
	channel   string // ARGV[6], the events channel to tell waiters on; "" none
}

func (a writeBackArgs) cmd(ctx context.Context) *redis.Cmd {
	return writeBackScript.cmd(ctx, append(dataKeys(a.key), keys.Waiters(a.key)), a.marker, a.value, a.ttlMS, a.token, a.staleSHA1, a.channel)
}

// dropScript deletes a key only if it still holds the bytes that were
// found unusable (undecodable, or invalidated by a tag), so a good value
// written meanwhile survives.
var dropScript = newScript("drop", `
local v = redis.call('GET', KEYS[1])
if v and redis.sha1hex(v) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// dropArgs are dropScript's arguments.
type dropArgs struct {
	key     string // KEYS[1], the data key
	badSHA1 string // ARGV[1], SHA-1 (hex) of the unusable bytes
}

func (a dropArgs) cmd(ctx context.Context) *redis.Cmd {
	return dropScript.cmd(ctx, []string{a.key}, a.badSHA1)
}

// deleteScript removes a value and rotates its invalidation marker, so a
// load that started before the delete cannot write its result back.
var deleteScript = newScript("delete", `
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1`)

// deleteArgs are deleteScript's arguments.
type deleteArgs struct {
	key         string // KEYS[1], the data key (KEYS[2] its marker)
	newMarker   string // ARGV[1], the marker that replaces the current one
	markerTTLMS int64  // ARGV[2], its life
}

func (a deleteArgs) cmd(ctx context.Context) *redis.Cmd {
	return deleteScript.cmd(ctx, []string{a.key, keys.Marker(a.key)}, a.newMarker, a.markerTTLMS)
}

// versionInitScript returns the current version, creating one if there is
// none.
var versionInitScript = newScript("versionInit", `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`)

// versionInitArgs are versionInitScript's arguments.
type versionInitArgs struct {
	key        string // KEYS[1], the cache's version key
	newVersion string // ARGV[1], the version to create when there is none
	ttlMS      int64  // ARGV[2], its life
}

func (a versionInitArgs) cmd(ctx context.Context) *redis.Cmd {
	return versionInitScript.cmd(ctx, []string{a.key}, a.newVersion, a.ttlMS)
}

// bumpScript moves a cache to a new namespace version and returns it. The
// version is made by the script, from seed and the server's time, so each
// run of it makes another. A Bump whose first attempt ran but lost its
// reply is sent again by the write retry; if another Bump (another
// writer's, or a queued one's retry) landed in between, the late attempt
// makes yet another empty namespace. Were the version the caller's, it
// would bring back the namespace the other Bump retired, with the entries
// loaded into it before the other Bump's change to the source.
var bumpScript = newScript("bump", `
local t = redis.call('TIME')
local v = string.sub(redis.sha1hex(ARGV[1] .. ':' .. t[1] .. ':' .. t[2]), 1, 16)
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return v`)

// bumpArgs are bumpScript's arguments.
type bumpArgs struct {
	key   string // KEYS[1], the cache's version key
	seed  string // ARGV[1], random: the version is unique to the caller and the run
	ttlMS int64  // ARGV[2], the version's life
}

func (a bumpArgs) cmd(ctx context.Context) *redis.Cmd {
	return bumpScript.cmd(ctx, []string{a.key}, a.seed, a.ttlMS)
}

// tagWriteScript makes sure a tag's stamp exists before an entry carrying
// the tag is written, creating it with the given stamp (see tagWrites), or
// when that is empty with the server's time (µs) less one and the skew
// allowance (see tagPrepares), keeps it at least as long as the entry
// lives, and returns it.
var tagWriteScript = newScript("tagWrite", `
local v = redis.call('GET', KEYS[1])
if not v then
  local s = tonumber(ARGV[1])
  if ARGV[1] == '' then
    local t = redis.call('TIME')
    s = tonumber(t[1]) * 1000000 + tonumber(t[2]) - 1 - tonumber(ARGV[3])
  end
  redis.call('SET', KEYS[1], s, 'PX', ARGV[2])
  return s
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return tonumber(v) or 0`)

// tagWriteArgs are tagWriteScript's arguments.
type tagWriteArgs struct {
	key      string // KEYS[1], the tag's stamp key
	byServer bool   // create a missing stamp from the server's clock, not stamp
	stamp    int64  // ARGV[1], the stamp to create (sent as "" when byServer)
	keepMS   int64  // ARGV[2], the least life to leave the stamp
	skewUS   int64  // ARGV[3], with byServer, µs subtracted from the server's time
}

func (a tagWriteArgs) cmd(ctx context.Context) *redis.Cmd {
	if a.byServer {
		return tagWriteScript.cmd(ctx, []string{a.key}, "", a.keepMS, a.skewUS)
	}
	return tagWriteScript.cmd(ctx, []string{a.key}, a.stamp, a.keepMS, a.skewUS)
}

// setStampedScript stores a tagged value written by Set, putting the
// server's time (Unix µs, less a skew allowance) into the tag section's
// stamp at the given byte offset: the entry is stamped by the same clock
// as InvalidateTags. It returns the stamp. (Set uses no allowance: on a
// Cluster, a Set just after an InvalidateTags stays readable, and one
// racing it on a node whose clock is behind by less than the skew may
// survive it.)
var setStampedScript = newScript("setStamped", `
local t = redis.call('TIME')
local n = tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(ARGV[4])
local s, x = '', n
for i = 1, 8 do
  s = string.char(x % 256) .. s
  x = math.floor(x / 256)
end
local off = tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.sub(ARGV[1], 1, off) .. s .. string.sub(ARGV[1], off + 9), 'PX', ARGV[3])
return n`)

// setStampedArgs are setStampedScript's arguments.
type setStampedArgs struct {
	key         string // KEYS[1], the data key
	value       []byte // ARGV[1], the envelope to store
	stampOffset int    // ARGV[2], the byte offset of its 8-byte tag stamp
	ttlMS       int64  // ARGV[3], its life in Redis
	skewUS      int64  // ARGV[4], µs subtracted from the server's time
}

func (a setStampedArgs) cmd(ctx context.Context) *redis.Cmd {
	return setStampedScript.cmd(ctx, []string{a.key}, a.value, a.stampOffset, a.ttlMS, a.skewUS)
}

// tagLowerScript lowers a stamp that a load's write-back created equal to
// its entry's stamp to just below it, unless an invalidation moved it
// since.
var tagLowerScript = newScript("tagLower", `
if tonumber(redis.call('GET', KEYS[1]) or '') == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1] - 1, 'KEEPTTL')
  return 1
end
return 0`)

// tagLowerArgs are tagLowerScript's arguments.
type tagLowerArgs struct {
	key   string // KEYS[1], the tag's stamp key
	stamp int64  // ARGV[1], the stamp the write-back created
}

func (a tagLowerArgs) cmd(ctx context.Context) *redis.Cmd {
	return tagLowerScript.cmd(ctx, []string{a.key}, a.stamp)
}

// tagInvalidateScript moves a tag's stamp forward to the server's time in
// Unix µs (or just past its current value), never back.
var tagInvalidateScript = newScript("tagInvalidate", `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now <= cur then now = cur + 1 end
local ttl = redis.call('PTTL', KEYS[1])
local keep = tonumber(ARGV[1])
if ttl > keep then keep = ttl end
redis.call('SET', KEYS[1], now, 'PX', keep)
return now`)

// tagInvalidateArgs are tagInvalidateScript's arguments.
type tagInvalidateArgs struct {
	key    string // KEYS[1], the tag's stamp key
	keepMS int64  // ARGV[1], the least life to leave the stamp
}

func (a tagInvalidateArgs) cmd(ctx context.Context) *redis.Cmd {
	return tagInvalidateScript.cmd(ctx, []string{a.key}, a.keepMS)
}
