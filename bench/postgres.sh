#!/usr/bin/env bash
# The PostgreSQL store (issue 12) next to Badger, in one run, on a throwaway
# PostgreSQL cluster this script starts on PORT_BASE+14 (Debian's
# postgresql; durable like Badger's synced writes: fsync and
# synchronous_commit on, the defaults):
#
#   deliveries  bench/cmd/deliveries' drain phase (EVENTS events enqueued
#               with the workers stopped, 100 hooks of 100 users, a fast
#               local receiver): on Badger; on PostgreSQL with one sidecar;
#               with three sharing the schema (three hook stores and queues
#               in one process, each on a pool of its own)
#   durable     closed loop (wrk, CONNS connections in all, DURATION s, ROUNDS
#               rounds, the median taken): notes/create with 1,000 users × 1
#               `note` hook through the oceanhooks binary in front of the
#               fake upstream, each call storing one delivery durably before
#               it is answered: one sidecar on Badger, one on PostgreSQL,
#               three on PostgreSQL (three wrk at once, CONNS/3 connections
#               each, their req/s summed)
#
# Every process (PostgreSQL included) shares this machine's CPUs; with PIN=1
# the load generator and the receiver run on the first half, everything
# under test on the second.
#
# Environment: EVENTS (20000), ROUNDS (3), DURATION (5), CONNS (48), PIN (1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EVENTS=${EVENTS:-20000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-48}
PORT_PG=$((PORT_BASE + 14))
SIDECAR_PORTS=("$PORT_SIDECAR" "$PORT_SIDECAR_B" "$PORT_SIDECAR_C")
ADMIN_PORTS=("$PORT_ADMIN" "$PORT_ADMIN_B" "$PORT_ADMIN_C")

need
build
mkdir -p "$RESULTS"
LOAD_THREADS=1
[[ $PIN == 1 ]] && LOAD_THREADS=$(cpuset_size "$LOAD_CPUS")

# pg_start runs a cluster in $WORK/pg (as the user postgres when root: initdb
# refuses root), stopped by cleanup's kill of pg_ctl's postmaster.
pg_bin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")
[[ -x $pg_bin/initdb ]] || die "initdb not found: install Debian's postgresql"
as=()
mkdir -p "$WORK/pg"
if [[ $(id -u) == 0 ]]; then
	chmod 755 "$WORK"
	chown postgres: "$WORK/pg"
	as=(runuser -u postgres --)
fi
"${as[@]}" "$pg_bin/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 ||
	die "initdb failed: $(cat "$WORK/initdb.log")"
start postgres "${ON_SUT[@]}" "${as[@]}" "$pg_bin/postgres" -D "$WORK/pg/data" -p "$PORT_PG" -k "$WORK/pg" \
	-c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB
wait_port "$PORT_PG"
PGURL="postgres://postgres@127.0.0.1:$PORT_PG/postgres?sslmode=disable"
log "PostgreSQL $("$pg_bin/postgres" --version | awk '{ print $3 }') on 127.0.0.1:$PORT_PG"

start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM" -webhook-limit 100
wait_port "$PORT_RECEIVER"
wait_port "$PORT_UPSTREAM"

declare -A LABELS=([badger]="Badger, 1 sidecar" [pg-1]="PostgreSQL, 1 sidecar" [pg-3]="PostgreSQL, 3 sidecars")
OUTJ=$WORK/postgres.jsonl
: >"$OUTJ"
record() { # SETUP JSON-LINE
	echo "{\"setup\":\"$1\",${2#\{}" >>"$OUTJ"
}

# --- deliveries/s: the queue by itself
deliveries() { # SETUP ARGS…
	local setup=$1 line
	shift
	log "deliveries: $setup"
	line=$("${ON_SUT[@]}" "$BIN/deliveries" -receiver "http://127.0.0.1:$PORT_RECEIVER" -events "$EVENTS" -hooks-n 100 -rates "" "$@")
	log "  $line"
	record "$setup" "$line"
}
deliveries badger
deliveries pg-1 -postgres "$PGURL" -sidecars 1
deliveries pg-3 -postgres "$PGURL" -sidecars 3

# --- durable notes/create req/s through the binary
wrk_run() { # URL CONNS SECONDS LABEL
	BENCH_BODY='{"text":"hello from the benchmark"}' BENCH_TOKENS=1000 BENCH_LABEL=$4 BENCH_CONNS=$2 \
		"${ON_LOAD[@]}" wrk -t"$LOAD_THREADS" -c"$2" -d"$3"s --timeout 10s -s "$BENCH_DIR/wrk.lua" "$1" | tail -n 1
}
# sidecars_up SETUP N [EXTRA YAML]: N sidecars on the ports above.
sidecars_up() {
	local setup=$1 n=$2 extra=${3:-} i
	for ((i = 0; i < n; i++)); do
		sidecar_config "$WORK/$setup-$i.yaml" "${SIDECAR_PORTS[$i]}" "${ADMIN_PORTS[$i]}" "$WORK/data-$setup-$i" "$extra"
		start "$setup-$i" "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/$setup-$i.yaml"
	done
	for ((i = 0; i < n; i++)); do wait_port "${SIDECAR_PORTS[$i]}"; done
}
sidecars_down() { # SETUP N
	local i
	for ((i = 0; i < $2; i++)); do stop "$1-$i"; done
}
# drained N: every sidecar's queue is empty.
drained() {
	local i
	for ((i = 0; i < $1; i++)); do wait_drained "${ADMIN_PORTS[$i]}" 900; done
}
# wrk_all N SECONDS: wrk on each of the N sidecars at once, CONNS/N
# connections each, their JSON lines in $WORK/wrk-<i>.json.
wrk_all() {
	local n=$1 secs=$2 i pids=()
	for ((i = 0; i < n; i++)); do
		wrk_run "http://127.0.0.1:${SIDECAR_PORTS[$i]}/api/notes/create" $((CONNS / n)) "$secs" durable >"$WORK/wrk-$i.json" &
		pids+=($!)
	done
	wait "${pids[@]}"
}
durable() { # SETUP N [EXTRA YAML]
	local setup=$1 n=$2 extra=${3:-} r i rps
	log "durable: $setup"
	sidecars_up "$setup" "$n" "$extra"
	"$BIN/mkhooks" -sidecar "http://127.0.0.1:${SIDECAR_PORTS[0]}" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
		-users 1000 -per-user 1 -on note
	wrk_all "$n" 2
	drained "$n"
	for ((r = 1; r <= ROUNDS; r++)); do
		wrk_all "$n" "$DURATION"
		rps=$(for ((i = 0; i < n; i++)); do jget rps <"$WORK/wrk-$i.json"; done | awk '{ s += $1 } END { printf "%.0f", s }')
		log "  round $r: $rps req/s"
		record "$setup" "{\"phase\":\"durable\",\"round\":$r,\"rps\":$rps}"
		drained "$n"
	done
	sidecars_down "$setup" "$n"
}
pg_yaml() { # SCHEMA
	printf 'store:\n  backend: postgres\n  postgres:\n    url: "%s"\n    schema: %s\n' "$PGURL" "$1"
}
durable badger 1
durable pg-1 1 "$(pg_yaml bench_one)"
durable pg-3 3 "$(pg_yaml bench_three)"

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "—"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
{
	echo "## The PostgreSQL store next to Badger"
	echo
	echo "Command: \`EVENTS=$EVENTS ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS PIN=$PIN bench/postgres.sh\` ($(date -u +%Y-%m-%dT%H:%MZ)) at \`$(git -C "$ROOT" rev-parse --short HEAD)\`$(git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || echo " (with uncommitted changes)"); PostgreSQL $("$pg_bin/postgres" --version | awk '{ print $3 }') on the same machine (fsync and synchronous_commit on)."
	[[ $PIN == 1 ]] && echo "CPU layout: wrk and the receiver on CPUs $LOAD_CPUS; the upstream, the sidecars, bench/cmd/deliveries and PostgreSQL on CPUs $SUT_CPUS."
	echo
	echo "| store | deliveries/s (drain, $EVENTS events) | durable notes/create req/s (closed loop, $CONNS connections, median of $ROUNDS) |"
	echo "|---|---:|---:|"
	for setup in badger pg-1 pg-3; do
		d=$(grep -F "\"setup\":\"$setup\"" "$OUTJ" | grep '"phase":"drain"' | jget deliveriesPerSecond | awk '{ printf "%.0f", $1 }')
		c=$(grep -F "\"setup\":\"$setup\"" "$OUTJ" | grep '"phase":"durable"' | while read -r l; do jget rps <<<"$l"; done | median)
		echo "| ${LABELS[$setup]} | $d | $c |"
	done
	echo
	echo "Deliveries received: $(receiver_stat unique) since the last reset (duplicates: $(receiver_stat duplicates))."
} | save postgres.md
cp "$OUTJ" "$RESULTS/postgres.jsonl"
