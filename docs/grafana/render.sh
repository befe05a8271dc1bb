#!/usr/bin/env bash
# Renders docs/grafana/panels.png, the panels of docs/grafana/rlfs.json
# drawn from a real run, and prints `rlfs top --once` of that run (the
# README shows it). It is not Grafana's screenshot: Grafana is not needed.
#
# What it does, on this machine only (loopback), in about two minutes:
# builds rlfs and test/dashrender; starts a redis-server and two rlfs
# daemons on it, hosts h1 and h2, each with --metrics; puts load on four
# meters from both hosts (shell loops that acquire, hold and release);
# halfway, stops the redis-server for 6 s (SIGSTOP, then SIGCONT: a store
# outage) and, where the daemon has the pause, pauses one meter for 10 s;
# meanwhile test/dashrender scrapes both daemons every second and works
# out each panel's query (rates over 5 s, p50/p99 interpolated within the
# histogram's buckets over 10 s, usage / limit, maxima over the daemons),
# writing an SVG that rsvg-convert turns into the PNG. Everything it
# started is stopped at the end.
#
# Needs: root and /dev/fuse, go, redis-server, rsvg-convert (Debian:
# librsvg2-bin). Run from anywhere: docs/grafana/render.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-100}
work=$(mktemp -d /tmp/rlfs-render.XXXXXX)
pids=()
mounts=()
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	[ -n "${redis:-}" ] && kill -CONT "$redis" 2>/dev/null
	for m in "${mounts[@]}"; do
		[ -n "${m%%:*}" ] && kill -TERM "${m%%:*}" 2>/dev/null
	done
	for m in "${mounts[@]}"; do
		p=${m%%:*} dir=${m#*:}
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		grep -q " $dir fuse" /proc/mounts && umount -l "$dir"
	done
	[ -n "${redis:-}" ] && kill "$redis" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cd "$root"
go build -o "$work/rlfs" ./cmd/rlfs
go build -o "$work/dashrender" ./test/dashrender

port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no --daemonize no --logfile "$work/redis.log" &
redis=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

meters=(--meter 'api=rate=20/1s,burst=5,concurrency=4' --meter 'email=40/1m' --meter 'llm=units:6000/1m,concurrency=0' --meter 'backup=concurrency=1')
addrs=() hosts=()
for h in h1 h2; do
	addr=127.0.0.1:$(free_port)
	"$work/rlfs" mount --store "redis://127.0.0.1:$port" --host "$h" --journal "$work/$h.journal" \
		--metrics "$addr" "${meters[@]}" "$work/mnt-$h" >"$work/$h.log" 2>&1 &
	mounts+=("$!:$work/mnt-$h")
	addrs+=("$addr") hosts+=("$h")
done
for h in h1 h2; do
	for _ in $(seq 300); do [ -e "$work/mnt-$h/backup/acquire" ] && break; sleep 0.1; done
done

# The load: a loop holds a meter for a while after each grant.
loop() { # MOUNT METER FILE HOLD PAUSE
	while :; do
		( exec 3<"$1/$2/$3" && sleep "$4" ) 2>/dev/null
		sleep "$5"
	done
}
m1=$work/mnt-h1 m2=$work/mnt-h2
for i in 1 2 3; do loop "$m1" api acquire 0.1 0 & pids+=($!); loop "$m2" api acquire 0.15 0 & pids+=($!); done
loop "$m1" email acquire 0 0.7 & pids+=($!)
loop "$m2" email acquire 0 1.1 & pids+=($!)
loop "$m1" llm acquire@400 0.5 0.2 & pids+=($!)
loop "$m2" llm acquire@900 1.5 0.3 & pids+=($!)
loop "$m2" backup acquire 7 2 & pids+=($!)
loop "$m1" backup acquire 2 1 & pids+=($!)

note="A real run of rlfs $(git -C "$root" describe --always --dirty) for ${secs} s: 2 daemons (h1, h2) on one redis-server, shell loops acquiring and holding api, email, llm and backup from both hosts; the redis-server stopped (SIGSTOP) for 6 s at half time. Drawn by docs/grafana/render.sh (test/dashrender) from both daemons' /metrics scraped every 1 s, as each panel's query would compute it; not a Grafana screenshot."
"$work/dashrender" -metrics "$(IFS=,; echo "${addrs[*]}")" -hosts "$(IFS=,; echo "${hosts[*]}")" \
	-duration "${secs}s" -out "$work/panels.svg" -note "$note" &
render=$!

sleep $((secs / 3))
"$work/rlfs" top --once "$m1" >"$work/top.txt"
sleep $((secs / 6))
if [ -e "$m1/api/pause" ]; then echo 10s >"$m1/api/pause"; fi
kill -STOP "$redis"; sleep 6; kill -CONT "$redis"
wait "$render"

rsvg-convert -o "$root/docs/grafana/panels.png" "$work/panels.svg"
echo "wrote $root/docs/grafana/panels.png"
echo "rlfs top --once $m1, $((secs / 3)) s into the run:"
cat "$work/top.txt"
