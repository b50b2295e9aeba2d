"""Per-version request headers (issue 17): a version may carry its own credentials to its backends
(`headers: {authorization: "Bearer ${env:KEY}"}`). The header reaches only that version's
backends, replaces the client's own, and its value is shown or logged nowhere."""
import subprocess

from harness import FLEDGE, CaptureBackend, Gateway, chat, request

SECRET = "sk-test-0123456789abcdefSECRET"
YAML = """routes:
  - name: chat
    match: { path_prefix: / }
    user_key: [header:x-user-id]
    stable:
      version: hosted
      backends: [127.0.0.1:%d]
      headers: { Authorization: "Bearer ${env:FL_TEST_API_KEY}", x-org: acme }
    canary: { version: local, backends: [127.0.0.1:%d], weight: 50 }
"""


def test_a_version_s_headers_reach_only_its_backends_and_replace_the_client_s():
    with CaptureBackend() as hosted, CaptureBackend() as local:
        with Gateway(YAML % (hosted.port, local.port), env={"FL_TEST_API_KEY": SECRET}) as gw:
            for variant in ("stable", "canary"):
                r = request(gw.port, "POST", "/v1/chat/completions",
                            {"x-fledge-variant": variant, "authorization": "Bearer client-own", "x-user-id": "u1"},
                            chat())
                assert r.status == 200 and r.header("x-fledge-variant") == variant, (r.status, r.body)
            seen = hosted.requests[-1]
            assert seen["authorization"] == "Bearer " + SECRET and seen["x-org"] == "acme", seen
            names = [k for k, _ in hosted.raw_headers[-1]]
            assert names.count("authorization") == 1 and names.count("x-org") == 1, names   # replaced, not added
            assert local.requests[-1]["authorization"] == "Bearer client-own", local.requests[-1]
            assert "x-org" not in local.requests[-1]
            # shown nowhere: the API says which headers, never their values; the log never has it
            route = request(gw.admin, "GET", "/api/v1/routes/chat").json()
            assert route["stable"]["headers_set"] == ["authorization", "x-org"], route
            everything = "".join(request(gw.admin, "GET", p).body.decode()
                                 for p in ("/api/v1/routes", "/api/v1/routes/chat", "/metrics", "/api/v1/stats"))
            assert SECRET not in everything and SECRET not in gw.output()


def test_a_header_the_gateway_sets_itself_or_a_missing_variable_is_refused_at_its_line():
    with CaptureBackend() as hosted, CaptureBackend() as local:
        def check(yaml, env):
            gw_yaml = "listen: 127.0.0.1:1\n" + yaml
            import os
            import tempfile
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write(gw_yaml)
            try:
                return subprocess.run([FLEDGE, "check", "-c", f.name], capture_output=True, text=True, timeout=10,
                                      env=dict(os.environ, **env))
            finally:
                os.unlink(f.name)
        yaml = YAML % (hosted.port, local.port)
        missing = check(yaml, {})
        assert missing.returncode != 0 and ":9:" in missing.stderr and "FL_TEST_API_KEY is not set" in missing.stderr, \
            missing.stderr
        reserved = check(yaml.replace("Authorization", "Content-Length"), {"FL_TEST_API_KEY": SECRET})
        assert reserved.returncode != 0 and "content-length is set by the gateway itself" in reserved.stderr
        ok = check(yaml, {"FL_TEST_API_KEY": SECRET})
        assert ok.returncode == 0, ok.stderr
        assert SECRET not in ok.stdout + ok.stderr


def test_the_acceptance_set_reaches_a_version_with_its_own_headers():
    import os
    from test_rollout import acceptance_file, chat_case
    path = acceptance_file([chat_case({"status": 200})] * 2)
    canary_yaml = YAML.replace("    canary: { version: local, backends: [127.0.0.1:%d], weight: 50 }\n",
                               "    canary:\n      version: local\n      backends: [127.0.0.1:%d]\n      weight: 0\n"
                               "      headers: { authorization: \"Bearer ${env:FL_TEST_API_KEY}\" }\n")
    token = "headers-test-token-0123456789"
    try:
        with CaptureBackend() as hosted, CaptureBackend() as local, \
                Gateway(canary_yaml % (hosted.port, local.port), env={"FL_TEST_API_KEY": SECRET, "FL_T": token},
                        admin_extra="  token_env: FL_T\n") as gw:
            spec = {"steps": [10, 100], "interval": "60s", "acceptance": path}
            r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", {"authorization": "Bearer " + token}, spec)
            assert r.status == 200, r.body
            from harness import wait_for
            wait_for("the gate passed", lambda: request(gw.admin, "GET", "/api/v1/routes/chat").json()["rollout"]
                     ["state"] == "progressing", 10)
            assert len(local.requests) >= 2 and all(q["authorization"] == "Bearer " + SECRET for q in local.requests)
            assert SECRET not in gw.output()
    finally:
        os.unlink(path)
