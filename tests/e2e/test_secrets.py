"""Scopes and secrets of the admin side, as an operator relies on them: webhook and scrape URLs
whose credentials no read shows."""
import http.server
import json
import sqlite3
import threading
import time

from harness import Gateway, mock, request, route_yaml

ADMIN = "admin-token-for-scopes-0123456789"
ENV = {"FLEDGE_ADMIN": ADMIN}
ADMIN_TOKEN = "  token_env: FLEDGE_ADMIN\n"
SPEC = {"steps": [20, 50, 100], "interval": "60s", "min_requests": 40, "max_failures": 2}


def bearer(token):
    return {"authorization": "Bearer " + token}


# ---- secrets in reads ------------------------------------------------------------------------

class Receiver:
    """An HTTP server on a free loopback port that answers every request 200 and keeps what came:
    (path, parsed JSON body) for POSTs, the path for GETs (a /metrics endpoint for scrapes)."""

    def __init__(self):
        owner = self
        self.posts, self.gets = [], []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


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
