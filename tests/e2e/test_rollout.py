"""Progressive rollouts end to end: live traffic through the gateway to two mock versions, the
weight moving step by step while the canary is as good as stable, and rolled back to 0 when it
is not, with every decision in the event log and surviving a kill -9."""
import json
import signal
import subprocess
import time

from harness import FLEDGE, Gateway, LocalServer, Load, QuietHandler, mock, request, route_yaml, chat

TOKEN = "rollout-test-token-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")


def start(gw, spec):
    r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec)
    assert r.status == 200, r.body
    return r.json()


def route(gw):
    return request(gw.admin, "GET", "/api/v1/routes/chat").json()


def wait_state(gw, states, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = route(gw)
        if r["rollout"]["state"] in states:
            return r
        time.sleep(0.1)
    raise AssertionError("rollout did not reach %s in %ss: %s" % (states, timeout, route(gw)))


def events(gw):
    return request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]


SPEC = {"steps": [20, 50, 100], "interval": "2s", "min_requests": 40, "max_failures": 2,
        "checks": [{"metric": "error_rate", "max_increase": 0.01}, {"metric": "latency_p99", "max_ratio": 1.2}]}


def test_a_healthy_canary_is_promoted_through_every_step():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port):
        assert start(gw, SPEC)["canary_weight"] == 20
        r = wait_state(gw, ["promoted", "rolled_back"], 20)
        assert r["rollout"]["state"] == "promoted" and r["canary_weight"] == 100, r
        assert r["rollout"]["windows"]["fail"] == 0, r["rollout"]     # not even one false alarm
        kinds = [(e["kind"], e["detail"].get("to")) for e in events(gw)]
        assert kinds == [("rollout_started", 20), ("step", 50), ("promoted", 100)], kinds


def test_a_canary_with_5_percent_errors_is_rolled_back_at_its_first_two_looks():
    with mock(model="m-v1") as v1, mock("--error-rate", 0.05, "--seed", 7, model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port):
        start(gw, SPEC)
        r = wait_state(gw, ["rolled_back", "promoted"], 12)
        assert r["rollout"]["state"] == "rolled_back" and r["canary_weight"] == 0, r
        # at its first two looks: both failed, none passed; a window that only waited for traffic
        # (a busy machine's slow load) is no doubt of the verdict, so it may come between them
        assert r["rollout"]["windows"]["pass"] == 0 and r["rollout"]["windows"]["fail"] == 2, r["rollout"]["windows"]
        last = events(gw)[-1]
        assert last["kind"] == "rolled_back" and "error_rate" in last["detail"]["reason"], last
        assert last["detail"]["analysis"]["evidence"]["looks"] == 2, last["detail"]["analysis"]["evidence"]
        check = [c for c in last["detail"]["analysis"]["checks"] if c["metric"] == "error_rate"][0]
        assert check["p_value"] < 0.05 and check["canary"] > check["stable"] + 0.01, check
        # the weight really is 0: every user now gets the stable version
        for i in range(50):
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "after-%d" % i}, chat())
            assert r.header("x-fledge-variant") == "stable"
        # a new rollout starts with no analysis of its own: neither the API nor /metrics shows the last one's
        r = start(gw, dict(SPEC, interval="60s"))
        r = route(gw)
        assert r["rollout"]["state"] == "progressing" and "last_analysis" not in r["rollout"], r["rollout"]
        assert "fledge_analysis_canary_value{" not in request(gw.admin, "GET", "/metrics").body.decode()


def test_a_canary_one_and_a_half_times_slower_is_rolled_back():
    # the median is the steady witness of "slower"; p99 on a busy 2-core machine is mostly noise
    spec = dict(SPEC, checks=[{"metric": "error_rate", "max_increase": 0.01},
                              {"metric": "latency_p50", "max_ratio": 1.2}, {"metric": "latency_p99", "max_ratio": 1.2}])
    with mock("--latency-ms", 20, model="m-v1") as v1, mock("--latency-ms", 30, model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port, threads=8):
        start(gw, spec)
        r = wait_state(gw, ["rolled_back", "promoted"], 12)
        assert r["rollout"]["state"] == "rolled_back", r
        assert r["rollout"]["windows"] == {"pass": 0, "fail": 2, "inconclusive": 0}, r["rollout"]["windows"]
        assert "latency_p50" in events(gw)[-1]["detail"]["reason"]


def test_too_little_traffic_holds_the_weight():
    spec = dict(SPEC, min_requests=100000)
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port, threads=1):
        start(gw, spec)
        deadline = time.time() + 15                      # two windows pass (slower under make asan)
        while sum(route(gw)["rollout"]["windows"].values()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        r = route(gw)
        assert r["rollout"]["state"] == "progressing" and r["canary_weight"] == 20, r
        assert r["rollout"]["windows"]["inconclusive"] >= 2 and r["rollout"]["windows"]["fail"] == 0
        assert r["rollout"]["last_analysis"]["verdict"] == "inconclusive"
        # the evidence adds up, and every inconclusive window says what it waits for, in fledge status too
        assert r["rollout"]["last_analysis"]["evidence"]["windows"] >= 2, r["rollout"]["last_analysis"]
        assert r["rollout"]["last_analysis"]["reason"].startswith("accumulating: "), r["rollout"]["last_analysis"]
        out = subprocess.run([FLEDGE, "status", "-a", "127.0.0.1:%d" % gw.admin], capture_output=True, text=True,
                             timeout=10)
        assert "waiting: accumulating: " in out.stdout and "of the 100000 each needs" in out.stdout, out.stdout
        # every window is kept, newest first, with what it waited for
        w = request(gw.admin, "GET", "/api/v1/routes/chat/windows?limit=2").json()["windows"]
        assert len(w) == 2 and w[0]["id"] > w[1]["id"] and w[0]["verdict"] == "inconclusive", w
        assert w[0]["analysis"]["reason"].startswith("accumulating: ") and w[0]["time_ms"] >= w[1]["time_ms"], w
        assert request(gw.admin, "GET", "/api/v1/routes/chat/windows?limit=x").status == 400
        assert request(gw.admin, "POST", "/api/v1/routes/chat/windows", AUTH).status == 405
        # a new rollout counts its own windows, not those of the one before
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/abort", AUTH).status == 200
        r = start(gw, spec)
        assert r["rollout"]["windows"] == {"pass": 0, "fail": 0, "inconclusive": 0}, r["rollout"]


def test_kill_9_mid_rollout_resumes_at_the_same_step_and_weight():
    spec = dict(SPEC, steps=[10, 30, 60, 100], interval="3s", min_requests=1000000)
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=0)
        gw = Gateway(yaml, **WITH_TOKEN)
        with gw:
            start(gw, spec)
            assert request(gw.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 30}).status == 200
            gw.p.send_signal(signal.SIGKILL)
            gw.p.wait()
            again = Gateway(yaml, state_dir=gw.state_dir, **WITH_TOKEN)
            with again:
                r = route(again)
                assert r["canary_weight"] == 30 and r["rollout"]["state"] == "paused", r
                assert r["rollout"]["step"] == 0
                assert "restored at step 0" in again.output()
                # resuming hands the wheel back to the rollout: the step's own weight, not the hand's
                r = request(again.admin, "POST", "/api/v1/routes/chat/rollout/resume", AUTH).json()
                assert r["canary_weight"] == 10 and r["rollout"]["state"] == "progressing", r
                again.p.send_signal(signal.SIGKILL)
                again.p.wait()
            with Gateway(yaml, state_dir=gw.state_dir, **WITH_TOKEN) as third:
                r = route(third)
                assert r["canary_weight"] == 10 and r["rollout"]["state"] == "progressing" and r["rollout"]["step"] == 0, r


def test_a_restart_goes_on_spending_the_error_budget_where_it_was():
    # a bound no canary can be shown within: every look is inconclusive, and each spends a share
    spec = dict(SPEC, steps=[20, 100], interval="1s", min_requests=20,
                checks=[{"metric": "error_rate", "max_increase": 0.0001}])
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=0)
        gw = Gateway(yaml, **WITH_TOKEN)
        with gw:
            with Load(gw.port, threads=2):
                start(gw, spec)
                deadline = time.time() + 20
                looks = 0
                while looks < 2 and time.time() < deadline:
                    looks = route(gw)["rollout"].get("last_analysis", {}).get("evidence", {}).get("looks", 0)
                    time.sleep(0.2)
                assert looks >= 2, route(gw)
            gw.p.send_signal(signal.SIGKILL)
            gw.p.wait()
            with Gateway(yaml, state_dir=gw.state_dir, **WITH_TOKEN) as again, Load(again.port, threads=2):
                deadline = time.time() + 20
                r = route(again)
                while time.time() < deadline and r["rollout"].get("last_analysis", {}).get("checks", []) == []:
                    time.sleep(0.2)
                    r = route(again)
                evidence = r["rollout"]["last_analysis"]["evidence"]
                # the counters started afresh, the looks went on from where they were
                assert evidence["looks"] > looks and evidence["windows"] < 20, evidence
                assert evidence["alpha"] == r["rollout"]["last_analysis"]["checks"][0]["alpha"]


def test_operator_actions_pause_abort_and_undo():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
        start(gw, dict(SPEC, interval="60s"))
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/pause", AUTH).json()["rollout"]["state"] == "paused"
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/pause", AUTH).status == 409
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/resume", AUTH).status == 200
        r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout/promote", AUTH).json()
        assert r["canary_weight"] == 100 and r["rollout"]["state"] == "promoted"
        r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout/undo", AUTH).json()
        assert r["canary_weight"] == 0
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", {}, SPEC).status == 401
        assert [(e["actor"], e["kind"]) for e in events(gw)] == [
            ("api", "rollout_started"), ("api", "paused"), ("api", "resumed"), ("api", "promoted"), ("api", "undone")]


def test_the_cli_starts_steers_and_explains_a_rollout():
    import json as _json
    import os
    import subprocess
    from harness import FLEDGE

    def cli(*args, token=TOKEN):
        env = dict(os.environ, FLEDGE_ADMIN_TOKEN=token)
        return subprocess.run([FLEDGE, *args, "-a", "127.0.0.1:%d" % gw.admin], capture_output=True, text=True,
                              timeout=10, env=env)

    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
        out = cli("rollout", "start", "chat", "--spec", _json.dumps(dict(SPEC, interval="60s")))
        assert out.returncode == 0 and "rollout progressing, canary weight 20.00%" in out.stdout, out
        out = cli("status")
        row = [l.split() for l in out.stdout.splitlines() if l.startswith("chat")][0]
        assert row[1:6] == ["20.00", "v1", "v2", "progressing", "1/3"], row
        assert cli("rollout", "abort", "chat", token="wrong-token-0123456789").returncode == 1
        out = cli("rollout", "abort", "chat")
        assert out.returncode == 0 and "rolled_back, canary weight 0.00%" in out.stdout, out
        out = cli("history")
        lines = [l for l in out.stdout.splitlines() if " chat " in l]
        assert "rollout_started" in lines[0] and "0.00 -> 20.00" in lines[0], out.stdout
        assert "rolled_back" in lines[1] and "aborted by hand" in lines[1], out.stdout
        assert cli("rollout", "jump", "chat").returncode == 2


def test_metrics_explain_the_analysis_and_pass_promtool():
    from prom import promtool_check
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port):
        start(gw, dict(SPEC, steps=[20, 50]))
        deadline = time.time() + 10
        while route(gw)["rollout"]["windows"]["pass"] < 1 and time.time() < deadline:
            time.sleep(0.2)
        text = request(gw.admin, "GET", "/metrics").body.decode()
        ok, out = promtool_check(text)
        assert ok, out
        assert 'fledge_analysis_windows_total{route="chat",verdict="pass"}' in text
        assert 'fledge_analysis_p_value{route="chat",metric="error_rate"}' in text


ROLLOUT_YAML = ("    rollout:\n      steps: [10, 50, 100]\n      interval: 60s\n      min_requests: 50\n"
                "      checks:\n        - { metric: error_rate, max_increase: 0.01 }\n"
                "        - { metric: ttft_p95, max_ratio: 1.25 }\n")


def test_a_route_with_a_rollout_spec_starts_one_when_its_canary_version_is_new():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=0, extra=ROLLOUT_YAML)
        with Gateway(yaml, **WITH_TOKEN) as gw:
            r = route(gw)
            assert r["rollout"]["state"] == "progressing" and r["canary_weight"] == 10, r
            assert r["rollout"]["spec"]["checks"][1] == {"metric": "ttft_p95", "max_ratio": 1.25}
            gw.reload(yaml)                                  # same canary: nothing new starts
            assert [e["kind"] for e in events(gw)] == ["rollout_started"]
            gw.reload(yaml.replace("version: v2", "version: v3"))
            assert [(e["actor"], e["kind"]) for e in events(gw)] == [
                ("config", "rollout_started"), ("config", "superseded"), ("config", "rollout_started")]
            assert route(gw)["canary"]["version"] == "v3"


def test_a_bad_rollout_spec_is_a_config_error_with_its_position():
    import os
    import subprocess
    import tempfile
    from harness import FLEDGE
    bad = route_yaml(1, 2, weight=0, extra=ROLLOUT_YAML.replace("[10, 50, 100]", "[50, 10]"))
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write(bad)
    f.close()
    out = subprocess.run([FLEDGE, "check", "-c", f.name], capture_output=True, text=True)
    line = bad.splitlines().index("    rollout:") + 1
    assert out.returncode == 1 and out.stderr.startswith("%s:%d:" % (f.name, line + 1)), out.stderr
    assert "steps must be increasing" in out.stderr
    cases = [(ROLLOUT_YAML.replace("      min_requests: 50\n", "      min_requests: 50\n      max_failure: 5\n"),
              "      max_failure: 5", 'unknown key "max_failure"'),
             (ROLLOUT_YAML.replace("max_ratio: 1.25", "max_ratio: 0"), "      checks:", "max_ratio must be a number above 0")]
    for extra, at, message in cases:
        bad = route_yaml(1, 2, weight=0, extra=extra)
        with open(f.name, "w") as g:
            g.write(bad)
        out = subprocess.run([FLEDGE, "check", "-c", f.name], capture_output=True, text=True)
        line = bad.splitlines().index(at) + 1
        assert out.returncode == 1 and out.stderr.startswith("%s:%d:" % (f.name, line)), (out.stderr, line)
        assert message in out.stderr, out.stderr
    # a route keeps its spec after a promotion moved the version to stable and dropped canary:
    no_canary = route_yaml(1).rstrip("\n") + "\n" + ROLLOUT_YAML          # fine, idle until a canary comes
    with open(f.name, "w") as g:
        g.write(no_canary)
    out = subprocess.run([FLEDGE, "check", "-c", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    assert out.returncode == 0, out.stderr


class HookReceiver(LocalServer):
    """Accepts webhook POSTs; answers 500 to the first `failures` of them, 200 after."""

    def __init__(self, failures):
        owner = self
        self.failures, self.attempts, self.payloads = failures, [], []

        class Handler(QuietHandler):

            def do_POST(self):
                import json as _json
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.attempts.append(time.monotonic())
                status = 500 if len(owner.attempts) <= owner.failures else 200
                if status == 200:
                    owner.payloads.append(_json.loads(body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.serve(Handler)


def test_webhooks_arrive_with_the_event_and_are_retried_with_backoff():
    with HookReceiver(failures=2) as hook, mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
        spec = dict(SPEC, interval="60s",
                    webhooks=[{"on": ["started", "rolled_back"], "url": "http://127.0.0.1:%d/hook" % hook.port}])
        start(gw, spec)
        deadline = time.time() + 8
        while not hook.payloads and time.time() < deadline:
            time.sleep(0.05)
        assert len(hook.attempts) == 3, hook.attempts            # two 500s, then delivered
        gaps = [b - a for a, b in zip(hook.attempts, hook.attempts[1:])]
        assert 0.4 < gaps[0] < 0.9 and 0.9 < gaps[1] < 1.6, gaps  # 0.5 s, then 1 s
        p = hook.payloads[0]
        assert p["route"] == "chat" and p["event"] == "rollout_started" and p["actor"] == "api"
        assert p["detail"]["to"] == 20 and p["detail"]["canary_version"] == "v2"
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/pause", AUTH).status == 200
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/abort", AUTH).status == 200
        deadline = time.time() + 5
        while len(hook.payloads) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert [x["event"] for x in hook.payloads] == ["rollout_started", "rolled_back"]   # not "paused"
        assert hook.payloads[1]["id"] > p["id"]


def acceptance_file(cases):
    import json as _json
    import tempfile
    f = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
    for c in cases:
        f.write(_json.dumps(c) + "\n")
    f.close()
    return f.name


def chat_case(expect):
    return {"request": {"method": "POST", "path": "/v1/chat/completions",
                        "body": {"model": "x", "messages": [{"role": "user", "content": "capital of France?"}]}},
            "expect": expect}


def test_the_acceptance_set_runs_against_the_canary_before_any_user_sees_it():
    import os
    path = acceptance_file([
        chat_case({"status": 200, "json": {"object": "chat.completion", "model": "m-v2"}}),
        chat_case({"status": 200, "json": {"choices.0.finish_reason": "stop"}, "regex": "tok0", "max_latency_ms": 5000}),
        chat_case({"status": 200, "json": {"usage.completion_tokens": 16}})])
    try:
        with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
                Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
            r = start(gw, dict(SPEC, interval="60s", acceptance=path))
            assert r["rollout"]["state"] == "acceptance" and r["canary_weight"] == 0
            r = wait_state(gw, ["progressing", "rolled_back"], 10)
            assert r["rollout"]["state"] == "progressing" and r["canary_weight"] == 20, r
            ev = events(gw)
            assert [e["kind"] for e in ev] == ["acceptance_started", "acceptance_passed", "rollout_started"]
            report = ev[1]["detail"]["report"]
            assert report["cases"] == 3 and report["passed"] == 3 and report["pass_rate"] == 1, report
    finally:
        os.unlink(path)


def test_a_gateway_stopped_during_the_acceptance_set_never_lets_the_canary_skip_it():
    import os
    path = acceptance_file([chat_case({"status": 200})] * 6)
    try:
        with mock(model="m-v1") as v1, mock("--latency-ms", 700, model="m-v2") as v2:
            yaml = route_yaml(v1, v2, weight=0)
            gw = Gateway(yaml, **WITH_TOKEN)
            with gw:
                start(gw, dict(SPEC, interval="60s", acceptance=path))
                time.sleep(1.6)                          # two cases of six done
                assert gw.stop() == 0, gw.output()
                with Gateway(yaml, state_dir=gw.state_dir, **WITH_TOKEN) as again:
                    r = route(again)
                    assert r["rollout"]["state"] == "rolled_back" and r["canary_weight"] == 0, r
                    ev = [e["kind"] for e in events(again)]
                    assert "acceptance_passed" not in ev and "rollout_started" not in ev, ev
                    assert ev[-1] == "acceptance_failed", ev
    finally:
        os.unlink(path)


def test_a_set_longer_than_4096_cases_fails_rather_than_pass_on_its_first_part():
    import os
    path = acceptance_file([{"request": {"method": "GET", "path": "/v1/models"}, "expect": {"status": 200}}] * 4097)
    try:
        with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
                Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
            start(gw, dict(SPEC, interval="60s", acceptance=path))
            r = wait_state(gw, ["progressing", "rolled_back"], 30)
            assert r["rollout"]["state"] == "rolled_back", r
            report = [e for e in events(gw) if e["kind"] == "acceptance_failed"][0]["detail"]["report"]
            assert report["cases"] == 4097 and report["passed"] == 4096, {k: report[k] for k in ("cases", "passed")}
            assert "more than 4096 cases" in report["failures"][0]["why"], report["failures"]
    finally:
        os.unlink(path)


def test_a_canary_failing_its_acceptance_set_never_gets_traffic():
    import os
    path = acceptance_file([chat_case({"status": 200}), chat_case({"status": 200, "regex": "Paris"})])
    try:
        with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
                Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
            start(gw, dict(SPEC, interval="60s", acceptance=path, acceptance_min_pass=0.9))
            r = wait_state(gw, ["progressing", "rolled_back"], 10)
            assert r["rollout"]["state"] == "rolled_back" and r["canary_weight"] == 0, r
            last = events(gw)[-1]
            assert last["kind"] == "acceptance_failed"
            report = last["detail"]["report"]
            assert report["passed"] == 1 and report["failures"] == [
                {"line": 2, "why": "body does not match /Paris/"}], report
    finally:
        os.unlink(path)


def test_a_malformed_acceptance_case_fails_that_case_and_nothing_else():
    import os
    path = acceptance_file([chat_case({"status": 200, "regex": 5}), chat_case({"status": 200, "json": [1]}),
                            chat_case({"status": 200, "regex": "tok" + "+" * 30}), chat_case({"status": 200})])
    try:
        with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
                Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
            start(gw, dict(SPEC, interval="60s", acceptance=path, acceptance_min_pass=0.2))
            r = wait_state(gw, ["progressing", "rolled_back"], 10)
            assert r["rollout"]["state"] == "progressing"
            report = [e for e in events(gw) if e["kind"] == "acceptance_passed"][0]["detail"]["report"]
            assert [f["why"] for f in report["failures"]] == [
                "expect.regex must be a string", "expect.json must be an object",
                "regex too costly to compile (a repetition of a repetition)"], report   # never an OOM
            assert gw.p.poll() is None
    finally:
        os.unlink(path)


def test_an_aborted_gate_s_late_report_does_not_judge_the_next_rollout():
    import os
    failing = acceptance_file([chat_case({"status": 200, "regex": "Paris"})])
    passing = acceptance_file([chat_case({"status": 200})] * 3)
    try:
        with mock(model="m-v1") as v1, mock("--latency-ms", 1500, model="m-v2") as v2, \
                Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
            start(gw, dict(SPEC, interval="60s", acceptance=failing))
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/abort", AUTH).status == 200
            start(gw, dict(SPEC, interval="60s", acceptance=passing))
            r = wait_state(gw, ["progressing"], 15)
            report = [e for e in events(gw) if e["kind"] == "acceptance_passed"][0]["detail"]["report"]
            assert report["cases"] == 3 and r["canary_weight"] == 20
    finally:
        os.unlink(failing)
        os.unlink(passing)


def test_a_new_canary_version_ends_a_rollout_started_by_hand():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=0)
        with Gateway(yaml, **WITH_TOKEN) as gw, Load(gw.port, threads=2):
            start(gw, dict(SPEC, interval="2s"))
            gw.reload(yaml.replace("version: v2", "version: v3"))
            r = route(gw)
            assert r["rollout"]["state"] == "idle" and r["canary_weight"] == 0, r
            assert events(gw)[-1]["kind"] == "superseded"


def test_a_new_canary_version_after_a_promotion_starts_at_the_file_s_weight_not_at_100():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=5)
        with Gateway(yaml, **WITH_TOKEN) as gw:
            assert start(gw, dict(SPEC, steps=[100]))["canary_weight"] == 100
            gw.reload(yaml.replace("version: v2", "version: v3"))
            r = route(gw)
            assert r["canary_weight"] == 5 and r["rollout"]["state"] == "idle", r
            last = events(gw)[-1]
            assert last["kind"] == "superseded" and last["detail"]["to"] == 5, last
            assert start(gw, dict(SPEC, steps=[100]))["canary_weight"] == 100      # v3 promoted in turn
            gw.p.send_signal(signal.SIGKILL)
            gw.p.wait()
            with Gateway(yaml.replace("version: v2", "version: v4"), state_dir=gw.state_dir, **WITH_TOKEN) as again:
                assert route(again)["canary_weight"] == 5             # v4 came with the restart: the same


def test_a_rolled_back_canary_gets_no_users_through_its_rules_until_a_hand_sets_a_weight():
    rules = "    rules:\n      - match: { header: { x-beta: \"1\" } }\n        variant: canary\n"
    beta = {"x-beta": "1"}
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0, extra=rules), **WITH_TOKEN) as gw:
        def variant(headers):
            return request(gw.port, "POST", "/v1/chat/completions", headers, chat()).header("x-fledge-variant")
        assert variant(beta) == "canary"
        start(gw, dict(SPEC, interval="60s"))
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/abort", AUTH).status == 200
        assert [variant(beta) for _ in range(20)] == ["stable"] * 20
        assert variant({"x-fledge-variant": "canary"}) == "canary"   # a trusted override still reaches it
        assert request(gw.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 0}).status == 200
        assert variant(beta) == "canary"                             # a hand took over, even at 0
        assert route(gw)["rollout"]["state"] == "idle"


def test_a_saved_rollout_an_older_build_allowed_keeps_its_state_and_its_hold():
    import sqlite3
    rules = "    rules:\n      - match: { header: { x-beta: \"1\" } }\n        variant: canary\n"
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=0, extra=rules)
        gw = Gateway(yaml, **WITH_TOKEN)
        with gw:
            start(gw, dict(SPEC, interval="60s"))
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout/abort", AUTH).status == 200
            gw.p.send_signal(signal.SIGKILL)
            gw.p.wait()
            db = sqlite3.connect(gw.state_dir + "/state.db")  # what the older build saved: now refused
            spec = dict(SPEC, webhooks=[{"url": "http://127.0.0.1:9/h", "on": ["rollback"]}])
            db.execute("UPDATE routes SET spec_json = ? WHERE route = 'chat'", (json.dumps(spec),))
            db.commit()
            db.close()
            with Gateway(yaml, state_dir=gw.state_dir, **WITH_TOKEN) as again:
                r = route(again)
                assert r["rollout"]["state"] == "rolled_back" and r["canary_weight"] == 0, r
                assert events(again)[-1]["kind"] == "spec_invalid", events(again)[-1]
                h = request(again.port, "POST", "/v1/chat/completions", {"x-beta": "1"}, chat())
                assert h.header("x-fledge-variant") == "stable"               # still held


def test_steps_of_just_100_promote_at_once_and_unknown_actions_are_refused():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
        r = start(gw, dict(SPEC, steps=[100]))
        assert r["rollout"]["state"] == "promoted" and r["canary_weight"] == 100
        r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout/jump", AUTH)
        assert r.status == 400 and "unknown action" in r.json()["error"]["message"]
        r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, dict(SPEC, steps=[0.001, 50]))
        assert r.status == 400 and "steps" in r.json()["error"]["message"]


def test_a_full_disk_keeps_serving_with_the_new_weight_and_the_store_catches_up():
    import resource
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        gw = Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN)
        with gw:
            # no write may now go past the first byte of any file: what a full disk does to SQLite
            resource.prlimit(gw.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
            assert request(gw.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 30}).status == 200
            served = [request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i}, chat())
                      .header("x-fledge-variant") for i in range(200)]
            assert 30 <= served.count("canary") <= 90, served.count("canary")    # the new weight serves
            health = request(gw.admin, "GET", "/health").json()
            assert health["status"] == "degraded" and health["state_store"]["backlog"] >= 1, health
            assert health["state_store"]["error"], health
            metrics = request(gw.admin, "GET", "/metrics").body.decode()
            assert "fledge_state_store_backlog 0" not in metrics and "fledge_state_store_backlog " in metrics

            resource.prlimit(gw.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            deadline = time.time() + 5
            while request(gw.admin, "GET", "/health").json()["status"] != "ok":
                assert time.time() < deadline, request(gw.admin, "GET", "/health").json()
                time.sleep(0.1)
            gw.p.send_signal(signal.SIGKILL)             # nothing may depend on a clean exit now
            gw.p.wait()
            with Gateway(route_yaml(v1, v2, weight=0), state_dir=gw.state_dir, **WITH_TOKEN) as again:
                assert route(again)["canary_weight"] == 30
                kinds = [(e["kind"], e["detail"].get("to")) for e in events(again)]
                assert ("weight", 30) in kinds, kinds
