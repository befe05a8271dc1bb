#!/usr/bin/env bash
# cron-mailer-remembers.sh — a cron job that sends each message of a queue
# it cannot change (a report table, a feed) once, however often cron runs
# it and even when two runs overlap: it remembers what it sent in the
# meter's data/ directory, which every process (and, in a fleet, every host)
# shares.
#
# Every message is one call of the meter "email" (2/1s; concurrency=1 by
# default, so inside a call we are alone), and the record is read and
# written inside that call:
#
#     exec 3<"$RLFS_MNT/email/acquire"                 # our turn; nobody else's
#     grep -qxF "$id" "$RLFS_MNT/email/data/sent" ||   # not sent by another run?
#         { send it; echo "$id" >>"$RLFS_MNT/email/data/sent"; }
#     exec 3<&-                                        # the call is over
#
# The append is stored when `>>` closes the file, before the next command
# runs (and survives a crash of rlfs from then on), so whoever gets the next
# call reads it. A run first skips, without a call, what the record already
# lists; the check inside the call is what makes an overlapping run safe.
#
# Here: a first run sends 6 messages; a seventh is queued, and two runs
# start at once (a slow run overlapping the next cron tick): the seventh is
# sent once, by whichever gets the call first; the other skips it, with or
# without a call of its own. 7 or 8 calls at 2 a second take a little over
# 3 s.
#
# Run it:  rlfs mount --meter 'email=2/1s' /mnt/rl & rlfs wait /mnt/rl && ./cron-mailer-remembers.sh
# Env:     RLFS_MNT (default /mnt/rl)
#
# rlfs-test-meter: email=2/1s
# rlfs-test-min-seconds: 3.0
# rlfs-test-expect-seconds: 3.3
set -eu

mnt=${RLFS_MNT:-/mnt/rl}
meter=$mnt/email
sent=$meter/data/sent

if [ ! -e "$meter/acquire" ]; then
	echo "cron-mailer-remembers: no meter at $meter; start rlfs with --meter 'email=2/1s' or run: mkdir $meter && echo 2/1s > $meter/limits" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
outbox=$work/outbox
queue=$work/queue
token=$$.$(date +%s) # message ids of this demo; a real queue has its own

queue_message() { printf '<report-%d.%s@example.com>\n' "$1" "$token" >>"$queue"; }

# send_mail stands in for `sendmail -t`: a short call to the outside.
send_mail() {
	sleep 0.05
	printf '%s\n' "$1" >>"$outbox"
}

now() { date +%H:%M:%S.%N | cut -c1-12; }

# run is one cron run: every queued message not in the record is sent, in
# a call of the meter, and recorded in that call.
run() {
	local id
	while read -r id; do
		grep -qxF -- "$id" "$sent" 2>/dev/null && continue # sent before: no call
		exec 3<"$meter/acquire"
		if grep -qxF -- "$id" "$sent" 2>/dev/null; then
			echo "$(now) $id was sent by another run"
		else
			send_mail "$id"
			echo "$id" >>"$sent"
			echo "$(now) sent $id"
		fi
		exec 3<&-
	done <"$queue"
}

for i in 1 2 3 4 5 6; do queue_message "$i"; done
run
queue_message 7
run & # two overlapping runs: only the new message goes out, once
run &
wait

sent_here=$(wc -l <"$outbox")
twice=$(sort "$outbox" | uniq -d | wc -l)
recorded=$(grep -cF ".$token@" "$sent")
echo "cron-mailer-remembers: 3 runs sent $sent_here messages; data/sent records $recorded of them"
if [ "$sent_here" -ne 7 ] || [ "$twice" -ne 0 ] || [ "$recorded" -ne 7 ]; then
	echo "cron-mailer-remembers: want each of 7 messages sent once and recorded; sent $sent_here, $twice twice, $recorded recorded" >&2
	exit 1
fi
