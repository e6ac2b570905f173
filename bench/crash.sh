#!/usr/bin/env bash
# Crash loss (issue 6 §4), through the oceanhooks binary: 100 users of the
# fake upstream hold one hook each, subscribed to `note`, pointing at a fast
# receiver. bench/cmd/load sends notes/create at RATE requests/s (open loop,
# the users in turn) and records the createdNote.id of every 200 answer.
# Meanwhile the sidecar is killed with SIGKILL every 2–5 s for KILL_SECONDS and
# restarted at once on the same data dir. After the load, the queue drains;
# then every id the client got a 200 for must have reached the receiver in a
# `note` delivery at least once (the receiver records body.note.id).
#
# Environment: RATE (200), KILL_SECONDS (60), PIN (1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATE=${RATE:-200}
KILL_SECONDS=${KILL_SECONDS:-60}
USERS=100

need
build
DATA=$WORK/data
sidecar_config "$WORK/sidecar.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$DATA"
start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM"
start sidecar "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/sidecar.yaml"
for p in "$PORT_RECEIVER" "$PORT_UPSTREAM" "$PORT_SIDECAR"; do wait_port "$p"; done
"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
	-users "$USERS" -per-user 1 -on note

LOAD_SECONDS=$((KILL_SECONDS + 5))
log "load: $RATE notes/create per second for ${LOAD_SECONDS}s; SIGKILL every 2–5 s for ${KILL_SECONDS}s"
start load "${ON_LOAD[@]}" "$BIN/load" -url "http://127.0.0.1:$PORT_SIDECAR/api/notes/create" \
	-body '{"text":"crash test"}' -tokens "$USERS" -rate "$RATE" -c 64 -d "${LOAD_SECONDS}s" -warmup 0s \
	-timeout 5s -ids "$WORK/ids.txt" -label crash
t0=$SECONDS
kills=0
restart_ms=()
while ((SECONDS - t0 < KILL_SECONDS)); do
	sleep "$((2 + RANDOM % 4))"
	kill -9 "$(pid_of sidecar)"
	wait "$(pid_of sidecar)" 2>/dev/null || true
	kills=$((kills + 1))
	ts=$(date +%s%N)
	start sidecar "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/sidecar.yaml"
	wait_port "$PORT_SIDECAR" 60
	restart_ms+=($((($(date +%s%N) - ts) / 1000000)))
	log "  kill $kills: back in ${restart_ms[-1]} ms"
done
wait "$(pid_of load)"
load_json=$(tail -n 1 "$WORK/load.log")
log "load: $load_json"

log "waiting for the queue to drain"
wait_drained "$PORT_ADMIN" 600
sleep 2
curl -fsS "http://127.0.0.1:$PORT_RECEIVER/notes" | sort -u >"$WORK/delivered.txt"
sort -u "$WORK/ids.txt" >"$WORK/acked.txt"
events=$(wc -l <"$WORK/acked.txt")
lost=$(comm -23 "$WORK/acked.txt" "$WORK/delivered.txt" | wc -l)
extra=$(comm -13 "$WORK/acked.txt" "$WORK/delivered.txt" | wc -l)
received=$(receiver_stat received)
unique=$(receiver_stat unique)
dups=$(receiver_stat duplicates)
failed=$(($(jget errors <<<"$load_json") + $(jget non2xx <<<"$load_json")))
dead=$(metric "$PORT_ADMIN" oceanhooks_queue_dead)
restarts=$(printf '%s\n' "${restart_ms[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "median %d ms, max %d ms", a[int((NR + 1) / 2)], a[NR] }')
log "events $events, lost $lost, duplicates $dups"

{
	echo "## Crash loss"
	echo
	echo "Command: \`RATE=$RATE KILL_SECONDS=$KILL_SECONDS PIN=$PIN bench/crash.sh\` ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "| measure | value |"
	echo "|---|---:|"
	echo "| SIGKILLs (every 2–5 s for ${KILL_SECONDS} s) | $kills (restart until listening: $restarts) |"
	echo "| notes/create answered 200 = events | $events |"
	echo "| requests that failed (connection refused/reset while down) | $failed |"
	echo "| **events lost** (200 but no \`note\` delivery) | **$lost** |"
	echo "| deliveries received / distinct eventIds / **duplicates** | $received / $unique / **$dups** |"
	echo "| notes delivered without a 200 to the client (killed after the enqueue, before the answer) | $extra |"
	echo "| dead letters | $dead |"
	echo
	echo "Load: \`$load_json\`"
} | save crash.md
((lost == 0)) || die "$lost events lost"
