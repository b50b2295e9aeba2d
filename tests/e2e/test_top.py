"""`fledge top`, the live terminal view, in a real terminal: tmux runs it full screen against a
gateway under load with a rollout in progress; the screen shows the route's rollout and both
variants' numbers, refreshes, and `q` quits leaving nothing running. Without a terminal it prints
plain frames."""
import os
import shutil
import subprocess
import time

from harness import FLEDGE, Gateway, Load, mock, request, route_yaml

TOKEN = "top-test-token-0123456789abcdef"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")
SPEC = {"steps": [20, 50, 100], "interval": "1s", "min_requests": 1000000,
        "checks": [{"metric": "error_rate", "max_increase": 0.05}]}


def tmux(sock, *args):
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=10)


def screen(sock):
    return tmux(sock, "capture-pane", "-p", "-t", "top").stdout


def test_top_shows_the_rollout_and_both_variants_live_and_quits_on_q():
    assert shutil.which("tmux"), "tmux is needed (scripts/install-deps.sh installs it)"
    sock = "fledge-top-%d" % os.getpid()
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port, threads=2):
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC).status == 200
        try:
            r = tmux(sock, "new-session", "-d", "-s", "top", "-x", "160", "-y", "40",
                     "%s top -a 127.0.0.1:%d" % (FLEDGE, gw.admin))
            assert r.returncode == 0, r.stderr
            deadline, text = time.time() + 10, ""
            while time.time() < deadline:
                text = screen(sock)
                rows = [l.split() for l in text.splitlines() if l.startswith("chat ")]
                if len(rows) == 3 and all(float(x[5]) > 0 for x in rows[1:]) and "waiting: " in text:
                    break                           # the status row, then the 2 variants
                time.sleep(0.3)
            assert "fledge top — 127.0.0.1:%d" % gw.admin in text and "q quits" in text, text
            status, stable, canary = rows
            assert status[4:6] == ["progressing", "1/3"], status
            assert "waiting: accumulating: " in text, text
            assert (stable[1], stable[2], canary[1], canary[2]) == ("stable", "v1", "canary", "v2"), rows
            first = text.splitlines()[0]
            time.sleep(1.5)                         # it refreshes by itself
            assert screen(sock).splitlines()[0] != first
            tmux(sock, "send-keys", "-t", "top", "q")
            deadline = time.time() + 5
            while time.time() < deadline and tmux(sock, "has-session", "-t", "top").returncode == 0:
                time.sleep(0.1)
            assert tmux(sock, "has-session", "-t", "top").returncode != 0, "fledge top did not quit on q"
        finally:
            tmux(sock, "kill-server")


def test_without_a_terminal_top_prints_plain_frames():
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1)) as gw:
        out = subprocess.run([FLEDGE, "top", "-a", "127.0.0.1:%d" % gw.admin, "--count", "2"], capture_output=True,
                             text=True, timeout=10, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out
        assert out.stdout.count("fledge top — ") == 2 and "\033[" not in out.stdout, out.stdout
        assert out.stdout.count("ROUTE ") == 4, out.stdout     # the routes' table and the variants', twice
