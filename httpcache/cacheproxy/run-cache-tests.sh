#!/usr/bin/env bash
# run-cache-tests.sh runs the HTTP cache test suite (http-tests/cache-tests,
# the suite behind cache-tests.fyi) against cacheproxy, a reverse proxy
# wrapped in httpcache's middleware, and prints the required tests that
# pass and fail.
#
#   run-cache-tests.sh <suite checkout> [test id]
#
# The suite is not vendored here. Give the path of a checkout of
# https://github.com/http-tests/cache-tests on which `npm install` has run
# (it needs Node.js 20 or later). The npm package http-cache-tests is an
# older release of the same suite with fewer tests; its layout differs and
# this script does not support it.
#
# With a test id, the suite runs that one test and prints the requests and
# responses it saw. Without, it runs every test, writes the raw results to
# $RESULTS (default: cache-tests-results.json in the current directory) and
# prints the summary of summary.mjs.
#
# Environment: ORIGIN_PORT (default 18000) and PROXY_PORT (18081) choose the
# ports; REDIS_URL makes the proxy use a real Redis instead of an embedded
# miniredis.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
suite=$(cd "$1" && pwd)
id=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
origin_port=${ORIGIN_PORT:-18000}
proxy_port=${PROXY_PORT:-18081}
results=${RESULTS:-$PWD/cache-tests-results.json}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

[[ -f $suite/tests/index.mjs && -d $suite/node_modules ]] ||
  { echo "$suite: not a cache-tests checkout with node_modules (run npm install there)" >&2; exit 1; }

(cd "$here" && go build -o "$work/cacheproxy" .)

# The suite's origin server reads its settings from npm's environment.
(cd "$suite" && npm_config_protocol=http npm_config_port=$origin_port \
  npm_config_pidfile=$work/server.pid exec node test-engine/server/server.mjs) >"$work/server.log" 2>&1 &
pids+=($!)
"$work/cacheproxy" -listen "127.0.0.1:$proxy_port" -origin "http://127.0.0.1:$origin_port" \
  ${REDIS_URL:+-redis "$REDIS_URL"} 2>"$work/proxy.log" &
pids+=($!)

# Wait for both to listen, by polling (at most 30 s).
for port in "$origin_port" "$proxy_port"; do
  for i in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    if [[ $i == 300 ]]; then
      echo "nothing listens on port $port" >&2
      cat "$work/server.log" "$work/proxy.log" >&2
      exit 1
    fi
    sleep 0.1
  done
done

cd "$suite"
if [[ -n $id ]]; then
  npm_config_base=http://127.0.0.1:$proxy_port npm_config_id=$id node --no-warnings test-engine/cli.mjs
else
  npm_config_base=http://127.0.0.1:$proxy_port npm_package_config_id= \
    node --no-warnings test-engine/cli.mjs >"$results"
  node "$here/summary.mjs" "$suite" "$results"
fi
