#!/usr/bin/env bash
# hold-for-duration.sh — hold a meter for a whole multi-step job, so that a
# second job (another cron run, another user's script) waits until the first
# one is completely done.
#
#     exec 3<"$RLFS_MNT/deploy/acquire"   # take the meter (blocks while held)
#     step 1; step 2; step 3              # all of it is one call
#     exec 3<&-                           # release: the next job may start
#
# deploy=concurrency=1 is rlfs's default spec: a cross-process mutex with no
# rate limit (`mkdir /mnt/rl/deploy` makes the same). Add windows such as
# concurrency=1,4/1h to also cap how often the job may run.
#
# Two jobs of three 0.3 s steps are started at the same time; the second one
# must wait the first one's 0.9 s, so the run takes about 1.8 s. The script
# checks from the jobs' own logs that they never overlapped.
#
# Mind inherited descriptors: a process started while fd 3 is open inherits
# it and keeps the call in progress until it exits too (completion is the
# last close). Start helpers you do not want holding the meter with `3<&-`.
#
# Run it:  rlfs mount --meter 'deploy=concurrency=1' /mnt/rl & rlfs wait /mnt/rl && ./hold-for-duration.sh
# Env:     RLFS_MNT (default /mnt/rl)
#
# rlfs-test-meter: deploy=concurrency=1
# rlfs-test-min-seconds: 1.7
# rlfs-test-expect-seconds: 1.8
set -eu

mnt=${RLFS_MNT:-/mnt/rl}
meter=$mnt/deploy

if [ ! -e "$meter/acquire" ]; then
	echo "hold-for-duration: no meter at $meter; start rlfs with --meter 'deploy=concurrency=1' or run: mkdir $meter" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$work/log

stamp() { date +%s.%N; }

# job NAME: three steps under one hold of the meter. It logs when it got the
# meter and when it was about to give it back.
job() {
	exec 3<"$meter/acquire"
	echo "$1 got $(stamp)" >>"$log"
	for step in build test upload; do
		sleep 0.3 # the step's real work
		echo "$1 $step $(stamp)" >>"$log"
	done
	echo "$1 releasing $(stamp)" >>"$log"
	exec 3<&-
}

start=$(stamp)
job A &
a=$!
job B &
b=$!
sleep 0.2
echo "while one job holds the meter:"
# shellcheck disable=SC2012 # ls -l is the point: owner and mtime
ls -l "$meter/holders" "$meter/waiters" | sed 's/^/    /'
wait "$a"
wait "$b"
end=$(stamp)

awk -v s="$start" '{ printf "    %+.3fs  job %s %s\n", $3 - s, $1, $2 }' "$log"
# The job that got the meter second must have got it after the first one
# released it: compare the two hold intervals.
awk -v s="$start" -v e="$end" '
	$2 == "got"       { got[$1] = $3 }
	$2 == "releasing" { rel[$1] = $3 }
	END {
		if (!("A" in rel) || !("B" in rel)) { print "hold-for-duration: a job did not finish"; exit 1 }
		first = got["A"] < got["B"] ? "A" : "B"; second = first == "A" ? "B" : "A"
		if (got[second] < rel[first]) {
			printf "hold-for-duration: job %s got the meter %.3fs before job %s released it\n", second, rel[first] - got[second], first
			exit 1
		}
		printf "hold-for-duration: job %s waited for job %s (%.3fs after its release); total %.2fs\n", second, first, got[second] - rel[first], e - s
	}' "$log"
