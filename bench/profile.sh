#!/usr/bin/env bash
# CPU profiles of the sidecar under the overhead benchmark's loads: the same
# server (bench/cmd/sidecar runs server.Run exactly as `oceanhooks serve`,
# plus net/http/pprof on 127.0.0.1:18305), the same CPU layout and hooks as
# overhead.sh, wrk closed-loop on
#   untapped    notes/timeline (never tapped)
#   untapped-stdlib  the same with proxy.transport: stdlib (net/http's Transport)
#   untapped-stdserver  the same with proxy.server: stdlib (net/http's server)
#   untapped-base    the same on bench/cmd/sidecar built from git revision
#               BASE, when BASE is set (the profile before a change)
#   notes-0     notes/create before any hook exists
#   notes-3000  notes/create with 1,000 users × 3 hooks, author subscribed
# For each: a PROFILE_SECONDS CPU profile taken in the middle of the run, the
# top frames (flat and cumulative), and a goroutine snapshot (where the
# goroutines wait). Profiles and reports go to bench/results/profile-*.
#
# Environment: PROFILE_SECONDS (8), CONNS (64), BASE (unset), PIN (1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROFILE_SECONDS=${PROFILE_SECONDS:-8}
CONNS=${CONNS:-64}
need
build
LOAD_THREADS=1
[[ $PIN == 1 ]] && LOAD_THREADS=$(cpuset_size "$LOAD_CPUS")

start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM"
for p in "$PORT_RECEIVER" "$PORT_UPSTREAM"; do wait_port "$p"; done

# with_sidecar NAME BINARY [EXTRA YAML]: runs the pprof sidecar BINARY on a
# fresh data dir until the next with_sidecar (or the end).
with_sidecar() {
	if [[ -n ${PID_sidecar:-} ]]; then
		stop sidecar
	fi
	sidecar_config "$WORK/$1.yaml" "$PORT_SIDECAR_B" "$PORT_ADMIN_B" "$WORK/data-$1" "${3:-}"
	start sidecar "${ON_SUT[@]}" "$2" -config "$WORK/$1.yaml" -pprof "127.0.0.1:$PORT_PPROF"
	wait_port "$PORT_SIDECAR_B"
	wait_port "$PORT_PPROF"
	SIDECAR_BIN=$2
}

mkdir -p "$RESULTS"
profile() { # NAME PATH BODY TOKENS
	local name=$1 path=$2 body=$3 tokens=$4
	local out=$RESULTS/profile-$name
	log "profiling $name"
	BENCH_BODY=$body BENCH_TOKENS=$tokens BENCH_LABEL=$name BENCH_CONNS=$CONNS \
		"${ON_LOAD[@]}" wrk -t"$LOAD_THREADS" -c"$CONNS" -d"$((PROFILE_SECONDS + 4))"s --timeout 10s \
		-s "$BENCH_DIR/wrk.lua" "http://127.0.0.1:$PORT_SIDECAR_B$path" >"$WORK/$name.wrk" &
	local wrk_pid=$!
	sleep 2
	curl -fsS -o "$out.cpu.pprof" "http://127.0.0.1:$PORT_PPROF/debug/pprof/profile?seconds=$PROFILE_SECONDS"
	curl -fsS -o "$out.goroutines.txt" "http://127.0.0.1:$PORT_PPROF/debug/pprof/goroutine?debug=1"
	wait "$wrk_pid"
	{
		echo "# $name: wrk -t$LOAD_THREADS -c$CONNS on $path, CPU profile of ${PROFILE_SECONDS}s"
		tail -n 1 "$WORK/$name.wrk"
		echo
		echo "## flat"
		go tool pprof -top -nodecount=30 "$SIDECAR_BIN" "$out.cpu.pprof" 2>/dev/null
		echo
		echo "## cumulative"
		go tool pprof -top -cum -nodecount=60 "$SIDECAR_BIN" "$out.cpu.pprof" 2>/dev/null
	} >"$out.txt"
	wait_drained "$PORT_ADMIN_B" 900
}

if [[ -n ${BASE:-} ]]; then
	log "building bench/cmd/sidecar of $BASE"
	mkdir -p "$WORK/src-base"
	git -C "$ROOT" archive "$BASE" | tar -x -C "$WORK/src-base"
	(cd "$WORK/src-base" && go build -o "$BIN/sidecar-base" ./bench/cmd/sidecar)
	with_sidecar base "$BIN/sidecar-base"
	profile untapped-base /api/notes/timeline '{"limit":10}' 1
fi
with_sidecar stdlib "$BIN/sidecar" "proxy:
  transport: stdlib"
profile untapped-stdlib /api/notes/timeline '{"limit":10}' 1
with_sidecar stdserver "$BIN/sidecar" "proxy:
  server: stdlib"
profile untapped-stdserver /api/notes/timeline '{"limit":10}' 1
with_sidecar b "$BIN/sidecar"
profile untapped /api/notes/timeline '{"limit":10}' 1
profile notes-0 /api/notes/create '{"text":"hello from the benchmark"}' 1000
"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR_B" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
	-users 1000 -per-user 3 -on "note,reply,renote,mention;follow,followed,unfollow;reaction,mention"
profile notes-3000 /api/notes/create '{"text":"hello from the benchmark"}' 1000
log "profiles and reports in $RESULTS/profile-*"
