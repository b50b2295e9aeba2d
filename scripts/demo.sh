#!/bin/sh
# demo.sh — `make demo`: two mock model versions (v1 stable, v2 canary) behind the gateway, a
# steady load from many users (`fledge load`), and the config's progressive rollout of v2 told as
# it happens, one line per decision, until it is promoted (SCENARIO=good, the default) or rolled
# back (SCENARIO=bad: a canary with errors and slow answers). Stays up for a look around until
# Ctrl-C, which stops everything it started and waits for it to end, then exits 130 (143 on
# SIGTERM); with DEMO_EXIT=1 it stops by itself once the rollout has ended (the tests use that).
# Ports: FLEDGE_PORT (8080), ADMIN_PORT (9090), V1_PORT (9001), V2_PORT (9002); DEMO_RPS (50).
set -eu
cd "$(dirname "$0")/.."
FLEDGE=${FLEDGE:-build/fledge}
SCENARIO=${SCENARIO:-good}
FLEDGE_PORT=${FLEDGE_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
V1_PORT=${V1_PORT:-9001}
V2_PORT=${V2_PORT:-9002}
DEMO_RPS=${DEMO_RPS:-50}
DEMO_DIR=${DEMO_DIR:-build/demo-$SCENARIO}
conf=$DEMO_DIR/demo.yaml
export FLEDGE_ADMIN_TOKEN=${FLEDGE_ADMIN_TOKEN:-demo-token-change-me-0000}
case $SCENARIO in
  good) canary_opts="--latency-ms 30 --ttft-ms 60 --tokens-per-s 50" ;;
  bad) canary_opts="--latency-ms 120 --ttft-ms 200 --tokens-per-s 20 --error-rate 0.08" ;;
  *) echo "demo: SCENARIO is good or bad, not $SCENARIO" >&2; exit 2 ;;
esac
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR"/demo.db "$DEMO_DIR"/demo.db-wal "$DEMO_DIR"/demo.db-shm
sed -e "s/127.0.0.1:8080/127.0.0.1:$FLEDGE_PORT/" -e "s/127.0.0.1:9090/127.0.0.1:$ADMIN_PORT/" \
    -e "s/127.0.0.1:9001/127.0.0.1:$V1_PORT/" -e "s/127.0.0.1:9002/127.0.0.1:$V2_PORT/" deploy/demo.yaml >"$conf"

pids=""
# Each process on its own: one that has already ended (and been reaped) makes `kill` fail, which
# under `set -e` would end this trap before its `wait`, with status 1 and the others still going.
# A second Ctrl-C while they stop reaches them (the gateway then cuts its drain short), not us.
cleanup() {
  trap '' INT TERM
  for pid in $pids; do kill "$pid" 2>/dev/null || :; done
  wait 2>/dev/null || :
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$FLEDGE" mock --listen "127.0.0.1:$V1_PORT" --model demo-llm-v1 --latency-ms 40 --ttft-ms 80 --tokens-per-s 40 &
pids="$pids $!"
# shellcheck disable=SC2086
"$FLEDGE" mock --listen "127.0.0.1:$V2_PORT" --model demo-llm-v2 $canary_opts &
pids="$pids $!"
"$FLEDGE" check -c "$conf" >/dev/null
"$FLEDGE" serve -c "$conf" 2>"$DEMO_DIR/gateway.log" &
pids="$pids $!"
for _ in $(seq 50); do
  "$FLEDGE" status -c "$conf" >/dev/null 2>&1 && break
  sleep 0.1
done

cat <<MSG

fledge demo ($SCENARIO): stable v1 on :$V1_PORT, canary v2 on :$V2_PORT$( [ "$SCENARIO" = bad ] && echo ' (8% errors, 3x slower)').
  gateway      http://127.0.0.1:$FLEDGE_PORT/v1/chat/completions
  dashboard    http://127.0.0.1:$ADMIN_PORT/          (token: $FLEDGE_ADMIN_TOKEN)
  metrics      http://127.0.0.1:$ADMIN_PORT/metrics
  in another terminal: build/fledge top -c $conf   |   build/fledge status -c $conf
The config's rollout of v2 (20% -> 50% -> 100%) began at start; $DEMO_RPS requests/s from 2,000
users drive it. Each decision is told below as it is made. Ctrl-C stops everything.

MSG

"$FLEDGE" load --url "http://127.0.0.1:$FLEDGE_PORT/v1/chat/completions" --rps "$DEMO_RPS" --users 2000 --stream \
  --quiet >"$DEMO_DIR/load.log" 2>&1 &
pids="$pids $!"
"$FLEDGE" history -c "$conf" --follow &
pids="$pids $!"

state=progressing
while :; do
  sleep 1
  state=$("$FLEDGE" status -c "$conf" 2>/dev/null | awk '$1 == "chat" { print $5 }')
  case $state in promoted|rolled_back) sleep 2 ;; esac     # the story's follower tells the decision first
  case $state in
    promoted) echo; echo "demo: promoted — v2 is now the stable version, serving every user."; break ;;
    rolled_back) echo; echo "demo: rolled back — every user is on v1 again; the reason is in the last line above."; break ;;
  esac
done
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "demo: still serving (load goes on) for a look around; Ctrl-C stops everything."
wait
