#!/usr/bin/env bash
# Backlog (issue 6 §3), through the oceanhooks binary with its default
# delivery settings: one user of the fake upstream holds 100 hooks, all
# subscribed to `note`, whose receiver is down (nothing listens on its port).
# bench/cmd/load sends N/100 notes/create calls (8 at a time); each enqueues
# 100 deliveries durably. Then:
#   1. queue depth, RSS (VmRSS) and peak RSS (VmHWM) of the sidecar, Go heap,
#      and the data dir size, right after the fill and after SETTLE seconds;
#   2. restart (SIGTERM, start again on the same data dir): time until
#      /readyz answers and RSS after the start;
#   3. receiver up: deliveries/s over DRAIN_SECONDS (FULL=1: until the queue
#      is empty, however long that takes);
#   4. no delivery missing: FULL=1 — the receiver has all N distinct
#      eventIds; otherwise the receiver is paused (it answers 503), in-flight
#      attempts end, and received + still queued (ready + leased + dead) must
#      be N. Duplicates (eventIds received twice) are reported.
# While the receiver is down the queue does what it always does: it tries
# deliveries (connection refused, two quick retries), which then wait their
# backoff (60 s, then 180 s, …); they are part of the queued count.
#
# RSS is read from /proc/PID/status (and the anonymous / file-backed split from
# smaps_rollup) right after the fill, and again once the process is quiet
# (below 30 % of a CPU over 5 s: Badger's compactions of the burst are done).
#
# Environment: N (1000000), DRAIN_SECONDS (120), FULL (0), SETTLE (15),
# PIN (1), PPROF (0; 1: run bench/cmd/sidecar — server.Run as the binary runs
# it, plus pprof — instead of the binary, and save heap profiles after the
# fill and after the restart, and a CPU profile of the drain, to
# bench/results/profile-backlog-*), SIDECAR_GOMEMLIMIT (unset; e.g. 160MiB:
# the Go runtime's soft memory limit for the sidecar process only).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-1000000}
DRAIN_SECONDS=${DRAIN_SECONDS:-120}
FULL=${FULL:-0}
SETTLE=${SETTLE:-15}
HOOKS=100
((N % HOOKS == 0)) || die "N must be a multiple of $HOOKS"
CALLS=$((N / HOOKS))

PPROF=${PPROF:-0}

need
build
DATA=$WORK/data
SIDECAR=("$BIN/oceanhooks" serve --config "$WORK/sidecar.yaml")
if [[ $PPROF == 1 ]]; then
	SIDECAR=("$BIN/sidecar" -config "$WORK/sidecar.yaml" -pprof "127.0.0.1:$PORT_PPROF")
fi
if [[ -n ${SIDECAR_GOMEMLIMIT:-} ]]; then
	SIDECAR=(env "GOMEMLIMIT=$SIDECAR_GOMEMLIMIT" "${SIDECAR[@]}")
fi
heap_profile() { # NAME
	if [[ $PPROF == 1 ]]; then
		mkdir -p "$RESULTS"
		curl -fsS -o "$RESULTS/profile-backlog-$1.heap.pprof" "http://127.0.0.1:$PORT_PPROF/debug/pprof/heap"
		go tool pprof -sample_index=inuse_space -top -nodecount=25 "$BIN/sidecar" "$RESULTS/profile-backlog-$1.heap.pprof" \
			>"$RESULTS/profile-backlog-$1.heap.txt" 2>/dev/null
	fi
}
sidecar_config "$WORK/sidecar.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$DATA"
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM" -webhook-limit "$HOOKS"
start sidecar "${ON_SUT[@]}" "${SIDECAR[@]}"
wait_port "$PORT_UPSTREAM"
wait_port "$PORT_SIDECAR"
"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
	-users 1 -per-user "$HOOKS" -on note

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
# rss_split PID prints "anonymous MiB / file-backed MiB" of the resident set.
rss_split() {
	awk '/^Rss:/ { r = $2 } /^Anonymous:/ { a = $2 } END { printf "%.0f anonymous + %.0f file-backed", a / 1024, (r - a) / 1024 }' "/proc/$1/smaps_rollup"
}
dir_mib() { du -sk "$DATA" | awk '{ printf "%.0f", $1 / 1024 }'; }
heap_mib() { awk -v b="$(metric "$PORT_ADMIN" go_memstats_heap_inuse_bytes)" 'BEGIN { printf "%.0f", b / 1048576 }'; }
retries() {
	curl -fsS "http://127.0.0.1:$PORT_ADMIN/metrics" |
		awk '$1 == "oceanhooks_delivery_attempts_total{outcome=\"retry\"}" { printf "%.0f", $2; f = 1 } END { if (!f) print 0 }'
}

log "filling: $CALLS notes/create calls × $HOOKS hooks = $N deliveries, receiver down"
t=$SECONDS
fill=$("${ON_LOAD[@]}" "$BIN/load" -url "http://127.0.0.1:$PORT_SIDECAR/api/notes/create" \
	-body '{"text":"backlog"}' -tokens 1 -c 8 -n "$CALLS" -label fill)
fill_secs=$((SECONDS - t))
log "fill: $fill"
pid=$(pid_of sidecar)
enq=$(metric "$PORT_ADMIN" oceanhooks_queue_enqueued_total)
((enq == N)) || die "enqueued $enq deliveries, want $N"
depth_fill=$(queue_depth "$PORT_ADMIN")
rss_fill=$(mib "$(rss_kib "$pid")")
hwm_fill=$(mib "$(hwm_kib "$pid")")
heap_fill=$(heap_mib)
dir_fill=$(dir_mib)
log "after fill (${fill_secs}s): depth $depth_fill, RSS $rss_fill MiB, peak $hwm_fill MiB, heap $heap_fill MiB, dir $dir_fill MiB"
sleep "$SETTLE"
quiet_secs=$(wait_quiet "$pid" 300)
rss_settled=$(mib "$(rss_kib "$pid")")
split_settled=$(rss_split "$pid")
hwm_settled=$(mib "$(hwm_kib "$pid")")
heap_settled=$(heap_mib)
dir_settled=$(dir_mib)
retries_down=$(retries)
depth_settled=$(queue_depth "$PORT_ADMIN")
heap_profile fill
log "after $((SETTLE + quiet_secs))s: depth $depth_settled, RSS $rss_settled MiB ($split_settled), peak $hwm_settled MiB, heap $heap_settled MiB, dir $dir_settled MiB, failed attempts $retries_down"

log "restarting the sidecar on the same data dir"
stop sidecar
t0=$(date +%s%N)
start sidecar "${ON_SUT[@]}" "${SIDECAR[@]}"
until curl -fsS -o /dev/null "http://127.0.0.1:$PORT_ADMIN/readyz" 2>/dev/null; do sleep 0.05; done
restart_ms=$((($(date +%s%N) - t0) / 1000000))
pid=$(pid_of sidecar)
sleep 2
rss_restart_ready=$(mib "$(rss_kib "$pid")")
quiet_restart=$(wait_quiet "$pid" 300)
rss_restart=$(mib "$(rss_kib "$pid")")
split_restart=$(rss_split "$pid")
depth_restart=$(queue_depth "$PORT_ADMIN")
heap_profile restart
log "ready after ${restart_ms} ms: depth $depth_restart, RSS $rss_restart_ready MiB 2 s later, $rss_restart MiB ($split_restart) once quiet (${quiet_restart} s)"

log "receiver up"
start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
wait_port "$PORT_RECEIVER"
t0=$(date +%s%N)
rss_drain_max=0
samples=()
full_done=0
cpu_profiled=0
while :; do
	sleep 10
	if [[ $PPROF == 1 && $cpu_profiled == 0 ]] && (((($(date +%s%N) - t0) / 1000000000) >= DRAIN_SECONDS / 2)); then
		cpu_profiled=1
		curl -fsS -o "$RESULTS/profile-backlog-drain.cpu.pprof" "http://127.0.0.1:$PORT_PPROF/debug/pprof/profile?seconds=20"
		go tool pprof -top -cum -nodecount=60 "$BIN/sidecar" "$RESULTS/profile-backlog-drain.cpu.pprof" \
			>"$RESULTS/profile-backlog-drain.cpu.txt" 2>/dev/null
	fi
	el=$((($(date +%s%N) - t0) / 1000000))
	u=$(receiver_stat unique)
	r=$(mib "$(rss_kib "$pid")")
	((r > rss_drain_max)) && rss_drain_max=$r
	d=$(queue_depth "$PORT_ADMIN")
	samples+=("$el $u $d $r")
	log "  drain $((el / 1000))s: received $u, queued $d, RSS $r MiB"
	if [[ $FULL == 1 ]]; then
		((d == 0 && u >= N)) && {
			full_done=1
			break
		}
		((el < 3 * 3600 * 1000)) || die "not drained after 3 h"
	elif ((el >= DRAIN_SECONDS * 1000)); then
		break
	fi
done
drain_ms=$el
received=$(receiver_stat unique)
rate=$(awk -v u="$received" -v ms="$drain_ms" 'BEGIN { printf "%.0f", u / (ms / 1000) }')

if [[ $FULL == 1 ]]; then
	missing=$((N - received))
	queued_end=0
	dead_end=$(metric "$PORT_ADMIN" oceanhooks_queue_dead)
else
	# Stop the sidecar (in-flight attempts finish and are recorded), take the
	# receiver's final count, then start the sidecar again with the receiver
	# answering 503: nothing can succeed any more, so ready + leased + dead
	# is what the queue still holds.
	stop sidecar
	received=$(receiver_stat unique)
	curl -fsS -X POST "http://127.0.0.1:$PORT_RECEIVER/pause"
	start sidecar "${ON_SUT[@]}" "${SIDECAR[@]}"
	until curl -fsS -o /dev/null "http://127.0.0.1:$PORT_ADMIN/readyz" 2>/dev/null; do sleep 0.05; done
	dead_end=$(metric "$PORT_ADMIN" oceanhooks_queue_dead)
	queued_end=$(($(queue_depth "$PORT_ADMIN") + dead_end))
	stop sidecar
	missing=$((N - received - queued_end))
fi
dups=$(receiver_stat duplicates)
dir_end=$(dir_mib)
log "received $received, queued $queued_end (dead $dead_end), missing $missing, duplicates $dups"

{
	echo "## Backlog"
	echo
	echo "Command: \`N=$N DRAIN_SECONDS=$DRAIN_SECONDS FULL=$FULL PIN=$PIN bench/backlog.sh\` ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo "Process holding the queue: \`${SIDECAR[*]##*/}\`$([[ $PPROF == 1 ]] && echo " (server.Run plus a pprof listener)")."
	[[ $PIN == 1 ]] && echo "CPU layout: upstream and sidecar on CPUs $SUT_CPUS, load generator and receiver on CPUs $LOAD_CPUS."
	echo
	echo "| measure | value |"
	echo "|---|---:|"
	echo "| deliveries queued (1 user × $HOOKS hooks, $CALLS notes/create calls) | $N |"
	echo "| fill time (receiver down) | ${fill_secs} s ($(awk -v n="$N" -v s="$fill_secs" 'BEGIN { printf "%.0f", n / (s ? s : 1) }') deliveries/s enqueued) |"
	echo "| RSS right after the fill / peak during it | $rss_fill MiB / $hwm_fill MiB |"
	echo "| RSS $((SETTLE + quiet_secs)) s later (CPU quiet: compactions done), $depth_settled queued | **$rss_settled MiB** ($split_settled; Go heap in use $heap_settled MiB) |"
	echo "| data dir after the fill / $((SETTLE + quiet_secs)) s later | $dir_fill MiB / **$dir_settled MiB** |"
	echo "| failed attempts while the receiver was down | $retries_down |"
	echo "| restart with the backlog: until /readyz | $restart_ms ms |"
	echo "| RSS of the restarted sidecar holding $depth_restart: 2 s after ready / once quiet ($((quiet_restart + 2)) s) | $rss_restart_ready MiB / **$rss_restart MiB** ($split_restart) |"
	echo "| drain: received in $((drain_ms / 1000)) s | $received (**$rate deliveries/s**), largest RSS while draining $rss_drain_max MiB |"
	echo "| at the end: received (distinct eventIds) / still queued (dead included) / dead | $received / $queued_end / $dead_end |"
	echo "| missing (N − received − queued) | **$missing** |"
	echo "| duplicates | $dups |"
	echo "| data dir at the end | $dir_end MiB |"
	echo
	echo "Fill: \`$fill\`"
	echo
	echo "Drain samples (ms since the receiver came up, received, queued, RSS MiB): ${samples[*]}"
} | save backlog.md
((missing == 0)) || die "$missing deliveries missing"
