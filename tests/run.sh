#!/bin/sh
# run.sh — `make test`: every cmocka unit test binary, then the end-to-end suite against real
# fledge and mock processes. Ends with one line: "N passed, N failed". FLEDGE_BUILD names another
# build directory (make asan's).
cd "$(dirname "$0")/.." || exit 1
build=${FLEDGE_BUILD:-build}
export FLEDGE="$PWD/$build/fledge"
passed=0
failed=0
# The module graph first (make modules): an include cycle between modules is one failed test.
if python3 scripts/deps.py; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  out=$("$t" 2>&1)
  echo "$out"
  p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p')
  f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p')
  # a binary that crashed before its summary counts as one failure
  [ -z "$p$f" ] && f=1
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
done
e2e=$(mktemp)
python3 tests/e2e/run.py "$@" | tee "$e2e"
line=$(tail -n 1 "$e2e")
rm -f "$e2e"
ep=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
ef=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
[ -z "$ep" ] && ef=1
passed=$((passed + ${ep:-0}))
failed=$((failed + ${ef:-0}))
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
