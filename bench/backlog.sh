#!/usr/bin/env bash
# Backlog (issue 6 §3, issue 13), through the oceanhooks binary with its
# default settings (delivery, store.memoryBudget; no GOMEMLIMIT): one user of
# the fake upstream holds 100 hooks, all subscribed to `note`, whose receiver
# is down (nothing listens on its port). bench/cmd/load sends N/100
# notes/create calls (8 at a time); each enqueues 100 deliveries durably.
# Then:
#   1. queue depth, RSS (VmRSS) and peak RSS (VmHWM) of the sidecar, Go heap,
#      and the data dir size, right after the fill and once the process is
#      quiet;
#   2. restart (SIGTERM, start again on the same data dir): time until
#      /readyz answers and RSS after the start;
#   3. receiver up: deliveries/s over DRAIN_SECONDS (FULL=1: until the queue
#      is empty, however long that takes), RSS sampled every 2 s and the
#      restarted process's VmHWM at the end (its peak since the restart);
#   4. no delivery missing: FULL=1 — the receiver has all N distinct
#      eventIds; otherwise the receiver is paused (it answers 503), in-flight
#      attempts end, and received + still queued (ready + leased + dead) must
#      be N. Duplicates (eventIds received twice) are reported.
# While the receiver is down the queue does what it always does: it tries
# deliveries (connection refused, two quick retries), which then wait their
# backoff (60 s, then 180 s, …); they are part of the queued count.
#
# With BASE set, the binary built from that git revision goes through the
# same steps first, in the same run, and the table has a column for each.
#
# RSS is read from /proc/PID/status (and the anonymous / file-backed split from
# smaps_rollup) right after the fill, and again once the process is quiet
# (below 30 % of a CPU over 5 s: Badger's compactions of the burst are done).
#
# Environment: N (1000000), DRAIN_SECONDS (120), FULL (0), SETTLE (15),
# BASE (unset: the working tree only; e.g. e0e2ca0), PIN (1), PPROF (0; 1:
# run bench/cmd/sidecar — server.Run as the binary runs it, plus pprof —
# instead of the binary, and save heap profiles after the fill and after the
# restart, and a CPU profile of the drain, to bench/results/profile-backlog-*),
# SIDECAR_GOMEMLIMIT (unset; e.g. 160MiB: the Go runtime's soft memory limit
# for the sidecar process only).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-1000000}
DRAIN_SECONDS=${DRAIN_SECONDS:-120}
FULL=${FULL:-0}
SETTLE=${SETTLE:-15}
BASE=${BASE:-}
HOOKS=100
((N % HOOKS == 0)) || die "N must be a multiple of $HOOKS"
CALLS=$((N / HOOKS))

PPROF=${PPROF:-0}

need
build
VARIANTS=(new)
if [[ -n $BASE ]]; then
	build_base "$BASE"
	VARIANTS=(base new)
fi
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM" -webhook-limit "$HOOKS"
wait_port "$PORT_UPSTREAM"

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
# rss_split PID prints "anonymous MiB / file-backed MiB" of the resident set.
rss_split() {
	awk '/^Rss:/ { r = $2 } /^Anonymous:/ { a = $2 } END { printf "%.0f anonymous + %.0f file-backed", a / 1024, (r - a) / 1024 }' "/proc/$1/smaps_rollup"
}
heap_mib() { awk -v b="$(metric "$PORT_ADMIN" go_memstats_heap_inuse_bytes)" 'BEGIN { printf "%.0f", b / 1048576 }'; }
retries() {
	curl -fsS "http://127.0.0.1:$PORT_ADMIN/metrics" |
		awk '$1 == "oceanhooks_delivery_attempts_total{outcome=\"retry\"}" { printf "%.0f", $2; f = 1 } END { if (!f) print 0 }'
}

declare -A R # R[variant,measure]

backlog() { # VARIANT BINDIR
	local v=$1 bin=$2
	local DATA=$WORK/data-$v
	local SIDECAR=("$bin/oceanhooks" serve --config "$WORK/sidecar-$v.yaml")
	if [[ $PPROF == 1 ]]; then
		SIDECAR=("$bin/sidecar" -config "$WORK/sidecar-$v.yaml" -pprof "127.0.0.1:$PORT_PPROF")
	fi
	if [[ -n ${SIDECAR_GOMEMLIMIT:-} ]]; then
		SIDECAR=(env "GOMEMLIMIT=$SIDECAR_GOMEMLIMIT" "${SIDECAR[@]}")
	fi
	R[$v,cmd]="${SIDECAR[*]##*/}"
	heap_profile() { # NAME
		if [[ $PPROF == 1 ]]; then
			mkdir -p "$RESULTS"
			curl -fsS -o "$RESULTS/profile-backlog-$v-$1.heap.pprof" "http://127.0.0.1:$PORT_PPROF/debug/pprof/heap"
			go tool pprof -sample_index=inuse_space -top -nodecount=25 "$bin/sidecar" "$RESULTS/profile-backlog-$v-$1.heap.pprof" \
				>"$RESULTS/profile-backlog-$v-$1.heap.txt" 2>/dev/null
		fi
	}
	dir_mib() { du -sk "$DATA" | awk '{ printf "%.0f", $1 / 1024 }'; }
	sidecar_config "$WORK/sidecar-$v.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$DATA"
	start "sidecar-$v" "${ON_SUT[@]}" "${SIDECAR[@]}"
	wait_port "$PORT_SIDECAR"
	"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
		-users 1 -per-user "$HOOKS" -on note

	log "$v: filling: $CALLS notes/create calls × $HOOKS hooks = $N deliveries, receiver down"
	local t=$SECONDS fill pid enq
	fill=$("${ON_LOAD[@]}" "$BIN/load" -url "http://127.0.0.1:$PORT_SIDECAR/api/notes/create" \
		-body '{"text":"backlog"}' -tokens 1 -c 8 -n "$CALLS" -label fill)
	R[$v,fill_secs]=$((SECONDS - t))
	R[$v,fill]=$fill
	log "$v: fill: $fill"
	pid=$(pid_of "sidecar-$v")
	enq=$(metric "$PORT_ADMIN" oceanhooks_queue_enqueued_total)
	((enq == N)) || die "$v: enqueued $enq deliveries, want $N"
	R[$v,rss_fill]=$(mib "$(rss_kib "$pid")")
	R[$v,hwm_fill]=$(mib "$(hwm_kib "$pid")")
	R[$v,dir_fill]=$(dir_mib)
	log "$v: after fill (${R[$v,fill_secs]}s): RSS ${R[$v,rss_fill]} MiB, peak ${R[$v,hwm_fill]} MiB, dir ${R[$v,dir_fill]} MiB"
	sleep "$SETTLE"
	local quiet
	quiet=$(wait_quiet "$pid" 300)
	R[$v,settled_secs]=$((SETTLE + quiet))
	R[$v,rss_settled]=$(mib "$(rss_kib "$pid")")
	R[$v,split_settled]=$(rss_split "$pid")
	R[$v,hwm_settled]=$(mib "$(hwm_kib "$pid")")
	R[$v,heap_settled]=$(heap_mib)
	R[$v,dir_settled]=$(dir_mib)
	R[$v,retries_down]=$(retries)
	R[$v,depth_settled]=$(queue_depth "$PORT_ADMIN")
	heap_profile fill
	log "$v: after ${R[$v,settled_secs]}s: depth ${R[$v,depth_settled]}, RSS ${R[$v,rss_settled]} MiB (${R[$v,split_settled]}), peak ${R[$v,hwm_settled]} MiB"

	log "$v: restarting the sidecar on the same data dir"
	stop "sidecar-$v"
	local t0
	t0=$(date +%s%N)
	start "sidecar-$v" "${ON_SUT[@]}" "${SIDECAR[@]}"
	until curl -fsS -o /dev/null "http://127.0.0.1:$PORT_ADMIN/readyz" 2>/dev/null; do sleep 0.05; done
	R[$v,restart_ms]=$((($(date +%s%N) - t0) / 1000000))
	pid=$(pid_of "sidecar-$v")
	sleep 2
	R[$v,rss_restart_ready]=$(mib "$(rss_kib "$pid")")
	quiet=$(wait_quiet "$pid" 300)
	R[$v,quiet_restart]=$((quiet + 2))
	R[$v,rss_restart]=$(mib "$(rss_kib "$pid")")
	R[$v,split_restart]=$(rss_split "$pid")
	R[$v,depth_restart]=$(queue_depth "$PORT_ADMIN")
	heap_profile restart
	log "$v: ready after ${R[$v,restart_ms]} ms: RSS ${R[$v,rss_restart_ready]} MiB 2 s later, ${R[$v,rss_restart]} MiB (${R[$v,split_restart]}) once quiet"

	log "$v: receiver up"
	start "receiver-$v" "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
	wait_port "$PORT_RECEIVER"
	t0=$(date +%s%N)
	local rss_max=0 samples=() cpu_profiled=0 el u r d next_log=10000
	while :; do
		sleep 2
		if [[ $PPROF == 1 && $cpu_profiled == 0 ]] && (((($(date +%s%N) - t0) / 1000000000) >= DRAIN_SECONDS / 2)); then
			cpu_profiled=1
			curl -fsS -o "$RESULTS/profile-backlog-$v-drain.cpu.pprof" "http://127.0.0.1:$PORT_PPROF/debug/pprof/profile?seconds=20"
			go tool pprof -top -cum -nodecount=60 "$bin/sidecar" "$RESULTS/profile-backlog-$v-drain.cpu.pprof" \
				>"$RESULTS/profile-backlog-$v-drain.cpu.txt" 2>/dev/null
		fi
		el=$((($(date +%s%N) - t0) / 1000000))
		r=$(mib "$(rss_kib "$pid")")
		((r > rss_max)) && rss_max=$r
		if ((el >= next_log)) || { [[ $FULL == 0 ]] && ((el >= DRAIN_SECONDS * 1000)); }; then
			next_log=$((el + 10000))
			u=$(receiver_stat unique)
			d=$(queue_depth "$PORT_ADMIN")
			samples+=("$el $u $d $r")
			log "  $v drain $((el / 1000))s: received $u, queued $d, RSS $r MiB"
			if [[ $FULL == 1 ]]; then
				((d == 0 && u >= N)) && break
				((el < 3 * 3600 * 1000)) || die "not drained after 3 h"
			elif ((el >= DRAIN_SECONDS * 1000)); then
				break
			fi
		fi
	done
	R[$v,hwm_drain]=$(mib "$(hwm_kib "$pid")")
	R[$v,rss_drain_max]=$rss_max
	R[$v,drain_ms]=$el
	local received
	received=$(receiver_stat unique)
	R[$v,rate]=$(awk -v u="$received" -v ms="$el" 'BEGIN { printf "%.0f", u / (ms / 1000) }')
	R[$v,samples]="${samples[*]}"
	if [[ $FULL == 1 ]]; then
		R[$v,missing]=$((N - received))
		R[$v,queued_end]=0
		R[$v,dead_end]=$(metric "$PORT_ADMIN" oceanhooks_queue_dead)
		stop "sidecar-$v"
	else
		# Stop the sidecar (in-flight attempts finish and are recorded), take
		# the receiver's final count, then start the sidecar again with the
		# receiver answering 503: nothing can succeed any more, so ready +
		# leased + dead is what the queue still holds.
		stop "sidecar-$v"
		received=$(receiver_stat unique)
		curl -fsS -X POST "http://127.0.0.1:$PORT_RECEIVER/pause"
		start "sidecar-$v" "${ON_SUT[@]}" "${SIDECAR[@]}"
		until curl -fsS -o /dev/null "http://127.0.0.1:$PORT_ADMIN/readyz" 2>/dev/null; do sleep 0.05; done
		R[$v,dead_end]=$(metric "$PORT_ADMIN" oceanhooks_queue_dead)
		R[$v,queued_end]=$(($(queue_depth "$PORT_ADMIN") + ${R[$v,dead_end]}))
		stop "sidecar-$v"
		R[$v,missing]=$((N - received - ${R[$v,queued_end]}))
	fi
	R[$v,received]=$received
	R[$v,dups]=$(receiver_stat duplicates)
	R[$v,dir_end]=$(dir_mib)
	stop "receiver-$v"
	log "$v: received $received, queued ${R[$v,queued_end]} (dead ${R[$v,dead_end]}), missing ${R[$v,missing]}, duplicates ${R[$v,dups]}"
}

for v in "${VARIANTS[@]}"; do
	if [[ $v == base ]]; then backlog base "$BIN_BASE"; else backlog new "$BIN"; fi
done

row() { # LABEL FORMAT-PER-VARIANT (a function of v)
	local label=$1 fn=$2 v
	printf '| %s |' "$label"
	for v in "${VARIANTS[@]}"; do printf ' %s |' "$($fn "$v")"; done
	echo
}
c_n() { echo "$N"; }
c_fill() { echo "${R[$1,fill_secs]} s ($(awk -v n="$N" -v s="${R[$1,fill_secs]}" 'BEGIN { printf "%.0f", n / (s ? s : 1) }') deliveries/s enqueued)"; }
c_rss_fill() { echo "${R[$1,rss_fill]} MiB / ${R[$1,hwm_fill]} MiB"; }
c_settled() { echo "**${R[$1,rss_settled]} MiB** after ${R[$1,settled_secs]} s (${R[$1,split_settled]}; Go heap in use ${R[$1,heap_settled]} MiB)"; }
c_dir() { echo "${R[$1,dir_fill]} MiB / ${R[$1,dir_settled]} MiB"; }
c_retries() { echo "${R[$1,retries_down]}"; }
c_restart() { echo "${R[$1,restart_ms]} ms"; }
c_rss_restart() { echo "${R[$1,rss_restart_ready]} MiB / **${R[$1,rss_restart]} MiB** (${R[$1,split_restart]})"; }
c_drain() { echo "${R[$1,received]} in $((${R[$1,drain_ms]} / 1000)) s: **${R[$1,rate]} deliveries/s**"; }
c_drain_rss() { echo "**${R[$1,rss_drain_max]} MiB** / ${R[$1,hwm_drain]} MiB"; }
c_end() { echo "${R[$1,received]} / ${R[$1,queued_end]} / ${R[$1,dead_end]}"; }
c_missing() { echo "**${R[$1,missing]}**"; }
c_dups() { echo "${R[$1,dups]}"; }
c_dir_end() { echo "${R[$1,dir_end]} MiB"; }
{
	echo "## Backlog"
	echo
	echo "Command: \`BASE=$BASE N=$N DRAIN_SECONDS=$DRAIN_SECONDS FULL=$FULL PIN=$PIN bench/backlog.sh\` ($(date -u +%Y-%m-%dT%H:%MZ))"
	for v in "${VARIANTS[@]}"; do echo "Process holding the queue ($v): \`${R[$v,cmd]}\`$([[ $PPROF == 1 ]] && echo " (server.Run plus a pprof listener)")."; done
	[[ $PIN == 1 ]] && echo "CPU layout: upstream and sidecar on CPUs $SUT_CPUS, load generator and receiver on CPUs $LOAD_CPUS."
	echo
	printf '| measure |'
	for v in "${VARIANTS[@]}"; do printf ' %s |' "$v"; done
	echo
	printf '|---|'
	for _ in "${VARIANTS[@]}"; do printf -- '---:|'; done
	echo
	row "deliveries queued (1 user × $HOOKS hooks, $CALLS notes/create calls)" c_n
	row "fill time (receiver down)" c_fill
	row "RSS right after the fill / peak during it (VmHWM)" c_rss_fill
	row "RSS once quiet (compactions done), $N queued" c_settled
	row "data dir after the fill / once quiet" c_dir
	row "failed attempts while the receiver was down" c_retries
	row "restart with the backlog: until /readyz" c_restart
	row "RSS of the restarted sidecar: 2 s after ready / once quiet" c_rss_restart
	row "drain (receiver up)" c_drain
	row "RSS while draining: largest sample (every 2 s) / VmHWM of the restarted process" c_drain_rss
	row "at the end: received (distinct eventIds) / still queued (dead included) / dead" c_end
	row "missing (N − received − queued)" c_missing
	row "duplicates" c_dups
	row "data dir at the end" c_dir_end
	echo
	for v in "${VARIANTS[@]}"; do
		echo "Fill ($v): \`${R[$v,fill]}\`"
		echo
		echo "Drain samples ($v; ms since the receiver came up, received, queued, RSS MiB): ${R[$v,samples]}"
		echo
	done
} | save backlog.md
for v in "${VARIANTS[@]}"; do
	((${R[$v,missing]} == 0)) || die "$v: ${R[$v,missing]} deliveries missing"
done
