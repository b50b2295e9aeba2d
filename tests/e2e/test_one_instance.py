"""One gateway per address: a second `fledge serve` on a listen or admin address in use is refused
at start with the address in its message, instead of silently taking a share of the traffic
(SO_REUSEPORT); `share: true` asks for that sharing on purpose, and a draining gateway lets a new
one take its addresses."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import FLEDGE, Gateway, Proc, chat, free_port, mock, request, route_yaml, wait_port


def conf_file(text):
    f = tempfile.NamedTemporaryFile("w", prefix="fledge-", suffix=".yaml", delete=False)
    f.write(text)
    f.close()
    return f.name


class SecondConf:
    """The config (and state folder) of another gateway, removed on exit; listen and admin are
    YAML values, a string or a mapping."""

    def __init__(self, listen, admin, backend, version="v9"):
        self.dir = tempfile.mkdtemp(prefix="fledge-second-")
        self.path = os.path.join(self.dir, "fledge.yaml")
        with open(self.path, "w") as f:
            f.write("listen: %s\nadmin: { listen: %s }\nstate: %s/state.db\nroutes:\n  - name: chat\n"
                    "    stable: { version: %s, backends: [127.0.0.1:%d] }\n" % (listen, admin, self.dir, version,
                                                                              backend.port))

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def serve(path, timeout=10):
    return subprocess.run([FLEDGE, "serve", "-c", path], capture_output=True, text=True, timeout=timeout)


def versions(port, n=20):
    return [request(port, "GET", "/v1/models").header("x-fledge-version") for _ in range(n)]


def test_a_second_gateway_on_the_same_listen_or_admin_address_is_refused_naming_it():
    with mock() as backend, Gateway(route_yaml(backend)) as first:
        with SecondConf("127.0.0.1:%d" % first.port, "127.0.0.1:%d" % free_port(), backend) as path:
            r = serve(path)
        assert r.returncode == 1, r
        assert "listen 127.0.0.1:%d: address already in use by another fledge (pid %d)" % (
            first.port, first.pid) in r.stderr, r.stderr
        assert "share: true" in r.stderr, r.stderr
        with SecondConf("127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % first.admin, backend) as path:
            r = serve(path)
        assert r.returncode == 1, r
        assert "admin.listen 127.0.0.1:%d: address already in use" % first.admin in r.stderr, r.stderr
        assert versions(first.port) == ["v1"] * 20          # every request still reaches the first one


def test_an_address_another_program_listens_on_is_refused_even_when_it_shares_the_port():
    with mock() as backend, socket.socket() as other:
        # a program that set SO_REUSEPORT itself would have shared it with fledge's workers silently
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with SecondConf("127.0.0.1:%d" % port, "127.0.0.1:%d" % free_port(), backend) as path:
            r = serve(path)
        assert r.returncode == 1, r
        assert "listen 127.0.0.1:%d: address already in use by another process" % port in r.stderr, r.stderr


def test_share_true_lets_a_second_gateway_serve_beside_the_first_on_purpose():
    with mock() as backend, Gateway(route_yaml(backend)) as first, \
            SecondConf("{ address: 127.0.0.1:%d, share: true }" % first.port, "127.0.0.1:%d" % free_port(),
                       backend) as path, \
            Proc([FLEDGE, "serve", "-c", path], first.port, "fledge-second") as second:
        deadline = time.time() + 10
        while "serving on" not in second.output():
            assert time.time() < deadline and second.p.poll() is None, second.output()
            time.sleep(0.05)
        seen = set(versions(first.port, 60))
        assert seen == {"v1", "v9"}, seen                   # both take connections: an upgrade's overlap
        first.stop()
        assert versions(first.port) == ["v9"] * 20          # the new one serves on alone


def test_a_draining_gateway_lets_a_new_one_take_its_addresses():
    answer = {}
    with mock("--latency-ms", 1500) as slow, Gateway(route_yaml(slow), workers=1) as first, \
            SecondConf("127.0.0.1:%d" % first.port, "127.0.0.1:%d" % first.admin, slow) as path:
        def in_flight():
            answer["r"] = request(first.port, "POST", "/v1/chat/completions", body=chat())
        t = threading.Thread(target=in_flight)
        t.start()
        time.sleep(0.3)
        first.send_signal(signal.SIGTERM)
        deadline = time.time() + 5
        while True:                                          # the drain closes the listener at once
            try:
                socket.create_connection(("127.0.0.1", first.port), timeout=0.2).close()
            except OSError:
                break
            assert time.time() < deadline, "the draining gateway still accepts"
            time.sleep(0.02)
        assert first.p.poll() is None                        # still finishing its request
        with Proc([FLEDGE, "serve", "-c", path], first.port, "fledge-next") as nxt:
            wait_port(first.admin, nxt.p)
            assert request(first.port, "GET", "/v1/models").header("x-fledge-version") == "v9"
            t.join(10)
            assert answer["r"].status == 200 and answer["r"].header("x-fledge-version") == "v1", answer


def test_listen_and_admin_listen_accept_the_mapping_form_and_refuse_what_is_wrong():
    base = "routes:\n  - name: chat\n    stable: { version: v1, backends: [127.0.0.1:9001] }\n"
    cases = [("listen: { address: 127.0.0.1:%d, share: true }\nadmin: { listen: { address: 127.0.0.1:%d } }\n"
              % (free_port(), free_port()), 0, "ok"),
             ("listen: { share: true }\n", 1, "listen needs an address"),
             ("listen: { address: 127.0.0.1:8080, shared: true }\n", 1, "shared"),
             ("listen: 127.0.0.1:8080\nadmin: { listen: 127.0.0.1:8080 }\n", 1,
              "listen and admin.listen are the same address (127.0.0.1:8080)")]
    for head, rc, words in cases:
        path = conf_file(head + base)
        try:
            r = subprocess.run([FLEDGE, "check", "-c", path], capture_output=True, text=True, timeout=10)
        finally:
            os.unlink(path)
        assert r.returncode == rc and words in r.stdout + r.stderr, (head, r)
