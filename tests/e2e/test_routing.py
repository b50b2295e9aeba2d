"""Which variant serves a request: the sticky weighted split, rules, the override header, the
json user key, model rewriting, reload by SIGHUP and the headers the gateway adds."""
import http.client
import signal
import time

from harness import CaptureBackend, Gateway, mock, request, route_yaml, chat


def variant_of(gw, user, conn=None):
    r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": user}, chat(), conn=conn)
    assert r.status == 200, (r.status, r.body)
    v = r.header("x-fledge-variant")
    # the variant header must agree with the backend that really answered
    assert r.header("x-mock-model") == {"stable": "m-v1", "canary": "m-v2"}[v], r.headers
    return v


def test_weight_20_sends_20_percent_of_5000_distinct_users_to_the_canary():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=20)) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        canary = sum(variant_of(gw, "user-%d" % i, conn) == "canary" for i in range(5000))
        conn.close()
        assert 900 <= canary <= 1100, canary        # 20% ± 2% of 5000


def test_a_user_stays_on_the_same_variant_on_every_request_and_connection():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=50)) as gw:
        first = {u: variant_of(gw, u) for u in ("alice", "bob", "carol", "dave", "erin", "frank")}
        for _ in range(5):
            assert {u: variant_of(gw, u) for u in first} == first


def test_assignment_survives_a_restart():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=30)
        with Gateway(yaml) as gw:
            before = [variant_of(gw, "u%d" % i) for i in range(200)]
        with Gateway(yaml) as gw:
            assert [variant_of(gw, "u%d" % i) for i in range(200)] == before


def test_header_rule_sends_x_version_v2_to_the_canary_at_weight_0():
    rules = "    rules:\n      - match: { header: { x-version: v2 } }\n        variant: canary\n"
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=0, extra=rules)) as gw:
        for i in range(20):
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i, "x-version": "v2"}, chat())
            assert r.header("x-fledge-variant") == "canary" and r.header("x-fledge-version") == "v2"
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i}, chat())
            assert r.header("x-fledge-variant") == "stable" and r.header("x-fledge-version") == "v1"


def test_cookie_and_query_rules():
    rules = ("    rules:\n      - match: { cookie: { beta: \"1\" } }\n        variant: canary\n"
             "      - match: { query: { v: \"2\" } }\n        variant: canary\n")
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=0, extra=rules)) as gw:
        r = request(gw.port, "POST", "/v1/chat/completions", {"cookie": "x=y; beta=1"}, chat())
        assert r.header("x-fledge-variant") == "canary"
        r = request(gw.port, "POST", "/v1/chat/completions?v=2", {}, chat())
        assert r.header("x-fledge-variant") == "canary"
        r = request(gw.port, "POST", "/v1/chat/completions?v=3", {"cookie": "beta=0"}, chat())
        assert r.header("x-fledge-variant") == "stable"


def test_trusted_client_can_force_a_variant_with_the_override_header():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=0)) as gw:
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-fledge-variant": "canary"}, chat())
        assert r.header("x-fledge-variant") == "canary" and r.header("x-mock-model") == "m-v2"


def test_override_header_from_an_untrusted_client_is_ignored_and_not_forwarded():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = "trusted_cidrs: [10.0.0.0/8]\n" + route_yaml(v1, v2, weight=0)
        with Gateway(yaml) as gw:
            for i in range(20):
                r = request(gw.port, "POST", "/v1/chat/completions",
                            {"x-fledge-variant": "canary", "x-user-id": "u%d" % i}, chat())
                assert r.header("x-fledge-variant") == "stable", r.headers


def test_json_user_field_is_the_sticky_key_when_no_header_carries_one():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=50, user_key="[header:x-user-id, json:user, ip]")
        with Gateway(yaml) as gw:
            seen = {}
            for i in range(40):
                user = "json-user-%d" % (i % 10)
                r = request(gw.port, "POST", "/v1/chat/completions", {}, chat(user=user))
                assert r.status == 200
                assert r.header("x-mock-saw-user") == user      # the body arrived intact
                seen.setdefault(user, set()).add(r.header("x-fledge-variant"))
            assert all(len(v) == 1 for v in seen.values()), seen
            assert {v.pop() for v in seen.values()} == {"stable", "canary"}   # both used: the key varied


def test_each_variant_can_rewrite_the_model_name():
    extra_stable = "    stable: { version: v1, model: llama-3-8b, backends: [127.0.0.1:%d] }\n"
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = ("routes:\n  - name: chat\n    user_key: [header:x-user-id]\n" + extra_stable % v1.port +
                "    canary: { version: v2, model: llama-3.1-8b, backends: [127.0.0.1:%d], weight: 0 }\n" % v2.port)
        with Gateway(yaml) as gw:
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "a"}, chat(model="whatever"))
            assert r.status == 200 and r.header("x-mock-saw-model") == "llama-3-8b"
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-fledge-variant": "canary"}, chat(model="x"))
            assert r.header("x-mock-saw-model") == "llama-3.1-8b"
            assert int(r.header("x-mock-body-bytes")) == len(
                '{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hello there model"}], "stream": false}')
            # a client cannot slip its own model past the rewrite: an escaped key is rewritten like
            # a plain one, and a body naming the model twice is refused
            body = b'{"mod\\u0065l": "mine", "messages": [{"role": "user", "content": "x"}]}'
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "a", "content-type": "application/json"}, body)
            assert r.status == 200 and r.header("x-mock-saw-model") == "llama-3-8b", (r.status, r.headers)
            body = b'{"model": "x", "messages": [], "model": "mine"}'
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "a"}, body)
            assert r.status == 400 and "more than once" in r.json()["error"]["message"], (r.status, r.body)


def test_sighup_raising_the_weight_keeps_every_canary_user_on_the_canary():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=10)) as gw:
        users = ["u%d" % i for i in range(600)]
        before = {u: variant_of(gw, u) for u in users}
        gw.reload(route_yaml(v1, v2, weight=40))
        after = {u: variant_of(gw, u) for u in users}
        moved_back = [u for u in users if before[u] == "canary" and after[u] != "canary"]
        assert not moved_back, moved_back
        share_before = sum(v == "canary" for v in before.values()) / len(users)
        share_after = sum(v == "canary" for v in after.values()) / len(users)
        assert 0.05 < share_before < 0.15 and 0.33 < share_after < 0.47, (share_before, share_after)


def test_a_reload_asking_for_fewer_workers_keeps_regex_rules_working_on_every_running_worker():
    rules = "    rules:\n      - match: { header_regex: { user-agent: \"^beta-\" } }\n        variant: canary\n"
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0, extra=rules), workers=4) as gw:
        gw.reload(route_yaml(v1, v2, weight=0, extra=rules), workers=1)
        assert "workers and admin.listen take effect only at restart" in gw.output()
        for i in range(200):                  # a new connection each: every one of the 4 workers answers some
            r = request(gw.port, "POST", "/v1/chat/completions", {"user-agent": "beta-%d" % i}, chat())
            assert r.status == 200 and r.header("x-fledge-variant") == "canary", (i, r.status, r.headers)
            r = request(gw.port, "POST", "/v1/chat/completions", {"user-agent": "curl/%d" % i}, chat())
            assert r.status == 200 and r.header("x-fledge-variant") == "stable", (i, r.status, r.headers)


def test_an_invalid_config_on_sighup_keeps_the_old_one_serving():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=0)) as gw:
        gw.write_conf(route_yaml(v1, v2, weight=150))
        gw.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while "reload of" not in gw.output() and time.time() < deadline:
            time.sleep(0.02)
        assert "weight must be between 0 and 100" in gw.output()
        assert variant_of(gw, "anyone") == "stable"


def test_request_id_is_kept_when_sane_and_generated_otherwise_and_forwarded_for_is_the_peer():
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1)) as gw:
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-request-id": "abc-123"}, chat())
        assert r.header("x-request-id") == "abc-123" and r.header("x-mock-saw-request-id") == "abc-123"
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-request-id": "bad id {with} spaces"}, chat())
        rid = r.header("x-request-id")
        assert rid and rid != "bad id {with} spaces" and r.header("x-mock-saw-request-id") == rid
        # the client is no trusted proxy: its own claim is neither believed nor passed on
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-forwarded-for": "203.0.113.7"}, chat())
        assert r.header("x-mock-saw-forwarded-for") == "127.0.0.1"


def test_hop_by_hop_headers_are_not_forwarded():
    with CaptureBackend() as be, Gateway(route_yaml(be.port)) as gw:
        r = request(gw.port, "GET", "/v1/x", {"connection": "keep-alive, x-secret", "x-secret": "s",
                                               "te": "trailers", "keep-alive": "timeout=5", "x-kept": "yes"})
        assert r.status == 200 and r.header("x-fledge-variant") == "stable"
        seen = be.requests[-1]
        assert seen.get("x-kept") == "yes"
        for hop in ("x-secret", "te", "keep-alive", "x-fledge-variant"):
            assert hop not in seen, (hop, seen)


def variant_from(gw, source_ip, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10, source_address=(source_ip, 0))
    r = request(gw.port, "POST", "/v1/chat/completions", headers or {}, chat(), conn=conn)
    conn.close()
    assert r.status == 200, (r.status, r.body)
    return r.header("x-fledge-variant")


def test_country_rule_uses_the_mmdb_for_the_client_address():
    import os
    import subprocess
    import tempfile
    db = tempfile.NamedTemporaryFile(suffix=".mmdb", delete=False).name
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(["perl", os.path.join(here, "mmdb.pl"), db, "127.0.0.2/32=DE", "127.0.0.3/32=FR"], check=True)
    rules = "    rules:\n      - match: { country: [de] }\n        variant: canary\n"
    try:
        with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
                Gateway("geoip: { mmdb: %s }\n" % db + route_yaml(v1, v2, weight=0, extra=rules)) as gw:
            assert variant_from(gw, "127.0.0.2") == "canary"
            assert variant_from(gw, "127.0.0.3") == "stable"
            assert variant_from(gw, "127.0.0.4") == "stable"      # not in the database
    finally:
        os.unlink(db)


def test_country_header_from_a_trusted_edge_is_honoured_and_from_others_ignored():
    rules = "    rules:\n      - match: { country: [DE] }\n        variant: canary\n"
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = ("trusted_cidrs: [127.0.0.1/32]\ngeoip: { header: x-edge-country }\n" +
                route_yaml(v1, v2, weight=0, extra=rules))
        with Gateway(yaml) as gw:
            assert variant_from(gw, "127.0.0.1", {"x-edge-country": "de"}) == "canary"
            assert variant_from(gw, "127.0.0.5", {"x-edge-country": "de"}) == "stable"
            assert variant_from(gw, "127.0.0.1", {"x-edge-country": "FR"}) == "stable"


def test_client_network_and_segment_rules():
    rules = ("    rules:\n      - match: { cidr: [127.0.0.64/26] }\n        variant: canary\n"
             "      - match: { segment: [beta] }\n        variant: canary\n")
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=0, extra=rules)) as gw:
        assert variant_from(gw, "127.0.0.70") == "canary"
        assert variant_from(gw, "127.0.0.10") == "stable"
        assert variant_from(gw, "127.0.0.10", {"x-user-segment": "beta"}) == "canary"
