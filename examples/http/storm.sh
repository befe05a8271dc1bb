#!/usr/bin/env bash
# storm.sh — the 429-storm experiment (issue 18): 8 client processes, 60
# requests each, through one meter whose limit is set too high on purpose
# (api=concurrency=0,20/1s), against a local API that accepts 5 requests a
# second (a token bucket, bursts of 5) and answers 429 with Retry-After: 2
# past that. Run twice: without the pause (each client waits out the
# Retry-After it got, alone) and with it (each client writes retry-after to
# its acquire descriptor: the whole meter waits). Prints, for each run,
# requests sent, 429s received (wasted calls), retries, requests the API
# accepted and the wall time, and the machine's load.
#
# Run it from the repository as root (it mounts a daemon of its own under a
# temporary directory, and unmounts it at the end):
#
#     bash examples/http/storm.sh
#
# Env: CLIENTS (8), REQUESTS (60), RATE (5), BURST (5), RETRY_AFTER (2),
#      SPEC (concurrency=0,20/1s). A run takes about CLIENTS*REQUESTS/RATE
#      seconds or more (96 s with the defaults), twice. The API listens on
#      127.0.0.1 only.
set -eu

clients=${CLIENTS:-8}
requests=${REQUESTS:-60}
rate=${RATE:-5}
burst=${BURST:-5}
retry_after=${RETRY_AFTER:-2}
spec=${SPEC:-concurrency=0,20/1s}

cd "$(dirname "$0")/../.."
work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/rlfs" ./cmd/rlfs
go build -o "$work/storm" ./examples/http/storm
"$work/rlfs" mount --db "$work/meters.db" --meter "nopause=$spec" --meter "pause=$spec" "$work/mnt" 2>"$work/rlfs.log" &
pid=$!
for _ in $(seq 300); do
	[ -e "$work/mnt/pause/acquire" ] && break
	sleep 0.1
done
[ -e "$work/mnt/pause/acquire" ] || { cat "$work/rlfs.log" >&2; exit 1; }

echo "machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "API: $rate requests/s, bursts of $burst, 429 with Retry-After: $retry_after; meter: $spec"
for mode in nopause pause; do
	flag=-pause=false
	[ "$mode" = pause ] && flag=-pause=true
	"$work/storm" run -meter "$work/mnt/$mode" "$flag" -clients "$clients" -requests "$requests" \
		-rate "$rate" -burst "$burst" -retry-after "$retry_after"
	grep -E '^(grants_total|pauses_since_start):' "$work/mnt/$mode/status" | sed "s/^/  meter $mode: /" || true
	echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "  daemon log: $(grep -c 'meter paused' "$work/rlfs.log") \"meter paused\" lines"
