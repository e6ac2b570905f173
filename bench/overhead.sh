#!/usr/bin/env bash
# Proxy overhead (issue 6 §1): requests/s and latency of the same calls sent
#   direct        to the fake upstream
#   nginx         through nginx as a plain keep-alive reverse proxy
#   go-stock      through the standard library's httputil.ReverseProxy with a
#                 tuned transport (bench/cmd/stockproxy), the Go floor
#   untapped      through oceanhooks, an endpoint it never taps (notes/timeline)
#   untapped-stdlib  the same through oceanhooks with proxy.transport: stdlib
#                 (net/http's Transport instead of the proxy's own)
#   untapped-stdserver  the same through oceanhooks with proxy.server: stdlib
#                 (net/http's server instead of package front)
#   untapped-base the same through oceanhooks built from git revision BASE,
#                 when BASE is set (a before/after in one run)
#   direct-notes  notes/create, direct to the fake upstream
#   notes-0       notes/create through oceanhooks with no hook at all
#   notes-3000    notes/create through oceanhooks with 1,000 users × 3 hooks,
#                 every author subscribed to `note` (each call enqueues one
#                 delivery durably before the client gets its answer; a
#                 receiver takes the deliveries)
# first closed-loop with wrk, then open-loop at a fixed rate with
# bench/cmd/load, ROUNDS times, configurations alternating within a round;
# then direct-notes and notes-3000 once more at LOW_RATE, a rate the
# durable path can sustain. The notes-3000 sidecar's queue is drained before
# every next run.
#
# Environment: ROUNDS (3), DURATION (5, seconds per run), CONNS (64),
# RATE (1000 requests/s), LOW_RATE (250 requests/s), BASE (unset: a git
# revision to build and measure beside the working tree), ONLY (unset: a
# space-separated subset of the configurations to run), PIN (1: load
# generator and receiver on the first half of the CPUs, everything under test
# on the other half; 0: no pinning).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
RATE=${RATE:-1000}
LOW_RATE=${LOW_RATE:-250}

need
build

# build_revision REV OUT builds the oceanhooks binary of git revision REV,
# from an export of that revision (the clone's state is left alone).
build_revision() {
	log "building $1 into $2"
	local src=$WORK/src-$1
	mkdir -p "$src"
	git -C "$ROOT" archive "$1" | tar -x -C "$src"
	(cd "$src" && go build -o "$2" .)
}
BASE=${BASE:-}
if [[ -n $BASE ]]; then
	build_revision "$BASE" "$BIN/oceanhooks-base"
fi

if [[ $PIN == 1 ]]; then
	LOAD_THREADS=$(cpuset_size "$LOAD_CPUS")
	NGINX_WORKERS=$(cpuset_size "$SUT_CPUS")
	log "pinned: load generator + receiver on CPUs $LOAD_CPUS, upstream + proxies on CPUs $SUT_CPUS"
else
	LOAD_THREADS=$((NCPU > 1 ? NCPU / 2 : 1))
	NGINX_WORKERS=auto
	log "not pinned"
fi

# nginx: a plain reverse proxy with keep-alive to the upstream, no logging.
nginx_keepalive_conf "$NGINX_WORKERS"

sidecar_config "$WORK/a.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$WORK/data-a"
sidecar_config "$WORK/b.yaml" "$PORT_SIDECAR_B" "$PORT_ADMIN_B" "$WORK/data-b"
sidecar_config "$WORK/c.yaml" "$PORT_SIDECAR_C" "$PORT_ADMIN_C" "$WORK/data-c" "proxy:
  transport: stdlib"
sidecar_config "$WORK/d.yaml" "$PORT_SIDECAR_D" "$PORT_ADMIN_D" "$WORK/data-d"
sidecar_config "$WORK/e.yaml" "$PORT_SIDECAR_E" "$PORT_ADMIN_E" "$WORK/data-e" "proxy:
  server: stdlib"

start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM"
start stockproxy "${ON_SUT[@]}" "$BIN/stockproxy" -listen "127.0.0.1:$PORT_STOCK" -upstream "http://127.0.0.1:$PORT_UPSTREAM"
start nginx "${ON_SUT[@]}" "$(nginx_bin)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
start sidecar-a "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/a.yaml"
start sidecar-b "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/b.yaml"
start sidecar-c "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/c.yaml"
start sidecar-e "${ON_SUT[@]}" "$BIN/oceanhooks" serve --config "$WORK/e.yaml"
ports=("$PORT_RECEIVER" "$PORT_UPSTREAM" "$PORT_NGINX" "$PORT_STOCK" "$PORT_SIDECAR" "$PORT_SIDECAR_B" "$PORT_SIDECAR_C" "$PORT_SIDECAR_E")
if [[ -n $BASE ]]; then
	start sidecar-d "${ON_SUT[@]}" "$BIN/oceanhooks-base" serve --config "$WORK/d.yaml"
	ports+=("$PORT_SIDECAR_D")
fi
for p in "${ports[@]}"; do wait_port "$p"; done

log "creating 1,000 users × 3 hooks on the notes-3000 sidecar"
"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR_B" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
	-users 1000 -per-user 3 -on "note,reply,renote,mention;follow,followed,unfollow;reaction,mention"

TIMELINE=/api/notes/timeline
CREATE=/api/notes/create
declare -A URL BODY TOKENS
URL[direct]=http://127.0.0.1:$PORT_UPSTREAM$TIMELINE
URL[nginx]=http://127.0.0.1:$PORT_NGINX$TIMELINE
URL[go-stock]=http://127.0.0.1:$PORT_STOCK$TIMELINE
URL[untapped]=http://127.0.0.1:$PORT_SIDECAR$TIMELINE
URL[untapped-stdlib]=http://127.0.0.1:$PORT_SIDECAR_C$TIMELINE
URL[untapped-stdserver]=http://127.0.0.1:$PORT_SIDECAR_E$TIMELINE
URL[untapped-base]=http://127.0.0.1:$PORT_SIDECAR_D$TIMELINE
URL[direct-notes]=http://127.0.0.1:$PORT_UPSTREAM$CREATE
URL[notes-0]=http://127.0.0.1:$PORT_SIDECAR$CREATE
URL[notes-3000]=http://127.0.0.1:$PORT_SIDECAR_B$CREATE
for c in direct nginx go-stock untapped untapped-stdlib untapped-stdserver untapped-base; do BODY[$c]='{"limit":10}' TOKENS[$c]=1; done
for c in direct-notes notes-0 notes-3000; do BODY[$c]='{"text":"hello from the benchmark"}' TOKENS[$c]=1000; done
CONFIGS=(direct nginx go-stock untapped untapped-stdlib untapped-stdserver)
if [[ -n $BASE ]]; then CONFIGS+=(untapped-base); fi
CONFIGS+=(direct-notes notes-0 notes-3000)
if [[ -n ${ONLY:-} ]]; then
	read -r -a CONFIGS <<<"$ONLY"
fi
LOW=(direct-notes notes-3000)
if [[ -n ${ONLY:-} ]]; then LOW=(); fi

OUTJ=$WORK/overhead.jsonl
: >"$OUTJ"

# after C: let the notes-3000 queue drain so that its deliveries do not
# compete with the next run.
after() {
	if [[ $1 == notes-3000 ]]; then
		local t=$SECONDS
		wait_drained "$PORT_ADMIN_B" 900
		log "  drained notes-3000 queue in $((SECONDS - t))s"
	fi
}

wrk_run() { # CONFIG SECONDS
	BENCH_BODY=${BODY[$1]} BENCH_TOKENS=${TOKENS[$1]} BENCH_LABEL=$1 BENCH_CONNS=$CONNS \
		"${ON_LOAD[@]}" wrk -t"$LOAD_THREADS" -c"$CONNS" -d"$2"s --timeout 10s -s "$BENCH_DIR/wrk.lua" "${URL[$1]}" | tail -n 1
}

load_run() { # CONFIG SECONDS [RATE]
	"${ON_LOAD[@]}" "$BIN/load" -url "${URL[$1]}" -body "${BODY[$1]}" -tokens "${TOKENS[$1]}" \
		-rate "${3:-$RATE}" -c 256 -d "$2"s -warmup 1s -label "$1"
}

log "warm-up: 2s of each configuration"
for c in "${CONFIGS[@]}"; do
	wrk_run "$c" 2 >/dev/null
	after "$c"
done

for ((r = 1; r <= ROUNDS; r++)); do
	# Rotate the order so that no configuration always runs first.
	k=$(((r - 1) % ${#CONFIGS[@]}))
	order=("${CONFIGS[@]:k}" "${CONFIGS[@]:0:k}")
	for c in "${order[@]}"; do
		line=$(wrk_run "$c" "$DURATION")
		log "round $r closed $line"
		echo "{\"round\":$r,${line#\{}" >>"$OUTJ"
		after "$c"
	done
	for c in "${order[@]}"; do
		line=$(load_run "$c" "$DURATION")
		log "round $r open   $line"
		echo "{\"round\":$r,${line#\{}" >>"$OUTJ"
		after "$c"
	done
	for c in "${LOW[@]}"; do
		line=$(load_run "$c" "$DURATION" "$LOW_RATE")
		log "round $r low    $line"
		echo "{\"round\":$r,${line#\{}" >>"$OUTJ"
		after "$c"
	done
done

delivered=$(receiver_stat unique)
dups=$(receiver_stat duplicates)
{
	echo "## Proxy overhead"
	echo
	echo "Command: \`ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS RATE=$RATE LOW_RATE=$LOW_RATE ${BASE:+BASE=$BASE }PIN=$PIN bench/overhead.sh\` ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "Code measured: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)${BASE:+; untapped-base: $BASE}."
	echo
	if [[ $PIN == 1 ]]; then
		echo "CPU layout: wrk / bench/cmd/load and the receiver on CPUs $LOAD_CPUS; upstream, nginx ($NGINX_WORKERS workers) and the sidecars on CPUs $SUT_CPUS (Go: GOMAXPROCS $(cpuset_size "$SUT_CPUS"))."
	else
		echo "CPU layout: no pinning; everything shares the $NCPU CPUs (nginx worker_processes auto)."
	fi
	echo "Closed loop: \`wrk -t$LOAD_THREADS -c$CONNS -d${DURATION}s -s bench/wrk.lua URL\`; fixed rate: \`bench/cmd/load -rate $RATE (or $LOW_RATE) -c 256 -d ${DURATION}s -warmup 1s\`."
	echo
	"$BIN/report" -order "$(IFS=,; echo "${CONFIGS[*]}")" "$OUTJ"
	echo "Deliveries received from the notes-3000 sidecar during the runs: $delivered (duplicates: $dups)."
} | save overhead.md
cp "$OUTJ" "$RESULTS/overhead.jsonl"
