#!/usr/bin/env bash
# cron-mailer.sh — a cron job that sends the queued mail without breaking
# the provider's limit, however many copies of it run at once.
#
# Every message is one call of the meter "email":
#
#     exec 3<"$RLFS_MNT/email/acquire"   # blocks until the meter permits a call
#     send the message                   # the call
#     exec 3<&-                          # last close: the completion is recorded
#
# With email=2/1s (concurrency=1 by default) the messages go out one at a time,
# two per second: 6 messages take a little over 2 s. The same lines in ten
# overlapping cron jobs, a CGI script and a Python program share those 2/s,
# because the meter lives in the rlfs daemon, not in the script.
#
# Sending is simulated: each "mail" is appended to an outbox file in a
# temporary directory. Put your sendmail/curl/swaks line in send_mail.
#
# Run it:  rlfs mount --meter 'email=2/1s' /mnt/rl & rlfs wait /mnt/rl && ./cron-mailer.sh
# Env:     RLFS_MNT (default /mnt/rl), MAIL_COUNT (default 6)
#
# rlfs-test-meter: email=2/1s
# rlfs-test-min-seconds: 2.0
# rlfs-test-expect-seconds: 2.2
set -eu

mnt=${RLFS_MNT:-/mnt/rl}
count=${MAIL_COUNT:-6}
meter=$mnt/email

if [ ! -e "$meter/acquire" ]; then
	echo "cron-mailer: no meter at $meter; start rlfs with --meter 'email=2/1s' or run: mkdir $meter && echo 2/1s > $meter/limits" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/spool"
outbox=$work/outbox

# The queue cron would find: one file per message.
for i in $(seq "$count"); do
	printf 'To: user%d@example.com\nSubject: report %d\n\nhello\n' "$i" "$i" >"$work/spool/msg$i"
done

# send_mail stands in for `sendmail -t <"$1"`: a short call to the outside.
send_mail() {
	sleep 0.05
	printf '%s %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$(head -n 1 "$1")" >>"$outbox"
}

start=$(date +%s.%N)
for msg in "$work"/spool/msg*; do
	exec 3<"$meter/acquire" # wait for our turn (a failed open stops the script: set -e)
	send_mail "$msg"
	exec 3<&- # done: the meter counts this call from now on
	rm -- "$msg" # dequeue only what was sent
done
end=$(date +%s.%N)

cat "$outbox"
sent=$(wc -l <"$outbox")
left=$(find "$work/spool" -type f | wc -l)
awk -v s="$start" -v e="$end" -v n="$sent" 'BEGIN { printf "cron-mailer: sent %d messages in %.2fs\n", n, e - s }'
if [ "$sent" -ne "$count" ] || [ "$left" -ne 0 ]; then
	echo "cron-mailer: sent $sent of $count messages, $left left in the spool" >&2
	exit 1
fi
