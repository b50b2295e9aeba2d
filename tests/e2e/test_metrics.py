"""What the gateway reports about each version: Prometheus metrics that match what clients saw,
LLM timings and tokens that match the model server's, windows in /api/v1/stats, a real
Prometheus scraping it all, the access log and `fledge stats`."""
import json
import os
import re
import subprocess
import tempfile
import threading
import time

from harness import FLEDGE, Gateway, mock, request, route_yaml, chat, free_port
from prom import Prometheus, promtool_check


def scrape(gw):
    r = request(gw.admin, "GET", "/metrics")
    assert r.status == 200 and r.header("content-type").startswith("text/plain"), r.headers
    return r.body.decode()


def sample(text, name, **labels):
    """The value of one sample; labels given must all match (others may be present)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0] if "{" in line else ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no sample %s%s in:\n%s" % (name, labels, text[:3000]))


def send_mix(gw, n, stream_every=3):
    """n requests from distinct users, every third one streamed; returns what the client saw."""
    seen = {"stable": 0, "canary": 0}
    streamed = {"stable": 0, "canary": 0}
    for i in range(n):
        stream = i % stream_every == 0
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "user-%d" % i}, chat(stream=stream))
        assert r.status == 200, r.body
        v = r.header("x-fledge-variant")
        seen[v] += 1
        streamed[v] += stream
    return seen, streamed


def test_requests_total_per_variant_equals_what_clients_saw():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=30)) as gw:
        seen, _ = send_mix(gw, 300)
        text = scrape(gw)
        for variant, version in (("stable", "v1"), ("canary", "v2")):
            assert sample(text, "fledge_requests_total", variant=variant, version=version, code="200") == seen[variant]
            assert sample(text, "fledge_in_flight_requests", variant=variant) == 0
        assert sample(text, "fledge_canary_weight", route="chat") == 30
        assert sample(text, "fledge_backend_up", variant="canary", backend="127.0.0.1:%d" % v2.port) == 1
        stats = request(gw.admin, "GET", "/api/v1/stats").json()
        variants = {v["variant"]: v for v in stats["routes"][0]["variants"]}
        assert variants["canary"]["totals"]["requests"] == seen["canary"]
        assert variants["stable"]["totals"]["codes"] == {"200": seen["stable"]}


def test_ttft_and_tokens_match_the_model_server():
    ttft_ms, tokens = 150, 7
    with mock("--ttft-ms", ttft_ms, "--tokens-per-s", 50, "--output-tokens", tokens, model="m-v1") as v1, \
            mock("--ttft-ms", ttft_ms, "--tokens-per-s", 50, "--output-tokens", tokens, model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=50)) as gw:
        seen, streamed = send_mix(gw, 24)
        text = scrape(gw)
        for variant in ("stable", "canary"):
            n = sample(text, "fledge_time_to_first_token_seconds_count", variant=variant)
            assert n == streamed[variant], (variant, n, streamed)
            mean = sample(text, "fledge_time_to_first_token_seconds_sum", variant=variant) / n
            assert abs(mean - ttft_ms / 1000) < 0.010, mean
            # 50 tokens/s: 20 ms between tokens, 6 gaps per stream
            assert sample(text, "fledge_inter_token_latency_seconds_count", variant=variant) == 6 * n
            buffered = seen[variant] - streamed[variant]
            # the mock's prompt is 3 words; usage only comes with buffered answers, streams count deltas
            assert sample(text, "fledge_tokens_total", variant=variant, type="prompt") == 3 * buffered
            assert sample(text, "fledge_tokens_total", variant=variant, type="completion") == tokens * seen[variant]
            assert sample(text, "fledge_finish_reason_total", variant=variant, reason="stop") == seen[variant]
            assert sample(text, "fledge_streams_total", variant=variant) == streamed[variant]
            assert sample(text, "fledge_streams_cut_total", variant=variant) == 0
        time.sleep(1.2)                 # one more per-second snapshot for the windows
        stats = request(gw.admin, "GET", "/api/v1/stats").json()
        for v in stats["routes"][0]["variants"]:
            w = v["windows"]["1m"]
            assert abs(w["ttft_ms"]["p50"] - ttft_ms) < 10, w
            assert w["requests"] == seen[v["variant"]], w
            assert w["completion_tokens"] == tokens * seen[v["variant"]]


def test_exposition_passes_promtool_and_every_family_has_help_and_type():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=50)) as gw:
        send_mix(gw, 20)
        text = scrape(gw)
        ok, out = promtool_check(text)
        assert ok, out
        for name in ("fledge_requests_total", "fledge_upstream_errors_total", "fledge_request_duration_seconds",
                     "fledge_time_to_first_byte_seconds", "fledge_time_to_first_token_seconds",
                     "fledge_inter_token_latency_seconds", "fledge_tokens_total", "fledge_finish_reason_total",
                     "fledge_in_flight_requests", "fledge_canary_weight", "fledge_backend_up"):
            assert "# HELP %s " % name in text and "# TYPE %s " % name in text, name


def test_a_real_prometheus_reads_per_variant_request_rates():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=40)) as gw, \
            Prometheus(["127.0.0.1:%d" % gw.admin]) as prom:
        prom.wait_targets_up()
        seen = {"stable": 0, "canary": 0}
        stop = time.time() + 9

        def load():
            i = 0
            while time.time() < stop:
                r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "p%d" % i}, chat())
                seen[r.header("x-fledge-variant")] += 1
                i += 1
                time.sleep(0.01)
        t = threading.Thread(target=load)
        t.start()
        rates = prom.wait_for('sum by (variant) (rate(fledge_requests_total{route="chat"}[5s]))',
                              lambda r: len(r) == 2 and all(float(x["value"][1]) > 0 for x in r))
        t.join()
        assert {x["metric"]["variant"] for x in rates} == {"stable", "canary"}
        totals = prom.wait_for('sum by (variant) (fledge_requests_total{route="chat"})',
                               lambda r: {x["metric"]["variant"]: float(x["value"][1]) for x in r} ==
                               {k: float(v) for k, v in seen.items()})
        assert totals


def test_upstream_failures_are_counted_by_kind_and_backend():
    dead = free_port()
    with mock(model="m-v1") as v1:
        yaml = ("routes:\n  - name: chat\n    stable: { version: v1, backends: [127.0.0.1:%d, 127.0.0.1:%d] }\n"
                % (dead, v1.port))
        with Gateway(yaml) as gw:
            for _ in range(6):
                assert request(gw.port, "POST", "/v1/chat/completions", {}, chat()).status == 200
            text = scrape(gw)
            refused = sample(text, "fledge_upstream_errors_total", backend="127.0.0.1:%d" % dead, kind="connect_refused")
            assert refused >= 1
            assert sample(text, "fledge_retries_total", variant="stable") == refused
            assert sample(text, "fledge_upstream_errors_total", backend="127.0.0.1:%d" % v1.port,
                          kind="connect_refused") == 0


def test_access_log_has_one_json_line_per_request():
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
    try:
        with mock("--ttft-ms", 30, "--output-tokens", 5, model="m-v1") as v1, \
                Gateway("access_log: %s\n" % log + route_yaml(v1)) as gw:
            ids = []
            for i in range(10):
                r = request(gw.port, "POST", "/v1/chat/completions", {"x-request-id": "req-%d" % i}, chat(stream=i % 2 == 0))
                ids.append(r.header("x-request-id"))
            deadline = time.time() + 3
            lines = []
            while time.time() < deadline and len(lines) < 10:
                with open(log) as f:
                    lines = [json.loads(l) for l in f if l.strip()]
                time.sleep(0.05)
        # workers log through their own rings: lines of different workers may interleave
        lines.sort(key=lambda l: ids.index(l["request_id"]))
        assert [l["request_id"] for l in lines] == ids
        for i, l in enumerate(lines):
            assert l["route"] == "chat" and l["variant"] == "stable" and l["version"] == "v1" and l["status"] == 200
            assert l["backend"] == "127.0.0.1:%d" % v1.port and l["completion_tokens"] == 5
            assert (l["ttft_ms"] is not None) == (i % 2 == 0) and l["duration_ms"] > 0
    finally:
        os.unlink(log)


def test_every_answer_carries_the_gateway_overhead():
    with mock("--latency-ms", 50, model="m-v1") as v1, Gateway(route_yaml(v1)) as gw:
        r = request(gw.port, "POST", "/v1/chat/completions", {}, chat())
        overhead = float(r.header("x-fledge-overhead-ms"))
        assert 0 <= overhead < 20, overhead       # the backend's 50 ms are not the gateway's
        r = request(gw.port, "GET", "/nowhere/", {})
        assert r.header("x-fledge-overhead-ms") is not None


def test_fledge_stats_prints_a_line_per_variant():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=25)) as gw:
        seen, _ = send_mix(gw, 40)
        time.sleep(1.2)
        out = subprocess.run([FLEDGE, "stats", "--admin", "127.0.0.1:%d" % gw.admin], capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        rows = {l.split()[1]: l.split() for l in out.stdout.splitlines() if l.startswith("chat ")}
        assert set(rows) == {"stable", "canary"}
        assert rows["canary"][2] == "v2" and float(rows["canary"][3]) == 25        # the configured weight,
        share = 100.0 * seen["canary"] / (seen["canary"] + seen["stable"])       # and the share observed
        assert abs(float(rows["canary"][4]) - share) < 0.01 and abs(float(rows["stable"][4]) - (100 - share)) < 0.01, rows
        assert int(rows["canary"][-1]) == seen["canary"] and int(rows["stable"][-1]) == seen["stable"]
        out = subprocess.run([FLEDGE, "stats", "--admin", "127.0.0.1:%d" % free_port()], capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 1 and "cannot connect" in out.stderr


def test_an_access_log_that_cannot_be_written_is_said_once_and_counted():
    with mock(model="m-v1") as v1, Gateway("access_log: /dev/full\n" + route_yaml(v1)) as gw:
        for _ in range(5):
            assert request(gw.port, "POST", "/v1/chat/completions", {}, chat()).status == 200
            time.sleep(0.05)                             # separate flushes
        time.sleep(0.2)
        text = scrape(gw)
        errors = [float(l.split()[1]) for l in text.splitlines() if l.startswith("fledge_access_log_write_errors_total ")]
        assert errors and errors[0] >= 1, errors
        assert "fledge_access_log_dropped_total 0" in text
        assert gw.output().count("access log: writes failing") == 1, gw.output()


def test_metrics_can_be_switched_off_and_the_access_log_still_has_every_request():
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
    try:
        with mock(model="m-v1") as v1, Gateway("metrics: false\naccess_log: %s\n" % log + route_yaml(v1)) as gw:
            for _ in range(3):
                assert request(gw.port, "POST", "/v1/chat/completions", {}, chat()).status == 200
            text = scrape(gw)
            assert "fledge_requests_total{" not in text
            ok, out = promtool_check(text)
            assert ok, out
            deadline, lines = time.time() + 3, []
            while time.time() < deadline and len(lines) < 3:
                with open(log) as f:
                    lines = [json.loads(l) for l in f if l.strip()]
                time.sleep(0.05)
            assert [l["status"] for l in lines] == [200, 200, 200], lines
    finally:
        os.unlink(log)
