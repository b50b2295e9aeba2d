"""The Grafana dashboard (deploy/grafana/fledge.json) and the Prometheus alerting rules
(deploy/prometheus/alerts.yml) against the real thing: promtool accepts the rules and their unit
tests (alerts_test.yml: each alert fires, near misses do not), the dashboard
is JSON Grafana can import, and a real Prometheus scraping a real gateway, whose traffic gives every
panel and every rule something to show, answers each panel's query and each rule's expression with
data, and has every alert pending or firing with its route named."""
import json
import math
import os
import random
import subprocess
import time

from harness import ROOT, Gateway, Load, free_port, mock, request
from prom import PROMTOOL, Prometheus

DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "fledge.json")
RULES = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
FAKE_NVML = os.path.join(os.path.dirname(os.environ.get("FLEDGE", os.path.join(ROOT, "build", "fledge"))),
                         "tests", "libfake-nvml.so")
ALERTS = {"FledgeCanaryErrorRateAboveStable", "FledgeRolledBack", "FledgeBackendDown", "FledgeDataDriftHigh",
          "FledgeGPUMemoryHigh"}
# what Grafana puts in place of its variables: the test's route, and a rate window of a few scrapes
VARIABLES = {"$route": "chat", "$__rate_interval": "15s"}


def all_panels(panels):
    """Every panel, those inside collapsed rows too."""
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def dashboard_queries():
    """(panel title, PromQL with the variables substituted) for every target of the dashboard."""
    with open(DASHBOARD) as f:
        dash = json.load(f)
    queries = []
    for p in all_panels(dash["panels"]):
        for t in p.get("targets", []):
            expr = t["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, (p["title"], expr)          # a variable this test does not know
            queries.append((p["title"], expr))
    return queries


def test_promtool_accepts_the_alerting_rules():
    p = subprocess.run([PROMTOOL, "check", "rules", RULES], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0 and "SUCCESS: %d rules found" % len(ALERTS) in out, out


def test_each_alert_fires_where_it_should_and_not_just_short_of_its_bounds():
    """promtool's rule unit tests (alerts_test.yml): series written by hand, alerts expected
    with their labels and rendered annotations, and none for the near misses."""
    p = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=os.path.dirname(os.path.abspath(__file__)),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0 and "SUCCESS" in out, out


def test_the_dashboard_is_importable_json_with_unique_panel_ids_and_its_two_variables():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    panels = list(all_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), sorted(ids)
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36, dash["schemaVersion"]  # Grafana 9 or later
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    route = variables["route"]
    assert route["type"] == "query" and route["query"]["query"] == "label_values(fledge_requests_total, route)", route
    # on Grafana's 24-column grid, no two panels overlap (Grafana would move one)
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (p["title"], cells.get((x, y)))
                cells[(x, y)] = p["title"]
    # every query goes to the chosen Prometheus
    for p in panels:
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}" and p["datasource"]["uid"] == "${datasource}", p["title"]
    # the families the issue asks for are all on it
    text = " ".join(expr for _, expr in dashboard_queries())
    for family in ("fledge_requests_total", "fledge_request_duration_seconds_bucket",
                   "fledge_time_to_first_token_seconds_bucket", "fledge_tokens_total", "fledge_canary_weight",
                   "fledge_rollout_step", "fledge_analysis_windows_total", "fledge_analysis_p_value",
                   "fledge_data_nan_total", "fledge_data_empty_answers_total", "fledge_data_drift_psi",
                   "fledge_data_drift_values", "fledge_host_cpu_usage_ratio", "fledge_host_memory_bytes",
                   "fledge_process_resident_bytes", "fledge_gpu_memory_used_bytes", "fledge_gpu_memory_total_bytes",
                   "fledge_gpu_utilization_ratio", "fledge_backend_up"):
        assert family in text, family


def chat_body():
    """A chat completion, streamed one time in three (streams give the TTFT panel its data)."""
    return json.dumps({"model": "m", "stream": random.random() < 1 / 3,
                       "messages": [{"role": "user", "content": "hi"}]})


def a_value(result):
    """True when an instant query's result has at least one sample that is a number (a quantile
    over no requests is NaN: a panel with nothing to draw)."""
    return any(not math.isnan(float(s["value"][1])) for s in result)


def test_every_panel_and_every_rule_has_data_from_a_real_gateway():
    """Stable v1 and a canary v2 whose answers are 30% errors and twice as long; a rollout that
    rolls it back; a backend that refuses connections; a watched model server on a GPU with 95%
    of its memory used (the fake NVML library)."""
    t0 = time.time()
    deadline = t0 + 55
    sleeper = subprocess.Popen(["sleep", "654.32"])
    dead = free_port()
    # two canary servers: an ejected one (5 errors in a row) still leaves canary answers
    canary = ("--error-rate", 0.3, "--output-tokens-mean", 40, "--output-tokens-sd", 8)
    conf = ("resources: { interval: 1s, nvml_library: %s }\n"
            "processes:\n  - { name: model-server, cmdline: \"^sleep 654\\\\.32$\", route: chat, variant: canary }\n"
            "data: { sample: 1, refresh: 1s, window: 1m }\n"
            "routes:\n  - name: chat\n    user_key: [header:x-user-id]\n"
            "    stable: { version: v1, backends: [127.0.0.1:{v1}] }\n"
            "    canary: { version: v2, backends: [127.0.0.1:{v2a}, 127.0.0.1:{v2b}, 127.0.0.1:{dead}], weight: 0 }\n"
            "    rollout:\n      steps: [50, 100]\n      interval: 1s\n      min_requests: 20\n      max_failures: 2\n"
            "      checks:\n        - { metric: error_rate, max_increase: 0.01 }\n" % os.path.abspath(FAKE_NVML))
    env = {"FAKE_NVML_PIDS": "%d:%d" % (sleeper.pid, 4 << 30), "FAKE_NVML_MEMORY_USED_RATIO": "0.95"}
    try:
        with mock("--output-tokens-mean", 20, "--output-tokens-sd", 4, "--seed", 1, model="m-v1") as v1, \
                mock(*canary, "--seed", 2, model="m-v2") as v2a, mock(*canary, "--seed", 3, model="m-v2") as v2b, \
                Gateway(conf.replace("{v1}", str(v1.port)).replace("{v2a}", str(v2a.port))
                        .replace("{v2b}", str(v2b.port)).replace("{dead}", str(dead)), env=env) as gw, \
                Load(gw.port, threads=2, body=chat_body, rate=80), \
                Load(gw.port, threads=1, body=chat_body, rate=40, headers={"x-fledge-variant": "canary"}), \
                Prometheus(["127.0.0.1:%d" % gw.admin], rule_files=[RULES]) as prom:
            # the rollout fails on the canary's errors; forced canary requests go on after it
            while request(gw.admin, "GET", "/api/v1/routes/chat").json()["rollout"]["state"] != "rolled_back":
                assert time.time() < deadline - 30, request(gw.admin, "GET", "/api/v1/routes/chat").body
                time.sleep(0.2)
            prom.wait_targets_up(timeout=max(1, deadline - time.time()))
            # each side's count of values names its feature, once (it once printed a stale buffer:
            # feature="other", the same series three times over)
            lines = [l.rsplit(" ", 1)[0] for l in request(gw.admin, "GET", "/metrics").body.decode().splitlines()
                     if l.startswith("fledge_data_drift_values{")]
            assert len(lines) == len(set(lines)) and any('feature="output_tokens"' in l for l in lines), lines

            for title, expr in dashboard_queries():
                prom.wait_for(expr, a_value, timeout=max(1, deadline - time.time()))

            rules = prom.rules()
            assert {r["name"] for r in rules} == ALERTS, [r["name"] for r in rules]
            for r in rules:
                assert r["health"] == "ok", r
                prom.wait_for(r["query"], lambda res: len(res) > 0, timeout=max(1, deadline - time.time()))

            # Prometheus itself evaluated each rule true: pending (its `for:` has not passed yet)
            prom.wait_for("ALERTS", lambda res: {a["metric"]["alertname"] for a in res} >= ALERTS,
                          timeout=max(1, deadline - time.time()))
            alerts = prom.alerts()
            for a in alerts:
                if a["labels"]["alertname"] != "FledgeGPUMemoryHigh":
                    assert a["labels"]["route"] == "chat" and "route chat" in a["annotations"]["description"], a
            down = {a["labels"]["backend"] for a in alerts if a["labels"]["alertname"] == "FledgeBackendDown"}
            assert "127.0.0.1:%d" % dead in down, alerts
            drift = [a for a in alerts if a["labels"]["alertname"] == "FledgeDataDriftHigh"]
            assert {"output_tokens", "output_chars"} <= {a["labels"]["feature"] for a in drift}, drift
            assert all(a["labels"]["variant"] == "canary" for a in drift), drift
            gpu = [a for a in alerts if a["labels"]["alertname"] == "FledgeGPUMemoryHigh"]
            assert {a["labels"]["gpu"] for a in gpu} == {"0", "1"}, gpu
            assert time.time() - t0 < 60
    finally:
        sleeper.kill()
        sleeper.wait()
