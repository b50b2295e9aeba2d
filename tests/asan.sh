#!/bin/sh
# asan.sh BUILD — `make asan`: tests/run.sh on the sanitizer build in BUILD, every report of
# AddressSanitizer, UndefinedBehaviorSanitizer or LeakSanitizer (in a test binary or in any fledge
# process the end-to-end tests start) written to a log directory; each report counts as a failure.
# Ends with one line: "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
logs=$(mktemp -d)
export ASAN_OPTIONS="detect_leaks=1:handle_abort=1:log_path=$logs/asan:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/ubsan"
# the rollout simulation's statistics are make test's to check; here its memory is, on fewer rollouts
export FLEDGE_SIM_ROLLOUTS="${FLEDGE_SIM_ROLLOUTS:-100}"
out=$(mktemp)
FLEDGE_BUILD="$1" tests/run.sh | tee "$out"
line=$(tail -n 1 "$out")
rm -f "$out"
passed=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
failed=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
[ -z "$passed" ] && failed=1
reports=$(ls "$logs" | wc -l)
if [ "$reports" -gt 0 ]; then
  for f in "$logs"/*; do echo "---- $f"; cat "$f"; done
  echo "asan: $reports sanitizer report(s)"
fi
rm -rf "$logs"
echo
echo "${passed:-0} passed, $((${failed:-0} + reports)) failed"
[ "$((${failed:-0} + reports))" -eq 0 ]
