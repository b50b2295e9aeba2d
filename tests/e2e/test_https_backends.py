"""https backends: fledge reaching a version over TLS, as it reaches a hosted model API. The hosted
API is Debian's nginx terminating TLS, with certificates from a test authority made by the openssl
command, in front of `fledge mock`; nginx's access log shows what reached it: the Host, the
authorization and the TLS connection each request came on."""
import json
import os
import subprocess
import tempfile
import urllib.request

import harness
from certs import TestCA
from harness import Gateway, Nginx, chat, mock, request

HOSTED_KEY = "sk-hosted-7f3a9c"
SEEN = "log_format seen '$http_host|$http_authorization|$connection|$connection_requests|$ssl_protocol|$server_port';\n"


def hosted_api(certs, backend_port, plain_port=None):
    """nginx with one TLS server per (crt, key), each in front of the mock on backend_port, in
    order on nginx.ports; with plain_port, then a plain HTTP server in front of that one."""
    plain = "" if plain_port is None else (
        " server {\n  listen 127.0.0.1:{port};\n  access_log {dir}/access.log seen;\n"
        "  location / {\n   proxy_pass http://127.0.0.1:%d;\n  }\n }\n" % plain_port)
    servers = plain + "".join(" server {\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate %s;\n  ssl_certificate_key %s;\n"
                      "  ssl_protocols TLSv1.2 TLSv1.3;\n"
                      "  access_log {dir}/access.log seen;\n  location / {\n   proxy_pass http://127.0.0.1:%d;\n"
                      "   proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n  }\n }\n"
                      % (crt, key, backend_port) for crt, key in certs)
    nginx = Nginx(SEEN + servers)
    if plain_port is not None:          # the plain server came first: keep the TLS ones in order
        nginx.plain_port = nginx.ports.pop(0)
        nginx.port = nginx.ports[0]
    return nginx


def hosts_file(folder, *names):
    path = os.path.join(folder, "hosts")
    with open(path, "w") as f:
        f.write("".join("127.0.0.1 %s\n" % n for n in names))
    return {"FLEDGE_HOSTS_FILE": path}


def seen(api):
    """nginx's access lines as dicts."""
    keys = ("host", "authorization", "connection", "requests", "protocol", "port")
    return [dict(zip(keys, line.split("|"))) for line in api.access_lines()]


def metric(gw, name, **labels):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % gw.admin, timeout=5).read().decode()
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(part in line for part in want.split(",")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_hosted_version_is_verified_asked_for_its_own_host_with_its_own_key_on_kept_alive_connections():
    with tempfile.TemporaryDirectory() as d, mock(model="hosted-model") as behind, mock(model="self-hosted") as own:
        ca = TestCA(d)
        with hosted_api([ca.issue("api", "api.hosted.example")], behind.port, plain_port=own.port) as api:
            yaml = ("routes:\n  - name: chat\n    match: {path_prefix: /}\n    user_key: [header:x-user-id]\n"
                    "    stable:\n      version: hosted\n      backends: [\"https://api.hosted.example:%d\"]\n"
                    "      ca_file: %s\n      headers: {authorization: \"Bearer ${env:HOSTED_KEY}\"}\n"
                    "    canary: {version: own, backends: [127.0.0.1:%d], weight: 50}\n" % (api.port, ca.crt, api.plain_port))
            env = dict(hosts_file(d, "api.hosted.example"), HOSTED_KEY=HOSTED_KEY)
            with Gateway(yaml, env=env) as gw:
                answers = [request(gw.port, "POST", "/v1/chat/completions", body=chat(user="u%d" % i),
                                   headers={"authorization": "Bearer client-own-key", "x-user-id": "u%d" % i,
                                            "host": "gateway.example"}) for i in range(40)]
                assert [a.status for a in answers] == [200] * 40, [a.body[:200] for a in answers if a.status != 200]
                by_variant = {v: [a for a in answers if a.headers["x-fledge-variant"] == v] for v in ("stable", "canary")}
                assert by_variant["stable"] and by_variant["canary"], "both versions answer at weight 50"
                assert all(a.headers["x-mock-model"] == "hosted-model" for a in by_variant["stable"])
                assert all(a.headers["x-mock-model"] == "self-hosted" for a in by_variant["canary"])
                stream = request(gw.port, "POST", "/v1/chat/completions", body=chat(stream=True),
                                 headers={"x-fledge-variant": "stable"})
                assert stream.status == 200 and stream.body.rstrip().endswith(b"data: [DONE]"), stream.body[-200:]

                expected = len(answers) + 1                      # nginx logs a request once it has answered it
                harness.wait_for("nginx's line for every request", lambda: len(seen(api)) >= expected, 5)
                lines = [x for x in seen(api) if x["port"] == str(api.port)]
                assert len(lines) == len(by_variant["stable"]) + 1, lines
                # the canary sets no authorization: it gets the client's own, never the hosted version's
                own_lines = [x for x in seen(api) if x["port"] == str(api.plain_port)]
                assert len(own_lines) == len(by_variant["canary"]), own_lines
                assert {x["authorization"] for x in own_lines} == {"Bearer client-own-key"}, own_lines
                # the backend's own host, the version's key in place of the client's, TLS 1.3
                assert {(x["host"], x["authorization"], x["protocol"]) for x in lines} == {
                    ("api.hosted.example:%d" % api.port, "Bearer " + HOSTED_KEY, "TLSv1.3")}, lines
                # kept-alive TLS connections: at most one handshake per worker, not one per request
                assert len({x["connection"] for x in lines}) <= 2, lines
                assert max(int(x["requests"]) for x in lines) >= len(lines) // 2, lines
                assert HOSTED_KEY not in gw.output()
                assert metric(gw, "fledge_upstream_errors_total", route="chat", kind="tls") == 0


def test_an_expired_or_wrong_host_or_unknown_authority_certificate_is_a_502_named_tls_and_insecure_skip_verify_passes():
    with tempfile.TemporaryDirectory() as d, mock() as behind:
        ca = TestCA(d)
        expired = ca.issue("expired", "api.hosted.example", valid_from=_days(-30), valid_to=_days(-1))
        wrong = ca.issue("wrong", "other.example")
        good = ca.issue("good", "api.hosted.example")
        with hosted_api([expired, wrong, good], behind.port) as api:
            def route(name, port, tls):
                return ("  - name: %s\n    match: {host: %s.test}\n    stable:\n      version: v1\n"
                        "      backends: [\"https://api.hosted.example:%d\"]\n%s" % (name, name, port, tls))
            ca_file = "      ca_file: %s\n" % ca.crt
            yaml = "routes:\n" + "".join([
                route("expired", api.ports[0], ca_file), route("wrong", api.ports[1], ca_file),
                route("system", api.ports[2], ""),         # the default: the system's authorities
                route("insecure", api.ports[0], "      insecure_skip_verify: true\n")])
            with Gateway(yaml, env=hosts_file(d, "api.hosted.example")) as gw:
                def ask(host):
                    return request(gw.port, "POST", "/v1/chat/completions", body=chat(), headers={"host": host + ".test"})

                for name, reason in (("expired", "certificate has expired"), ("wrong", "hostname mismatch"),
                                     ("system", "unable to get local issuer certificate")):
                    r = ask(name)
                    assert r.status == 502, (name, r.status, r.body)
                    error = json.loads(r.body)["error"]
                    assert error["type"] == "upstream_error", error
                    assert "TLS handshake with the stable backend failed" in error["message"], error
                    assert "api.hosted.example" not in error["message"] and "127.0.0.1" not in error["message"]
                    harness.wait_for(name + "'s reason in the log", lambda: reason in gw.output(), 5)
                    assert metric(gw, "fledge_upstream_errors_total", route=name, kind="tls") == 1, name
                assert ask("insecure").status == 200
                harness.wait_for("nginx's line for the insecure route's request", lambda: seen(api), 5)
                assert len(seen(api)) == 1, "no request went to a backend whose certificate failed"

                warning = "route insecure stable: insecure_skip_verify"
                assert gw.output().count(warning) == 1, gw.output()
                gw.reload(yaml)
                assert gw.output().count(warning) == 2, "said again at every load"
                check = subprocess.run([harness.FLEDGE, "check", "-c", gw.conf.name], capture_output=True, text=True,
                                       env=dict(os.environ, **hosts_file(d, "api.hosted.example")))
                assert check.returncode == 0 and warning in check.stderr, check


def test_https_settings_are_checked_where_they_are_written():
    with tempfile.TemporaryDirectory() as d:
        def check(variant):
            path = os.path.join(d, "f.yaml")
            with open(path, "w") as f:
                f.write("routes:\n  - name: chat\n    stable:\n%s" % variant)
            out = subprocess.run([harness.FLEDGE, "check", "-c", path], capture_output=True, text=True)
            return out.returncode, out.stderr.strip()

        rc, err = check("      version: v1\n      backends: [\"https://127.0.0.1:8443\", 127.0.0.1:8080]\n")
        assert rc == 1 and "f.yaml:5:44:" in err and "all https:// or all plain" in err, err
        rc, err = check("      version: v1\n      backends: [127.0.0.1:8080]\n      ca_file: ca.pem\n")
        assert rc == 1 and "ca_file, server_name and insecure_skip_verify are for https:// backends" in err, err
        rc, err = check("      version: v1\n      backends: [\"https://127.0.0.1\"]\n      ca_file: missing.pem\n")
        assert rc == 1 and "missing.pem: No such file or directory" in err, err
        rc, err = check("      version: v1\n      backends: [\"https://a.example\", \"https://b.example\"]\n")
        assert rc == 1 and "a.example and b.example are different hosts: give server_name" in err, err
        rc, err = check("      version: v1\n      backends: [\"https://a.example/v1\"]\n")
        assert rc == 1 and "without a path" in err, err


def _days(n):
    import datetime
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=n)
