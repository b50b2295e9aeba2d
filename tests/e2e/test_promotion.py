"""A promotion that finishes: the canary's version becomes the stable one — in the answers'
headers, in the metrics and in the state store, so a kill -9 and a restart on the same file keep
it — while the file still names it the canary; `fledge status` says how to make the file match,
`undo` brings the old stable back, and a file edited to name it stable moves nothing."""
import os
import re
import signal
import subprocess
import time

from harness import FLEDGE, Gateway, mock, request, route_yaml, chat

TOKEN = "promotion-test-token-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")
SPEC = {"steps": [20, 50, 100], "interval": "60s", "min_requests": 40,
        "checks": [{"metric": "error_rate", "max_increase": 0.05}]}


def served(gw, n=40):
    """(variant, version, model that answered) of n requests from distinct users, as a set."""
    seen = set()
    for i in range(n):
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "user-%d" % i}, chat())
        assert r.status == 200, r.body
        seen.add((r.header("x-fledge-variant"), r.header("x-fledge-version"), r.header("x-mock-model")))
    return seen


def wait_served(gw, want, timeout=5):
    deadline = time.time() + timeout
    while True:
        got = served(gw)
        if got == want or time.time() > deadline:
            return got
        time.sleep(0.05)


def requests_of(gw, variant, version):
    text = request(gw.admin, "GET", "/metrics").body.decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("fledge_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("route") == "chat" and labels.get("variant") == variant and labels.get("version") == version:
                total += float(line.rsplit(" ", 1)[1])
    return total


def status(gw):
    out = subprocess.run([FLEDGE, "status", "-a", "127.0.0.1:%d" % gw.admin], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out
    return out.stdout


def test_a_promoted_canary_becomes_stable_survives_a_kill_9_and_undo_brings_the_old_one_back():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=0)
        gw = Gateway(yaml, **WITH_TOKEN)
        with gw:
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC).status == 200
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/promote", AUTH).status == 200
            # every answer now comes from v2, and says it is the stable version
            assert wait_served(gw, {("stable", "v2", "m-v2")}) == {("stable", "v2", "m-v2")}
            assert requests_of(gw, "stable", "v2") >= 40
            r = request(gw.admin, "GET", "/api/v1/routes/chat").json()
            assert r["stable"]["version"] == "v2" and r["rollout"]["state"] == "promoted", r
            promotion = r["rollout"]["promotion"]
            assert promotion["stable_version"] == "v2" and promotion["previous_stable"] == "v1", promotion
            assert promotion["file_differs"] is True and "make v2" in promotion["to_match_the_file"], promotion
            out = status(gw)
            assert "v2 serves as stable, over v1 in the config file: to make the file match" in out
            row = [l.split() for l in out.splitlines() if l.startswith("chat ")][0]
            assert row[2] == "v2" and row[4:7] == ["promoted", "-", "0/0/0"], row     # no "step 1/3" once ended
            promoted = [e for e in request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]
                        if e["kind"] == "promoted"][0]
            assert promoted["detail"]["stable_version"] == "v2", promoted
            gw.p.send_signal(signal.SIGKILL)
            gw.p.wait()
            # a restart on the same file and state: v2 is stable from the first request on
            again = Gateway(yaml, state_dir=gw.state_dir, **WITH_TOKEN)
            with again:
                assert served(again, 20) == {("stable", "v2", "m-v2")}
                assert requests_of(again, "stable", "v2") == 20 and requests_of(again, "canary", "v2") == 0
                # undo: v1 is stable again at once, and the canary v2 gets nothing
                r = request(again.admin, "POST", "/api/v1/routes/chat/rollout/undo", AUTH)
                assert r.status == 200, r.body
                assert wait_served(again, {("stable", "v1", "m-v1")}) == {("stable", "v1", "m-v1")}
                r = request(again.admin, "GET", "/api/v1/routes/chat").json()
                assert r["canary_weight"] == 0 and r["canary"]["version"] == "v2" and "promotion" not in r["rollout"], r
                again.p.send_signal(signal.SIGKILL)
                again.p.wait()
            with Gateway(yaml, state_dir=gw.state_dir, **WITH_TOKEN) as third:
                assert served(third, 20) == {("stable", "v1", "m-v1")}


def test_after_a_promotion_a_file_naming_the_new_version_stable_moves_nothing():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, dict(SPEC, steps=[100])).status == 200
        assert wait_served(gw, {("stable", "v2", "m-v2")}) == {("stable", "v2", "m-v2")}
        # the operator makes the file match: v2 as the stable section, no canary
        gw.reload(route_yaml(v2).replace("version: v1", "version: v2"))
        assert served(gw) == {("stable", "v2", "m-v2")}
        r = request(gw.admin, "GET", "/api/v1/routes/chat").json()
        assert "promotion" not in r["rollout"], r
        kinds = [e["kind"] for e in request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]]
        assert kinds == ["rollout_started"], kinds           # nothing superseded, nothing moved
        assert "names v2 stable now" in gw.output()
        assert "v2 serves as stable" not in status(gw)
