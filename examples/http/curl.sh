#!/usr/bin/env bash
# curl.sh — curl under an rlfs meter, where a 429 pauses every caller of the
# meter, not only this script.
#
# Each call holds the meter while it runs and reads the answer's headers:
#
#     exec 3<>"$RLFS_MNT/api/acquire"                        # wait for a grant
#     code=$(curl -sS -D "$hdr" -o "$body" -w '%{http_code}' "$API_URL")
#     if [ "$code" = 429 ]; then                              # the server says: slow down
#         echo "retry-after $(retry_after "$hdr")" >&3        # pause the meter for that
#     fi
#     exec 3>&-                                               # completion
#
# `<>` opens the descriptor for reading and writing (O_RDWR), which a
# `retry-after` line needs. The line pauses the meter for exactly what the
# server said in its Retry-After header (seconds, or an HTTP-date), capped at
# the meter's max_pause: every process waiting on the meter, on this host or
# any host of a fleet, waits for the pause, and keeps its place in the queue.
# The script retries at once: its next open is the one that waits. A 429 or
# 503 without Retry-After pauses for FALLBACK_PAUSE.
#
# Without a line of script, rlfs run does the same for a curl command line:
# see curl-rlfs-run.sh.
#
# Run it:  rlfs mount --meter 'api=concurrency=1' /mnt/rl &   then
#          API_URL=http://127.0.0.1:8080/ ./curl.sh
# Env:     RLFS_MNT (default /mnt/rl), METER (default api), API_URL (required),
#          REQUESTS (default 5), MAX_RETRIES (default 5: retries of one
#          request before giving up), FALLBACK_PAUSE (default 5s)
#
# Prints one line per answer, "request I: STATUS ...", and exits 0 when every
# request got a 2xx; 1 otherwise.
set -eu

mnt=${RLFS_MNT:-/mnt/rl}
meter=$mnt/${METER:-api}
url=${API_URL:-}
requests=${REQUESTS:-5}
max_retries=${MAX_RETRIES:-5}
fallback=${FALLBACK_PAUSE:-5s}

if [ -z "$url" ]; then
	echo "curl.sh: set API_URL, such as http://127.0.0.1:8080/" >&2
	exit 1
fi
if [ ! -e "$meter/acquire" ]; then
	echo "curl.sh: no meter at $meter; start rlfs with --meter '${METER:-api}=concurrency=1'" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
hdr=$work/headers
body=$work/body

# retry_after FILE: the Retry-After of the last response in a header dump
# (curl -D), without its CR; empty if it has none.
retry_after() {
	awk 'toupper(substr($0, 1, 12)) == "RETRY-AFTER:" { v = substr($0, 13); sub(/^[ \t]+/, "", v); sub(/[ \t\r]+$/, "", v) }
		/^HTTP\// { v = "" }
		END { print v }' "$1"
}

# call I: one attempt of request I, holding the meter; sets code to the
# answer's status (000: no answer).
call() {
	local i=$1 value
	exec 3<>"$meter/acquire" # blocks until the meter grants
	code=$(curl -sS -D "$hdr" -o "$body" -w '%{http_code}' "$url") || code=000
	case $code in
	429 | 503)
		value=$(retry_after "$hdr")
		value=${value:-$fallback}
		if echo "retry-after $value" >&3 2>/dev/null; then
			echo "request $i: $code, retry-after $value: meter paused"
		else # EINVAL: a value the meter cannot read
			echo "request $i: $code, retry-after '$value' refused; pausing $fallback"
			echo "retry-after $fallback" >&3
		fi
		;;
	*) echo "request $i: $code $(cat "$body" 2>/dev/null)" ;;
	esac
	exec 3>&-
}

ok=0
throttled=0
for i in $(seq "$requests"); do
	for _ in $(seq 0 "$max_retries"); do
		call "$i"
		case $code in 429 | 503) throttled=$((throttled + 1)) ;; *) break ;; esac
	done
	case $code in 2??) ok=$((ok + 1)) ;; esac
done
echo "curl.sh: $ok of $requests requests done, $throttled throttled answers"
[ "$ok" -eq "$requests" ]
