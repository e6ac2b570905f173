#!/usr/bin/env bash
# Delivery throughput (issue 6 §2, issue 13), with bench/cmd/deliveries: the
# queue package itself (queue.Open on Badger opened with queue.BadgerOptions,
# the real hook store, default queue options: 64 workers, 4 per hook), 100
# hooks of 100 users all subscribed to `note`, a fast local receiver
# (bench/cmd/receiver). No proxy: events go straight to Queue.Enqueue. The
# program built from BASE (the baseline) runs first, then the working tree's,
# in the same run.
#
#   drain   EVENTS events enqueued with the workers stopped (100 per Enqueue),
#           then queue.Run: deliveries/s until the receiver has every one
#   steady  one event per Enqueue (as one notes/create makes) at each rate of
#           RATES for STEADY seconds: enqueue → receipt latency p50/p99 (the
#           receiver subtracts the envelope's createdAt, the enqueue time)
#
# A CPU profile of the working tree's drain phase is saved.
#
# Environment: BASE (e0e2ca0; empty: the working tree only), EVENTS (100000),
# BASE_EVENTS (EVENTS), RATES (100,1000), STEADY (10), PIN (1: the queue on
# the second half of the CPUs, the receiver on the first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE=${BASE-e0e2ca0}
EVENTS=${EVENTS:-100000}
BASE_EVENTS=${BASE_EVENTS:-$EVENTS}
RATES=${RATES:-100,1000}
STEADY=${STEADY:-10}

need
build
[[ -n $BASE ]] && build_base "$BASE"
mkdir -p "$RESULTS"

start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
wait_port "$PORT_RECEIVER"

OUT=$WORK/delivery.jsonl
: >"$OUT"
run() { # LABEL BINDIR ARGS…
	local label=$1 bin=$2
	shift 2
	log "$label: deliveries $*"
	"${ON_SUT[@]}" "$bin/deliveries" -receiver "http://127.0.0.1:$PORT_RECEIVER" "$@" | while read -r line; do
		log "  $line"
		echo "{\"label\":\"$label\",${line#\{}" >>"$OUT"
	done
}

if [[ -n $BASE ]]; then
	run "base ($BASE)" "$BIN_BASE" -events "$BASE_EVENTS" -hooks-n 100 -rates "$RATES" -steady "${STEADY}s"
fi
t0=$SECONDS
run new "$BIN" -events "$EVENTS" -hooks-n 100 -rates "$RATES" -steady "${STEADY}s" -cpuprofile "$RESULTS/profile-delivery.cpu.pprof"
main_secs=$((SECONDS - t0))

{
	echo "go tool pprof -top of the drain phase of the main run"
	go tool pprof -top -nodecount=30 "$BIN/deliveries" "$RESULTS/profile-delivery.cpu.pprof" 2>/dev/null
	echo
	go tool pprof -top -cum -nodecount=60 "$BIN/deliveries" "$RESULTS/profile-delivery.cpu.pprof" 2>/dev/null
} >"$RESULTS/profile-delivery.txt"

{
	echo "## Delivery throughput"
	echo
	echo "Command: \`BASE=$BASE EVENTS=$EVENTS BASE_EVENTS=$BASE_EVENTS RATES=$RATES STEADY=$STEADY PIN=$PIN bench/delivery.sh\` ($(date -u +%Y-%m-%dT%H:%MZ)); the working tree's run took ${main_secs}s."
	if [[ $PIN == 1 ]]; then
		echo "CPU layout: bench/cmd/deliveries (queue + Badger) on CPUs $SUT_CPUS, the receiver on CPUs $LOAD_CPUS."
	fi
	echo
	echo "| run | phase | events | enqueue rate /s | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | duplicates |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	while read -r line; do
		label=$(jget label <<<"$line")
		phase=$(jget phase <<<"$line")
		rate=$(jget rate <<<"$line")
		printf '| %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$label" "$phase" "$(jget events <<<"$line")" \
			"${rate:-—}" "$(jget deliveriesPerSecond <<<"$line")" "$(jget p50Ms <<<"$line")" "$(jget p90Ms <<<"$line")" \
			"$(jget p99Ms <<<"$line")" "$(jget maxMs <<<"$line")" "$(jget duplicates <<<"$line")"
	done <"$OUT"
	echo
	echo "Drain-phase latencies are mostly time spent waiting in the backlog (all events are enqueued before the workers start); the steady rows are the enqueue → receipt latency."
} | save delivery.md
cp "$OUT" "$RESULTS/delivery.jsonl"
