"""`make demo` on its own: the README's first command starts two mock versions, the gateway and a
steady load, and its rollout reaches promoted (SCENARIO=good) or rolled_back (SCENARIO=bad, a
canary with errors and slow answers) by itself within three minutes, telling each decision as a
line; it then stops (DEMO_EXIT=1, as the test asks) leaving nothing running. Both scenarios run
side by side on free ports. Without DEMO_EXIT it serves on until Ctrl-C, which stops it at once,
with everything it started."""
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

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


def running(pattern):
    """The ids of the processes whose command line holds pattern (pgrep -f), as text."""
    return subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout.split()


def gateway_served(admin_port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % admin_port, timeout=1) as r:
            return any(l.startswith("fledge_requests_total{") and float(l.rsplit(" ", 1)[1]) > 0
                       for l in r.read().decode().splitlines())
    except OSError:
        return False


def ctrl_c_demo(name, first=None):
    """Starts the demo as a person would (no DEMO_EXIT), waits for its banner and its gateway's first
    answers, runs first(conf) if given, then presses Ctrl-C: the demo must end within 10 s with
    status 130, leaving nothing listening on its ports and no process of it running."""
    ports = {k: str(free_port()) for k in ("FLEDGE_PORT", "ADMIN_PORT", "V1_PORT", "V2_PORT")}
    demo_dir = "build/demo-test-" + name
    conf = demo_dir + "/demo.yaml"
    env = dict(os.environ, SCENARIO="good", DEMO_DIR=demo_dir, **ports)
    env.pop("DEMO_EXIT", None)                    # as a person runs it: it serves until Ctrl-C
    # its own session and process group, as a terminal gives a command it runs in the foreground
    p = subprocess.Popen([os.path.join(ROOT, "scripts", "demo.sh")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = []
    reader = threading.Thread(target=lambda: out.extend(p.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 30
        while not ("Ctrl-C stops everything." in "".join(out) and gateway_served(ports["ADMIN_PORT"])):
            assert p.poll() is None and time.time() < deadline, (p.returncode, "".join(out)[-3000:])
            time.sleep(0.1)
        assert not port_free(ports["FLEDGE_PORT"]) and running(conf), "".join(out)[-3000:]
        if first:
            first(conf)
        t0 = time.time()
        os.killpg(p.pid, signal.SIGINT)            # Ctrl-C: the whole foreground group gets SIGINT
        rc = p.wait(timeout=15)
        took = time.time() - t0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    reader.join(5)
    text = "".join(out)
    assert rc == 130 and took < 10, (rc, took, text[-3000:])
    # nothing of this demo is left: no listener on its ports, no process naming its config or ports
    assert [k for k, port in ports.items() if not port_free(port)] == [], (ports, text[-3000:])
    left = running(conf) + [pid for port in ports.values() for pid in running("127.0.0.1:%s" % port)]
    assert left == [], subprocess.run(["ps", "-o", "pid,pgid,args", "-p", ",".join(left)], capture_output=True,
                                      text=True).stdout


def test_ctrl_c_stops_the_demo_at_once_and_leaves_nothing_running():
    ctrl_c_demo("ctrl-c")


def test_ctrl_c_stops_the_rest_when_one_of_its_processes_has_already_ended():
    def end_the_follower(conf):
        follower = running("history -c " + conf)
        assert len(follower) == 1, follower
        os.kill(int(follower[0]), signal.SIGKILL)
        time.sleep(1.5)                            # the demo's loop has reaped it
    ctrl_c_demo("ctrl-c-2", end_the_follower)
