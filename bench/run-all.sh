#!/usr/bin/env bash
# Runs every benchmark in turn with its defaults and collects the Markdown
# they print, with the machine description, in bench/results/ALL.md. Each
# script's own environment variables pass through (e.g. PIN=0, ROUNDS=5).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCRIPTS=(gobench overhead ws-memory delivery backlog crash profile)
mkdir -p "$RESULTS"
{
	echo "## Machine"
	echo
	machine
	echo
	echo "Load average before the runs: $(cat /proc/loadavg)"
} | save machine.md >/dev/null

timings=()
failed=0
for s in "${SCRIPTS[@]}"; do
	log "=== $s.sh"
	t=$SECONDS
	status=ok
	if ! bash "$BENCH_DIR/$s.sh"; then
		status=FAILED
		failed=$((failed + 1))
	fi
	timings+=("| $s.sh | $((SECONDS - t)) s | $status |")
done

{
	cat "$RESULTS/machine.md"
	echo
	for s in "${SCRIPTS[@]}"; do
		[[ -f $RESULTS/$s.md ]] && cat "$RESULTS/$s.md" && echo
	done
	echo "## Script run times"
	echo
	echo "| script | wall time | result |"
	echo "|---|---:|---|"
	printf '%s\n' "${timings[@]}"
	echo
	echo "Load average after the runs: $(cat /proc/loadavg)"
} >"$RESULTS/ALL.md"
log "all results in $RESULTS/ALL.md"
((failed == 0)) || die "$failed script(s) failed"
