"""The built-in dashboard: its files are in the binary and served by the admin listener at / with
content types and ETags, the API beside it is unchanged, and in a real headless Chromium it shows
both variants' live numbers of a rollout in progress (streamed answers, so TTFT too), the shadow
comparison of stable's mirrored requests with the canary's answers, aborts the rollout with the
admin token, and shows a rollout's shadow phase before its first step."""
import json
import os
import shutil
import subprocess

from harness import Gateway, Load, mock, request, route_yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
NODE_MODULES = os.environ.get("FLEDGE_NODE_MODULES", os.path.join(ROOT, "build", "node", "node_modules"))
CHROMIUM = os.environ.get("FLEDGE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.path.join(ROOT, "build", "dashboard.png")

TOKEN = "dashboard-test-token-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")
DATA = "data: { sample: 1, refresh: 1s }\n"
# a rollout that stays at its first step while the browser looks: it never has enough requests
SPEC = {"steps": [20, 50, 100], "interval": "1s", "min_requests": 1000000, "max_failures": 2,
        "checks": [{"metric": "error_rate", "max_increase": 0.01}, {"metric": "latency_p99", "max_ratio": 1.2}]}
# the same with a shadow phase that lasts longer than the test: the page shows it before the steps
SHADOW_SPEC = dict(SPEC, shadow={"duration": "1h"})
# streamed, so that both variants have a time to first token; the prompt holds markup that the page
# must show as text
STREAMED = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": "say <x-injected>hi</x-injected> & more"}]})
SHADOW = "    shadow: {percent: 100}\n"


def test_the_page_and_its_files_are_served_from_the_binary_with_types_and_etags():
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1)) as gw:
        page = request(gw.admin, "GET", "/")
        assert page.status == 200 and page.header("content-type") == "text/html; charset=utf-8", page.headers
        html = page.body.decode()
        assert '<script src="/ui/app.js"' in html and 'href="/ui/app.css"' in html
        assert "http://" not in html and "https://" not in html          # nothing from elsewhere
        assert page.header("cache-control") == "no-cache" and page.header("etag").startswith('"'), page.headers
        assert "default-src 'self'" in page.header("content-security-policy")
        js, css = request(gw.admin, "GET", "/ui/app.js"), request(gw.admin, "GET", "/ui/app.css")
        assert js.status == 200 and js.header("content-type") == "text/javascript; charset=utf-8"
        assert css.status == 200 and css.header("content-type") == "text/css; charset=utf-8"
        assert b"/api/v1/stats" in js.body and len({page.header("etag"), js.header("etag"), css.header("etag")}) == 3
        # a browser's cached copy is current while the binary is the same
        again = request(gw.admin, "GET", "/ui/app.js", {"if-none-match": js.header("etag")})
        assert again.status == 304 and again.body == b"" and again.header("etag") == js.header("etag")
        assert request(gw.admin, "GET", "/ui/app.js", {"if-none-match": '"other"'}).status == 200
        head = request(gw.admin, "HEAD", "/")
        assert head.status == 200 and head.header("content-length") == str(len(page.body))
        assert request(gw.admin, "POST", "/").status == 405
        assert request(gw.admin, "GET", "/ui/missing.js").status == 404
        # the rest of the admin listener answers as before
        assert request(gw.admin, "GET", "/health").status == 200
        assert request(gw.admin, "GET", "/metrics").header("content-type").startswith("text/plain")
        assert request(gw.admin, "GET", "/api/v1/routes").json()["routes"][0]["name"] == "chat"
        assert request(gw.admin, "GET", "/api/v1/nothing").status == 404


def test_with_a_read_token_the_page_loads_but_its_data_needs_the_token():
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1), env={"FLEDGE_READ": "read-token-0123456789abc"},
                                             admin_extra="  read_token_env: FLEDGE_READ\n") as gw:
        assert request(gw.admin, "GET", "/").status == 200
        assert request(gw.admin, "GET", "/api/v1/stats").status == 401
        ok = request(gw.admin, "GET", "/api/v1/stats", {"authorization": "Bearer read-token-0123456789abc"})
        assert ok.status == 200


def browse(url):
    node = shutil.which("node")
    assert node, "node is missing: apt-get install -y nodejs npm (scripts/install-deps.sh)"
    assert os.path.exists(CHROMIUM), "%s is missing: apt-get install -y chromium (scripts/install-deps.sh)" % CHROMIUM
    assert os.path.isdir(os.path.join(NODE_MODULES, "playwright-core")), (
        "playwright-core is missing from %s: make build/node/node_modules/openai/package.json (npm ci)" % NODE_MODULES)
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    out = subprocess.run([node, os.path.join(HERE, "node", "dashboard.js"), url, TOKEN, SCREENSHOT, json.dumps(SHADOW_SPEC)],
                         capture_output=True, text=True, timeout=90, env=dict(os.environ, NODE_PATH=NODE_MODULES))
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_in_chromium_both_variants_chart_live_and_abort_with_the_token_rolls_back():
    # stable answers 16 tokens, the canary 3: every mirrored pair disagrees
    with mock(model="m-v1") as v1, mock("--output-tokens", 3, model="m-v2") as v2, \
            Gateway(DATA + route_yaml(v1, v2, weight=0, extra=SHADOW), **WITH_TOKEN) as gw, \
            Load(gw.port, threads=2, rate=60, body=STREAMED):
        r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC)
        assert r.status == 200 and r.json()["rollout"]["state"] == "progressing", r.body
        url = "http://127.0.0.1:%d/" % gw.admin
        seen = browse(url)
        assert seen["requests"] and all(u.startswith(url) for u in seen["requests"]), seen["requests"]   # no CDN
        assert seen["console"] == [], seen["console"]
        assert seen["route"] == "chat" and "stable v1" in seen["legend"] and "canary v2" in seen["legend"], seen
        assert set(seen["points"]) == {"rps", "error_rate", "p50", "p99", "ttft", "tokens_per_s"}, seen["points"]
        for metric, p in seen["points"].items():       # a point a second, in each variant's own line
            assert p["stable"] >= 4 and p["canary"] >= 4 and p["stableLine"] > 0 and p["canaryLine"] > 0, (metric, p)
        assert seen["steps"] == ["20%", "50%", "100%"] and seen["stateBefore"] == "progressing", seen
        assert "rollout_started" in seen["events"], seen["events"]
        assert any(g.startswith("CPU") for g in seen["gauges"]) and "memory" in seen["gauges"], seen["gauges"]
        assert any(row.startswith("samples read") for row in seen["quality"]), seen["quality"]
        sh = seen["shadow"]                            # the shadow panel, beside data quality
        assert sh["beside"] and "canary v2" in sh["title"] and sh["mirroring"] == "mirroring", sh
        assert sh["meters"]["agreement"] == "0.0%" and sh["meters"]["exact_match_rate"] == "0.0%", sh["meters"]
        assert sh["meters"]["status_agreement"] == "100.0%" and sh["meters"]["text_similarity"] not in ("—", "0.0%"), sh
        counts = sh["counts"]
        assert int(counts["requests"]) >= 1 and int(counts["pairs"]) >= 1 and counts["errors"] == "0", counts
        assert counts["dropped"] == "0" and counts["latency_diff_ms"].endswith(" ms"), counts
        assert 1 <= len(sh["diffs"]) <= 3, sh["diffs"]
        for d in sh["diffs"]:                          # stable's 16 tokens against the canary's 3
            assert d["prompt"] == "say <x-injected>hi</x-injected> & more" and d["canary"] == "tok0 tok1 tok2", d
            assert d["stable"].startswith("tok0 tok1 tok2 tok3") and "tok15" in d["stable"], d
            assert d["measure"] == "0.19" and "200 / 200" in d["head"] and "similarity" in d["head"], d
        assert sh["injected"] == 0, "the prompt's markup became an element"
        assert len({d["id"] for d in sh["diffs"]}) == len(sh["diffs"]), sh["diffs"]     # pairs, each once
        assert seen["fits"], "the page is wider than a 1366-pixel screen"
        assert "enter the admin token" in seen["withoutToken"], seen["withoutToken"]
        assert seen["stateAfter"] == "rolled_back" and seen["weightAfter"] == "0%" and seen["stored"], seen
        assert seen["answer"].startswith("abort: 200"), seen["answer"]
        assert any("rolled_back by api" in e and "aborted by hand" in e for e in seen["eventsAfter"]), seen["eventsAfter"]
        # the next rollout begins with its shadow phase: a step of its own before the weighted ones
        assert seen["shadowStart"] == 200, seen
        phase = seen["shadowPhase"]
        assert phase["steps"] == [["shadow 1h", "shadow current"], ["20%", ""], ["50%", ""], ["100%", ""]], phase
        assert phase["verdict"].startswith("shadow phase:") and phase["weight"] == "0%", phase
        route = request(gw.admin, "GET", "/api/v1/routes/chat").json()      # and the API agrees
        assert route["rollout"]["state"] == "shadow" and route["canary_weight"] == 0, route
        events = request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]
        assert [e["kind"] for e in events if e["kind"] in ("rolled_back", "shadow_started")] == \
            ["rolled_back", "shadow_started"], events
        assert os.path.getsize(SCREENSHOT) > 10000
