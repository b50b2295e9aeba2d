"""A rollout decision is one transaction. The gateway is made to die (FLEDGE_TEST_CRASH_AT, a
test-only knob) at each point of the decision that takes a passing first window to the next step:
before its commit, after the commit but before the weight applies, after that but before its
webhooks are queued. Started again on the same state file, it must have recorded the step's state,
its window and its event all or none, serve the weight it recorded, keep an intact file, and
deliver a webhook for every decision recorded, those the dead process owed included."""
import json
import os
import sqlite3
import time

from harness import Gateway, LocalServer, Load, QuietHandler, mock, request, route_yaml, chat

TOKEN = "decisions-test-token-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(admin_extra="  token_env: FLEDGE_TOKEN\n")
CRASHED = 70          # the knob's exit status


class Hooks(LocalServer):
    """A webhook receiver that takes everything (200) and keeps each payload with when it came."""

    def __init__(self):
        owner = self
        self.received = []

        class Handler(QuietHandler):

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.received.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.serve(Handler)

    def by_id(self):
        """Payloads by event id: delivery is at least once, so a receiver deduplicates by it."""
        return {p["id"]: (t, p) for t, p in self.received}


def spec(hooks):
    return {"steps": [20, 50, 100], "interval": "1s", "min_requests": 20, "max_failures": 5,
            "checks": [{"metric": "error_rate", "max_increase": 0.05}],
            "webhooks": [{"url": "http://127.0.0.1:%d/hook" % hooks.port}]}


def route(gw):
    return request(gw.admin, "GET", "/api/v1/routes/chat").json()


def events(gw):
    return request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]


def canary_share(gw, n=300):
    """The share of n new users the gateway sends to the canary: the weight it really serves."""
    canary = 0
    for i in range(n):
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "share-%d-%d" % (i, time.time_ns())},
                    chat())
        assert r.status == 200, r.body
        canary += r.header("x-fledge-variant") == "canary"
    return canary / n


def store_file(gw):
    """What the state file holds, read behind the gateway's back: its integrity check and the
    windows that passed."""
    db = sqlite3.connect(os.path.join(gw.state_dir, "state.db"))
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0], \
            db.execute("SELECT count(*) FROM windows WHERE verdict = 'pass'").fetchone()[0]
    finally:
        db.close()


def wait_for_hooks(hooks, ids, timeout=10):
    deadline = time.time() + timeout
    while not ids <= set(hooks.by_id()) and time.time() < deadline:
        time.sleep(0.05)
    return hooks.by_id()


def die_at_the_first_step_and_restart(point, step_recorded):
    with Hooks() as hooks, mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=0)
        gw = Gateway(yaml, env={"FLEDGE_TOKEN": TOKEN, "FLEDGE_TEST_CRASH_AT": point + ":step"}, **WITH_TOKEN)
        with gw:
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec(hooks)).status == 200
            with Load(gw.port, threads=2):
                gw.p.wait(30)                   # its first window passes; the step decision kills it
            assert gw.p.returncode == CRASHED, gw.output()[-3000:]
            restarted_at = time.time()
            with Gateway(yaml, state_dir=gw.state_dir, env={"FLEDGE_TOKEN": TOKEN}, **WITH_TOKEN) as again:
                # the step's state and its event: both there or both absent
                r, recorded = route(again), events(again)
                kinds = [e["kind"] for e in recorded]
                if step_recorded:
                    assert kinds == ["rollout_started", "step"], kinds
                    assert r["rollout"]["step"] == 1 and r["canary_weight"] == 50, r
                else:
                    assert kinds == ["rollout_started"], kinds
                    assert r["rollout"]["step"] == 0 and r["canary_weight"] == 20, r
                assert r["rollout"]["state"] == "progressing", r
                # the window that led to the step went with it, and the file is intact
                assert store_file(again) == ("ok", 1 if step_recorded else 0)
                # a decision after the restart: held there, so the traffic below moves nothing
                assert request(again.admin, "POST", "/api/v1/routes/chat/rollout/pause", AUTH).status == 200
                # the weight served is the one recorded
                share = canary_share(again)
                assert abs(share - r["canary_weight"] / 100) < 0.1, (share, r["canary_weight"])
                # a webhook for every recorded decision, those the dead gateway owed sent after the restart
                recorded = events(again)
                assert [e["kind"] for e in recorded][-1] == "paused"
                got = wait_for_hooks(hooks, {e["id"] for e in recorded})
                for e in recorded:
                    assert e["id"] in got, (e, sorted(got))
                    when, payload = got[e["id"]]
                    assert payload["event"] == e["kind"] and payload["time_ms"] == e["time_ms"], (payload, e)
                    assert payload["route"] == "chat" and payload["detail"] == e["detail"]
                    if e["kind"] == "step":
                        assert when >= restarted_at, "the step's webhook was sent by the process that died"
                assert store_file(again)[0] == "ok"


def test_a_gateway_dying_before_the_commit_keeps_neither_the_step_nor_its_event():
    die_at_the_first_step_and_restart("before_commit", step_recorded=False)


def test_a_gateway_dying_after_the_commit_serves_the_recorded_step_after_restart():
    die_at_the_first_step_and_restart("after_commit", step_recorded=True)


def test_a_gateway_dying_after_applying_the_weight_sends_the_owed_webhook_after_restart():
    die_at_the_first_step_and_restart("after_apply", step_recorded=True)


def test_the_crash_knob_is_inert_without_its_variable_and_each_webhook_is_sent_once():
    """The same rollout without the knob steps on, and a receiver that answers 2xx gets each
    event once: delivered rows are marked, not sent again by a restart."""
    with Hooks() as hooks, mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=0)
        gw = Gateway(yaml, env={"FLEDGE_TOKEN": TOKEN}, **WITH_TOKEN)
        with gw:
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec(hooks)).status == 200
            deadline = time.time() + 20
            with Load(gw.port, threads=2):
                while route(gw)["rollout"]["step"] < 1 and time.time() < deadline:
                    time.sleep(0.1)
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/pause", AUTH).status == 200
            recorded = events(gw)
            assert [e["kind"] for e in recorded][:2] == ["rollout_started", "step"], recorded
            wait_for_hooks(hooks, {e["id"] for e in recorded})
            time.sleep(1.5)                     # the outcomes are marked on the next tick
            assert gw.stop() == 0
            with Gateway(yaml, state_dir=gw.state_dir, env={"FLEDGE_TOKEN": TOKEN}, **WITH_TOKEN):
                time.sleep(1)
                ids = [p["id"] for _, p in hooks.received]
                assert sorted(ids) == sorted(e["id"] for e in recorded), ids
