"""`make demo` on its own: the README's first command starts two mock versions, the gateway and a
steady load, and its rollout reaches promoted (SCENARIO=good) or rolled_back (SCENARIO=bad, a
canary with errors and slow answers) by itself within three minutes, telling each decision as a
line; it then stops (DEMO_EXIT=1, as the test asks) leaving nothing running. Both scenarios run
side by side on free ports."""
import os
import socket
import subprocess
import threading
import time

from harness import free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run_demo(scenario, out):
    ports = {k: str(free_port()) for k in ("FLEDGE_PORT", "ADMIN_PORT", "V1_PORT", "V2_PORT")}
    env = dict(os.environ, SCENARIO=scenario, DEMO_EXIT="1", DEMO_DIR="build/demo-test-" + scenario, **ports)
    t0 = time.time()
    # what `make demo SCENARIO=...` runs, on the binary under test ($FLEDGE, as every e2e test)
    p = subprocess.run([os.path.join(ROOT, "scripts", "demo.sh")], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=240)
    out.update(rc=p.returncode, text=p.stdout + p.stderr, took=time.time() - t0, ports=ports)


def port_free(port):
    s = socket.socket()
    try:
        return s.connect_ex(("127.0.0.1", int(port))) != 0
    finally:
        s.close()


def test_make_demo_promotes_a_healthy_canary_and_rolls_back_a_bad_one_by_itself():
    good, bad = {}, {}
    runs = [threading.Thread(target=run_demo, args=("good", good)), threading.Thread(target=run_demo, args=("bad", bad))]
    for t in runs:
        t.start()
    for t in runs:
        t.join(260)
    for name, r, word, event in (("good", good, "demo: promoted", "promoted"),
                                 ("bad", bad, "demo: rolled back", "rolled_back")):
        assert r.get("rc") == 0, (name, r.get("text", "")[-3000:])
        assert word in r["text"] and r["took"] < 180, (name, r["took"], r["text"][-3000:])
        lines = r["text"].splitlines()
        # the story: the start, and the decision, each one line with its reason
        assert any(l.split()[4:5] == ["rollout_started"] and "rollout of v2 started by config" in l
                   for l in lines if l[:2] == "20"), r["text"]
        story = [l for l in lines if l[:2] == "20" and l.split()[4:5] == [event]]   # TIME ROUTE ACTOR EVENT
        assert len(story) == 1 and len(story[0].split()) > 7, r["text"]           # ... and its why
        assert "dashboard    http://127.0.0.1:%s/" % r["ports"]["ADMIN_PORT"] in r["text"]
        # and nothing is left listening
        time.sleep(0.5)
        assert all(port_free(p) for p in r["ports"].values()), (name, r["ports"])
    assert "every check passed on" in [l for l in good["text"].splitlines()
                                       if l[:2] == "20" and l.split()[4:5] == ["promoted"]][0]
