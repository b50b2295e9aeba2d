"""Judgement at low traffic, end to end: at about 5 requests a second in all, too few for any
one window to tell, a canary answering 20% errors is still rolled back, because the step's
evidence adds up window after window, and a healthy canary on the same traffic still advances.
Both run side by side, each behind its own gateway, so the test takes the time of the slower."""
import threading
import time

from harness import Gateway, Load, mock, request, route_yaml

TOKEN = "judgement-test-token-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")

# one window holds about 10 requests, 5 of them the canary's: never min_requests on its own
SPEC = {"steps": [50, 100], "interval": "2s", "min_requests": 20, "max_failures": 1,
        "checks": [{"metric": "error_rate", "max_increase": 0.05}]}


def rollout_at_low_traffic(canary_opts, outcome, timeout=120):
    """Runs one rollout at 5 requests/s; stores its last route state and events in outcome."""
    with mock(model="m-v1") as v1, mock(*canary_opts, model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port, threads=2, rate=5):
        r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC)
        assert r.status == 200, r.body
        deadline = time.time() + timeout
        state = None
        while time.time() < deadline:
            state = request(gw.admin, "GET", "/api/v1/routes/chat").json()
            if state["canary_weight"] != 50 or state["rollout"]["state"] != "progressing":
                break
            time.sleep(0.25)
        outcome["route"] = state
        outcome["events"] = request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]


def test_at_5_requests_a_second_a_20_percent_error_canary_is_rolled_back_and_a_healthy_one_advances():
    bad, good = {}, {}
    runs = [threading.Thread(target=rollout_at_low_traffic, args=(["--error-rate", 0.2, "--seed", 3], bad)),
            threading.Thread(target=rollout_at_low_traffic, args=([], good))]
    for t in runs:
        t.start()
    for t in runs:
        t.join(180)
    assert bad["route"]["rollout"]["state"] == "rolled_back" and bad["route"]["canary_weight"] == 0, bad["route"]
    last = bad["events"][-1]
    assert last["kind"] == "rolled_back" and last["detail"]["reason"] == "error_rate", last
    analysis = last["detail"]["analysis"]
    # judged on the step's accumulated requests, not on one window's
    assert analysis["evidence"]["windows"] >= 2 and analysis["evidence"]["canary_requests"] > 10, analysis["evidence"]
    check = analysis["checks"][0]
    assert check["n_canary"] == analysis["evidence"]["canary_requests"] and check["p_value"] < check["alpha"], check
    assert check["canary"] > check["stable"] + 0.05, check
    # the healthy one moved on: promoted, its step passed on evidence that it is within the bound
    assert good["route"]["rollout"]["state"] == "promoted" and good["route"]["canary_weight"] == 100, good["route"]
    passed = [e for e in good["events"] if e["kind"] == "promoted"][0]["detail"]["analysis"]
    assert passed["verdict"] == "pass" and passed["checks"][0]["p_within"] < passed["checks"][0]["beta"], passed
    # windows before the first look said what they were waiting for
    windows = [w for w in good["route"]["rollout"].get("windows", {}).values()]
    assert sum(windows) >= 2, good["route"]["rollout"]
