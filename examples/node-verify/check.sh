#!/usr/bin/env bash
# Shows that the README's library call verifies real oceanhooks deliveries:
# the example receiver's test captures deliveries from the real sidecar, and
# the official npm package standardwebhooks verifies them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/../.."
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
(cd "$root" && go test -count=1 -run '^TestRealDeliveries$' ./examples/receiver -args -deliveries-out="$out")
(cd "$here" && npm ci --silent --no-audit --no-fund)
node "$here/verify.mjs" "$out"
