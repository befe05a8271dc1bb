#!/usr/bin/env bash
# curl-rlfs-run.sh — curl under an rlfs meter with no script around the
# call: rlfs run holds the meter for curl and, when the answer is a 429 (or
# a 503) with Retry-After, pauses the meter for exactly that before the call
# completes, so every caller of the meter waits, not only this script.
#
#     hdr=$(mktemp)
#     rlfs run --pause-from-file "$hdr" --pause-on-exit 22=5s "$RLFS_MNT/api" -- \
#         curl -fsS -D "$hdr" "$API_URL"
#
# curl -D writes the answer's headers to $hdr; after curl exits, rlfs run
# reads the Retry-After of a 429 or 503 there and writes `retry-after X` to
# its acquire descriptor before it closes it. Another answer (a 404, a 200)
# pauses nothing. --pause-on-exit 22=5s is the fallback for a 429 without a
# Retry-After (curl -f exits 22 on an HTTP error). rlfs run exits with curl's
# status, so the loop below retries when the answer was a 429 or 503: its
# next rlfs run is the one that waits for the pause. (curl -fsS and rlfs run
# say on stderr what happened: "curl: (22) The requested URL returned error:
# 429", "rlfs run: the command exited 22; paused /mnt/rl/api: retry-after 2
# (Retry-After of HTTP 429 in /tmp/...)".)
#
# The same by hand, with exec 3<> and a line of awk: curl.sh.
#
# Run it:  rlfs mount --meter 'api=concurrency=1' /mnt/rl &   then
#          API_URL=http://127.0.0.1:8080/ ./curl-rlfs-run.sh
# Env:     RLFS_MNT (default /mnt/rl), METER (default api), API_URL (required),
#          REQUESTS (default 5), MAX_RETRIES (default 5: retries of one
#          request before giving up), FALLBACK_PAUSE (default 5s)
#
# Prints one line per answer, "request I: STATUS ...", and exits 0 when every
# request got a 2xx; 1 at the first other failure.
set -eu

mnt=${RLFS_MNT:-/mnt/rl}
meter=$mnt/${METER:-api}
url=${API_URL:-}
requests=${REQUESTS:-5}
max_retries=${MAX_RETRIES:-5}
fallback=${FALLBACK_PAUSE:-5s}

if [ -z "$url" ]; then
	echo "curl-rlfs-run.sh: set API_URL, such as http://127.0.0.1:8080/" >&2
	exit 1
fi
if [ ! -e "$meter/acquire" ]; then
	echo "curl-rlfs-run.sh: no meter at $meter; start rlfs with --meter '${METER:-api}=concurrency=1'" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
hdr=$work/headers
body=$work/body

throttled=0
for i in $(seq "$requests"); do
	tries=0
	until rlfs run --pause-from-file "$hdr" --pause-on-exit "22=$fallback" "$meter" -- \
		curl -fsS -D "$hdr" -o "$body" "$url"; do
		code=$(awk '/^HTTP\// { c = $2 } END { print c }' "$hdr" 2>/dev/null)
		case $code in
		429 | 503) echo "request $i: $code: meter paused (rlfs run says for how long)" ;;
		*)
			echo "request $i: failed (HTTP status ${code:-none})" >&2
			exit 1
			;;
		esac
		throttled=$((throttled + 1))
		tries=$((tries + 1))
		if [ "$tries" -gt "$max_retries" ]; then
			echo "request $i: still $code after $max_retries retries" >&2
			exit 1
		fi
	done
	echo "request $i: $(awk '/^HTTP\// { c = $2 } END { print c }' "$hdr") $(cat "$body")"
done
echo "curl-rlfs-run.sh: $requests of $requests requests done, $throttled throttled answers"
