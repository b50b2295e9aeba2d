"""What a client sees when something goes wrong: malformed or smuggling requests (400), slow
heads (408), oversized bodies (413) and heads (431), broken backends (502), ejected backends
(503), silent backends (504), retries that stay within the chosen variant, answers cut in the
middle, and that keep-alive reuse and pipelining keep working through all of it.

The backends here are small Python raw-socket servers (not `fledge mock`) so that each can
misbehave in one precise way and count what reached it."""
import http.client
import json
import os
import select
import socket
import struct
import threading
import time

from harness import Gateway, Response, free_port, mock, raw, request, route_yaml


# ---- misbehaving backends -------------------------------------------------------------------

class Backend:
    """A threaded HTTP/1.1 server on a free loopback port that answers in one `mode`:

    ok                 200 JSON {"ok": true, "path": ..., "n": ...}, keep-alive; honours a request
                       header `x-delay: SECONDS` before answering, `x-size: BYTES` to pad the body
                       and `x-status: CODE` to answer CODE with the reason phrase "Whatever"
    reset_mid_body     reads the request, sends a 200 head without a length (ended by close) and
                       part of a body, then resets the connection
    once_then_hang_up  answers a connection's first request like ok; for the next one on it, reads
                       it, works for 0.5 s, then closes without answering
    500                500 JSON, keep-alive
    close              reads the request, then closes without answering
    reset              accepts, then resets the connection at once (SO_LINGER 0)
    garbage            reads the request, answers bytes that are not HTTP, closes
    hang               reads the request, never answers
    headers_then_hang  reads the request, sends a 200 head announcing 100 bytes, then nothing
    partial_body       reads the request, sends a 200 head announcing 100 bytes and 10 of them, closes
    trickle            reads the request, sends a 200 head announcing 6 bytes, then one byte each 0.4 s
    trailers           200, chunked, "hello" then a trailer field after the last chunk, keep-alive

    It counts accepted connections (`accepted`) and complete requests (`requests`, a list of
    (method, path, headers, body)). Use it as a context manager so no thread or socket outlives
    the test."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.accepted = 0
        self.requests = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns = set()
        self._threads = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]

    def paths(self):
        with self._lock:
            return [r[1] for r in self.requests]

    def reset_counts(self):
        with self._lock:
            self.accepted = 0
            self.requests = []

    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(5)
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- internals --

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.add(s)
            if self.mode == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._forget(s)
                continue
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            t.start()
            self._threads.append(t)

    def _forget(self, s):
        with self._lock:
            self._conns.discard(s)
        s.close()

    def _serve(self, s):
        s.settimeout(0.05)
        reader = _Reader(s, self._stop)
        first = True
        try:
            while not self._stop.is_set():
                req = reader.request()
                if req is None:
                    return
                with self._lock:
                    self.requests.append(req)
                    n = len(self.requests)
                if not self._answer(s, req, n, first):
                    return
                first = False
        except OSError:
            pass
        finally:
            self._forget(s)

    def _answer(self, s, req, n, first):
        """Answers one request (the connection's first or not); returns whether the connection
        stays open for another."""
        method, path, headers, _ = req
        if self.mode == "ok" or (self.mode == "once_then_hang_up" and first):
            delay = float(headers.get("x-delay", "0"))
            if delay:
                self._stop.wait(delay)
            status = int(headers.get("x-status", "200"))
            s.sendall(_json_response(status, {"ok": True, "path": path, "n": n,
                                              "pad": "x" * int(headers.get("x-size", "0"))},
                                     None if status in (200, 500) else "Whatever"))
            return True
        if self.mode == "once_then_hang_up":
            self._stop.wait(0.5)
            return False
        if self.mode == "reset_mid_body":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npartial")
            time.sleep(0.1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if self.mode == "500":
            s.sendall(_json_response(500, {"error": "backend exploded"}))
            return True
        if self.mode == "close":
            return False
        if self.mode == "garbage":
            s.sendall(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n\x00\x01\x02")
            return False
        if self.mode == "hang":
            self._stop.wait()
            return False
        if self.mode == "headers_then_hang":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n")
            self._stop.wait()
            return False
        if self.mode == "partial_body":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
                      b'{"partial"')
            return False
        if self.mode == "trickle":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\n")
            for byte in b"slowly":
                if self._stop.wait(0.4):
                    return False
                s.sendall(bytes([byte]))
            return True
        if self.mode == "trailers":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n0\r\nx-checksum: 5d41402a\r\n\r\n")
            return True
        raise ValueError("unknown backend mode %r" % self.mode)


def _json_response(status, obj, reason=None):
    body = json.dumps(obj).encode()
    reason = reason or {200: "OK", 500: "Internal Server Error"}[status]
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
            % (status, reason.encode(), len(body))) + body


class _Reader:
    """Buffered reads from a socket with a short timeout, giving up when `stop` is set."""

    def __init__(self, s, stop):
        self.s, self.stop, self.buf = s, stop, b""

    def _fill(self):
        while not self.stop.is_set():
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return False
            if not data:
                return False
            self.buf += data
            return True
        return False

    def until(self, sep):
        while sep not in self.buf:
            if not self._fill():
                return None
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self):
        """(method, path, headers, body) of the next complete request, or None at EOF/stop."""
        head = self.until(b"\r\n\r\n")
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self.until(b"\r\n")
                if size_line is None:
                    return None
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    if self.until(b"\r\n") is None:
                        return None
                    break
                chunk = self.exactly(size + 2)
                if chunk is None:
                    return None
                body += chunk[:-2]
        elif "content-length" in headers:
            body = self.exactly(int(headers["content-length"]))
            if body is None:
                return None
        return (method, path, headers, body)


def refused_port():
    """A loopback port where nothing listens: connecting to it is refused."""
    return free_port()


# ---- raw client -------------------------------------------------------------------------------

class Cut(Exception):
    """The connection ended before a complete response."""


class Client:
    """One raw client connection to the gateway: send any bytes, read whole responses, and tell
    whether the gateway closed the connection."""

    def __init__(self, port, timeout=3.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        try:
            data = self.s.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _until(self, sep):
        while sep not in self.buf:
            if not self._fill():
                raise Cut("connection closed; had %r" % self.buf[:300])
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _exactly(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise Cut("connection closed after %d of %d body bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self):
        """Reads one complete response (Content-Length or chunked framing)."""
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        headers = {}
        for line in head[1:]:
            if line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")
                    break
                body += self._exactly(size + 2)[:-2]
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return Response(status, headers, body)

    def closed(self, wait=2.0):
        """True when the gateway closes the connection (FIN or reset) within `wait` seconds and
        sends nothing more first; False when it stays open that long."""
        if self.eof:
            return True
        self.s.settimeout(wait)
        try:
            extra = self.s.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        assert extra == b"", "unexpected bytes after the response: %r" % extra[:200]
        return True

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def one_shot(gw, data, timeout=3.0, expect_close=True):
    """Sends `data` on a fresh connection to the gateway; returns (the first response, whether the
    connection was then closed). Says so when the gateway process died instead of answering."""
    with Client(gw.port, timeout) as c:
        c.send(data)
        try:
            r = c.response()
        except Cut as e:
            time.sleep(0.1)
            if gw.p.poll() is not None:
                raise AssertionError("the gateway died (exit status %s) on %r:\n%s"
                                     % (gw.p.returncode, data[:200], gw.output()[-1000:]))
            raise AssertionError("no answer to %r: %s" % (data[:200], e))
        return r, (c.closed() if expect_close else None)


# ---- configs and assertions ---------------------------------------------------------------------

def _addrs(b):
    bs = b if isinstance(b, (list, tuple)) else [b]
    return "[" + ", ".join("127.0.0.1:%d" % (x.port if hasattr(x, "port") else x) for x in bs) + "]"


def routes(table, extra=""):
    """A config body with one route per path prefix: {prefix: stable backend(s)} or
    {prefix: (stable backend(s), canary backend(s), canary weight)}."""
    text = "routes:\n"
    for i, (prefix, spec) in enumerate(table.items()):
        stable, canary, weight = spec if isinstance(spec, tuple) else (spec, None, 0)
        text += ("  - name: r%d\n    match: { path_prefix: %s }\n    user_key: [header:x-user-id, ip]\n"
                 "    stable: { version: v1, backends: %s }\n" % (i, prefix, _addrs(stable)))
        if canary is not None:
            text += "    canary: { version: v2, backends: %s, weight: %s }\n" % (_addrs(canary), weight)
    return text + extra


def assert_error(r, status, etype, request_id=None, message=None):
    """The gateway's own error answer: the status, a JSON body {"error": {"type", "message"}}
    (message, when given, exactly), and an x-request-id (the client's own when it sent a sane one).
    A message never names the HTTP parser's internals."""
    assert r.status == status, (r.status, r.headers, r.body)
    assert r.header("content-type") == "application/json", r.headers
    err = r.json()["error"]
    assert err["type"] == etype, err
    assert isinstance(err["message"], str) and err["message"], err
    assert message is None or err["message"] == message, err
    for internal in ("callback", "on_", "HPE_", "content-length header"):
        assert internal not in err["message"], err
    assert err.get("code", status) == status, err
    assert r.header("x-request-id"), r.headers
    if request_id is not None:
        assert r.header("x-request-id") == request_id, r.headers
    return err


def assert_serves(gw, backend=None, path="/v1/models"):
    """The gateway still answers a normal request (and, given the backend, it reached it)."""
    before = len(backend.requests) if backend else 0
    r = request(gw.port, "GET", path, timeout=5)
    assert r.status == 200, (r.status, r.body)
    assert r.json()["ok"] is True and r.json()["path"] == path, r.body
    if backend:
        assert backend.paths()[before:] == [path], backend.paths()


def settle():
    """Gives anything the gateway might (wrongly) still forward time to reach a backend."""
    time.sleep(0.15)


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


# ---- 400 -----------------------------------------------------------------------------------------

def test_malformed_request_lines_and_headers_get_400_invalid_request_in_the_gateways_words_and_the_connection_closed():
    bad = [
        (b"HELLO\r\n\r\n", "unknown method"),                                        # no method/URL/version
        (b"FROB / HTTP/1.1\r\nHost: a\r\n\r\n", "unknown method"),
        (b"GET / HTTP/1.1 trailing\r\nHost: a\r\n\r\n", "request line is not HTTP/1.x"),  # junk after the version
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, "unknown method"),  # a TLS ClientHello
        (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", "invalid header name character"),       # header without a colon
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n", "invalid header name character"),  # space in a name
        (b"GET / HTTP/1.1\r\nHost: a\r\n: no-name\r\n\r\n", "invalid header name character"),   # empty name
        (b"GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", "invalid header name character"),     # separator
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", "invalid header value character"),  # NUL in a value
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", "invalid Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
    ]
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        for data, words in bad:
            r, closed = one_shot(gw, data)
            assert_error(r, 400, "invalid_request", message="malformed HTTP request: " + words)
            assert closed, "connection left open after a 400 for %r" % data
            settle()
            assert be.requests == [], (data, be.paths())
            assert_serves(gw, be)
            be.reset_counts()


def test_garbage_after_a_keep_alive_answer_still_gets_its_400():
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        with Client(gw.port) as c:
            c.send(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
            assert c.response().status == 200
            c.send(b"\x16\x03\x01 not http at all\r\n\r\n")     # the next "request" on the connection
            assert_error(c.response(), 400, "invalid_request")
            assert c.closed()


def test_a_request_line_whose_protocol_is_not_http_gets_400():
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        for version in (b"HTTX/1.1", b"XTTP/1.1", b"HTTP-1.1"):
            r, closed = one_shot(gw, b"GET / " + version + b"\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert_error(r, 400, "invalid_request", message="malformed HTTP request: request line is not HTTP/1.x")
            assert closed
            settle()
            assert be.requests == [], "%r was forwarded as %r" % (version, be.requests)
            assert_serves(gw, be)
            be.reset_counts()


def test_a_control_character_at_the_start_of_a_header_value_gets_400_like_anywhere_else():
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        for value in (b"a\x00b", b"\x00", b"\x00abc", b" \x01zz", b"\x7f", b"\x1b[31m"):
            r, closed = one_shot(gw, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-A: " + value + b"\r\n\r\n")
            assert_error(r, 400, "invalid_request")
            assert closed
            settle()
            assert be.requests == [], "header value %r was forwarded as %r" % (value, be.requests[0][2])
            assert_serves(gw, be)
            be.reset_counts()


def _assert_smuggling_refused(gw, be, data, words=None):
    r, closed = one_shot(gw, data)
    assert_error(r, 400, "invalid_request", message=words and "malformed HTTP request: " + words)
    assert closed, "connection left open after refusing %r" % data
    settle()
    assert "/smuggled" not in be.paths(), "smuggled request reached the backend: %r" % data
    assert be.requests == [], "a request with ambiguous framing reached the backend: %r %r" % (data, be.paths())
    assert_serves(gw, be)
    be.reset_counts()


def test_content_length_together_with_transfer_encoding_is_refused_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        body = b"0\r\n\r\n" + SMUGGLED
        both = "both Content-Length and Transfer-Encoding"
        _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n" % len(body) + body, both)
        _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                  b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED, both)


def test_two_different_content_lengths_are_refused_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, "more than one Content-Length")
        _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                                  b"Content-Length: 0\r\n\r\n" % len(SMUGGLED) + SMUGGLED, "more than one Content-Length")


def test_a_bad_chunk_size_is_refused_in_the_gateways_words_and_the_connection_closed():
    """A chunk size that is not hex, or too large to count, is refused for what it is: the client
    is told what it actually sent wrong."""
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        for size, words in ((b"zz", "invalid chunk size"), (b"-1", "invalid chunk size"),
                            (b"ffffffffffffffffffff", "chunk size too large"), (b" 5", "invalid chunk size")):
            _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      + size + b"\r\nhello\r\n0\r\n\r\n" + SMUGGLED, words)


def test_whitespace_before_the_colon_is_refused_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n"
                                  b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED, "invalid header name character")
        _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n" + SMUGGLED,
                                  "invalid header name character")


def test_transfer_encoding_other_than_a_single_chunked_is_refused_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        for te in (b"gzip", b"identity", b"xchunked", b"chunked, identity", b"gzip, chunked"):
            _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + te
                                      + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
                                      "Transfer-Encoding other than chunked")
        _assert_smuggling_refused(gw, be, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
                                  "more than one Transfer-Encoding")


def test_the_status_line_carries_rfc_9110s_reason_phrase_whatever_the_backend_wrote():
    """The gateway writes its own status line: a backend's phrase is not passed on, so clients see
    one spelling per code, and a code without a phrase of its own gets its class's."""
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        for code, phrase in ((201, b"Created"), (422, b"Unprocessable Content"), (429, b"Too Many Requests"),
                             (299, b"Successful"), (460, b"Client Error")):
            answer = raw(gw.port, b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Status: %d\r\n"
                                  b"Connection: close\r\n\r\n" % code)
            assert answer.startswith(b"HTTP/1.1 %d %s\r\n" % (code, phrase)), answer[:200]
        answer = raw(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:200]     # and its own answers


# ---- 408 -----------------------------------------------------------------------------------------

def test_a_request_head_not_complete_within_timeouts_header_gets_408_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}, "timeouts: { header: 1s }\n"), workers=1) as gw:
        # a head that stops half-way
        with Client(gw.port, timeout=5) as c:
            t0 = time.time()
            c.send(b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Partial: yes\r\n")
            r = c.response()
            took = time.time() - t0
            assert_error(r, 408, "timeout")
            assert 0.8 <= took <= 2.5, took
            assert c.closed()
        # a head trickled one line at a time: the deadline is for the whole head, not per line
        with Client(gw.port, timeout=5) as c:
            t0 = time.time()
            c.send(b"GET /v1/models HTTP/1.1\r\n")
            for i in range(20):
                if select.select([c.s], [], [], 0.2)[0]:
                    break                          # the gateway answered (or closed)
                c.send(b"X-Slow-%d: x\r\n" % i)
            r = c.response()
            took = time.time() - t0
            assert_error(r, 408, "timeout")
            assert 0.8 <= took <= 2.5, "408 came after %.1fs of trickling" % took
            assert c.closed()
        settle()
        assert be.requests == [], be.paths()
        assert_serves(gw, be)


# ---- 413 -----------------------------------------------------------------------------------------

def test_a_content_length_over_limits_body_bytes_gets_413_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}, "limits: { body_bytes: 1000 }\n"), workers=1) as gw:
        r, closed = one_shot(gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nx-request-id: big-1\r\n"
                             b"Content-Length: 1001\r\n\r\n")
        err = assert_error(r, 413, "request_too_large", request_id="big-1")
        assert "1000" in err["message"], err
        assert closed
        settle()
        assert be.requests == [], be.paths()
        # exactly at the limit is fine
        r = request(gw.port, "POST", "/v1/chat/completions", body=b"x" * 1000)
        assert r.status == 200, (r.status, r.body)
        assert be.requests[-1][3] == b"x" * 1000
        assert_serves(gw, be)


def test_a_chunked_body_growing_over_limits_body_bytes_gets_413_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}, "limits: { body_bytes: 1000 }\n"), workers=1) as gw:
        # all at once
        chunk = b"258\r\n" + b"a" * 600 + b"\r\n"
        r, closed = one_shot(gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nx-request-id: big-2\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + chunk + chunk + b"0\r\n\r\n")
        assert_error(r, 413, "request_too_large", request_id="big-2")
        assert closed
        # the second chunk arriving later, after the first went on its way
        with Client(gw.port) as c:
            c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nx-request-id: big-3\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + chunk)
            time.sleep(0.3)
            c.send(chunk)
            assert_error(c.response(), 413, "request_too_large", request_id="big-3")
            assert c.closed()
        settle()
        assert be.requests == [], "an over-limit body was delivered as a complete request: %r" % be.paths()
        # a chunked body within the limit goes through, de-chunked by the backend to the same bytes
        ok = b"1f4\r\n" + b"b" * 500 + b"\r\n1f4\r\n" + b"c" * 500 + b"\r\n0\r\n\r\n"
        r, _ = one_shot(gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + ok)
        assert r.status == 200, (r.status, r.body)
        assert be.requests[-1][3] == b"b" * 500 + b"c" * 500
        assert_serves(gw, be)


# ---- 431 -----------------------------------------------------------------------------------------

def test_too_many_headers_get_431_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}, "limits: { headers: 10 }\n"), workers=1) as gw:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(14))
        r, closed = one_shot(gw, b"GET /v1/models HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
        assert_error(r, 431, "request_too_large")
        assert closed
        # ten headers are still fine
        few = b"".join(b"X-H%d: v\r\n" % i for i in range(8))
        r, _ = one_shot(gw, b"GET /v1/models HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + few + b"\r\n")
        assert r.status == 200, (r.status, r.body)
        settle()
        assert be.paths() == ["/v1/models"], be.paths()
        assert_serves(gw, be)


def test_a_head_over_limits_header_bytes_gets_431_and_the_connection_closed():
    with Backend() as be, Gateway(routes({"/": be}, "limits: { header_bytes: 2048 }\n"), workers=1) as gw:
        r, closed = one_shot(gw, b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n")
        assert_error(r, 431, "request_too_large")
        assert closed
        # many small headers adding up over the limit count too
        many = b"".join(b"X-H%03d: %s\r\n" % (i, b"v" * 40) for i in range(60))
        r, closed = one_shot(gw, b"GET /v1/models HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
        assert_error(r, 431, "request_too_large")
        assert closed
        settle()
        assert be.requests == [], be.paths()
        r = request(gw.port, "GET", "/v1/models", headers={"x-medium": "v" * 1500})
        assert r.status == 200, (r.status, r.body)
        assert_serves(gw, be)


# ---- 502 -----------------------------------------------------------------------------------------

def test_a_backend_that_refuses_resets_closes_or_sends_garbage_gets_502_upstream_error():
    dead = refused_port()
    with Backend() as ok, Backend("reset") as reset, Backend("close") as close, Backend("garbage") as garbage, \
            Gateway(routes({"/": ok, "/refuse": dead, "/reset": reset, "/close": close, "/garbage": garbage},
                           "timeouts: { connect: 1s }\n"), workers=1) as gw:
        cases = [("/refuse", dead, "refused the connection", None),
                 ("/reset", reset.port, "the connection before a complete answer", None),
                 ("/close", close.port, "closed the connection before a complete answer", None),
                 ("/garbage", garbage.port, "sent a malformed answer", "status line is not HTTP/1.x")]
        for i, (path, port, words, detail) in enumerate(cases):
            t0 = time.time()
            rid = "req-502-%d" % i
            r = request(gw.port, "POST", path + "/v1/chat/completions", headers={"x-request-id": rid},
                        body={"model": "m"}, timeout=5)
            assert time.time() - t0 < 2.0, (path, time.time() - t0)
            err = assert_error(r, 502, "upstream_error", request_id=rid)
            # the client learns what failed and its request id, never the backend's address...
            assert err["message"].startswith("the stable backend ") and words in err["message"], (path, err)
            assert err["message"].endswith("(request %s)" % rid), err
            assert b"127.0.0.1" not in r.body and str(port).encode() not in r.body, (path, r.body)
            # ...which the log has, with the cause, under the same request id
            line = [l for l in gw.output().splitlines() if "(request %s)" % rid in l]
            assert line and "backend 127.0.0.1:%d" % port in line[0], (path, gw.output()[-2000:])
            assert detail is None or detail in line[0], (path, line)
            assert_serves(gw, ok)
        assert len(close.requests) == 1 and len(garbage.requests) == 1     # the request did go out
        # a generated request id when the client sends none
        r = request(gw.port, "GET", "/refuse/x")
        assert_error(r, 502, "upstream_error")
        assert r.header("x-request-id") not in ("", "-"), r.headers


# ---- 503 -----------------------------------------------------------------------------------------

def test_a_backend_refusing_5_times_is_ejected_and_its_variant_answers_503_no_healthy_backend():
    dead = refused_port()
    with Backend() as ok, Gateway(routes({"/": ok, "/dead": dead}, "timeouts: { connect: 1s }\n"), workers=2) as gw:
        answers = [request(gw.port, "GET", "/dead/v1/models", timeout=5) for _ in range(7)]
        assert [r.status for r in answers] == [502, 502, 502, 502, 502, 503, 503], [(r.status, r.body) for r in answers]
        for r in answers[:5]:
            assert_error(r, 502, "upstream_error")
        for r in answers[5:]:
            err = assert_error(r, 503, "no_healthy_backend")
            assert "no healthy backend" in err["message"], err
        assert_serves(gw, ok)


def test_a_backend_answering_500_is_relayed_as_is_and_after_5_in_a_row_ejected():
    with Backend() as ok, Backend("500") as bad, Gateway(routes({"/": ok, "/bad": bad}), workers=1) as gw:
        answers = [request(gw.port, "GET", "/bad/v1/models") for _ in range(7)]
        assert [r.status for r in answers] == [500] * 5 + [503] * 2, [(r.status, r.body) for r in answers]
        for r in answers[:5]:
            assert r.json() == {"error": "backend exploded"}, r.body     # the backend's own answer
        for r in answers[5:]:
            assert_error(r, 503, "no_healthy_backend")
        assert len(bad.requests) == 5
        assert_serves(gw, ok)


# ---- 504 -----------------------------------------------------------------------------------------

def test_a_backend_silent_after_the_request_gets_504_after_timeouts_first_byte():
    with Backend() as ok, Backend("hang") as hang, \
            Gateway(routes({"/": ok, "/hang": hang}, "timeouts: { first_byte: 1s }\n"), workers=1) as gw:
        t0 = time.time()
        r = request(gw.port, "POST", "/hang/v1/chat/completions", headers={"x-request-id": "slow-1"},
                    body={"model": "m"}, timeout=5)
        took = time.time() - t0
        err = assert_error(r, 504, "timeout", request_id="slow-1")
        assert err["message"] == "the stable backend sent no answer within 1000 ms (request slow-1)", err
        assert str(hang.port) not in err["message"], err
        assert "backend 127.0.0.1:%d" % hang.port in gw.output(), gw.output()[-2000:]
        assert 0.8 <= took <= 2.5, took
        assert len(hang.requests) == 1
        assert_serves(gw, ok)


# connect timeouts: see test_a_connect_that_hangs_... at the end (a listener with a full accept
# queue makes loopback connects hang).


# ---- retries -------------------------------------------------------------------------------------

def test_a_refused_connect_is_retried_on_another_backend_of_the_same_variant():
    dead = refused_port()
    with Backend() as good, Backend() as canary, \
            Gateway(routes({"/": ([dead, good], canary, 0)}, "timeouts: { connect: 1s }\n"), workers=1) as gw:
        for i in range(12):
            body = {"model": "m", "i": i, "pad": "p" * 100}
            r = request(gw.port, "POST", "/v1/chat/completions", headers={"x-user-id": "u%d" % i}, body=body)
            assert r.status == 200, (i, r.status, r.body)
            assert r.header("x-fledge-variant") == "stable", r.headers
            assert json.loads(good.requests[-1][3]) == body      # the retried request carries its body
        assert len(good.requests) == 12
        assert canary.requests == [] and canary.accepted == 0, canary.paths()


def test_a_failed_request_is_never_retried_onto_the_canary():
    dead = refused_port()
    with Backend() as canary, \
            Gateway(routes({"/": (dead, canary, 0)}, "timeouts: { connect: 1s }\n"), workers=1) as gw:
        statuses = [request(gw.port, "GET", "/v1/models", headers={"x-user-id": "u%d" % i}).status for i in range(7)]
        assert statuses == [502] * 5 + [503] * 2, statuses
        assert canary.requests == [] and canary.accepted == 0, canary.paths()


# ---- failures mid-answer -----------------------------------------------------------------------

def test_a_backend_closing_mid_body_cuts_the_client_connection_instead_of_hanging():
    with Backend() as ok, Backend("partial_body") as partial, Gateway(routes({"/": ok, "/partial": partial}), workers=1) as gw:
        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        t0 = time.time()
        c.request("GET", "/partial/v1/models")
        r = c.getresponse()
        assert r.status == 200            # the head was already relayed
        try:
            data = r.read()
            raise AssertionError("read a complete body of %d bytes from a cut answer: %r" % (len(data), data))
        except http.client.IncompleteRead as e:
            assert e.partial == b'{"partial"', e.partial
        assert time.time() - t0 < 2.0
        c.close()
        assert_serves(gw, ok)


def requests_by_code(gw, code):
    text = request(gw.admin, "GET", "/metrics").body.decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith("fledge_requests_total{") and 'code="%s"' % code in l)


def test_a_cut_answer_counts_as_a_502_not_as_the_200_its_head_said():
    with Backend() as ok, Backend("partial_body") as partial, Gateway(routes({"/": ok, "/partial": partial}), workers=1) as gw:
        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        c.request("GET", "/partial/v1/models")
        r = c.getresponse()
        try:
            r.read()
        except http.client.IncompleteRead:
            pass
        c.close()
        time.sleep(0.2)
        assert requests_by_code(gw, 502) == 1 and requests_by_code(gw, 200) == 0   # error_rate sees it


def test_a_reset_in_an_answer_ended_by_close_is_a_cut_not_a_clean_end():
    with Backend() as ok, Backend("reset_mid_body") as rst, Gateway(routes({"/": ok, "/rst": rst}), workers=1) as gw:
        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        c.request("GET", "/rst/v1/models")
        r = c.getresponse()
        assert r.status == 200
        try:
            data = r.read()
            raise AssertionError("a reset answer read as complete: %r" % data)
        except http.client.IncompleteRead as e:
            assert e.partial == b"partial", e.partial
        c.close()
        time.sleep(0.2)
        assert requests_by_code(gw, 502) == 1, request(gw.admin, "GET", "/metrics").body.decode()
        assert_serves(gw, ok)


def test_a_client_not_reading_a_closing_answer_does_no_harm_to_the_gateway():
    # A closing answer queued behind a big one the client never reads: once that exchange is over,
    # its upstream timer must not fire on it (it once read a config already let go, and crashed).
    # The big one must fit in what the kernel takes plus the gateway's 1 MiB, so sizes are swept.
    with Backend() as be, Gateway(routes({"/": be}, "timeouts: { first_byte: 1s }\n"), workers=1) as gw:
        socks = []
        for size in range(1500000, 5000001, 500000):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", gw.port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\nx-size: %d\r\n\r\n" % size +
                      b"GET /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            socks.append(s)
        time.sleep(1.5)                                  # past first_byte, nobody reading
        try:
            assert be.paths().count("/small") > 0, be.paths()      # the case arose
            assert gw.p.poll() is None, gw.output()
            assert_serves(gw, None)
        finally:
            for s in socks:
                s.close()


def test_requests_pipelined_after_an_answer_that_closes_never_reach_the_backend():
    with Backend() as be, Gateway(routes({"/api": be}), workers=1) as gw:
        with Client(gw.port) as c:
            c.send(b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
                   b"POST /api/v1/chat HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
            assert_error(c.response(), 404, "not_found")
            assert c.closed()
        settle()
        assert be.paths() == [], be.paths()
        text = request(gw.admin, "GET", "/metrics").body.decode()
        assert 'code="499"' not in text, [l for l in text.splitlines() if "499" in l]


def test_a_slow_upload_is_not_cut_while_its_bytes_keep_coming():
    with Backend() as be, Gateway(routes({"/": be}, "timeouts: { first_byte: 1s, idle: 1s }\n"), workers=1) as gw:
        with Client(gw.port, timeout=6) as c:
            c.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n")
            for byte in b"12345678":                     # 2.4 s in all, never 1 s without a byte
                time.sleep(0.3)
                c.send(bytes([byte]))
            r = c.response()
            assert r.status == 200, (r.status, r.body)
        assert be.requests[-1][3] == b"12345678"


def test_a_backend_that_stops_taking_an_upload_gets_the_blame_not_the_client():
    deaf = socket.socket()                               # connections complete in the backlog, nothing is read
    deaf.bind(("127.0.0.1", 0))
    deaf.listen(8)
    try:
        with Gateway(routes({"/": deaf.getsockname()[1]}, "timeouts: { idle: 1s }\n"), workers=1) as gw:
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
            size = 64 << 20
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            s.settimeout(0.5)
            piece, sent = b"x" * 65536, 0
            try:
                while sent < size:
                    sent += s.send(piece)
            except socket.timeout:
                pass                                     # the gateway stopped reading: the backend is full
            s.settimeout(5)
            head = s.recv(65536)
            s.close()
            assert head.startswith(b"HTTP/1.1 504"), head[:200]
            text = request(gw.admin, "GET", "/metrics").body.decode()
            assert any(l.startswith("fledge_upstream_errors_total{") and 'kind="timeout"' in l and not l.endswith(" 0")
                       for l in text.splitlines()), [l for l in text.splitlines() if "upstream_errors" in l]
    finally:
        deaf.close()


def test_a_request_the_backend_had_is_not_sent_again_when_it_hangs_up_later():
    with Backend("once_then_hang_up") as be, Gateway(routes({"/": be}), workers=1) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        conn.request("POST", "/v1/chat", body=b"{}", headers={"content-type": "application/json"})
        assert conn.getresponse().read() and True
        conn.request("POST", "/v1/chat", body=b"{}", headers={"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status == 502, r.status
        conn.close()
        settle()
        assert len(be.requests) == 2, be.paths()         # once each: the costly one was not repeated
        text = request(gw.admin, "GET", "/metrics").body.decode()
        assert any(l.startswith("fledge_upstream_errors_total{") and 'kind="reset"' in l and not l.endswith(" 0")
                   for l in text.splitlines()), [l for l in text.splitlines() if "upstream_errors" in l]


def test_a_backend_stalling_mid_body_is_cut_after_timeouts_idle():
    with Backend() as ok, Backend("headers_then_hang") as stall, \
            Gateway(routes({"/": ok, "/stall": stall}, "timeouts: { idle: 1s }\n"), workers=1) as gw:
        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        t0 = time.time()
        c.request("GET", "/stall/v1/models")
        r = c.getresponse()
        assert r.status == 200
        try:
            r.read()
            raise AssertionError("a stalled answer was read as complete")
        except http.client.IncompleteRead as e:
            assert e.partial == b""
        assert 0.8 <= time.time() - t0 <= 2.5, time.time() - t0
        c.close()
        assert_serves(gw, ok)


def test_a_backend_trickling_byte_by_byte_is_relayed_whole_while_others_are_served():
    with Backend() as ok, Backend("trickle") as slow, \
            Gateway(routes({"/": ok, "/slow": slow}, "timeouts: { idle: 1s }\n"), workers=1) as gw:
        got = {}

        def fetch():
            c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            c.request("GET", "/slow/v1/models")
            r = c.getresponse()
            got["status"], got["body"] = r.status, r.read()
            c.close()

        t = threading.Thread(target=fetch)
        t0 = time.time()
        t.start()
        time.sleep(0.5)
        for _ in range(10):                  # the same worker answers others at once meanwhile
            t1 = time.time()
            assert_serves(gw, ok)
            assert time.time() - t1 < 0.5
        t.join(10)
        # each byte came within timeouts.idle, so the answer is whole, not cut at 1 s
        assert got == {"status": 200, "body": b"slowly"}, got
        assert 2.0 <= time.time() - t0 <= 5, time.time() - t0


# ---- keep-alive and pipelining -------------------------------------------------------------------

def test_keep_alive_requests_reuse_backend_connections():
    with Backend() as be, Gateway(routes({"/": be}), workers=1) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        for i in range(50):
            r = request(gw.port, "GET", "/v1/models?i=%d" % i, conn=conn)
            assert r.status == 200 and r.json()["path"] == "/v1/models?i=%d" % i, (r.status, r.body)
        conn.close()
        assert len(be.requests) == 50
        assert be.accepted <= 2, "50 requests took %d backend connections" % be.accepted
        # the pool is shared by the worker's clients, not tied to one client connection
        for _ in range(5):
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
            for _ in range(4):
                assert request(gw.port, conn=conn).status == 200
            conn.close()
        assert len(be.requests) == 70
        assert be.accepted <= 2, "70 requests took %d backend connections" % be.accepted


def test_idle_backend_connections_are_closed_after_timeouts_idle():
    with Backend() as be, Gateway(routes({"/": be}, "timeouts: { idle: 1s }\n"), workers=1) as gw:
        for _ in range(5):
            assert_serves(gw, be)
        with be._lock:
            assert len(be._conns) >= 1                 # pooled for the next request
        deadline = time.time() + 4
        while time.time() < deadline:
            with be._lock:
                if not be._conns:
                    break
            time.sleep(0.1)
        with be._lock:
            assert not be._conns, "the gateway kept idle backend connections past timeouts.idle"
        assert_serves(gw, be)                          # and connects afresh when needed


def test_pipelined_requests_in_one_write_are_answered_in_order_on_the_same_connection():
    dead = refused_port()
    with Backend() as be, Gateway(routes({"/": be, "/dead": dead}), workers=1) as gw:
        with Client(gw.port) as c:
            # the first answer is the slower one: order must still be kept
            c.send(b"GET /first HTTP/1.1\r\nHost: a\r\nx-delay: 0.3\r\n\r\n"
                   b"POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                   b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
            got = [c.response() for _ in range(3)]
            assert [r.status for r in got] == [200, 200, 200], [(r.status, r.body) for r in got]
            assert [r.json()["path"] for r in got] == ["/first", "/second", "/third"]
            assert not c.closed(wait=0.3)
            # an error answer in the middle of a pipeline keeps its place too
            c.send(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /dead/b HTTP/1.1\r\nHost: a\r\n\r\n"
                   b"GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            a, b = c.response(), c.response()
            assert a.status == 200 and a.json()["path"] == "/a", (a.status, a.body)
            assert_error(b, 502, "upstream_error")
            if b.header("connection") == "close":    # the gateway may end the pipeline at an error,
                assert c.closed()                     # but then it says so and /c is not run
                expected = ["/first", "/second", "/third", "/a"]
            else:
                cc = c.response()
                assert cc.status == 200 and cc.json()["path"] == "/c", (cc.status, cc.body)
                assert c.closed()
                expected = ["/first", "/second", "/third", "/a", "/c"]
        assert be.paths() == expected, be.paths()
        assert be.requests[1][3] == b"hello"
        assert_serves(gw, be)


class Blackhole:
    """A port whose accept queue is full: connects to it hang until the client gives up."""

    def __init__(self):
        import socket as _s
        self.listener = _s.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(2):
            f = _s.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for f in self.fillers:
            f.close()
        self.listener.close()


def test_a_connect_that_hangs_gets_504_after_timeouts_connect_or_moves_to_another_backend():
    import time as _t
    with Blackhole() as hole, Backend() as be:
        yaml = "timeouts: { connect: 1s }\n" + routes({"/": hole})
        with Gateway(yaml, workers=1) as gw:
            t0 = _t.time()
            r, _ = one_shot(gw, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", expect_close=False)
            err = assert_error(r, 504, "timeout")
            assert "timed out" in err["message"], err
            assert 0.9 < _t.time() - t0 < 3
        two = ("timeouts: { connect: 1s }\nroutes:\n  - name: r\n"
               "    stable: { version: v1, backends: [127.0.0.1:%d, 127.0.0.1:%d] }\n" % (hole.port, be.port))
        with Gateway(two, workers=1) as gw:
            for _ in range(4):
                r, _ = one_shot(gw, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", expect_close=False)
                assert r.status == 200, r.status


def test_the_largest_max_connections_means_no_limit_not_a_wrapped_one():
    # the per-worker share was computed in 32 bits: 4294967295 + workers - 1 wrapped to 0 or 1
    with mock() as m, Gateway("limits: { max_connections: 4294967295 }\n" + route_yaml(m), workers=2) as gw:
        for _ in range(4):
            assert request(gw.port, "GET", "/v1/models").status == 200


def test_connections_beyond_limits_max_connections_get_503_and_the_others_keep_working():
    with mock() as m, Gateway("limits: { max_connections: 20 }\n" + route_yaml(m), workers=2) as gw:
        conns = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(40)]
        try:
            time.sleep(0.5)
            held, refused = [], 0
            for s in conns:                              # nothing was sent: only a refusal answers
                s.settimeout(0.05)
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    held.append(s)
                    continue
                assert data.startswith(b"HTTP/1.1 503") and b'"type":"overloaded"' in data, data
                refused += 1
            # each worker keeps its share of 10; the kernel spreads the 40 unevenly over the two
            assert len(held) <= 20 and refused >= 20, (len(held), refused)
            held[0].settimeout(5)
            held[0].sendall(b"GET /v1/models HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            for s in conns:
                s.close()
        time.sleep(0.3)                                  # closed connections free their places
        for _ in range(5):
            assert request(gw.port, "GET", "/v1/models").status == 200


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])        # utime + stime


def test_out_of_descriptors_the_gateway_sheds_new_connections_without_spinning_and_recovers():
    import resource
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1), workers=1) as gw:
        assert request(gw.port, "GET", "/v1/models").status == 200
        in_use = len(os.listdir("/proc/%d/fd" % gw.pid))
        old = resource.prlimit(gw.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(gw.pid, resource.RLIMIT_NOFILE, (in_use + 3, old[1]))   # the soft limit only
        conns = []
        try:
            for _ in range(20):                     # more than it has descriptors for
                conns.append(socket.create_connection(("127.0.0.1", gw.port), timeout=2))
            time.sleep(0.5)
            before = _cpu_ticks(gw.pid)
            time.sleep(1.0)
            # a connection left in the backlog would wake a level-triggered poll for ever: ~100 ticks/s
            assert _cpu_ticks(gw.pid) - before < 30, "the gateway spins while out of descriptors"
            shed = 0
            for s in conns:
                s.settimeout(0.2)
                try:
                    if s.recv(1) == b"":
                        shed += 1
                except (socket.timeout, ConnectionResetError):
                    pass
            assert shed > 0, "no connection was let go"
        finally:
            for s in conns:
                s.close()
            resource.prlimit(gw.pid, resource.RLIMIT_NOFILE, old)
        time.sleep(0.3)
        assert request(gw.port, "GET", "/v1/models").status == 200


def test_trailers_after_a_chunked_answer_or_upload_do_not_break_the_exchange():
    # trailer fields come after the head's table went back: they are read and dropped
    with Backend("trailers") as tr, Backend() as ok, \
            Gateway(routes({"/": ok, "/tr": tr}), workers=1) as gw:
        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        for _ in range(2):                              # the connection stays usable
            c.request("GET", "/tr/v1/models")
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"hello")
        c.close()
        answer = raw(gw.port, b"POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"2\r\n{}\r\n0\r\nx-checksum: 99\r\n\r\n", timeout=5)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert requests_by_code(gw, 200) == 3 and requests_by_code(gw, 502) == 0
