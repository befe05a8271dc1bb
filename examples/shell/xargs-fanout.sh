#!/usr/bin/env bash
# xargs-fanout.sh — fan 12 jobs out over 8 parallel workers (xargs -P 8) and
# keep them, together, under one API quota.
#
# Each job first waits for the meter, then does its work:
#
#     granted=$(cat "$RLFS_MNT/api/acquire")   # wait for a slot; instant call
#     ...work...
#
# `cat` prints the daemon's grant line ("granted TIME waited W meter api call
# N pid P"); each job logs it with its result, so the output shows when the
# meter let each job go and how long it waited.
#
# With api=4/1s,concurrency=0 (4 calls per second, no cap on parallelism) the
# 12 jobs are let through in three batches of four, about 1 s apart: the run
# takes a little over 2 s, whatever -P is. xargs only decides how many
# processes exist; rlfs decides when each may call.
#
# `cat` closes at once, so each call counts as completed at its grant and the
# next batch may start 1 s later even if the work is still running. If the
# quota must count from the end of the work (the provider counts requests it
# has finished), hold the meter during the work instead: see
# hold-for-duration.sh or flock-style.sh.
#
# The work is simulated: a short sleep, then a line appended to a results file
# in a temporary directory. Put your curl line there.
#
# Run it:  rlfs mount --meter 'api=4/1s,concurrency=0' /mnt/rl & rlfs wait /mnt/rl && ./xargs-fanout.sh
# Env:     RLFS_MNT (default /mnt/rl), JOBS (default 12)
#
# rlfs-test-meter: api=4/1s,concurrency=0
# rlfs-test-min-seconds: 2.2
# rlfs-test-expect-seconds: 2.3
set -eu

mnt=${RLFS_MNT:-/mnt/rl}
jobs=${JOBS:-12}
meter=$mnt/api

if [ ! -e "$meter/acquire" ]; then
	echo "xargs-fanout: no meter at $meter; start rlfs with --meter 'api=4/1s,concurrency=0'" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=$work/results

# One job: wait for the meter, then work. Any failure (the open returning
# EIO, ETIMEDOUT, ...) makes the job exit non-zero, and xargs then exits 123.
export meter results
# shellcheck disable=SC2016 # expanded by each job's sh
job='
	set -eu
	granted=$(cat "$meter/acquire")
	sleep 0.3
	printf "job %s done at %s; %s\n" "$1" "$(date +%H:%M:%S.%N | cut -c1-12)" "$granted" >>"$results"
'

start=$(date +%s.%N)
seq "$jobs" | xargs -P 8 -I{} sh -c "$job" job {}
end=$(date +%s.%N)

sort -k 7,7 "$results" # by grant time
done_n=$(wc -l <"$results")
awk -v s="$start" -v e="$end" -v n="$done_n" 'BEGIN { printf "xargs-fanout: %d jobs in %.2fs\n", n, e - s }'
if [ "$done_n" -ne "$jobs" ]; then
	echo "xargs-fanout: only $done_n of $jobs jobs finished" >&2
	exit 1
fi
