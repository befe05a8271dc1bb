#!/usr/bin/env bash
# client.sh: an rlfs end-to-end client in plain shell.
#
#   client.sh MODE ACQUIRE ID CALLS HOLD LOG
#
# makes CALLS calls on the meter whose acquire file is ACQUIRE, one after the
# other, each holding HOLD seconds (not in cat mode), and appends one line per
# call to LOG:
#
#   ID GRANT_NS RELEASE_NS CALL CLOSED_NS DAEMON_GRANT_NS ASKED_NS
#
# in unix nanoseconds: GRANT_NS right after the open returned, RELEASE_NS
# right before the close, CLOSED_NS once the descriptor is surely closed,
# ASKED_NS right before the open; CALL and DAEMON_GRANT_NS are the call id
# and grant time (ms) the daemon printed, or - where unknown. MODE is how a
# shell user acquires:
#
#   exec   exec 3<ACQUIRE ... exec 3<&-   times taken around the open and close
#   flock  flock ACQUIRE bash -c ...      grant and release times taken by the
#                                         command flock runs
#   cat    cat ACQUIRE                    cat cannot time itself: its grant time
#                                         is the one the daemon printed, and its
#                                         release is logged at that same instant
#                                         (never after the true release)
#
# Weighted calls (acquire@N, design §7) have their own mode:
#
#   client.sh units ACQUIRE ID CALLS HOLD LOG COSTS ACTUALS
#
# call i opens ACQUIRE@COST with exec 3<> (read and write), holds HOLD
# seconds, writes its actual cost with echo ACTUAL >&3 and closes; COSTS and
# ACTUALS are comma-separated lists used in turn, an ACTUAL of - writes
# nothing (the estimate stands). Its log line adds four fields to the above:
#
#   ... COST ACTUAL SETTLE_FROM_NS SETTLE_TO_NS
#
# the times taken right before the write and right after it returned
# (ACTUAL and both times are - when nothing was written).
set -u
export LC_ALL=C
mode=$1 acq=$2 id=$3 calls=$4 hold=$5 log=$6
if [[ $mode == units ]]; then
	IFS=, read -r -a costs <<<"$7"
	IFS=, read -r -a actuals <<<"$8"
fi

call_of() { # call_of LINE: the call id in a grant line, or -
	if [[ $1 =~ \ call\ ([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo -; fi
}

for ((i = 0; i < calls; i++)); do
	a=${EPOCHREALTIME/./}
	case $mode in
	exec)
		exec 3<"$acq" || exit 1
		g=${EPOCHREALTIME/./}
		IFS= read -r line <&3
		[[ $hold == 0.000 ]] || sleep "$hold"
		r=${EPOCHREALTIME/./}
		exec 3<&-
		c=${EPOCHREALTIME/./}
		echo "$id ${g}000 ${r}000 $(call_of "$line") ${c}000 - ${a}000" >>"$log"
		;;
	flock)
		# shellcheck disable=SC2016
		times=$(flock "$acq" bash -c 'g=${EPOCHREALTIME/./}
			[[ $1 == 0.000 ]] || sleep "$1"
			echo "${g}000 ${EPOCHREALTIME/./}000"' flock-call "$hold") || exit 1
		c=${EPOCHREALTIME/./}
		echo "$id $times - ${c}000 - ${a}000" >>"$log"
		;;
	units)
		cost=${costs[i % ${#costs[@]}]} actual=${actuals[i % ${#actuals[@]}]}
		exec 3<>"$acq@$cost" || exit 1
		g=${EPOCHREALTIME/./}
		IFS= read -r line <&3
		[[ $hold == 0.000 ]] || sleep "$hold"
		settled="- - -"
		if [[ $actual != - ]]; then
			s0=${EPOCHREALTIME/./}
			echo "$actual" >&3 || exit 1
			settled="$actual ${s0}000 ${EPOCHREALTIME/./}000"
		fi
		r=${EPOCHREALTIME/./}
		exec 3>&-
		c=${EPOCHREALTIME/./}
		echo "$id ${g}000 ${r}000 $(call_of "$line") ${c}000 - ${a}000 $cost $settled" >>"$log"
		;;
	cat)
		line=$(cat "$acq") || exit 1
		c=${EPOCHREALTIME/./}
		[[ $line =~ ^granted\ ([^ ]+)\  ]] || { echo "client.sh: bad grant line: $line" >&2; exit 1; }
		g=$(date -d "${BASH_REMATCH[1]}" +%s%N) || exit 1
		echo "$id $g $g $(call_of "$line") ${c}000 $g ${a}000" >>"$log"
		;;
	*)
		echo "client.sh: unknown mode $mode" >&2
		exit 2
		;;
	esac
done
