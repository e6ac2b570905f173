#!/usr/bin/env bash
# Where a tapped call's CPU goes: durable.sh's CPU-per-call load (100 users
# with a `note` and a `mention` hook each; notes/create mentioning the next
# user at RATE/s, two events and two deliveries per call) on the sidecar as
# the binary runs it plus pprof (bench/cmd/sidecar), a CPU profile of
# PROFILE_SECONDS taken during it, and the process's CPU time per call from
# before the load until the receiver had every delivery.
#
# Writes $RESULTS/profile-call.txt: CPU per call, the profile's top entries
# (flat and cumulative) and the system calls' share by caller.
#
# Environment: RATE (500), SECONDS_LOAD (14), PROFILE_SECONDS (10), PIN (1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATE=${RATE:-500}
SECONDS_LOAD=${SECONDS_LOAD:-14}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
((SECONDS_LOAD >= PROFILE_SECONDS + 3)) || die "SECONDS_LOAD must be at least PROFILE_SECONDS + 3"

need
build
mkdir -p "$RESULTS"
start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM" -webhook-limit 100 -mention-users 100
for p in "$PORT_RECEIVER" "$PORT_UPSTREAM"; do wait_port "$p"; done
sidecar_config "$WORK/sidecar.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$WORK/data"
start sidecar "${ON_SUT[@]}" "$BIN/sidecar" -config "$WORK/sidecar.yaml" -pprof "127.0.0.1:$PORT_PPROF"
wait_port "$PORT_SIDECAR"
wait_port "$PORT_PPROF"
"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
	-users 100 -per-user 2 -on "note;mention"
create=http://127.0.0.1:$PORT_SIDECAR/api/notes/create
"${ON_LOAD[@]}" "$BIN/load" -url "$create" -body '{"text":"warm-up"}' -tokens 100 -rate 100 -c 256 -d 2s -warmup 1s -label warm >/dev/null
wait_drained "$PORT_ADMIN" 900

pid=$(pid_of sidecar)
hz=$(getconf CLK_TCK)
curl -fsS -X POST "http://127.0.0.1:$PORT_RECEIVER/reset" >/dev/null
t0=$(cpu_ticks "$pid")
prof=$RESULTS/profile-call.cpu.pprof
(
	sleep 2
	curl -fsS -o "$prof" "http://127.0.0.1:$PORT_PPROF/debug/pprof/profile?seconds=$PROFILE_SECONDS"
) &
profiler=$!
line=$("${ON_LOAD[@]}" "$BIN/load" -url "$create" -body '{"text":"hello @next"}' -tokens 100 -rate "$RATE" -c 256 \
	-d "${SECONDS_LOAD}s" -warmup 1s -label call)
calls=$(jget requests <<<"$line")
want=$((2 * calls))
start_wait=$SECONDS
while (($(receiver_stat unique) < want)); do
	((SECONDS - start_wait < 900)) || die "$(receiver_stat unique) of $want deliveries after 900 s"
	sleep 0.2
done
t1=$(cpu_ticks "$pid")
wait "$profiler"
ms=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$calls" 'BEGIN { printf "%.3f", d / hz * 1000 / n }')
log "$calls calls, $want deliveries: $ms ms of CPU per call"
{
	echo "# CPU per tapped call: RATE=$RATE SECONDS_LOAD=$SECONDS_LOAD PROFILE_SECONDS=$PROFILE_SECONDS PIN=$PIN bench/callprofile.sh ($(date -u +%Y-%m-%dT%H:%MZ)), code $(git -C "$ROOT" rev-parse --short HEAD)"
	echo
	echo "$calls calls at $RATE/s, $want deliveries: $ms ms of sidecar CPU per call (user + system, until the last delivery)"
	echo "load: $line"
	echo "profile: $PROFILE_SECONDS s, $((RATE * PROFILE_SECONDS)) calls expected in it"
	echo
	echo "## flat"
	go tool pprof -top -nodecount=30 "$BIN/sidecar" "$prof" 2>/dev/null
	echo
	echo "## cumulative"
	go tool pprof -top -cum -nodecount=70 "$BIN/sidecar" "$prof" 2>/dev/null
	echo
	echo "## system calls by caller"
	go tool pprof -peek 'syscall\.Syscall$|linux\.EpollWait|runtime\.futex$' "$BIN/sidecar" "$prof" 2>/dev/null
} >"$RESULTS/profile-call.txt"
echo "$RESULTS/profile-call.txt"
