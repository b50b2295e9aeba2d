"""run.py — runs every test_* function in tests/e2e/test_*.py (or those named on the command line),
each in isolation, and ends with the line `N passed, N failed`."""
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


def main(argv):
    files = sorted(f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
    repeat = 1
    if argv[:1] == ["--repeat"]:            # run.py --repeat N name...: a soak of chosen tests
        repeat, argv = int(argv[1]), argv[2:]
    wanted = set(argv)
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
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
