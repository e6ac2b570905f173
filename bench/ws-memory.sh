#!/usr/bin/env bash
# Memory of held WebSocket connections: CONNS WebSockets opened through
#   nginx         a plain reverse proxy for WebSockets (Upgrade/Connection
#                 headers passed, one worker)
#   oceanhooks    the sidecar as shipped (proxy.transport: lean)
#   stdlib        the sidecar with proxy.transport: stdlib (net/http's
#                 transport, ReverseProxy's own copy loops)
#   stdserver     the sidecar with proxy.server: stdlib (net/http's server
#                 in front instead of package front)
#   base          the sidecar built from git revision BASE, when BASE is set
# to the fake upstream's /streaming, which echoes. Each connection sends one
# message and gets it back, then stays open and idle. For each proxy, a fresh
# process: its resident memory (VmRSS) before the connections and SETTLE
# seconds after the last one opened; the difference divided by the
# connections is the memory per connection. The proxies run one at a time.
#
# The connection count is capped by the open-file limit: a proxy holds two
# sockets per connection (`ulimit -n` of 20000 allows 9,968).
#
# The sidecar runs with its defaults, which include Go's soft memory limit
# (half of store.memoryBudget); SIDECAR_GOMEMLIMIT=… replaces it (e.g.
# 100GiB: no limit), to see the memory without the collector pressed.
#
# Environment: CONNS (10000), SETTLE (10, seconds), DIAL_CONC (64,
# connections being opened at a time), SIDECAR_GOMEMLIMIT (unset), BASE
# (unset), PIN (1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${CONNS:-10000}
SETTLE=${SETTLE:-10}
DIAL_CONC=${DIAL_CONC:-64}

need
build
BASE=${BASE:-}
if [[ -n $BASE ]]; then
	log "building $BASE"
	mkdir -p "$WORK/src-base"
	git -C "$ROOT" archive "$BASE" | tar -x -C "$WORK/src-base"
	(cd "$WORK/src-base" && go build -o "$BIN/oceanhooks-base" .)
fi

nofile=$(ulimit -n)
if [[ $nofile != unlimited ]] && ((2 * CONNS + 64 > nofile)); then
	capped=$(((nofile - 64) / 2))
	log "open-file limit $nofile: $capped connections instead of $CONNS"
	CONNS=$capped
fi

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $((4 * CONNS + 1024)); }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:$PORT_NGINX;
    location / {
      proxy_pass http://127.0.0.1:$PORT_UPSTREAM;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
EOF

sidecar_config "$WORK/lean.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$WORK/data-lean"
sidecar_config "$WORK/stdlib.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$WORK/data-stdlib" "proxy:
  transport: stdlib"
sidecar_config "$WORK/stdserver.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$WORK/data-stdserver" "proxy:
  server: stdlib"
sidecar_config "$WORK/base.yaml" "$PORT_SIDECAR" "$PORT_ADMIN" "$WORK/data-base"

start upstream "${ON_SUT[@]}" "$BIN/upstream" -listen "127.0.0.1:$PORT_UPSTREAM"
wait_port "$PORT_UPSTREAM"

OUTJ=$WORK/ws-memory.jsonl
: >"$OUTJ"

# measure NAME PID PORT: opens the connections through PORT and records the
# memory of PID.
measure() {
	local name=$1 pid=$2 port=$3 before after line
	before=$(rss_kib "$pid")
	start "wsload-$name" "${ON_LOAD[@]}" "$BIN/wsload" -url "ws://127.0.0.1:$port/streaming" -n "$CONNS" -c "$DIAL_CONC" -label "$name"
	local i
	for ((i = 0; i < 1200; i++)); do
		line=$(grep -m1 '^{' "$WORK/wsload-$name.log" || true)
		[[ -n $line ]] && break
		sleep 0.5
	done
	[[ -n $line ]] || die "$name: the connections did not open in 10 minutes"
	log "$name: $line"
	sleep "$SETTLE"
	after=$(rss_kib "$pid")
	echo "{\"name\":\"$name\",\"before_kib\":$before,\"after_kib\":$after,${line#\{}" >>"$OUTJ"
	stop "wsload-$name"
}

# nginx: the worker holds the connections.
start nginx "${ON_SUT[@]}" "$(nginx_bin)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
wait_port "$PORT_NGINX"
worker=$(pgrep -P "$(pid_of nginx)" | head -n 1)
measure nginx "$worker" "$PORT_NGINX"
stop nginx

sidecars=(lean stdlib stdserver)
if [[ -n $BASE ]]; then sidecars+=(base); fi
for t in "${sidecars[@]}"; do
	bin=$BIN/oceanhooks
	[[ $t == base ]] && bin=$BIN/oceanhooks-base
	start "sidecar-$t" env ${SIDECAR_GOMEMLIMIT:+GOMEMLIMIT=$SIDECAR_GOMEMLIMIT} "${ON_SUT[@]}" "$bin" serve --config "$WORK/$t.yaml"
	wait_port "$PORT_SIDECAR"
	# One connection first, so that both sidecars start from a warm state.
	start "warm-$t" "$BIN/wsload" -url "ws://127.0.0.1:$PORT_SIDECAR/streaming" -n 1 -label warm
	for ((i = 0; i < 100; i++)); do grep -q '^{' "$WORK/warm-$t.log" && break; sleep 0.1; done
	stop "warm-$t"
	name=oceanhooks
	[[ $t != lean ]] && name=$t
	measure "$name" "$(pid_of "sidecar-$t")" "$PORT_SIDECAR"
	stop "sidecar-$t"
done

{
	echo "## WebSocket memory"
	echo
	echo "Command: \`CONNS=$CONNS SETTLE=$SETTLE DIAL_CONC=$DIAL_CONC ${SIDECAR_GOMEMLIMIT:+SIDECAR_GOMEMLIMIT=$SIDECAR_GOMEMLIMIT }${BASE:+BASE=$BASE }PIN=$PIN bench/ws-memory.sh\` ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "Code measured: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)${BASE:+; base: $BASE}."
	echo
	echo "Each proxy a fresh process; VmRSS before the connections and ${SETTLE}s after the last one opened (each sent one message and got it back, then idle)."
	echo
	echo "| proxy | connections | RSS before | RSS holding them | per connection | × nginx |"
	echo "|---|---:|---:|---:|---:|---:|"
	awk -F'[{},:]' '
		{
			for (i = 2; i < NF; i += 2) { k = $i; gsub(/"/, "", k); v = $(i + 1); gsub(/"/, "", v); f[k] = v }
			per = (f["after_kib"] - f["before_kib"]) / f["conns"]
			if (f["name"] == "nginx") base = per
			printf "| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB | %s |\n", f["name"], f["conns"], f["before_kib"] / 1024, f["after_kib"] / 1024, per, (base > 0 ? sprintf("%.2f", per / base) : "")
			if (f["failed"] > 0) failed = failed " " f["name"] ": " f["failed"] " failed;"
		}
		END { if (failed != "") print "\nConnections that failed to open:" failed }
	' "$OUTJ"
} | save ws-memory.md
cp "$OUTJ" "$RESULTS/ws-memory.jsonl"
