#!/usr/bin/env bash
# Go benchmarks of the hot-path pieces (issue 6 §5): the proxy's tap decision
# for an untapped request (and whole untapped/tapped calls through the real
# handler), the derivation of a notes/create answer, a synced enqueue and a
# delivery's store bookkeeping, and the hook index lookups (bench_test.go).
#
# Environment: COUNT (3, runs of each benchmark; the table shows each run),
# BENCHTIME (1s).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COUNT=${COUNT:-3}
BENCHTIME=${BENCHTIME:-1s}
command -v go >/dev/null || die "go is required"
cmd=(go test -run '^$' -bench . -benchmem -count "$COUNT" -benchtime "$BENCHTIME" ./proxy ./matchers ./queue ./stream ./bench)
log "${cmd[*]}"
if ! out=$(cd "$ROOT" && "${cmd[@]}" 2>&1); then
	echo "$out" >&2
	die "go test -bench failed"
fi
{
	echo "## Go benchmarks"
	echo
	echo "Command: \`$(printf '%q ' "${cmd[@]}" | sed 's/ $//')\` ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo '```'
	grep -E '^(Benchmark|pkg:|cpu:)' <<<"$out" | awk '/^cpu:/ { if (seen++) next } { print }' | sed 's/[[:space:]]\+/ /g'
	echo '```'
} | save gobench.md
