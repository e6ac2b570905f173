#!/usr/bin/env bash
# Where the durable path's tail comes from: the open-loop run of durable.sh
# (notes/create at RATE/s, 1,000 users × 3 hooks, every call enqueuing one
# delivery durably before it is answered, a receiver taking them) with every
# request slower than SLOW_MS listed per 100 ms of due time (bench/cmd/load
# -slow), set beside what the sidecar did at that moment:
#
#   gc     a garbage collection started (GODEBUG=gctrace=1, its start time)
#   mem    Badger switched to a new memtable (a new .mem file in the data
#          dir: the full one is flushed to a level-0 table meanwhile)
#   sst    a new table file appeared (that flush, or a compaction);
#          -sst: one was removed (a compaction's inputs)
#   vlog   a new value-log file; -vlog: one removed (value-log GC)
#
# Events within ±WINDOW_MS of a slow bucket are named beside it. direct (the
# same calls straight to the upstream) runs before each round, as in
# durable.sh, for its p99.
#
# Environment: ROUNDS (3), DURATION (5), RATE (1000), SLOW_MS (5),
# WINDOW_MS (150), SIDECAR_GOMAXPROCS (unset: Go's default, the size of the
# sidecar's CPU set), PIN (1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
RATE=${RATE:-1000}
SLOW_MS=${SLOW_MS:-5}
WINDOW_MS=${WINDOW_MS:-150}
SIDECAR_GOMAXPROCS=${SIDECAR_GOMAXPROCS:-}

need
build
mkdir -p "$RESULTS"
start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM" -webhook-limit 100
for p in "$PORT_RECEIVER" "$PORT_UPSTREAM"; do wait_port "$p"; done

DATA=$WORK/data
sidecar_config "$WORK/sidecar.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$DATA"
started=$(date +%s.%N)
GOMAXPROCS=$SIDECAR_GOMAXPROCS GODEBUG=gctrace=1 start sidecar "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/sidecar.yaml"
wait_port "$PORT_SIDECAR"
"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
	-users 1000 -per-user 3 -on "note,reply,renote,mention;follow,followed,unfollow;reaction,mention"

# Files the store makes and removes, with the time each change was first
# seen (every 20 ms; on the load CPUs, away from the sidecar's).
EVENTS=$WORK/events.txt
: >"$EVENTS"
(
	[[ $PIN == 1 ]] && taskset -pc "$LOAD_CPUS" $BASHPID >/dev/null
	declare -A seen
	while :; do
		declare -A now=()
		for f in "$DATA"/*.mem "$DATA"/*.sst "$DATA"/*.vlog; do
			[[ -e $f ]] || continue
			now[$f]=1
			[[ -z ${seen[$f]:-} ]] && echo "$(date +%s.%N) ${f##*.} ${f##*/}" >>"$EVENTS"
		done
		for f in "${!seen[@]}"; do
			[[ -z ${now[$f]:-} ]] && echo "$(date +%s.%N) -${f##*.} ${f##*/}" >>"$EVENTS"
		done
		seen=()
		for f in "${!now[@]}"; do seen[$f]=1; done
		unset now
		sleep 0.02
	done
) &
PIDS+=($!)

create=http://127.0.0.1:$PORT_SIDECAR/api/notes/create
direct=http://127.0.0.1:$PORT_UPSTREAM/api/notes/create
note='{"text":"hello from the benchmark"}'
run_load() { # URL LABEL SLOWFILE
	"${ON_LOAD[@]}" "$BIN/load" -url "$1" -body "$note" -tokens 1000 -rate "$RATE" -c 256 -d "$DURATION"s \
		-warmup 1s -label "$2" -slow "${SLOW_MS}ms" 2>"$3"
}
run_load "$create" warm /dev/null >/dev/null
wait_drained "$PORT_ADMIN" 900

OUT=$RESULTS/stalls.md
{
	echo "## Where the durable path's tail comes from"
	echo
	echo "Command: \`ROUNDS=$ROUNDS DURATION=$DURATION RATE=$RATE SLOW_MS=$SLOW_MS WINDOW_MS=$WINDOW_MS SIDECAR_GOMAXPROCS=$SIDECAR_GOMAXPROCS PIN=$PIN bench/stalls.sh\` ($(date -u +%Y-%m-%dT%H:%MZ)), code \`$(git -C "$ROOT" rev-parse --short HEAD)\`$(git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || echo " (with uncommitted changes)")."
	echo
} >"$OUT"
for ((r = 1; r <= ROUNDS; r++)); do
	d=$(run_load "$direct" direct /dev/null)
	line=$(run_load "$create" durable "$WORK/slow-$r.txt")
	wait_drained "$PORT_ADMIN" 900
	log "round $r: direct p99 $(jget p99_us <<<"$d") µs, durable p99 $(jget p99_us <<<"$line") µs"
	{
		echo "### Round $r: p99 direct $(jget p99_us <<<"$d") µs, through the sidecar $(jget p99_us <<<"$line") µs, max $(jget max_us <<<"$line") µs"
		echo
		echo '```'
		# Slow buckets (UTC HH:MM:SS.d), each with the store's and the
		# collector's events near it.
		grep '^slow ' "$WORK/slow-$r.txt" | while read -r _ at n _ _ worst _; do
			t=$(date -u -d "$(date -u +%F) $at" +%s.%N)
			near=$(
				grep '^gc ' "$WORK/sidecar.log" | awk -v st="$started" -v t="$t" -v w="$WINDOW_MS" '{
					s = $3; sub("@", "", s); sub("s", "", s)
					d = (st + s - t) * 1000; if (d > -w && d < 100 + w) printf "gc%+.0fms ", d }'
				awk -v t="$t" -v w="$WINDOW_MS" '{ d = ($1 - t) * 1000; if (d > -w && d < 100 + w) printf "%s%+.0fms ", $2, d }' "$EVENTS"
			)
			printf '%s  %3d slow, worst %6s ms  %s\n' "$at" "$n" "$worst" "$near"
		done
		echo '```'
		echo
	} >>"$OUT"
done
{
	echo "Slow: answered ≥ $SLOW_MS ms after it was due. Near: events from ${WINDOW_MS} ms before the 100 ms bucket to ${WINDOW_MS} ms after it (offset from the bucket's start)."
} >>"$OUT"
cat "$OUT"
