"""Scopes and secrets of the admin side, as an operator relies on them: a feedback-only token that
can rate answers and change nothing, a read token that closes every read but /health, webhook and
scrape URLs whose credentials no read shows, client errors that name no internal address (the log
does), and state files only their owner can read."""
import json
import os
import sqlite3
import stat
import subprocess
import threading
import time

from harness import FLEDGE, Gateway, LocalServer, QuietHandler, chat, free_port, mock, request, route_yaml

ADMIN = "admin-token-for-scopes-0123456789"
READ = "read-token-for-scopes-0123456789"
FEEDBACK = "feedback-token-for-scopes-0123456789"
ENV = {"FLEDGE_ADMIN": ADMIN, "FLEDGE_READ": READ, "FLEDGE_FEEDBACK": FEEDBACK}
ADMIN_TOKEN = "  token_env: FLEDGE_ADMIN\n"
READ_TOKEN = "  read_token_env: FLEDGE_READ\n"
FEEDBACK_TOKEN = "feedback: { token_env: FLEDGE_FEEDBACK }\n"
SPEC = {"steps": [20, 50, 100], "interval": "60s", "min_requests": 40, "max_failures": 2}


def bearer(token):
    return {"authorization": "Bearer " + token}


def served_id(gw):
    """The signed request id of one answer, for feedback."""
    r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u1"}, chat())
    assert r.status == 200, r.body
    return r.header("x-request-id")


def feedback(gw, token, score=1):
    headers = bearer(token) if token else {}
    return request(gw.admin, "POST", "/api/v1/feedback", headers, {"request_id": served_id(gw), "score": score})


def rollout_state(gw, token=ADMIN):
    return request(gw.admin, "GET", "/api/v1/routes/chat", bearer(token)).json()["rollout"]["state"]


def cli(gw, *args, env):
    """`fledge ARGS -c CONFIG` with exactly the token variables given."""
    clean = {k: v for k, v in os.environ.items() if k not in ENV and k != "FLEDGE_ADMIN_TOKEN"}
    return subprocess.run([FLEDGE, *args, "-c", gw.conf.name], capture_output=True, text=True, timeout=10,
                          env=dict(clean, **env))


# ---- the feedback token ----------------------------------------------------------------------

def test_the_feedback_token_posts_feedback_and_rollout_abort_with_it_is_refused_403():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(FEEDBACK_TOKEN + route_yaml(v1, v2, weight=0), env=ENV, admin_extra=ADMIN_TOKEN) as gw:
        assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", bearer(ADMIN), SPEC).status == 200
        r = feedback(gw, FEEDBACK)
        assert r.status == 200 and r.json()["route"] == "chat", r.body
        assert feedback(gw, ADMIN).status == 200                  # the admin token may rate too
        assert feedback(gw, None).status == 401
        assert feedback(gw, "not-a-token-of-this-gateway").status == 401

        # a known token outside its scope: 403, not 401 (a better token of its kind would not help)
        for method, path, body in (("POST", "/api/v1/routes/chat/rollout/abort", None),
                                   ("POST", "/api/v1/routes/chat/rollout/pause", None),
                                   ("POST", "/api/v1/routes/chat/rollout/promote", None),
                                   ("PUT", "/api/v1/routes/chat/weight", {"weight": 100})):
            r = request(gw.admin, method, path, bearer(FEEDBACK), body)
            assert r.status == 403 and r.json()["error"]["type"] == "forbidden", (path, r.body)
            assert "feedback token" in r.json()["error"]["message"], r.body
        out = cli(gw, "rollout", "abort", "chat", env={"FLEDGE_ADMIN_TOKEN": FEEDBACK})
        assert out.returncode == 1 and "403" in out.stderr, out
        assert rollout_state(gw) == "progressing"                 # nothing of it happened

        out = cli(gw, "rollout", "abort", "chat", env={"FLEDGE_ADMIN": ADMIN})
        assert out.returncode == 0 and "rolled_back" in out.stdout, out


def test_a_feedback_token_alone_takes_feedback_while_changes_stay_closed():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(FEEDBACK_TOKEN + route_yaml(v1, v2, weight=10), env=ENV) as gw:
        assert feedback(gw, FEEDBACK).status == 200
        r = request(gw.admin, "PUT", "/api/v1/routes/chat/weight", bearer(FEEDBACK), {"weight": 50})
        assert r.status == 403 and "read-only" in r.json()["error"]["message"], r.body
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1), env=ENV) as gw:   # no token at all
        r = feedback(gw, FEEDBACK)
        assert r.status == 403 and "feedback.token_env" in r.json()["error"]["message"], r.body


def test_one_token_for_two_scopes_or_a_missing_one_is_a_config_error():
    with mock(model="m-v1") as v1:
        gw_yaml = "listen: 127.0.0.1:%d\nadmin: { listen: 127.0.0.1:%d, token_env: FLEDGE_ADMIN, " \
                  "read_token_env: FLEDGE_READ }\n" % (free_port(), free_port()) + FEEDBACK_TOKEN + route_yaml(v1)
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "fledge-scopes-%d.yaml" % os.getpid())
        with open(path, "w") as f:
            f.write(gw_yaml)
        try:
            env = dict(os.environ, **ENV)
            for shared in ("FLEDGE_READ", "FLEDGE_FEEDBACK"):
                r = subprocess.run([FLEDGE, "check", "-c", path], capture_output=True, text=True, timeout=10,
                                   env=dict(env, **{shared: ADMIN}))
                assert r.returncode == 1 and "the same token" in r.stderr, r
            r = subprocess.run([FLEDGE, "check", "-c", path], capture_output=True, text=True, timeout=10,
                               env={k: v for k, v in env.items() if k != "FLEDGE_FEEDBACK"})
            assert r.returncode == 1 and "feedback.token_env" in r.stderr and "FLEDGE_FEEDBACK" in r.stderr, r
            r = subprocess.run([FLEDGE, "check", "-c", path], capture_output=True, text=True, timeout=10, env=env)
            assert r.returncode == 0, r
        finally:
            os.unlink(path)


# ---- the read token --------------------------------------------------------------------------

READS = ("/api/v1/routes", "/api/v1/routes/chat", "/api/v1/stats", "/api/v1/events", "/api/v1/resources", "/metrics")


def test_with_a_read_token_every_read_but_health_needs_it_or_the_admin_token():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(FEEDBACK_TOKEN + route_yaml(v1, v2, weight=10), env=ENV, admin_extra=ADMIN_TOKEN + READ_TOKEN) as gw:
        for path in READS:
            r = request(gw.admin, "GET", path)
            assert r.status == 401 and r.header("www-authenticate") == 'Bearer realm="fledge"', (path, r.headers)
            assert request(gw.admin, "HEAD", path).status == 401, path
            assert request(gw.admin, "GET", path, bearer("not-a-token-of-this-gateway")).status == 401, path
            assert request(gw.admin, "GET", path, bearer(FEEDBACK)).status == 403, path
            assert request(gw.admin, "GET", path, bearer(READ)).status == 200, path
            assert request(gw.admin, "GET", path, bearer(ADMIN)).status == 200, path
        r = request(gw.admin, "GET", "/health")
        assert r.status == 200 and r.json()["status"] == "ok", r.body
        # without a token not even whether a route exists
        assert request(gw.admin, "GET", "/api/v1/routes/nope").status == 401
        assert request(gw.admin, "PUT", "/api/v1/routes/nope/weight", {}, {"weight": 1}).status == 401
        assert request(gw.admin, "GET", "/api/v1/routes/nope", bearer(READ)).status == 404
        # the read token reads and changes nothing; feedback still takes the feedback token
        r = request(gw.admin, "PUT", "/api/v1/routes/chat/weight", bearer(READ), {"weight": 50})
        assert r.status == 403 and "read token" in r.json()["error"]["message"], r.body
        assert request(gw.admin, "GET", "/api/v1/routes/chat", bearer(READ)).json()["canary_weight"] == 10
        assert feedback(gw, FEEDBACK).status == 200
        # the CLI reads with the config's read token when it has no admin token
        out = cli(gw, "status", env={"FLEDGE_READ": READ})
        assert out.returncode == 0 and "chat" in out.stdout, out
        out = cli(gw, "status", env={})
        assert out.returncode == 1 and "401" in out.stderr, out


def test_public_metrics_keeps_metrics_open_for_scrapers_while_the_api_needs_the_read_token():
    with mock(model="m-v1") as v1, \
            Gateway(route_yaml(v1), env=ENV, admin_extra=READ_TOKEN + "  public_metrics: true\n") as gw:
        r = request(gw.admin, "GET", "/metrics")
        assert r.status == 200 and b"fledge_" in r.body
        assert request(gw.admin, "GET", "/api/v1/stats").status == 401
        assert request(gw.admin, "GET", "/api/v1/stats", bearer(READ)).status == 200


# ---- secrets in reads ------------------------------------------------------------------------

class Receiver(LocalServer):
    """An HTTP server on a free loopback port that answers every request 200 and keeps what came:
    (path, parsed JSON body) for POSTs, the path for GETs (a /metrics endpoint for scrapes)."""

    def __init__(self):
        owner = self
        self.posts, self.gets = [], []

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.posts.append((self.path, json.loads(body)))
                self.answer(b"")

            def do_GET(self):
                owner.gets.append(self.path)
                self.answer(b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n")

            def answer(self, body):
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)


def test_webhook_and_scrape_credentials_never_show_in_reads_or_other_hooks_payloads():
    secrets = ("hook-secret-123", "T0SECRETPATH", "scrape-secret-456")
    with Receiver() as hook, mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = "scrape: { interval: 1s }\n" + route_yaml(v1, v2, weight=0).replace(
            "weight: 0 }", "weight: 0, metrics_url: \"http://127.0.0.1:%d/metrics?token=scrape-secret-456\" }"
            % hook.port)
        with Gateway(yaml, env=ENV, admin_extra=ADMIN_TOKEN) as gw:
            url = "http://127.0.0.1:%d/hooks/T0SECRETPATH?token=hook-secret-123&v=2" % hook.port
            shown = "http://127.0.0.1:%d/\u2026?token=REDACTED&v=REDACTED" % hook.port
            r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", bearer(ADMIN), dict(SPEC, webhooks=[{"url": url}]))
            assert r.status == 200, r.body
            assert r.json()["rollout"]["spec"]["webhooks"][0]["url"] == shown, r.json()["rollout"]["spec"]
            deadline = time.time() + 5
            while (not hook.posts or not hook.gets) and time.time() < deadline:
                time.sleep(0.05)
            # delivery and scrapes still use the real URLs
            assert hook.posts and hook.posts[0][0] == "/hooks/T0SECRETPATH?token=hook-secret-123&v=2", hook.posts
            assert hook.gets and hook.gets[0] == "/metrics?token=scrape-secret-456", hook.gets
            # an event saved by an older build, whole URL and all, is redacted when read
            db = sqlite3.connect(gw.state_dir + "/state.db")
            db.execute("INSERT INTO events(time_ms, route, actor, kind, detail) VALUES (?, 'chat', 'api', "
                       "'rollout_started', ?)", (int(time.time() * 1000), json.dumps({"spec": {"webhooks": [{"url": url}]}})))
            db.commit()
            db.close()
            reads = {path: request(gw.admin, "GET", path).body.decode()
                     for path in ("/api/v1/routes/chat", "/api/v1/routes", "/api/v1/events", "/api/v1/resources")}
            reads["the hook's payload"] = json.dumps(hook.posts[0][1], ensure_ascii=False)
            for where, text in reads.items():
                for secret in secrets:
                    assert secret not in text, (where, secret, text)
            events = json.loads(reads["/api/v1/events"])["events"]
            specs = [e["detail"]["spec"] for e in events if "spec" in e["detail"]]
            assert [s["webhooks"][0]["url"] for s in specs] == [shown, shown], events
            backend_metrics = json.loads(reads["/api/v1/resources"])["backend_metrics"]
            assert backend_metrics[0]["url"] == "http://127.0.0.1:%d/\u2026?token=REDACTED" % hook.port, backend_metrics
            assert hook.posts[0][1]["detail"]["spec"]["webhooks"][0]["url"] == shown


# ---- client errors ---------------------------------------------------------------------------

def test_a_refused_backend_gets_a_502_naming_no_address_and_the_log_names_it():
    dead = free_port()                                       # nothing listens there
    with Gateway(route_yaml(dead), workers=1) as gw:
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-request-id": "req-refused-1"}, chat())
        assert r.status == 502, r.body
        err = r.json()["error"]
        assert err["type"] == "upstream_error", err
        assert err["message"] == "the stable backend refused the connection (request req-refused-1)", err
        assert b"127.0.0.1" not in r.body and str(dead).encode() not in r.body, r.body
        deadline = time.time() + 2
        while "req-refused-1" not in gw.output() and time.time() < deadline:
            time.sleep(0.05)
        line = [l for l in gw.output().splitlines() if "req-refused-1" in l]
        assert line and "127.0.0.1:%d" % dead in line[0] and "refused the connection" in line[0], gw.output()


def test_upstream_error_lines_are_rate_limited_and_say_how_many_were_not_logged():
    import socket
    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(64)
    stop = threading.Event()

    def answer_garbage():                                    # never ejected: each answer is a new 502
        garbage.settimeout(0.05)
        while not stop.is_set():
            try:
                s, _ = garbage.accept()
            except OSError:
                continue
            s.recv(65536)
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            s.close()

    t = threading.Thread(target=answer_garbage, daemon=True)
    t.start()
    try:
        with Gateway(route_yaml(garbage.getsockname()[1]), workers=1) as gw:
            t0 = time.time()
            for i in range(40):
                r = request(gw.port, "GET", "/v1/models", {"x-request-id": "burst-%d" % i})
                assert r.status == 502 and b"127.0.0.1" not in r.body, r.body
            took = time.time() - t0
            logged = [l for l in gw.output().splitlines() if "burst-" in l]
            assert len(logged) <= 5 * (int(took) + 2), (len(logged), took)
            assert len(logged) < 40, logged
            time.sleep(1.1)
            request(gw.port, "GET", "/v1/models", {"x-request-id": "after-burst"})
            deadline = time.time() + 2
            while "after-burst" not in gw.output() and time.time() < deadline:
                time.sleep(0.05)
            last = [l for l in gw.output().splitlines() if "after-burst" in l]
            assert last and "not logged" in last[0], gw.output()[-2000:]
    finally:
        stop.set()
        t.join(2)
        garbage.close()


# ---- state files -----------------------------------------------------------------------------

def modes(state_dir):
    out = {}
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        path = os.path.join(state_dir, name)
        if os.path.exists(path):
            out[name] = stat.S_IMODE(os.stat(path).st_mode)
    return out


def test_the_state_files_are_created_0600_whatever_the_umask_and_a_wider_one_is_narrowed():
    with mock(model="m-v1") as v1:
        old = os.umask(0)                                    # the gateway inherits it
        try:
            gw = Gateway(route_yaml(v1))
        finally:
            os.umask(old)
        with gw:
            found = modes(gw.state_dir)
            assert {"state.db", "state.db-wal", "state.db-shm"} <= set(found), found
            assert set(found.values()) == {0o600}, {k: oct(v) for k, v in found.items()}
            gw.stop()
            for name in modes(gw.state_dir):
                os.chmod(os.path.join(gw.state_dir, name), 0o644)
            with Gateway(route_yaml(v1), state_dir=gw.state_dir) as again:
                found = modes(again.state_dir)
                assert set(found.values()) == {0o600}, {k: oct(v) for k, v in found.items()}
                assert "open to other users" in again.output(), again.output()
