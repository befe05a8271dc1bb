#!/usr/bin/env bash
# Builds rlfs, a profiling build of rlfs and the bench program, runs every
# benchmark (about 5 minutes on 2 cores), prints the table on stdout and
# regenerates docs/benchmarks.md. Extra arguments go to `bench run`, e.g.
#   bash test/bench/run.sh -rounds 3 -waiters 2000
# Run as root (the daemons mount with mount(2)); needs /dev/fuse, python3
# and, for the fleet rows (r, x), redis-server 7 on PATH (the bench starts
# its own on a free loopback port; -redis-server PATH names another binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
bin=$(mktemp -d "${TMPDIR:-/tmp}/rlfs-bench-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
root=$(pwd)
cat >"$bin/overlay.json" <<JSON
{"Replace": {"$root/cmd/rlfs/zz_bench_profile_hook.go": "$root/test/bench/profile_hook.go.in"}}
JSON
started=$(date +%s)
go build -o "$bin/rlfs" ./cmd/rlfs
go build -overlay "$bin/overlay.json" -o "$bin/rlfs-prof" ./cmd/rlfs
go build -o "$bin/bench" ./test/bench
echo "bench: built in $(( $(date +%s) - started ))s" >&2
"$bin/bench" run -rlfs "$bin/rlfs" -rlfs-prof "$bin/rlfs-prof" -doc docs/benchmarks.md \
	-command "bash test/bench/run.sh${*:+ $*}" "$@"
