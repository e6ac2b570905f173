#!/usr/bin/env bash
# The durable path (issue 13), the binary built from BASE (the baseline)
# and from the working tree, one after the other in the same run, through
# the oceanhooks binary in front of the fake upstream:
#
#   ratio    closed loop (wrk, CONNS connections, DURATION s, ROUNDS rounds):
#            notes/create with 1,000 users × 3 hooks (each call enqueues one
#            `note` delivery durably before it is answered; a receiver takes
#            them) against notes/timeline, which is never tapped, on the same
#            sidecar; the ratio is taken per round, then the median
#   p99      open loop at RATE requests/s (bench/cmd/load): notes/create
#            direct to the upstream and through that sidecar; p99 added
#   cpu      sidecar CPU time per tapped call, deliveries included: 100 users
#            with a `note` hook and a `mention` hook each, notes/create
#            mentioning the next user (two events, two deliveries per call) at
#            CPU_RATE/s for CPU_SECONDS s; the process's user + system time
#            from before the load until every delivery was received, divided
#            by the calls; on a fresh store, then (the working tree only) on
#            the same store after HISTORY past deliveries (one user with 100
#            hooks, HISTORY/100 calls, all delivered and kept, as
#            delivery.retention keeps them)
#
# Besides lib.sh's ports it uses PORT_BASE+13 (a second fake upstream).
#
# Environment: BASE (e0e2ca0, the last commit before group commit; empty:
# the working tree only), ROUNDS (3), DURATION (5), CONNS (64), RATE (1000),
# CPU_RATE (500), CPU_SECONDS (20), HISTORY (1000000; 0: skip), PIN (1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE=${BASE-e0e2ca0}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
RATE=${RATE:-1000}
CPU_RATE=${CPU_RATE:-500}
CPU_SECONDS=${CPU_SECONDS:-20}
HISTORY=${HISTORY:-1000000}
((HISTORY % 100 == 0)) || die "HISTORY must be a multiple of 100"
PORT_UPSTREAM_M=$((PORT_BASE + 13)) # the upstream whose notes mention the next user

need
build
VARIANTS=(new)
if [[ -n $BASE ]]; then
	build_base "$BASE"
	VARIANTS=(base new)
fi
bin_of() { if [[ $1 == base ]]; then echo "$BIN_BASE"; else echo "$BIN"; fi; }
mkdir -p "$RESULTS"
LOAD_THREADS=1
[[ $PIN == 1 ]] && LOAD_THREADS=$(cpuset_size "$LOAD_CPUS")

start receiver "${ON_LOAD[@]}" "$BIN/receiver" -listen "127.0.0.1:$PORT_RECEIVER"
start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM" -webhook-limit 100
start upstream-m "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM_M" -webhook-limit 100 -mention-users 100
for p in "$PORT_RECEIVER" "$PORT_UPSTREAM" "$PORT_UPSTREAM_M"; do wait_port "$p"; done

OUTJ=$WORK/durable.jsonl
: >"$OUTJ"
record() { # VARIANT JSON-LINE
	echo "{\"variant\":\"$1\",${2#\{}" >>"$OUTJ"
}
wrk_run() { # URL BODY TOKENS SECONDS LABEL
	BENCH_BODY=$2 BENCH_TOKENS=$3 BENCH_LABEL=$5 BENCH_CONNS=$CONNS \
		"${ON_LOAD[@]}" wrk -t"$LOAD_THREADS" -c"$CONNS" -d"$4"s --timeout 10s -s "$BENCH_DIR/wrk.lua" "$1" | tail -n 1
}
load_run() { # URL BODY TOKENS SECONDS RATE LABEL
	"${ON_LOAD[@]}" "$BIN/load" -url "$1" -body "$2" -tokens "$3" -rate "$5" -c 256 -d "$4"s -warmup 1s -label "$6"
}
sidecar_up() { # NAME VARIANT DATADIR UPSTREAMPORT
	local upstream=$4
	sidecar_config "$WORK/$1.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$3"
	sed -i "s|^upstream: .*|upstream: \"http://127.0.0.1:$upstream\"|" "$WORK/$1.yaml"
	start "$1" "${ON_SUT[@]}" "$(bin_of "$2")/oceanhooks" serve --config "$WORK/$1.yaml"
	wait_port "$PORT_SIDECAR"
}
# cpu_per_call VARIANT LABEL: CPU_RATE notes/create mentioning the next user
# for CPU_SECONDS, until all 2 deliveries of each are received.
cpu_per_call() {
	local variant=$1 label=$2 pid hz t0 t1 calls want line
	pid=$(pid_of "cpu-$variant")
	hz=$(getconf CLK_TCK)
	curl -fsS -X POST "http://127.0.0.1:$PORT_RECEIVER/reset" >/dev/null
	t0=$(cpu_ticks "$pid")
	line=$(load_run "http://127.0.0.1:$PORT_SIDECAR/api/notes/create" '{"text":"hello @next"}' 100 "$CPU_SECONDS" "$CPU_RATE" "$label")
	calls=$(jget requests <<<"$line")
	want=$((2 * calls))
	local start=$SECONDS
	while (($(receiver_stat unique) < want)); do
		((SECONDS - start < 900)) || die "$label: $(receiver_stat unique) of $want deliveries after 900 s"
		sleep 0.2
	done
	t1=$(cpu_ticks "$pid")
	local ms
	ms=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$calls" 'BEGIN { printf "%.3f", d / hz * 1000 / n }')
	log "  $label: $calls calls, $want deliveries, $((t1 - t0)) ticks: $ms ms of CPU per call"
	record "$variant" "{\"phase\":\"cpu\",\"label\":\"$label\",\"calls\":$calls,\"deliveries\":$want,\"ticks\":$((t1 - t0)),\"hz\":$hz,\"msPerCall\":$ms,\"load\":$line}"
}

for v in "${VARIANTS[@]}"; do
	log "== $v: closed-loop ratio and open-loop p99"
	sidecar_up "ratio-$v" "$v" "$WORK/data-ratio-$v" "$PORT_UPSTREAM"
	"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
		-users 1000 -per-user 3 -on "note,reply,renote,mention;follow,followed,unfollow;reaction,mention"
	timeline=http://127.0.0.1:$PORT_SIDECAR/api/notes/timeline
	create=http://127.0.0.1:$PORT_SIDECAR/api/notes/create
	direct=http://127.0.0.1:$PORT_UPSTREAM/api/notes/create
	note='{"text":"hello from the benchmark"}'
	wrk_run "$timeline" '{"limit":10}' 1 2 warm >/dev/null
	wrk_run "$create" "$note" 1000 2 warm >/dev/null
	wait_drained "$PORT_ADMIN" 900
	for ((r = 1; r <= ROUNDS; r++)); do
		line=$(wrk_run "$timeline" '{"limit":10}' 1 "$DURATION" untapped)
		log "  round $r untapped $line"
		record "$v" "{\"phase\":\"closed\",\"round\":$r,${line#\{}"
		line=$(wrk_run "$create" "$note" 1000 "$DURATION" durable)
		log "  round $r durable  $line"
		record "$v" "{\"phase\":\"closed\",\"round\":$r,${line#\{}"
		wait_drained "$PORT_ADMIN" 900
		line=$(load_run "$direct" "$note" 1000 "$DURATION" "$RATE" direct-notes)
		log "  round $r direct   $line"
		record "$v" "{\"phase\":\"open\",\"round\":$r,${line#\{}"
		line=$(load_run "$create" "$note" 1000 "$DURATION" "$RATE" durable)
		log "  round $r durable  $line"
		record "$v" "{\"phase\":\"open\",\"round\":$r,${line#\{}"
		wait_drained "$PORT_ADMIN" 900
	done
	stop "ratio-$v"

	log "== $v: CPU per tapped call"
	sidecar_config "$WORK/cpu-$v.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$WORK/data-cpu-$v"
	sed -i "s|^upstream: .*|upstream: \"http://127.0.0.1:$PORT_UPSTREAM_M\"|" "$WORK/cpu-$v.yaml"
	start "cpu-$v" "${ON_SUT[@]}" "$(bin_of "$v")/oceanhooks" serve --config "$WORK/cpu-$v.yaml"
	wait_port "$PORT_SIDECAR"
	"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
		-users 100 -per-user 2 -on "note;mention"
	load_run "http://127.0.0.1:$PORT_SIDECAR/api/notes/create" '{"text":"warm-up"}' 100 2 100 warm >/dev/null
	wait_drained "$PORT_ADMIN" 900
	cpu_per_call "$v" fresh
	if [[ $v == new && $HISTORY -gt 0 ]]; then
		log "  $HISTORY past deliveries: user tok-100 with 100 hooks, $((HISTORY / 100)) calls"
		"$BIN/mkhooks" -sidecar "http://127.0.0.1:$PORT_SIDECAR" -receiver "http://127.0.0.1:$PORT_RECEIVER" \
			-users 101 -per-user 100 -on note -only-user 100
		t=$SECONDS
		"${ON_LOAD[@]}" "$BIN/load" -url "http://127.0.0.1:$PORT_SIDECAR/api/notes/create" -body '{"text":"history"}' \
			-tokens 1 -token-offset 100 -c 8 -n $((HISTORY / 100)) -label history >/dev/null
		wait_drained "$PORT_ADMIN" 3600
		log "  history delivered in $((SECONDS - t)) s; data dir $(du -sh "$WORK/data-cpu-$v" | cut -f1)"
		wait_quiet "$(pid_of "cpu-$v")" 300 >/dev/null
		cpu_per_call "$v" "after $HISTORY"
	fi
	stop "cpu-$v"
done

# median FILE-FILTER: the median of the numbers on stdin.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "—"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
field() { jget "$1"; }
rows() { # VARIANT PHASE LABEL FIELD
	grep "\"variant\":\"$1\"" "$OUTJ" | grep "\"phase\":\"$2\"" | grep "\"label\":\"$3\"" | while read -r l; do field "$4" <<<"$l"; done
}
ratio() { # VARIANT: median over rounds of durable rps / untapped rps
	local v=$1 r a b
	for ((r = 1; r <= ROUNDS; r++)); do
		a=$(grep "\"variant\":\"$v\"" "$OUTJ" | grep '"phase":"closed"' | grep "\"round\":$r," | grep '"label":"durable"' | field rps)
		b=$(grep "\"variant\":\"$v\"" "$OUTJ" | grep '"phase":"closed"' | grep "\"round\":$r," | grep '"label":"untapped"' | field rps)
		awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f\n", a / b }'
	done | median
}
p99added() { # VARIANT: median over rounds of durable p99 − direct p99 (ms)
	local v=$1 r a b
	for ((r = 1; r <= ROUNDS; r++)); do
		a=$(grep "\"variant\":\"$v\"" "$OUTJ" | grep '"phase":"open"' | grep "\"round\":$r," | grep '"label":"durable"' | field p99_us)
		b=$(grep "\"variant\":\"$v\"" "$OUTJ" | grep '"phase":"open"' | grep "\"round\":$r," | grep '"label":"direct-notes"' | field p99_us)
		awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f\n", (a - b) / 1000 }'
	done | median
}
{
	echo "## The durable path"
	echo
	echo "Command: \`BASE=$BASE ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS RATE=$RATE CPU_RATE=$CPU_RATE CPU_SECONDS=$CPU_SECONDS HISTORY=$HISTORY PIN=$PIN bench/durable.sh\` ($(date -u +%Y-%m-%dT%H:%MZ)); base: \`$BASE\`, new: the working tree at \`$(git -C "$ROOT" rev-parse --short HEAD)\`$(git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || echo " (with uncommitted changes)")."
	[[ $PIN == 1 ]] && echo "CPU layout: wrk / bench/cmd/load and the receiver on CPUs $LOAD_CPUS; the upstreams and the sidecar on CPUs $SUT_CPUS."
	echo
	echo "| figure | ${VARIANTS[*]/%/ |}"
	printf '|---|'
	for _ in "${VARIANTS[@]}"; do printf -- '---:|'; done
	echo
	printf '| untapped req/s (closed loop, median) |'
	for v in "${VARIANTS[@]}"; do printf ' %s |' "$(rows "$v" closed untapped rps | median)"; done
	echo
	printf '| notes/create with a subscribed hook req/s (closed loop, median) |'
	for v in "${VARIANTS[@]}"; do printf ' %s |' "$(rows "$v" closed durable rps | median)"; done
	echo
	printf '| durable / untapped (median of per-round ratios) |'
	for v in "${VARIANTS[@]}"; do printf ' **%s×** |' "$(ratio "$v")"; done
	echo
	printf '| p99 at %s/s: direct notes/create ms (median) |' "$RATE"
	for v in "${VARIANTS[@]}"; do printf ' %s |' "$(rows "$v" open direct-notes p99_us | median | awk '{ printf "%.2f", $1 / 1000 }')"; done
	echo
	printf '| p99 at %s/s: through the sidecar, durable ms (median) |' "$RATE"
	for v in "${VARIANTS[@]}"; do printf ' %s |' "$(rows "$v" open durable p99_us | median | awk '{ printf "%.2f", $1 / 1000 }')"; done
	echo
	printf '| p99 added by the durable path at %s/s (median of per-round differences) |' "$RATE"
	for v in "${VARIANTS[@]}"; do printf ' **+%s ms** |' "$(p99added "$v")"; done
	echo
	printf '| sidecar CPU per tapped call, two events, fresh store |'
	for v in "${VARIANTS[@]}"; do printf ' **%s ms** |' "$(rows "$v" cpu fresh msPerCall | median)"; done
	echo
	if ((HISTORY > 0)); then
		printf '| sidecar CPU per tapped call, after %s past deliveries |' "$HISTORY"
		for v in "${VARIANTS[@]}"; do
			if [[ $v == new ]]; then printf ' **%s ms** |' "$(rows "$v" cpu "after $HISTORY" msPerCall | median)"; else printf ' — |'; fi
		done
		echo
	fi
	echo
	echo "Deliveries received: $(receiver_stat unique) since the last reset (duplicates: $(receiver_stat duplicates))."
} | save durable.md
cp "$OUTJ" "$RESULTS/durable.jsonl"
