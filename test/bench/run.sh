#!/usr/bin/env bash
# Builds rlfs, a profiling build of rlfs and the bench program, runs every
# benchmark (about 8 minutes on 2 cores), prints the table on stdout and
# regenerates docs/benchmarks.md. Extra arguments go to `bench run`, e.g.
#   bash test/bench/run.sh -rounds 3 -waiters 2000
#   bash test/bench/run.sh -only s1,s2 -s2-sizes 0,1000,5000
# Comparing with an older commit (issue 16: no figure more than 10% worse):
#   bash test/bench/run.sh -before fd1802e [-only rounds,units,fleet,s1,s2]
# builds cmd/rlfs of that commit too (from `git archive`, the work tree is
# left alone), measures both in the same rounds and writes
# docs/benchmarks-before-after.md instead, with a table "before → after".
# Run as root (the daemons mount with mount(2)); needs /dev/fuse, python3
# and, for the fleet and size rows (r, x, s), redis-server 7 on PATH (the
# bench starts its own on free loopback ports; -redis-server PATH names
# another binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
bin=$(mktemp -d "${TMPDIR:-/tmp}/rlfs-bench-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
root=$(pwd)
cmdline="bash test/bench/run.sh${*:+ $*}"
before=""
if [ "${1:-}" = "-before" ] || [ "${1:-}" = "--before" ]; then
	before=${2:?"-before needs a commit, such as fd1802e"}
	shift 2
fi
cat >"$bin/overlay.json" <<JSON
{"Replace": {"$root/cmd/rlfs/zz_bench_profile_hook.go": "$root/test/bench/profile_hook.go.in"}}
JSON
started=$(date +%s)
go build -o "$bin/rlfs" ./cmd/rlfs
go build -overlay "$bin/overlay.json" -o "$bin/rlfs-prof" ./cmd/rlfs
go build -o "$bin/bench" ./test/bench
doc=docs/benchmarks.md
extra=()
if [ -n "$before" ]; then
	mkdir "$bin/before-src"
	git archive "$before" | tar -x -C "$bin/before-src"
	(cd "$bin/before-src" && go build -o "$bin/rlfs-before" ./cmd/rlfs)
	doc=docs/benchmarks-before-after.md
	dirty=""
	git diff --quiet HEAD -- . || dirty=" with uncommitted changes"
	extra=(-rlfs-before "$bin/rlfs-before" -before-label "commit $(git rev-parse --short "$before")"
		-after-label "the work tree at HEAD $(git rev-parse --short HEAD)$dirty")
fi
echo "bench: built in $(( $(date +%s) - started ))s" >&2
"$bin/bench" run -rlfs "$bin/rlfs" -rlfs-prof "$bin/rlfs-prof" -doc "$doc" "${extra[@]}" -command "$cmdline" "$@"
