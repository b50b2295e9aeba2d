"""Shadow traffic (issue 18): with `shadow:` on a route, a copy of stable's requests also goes to
the canary. The client only ever gets stable's answer, never later for it; the mirror is counted
apart (fledge_shadow_*), its answer compared with stable's, and disagreeing pairs kept to read."""
import concurrent.futures
import json
import os
import re
import subprocess
import tempfile
import time

from harness import FLEDGE, CaptureBackend, Gateway, Load, chat, mock, request, route_yaml, wait_for


def metrics_text(gw):
    return request(gw.admin, "GET", "/metrics").body.decode()


def total(text, name, **labels):
    """The sum of a family's samples whose labels include those given (0 when none)."""
    n = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            n += float(line.rsplit(" ", 1)[1])
    return n


def canary_stats(gw):
    stats = request(gw.admin, "GET", "/api/v1/stats").json()
    return {v["variant"]: v for v in stats["routes"][0]["variants"]}


def shadow_of(gw):
    return canary_stats(gw)["canary"].get("shadow")


def shadow_yaml(stable, canary, shadow="{percent: 100}", weight=0, rollout=""):
    return route_yaml(stable, canary, weight=weight, extra="    shadow: %s\n%s" % (shadow, rollout))


def test_every_request_reaches_both_versions_and_the_client_sees_only_stable():
    with mock(model="stable-model") as stable, CaptureBackend(b'{"choices":[{"message":{"content":"other"}}]}') as canary:
        with Gateway(shadow_yaml(stable, canary)) as gw:
            n = 30
            for i in range(n):
                r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i}, chat())
                assert r.status == 200 and r.header("x-fledge-variant") == "stable", (r.status, r.headers)
                assert r.json()["model"] == "stable-model" and r.header("x-mock-port") == str(stable.port)
            wait_for("every mirror answered", lambda: len(canary.requests) == n, 5)
            assert all(h.get("x-fledge-shadow") == "1" for h in canary.requests), canary.requests[0]
            assert all(json.loads(b)["messages"][0]["content"] == "hello there model" for b in canary.bodies)
            text = wait_for("the mirrors counted", lambda: (lambda t: total(t, "fledge_shadow_requests_total") == n and t)(
                metrics_text(gw)), 5)
            assert total(text, "fledge_shadow_requests_total", variant="canary", version="v2", code="200") == n
            # the canary served no user: none of the mirrors counts as its traffic
            assert total(text, "fledge_requests_total", variant="canary") == 0
            assert total(text, "fledge_requests_total", variant="stable", code="200") == n
            assert total(text, "fledge_shadow_dropped_total") == 0 and total(text, "fledge_shadow_errors_total") == 0
            sh = wait_for("the pairs compared", lambda: (lambda s: s and s["comparison"]["pairs"] == n and s)(shadow_of(gw)), 5)
            assert sh["requests"] == n and sh["answered"] == n and sh["errors"] == 0, sh
            assert canary_stats(gw)["canary"]["totals"]["requests"] == 0


def test_a_slow_canary_leaves_the_client_s_latency_alone():
    with mock() as stable, mock("--latency-ms", 1000) as slow:
        with Gateway(shadow_yaml(stable, slow)) as gw:
            took = []
            for i in range(10):
                t0 = time.monotonic()
                r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i}, chat())
                took.append(time.monotonic() - t0)
                assert r.status == 200 and r.header("x-fledge-variant") == "stable"
            assert max(took) < 0.5, took          # the mirror takes a second; nobody waited for it
            wait_for("the slow mirrors answered", lambda: total(metrics_text(gw), "fledge_shadow_requests_total") == 10, 15)
            text = metrics_text(gw)
            mean = (total(text, "fledge_shadow_duration_seconds_sum") / total(text, "fledge_shadow_duration_seconds_count"))
            assert mean >= 1.0, mean
            sh = wait_for("pairs", lambda: (lambda s: s and s["comparison"]["pairs"] == 10 and s)(shadow_of(gw)), 5)
            assert sh["comparison"]["latency_diff_ms"] >= 900, sh


def test_a_streamed_answer_is_compared_once_both_streams_ended_and_the_mirror_is_never_relayed():
    with mock("--tokens-per-s", 200) as stable, mock("--tokens-per-s", 50, "--ttft-ms", 100) as canary:
        with Gateway(shadow_yaml(stable, canary)) as gw:
            for i in range(5):
                r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "s%d" % i}, chat(stream=True))
                assert r.status == 200 and r.header("x-mock-port") == str(stable.port)
                assert r.body.count(b"data: [DONE]") == 1, r.body[-200:]
            sh = wait_for("stream pairs", lambda: (lambda s: s and s["comparison"]["pairs"] == 5 and s)(shadow_of(gw)), 10)
            c = sh["comparison"]
            assert c["agreement"] == 1 and c["exact_match_rate"] == 1, c   # same text, differently timed
            assert c["ttft_diff_ms"] > 50, c
            text = metrics_text(gw)
            assert total(text, "fledge_shadow_time_to_first_token_seconds_count") == 5
            assert total(text, "fledge_shadow_tokens_total", type="completion") == 5 * 16


def test_an_identical_canary_agrees_and_a_different_one_lowers_agreement_with_diffs_to_read():
    with mock() as stable, mock() as same, mock("--output-tokens", 3) as shorter:
        with Gateway(shadow_yaml(stable, same)) as gw:
            for i in range(20):
                request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i}, chat())
            sh = wait_for("pairs", lambda: (lambda s: s and s["comparison"]["pairs"] == 20 and s)(shadow_of(gw)), 5)
            assert sh["comparison"]["agreement"] == 1.0 and sh["comparison"]["text_similarity"] == 1.0, sh
            assert request(gw.admin, "GET", "/api/v1/routes/chat/shadow/diffs").json()["diffs"] == []
            gw.reload(shadow_yaml(stable, shorter).replace("version: v2", "version: v3"))
            for i in range(20):
                request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i}, chat())
            sh = wait_for("pairs of v3", lambda: (lambda s: s and s["comparison"]["pairs"] == 20 and s)(shadow_of(gw)), 5)
            c = sh["comparison"]
            assert c["agreement"] == 0 and c["exact_match_rate"] == 0, c
            assert abs(c["text_similarity"] - 3 / 16) < 1e-9 and abs(c["length_ratio"] - 15 / 87) < 0.05, c
            text = metrics_text(gw)
            assert total(text, "fledge_shadow_comparison", version="v3", measure="agreement") == 0
            assert total(text, "fledge_shadow_pairs_total", version="v3") == 20
            diffs = request(gw.admin, "GET", "/api/v1/routes/chat/shadow/diffs").json()
            assert diffs["version"] == "v3" and len(diffs["diffs"]) == 20, diffs
            d = diffs["diffs"][0]
            assert d["primary"].startswith("tok0 tok1 tok2 tok3") and d["shadow"].strip() == "tok0 tok1 tok2", d
            assert d["prompt"] == "hello there model" and d["request_id"], d


def test_mirrors_over_max_in_flight_are_dropped_and_counted_and_memory_stays_flat():
    def rss_kib(pid):
        with open("/proc/%d/status" % pid) as f:
            return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

    def burst(gw, n):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: request(gw.port, "POST", "/v1/chat/completions",
                                                    {"x-user-id": "u%d" % i}, chat()).status, range(n)))
        assert codes == [200] * n

    with mock() as stable, mock("--latency-ms", 30000) as stuck:
        with Gateway(shadow_yaml(stable, stuck, "{percent: 100, max_in_flight: 4, timeout: 60s}"), workers=2) as gw:
            burst(gw, 300)
            before = rss_kib(gw.pid)
            burst(gw, 3000)
            after = rss_kib(gw.pid)
            text = metrics_text(gw)
            assert total(text, "fledge_shadow_in_flight") == 4, text[-2000:]
            assert total(text, "fledge_shadow_dropped_total", reason="max_in_flight") == 3300 - 4
            if "ASAN_OPTIONS" not in os.environ:    # the sanitizers' quarantine holds what was freed
                assert after - before < 4096, (before, after)   # KiB: nothing is kept per dropped mirror


def test_only_the_listed_methods_and_the_chosen_share_of_users_are_mirrored():
    with mock() as stable, CaptureBackend() as canary:
        with Gateway(shadow_yaml(stable, canary, "{percent: 25, methods: [POST]}")) as gw:
            for i in range(400):
                request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "user-%d" % i}, chat())
            request(gw.port, "GET", "/v1/models", {"x-user-id": "user-1"})
            wait_for("mirrors", lambda: total(metrics_text(gw), "fledge_shadow_requests_total") == len(canary.requests), 5)
            mirrored = {json.loads(b)["messages"][0]["content"] for b in canary.bodies}
            assert mirrored == {"hello there model"} and all(h.get("x-fledge-shadow") for h in canary.requests)
            assert 60 <= len(canary.requests) <= 140, len(canary.requests)      # ~25% of 400 users
            # the same users each time: sticky, like the weight
            first = len(canary.requests)
            for i in range(400):
                request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "user-%d" % i}, chat())
            wait_for("the second round", lambda: len(canary.requests) == 2 * first, 5)


def test_a_shadow_section_is_checked_at_its_line():
    cases = [   # the line after the route's six, at the value (or key) at fault
        ("    shadow: {percent: 150}\n", "150", "percent must be between 0 and 100"),
        ("    shadow: {methods: [GET, CONNECT]}\n", "CONNECT", "shadow.methods: \"CONNECT\""),
        ("    shadow: {max_in_flight: 200000}\n", "200000", "shadow.max_in_flight must be from 1 to 100000"),
        ("    shadow: {timeout: 5ms}\n", "5ms", "shadow.timeout must be from 100ms to 1h"),
        ("    shadow: {sample: 3}\n", "sample", "sample"),
    ]
    for extra, token, words in cases:
        at = "7:%d" % (extra.index(token) + 1)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(route_yaml(9001, 9002, extra=extra))
            f.flush()
            r = subprocess.run([FLEDGE, "check", "-c", f.name], capture_output=True, text=True, timeout=10)
            assert r.returncode != 0 and ("%s:%s:" % (f.name, at)) in r.stderr and words in r.stderr, (extra, r.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(route_yaml(9001, extra="    shadow: {percent: 10}\n"))
        f.flush()
        r = subprocess.run([FLEDGE, "check", "-c", f.name], capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "no canary to mirror to" in r.stderr, r.stderr


TOKEN = "shadow-test-token-0123456789"
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")
PHASE = {"steps": [50, 100], "interval": "1s", "min_requests": 30, "checks": [{"metric": "error_rate", "max_increase": 0.5}],
         "shadow": {"duration": "2s", "checks": [{"metric": "shadow_agreement", "min": 0.9},
                                                 {"metric": "shadow_error_rate", "max_increase": 0.01}]}}


def start_phase(gw):
    r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", {"authorization": "Bearer " + TOKEN}, PHASE)
    assert r.status == 200 and r.json()["canary_weight"] == 0, r.body
    return request(gw.admin, "GET", "/api/v1/routes/chat").json()


def rollout_state(gw):
    return request(gw.admin, "GET", "/api/v1/routes/chat").json()["rollout"]["state"]


def event_kinds(gw):
    return [e["kind"] for e in request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]]


def test_an_identical_canary_passes_its_shadow_phase_and_goes_on_to_its_first_step():
    with mock(model="m") as v1, mock(model="m") as v2, Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
        with Load(gw.port, threads=2, rate=60):
            assert start_phase(gw)["rollout"]["state"] == "shadow"
            # in the phase no user reaches the canary, whatever the rules; every stable request is mirrored
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u1"}, chat())
            assert r.header("x-fledge-variant") == "stable" and r.header("x-mock-port") == str(v1.port)
            wait_for("the shadow phase passed", lambda: rollout_state(gw) != "shadow", 15)
            st = request(gw.admin, "GET", "/api/v1/routes/chat").json()
            assert st["rollout"]["state"] == "progressing" and st["canary_weight"] == 50, st
        kinds = event_kinds(gw)
        assert kinds[:3] == ["shadow_started", "shadow_passed", "rollout_started"], kinds
        passed = [e for e in request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]
                  if e["kind"] == "shadow_passed"][0]["detail"]["report"]
        assert passed["pairs"] >= 30 and all(c["passed"] for c in passed["checks"]), passed
        # once past the phase, mirroring stops: the route has no shadow section of its own
        sent = total(metrics_text(gw), "fledge_shadow_requests_total")
        for i in range(10):
            request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "late%d" % i, "x-fledge-variant": "stable"}, chat())
        time.sleep(0.3)
        assert total(metrics_text(gw), "fledge_shadow_requests_total") == sent


def test_a_canary_that_answers_differently_fails_its_shadow_phase_and_is_rolled_back():
    with mock(model="m") as v1, mock("--output-tokens", 3, model="m") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port, threads=2, rate=60):
        start_phase(gw)
        wait_for("the shadow phase ended", lambda: rollout_state(gw) != "shadow", 15)
        st = request(gw.admin, "GET", "/api/v1/routes/chat").json()
        assert st["rollout"]["state"] == "rolled_back" and st["canary_weight"] == 0, st
        failed = [e for e in request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]
                  if e["kind"] == "shadow_failed"]
        assert failed and "shadow_agreement 0.000 below 0.900" in failed[0]["detail"]["reason"], failed
        assert "rollout_started" not in event_kinds(gw)      # no user ever saw it


def test_a_shadow_phase_in_a_spec_is_checked():
    with mock() as v1, mock() as v2, Gateway(route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw:
        for spec, words in [({"shadow": {"duration": "2s", "checks": [{"metric": "error_rate", "max": 0.1}]}},
                             "shadow.checks take the shadow_* metrics only"),
                            ({"checks": [{"metric": "shadow_agreement", "min": 0.9}]}, "goes in shadow.checks"),
                            ({"shadow": {"checks": []}}, "shadow.duration must be 1s..24h"),
                            ({"shadow": {"duration": "1m", "checks": [{"metric": "shadow_agreement", "max": 1}]}},
                             "shadow_error_rate takes max_increase or max, the other shadow checks min")]:
            r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", {"authorization": "Bearer " + TOKEN}, spec)
            assert r.status == 400 and words in r.body.decode(), (spec, r.status, r.body)
