"""Backends, webhooks and scrapes known by host names: a name stands for all its addresses, each
a backend with its own health; a change of addresses is followed without a restart; a name that
does not resolve is a config error at its line unless `resolve: lazy`. Names come from a hosts
file each test writes (FLEDGE_HOSTS_FILE, honoured only for name lookups), so nothing outside
the test changes, and the mocks listen on loopback aliases (127.0.0.2, 127.0.0.3)."""
import os
import re
import socket
import subprocess
import tempfile
import time

import harness
from harness import FLEDGE, CaptureBackend, Gateway, Proc, free_port, mock, request, wait_for

TOKEN = "names-test-token-0123456789"


class HostsFile:
    """A hosts(5) file of the test's own; `env` points fledge at it."""

    def __init__(self, text=""):
        f = tempfile.NamedTemporaryFile("w", prefix="fledge-hosts-", delete=False)
        f.close()
        self.path = f.name
        self.env = {"FLEDGE_HOSTS_FILE": self.path}
        self.write(text)

    def write(self, text):
        tmp = self.path + ".new"                     # whole or not at all, as a lookup may read it now
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.unlink(self.path)


class AliasMock(Proc):
    """`fledge mock` on a loopback alias such as 127.0.0.2 (Proc itself waits on 127.0.0.1)."""

    def __init__(self, host, port, model):
        self.log = tempfile.NamedTemporaryFile(prefix="mock-", suffix=".log", delete=False)
        self.p = subprocess.Popen([FLEDGE, "mock", "--listen", "%s:%d" % (host, port), "--model", model],
                                  stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        harness._procs.append(self)                  # killed at exit even if the test breaks off
        self.port = port
        deadline = time.time() + 5
        while True:
            try:
                socket.create_connection((host, port), timeout=0.2).close()
                return
            except OSError:
                if time.time() > deadline or self.p.poll() is not None:
                    raise RuntimeError("mock on %s:%d did not start" % (host, port))
                time.sleep(0.02)


def models(gw, n=10):
    """Which mock model answered each of n requests (None for an error)."""
    out = []
    for _ in range(n):
        r = request(gw.port, "POST", "/v1/chat/completions", {},
                    {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        out.append(r.header("x-mock-model") if r.status == 200 else None)
    return out


def metrics(gw):
    return request(gw.admin, "GET", "/metrics").body.decode()


def one_route(backends, extra=""):
    return ("routes:\n  - name: chat\n    stable: { version: v1, backends: [%s]%s }\n" % (backends, extra))


def test_a_backend_named_localhost_is_served():
    with mock(model="local") as m, Gateway(one_route("localhost:%d" % m.port)) as gw:
        assert models(gw, 3) == ["local"] * 3
        assert 'backend="127.0.0.1:%d"' % m.port in metrics(gw)


def test_a_name_follows_its_new_address_without_a_restart():
    port = free_port()
    with HostsFile("127.0.0.2 model.test\n") as hosts, AliasMock("127.0.0.2", port, "old") as old, \
            AliasMock("127.0.0.3", port, "new") as new, \
            Gateway("resolve: { interval: 1s }\n" + one_route("model.test:%d" % port), env=hosts.env) as gw:
        pid = gw.pid
        assert models(gw, 5) == ["old"] * 5
        hosts.write("# redeployed\n127.0.0.3 model.test\n")
        wait_for("answers from the new address", lambda: models(gw, 3) == ["new"] * 3, 5)
        assert gw.pid == pid and gw.p.poll() is None
        out = gw.output()
        assert "backend name model.test: addresses changed to 127.0.0.3 (was 127.0.0.2)" in out, out
        text = metrics(gw)
        assert 'fledge_backend_address_changes_total{host="model.test"} 1' in text
        assert re.search(r'fledge_backend_resolves_total\{host="model.test",result="ok"\} [2-9]', text), text
        assert 'fledge_backend_up{route="chat",variant="stable",backend="127.0.0.3:%d"} 1' % port in text
        # the old address retires with the snapshot that named it: registry entries and series go
        wait_for("the old address forgotten",
                 lambda: "127.0.0.2:%d" % port not in metrics(gw)
                 and 'fledge_registry_entries{registry="backends"} 1\n' in metrics(gw), 5)


def test_a_failed_connect_brings_the_next_lookup_forward():
    port = free_port()
    with HostsFile("127.0.0.2 moving.test\n") as hosts, AliasMock("127.0.0.3", port, "new") as new, \
            Gateway("resolve: { interval: 1h }\n" + one_route("moving.test:%d" % port), env=hosts.env) as gw:
        with AliasMock("127.0.0.2", port, "old") as old:
            assert models(gw, 2) == ["old"] * 2
            hosts.write("127.0.0.3 moving.test\n")
        # an hour to the next lookup, but the old address now refuses connections
        wait_for("answers from the new address", lambda: models(gw, 2) == ["new"] * 2, 6)
        assert "addresses changed to 127.0.0.3 (was 127.0.0.2)" in gw.output()


def test_every_address_of_a_name_is_a_backend_with_its_own_health():
    port = free_port()
    with HostsFile("127.0.0.2 pool.test\n127.0.0.3 pool.test\n") as hosts, AliasMock("127.0.0.2", port, "up") as up, \
            Gateway(one_route("pool.test:%d" % port), env=hosts.env) as gw:
        # nothing listens on 127.0.0.3: its connects are refused and retried on 127.0.0.2
        assert models(gw, 20) == ["up"] * 20
        text = metrics(gw)
        assert 'fledge_backend_up{route="chat",variant="stable",backend="127.0.0.2:%d"} 1' % port in text, text
        assert 'fledge_backend_up{route="chat",variant="stable",backend="127.0.0.3:%d"} 0' % port in text, text
        assert 'fledge_backend_addresses{host="pool.test"} 2' in text


def check(path, env):
    return subprocess.run([FLEDGE, "check", "-c", path], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **env))


def test_an_unresolvable_name_fails_check_and_serve_at_its_line_unless_lazy():
    with HostsFile("127.0.0.1 known.test\n") as hosts:
        f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        f.write("routes:\n  - name: chat\n    stable:\n      version: v1\n"
                "      backends: [known.test:9, unknown.test:9]\n")
        f.close()
        try:
            for cmd in ("check", "serve"):
                r = subprocess.run([FLEDGE, cmd, "-c", f.name], capture_output=True, text=True, timeout=60,
                                   env=dict(os.environ, **hosts.env))
                assert r.returncode == 1, (cmd, r.stdout, r.stderr)
                assert "%s:5:32: backend unknown.test:9: cannot resolve unknown.test" % f.name in r.stderr, r.stderr
            # the system's resolver too: .invalid never resolves (RFC 6761)
            with open(f.name, "w") as g:
                g.write("routes:\n  - name: chat\n    stable: { version: v1, backends: [no-such-model.invalid:80] }\n")
            r = check(f.name, {})
            assert r.returncode == 1 and "%s:3:39: backend no-such-model.invalid:80: cannot resolve" % f.name \
                in r.stderr, r.stderr
            with open(f.name, "w") as g:
                g.write("resolve: lazy\nroutes:\n  - name: chat\n    stable: { version: v1, backends: [later.test:80] }\n")
            r = check(f.name, hosts.env)
            assert r.returncode == 0, r.stderr
        finally:
            os.unlink(f.name)


def test_a_lazy_name_starts_without_an_address_and_serves_once_it_has_one():
    with HostsFile("") as hosts, mock(model="late") as m, \
            Gateway(one_route("late.test:%d" % m.port, ", resolve: lazy"), env=hosts.env) as gw:
        r = request(gw.port, "POST", "/v1/chat/completions", {}, {"model": "m", "messages": []})
        assert r.status == 503, r.body
        hosts.write("127.0.0.1 late.test\n")
        wait_for("served once the name resolves", lambda: models(gw, 2) == ["late"] * 2, 10)


def test_webhooks_and_scrapes_reach_names_through_libcurl():
    with HostsFile("127.0.0.1 hooks.test metrics.test\n") as hosts, CaptureBackend() as local, \
            CaptureBackend() as named, mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        conf = ("scrape: { interval: 1s, timeout: 500ms }\nroutes:\n  - name: chat\n"
                "    stable: { version: v1, backends: [127.0.0.1:%d], metrics_url: http://metrics.test:%d/metrics }\n"
                "    canary: { version: v2, backends: [127.0.0.1:%d], weight: 0 }\n" % (v1.port, v1.port, v2.port))
        env = dict(hosts.env, FLEDGE_TOKEN=TOKEN)
        with Gateway(conf, env=env, admin_extra="  token_env: FLEDGE_TOKEN\n") as gw:
            spec = {"steps": [20, 100], "interval": "60s",
                    "webhooks": [{"url": "http://localhost:%d/hook" % local.port},
                                 {"url": "http://hooks.test:%d/hook?token=secret" % named.port}]}
            r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", {"authorization": "Bearer " + TOKEN}, spec)
            assert r.status == 200, r.body
            wait_for("both webhooks delivered", lambda: local.requests and named.requests, 5)
            for hook in (local, named):
                assert "libcurl/" in hook.requests[0]["user-agent"], hook.requests[0]
                assert b'"event":"rollout_started"' in hook.bodies[0]
            assert named.requests[0]["host"] == "hooks.test:%d" % named.port
            up = 'fledge_backend_scrape_up{route="chat",variant="stable",backend="metrics.test:%d"} 1' % v1.port
            wait_for("the scrape by name", lambda: up in metrics(gw), 5)
