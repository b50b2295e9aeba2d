#!/usr/bin/env bash
# bench/run.sh — fledge vs nginx vs HAProxy as reverse proxies for a model server.
#
# What it measures: throughput (req/s) and latency (p50, p99) of small OpenAI-style
# `POST /v1/chat/completions` requests sent by wrk (-t1, keep-alive, BENCH_CONNECTIONS
# connections, BENCH_SECONDS seconds after a 2 s warm-up) to:
#   direct   the backend itself: nginx returning a fixed ~300-byte chat-completion JSON
#   fledge   build/fledge serve, one worker, stable v1 + 20% canary v2 (same backend)
#   fledge-bare  the same with `metrics: false`: the cost of per-request accounting
#   nginx    nginx as keep-alive reverse proxy, worker_processes 1
#   haproxy  HAProxy mode http, nbthread 1, http-reuse always
# Every proxy gets ONE worker/thread, so on a 2-core machine each has one core's worth
# of work next to wrk and the backend. Each request carries a different x-user-id (from a
# precomputed set, so the Lua cost stays tiny). Also reports fledge's RSS after its run.
# Output: a table on stdout, build/bench.json, raw wrk output in build/bench/*.txt.
# The targets are measured in BENCH_ROUNDS interleaved rounds; each figure is the median over
# the rounds and each ratio the median of the per-round ratios, so a burst of noise on this
# shared machine hits one round of every target, not one target.
# Knobs: BENCH_SECONDS (4 per round), BENCH_ROUNDS (5), BENCH_CONNECTIONS (50),
# BENCH_SKIP_FLEDGE=1 (skip fledge).
# Everything listens on 127.0.0.1 only, on free ports; all started processes are stopped
# on exit, error or Ctrl-C.
set -euo pipefail

SECONDS_RUN=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-5}
CONNS=${BENCH_CONNECTIONS:-50}
SKIP_FLEDGE=${BENCH_SKIP_FLEDGE:-0}
FLEDGE=build/fledge
OUTDIR=build/bench
JSON=build/bench.json

die() { echo "bench: error: $*" >&2; exit 1; }

# --- prerequisites ------------------------------------------------------------------
if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null; then
    [ "$(id -u)" = 0 ] || die "need nginx, haproxy and wrk (apt-get install -y nginx-light haproxy wrk)"
    apt-get install -y nginx-light haproxy wrk >/dev/null
fi
command -v curl >/dev/null || die "curl is required"
[ "$SKIP_FLEDGE" = 1 ] || [ -x "$FLEDGE" ] || die "$FLEDGE missing (run 'make bench', or BENCH_SKIP_FLEDGE=1)"

TMP=$(mktemp -d /tmp/fledge-bench.XXXXXX)
chmod 755 "$TMP"            # nginx workers may run as an unprivileged user
PIDS=(); WRK_PID=
cleanup() {
    local p
    [ -z "$WRK_PID" ] || kill -TERM "$WRK_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
mkdir -p "$OUTDIR"
rm -f "$OUTDIR"/*.txt "$OUTDIR"/*.log "$JSON"   # no stale results from an earlier run

# A port nobody listens on (and that we have not handed out yet).
USED=" "
free_port() {
    local p
    while :; do
        # below the kernel's ephemeral range (32768+), so no outgoing connection can take it
        p=$(( 20000 + RANDOM % 12000 ))
        case "$USED" in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then USED+="$p "; echo "$p"; return; fi
    done
}
# Wait (≤5 s) until something answers HTTP on the port; fail if the process died.
wait_up() {
    local name=$1 port=$2 pid=$3
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || die "$name exited at startup (see $OUTDIR/$name.log)"
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    die "$name did not accept connections on 127.0.0.1:$port within 5 s"
}
# Pinning: the proxy under test gets CPU 1 to itself, wrk and the backend share CPU 0, the same
# for every target; without it the scheduler's placement swings results by ±20% run to run.
PIN_LOAD=(); PIN_PROXY=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then PIN_LOAD=(taskset -c 0); PIN_PROXY=(taskset -c 1); fi
start() {   # start NAME PORT CMD...  (runs in the background, logs to $OUTDIR/NAME.log)
    local name=$1 port=$2; shift 2
    local pin=("${PIN_PROXY[@]}")
    [ "$name" = backend ] && pin=("${PIN_LOAD[@]}")
    "${pin[@]}" "$@" >"$OUTDIR/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_up "$name" "$port" "$LAST_PID"
}

BACKEND_PORT=$(free_port); FLEDGE_PORT=$(free_port); ADMIN_PORT=$(free_port)
BARE_PORT=$(free_port); BARE_ADMIN_PORT=$(free_port)
NGINX_PORT=$(free_port); HAPROXY_PORT=$(free_port)

# --- configs ------------------------------------------------------------------------
RESP='{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,"model":"model-v1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a fixed benchmark reply from the backend."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":11,"total_tokens":23}}'
nginx_conf() {  # nginx_conf NAME PORT BODY-OF-SERVER [HTTP-EXTRA]
    local d="$TMP/$1"; mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    ${4:-}
    server {
        listen 127.0.0.1:$2;
        $3
    }
}
EOF
}
nginx_conf backend "$BACKEND_PORT" "location / { default_type application/json; return 200 '$RESP'; }"
nginx_conf proxy "$NGINX_PORT" 'location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }' \
    "upstream be { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 1000000; }"

cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend be
backend be
    server s1 127.0.0.1:$BACKEND_PORT maxconn 1000
EOF

cat >"$TMP/fledge.yaml" <<EOF
listen: 127.0.0.1:$FLEDGE_PORT
workers: 1
admin:
  listen: 127.0.0.1:$ADMIN_PORT
routes:
  - name: chat
    match: { path_prefix: / }
    user_key: [header:x-user-id, ip]
    stable:
      version: v1
      backends: [127.0.0.1:$BACKEND_PORT]
    canary:
      version: v2
      backends: [127.0.0.1:$BACKEND_PORT]
      weight: 20
    rules:
      - match: { header: { x-version: v2 } }
        variant: canary
EOF
# the same gateway with per-request accounting switched off: what metrics cost
sed -e "s/127.0.0.1:$FLEDGE_PORT/127.0.0.1:$BARE_PORT/" -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$BARE_ADMIN_PORT/" \
    -e "s/^workers: 1$/workers: 1\nmetrics: false/" "$TMP/fledge.yaml" >"$TMP/fledge-bare.yaml"

BODY='{"model":"model","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'
cat >"$TMP/chat.lua" <<EOF
local body = '$BODY'
local reqs, i = {}, 0
function init(args)
  for n = 1, 256 do
    reqs[n] = wrk.format("POST", "/v1/chat/completions",
      { ["Host"] = wrk.host, ["Content-Type"] = "application/json", ["x-user-id"] = "user-" .. n }, body)
  end
end
function request() i = i % #reqs + 1; return reqs[i] end
EOF

# --- measuring ----------------------------------------------------------------------
to_ms() {  # wrk prints e.g. 812.00us 1.23ms 1.05s 1.20m
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f < 0) exit 1; printf "%.3f", n * f }'
}
check_200() {  # one request through the target must answer 200
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
        -H 'x-user-id: check' --data "$BODY" "http://127.0.0.1:$2/v1/chat/completions" || true)
    [ "$code" = 200 ] || die "$1 answered HTTP '$code' instead of 200 (log: $OUTDIR/$1.log)"
}
# wrk catches SIGINT and exits 0, which would hide Ctrl-C from bash; running it in the
# background and `wait`ing lets the INT trap fire at once.
run_wrk() {
    "${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -s "$TMP/chat.lua" "$@" &
    WRK_PID=$!; wait "$WRK_PID"; WRK_PID=
}
declare -A RPS P50 P99 NON2XX SOCKERR PORT RPS_ROUNDS P99_ROUNDS CPU CPU_ROUNDS SERVER_PID
FAILED=0
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# CPU time (user + system, in clock ticks) of a server and its child processes, from /proc.
cpu_ticks() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        total=$(( total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0) ))
    done
    echo "$total"
}
bench_round() {  # bench_round NAME ROUND: one wrk run, figures appended to the lists
    local name=$1 url="http://127.0.0.1:${PORT[$1]}/v1/chat/completions" raw="$OUTDIR/$1.$2.txt" n t0 t1 reqs
    t0=$(cpu_ticks "${SERVER_PID[$name]}")
    run_wrk -d"${SECONDS_RUN}s" --latency "$url" >"$raw"
    t1=$(cpu_ticks "${SERVER_PID[$name]}")
    reqs=$(awk '/requests in/ { print $1 }' "$raw")
    # the server's CPU per request is what its throughput on a core of its own would be bound by
    CPU[$name]+=" $(awk -v d=$(( t1 - t0 )) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
    RPS[$name]+=" $(awk '/^Requests\/sec:/ { print $2 }' "$raw")"
    P50[$name]+=" $(to_ms "$(awk '$1 == "50%" { print $2 }' "$raw")")"
    P99[$name]+=" $(to_ms "$(awk '$1 == "99%" { print $2 }' "$raw")")"
    n=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$raw")
    NON2XX[$name]=$(( ${NON2XX[$name]:-0} + ${n:-0} ))
    SOCKERR[$name]+=$(awk '/Socket errors:/ { sub(/.*Socket errors: /, ""); print }' "$raw")
    awk '/^Requests\/sec:/ { ok = 1 } END { exit !ok }' "$raw" || die "could not parse wrk output for $name ($raw)"
    printf '  round %s %-8s %s req/s\n' "$2" "$name" "$(awk '/^Requests\/sec:/ { print $2 }' "$raw")" >&2
}
prepare() {  # prepare NAME PORT: a check that it answers 200, and a warm-up (server: LAST_PID)
    PORT[$1]=$2
    SERVER_PID[$1]=$LAST_PID
    check_200 "$1" "$2"
    run_wrk -d2s "http://127.0.0.1:$2/v1/chat/completions" >/dev/null
}

echo "bench: $ROUNDS rounds × ${SECONDS_RUN}s per target, wrk -t1 -c$CONNS, POST /v1/chat/completions; $(nproc) CPUs" >&2
echo "bench: each proxy runs ONE worker/thread (fair on a small machine); figures are medians" >&2
start backend "$BACKEND_PORT" nginx -p "$TMP/backend" -e stderr -c "$TMP/backend/nginx.conf"
prepare direct "$BACKEND_PORT"
TARGETS=(direct)
FLEDGE_RSS=null
if [ "$SKIP_FLEDGE" != 1 ]; then
    start fledge "$FLEDGE_PORT" "$FLEDGE" serve -c "$TMP/fledge.yaml"
    FLEDGE_PID=$LAST_PID
    prepare fledge "$FLEDGE_PORT"
    start fledge-bare "$BARE_PORT" "$FLEDGE" serve -c "$TMP/fledge-bare.yaml"
    prepare fledge-bare "$BARE_PORT"
    TARGETS+=(fledge fledge-bare)
fi
start nginx "$NGINX_PORT" nginx -p "$TMP/proxy" -e stderr -c "$TMP/proxy/nginx.conf"
prepare nginx "$NGINX_PORT"
start haproxy "$HAPROXY_PORT" haproxy -db -f "$TMP/haproxy.cfg"
prepare haproxy "$HAPROXY_PORT"
TARGETS+=(nginx haproxy)

for r in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do bench_round "$t" "$r"; done
done
for t in "${TARGETS[@]}"; do
    [ "${NON2XX[$t]}" = 0 ] || { echo "bench: $t: ${NON2XX[$t]} non-2xx/3xx responses" >&2; FAILED=1; }
    [ -z "${SOCKERR[$t]}" ] || echo "bench: $t: socket errors: ${SOCKERR[$t]}" >&2
    RPS_ROUNDS[$t]=${RPS[$t]}; P99_ROUNDS[$t]=${P99[$t]}; CPU_ROUNDS[$t]=${CPU[$t]}
    RPS[$t]=$(median ${RPS[$t]}); P50[$t]=$(median ${P50[$t]}); P99[$t]=$(median ${P99[$t]}); CPU[$t]=$(median ${CPU[$t]})
done
if [ "$SKIP_FLEDGE" != 1 ]; then
    kill -0 "$FLEDGE_PID" 2>/dev/null || die "fledge died during its runs (see $OUTDIR/fledge.log)"
    FLEDGE_RSS=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$FLEDGE_PID/status")
fi

# --- report -------------------------------------------------------------------------
# Ratios are taken round by round and their median reported: the machine's speed drifts between
# rounds (other tenants), but within a round every target meets the same conditions.
ratio() {  # ratio "A round values" "B round values"
    local a=($1) b=($2) r=() i
    for i in "${!a[@]}"; do r+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { if (y + 0 > 0) printf "%.4f", x / y }')"); done
    printf '%.2f' "$(median "${r[@]}")"
}
echo
echo "fledge benchmark — wrk -t1 -c$CONNS, median of $ROUNDS × ${SECONDS_RUN}s, one worker/thread per proxy, $(nproc) CPUs"
printf '%-12s %12s %10s %10s %14s\n' target 'req/s' 'p50 ms' 'p99 ms' 'cpu µs/req'
for t in "${TARGETS[@]}"; do printf '%-12s %12s %10s %10s %14s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}"; done
R_NG_RPS=null; R_HA_RPS=null; R_NG_P99=null; R_HA_P99=null; R_METRICS=null
R_NG_CPU=null; R_HA_CPU=null; R_METRICS_CPU=null
if [ "$SKIP_FLEDGE" != 1 ]; then
    R_NG_RPS=$(ratio "${RPS_ROUNDS[fledge]}" "${RPS_ROUNDS[nginx]}")
    R_HA_RPS=$(ratio "${RPS_ROUNDS[fledge]}" "${RPS_ROUNDS[haproxy]}")
    R_NG_P99=$(ratio "${P99_ROUNDS[fledge]}" "${P99_ROUNDS[nginx]}")
    R_HA_P99=$(ratio "${P99_ROUNDS[fledge]}" "${P99_ROUNDS[haproxy]}")
    echo
    echo "fledge/nginx   req/s: $R_NG_RPS   p99: $R_NG_P99"
    echo "fledge/haproxy req/s: $R_HA_RPS   p99: $R_HA_P99"
    R_NG_CPU=$(ratio "${CPU_ROUNDS[fledge]}" "${CPU_ROUNDS[nginx]}")
    R_HA_CPU=$(ratio "${CPU_ROUNDS[fledge]}" "${CPU_ROUNDS[haproxy]}")
    echo "fledge/nginx   cpu per request: $R_NG_CPU"
    echo "fledge/haproxy cpu per request: $R_HA_CPU"
    R_METRICS=$(ratio "${RPS_ROUNDS[fledge]}" "${RPS_ROUNDS[fledge-bare]}")
    R_METRICS_CPU=$(ratio "${CPU_ROUNDS[fledge]}" "${CPU_ROUNDS[fledge-bare]}")
    echo "metrics on/off (metrics: false): req/s $R_METRICS, cpu per request $R_METRICS_CPU"
    echo "(ratios are medians of per-round ratios)"
    echo "fledge RSS after its run: $FLEDGE_RSS MiB"
else
    echo "(fledge skipped: BENCH_SKIP_FLEDGE=1)"
fi

{
    printf '{\n  "seconds": %s, "rounds": %s, "connections": %s, "wrk_threads": 1, "cpus": %s, "proxy_workers": 1,\n' \
        "$SECONDS_RUN" "$ROUNDS" "$CONNS" "$(nproc)"
    printf '  "targets": {\n'
    sep=""
    for t in "${TARGETS[@]}"; do
        printf '%s    "%s": {"rps": %s, "p50_ms": %s, "p99_ms": %s, "cpu_us_per_request": %s, "non_2xx_3xx": %s, "socket_errors": "%s"}' \
            "$sep" "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}" "${NON2XX[$t]}" "${SOCKERR[$t]}"
        sep=$',\n'
    done
    printf '\n  },\n  "ratios": {"fledge_nginx_rps": %s, "fledge_haproxy_rps": %s, "fledge_nginx_p99": %s, "fledge_haproxy_p99": %s, "fledge_nginx_cpu": %s, "fledge_haproxy_cpu": %s, "metrics_on_off_rps": %s, "metrics_on_off_cpu": %s},\n' \
        "$R_NG_RPS" "$R_HA_RPS" "$R_NG_P99" "$R_HA_P99" "$R_NG_CPU" "$R_HA_CPU" "$R_METRICS" "$R_METRICS_CPU"
    printf '  "fledge_rss_mib": %s,\n  "failed": %s\n}\n' "$FLEDGE_RSS" "$([ "$FAILED" = 1 ] && echo true || echo false)"
} >"$JSON"
echo "results: $JSON, raw wrk output: $OUTDIR/*.txt"
[ "$FAILED" = 0 ] || die "some target answered non-2xx/3xx responses under load"
