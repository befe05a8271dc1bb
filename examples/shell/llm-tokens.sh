#!/usr/bin/env bash
# llm-tokens.sh — parallel LLM requests under a quota of requests AND
# tokens ("60 requests and 90,000 tokens a minute"), where a request's real
# cost is known only once its answer is back.
#
# Each request is one weighted call of the meter "llm":
#
#     exec 3<>"$RLFS_MNT/llm/acquire@$MAX_TOKENS"  # reserve max_tokens; waits for room
#     ...call the API...                           # the answer says how many tokens it used
#     echo "$used" >&3                             # settle: the meter counts what was used
#     exec 3>&-                                    # last close: the completion is recorded
#
# `<>` opens the descriptor for reading and writing: reading it gives the
# grant line ("granted TIME waited W meter llm call N pid P cost 1000"),
# writing a number sets the call's actual cost. The unused part of the
# reservation is given back at once, so the next request waiting for room
# may go before this one has even closed. Without the write, the estimate
# (max_tokens) would count in full.
#
# With llm=10/2s,units:3000/2s,concurrency=0 (shaped like 60/1m and
# 90,000 tokens/1m, scaled down to run in seconds), 8 requests reserving
# 1000 tokens each start at once: 3 fit, the others wait; as each answer
# comes back (0.3 s) and settles at its usage (280 to 510 tokens), the
# freed tokens let the next ones in. Any 6 of the usages sum past 2000, so
# the 7th request must wait until the first answers stop counting, 2 s
# after they completed: the run takes a little under 3 s, where counting
# every reservation in full would take about 4.9 s.
#
# The API is simulated: a short sleep, then a usage taken from a fixed
# list (so that the run is the same every time). Put your curl line there,
# and take the usage from the answer (usage.total_tokens).
#
# Run it:  rlfs mount --meter 'llm=10/2s,units:3000/2s,concurrency=0' /mnt/rl & rlfs wait /mnt/rl && ./llm-tokens.sh
# Env:     RLFS_MNT (default /mnt/rl), REQUESTS (default 8), MAX_TOKENS (default 1000)
#
# rlfs-test-meter: llm=10/2s,units:3000/2s,concurrency=0
# rlfs-test-min-seconds: 2.6
# rlfs-test-expect-seconds: 3
set -eu

mnt=${RLFS_MNT:-/mnt/rl}
requests=${REQUESTS:-8}
max_tokens=${MAX_TOKENS:-1000}
meter=$mnt/llm
usages=(350 420 280 510 300 460 390 330) # what the simulated answers report

if [ ! -e "$meter/acquire" ]; then
	echo "llm-tokens: no meter at $meter; start rlfs with --meter 'llm=10/2s,units:3000/2s,concurrency=0'" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=$work/results

# request I: one API request of at most max_tokens.
request() {
	local i=$1 grant used
	exec 3<>"$meter/acquire@$max_tokens" # a failed open (E2BIG: more than the meter ever allows) stops it: set -e
	IFS= read -r grant <&3
	sleep 0.3 # the call
	used=${usages[(i - 1) % ${#usages[@]}]}
	echo "$used" >&3 # settle: the rest of the reservation is free again
	exec 3>&-
	printf 'request %d: reserved %d, used %d tokens; %s\n' "$i" "$max_tokens" "$used" "$grant" >>"$results"
}

start=$(date +%s.%N)
pids=()
for i in $(seq "$requests"); do
	request "$i" &
	pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
	wait "$pid" || failed=$((failed + 1))
done
end=$(date +%s.%N)

sort -k 9,9 "$results" # by grant time
grep '^window units' "$meter/status" | sed 's/^/llm-tokens: now /'
done_n=$(wc -l <"$results")
used=$(awk '{ s += $6 } END { print s + 0 }' "$results")
awk -v s="$start" -v e="$end" -v n="$done_n" -v r="$((done_n * max_tokens))" -v u="$used" \
	'BEGIN { printf "llm-tokens: %d requests in %.2fs; %d tokens reserved, %d used and counted\n", n, e - s, r, u }'
if [ "$failed" -ne 0 ] || [ "$done_n" -ne "$requests" ]; then
	echo "llm-tokens: only $done_n of $requests requests done" >&2
	exit 1
fi
