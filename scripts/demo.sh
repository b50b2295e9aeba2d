#!/bin/sh
# demo.sh — `make demo`: two mock model versions (v1 stable, v2 canary) behind the gateway with a
# 20% canary, in the foreground until Ctrl-C. Ports: FLEDGE_PORT (8080), ADMIN_PORT (9090),
# V1_PORT (9001), V2_PORT (9002).
set -eu
cd "$(dirname "$0")/.."
FLEDGE=build/fledge
FLEDGE_PORT=${FLEDGE_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
V1_PORT=${V1_PORT:-9001}
V2_PORT=${V2_PORT:-9002}
conf=build/demo.yaml
export FLEDGE_ADMIN_TOKEN=${FLEDGE_ADMIN_TOKEN:-demo-token-change-me-0000}
rm -f build/demo.db build/demo.db-wal build/demo.db-shm
sed -e "s/127.0.0.1:8080/127.0.0.1:$FLEDGE_PORT/" -e "s/127.0.0.1:9090/127.0.0.1:$ADMIN_PORT/" \
    -e "s/127.0.0.1:9001/127.0.0.1:$V1_PORT/" -e "s/127.0.0.1:9002/127.0.0.1:$V2_PORT/" deploy/demo.yaml >"$conf"

pids=""
cleanup() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT INT TERM

"$FLEDGE" mock --listen "127.0.0.1:$V1_PORT" --model demo-llm-v1 --latency-ms 40 --ttft-ms 80 --tokens-per-s 40 &
pids="$pids $!"
"$FLEDGE" mock --listen "127.0.0.1:$V2_PORT" --model demo-llm-v2 --latency-ms 30 --ttft-ms 60 --tokens-per-s 50 &
pids="$pids $!"
"$FLEDGE" check -c "$conf"
"$FLEDGE" serve -c "$conf" &
pids="$pids $!"
sleep 0.5

url="http://127.0.0.1:$FLEDGE_PORT/v1/chat/completions"
cat <<MSG

fledge is serving on 127.0.0.1:$FLEDGE_PORT: stable v1 on :$V1_PORT, canary v2 (20%) on :$V2_PORT.

  # a user is sticky: run it twice, same x-fledge-variant both times
  curl -si $url -H 'x-user-id: alice' \\
       -d '{"model":"any","messages":[{"role":"user","content":"hello"}]}' | grep -i '^x-fledge'

  # force the canary with the rule x-version: v2, and stream tokens (SSE)
  curl -sN $url -H 'x-version: v2' \\
       -d '{"model":"any","stream":true,"messages":[{"role":"user","content":"hello"}]}'

  # how 1000 users split (about 200 on v2)
  for i in \$(seq 1000); do curl -s -o /dev/null -D - $url -H "x-user-id: u\$i" -d '{}' \\
       | grep -i '^x-fledge-version'; done | sort | uniq -c

  # the numbers per version, and Prometheus's view
  build/fledge stats -c $conf;  curl -s http://127.0.0.1:$ADMIN_PORT/metrics | head

  # the config's rollout of v2 began at start (20% -> 50% -> 100%, a window every 10 s); it holds
  # until there is traffic to judge, so send some and watch it move
  while :; do curl -s -o /dev/null $url -H "x-user-id: u\$RANDOM" -d '{}'; done &
  build/fledge status -c $conf;  build/fledge history -c $conf
  FLEDGE_ADMIN_TOKEN=$FLEDGE_ADMIN_TOKEN build/fledge rollout abort chat -c $conf   # or by hand

Edit $conf and send SIGHUP (kill -HUP \$(pgrep -f 'fledge serve')) to change the weight live.
Ctrl-C stops everything.
MSG
wait
