#!/usr/bin/env bash
# Delivery throughput (issue 6 §2), with bench/cmd/deliveries: the queue
# package itself (queue.Open on Badger opened with queue.BadgerOptions, the
# real hook store, default queue options: 64 workers, 4 per hook), 100 hooks
# of 100 users all subscribed to `note`, a fast local receiver
# (bench/cmd/receiver). No proxy: events go straight to Queue.Enqueue.
#
#   drain   EVENTS events enqueued with the workers stopped (100 per Enqueue),
#           then queue.Run: deliveries/s until the receiver has every one
#   steady  one event per Enqueue (as one notes/create makes) at each rate of
#           RATES for STEADY seconds: enqueue → receipt latency p50/p99 (the
#           receiver subtracts the envelope's createdAt, the enqueue time)
#
# Then the diagnostics that locate the limit (DIAG_EVENTS events each; not
# the shipped configuration): the hook store replaced by an in-memory fake
# (no RecordAttempt write), Badger without SyncWrites, and the hooks spread
# over 16 receiver addresses (the sender keeps only PerHookConcurrency idle
# connections per host). A CPU profile of the main drain phase is saved.
#
# Environment: EVENTS (100000), RATES (100,200), STEADY (10), DIAG (1),
# DIAG_EVENTS (20000), PIN (1: the queue on the second half of the CPUs, the
# receiver on the first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EVENTS=${EVENTS:-100000}
RATES=${RATES:-100,200}
STEADY=${STEADY:-10}
DIAG=${DIAG:-1}
DIAG_EVENTS=${DIAG_EVENTS:-20000}

need
build
mkdir -p "$RESULTS"

addrs="127.0.0.1:$PORT_RECEIVER"
for i in $(seq 2 16); do addrs+=",127.0.0.$i:$PORT_RECEIVER"; done
start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "$addrs"
wait_port "$PORT_RECEIVER"

OUT=$WORK/delivery.jsonl
: >"$OUT"
run() { # LABEL ARGS…
	local label=$1
	shift
	log "deliveries $*"
	"${ON_SUT[@]}" "$BIN/deliveries" -receiver "http://127.0.0.1:$PORT_RECEIVER" "$@" | while read -r line; do
		log "  $line"
		echo "{\"label\":\"$label\",${line#\{}" >>"$OUT"
	done
}

t0=$SECONDS
run main -events "$EVENTS" -hooks-n 100 -rates "$RATES" -steady "${STEADY}s" -cpuprofile "$RESULTS/profile-delivery.cpu.pprof"
main_secs=$((SECONDS - t0))
if [[ $DIAG == 1 ]]; then
	run "shipped (baseline of the diagnostics)" -events "$DIAG_EVENTS" -rates ""
	run "hook store → in-memory fake" -events "$DIAG_EVENTS" -rates "" -hooks fake
	run "hooks on 16 receiver hosts" -events "$DIAG_EVENTS" -rates "" -hosts 16
	run "Badger SyncWrites=false" -events "$DIAG_EVENTS" -rates "" -nosync
	run "fake hooks + SyncWrites=false + 16 hosts" -events "$DIAG_EVENTS" -rates "" -hooks fake -nosync -hosts 16
fi

{
	echo "go tool pprof -top of the drain phase of the main run"
	go tool pprof -top -nodecount=30 "$BIN/deliveries" "$RESULTS/profile-delivery.cpu.pprof" 2>/dev/null
	echo
	go tool pprof -top -cum -nodecount=60 "$BIN/deliveries" "$RESULTS/profile-delivery.cpu.pprof" 2>/dev/null
} >"$RESULTS/profile-delivery.txt"

{
	echo "## Delivery throughput"
	echo
	echo "Command: \`EVENTS=$EVENTS RATES=$RATES STEADY=$STEADY PIN=$PIN bench/delivery.sh\` ($(date -u +%Y-%m-%dT%H:%MZ)); the main run took ${main_secs}s."
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
