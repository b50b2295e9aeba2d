"""run.py — runs every test_* function in tests/e2e/test_*.py (or those named on the command line),
each in isolation, and ends with the line `N passed, N failed`. A whole run puts the files that
mostly wait (SIDE_LANE) in a second process beside the others."""
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def tests_in(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [(mod.__name__, n, getattr(mod, n)) for n in sorted(vars(mod), key=lambda n: getattr(getattr(mod, n), "__code__", None) and getattr(mod, n).__code__.co_firstlineno or 0) if n.startswith("test_") and callable(getattr(mod, n))]


# Files whose tests mostly wait (a demo at 13 requests/s, a judgement at 5 requests/s): a whole
# run starts them in a second process beside the rest, which they barely load.
SIDE_LANE = ("test_demo", "test_judgement")


def side_lane():
    import subprocess
    import tempfile
    out = tempfile.TemporaryFile("w+")
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), *SIDE_LANE], stdout=out,
                            stderr=subprocess.STDOUT, env=dict(os.environ, FLEDGE_E2E_SIDE_LANE="1")), out


def side_lane_result(lane):
    """Prints the side lane's lines; its (passed, failed)."""
    proc, out = lane
    proc.wait()
    out.seek(0)
    lines = out.read().splitlines()
    print("\n".join(lines[:-1]), flush=True)
    last = lines[-1].split() if lines else []
    if len(last) == 4 and last[1] == "passed,":
        return int(last[0]), int(last[2])
    print("FAIL  the side lane ended without its count: %s" % lines[-1:], flush=True)
    return 0, 1


def main(argv):
    files = sorted(f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
    repeat = 1
    if argv[:1] == ["--repeat"]:            # run.py --repeat N name...: a soak of chosen tests
        repeat, argv = int(argv[1]), argv[2:]
    wanted = set(argv)
    lane = None
    if not wanted and repeat == 1:
        lane = side_lane()
        files = [f for f in files if f[:-3] not in SIDE_LANE]
    passed = failed = 0
    for f in files:
        try:
            found = tests_in(os.path.join(HERE, f))
        except Exception:
            failed += 1
            print("FAIL  %s (import)\n%s" % (f, traceback.format_exc()), flush=True)
            continue
        for mod, name, fn in [t for t in found for _ in range(repeat)]:
            if wanted and name not in wanted and mod not in wanted:
                continue
            t0 = time.time()
            try:
                fn()
                passed += 1
                print("ok    %s.%s (%.1fs)" % (mod, name, time.time() - t0), flush=True)
            except Exception:
                failed += 1
                print("FAIL  %s.%s (%.1fs)\n%s" % (mod, name, time.time() - t0, traceback.format_exc()), flush=True)
    if lane:
        p, f = side_lane_result(lane)
        passed, failed = passed + p, failed + f
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
