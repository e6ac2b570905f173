# Shared helpers of the benchmark scripts; sourced, not run.
# shellcheck shell=bash

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
RESULTS=${RESULTS:-$BENCH_DIR/results}

# Fixed high loopback ports: PORT_BASE (18300) and the next 14. Two scripts
# running at once on one machine need different bases.
PORT_BASE=${PORT_BASE:-18300}
PORT_UPSTREAM=$PORT_BASE
PORT_SIDECAR=$((PORT_BASE + 1))
PORT_ADMIN=$((PORT_BASE + 2))
PORT_NGINX=$((PORT_BASE + 3))
PORT_RECEIVER=$((PORT_BASE + 4))
PORT_PPROF=$((PORT_BASE + 5))
PORT_STOCK=$((PORT_BASE + 6))
PORT_SIDECAR_C=$((PORT_BASE + 7))
PORT_ADMIN_C=$((PORT_BASE + 8))
PORT_SIDECAR_D=$((PORT_BASE + 9))
PORT_ADMIN_D=$((PORT_BASE + 10))
PORT_SIDECAR_B=$((PORT_BASE + 11))
PORT_ADMIN_B=$((PORT_BASE + 12))
PORT_SIDECAR_E=$((PORT_BASE + 13))
PORT_ADMIN_E=$((PORT_BASE + 14))

WORK=$(mktemp -d "${TMPDIR:-/tmp}/oceanhooks-bench.XXXXXX")
BIN=$WORK/bin
PIDS=()

# cleanup stops every process started with start (and their children) and
# removes the work dir, unless KEEP=1.
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${KEEP:-0} == 1 ]]; then
		echo "kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# need installs nginx and wrk when missing (Debian/Ubuntu).
need() {
	local missing=()
	command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
	command -v wrk >/dev/null || missing+=(wrk)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		local sudo=()
		[[ $(id -u) == 0 ]] || sudo=(sudo)
		"${sudo[@]}" apt-get update -qq
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	command -v go >/dev/null || die "go is required"
	command -v curl >/dev/null || die "curl is required"
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

# nginx_keepalive_conf WORKERS writes $WORK/nginx/nginx.conf: nginx as a
# plain reverse proxy on PORT_NGINX to the upstream, with keep-alive
# connections to it (a pool of 256), the forwarding headers, and no access
# log, as an operator would run it in front of Ocean.
nginx_keepalive_conf() {
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream ocean {
    server 127.0.0.1:$PORT_UPSTREAM;
    keepalive 256;
  }
  server {
    listen 127.0.0.1:$PORT_NGINX;
    location / {
      proxy_pass http://ocean;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
}

# build compiles the sidecar and every bench program into $BIN.
build() {
	log "building into $BIN"
	mkdir -p "$BIN"
	(cd "$ROOT" && go build -o "$BIN/oceanhooks" . && go build -o "$BIN/" ./bench/cmd/...)
}

# build_base REV compiles the sidecar and the bench programs of git revision
# REV (a baseline to measure against in the same run) into $BIN_BASE.
BIN_BASE=$WORK/bin-base
build_base() {
	log "building $1 into $BIN_BASE"
	mkdir -p "$BIN_BASE"
	mkdir -p "$WORK/base-src"
	git -C "$ROOT" archive "$1" | tar -x -C "$WORK/base-src" # the clone is left alone
	(cd "$WORK/base-src" && go build -o "$BIN_BASE/oceanhooks" . && go build -o "$BIN_BASE/" ./bench/cmd/...)
}

# CPU layout. PIN=1 (default): the load generator and the receiver (the
# "outside world") run on LOAD_CPUS, everything under test on SUT_CPUS.
NCPU=$(nproc)
PIN=${PIN:-1}
if ((NCPU < 2)); then PIN=0; fi
if [[ $PIN == 1 ]]; then
	half=$((NCPU / 2))
	LOAD_CPUS=${LOAD_CPUS:-0-$((half - 1))}
	SUT_CPUS=${SUT_CPUS:-$half-$((NCPU - 1))}
fi

# cpuset_size counts the CPUs of a taskset list such as 0-3,6.
cpuset_size() {
	local n=0 part a b
	IFS=, read -ra parts <<<"$1"
	for part in "${parts[@]}"; do
		if [[ $part == *-* ]]; then
			a=${part%-*} b=${part#*-}
			n=$((n + b - a + 1))
		else
			n=$((n + 1))
		fi
	done
	echo "$n"
}

# ON_LOAD / ON_SUT prefix a command to run it on the load or the
# system-under-test CPUs (empty without pinning): "${ON_SUT[@]}" prog args.
ON_LOAD=()
ON_SUT=()
if [[ $PIN == 1 ]]; then
	ON_LOAD=(taskset -c "$LOAD_CPUS")
	ON_SUT=(taskset -c "$SUT_CPUS")
fi

# start NAME CMD… runs CMD in the background, output in $WORK/NAME.log, and
# remembers its pid in PID_<NAME> for cleanup and stop.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	printf -v "PID_${name//-/_}" '%s' $!
}

pid_of() {
	local v="PID_${1//-/_}"
	echo "${!v}"
}

# stop NAME sends SIGTERM to a started process and waits for it.
stop() {
	local pid
	pid=$(pid_of "$1")
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# wait_port PORT [SECONDS] waits until something accepts on 127.0.0.1:PORT.
wait_port() {
	local port=$1 secs=${2:-30} i
	for ((i = 0; i < secs * 20; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	die "nothing listens on port $port after ${secs}s"
}

# sidecar_config FILE LISTEN ADMIN DATADIR [EXTRA YAML] writes a config.
sidecar_config() {
	local file=$1 listen=$2 admin=$3 data=$4 extra=${5:-}
	cat >"$file" <<EOF
listen: "127.0.0.1:$listen"
upstream: "http://127.0.0.1:$PORT_UPSTREAM"
publicURL: "https://ocean.example"
dataDir: "$data"
adminListen: "127.0.0.1:$admin"
admin:
  metricsPublic: true   # the scripts read /metrics with curl, without the admin token
log:
  level: warn
delivery:
  allowedPrivateNetworks: ["127.0.0.0/8"]
$extra
EOF
}

# metric ADMINPORT NAME prints the value of an unlabelled metric.
metric() {
	curl -fsS "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { printf "%.0f\n", $2; found = 1 } END { if (!found) print 0 }'
}

# queue_depth ADMINPORT prints ready + leased deliveries.
queue_depth() {
	local r l
	r=$(metric "$1" oceanhooks_queue_ready)
	l=$(metric "$1" oceanhooks_queue_leased)
	echo $((r + l))
}

# wait_drained ADMINPORT [SECONDS] waits until the queue is empty.
wait_drained() {
	local port=$1 secs=${2:-600} start=$SECONDS
	while (($(queue_depth "$port") > 0)); do
		((SECONDS - start < secs)) || die "queue on admin port $port not drained after ${secs}s"
		sleep 0.5
	done
}

# cpu_ticks PID prints the process's user + system CPU time in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# wait_quiet PID [SECONDS] waits until the process used less than 30 % of one
# CPU over 5 s (Badger's compactions done), at most SECONDS (300); it prints
# how long it waited.
wait_quiet() {
	local pid=$1 secs=${2:-300} start=$SECONDS hz a b
	hz=$(getconf CLK_TCK)
	while ((SECONDS - start < secs)); do
		a=$(cpu_ticks "$pid")
		sleep 5
		b=$(cpu_ticks "$pid")
		if (((b - a) * 100 < 30 * 5 * hz)); then
			break
		fi
	done
	echo $((SECONDS - start))
}

# rss_kib PID prints the resident set (VmRSS) in KiB; hwm_kib the peak (VmHWM).
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# jget FIELD prints a top-level scalar field of the JSON on stdin ("" when
# absent).
jget() { { grep -o "\"$1\":[^,}]*" || true; } | head -n 1 | cut -d: -f2 | tr -d '"'; }

# receiver_stat FIELD prints one field of the receiver's /stats.
receiver_stat() {
	curl -fsS "http://127.0.0.1:$PORT_RECEIVER/stats" | jget "$1"
}

# machine prints the machine description BENCHMARKS.md asks for.
machine() {
	echo '```'
	echo "\$ nproc"
	nproc
	echo "\$ lscpu | head -n 15"
	lscpu | head -n 15
	echo "\$ free -m"
	free -m
	echo "\$ go version"
	go version
	echo "\$ uname -sr"
	uname -sr
	echo "\$ nginx -v; wrk -v"
	"$(nginx_bin)" -v 2>&1 || true
	wrk -v 2>&1 | head -n 1 || true
	echo '```'
}

# save NAME copies stdin to $RESULTS/NAME and stdout.
save() {
	mkdir -p "$RESULTS"
	tee "$RESULTS/$1"
}
