"""Reloads as a release train: a thousand reloads, each naming a new canary version and new
backend addresses, leave the gateway as large as it was after the first hundred (resident memory,
/metrics, its registries); none is refused, and requests sent between them are answered by the
version and address of the config they met. Backend health outlives a reload that keeps the
address, not one that drops it."""
import http.server
import os
import re
import selectors
import socket
import threading
import time

from harness import Gateway, chat, free_port, request

ALIASES = 200                       # 127.0.0.2 .. 127.0.0.201: loopback addresses, one port


class AliasBackend:
    """A backend on one port of many loopback addresses: it answers any request 200 with a small
    chat completion naming the address it was reached on (x-backend), so each reload can move
    the variants to addresses never named before in its cycle."""

    def __init__(self, aliases=ALIASES):
        self.port = free_port()
        self.listeners = []
        self.selector = selectors.DefaultSelector()
        for i in range(aliases):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.%d" % (2 + i), self.port))
            s.listen(64)
            s.setblocking(False)
            self.selector.register(s, selectors.EVENT_READ)
            self.listeners.append(s)
        self.stopping = False
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def address(self, n):
        return "127.0.0.%d:%d" % (2 + n % len(self.listeners), self.port)

    def accept_loop(self):
        while not self.stopping:
            for key, _ in self.selector.select(0.2):
                try:
                    conn, peer = key.fileobj.accept()
                except OSError:
                    continue
                conn.setblocking(True)
                threading.Thread(target=self.serve, args=(conn, peer), daemon=True).start()

    def serve(self, conn, peer):
        here = "%s:%d" % conn.getsockname()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                body = b'{"object":"chat.completion","choices":[{"index":0,"finish_reason":"stop",' \
                       b'"message":{"role":"assistant","content":"ok"}}],' \
                       b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header("x-backend", here)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        try:
            Handler(conn, peer, None)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join(2)
        for s in self.listeners:
            s.close()
        self.selector.close()


# A short data window: the data monitor keeps one 10-second slice per feature, so that what it
# fills with time is full before reload 100 and only what reloads add is measured.
DATA = "data: { window: 10s, refresh: 1s }\n"


def conf(backend, i, canary=None):
    """Reload i: stable v1 and canary c<i>, each on an address reload i-1 did not name."""
    return (DATA + "routes:\n  - name: chat\n    match: { path_prefix: / }\n"
            "    stable: { version: v1, backends: [%s] }\n"
            "    canary: { version: c%d, backends: [%s], weight: 50 }\n"
            % (backend.address(2 * i), i, canary or backend.address(2 * i + 1)))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def metrics(gw):
    r = request(gw.admin, "GET", "/metrics")
    assert r.status == 200
    return r.body.decode()


def registry(text):
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r'^fledge_registry_entries\{registry="(\w+)"\} (\d+)$', text, re.M)}


def settled(gw, want=None, timeout=10):
    """/metrics once the previous configs are let go: it exports the config's own two versions
    only, and the registries hold just what the config names (by default 2 series, 2 backend
    series, 2 backends); then the resident memory."""
    want = want or {"series": 2, "backend_series": 2, "backends": 2}
    deadline = time.time() + timeout
    while True:
        text = metrics(gw)
        versions = re.findall(r'^fledge_in_flight_requests\{.*version="([^"]*)"', text, re.M)
        if len(versions) == 2 and registry(text) == want:
            return text, rss_kib(gw.pid)
        if time.time() > deadline:
            raise AssertionError("the previous configs were never let go: /metrics exports %d versions (%s...), "
                                 "registries %s, want %s" % (len(versions), versions[:4], registry(text), want))
        time.sleep(0.1)


def send_both(gw, backend, i):
    """One request to each variant (the override header; the test client is trusted): each is
    answered by the version and address reload i named."""
    for variant, version, n in (("stable", "v1", 2 * i), ("canary", "c%d" % i, 2 * i + 1)):
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-fledge-variant": variant}, chat())
        assert r.status == 200, (i, variant, r.status, r.body)
        assert r.header("x-fledge-version") == version, (i, variant, r.headers)
        assert r.header("x-backend") == backend.address(n), (i, variant, r.headers)


def release_train(reloads, measure_from=100):
    """`reloads` reloads with new versions and addresses, a request to each variant after every
    tenth; /metrics and resident memory after the last are within 5% of what they were after
    reload measure_from (memory is not compared under the sanitizers, whose quarantine holds
    freed memory on purpose)."""
    t0 = time.time()
    with AliasBackend() as backend, Gateway(conf(backend, 0)) as gw:
        first = None
        for i in range(1, reloads + 1):
            gw.reload(conf(backend, i), poll=0.005)
            if i % 10 == 0:
                send_both(gw, backend, i)
            if i == measure_from:
                first = settled(gw)
        text, rss = settled(gw)
        lines, first_lines = len(text.splitlines()), len(first[0].splitlines())
        print("      %d reloads in %.1f s: RSS %d -> %d KiB, /metrics %d -> %d lines (after reload %d -> %d)"
              % (reloads, time.time() - t0, first[1], rss, first_lines, lines, measure_from, reloads), flush=True)
        assert 'version="c%d"' % reloads in text and 'version="c%d"' % (reloads - 1) not in text
        assert backend.address(2 * reloads - 1) not in text          # the previous canary's address
        assert abs(lines - first_lines) <= 0.05 * first_lines, (first_lines, lines)
        if "ASAN_OPTIONS" not in os.environ:
            assert rss <= first[1] * 1.05, ("RSS grew", first[1], rss)
        assert "reload of" not in gw.output()


def test_a_thousand_reloads_with_new_versions_and_addresses_leave_memory_and_metrics_flat():
    release_train(int(os.environ.get("FLEDGE_RELOADS", "1000")))


def test_an_ejected_backend_stays_ejected_across_reloads_that_keep_it_and_starts_afresh_once_dropped():
    dead = "127.0.0.1:%d" % free_port()              # nothing listens: every connect is refused
    with AliasBackend() as backend, Gateway(conf(backend, 0, canary=dead)) as gw:
        to_canary = {"x-fledge-variant": "canary"}
        answers = [request(gw.port, "POST", "/v1/chat/completions", to_canary, chat()).status for _ in range(6)]
        assert answers == [502] * 5 + [503], answers
        gw.reload(conf(backend, 1, canary=dead))         # a new canary version on the same address
        assert request(gw.port, "POST", "/v1/chat/completions", to_canary, chat()).status == 503
        assert 'backend="%s"} 0' % dead in metrics(gw)   # fledge_backend_up
        gw.reload(conf(backend, 2))                      # dropped: freed once no request can use it
        settled(gw)
        gw.reload(conf(backend, 3, canary=dead))         # named again: a new entry, not ejected
        assert request(gw.port, "POST", "/v1/chat/completions", to_canary, chat()).status == 502
        assert 'backend="%s"} 1' % dead in metrics(gw)
