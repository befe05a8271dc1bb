#!/usr/bin/env bash
# flock-style.sh — rate-limit any command with flock(1), unchanged:
#
#     flock "$RLFS_MNT/api/acquire" curl -s https://api.example.com/...
#
# flock(1) opens the file (which blocks until the meter grants a call), runs
# the command while holding it, and closes it when the command exits: that
# close is the call's completion. No wrapper script, no client library.
#
# flock(1) also takes a kernel flock(2) lock on the file, as it always does.
# That lock is exclusive, so `flock FILE cmd` runs one command at a time on
# this host even where the meter would allow more at once (here the meter is
# concurrency=0). Use `flock -s FILE cmd` (shared lock) to let the meter alone
# decide how many run together. flock's -n and -w do not apply to the wait
# for the meter (it happens in open(2), before flock starts its timer): give
# the meter max_wait=D, or wrap the command in timeout(1).
#
# Here six 0.2 s "API calls" are started at once under api=4/1s,concurrency=0:
# the flock lock runs them one after the other; the first four fit in the
# window, the fifth waits until 1 s after the first one completed. About 1.6 s.
#
# Run it:  rlfs mount --meter 'api=4/1s,concurrency=0' /mnt/rl & rlfs wait /mnt/rl && ./flock-style.sh
# Env:     RLFS_MNT (default /mnt/rl)
#
# rlfs-test-meter: api=4/1s,concurrency=0
# rlfs-test-min-seconds: 1.5
# rlfs-test-expect-seconds: 1.6
set -eu

mnt=${RLFS_MNT:-/mnt/rl}
meter=$mnt/api

if [ ! -e "$meter/acquire" ]; then
	echo "flock-style: no meter at $meter; start rlfs with --meter 'api=4/1s,concurrency=0'" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
calls=$work/calls

# The command flock runs: a 0.2 s call to the outside, logged.
export calls
# shellcheck disable=SC2016 # expanded by the sh that flock runs
call='sleep 0.2; printf "%s call %s\n" "$(date +%H:%M:%S.%N | cut -c1-12)" "$1" >>"$calls"'

start=$(date +%s.%N)
pids=
for i in 1 2 3 4 5 6; do
	flock "$meter/acquire" sh -c "$call" call "$i" &
	pids="$pids $!"
done
for p in $pids; do
	wait "$p" # a failed flock (or call) fails the script
done
end=$(date +%s.%N)

cat "$calls"
n=$(wc -l <"$calls")
awk -v s="$start" -v e="$end" -v n="$n" 'BEGIN { printf "flock-style: %d calls in %.2fs\n", n, e - s }'
if [ "$n" -ne 6 ]; then
	echo "flock-style: only $n of 6 calls ran" >&2
	exit 1
fi
