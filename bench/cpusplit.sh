#!/usr/bin/env bash
# Where the untapped path's CPU goes, per request, kernel and user space
# apart: the overhead benchmark's closed loop (wrk, 64 connections,
# notes/timeline) through
#   nginx         a plain keep-alive reverse proxy (as in overhead.sh)
#   untapped      oceanhooks as shipped (proxy.server: lean)
#   stdserver     oceanhooks with proxy.server: stdlib (net/http's server)
# one at a time, while `perf record` samples the CPUs under test (the proxy
# and the fake upstream share them) for PERF_SECONDS in the middle of each
# run. For each process on those CPUs: its share of the samples, split into
# kernel and user space, turned into microseconds per request with the
# requests/s wrk measured in the same run, and the context switches on those
# CPUs per request (perf stat, same window). The system calls the proxies
# make are the same (two reads, two writes a request); what differs is the
# work around them.
#
# Needs perf (linux-perf) and permission to use it (root, or
# kernel.perf_event_paranoid ≤ 0 with -a).
#
# Environment: DURATION (8, seconds of wrk per proxy), PERF_SECONDS (4),
# CONNS (64), PIN (1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-8}
PERF_SECONDS=${PERF_SECONDS:-4}
CONNS=${CONNS:-64}
((DURATION > PERF_SECONDS + 2)) || die "DURATION must exceed PERF_SECONDS by 2 s"
[[ $PIN == 1 ]] || die "needs PIN=1: the proxies' CPUs are the ones sampled"
command -v perf >/dev/null || die "perf is required (apt-get install linux-perf)"

need
build

nginx_keepalive_conf "$(cpuset_size "$SUT_CPUS")"
sidecar_config "$WORK/lean.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$WORK/data-lean"
sidecar_config "$WORK/stdserver.yaml" "$PORT_SIDECAR_E" "$PORT_ADMIN_E" "$WORK/data-stdserver" "proxy:
  server: stdlib"

start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM"
start nginx "${ON_SUT[@]}" "$(nginx_bin)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
start sidecar-lean "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/lean.yaml"
start sidecar-stdserver "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/stdserver.yaml"
for p in "$PORT_UPSTREAM" "$PORT_NGINX" "$PORT_SIDECAR" "$PORT_SIDECAR_E"; do wait_port "$p"; done

declare -A PORT=([nginx]=$PORT_NGINX [untapped]=$PORT_SIDECAR [stdserver]=$PORT_SIDECAR_E)
declare -A COMM=([nginx]=nginx [untapped]=oceanhooks [stdserver]=oceanhooks)
OUT=$WORK/cpusplit.md
{
	echo "## CPU per request, kernel and user space"
	echo
	echo "Command: \`DURATION=$DURATION PERF_SECONDS=$PERF_SECONDS CONNS=$CONNS bench/cpusplit.sh\` ($(date -u +%Y-%m-%dT%H:%MZ)); code $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)."
	echo
	echo "CPUs sampled: $SUT_CPUS (the proxy and the fake upstream); wrk on $LOAD_CPUS."
	echo
	echo "| proxy | req/s | proxy kernel µs/req | proxy user µs/req | proxy total µs/req | upstream µs/req | context switches/req |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
} >"$OUT"

for name in nginx untapped stdserver; do
	url=http://127.0.0.1:${PORT[$name]}/api/notes/timeline
	BENCH_BODY='{"limit":10}' BENCH_TOKENS=1 "${ON_LOAD[@]}" wrk -t1 -c"$CONNS" -d2s -s "$BENCH_DIR/wrk.lua" "$url" >/dev/null
	BENCH_BODY='{"limit":10}' BENCH_TOKENS=1 BENCH_LABEL=$name BENCH_CONNS=$CONNS \
		"${ON_LOAD[@]}" wrk -t1 -c"$CONNS" -d"$DURATION"s -s "$BENCH_DIR/wrk.lua" "$url" >"$WORK/wrk-$name.txt" &
	wrk_pid=$!
	sleep $(((DURATION - PERF_SECONDS) / 2))
	perf stat -x, -C "$SUT_CPUS" -e context-switches -o "$WORK/cs-$name.csv" -- sleep "$PERF_SECONDS" >/dev/null 2>&1 &
	stat_pid=$!
	perf record -q -C "$SUT_CPUS" -o "$WORK/perf-$name.data" -- sleep "$PERF_SECONDS" >/dev/null 2>&1
	wait "$stat_pid"
	wait "$wrk_pid"
	cs=$(awk -F, '$3 == "context-switches" { print $1 }' "$WORK/cs-$name.csv")
	rps=$(tail -n 1 "$WORK/wrk-$name.txt" | sed -E 's/.*"rps":([0-9.]+).*/\1/')
	log "$name: $rps req/s"
	# Samples by command and by kernel or user space; cpu-clock samples are
	# time, so a share of the sampled CPUs' time over the requests served
	# in it is CPU time per request.
	perf report -i "$WORK/perf-$name.data" --sort comm,dso --stdio 2>/dev/null |
		awk -v comm="${COMM[$name]}" -v rps="$rps" -v ncpu="$(cpuset_size "$SUT_CPUS")" -v name="$name" -v cs="${cs:-0}" -v secs="$PERF_SECONDS" '
			/^#/ || NF < 3 { next }
			{
				pct = $1; sub(/%/, "", pct); c = $2; dso = $3
				us = pct / 100 * ncpu * 1e6 / rps
				if (c == comm) { if (dso ~ /kernel/) pk += us; else pu += us }
				else if (c == "upstream") up += us
			}
			END { printf "| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.2f |\n", name, rps, pk, pu, pk + pu, up, cs / secs / rps }
		' >>"$OUT"
done
{
	echo
	echo "µs/req: the process's share of the sampled CPUs' time over the requests wrk counted in the same run (perf's cpu-clock samples; the sampled window is the middle of the run)."
} >>"$OUT"
save cpusplit.md <"$OUT"
