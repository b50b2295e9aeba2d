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
# Output: tables on stdout, build/bench.json; raw output in build/bench/ (wrk *.txt, the
# streams and TTFT clients' JSON, the servers' logs).
# The targets are measured in BENCH_ROUNDS interleaved rounds; each figure is the median over
# the rounds and each ratio the median of the per-round ratios, so a burst of noise on this
# shared machine hits one round of every target, not one target.
#
# Streams round (BENCH_STREAMS=0 skips it): a `fledge mock` streams slow SSE answers (16 tokens
# over BENCH_STREAM_SECONDS, 15) and bench/streams.py holds BENCH_STREAMS_N (5000) of them open
# at once through each proxy in turn (fledge, HAProxy, nginx with proxy_buffering off; one
# worker/thread each, unpinned, fresh instances in front of the mock). Per proxy: resident memory
# (VmRSS, nginx master + worker summed) before the streams and once all are open, the memory per
# stream ((during − before) / streams open), and how many streams ended correctly with
# `data: [DONE]`. For fledge also its RSS BENCH_SETTLE_SECONDS (60) after its streams ended
# (the other rounds run meanwhile; fledge itself is idle then).
# Time to first token (BENCH_TTFT=0 skips it): BENCH_TTFT_REQUESTS (400) streamed requests to a
# mock with --ttft-ms BENCH_TTFT_MS (5) directly and through fledge, HAProxy and nginx (unpinned,
# one keep-alive connection each, one request at a time, the targets interleaved); p50/p99 of
# the time from writing the request to reading the first `data:` event that carries a token,
# and fledge's added p50/p99 over direct.
# Shadow round (with the TTFT round; BENCH_SHADOW=0 skips it): the same TTFT client, one streamed
# request at a time, BENCH_SHADOW_REQUESTS (2000) per target, interleaved, through two fledges in
# front of the same mock: one as in the TTFT round, one that also mirrors every request
# (`shadow: {percent: 100}`) to a second, equally fast mock as its canary (weight 0). The
# primary's p50/p99 with the mirror over without it; every mirror must have been answered.
# TLS round (BENCH_TLS=0 skips it): fledge, nginx and HAProxy each terminating TLS (one ECDSA
# P-256 certificate, TLS 1.3 as the client offers it, one worker/thread, pinned as above) in front
# of the same backend, measured like the plain targets in interleaved rounds, twice: keep-alive
# clients (name-tls) and a new connection, so a full handshake, per request (name-tlsnew, wrk
# sending `Connection: close`); fledge's ratios are taken against the better of nginx and HAProxy.
# Knobs: BENCH_SECONDS (4 per round), BENCH_ROUNDS (5), BENCH_CONNECTIONS (50),
# BENCH_SKIP_FLEDGE=1 (skip fledge), BENCH_WRK=0 (skip the wrk rounds), the ones above, and
# FLEDGE (the binary, default build/fledge or $BUILD/fledge).
# Everything listens on 127.0.0.1 only, on free ports; all started processes are stopped
# on exit, error or Ctrl-C.
set -euo pipefail

SECONDS_RUN=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-5}
CONNS=${BENCH_CONNECTIONS:-50}
SKIP_FLEDGE=${BENCH_SKIP_FLEDGE:-0}
WRK=${BENCH_WRK:-1}
STREAMS=${BENCH_STREAMS:-1}
STREAMS_N=${BENCH_STREAMS_N:-5000}
STREAM_SECONDS=${BENCH_STREAM_SECONDS:-15}
SETTLE_SECONDS=${BENCH_SETTLE_SECONDS:-60}
TTFT=${BENCH_TTFT:-1}
TLS=${BENCH_TLS:-1}
SHADOW=${BENCH_SHADOW:-1}
SHADOW_REQUESTS=${BENCH_SHADOW_REQUESTS:-2000}
TTFT_REQUESTS=${BENCH_TTFT_REQUESTS:-400}
TTFT_MS=${BENCH_TTFT_MS:-5}
STREAM_TOKENS=16
FLEDGE=${FLEDGE:-${BUILD:-build}/fledge}
OUTDIR=build/bench
JSON=build/bench.json

die() { echo "bench: error: $*" >&2; exit 1; }

# --- prerequisites ------------------------------------------------------------------
if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null; then
    [ "$(id -u)" = 0 ] || die "need nginx, haproxy and wrk (apt-get install -y nginx-light haproxy wrk)"
    apt-get install -y nginx-light haproxy wrk >/dev/null
fi
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || [ "$STREAMS$TTFT" = 00 ] || die "python3 is required (bench/streams.py)"
for v in STREAMS_N STREAM_SECONDS SETTLE_SECONDS TTFT_REQUESTS TTFT_MS SHADOW_REQUESTS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number (got '${!v}')"
done
[ "$STREAM_SECONDS" -ge 2 ] || die "BENCH_STREAM_SECONDS must be at least 2"
# Descriptors: each stream holds one in the client and in the mock, two in the proxy (client
# side and upstream side). Every process started from here inherits this limit; nginx and
# HAProxy are also told their own below, fledge raises its soft limit to the hard one itself.
if [ "$STREAMS" = 1 ]; then
    need=$(( 2 * (STREAMS_N + 1000) + 1024 ))
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
        ulimit -Hn "$need" 2>/dev/null || die "$STREAMS_N streams need $need descriptors per process, the hard limit is $hard (lower BENCH_STREAMS_N)"
    fi
    ulimit -n "$(ulimit -Hn)"
fi
[ "$SKIP_FLEDGE$STREAMS$TTFT" = 100 ] || [ -x "$FLEDGE" ] ||
    die "$FLEDGE missing (run 'make bench', or set FLEDGE; the streams and TTFT rounds need it for 'fledge mock')"

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
rm -f "$OUTDIR"/*.txt "$OUTDIR"/*.log "$OUTDIR"/*.json "$JSON"   # no stale results from an earlier run

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
        curl -sk -o /dev/null --max-time 1 "${SCHEME:-http}://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    die "$name did not accept connections on 127.0.0.1:$port within 5 s"
}
# Pinning: the proxy under test gets CPU 1 to itself, wrk and the backend share CPU 0, the same
# for every target; without it the scheduler's placement swings results by ±20% run to run.
PIN_LOAD=(); PIN_PROXY=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then PIN_LOAD=(taskset -c 0); PIN_PROXY=(taskset -c 1); fi
UNPINNED=0   # 1: start() leaves the process to the scheduler (the streams and TTFT rounds)
start() {   # start NAME PORT CMD...  (runs in the background, logs to $OUTDIR/NAME.log)
    local name=$1 port=$2; shift 2
    local pin=("${PIN_PROXY[@]}")
    [ "$name" = backend ] && pin=("${PIN_LOAD[@]}")
    [ "$UNPINNED" = 0 ] || pin=()
    "${pin[@]}" "$@" >"$OUTDIR/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_up "$name" "$port" "$LAST_PID"
}

BACKEND_PORT=$(free_port); FLEDGE_PORT=$(free_port); ADMIN_PORT=$(free_port)
BARE_PORT=$(free_port); BARE_ADMIN_PORT=$(free_port)
NGINX_PORT=$(free_port); HAPROXY_PORT=$(free_port)
declare -A SPORT TPORT   # streams round / TTFT round: ports of mock-NAME and each proxy
for n in mock fledge fledge-admin haproxy nginx; do SPORT[$n]=$(free_port); TPORT[$n]=$(free_port); done

# --- configs ------------------------------------------------------------------------
RESP='{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,"model":"model-v1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a fixed benchmark reply from the backend."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":11,"total_tokens":23}}'
# With WORKER-CONNECTIONS (the streams and TTFT proxies) nginx is also set up for thousands of
# connections arriving at once: descriptors to match, every pending connection accepted per
# wake-up and a listen backlog like HAProxy's (its maxconn, capped by somaxconn; fledge's is
# 1,024 and it accepts until EAGAIN). nginx's default, 511 with one accept per wake-up,
# overflows under 5,000 connects: SYNs dropped, clients retrying for seconds.
nginx_conf() {  # nginx_conf NAME PORT BODY-OF-SERVER [HTTP-EXTRA] [WORKER-CONNECTIONS]
    local d="$TMP/$1" wc=${5:-4096} rl="" ma="" bl=""; mkdir -p "$d"
    [ -z "${5:-}" ] || { rl="worker_rlimit_nofile $(( $5 + 1024 ));"; ma=" multi_accept on;"; bl=" backlog=4096"; }
    cat >"$d/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$rl
pid $d/nginx.pid;
error_log stderr warn;
events { worker_connections $wc;$ma }
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
        listen 127.0.0.1:$2$bl;
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

# Streams and TTFT rounds: fresh proxies in front of a `fledge mock` each (SUFFIX s or t), set
# up for SSE: nginx with proxy_buffering off, limits that let STREAMS_N clients in.
MAXCONN=$(( STREAMS_N + 1000 ))
proxy_confs() {  # proxy_confs SUFFIX PORTS-ARRAY-NAME
    local sfx=$1; local -n P=$2
    nginx_conf "nginx-$sfx" "${P[nginx]}" \
        'location / { proxy_pass http://ms; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }' \
        "upstream ms { server 127.0.0.1:${P[mock]}; keepalive 64; keepalive_requests 1000000; }" \
        $(( 2 * MAXCONN ))
    cat >"$TMP/haproxy-$sfx.cfg" <<EOF
global
    nbthread 1
    maxconn $MAXCONN
defaults
    mode http
    maxconn $MAXCONN
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:${P[haproxy]}
    default_backend be
backend be
    server s1 127.0.0.1:${P[mock]} maxconn $MAXCONN
EOF
    mkdir -p "$TMP/fledge-$sfx"
    cat >"$TMP/fledge-$sfx/fledge.yaml" <<EOF
listen: 127.0.0.1:${P[fledge]}
workers: 1
admin:
  listen: 127.0.0.1:${P[fledge-admin]}
limits:
  max_connections: $MAXCONN
routes:
  - name: chat
    match: { path_prefix: / }
    user_key: [header:x-user-id, ip]
    stable:
      version: v1
      backends: [127.0.0.1:${P[mock]}]
    canary:
      version: v2
      backends: [127.0.0.1:${P[mock]}]
      weight: 20
EOF
}
proxy_confs s SPORT
proxy_confs t TPORT
# the shadow round's fledge: the TTFT round's, all traffic to stable, every request mirrored to mock-c
SH_PORT=$(free_port); SH_ADMIN=$(free_port); SH_CANARY=$(free_port)
mkdir -p "$TMP/fledge-sh"
sed -e "s/127.0.0.1:${TPORT[fledge]}\$/127.0.0.1:$SH_PORT/" -e "s/127.0.0.1:${TPORT[fledge-admin]}\$/127.0.0.1:$SH_ADMIN/" \
    -e "/^    canary:/,\$d" "$TMP/fledge-t/fledge.yaml" >"$TMP/fledge-sh/fledge.yaml"
printf '    canary: { version: v2, backends: [127.0.0.1:%s], weight: 0 }\n    shadow: { percent: 100 }\n' "$SH_CANARY" \
    >>"$TMP/fledge-sh/fledge.yaml"

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
    code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
        -H 'x-user-id: check' --data "$BODY" "${SCHEME:-http}://127.0.0.1:$2/v1/chat/completions" || true)
    [ "$code" = 200 ] || die "$1 answered HTTP '$code' instead of 200 (log: $OUTDIR/$1.log)"
}
# wrk catches SIGINT and exits 0, which would hide Ctrl-C from bash; running it in the
# background and `wait`ing lets the INT trap fire at once.
run_wrk() {
    "${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -s "$TMP/${LUA:-chat}.lua" "$@" &
    WRK_PID=$!; wait "$WRK_PID"; WRK_PID=
}
declare -A RPS P50 P99 NON2XX SOCKERR PORT RPS_ROUNDS P99_ROUNDS CPU CPU_ROUNDS SERVER_PID SCHEME_OF LUA_OF
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
    local name=$1 url="${SCHEME_OF[$1]:-http}://127.0.0.1:${PORT[$1]}/v1/chat/completions" raw="$OUTDIR/$1.$2.txt" n t0 t1 reqs
    t0=$(cpu_ticks "${SERVER_PID[$name]}")
    LUA=${LUA_OF[$name]:-chat} run_wrk -d"${SECONDS_RUN}s" --latency "$url" >"$raw"
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
    SCHEME_OF[$1]=${SCHEME:-http}
    check_200 "$1" "$2"
    run_wrk -d2s "${SCHEME:-http}://127.0.0.1:$2/v1/chat/completions" >/dev/null
}
# the same wrk requests, each on a new connection (the server closes it after the answer)
sed 's/\["Host"\] = wrk.host,/["Host"] = wrk.host, ["Connection"] = "close",/' "$TMP/chat.lua" >"$TMP/chat-close.lua"

# measure TARGET...: ROUNDS interleaved rounds of each, then each figure's median (per-round lists kept)
measure() {
    local r t
    for r in $(seq "$ROUNDS"); do
        for t in "$@"; do bench_round "$t" "$r"; done
    done
    for t in "$@"; do
        [ "${NON2XX[$t]}" = 0 ] || { echo "bench: $t: ${NON2XX[$t]} non-2xx/3xx responses" >&2; FAILED=1; }
        [ -z "${SOCKERR[$t]}" ] || echo "bench: $t: socket errors: ${SOCKERR[$t]}" >&2
        RPS_ROUNDS[$t]=${RPS[$t]}; P99_ROUNDS[$t]=${P99[$t]}; CPU_ROUNDS[$t]=${CPU[$t]}
        RPS[$t]=$(median ${RPS[$t]}); P50[$t]=$(median ${P50[$t]}); P99[$t]=$(median ${P99[$t]}); CPU[$t]=$(median ${CPU[$t]})
    done
}

# --- streams and time to first token ----------------------------------------------------------
jfield() {  # jfield FILE KEY...: the value at that path of a JSON file, as JSON (null if absent)
    python3 - "$@" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v.get(k) if isinstance(v, dict) else None
print(json.dumps(v, separators=(",", ":")))
PY
}
pids_of() { echo "$1" $(pgrep -P "$1" || true) | tr ' ' ','; }   # a server and its children
rss_kib() { local t=0 p; for p in ${1//,/ }; do t=$(( t + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0) )); done; echo "$t"; }
run_client() {  # run_client OUT ARGS...: bench/streams.py in the background (Ctrl-C reaches the trap)
    local out=$1; shift
    python3 bench/streams.py "$@" >"$out" &
    WRK_PID=$!; wait "$WRK_PID" || die "bench/streams.py $1 failed (output: $out)"; WRK_PID=
}
declare -A S_PID S_FILE
streams_round() {  # streams_round NAME PORT PID: STREAMS_N concurrent streams through it
    local name=$1 port=$2 pid=$3 out="$OUTDIR/streams.$1.json" pids
    # a short stream first: the proxy passes SSE and ends it with [DONE]
    run_client "$OUTDIR/streams.$name.check.json" streams --port "$port" --n 1 --max-tokens 1 --timeout 10
    [ "$(jfield "$OUTDIR/streams.$name.check.json" complete)" = 1 ] ||
        die "$name: a single stream did not complete (see $OUTDIR/streams.$name.check.json, $OUTDIR/$name-s.log)"
    pids=$(pids_of "$pid")
    echo "  streams  $name: $STREAMS_N streams of ~${STREAM_SECONDS}s (pids $pids)" >&2
    run_client "$out" streams --port "$port" --n "$STREAMS_N" --max-tokens "$STREAM_TOKENS" --pids "$pids" \
        --open-deadline $(( STREAM_SECONDS / 2 )) --timeout $(( STREAM_SECONDS + 60 ))
    kill -0 "$pid" 2>/dev/null || die "$name died during its streams (see $OUTDIR/$name-s.log)"
    S_PID[$name]=$pid; S_FILE[$name]=$out
    echo "  streams  $name: $(jfield "$out" complete)/$STREAMS_N complete, $(jfield "$out" open_at_sample) open at the sample, RSS $(jfield "$out" rss_before_kib) → $(jfield "$out" rss_during_kib) KiB" >&2
}

echo "bench: each proxy runs ONE worker/thread (fair on a small machine); figures are medians" >&2
TARGETS=()
FLEDGE_RSS=null
if [ "$WRK" = 1 ]; then
echo "bench: $ROUNDS rounds × ${SECONDS_RUN}s per target, wrk -t1 -c$CONNS, POST /v1/chat/completions; $(nproc) CPUs" >&2
start backend "$BACKEND_PORT" nginx -p "$TMP/backend" -e stderr -c "$TMP/backend/nginx.conf"
prepare direct "$BACKEND_PORT"
TARGETS=(direct)
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

measure "${TARGETS[@]}"
if [ "$SKIP_FLEDGE" != 1 ]; then
    kill -0 "$FLEDGE_PID" 2>/dev/null || die "fledge died during its runs (see $OUTDIR/fledge.log)"
    FLEDGE_RSS=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$FLEDGE_PID/status")
fi
fi

# TLS: each proxy terminating TLS in front of the same backend, keep-alive and new connections.
TLS_TARGETS=()
if [ "$WRK" = 1 ] && [ "$TLS" = 1 ] && [ "$SKIP_FLEDGE" != 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/tls.key" \
        -out "$TMP/tls.crt" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null ||
        die "openssl could not make the TLS round's certificate"
    cat "$TMP/tls.crt" "$TMP/tls.key" >"$TMP/tls.pem"
    FT_PORT=$(free_port); FT_ADMIN=$(free_port); NT_PORT=$(free_port); HT_PORT=$(free_port)
    awk -v p="$FT_PORT" -v a="$FT_ADMIN" -v d="$TMP" '
        /^listen:/ { print "listen:\n  - address: 127.0.0.1:" p "\n    tls: { cert: " d "/tls.crt, key: " d "/tls.key }"; next }
        /^  listen:/ { print "  listen: 127.0.0.1:" a; next } { print }' "$TMP/fledge.yaml" >"$TMP/fledge-tls.yaml"
    nginx_conf proxy-tls "$NT_PORT ssl" 'location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }' \
        "upstream be { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 1000000; }
    ssl_certificate $TMP/tls.crt; ssl_certificate_key $TMP/tls.key; ssl_protocols TLSv1.2 TLSv1.3;"
    sed "s|bind 127.0.0.1:$HAPROXY_PORT|bind 127.0.0.1:$HT_PORT ssl crt $TMP/tls.pem alpn http/1.1 ssl-min-ver TLSv1.2|" \
        "$TMP/haproxy.cfg" >"$TMP/haproxy-tls.cfg"
    echo "bench: TLS, $ROUNDS rounds × ${SECONDS_RUN}s per target, keep-alive (-tls) and a new connection per request (-tlsnew)" >&2
    SCHEME=https
    start fledge-tls "$FT_PORT" "$FLEDGE" serve -c "$TMP/fledge-tls.yaml"
    prepare fledge-tls "$FT_PORT"
    start nginx-tls "$NT_PORT" nginx -p "$TMP/proxy-tls" -e stderr -c "$TMP/proxy-tls/nginx.conf"
    prepare nginx-tls "$NT_PORT"
    start haproxy-tls "$HT_PORT" haproxy -db -f "$TMP/haproxy-tls.cfg"
    prepare haproxy-tls "$HT_PORT"
    SCHEME=
    for t in fledge nginx haproxy; do
        PORT[$t-tlsnew]=${PORT[$t-tls]}; SERVER_PID[$t-tlsnew]=${SERVER_PID[$t-tls]}
        SCHEME_OF[$t-tlsnew]=https; LUA_OF[$t-tlsnew]=chat-close
    done
    TLS_TARGETS=(fledge-tls nginx-tls haproxy-tls fledge-tlsnew nginx-tlsnew haproxy-tlsnew)
    measure "${TLS_TARGETS[@]}"
fi

# Streams: fledge first, so that its settling time overlaps the other proxies' rounds and the
# TTFT round (fledge gets no traffic meanwhile).
STREAM_TARGETS=()
FLEDGE_S_END_NS=
if [ "$STREAMS" = 1 ]; then
    UNPINNED=1
    # 16 tokens: the first after 500 ms, the rest evenly over the remaining STREAM_SECONDS − 0.5 s
    tps=$(awk -v s="$STREAM_SECONDS" -v n="$STREAM_TOKENS" 'BEGIN { printf "%.4f", (n - 1) / (s - 0.5) }')
    echo "bench: streams round: $STREAMS_N concurrent SSE streams per proxy (descriptor limit $(ulimit -n))" >&2
    start mock-s "${SPORT[mock]}" "$FLEDGE" mock --listen "127.0.0.1:${SPORT[mock]}" --ttft-ms 500 \
        --tokens-per-s "$tps" --output-tokens "$STREAM_TOKENS"
    if [ "$SKIP_FLEDGE" != 1 ]; then
        start fledge-s "${SPORT[fledge]}" "$FLEDGE" serve -c "$TMP/fledge-s/fledge.yaml"
        streams_round fledge "${SPORT[fledge]}" "$LAST_PID"
        FLEDGE_S_END_NS=$(date +%s%N)
        STREAM_TARGETS+=(fledge)
    fi
    start haproxy-s "${SPORT[haproxy]}" haproxy -db -f "$TMP/haproxy-s.cfg"
    streams_round haproxy "${SPORT[haproxy]}" "$LAST_PID"
    start nginx-s "${SPORT[nginx]}" nginx -p "$TMP/nginx-s" -e stderr -c "$TMP/nginx-s/nginx.conf"
    streams_round nginx "${SPORT[nginx]}" "$LAST_PID"
    STREAM_TARGETS+=(haproxy nginx)
    UNPINNED=0
fi

TTFT_TARGETS=()
if [ "$TTFT" = 1 ]; then
    UNPINNED=1
    echo "bench: time to first token: $TTFT_REQUESTS streamed requests per target, mock TTFT ${TTFT_MS} ms" >&2
    start mock-t "${TPORT[mock]}" "$FLEDGE" mock --listen "127.0.0.1:${TPORT[mock]}" --ttft-ms "$TTFT_MS" \
        --tokens-per-s 0 --output-tokens 4
    targs=(--target "direct=${TPORT[mock]}"); TTFT_TARGETS=(direct)
    if [ "$SKIP_FLEDGE" != 1 ]; then
        start fledge-t "${TPORT[fledge]}" "$FLEDGE" serve -c "$TMP/fledge-t/fledge.yaml"
        targs+=(--target "fledge=${TPORT[fledge]}"); TTFT_TARGETS+=(fledge)
    fi
    start haproxy-t "${TPORT[haproxy]}" haproxy -db -f "$TMP/haproxy-t.cfg"
    start nginx-t "${TPORT[nginx]}" nginx -p "$TMP/nginx-t" -e stderr -c "$TMP/nginx-t/nginx.conf"
    targs+=(--target "haproxy=${TPORT[haproxy]}" --target "nginx=${TPORT[nginx]}"); TTFT_TARGETS+=(haproxy nginx)
    run_client "$OUTDIR/ttft.json" ttft "${targs[@]}" --requests "$TTFT_REQUESTS" --raw "$OUTDIR/ttft.raw.json"
    if [ "$SHADOW" = 1 ] && [ "$SKIP_FLEDGE" != 1 ]; then
        echo "bench: shadow: $SHADOW_REQUESTS streamed requests per target, fledge without and with a mirror of each" >&2
        start mock-c "$SH_CANARY" "$FLEDGE" mock --listen "127.0.0.1:$SH_CANARY" --ttft-ms "$TTFT_MS" \
            --tokens-per-s 0 --output-tokens 4
        start fledge-sh "$SH_PORT" "$FLEDGE" serve -c "$TMP/fledge-sh/fledge.yaml"
        run_client "$OUTDIR/shadow.json" ttft --target "fledge=${TPORT[fledge]}" --target "fledge-shadow=$SH_PORT" \
            --requests "$SHADOW_REQUESTS" --raw "$OUTDIR/shadow.raw.json"
        sleep 1   # the last mirrors' answers
        MIRRORED=$(curl -s "http://127.0.0.1:$SH_ADMIN/metrics" | awk '/^fledge_shadow_requests_total\{/ { n += $NF } END { print n + 0 }')
    fi
    UNPINNED=0
fi

FLEDGE_SETTLED=null; SETTLED_AFTER=null
if [ -n "$FLEDGE_S_END_NS" ]; then
    left=$(awk -v e="$FLEDGE_S_END_NS" -v n="$(date +%s%N)" -v s="$SETTLE_SECONDS" 'BEGIN { l = s - (n - e) / 1e9; printf "%.1f", (l > 0 ? l : 0) }')
    echo "bench: waiting ${left}s more for fledge's RSS ${SETTLE_SECONDS}s after its streams ended" >&2
    sleep "$left"
    kill -0 "${S_PID[fledge]}" 2>/dev/null || die "fledge (streams) died while idle (see $OUTDIR/fledge-s.log)"
    FLEDGE_SETTLED=$(rss_kib "${S_PID[fledge]}")
    SETTLED_AFTER=$(awk -v e="$FLEDGE_S_END_NS" -v n="$(date +%s%N)" 'BEGIN { printf "%.1f", (n - e) / 1e9 }')
fi

# --- report -------------------------------------------------------------------------
# Ratios are taken round by round and their median reported: the machine's speed drifts between
# rounds (other tenants), but within a round every target meets the same conditions.
ratio() {  # ratio "A round values" "B round values"
    local a=($1) b=($2) r=() i
    for i in "${!a[@]}"; do r+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { if (y + 0 > 0) printf "%.4f", x / y }')"); done
    printf '%.2f' "$(median "${r[@]}")"
}
div() { awk -v x="$1" -v y="$2" -v f="${3:-%.2f}" 'BEGIN { if (x == "null" || y == "null" || y + 0 == 0) print "null"; else printf f "\n", x / y }'; }
sub_ms() { awk -v x="$1" -v y="$2" 'BEGIN { if (x == "null" || y == "null") print "null"; else printf "%.3f\n", x - y }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "null") print "-"; else printf "%.1f\n", k / 1024 }'; }
R_NG_RPS=null; R_HA_RPS=null; R_NG_P99=null; R_HA_P99=null; R_METRICS=null
R_NG_CPU=null; R_HA_CPU=null; R_METRICS_CPU=null
if [ "$WRK" = 1 ]; then
echo
echo "fledge benchmark — wrk -t1 -c$CONNS, median of $ROUNDS × ${SECONDS_RUN}s, one worker/thread per proxy, $(nproc) CPUs"
printf '%-12s %12s %10s %10s %14s\n' target 'req/s' 'p50 ms' 'p99 ms' 'cpu µs/req'
for t in "${TARGETS[@]}"; do printf '%-12s %12s %10s %10s %14s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}"; done
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
fi

# per round, fledge's figure over the better of nginx's and HAProxy's (higher req/s, lower CPU)
ratio_best() {  # ratio_best FLEDGE-ROUNDS NGINX-ROUNDS HAPROXY-ROUNDS max|min
    local f=($1) n=($2) h=($3) r=() i
    for i in "${!f[@]}"; do
        r+=("$(awk -v x="${f[$i]}" -v a="${n[$i]}" -v b="${h[$i]}" -v m="$4" \
            'BEGIN { y = (m == "max") == (a + 0 > b + 0) ? a : b; if (y + 0 > 0) printf "%.4f", x / y }')")
    done
    printf '%.2f' "$(median "${r[@]}")"
}
R_TLS_RPS=null; R_TLS_CPU=null; R_TLSNEW_RPS=null; R_TLSNEW_CPU=null
if [ "${#TLS_TARGETS[@]}" -gt 0 ]; then
    echo
    echo "TLS — each proxy terminating TLS (ECDSA P-256, TLS 1.3), wrk -t1 -c$CONNS, median of $ROUNDS × ${SECONDS_RUN}s"
    printf '%-14s %12s %10s %10s %14s\n' target 'req/s' 'p50 ms' 'p99 ms' 'cpu µs/req'
    for t in "${TLS_TARGETS[@]}"; do printf '%-14s %12s %10s %10s %14s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}"; done
    R_TLS_RPS=$(ratio_best "${RPS_ROUNDS[fledge-tls]}" "${RPS_ROUNDS[nginx-tls]}" "${RPS_ROUNDS[haproxy-tls]}" max)
    R_TLS_CPU=$(ratio_best "${CPU_ROUNDS[fledge-tls]}" "${CPU_ROUNDS[nginx-tls]}" "${CPU_ROUNDS[haproxy-tls]}" min)
    R_TLSNEW_RPS=$(ratio_best "${RPS_ROUNDS[fledge-tlsnew]}" "${RPS_ROUNDS[nginx-tlsnew]}" "${RPS_ROUNDS[haproxy-tlsnew]}" max)
    R_TLSNEW_CPU=$(ratio_best "${CPU_ROUNDS[fledge-tlsnew]}" "${CPU_ROUNDS[nginx-tlsnew]}" "${CPU_ROUNDS[haproxy-tlsnew]}" min)
    echo "fledge/better of nginx and HAProxy, keep-alive:      req/s $R_TLS_RPS   cpu per request $R_TLS_CPU"
    echo "fledge/better of nginx and HAProxy, new connections: req/s $R_TLSNEW_RPS   cpu per request $R_TLSNEW_CPU"
fi

declare -A S_COMPLETE S_PER
R_STREAM_HA=null; R_STREAM_NG=null; SETTLED_VS_BEFORE=null
if [ "$STREAMS" = 1 ]; then
    echo
    echo "streams — $STREAMS_N concurrent SSE streams (${STREAM_TOKENS} tokens over ~${STREAM_SECONDS}s each), one worker/thread per proxy, unpinned"
    printf '%-12s %12s %12s %15s %10s %11s\n' target 'RSS before' 'RSS during' 'per stream' complete incomplete
    for t in "${STREAM_TARGETS[@]}"; do
        f=${S_FILE[$t]}
        S_COMPLETE[$t]=$(jfield "$f" complete); S_PER[$t]=$(jfield "$f" rss_per_stream_bytes)
        printf '%-12s %8s MiB %8s MiB %12s kB %10s %11s\n' "$t" "$(mib "$(jfield "$f" rss_before_kib)")" \
            "$(mib "$(jfield "$f" rss_during_kib)")" "$(div "${S_PER[$t]}" 1000 %.1f)" "${S_COMPLETE[$t]}" \
            "$(jfield "$f" incomplete)$([ "$(jfield "$f" incomplete)" = 0 ] || echo " $(jfield "$f" incomplete_reasons)")"
        [ "$(jfield "$f" open_at_sample)" = "$STREAMS_N" ] ||
            echo "  ($t: only $(jfield "$f" open_at_sample) of $STREAMS_N streams were open at once when sampled)"
    done
    if [ "$SKIP_FLEDGE" != 1 ]; then
        R_STREAM_HA=$(div "${S_PER[fledge]}" "${S_PER[haproxy]}")
        R_STREAM_NG=$(div "${S_PER[fledge]}" "${S_PER[nginx]}")
        before=$(jfield "${S_FILE[fledge]}" rss_before_kib)
        SETTLED_VS_BEFORE=$(div "$FLEDGE_SETTLED" "$before" %.3f)
        echo "fledge/haproxy RSS per stream: $R_STREAM_HA   fledge/nginx: $R_STREAM_NG"
        echo "fledge RSS: before $(mib "$before") MiB, during $(mib "$(jfield "${S_FILE[fledge]}" rss_during_kib)") MiB," \
             "${SETTLED_AFTER}s after the streams ended $(mib "$FLEDGE_SETTLED") MiB ($(awk -v r="$SETTLED_VS_BEFORE" 'BEGIN { printf "%+.0f%%", (r - 1) * 100 }') of before)"
        [ "${S_COMPLETE[fledge]}" = "$STREAMS_N" ] || { echo "bench: fledge completed ${S_COMPLETE[fledge]} of $STREAMS_N streams" >&2; FAILED=1; }
    fi
fi

R_SHADOW_P50=null; R_SHADOW_P99=null
if [ -n "${MIRRORED:-}" ]; then
    sf="$OUTDIR/shadow.json"
    echo
    echo "shadow — $SHADOW_REQUESTS streamed requests per target, one at a time, interleaved, unpinned: the primary without and with a mirror of every request"
    printf '%-14s %10s %10s %10s %11s\n' target 'p50 ms' 'p99 ms' 'max ms' incomplete
    for t in fledge fledge-shadow; do
        printf '%-14s %10s %10s %10s %11s\n' "$t" "$(jfield "$sf" targets "$t" p50_ms)" "$(jfield "$sf" targets "$t" p99_ms)" \
            "$(jfield "$sf" targets "$t" max_ms)" "$(jfield "$sf" targets "$t" incomplete)"
    done
    R_SHADOW_P50=$(div "$(jfield "$sf" targets fledge-shadow p50_ms)" "$(jfield "$sf" targets fledge p50_ms)" %.3f)
    R_SHADOW_P99=$(div "$(jfield "$sf" targets fledge-shadow p99_ms)" "$(jfield "$sf" targets fledge p99_ms)" %.3f)
    echo "with the mirror over without: p50 $R_SHADOW_P50, p99 $R_SHADOW_P99; mirrors answered by the canary: $MIRRORED"
    [ "$MIRRORED" -ge "$SHADOW_REQUESTS" ] || { echo "bench: only $MIRRORED mirrors answered (of $SHADOW_REQUESTS and the warm-up)" >&2; FAILED=1; }
fi

ADD_P50=null; ADD_P99=null
if [ "$TTFT" = 1 ]; then
    tf="$OUTDIR/ttft.json"
    echo
    echo "time to first token — $TTFT_REQUESTS streamed requests per target, one at a time, targets interleaved, mock TTFT ${TTFT_MS} ms, unpinned"
    printf '%-12s %10s %10s %10s %11s\n' target 'p50 ms' 'p99 ms' 'max ms' incomplete
    for t in "${TTFT_TARGETS[@]}"; do
        printf '%-12s %10s %10s %10s %11s\n' "$t" "$(jfield "$tf" targets "$t" p50_ms)" "$(jfield "$tf" targets "$t" p99_ms)" \
            "$(jfield "$tf" targets "$t" max_ms)" "$(jfield "$tf" targets "$t" incomplete)"
    done
    if [ "$SKIP_FLEDGE" != 1 ]; then
        ADD_P50=$(sub_ms "$(jfield "$tf" targets fledge p50_ms)" "$(jfield "$tf" targets direct p50_ms)")
        ADD_P99=$(sub_ms "$(jfield "$tf" targets fledge p99_ms)" "$(jfield "$tf" targets direct p99_ms)")
        echo "fledge added TTFT over direct: p50 $ADD_P50 ms, p99 $ADD_P99 ms"
        [ "$(jfield "$tf" targets fledge incomplete)" = 0 ] || { echo "bench: fledge: $(jfield "$tf" targets fledge incomplete) TTFT requests incomplete" >&2; FAILED=1; }
    fi
fi

{
    printf '{\n  "seconds": %s, "rounds": %s, "connections": %s, "wrk_threads": 1, "cpus": %s, "proxy_workers": 1,\n' \
        "$SECONDS_RUN" "$ROUNDS" "$CONNS" "$(nproc)"
    printf '  "targets": {\n'
    sep=""
    for t in "${TARGETS[@]}" "${TLS_TARGETS[@]}"; do
        printf '%s    "%s": {"rps": %s, "p50_ms": %s, "p99_ms": %s, "cpu_us_per_request": %s, "non_2xx_3xx": %s, "socket_errors": "%s"}' \
            "$sep" "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}" "${NON2XX[$t]}" "${SOCKERR[$t]}"
        sep=$',\n'
    done
    [ -z "$sep" ] || printf '\n'
    printf '  },\n  "ratios": {"fledge_nginx_rps": %s, "fledge_haproxy_rps": %s, "fledge_nginx_p99": %s, "fledge_haproxy_p99": %s, "fledge_nginx_cpu": %s, "fledge_haproxy_cpu": %s, "metrics_on_off_rps": %s, "metrics_on_off_cpu": %s},\n' \
        "$R_NG_RPS" "$R_HA_RPS" "$R_NG_P99" "$R_HA_P99" "$R_NG_CPU" "$R_HA_CPU" "$R_METRICS" "$R_METRICS_CPU"
    printf '  "fledge_rss_mib": %s,\n' "$FLEDGE_RSS"
    printf '  "shadow": {"requests": %s, "mirrors_answered": %s, "p50_with_over_without": %s, "p99_with_over_without": %s},\n' \
        "$SHADOW_REQUESTS" "${MIRRORED:-null}" "$R_SHADOW_P50" "$R_SHADOW_P99"
    printf '  "tls": {"fledge_best_rps": %s, "fledge_best_cpu": %s, "fledge_best_rps_new_connections": %s, "fledge_best_cpu_new_connections": %s},\n' \
        "$R_TLS_RPS" "$R_TLS_CPU" "$R_TLSNEW_RPS" "$R_TLSNEW_CPU"
    if [ "$STREAMS" = 1 ]; then
        printf '  "streams": {"streams": %s, "stream_seconds": %s, "tokens": %s, "settle_seconds": %s, "targets": {\n' \
            "$STREAMS_N" "$STREAM_SECONDS" "$STREAM_TOKENS" "$SETTLE_SECONDS"
        sep=""
        for t in "${STREAM_TARGETS[@]}"; do printf '%s    "%s": %s' "$sep" "$t" "$(cat "${S_FILE[$t]}")"; sep=$',\n'; done
        printf '\n  }, "fledge_rss_settled_kib": %s, "fledge_settled_after_s": %s, "fledge_settled_over_before": %s, "fledge_haproxy_rss_per_stream": %s, "fledge_nginx_rss_per_stream": %s},\n' \
            "$FLEDGE_SETTLED" "$SETTLED_AFTER" "$SETTLED_VS_BEFORE" "$R_STREAM_HA" "$R_STREAM_NG"
    else
        printf '  "streams": null,\n'
    fi
    if [ "$TTFT" = 1 ]; then
        printf '  "ttft": {"requests": %s, "mock_ttft_ms": %s, "targets": %s, "fledge_added_p50_ms": %s, "fledge_added_p99_ms": %s},\n' \
            "$TTFT_REQUESTS" "$TTFT_MS" "$(jfield "$OUTDIR/ttft.json" targets)" "$ADD_P50" "$ADD_P99"
    else
        printf '  "ttft": null,\n'
    fi
    printf '  "failed": %s\n}\n' "$([ "$FAILED" = 1 ] && echo true || echo false)"
} >"$JSON"
python3 -m json.tool "$JSON" >/dev/null 2>&1 || ! command -v python3 >/dev/null || die "wrote invalid JSON to $JSON"
echo "results: $JSON, raw output: $OUTDIR/"
[ "$FAILED" = 0 ] || die "some target failed: non-2xx/3xx responses under load, or fledge's streams or TTFT requests incomplete"
