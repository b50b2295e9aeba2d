"""fledge where it really runs: behind a front proxy (a real nginx, started here, adding
x-forwarded-for) that it trusts for the client's address but not for overrides; and requests
that RFC 9112 says to refuse, or that could be read two ways, answered 400 while it keeps serving."""
import os
import subprocess
import tempfile

import harness
from harness import Gateway, chat, mock, raw, request, route_yaml, status_of


def Nginx(upstream_port):
    """nginx as a keep-alive reverse proxy in front of 127.0.0.1:PORT, appending the client to
    x-forwarded-for as most fronts do ($proxy_add_x_forwarded_for)."""
    return harness.Nginx(" upstream gw { server 127.0.0.1:%d; keepalive 16; }\n"
                         " server {\n  listen 127.0.0.1:{port};\n  location / {\n   proxy_pass http://gw;\n"
                         "   proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n"
                         "   proxy_set_header Host $host;\n"
                         "   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n  }\n }\n" % upstream_port)


def through(front, forwarded_for, headers=None):
    """A request that reaches the front as if relayed for forwarded_for."""
    h = dict(headers or {}, **{"x-forwarded-for": forwarded_for})
    return request(front.port, "POST", "/v1/chat/completions", h, chat())


BEHIND_NGINX = "trusted_proxies: [127.0.0.1/32]\n"


def test_users_behind_a_trusted_front_are_spread_by_their_forwarded_addresses():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(BEHIND_NGINX + route_yaml(v1, v2, weight=20, user_key="[ip]")) as gw, Nginx(gw.port) as front:
        seen = {}
        for i in range(1000):
            addr = "10.%d.%d.%d" % (i // 250, i % 250, (i * 7) % 250 + 1)
            r = through(front, addr)
            assert r.status == 200, r.body
            seen[addr] = r.header("x-fledge-variant")
        share = sum(v == "canary" for v in seen.values()) / len(seen)
        assert 0.17 <= share <= 0.23, share
        again = [through(front, a).header("x-fledge-variant") == v for a, v in list(seen.items())[:50]]
        assert all(again)                      # each user stays where it was bucketed


def test_without_trusted_proxies_every_user_behind_the_front_shares_one_bucket():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=50, user_key="[ip]")) as gw, Nginx(gw.port) as front:
        variants = {through(front, "10.0.0.%d" % i).header("x-fledge-variant") for i in range(1, 40)}
        assert len(variants) == 1              # all of them are "127.0.0.1", the front itself


def test_a_cidr_rule_matches_the_forwarded_address():
    rules = "    rules:\n      - match: { cidr: [203.0.113.0/24] }\n        variant: canary\n"
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(BEHIND_NGINX + route_yaml(v1, v2, weight=0, extra=rules)) as gw, Nginx(gw.port) as front:
        assert through(front, "203.0.113.9").header("x-fledge-variant") == "canary"
        assert through(front, "198.51.100.1").header("x-fledge-variant") == "stable"
        # a chain: the rightmost hop that is not a trusted proxy is the client
        assert through(front, "203.0.113.9, 198.51.100.1").header("x-fledge-variant") == "stable"
        assert through(front, "198.51.100.1, 203.0.113.9").header("x-fledge-variant") == "canary"


def test_the_backend_sees_the_chain_the_front_reported_then_the_front():
    with mock(model="m-v1") as v1, Gateway(BEHIND_NGINX + route_yaml(v1)) as gw, Nginx(gw.port) as front:
        r = through(front, "198.51.100.7")
        assert r.header("x-mock-saw-forwarded-for") == "198.51.100.7, 127.0.0.1, 127.0.0.1"


def test_an_override_from_the_fronts_clients_is_refused_and_from_override_from_obeyed():
    yaml = "override_from: [127.0.0.0/8]\n" + BEHIND_NGINX
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(yaml + route_yaml(v1, v2, weight=0)) as gw, Nginx(gw.port) as front:
        force = {"x-fledge-variant": "canary"}
        for i in range(10):
            r = through(front, "192.0.2.%d" % (i + 1), force)
            assert r.header("x-fledge-variant") == "stable", r.headers
        direct = request(gw.port, "POST", "/v1/chat/completions", force, chat())
        assert direct.header("x-fledge-variant") == "canary"


def test_by_default_nobody_may_force_a_variant():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=0), overrides=False) as gw:
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-fledge-variant": "canary"}, chat())
        assert r.status == 200 and r.header("x-fledge-variant") == "stable"


def test_trusted_cidrs_is_the_old_name_of_override_from_and_both_at_once_is_an_error():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        with Gateway("trusted_cidrs: [127.0.0.0/8]\n" + route_yaml(v1, v2, weight=0)) as gw:
            r = request(gw.port, "POST", "/v1/chat/completions", {"x-fledge-variant": "canary"}, chat())
            assert r.header("x-fledge-variant") == "canary"
        conf = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        conf.write("trusted_cidrs: [127.0.0.0/8]\noverride_from: [10.0.0.0/8]\n" + route_yaml(v1, v2))
        conf.close()
        try:
            out = subprocess.run([harness.FLEDGE, "check", "-c", conf.name], capture_output=True, text=True)
            assert out.returncode != 0 and "old name of override_from" in out.stderr, out.stderr
            assert "%s:2:" % conf.name in out.stderr, out.stderr
        finally:
            os.unlink(conf.name)


# ---- strict requests -------------------------------------------------------------------

def _refused(gw, data, words):
    r = raw(gw.port, data)
    assert status_of(r) == 400, r
    assert words.encode() in r, r
    ok = request(gw.port, "POST", "/v1/chat/completions", None, chat())   # and it goes on serving
    assert ok.status == 200


def test_requests_rfc_9112_says_to_refuse_get_400_and_the_gateway_keeps_serving():
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1)) as gw:
        _refused(gw, b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host header")
        _refused(gw, b"GET /v1/models HTTP/1.1\r\n\r\n", "HTTP/1.1 request without a Host header")
        _refused(gw, b"GET /v1/chat%2F..%2F..%2Fmetrics HTTP/1.1\r\nHost: a\r\n\r\n", "encoded slash in the path")
        _refused(gw, b"GET /v1/chat\\..\\metrics HTTP/1.1\r\nHost: a\r\n\r\n", "backslash in the path")
        _refused(gw, b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", "neither a path nor http(s)://")
        _refused(gw, b"GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", "invalid authority")
        # HTTP/1.0 needs no Host
        r = raw(gw.port, b"GET /v1/models HTTP/1.0\r\n\r\n")
        assert status_of(r) == 200, r


def test_an_absolute_form_target_is_routed_and_forwarded_by_its_authority():
    routes = ("routes:\n"
              "  - name: internal\n    match: { host: internal.example }\n    stable:\n      version: v1\n"
              "      backends: [127.0.0.1:%d]\n"
              "  - name: public\n    match: { path_prefix: / }\n    stable:\n      version: v2\n"
              "      backends: [127.0.0.1:%d]\n")
    with mock(model="m-internal") as a, mock(model="m-public") as b, Gateway(routes % (a.port, b.port)) as gw:
        r = raw(gw.port, b"POST http://internal.example/v1/chat/completions?x=1 HTTP/1.1\r\n"
                         b"Host: public.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        assert status_of(r) == 200, r
        assert b"x-mock-model: m-internal" in r, r
        assert b"x-mock-saw-host: internal.example" in r and b"x-mock-saw-path: /v1/chat/completions" in r, r
        r = request(gw.port, "GET", "/v1/models", {"host": "internal.example"})
        assert r.header("x-mock-model") == "m-internal"


def test_dot_segments_are_removed_before_routing_and_the_matched_path_is_forwarded():
    routes = ("routes:\n"
              "  - name: chat\n    match: { path_prefix: /v1/chat/ }\n    stable:\n      version: v1\n"
              "      backends: [127.0.0.1:%d]\n"
              "  - name: rest\n    match: { path_prefix: / }\n    stable:\n      version: v2\n"
              "      backends: [127.0.0.1:%d]\n")
    with mock(model="m-chat") as a, mock(model="m-rest") as b, Gateway(routes % (a.port, b.port)) as gw:
        for path in ("/v1/chat/../../metrics", "/v1/chat/%2e%2e/%2E%2E/metrics", "/v1/chat/./../../metrics"):
            r = request(gw.port, "GET", path)
            assert r.header("x-mock-model") == "m-rest", (path, r.headers)
            assert r.header("x-mock-saw-path") == "/metrics", (path, r.headers)
        r = request(gw.port, "GET", "/v1/chat/./completions")
        assert r.header("x-mock-model") == "m-chat" and r.header("x-mock-saw-path") == "/v1/chat/completions"
        r = request(gw.port, "GET", "/v1/%63hat/completions")       # "%63" is "c": the same path
        assert r.header("x-mock-model") == "m-chat" and r.header("x-mock-saw-path") == "/v1/chat/completions"
