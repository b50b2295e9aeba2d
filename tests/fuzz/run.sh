#!/bin/sh
# run.sh BUILD SECONDS [NAME...] — `make fuzz`: each libFuzzer target in BUILD (or those named) runs for SECONDS over its
# corpus: the seeds in tests/fuzz/corpus/NAME and what earlier runs found (BUILD/corpus/NAME).
# A crash leaves its input in tests/fuzz/regression/NAME/, which make test replays from then on
# (tests/unit/test_fuzz_replay.c); fix it, keep the input. BUILD/fuzz-time.txt adds up the
# seconds and runs per target over every `make fuzz`. Ends with "N passed, N failed".
cd "$(dirname "$0")/../.." || exit 1
build=$1
seconds=$2
shift 2
passed=0
failed=0
for bin in "$build"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=${bin##*/fuzz_}
  if [ $# -gt 0 ] && ! echo " $* " | grep -q " $name "; then continue; fi
  mkdir -p "$build/corpus/$name" "tests/fuzz/regression/$name"
  log="$build/$name.log"
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="tests/fuzz/regression/$name/" "$build/corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1; then
    passed=$((passed + 1))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$name $seconds ${runs:-0}" >>"$build/fuzz-time.txt"
    total=$(awk -v n="$name" '$1 == n { s += $2; r += $3 } END { printf "%d s, %d runs", s, r }' "$build/fuzz-time.txt")
    echo "ok    $name: ${runs:-0} runs in ${seconds}s, $(ls "$build/corpus/$name" | wc -l) corpus inputs (all runs so far: $total)"
  else
    failed=$((failed + 1))
    echo "FAIL  $name: a finding, kept in tests/fuzz/regression/$name/ (log: $log)"
    grep -A 25 "ERROR\|==ERROR\|runtime error\|deadly signal" "$log" | head -40
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
