"""Bodies in both directions are streamed, not buffered: SSE events arrive as the model emits
them, chunked uploads reach the backend intact, and SIGTERM lets a stream in flight finish."""
import json
import signal
import socket
import time

from harness import CaptureBackend, Gateway, mock, request, route_yaml, chat


def read_to_close(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def sse_event_times(port, body):
    """POSTs a streaming chat request; returns (seconds to each `data:` event, raw text)."""
    payload = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload))
    times, buf, text = [], b"", b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        now = time.monotonic() - t0
        text += chunk
        times += [now] * chunk.count(b"data: ")
    s.close()
    return times, text.decode(errors="replace")


def test_sse_events_arrive_as_they_are_produced_with_first_token_time_preserved():
    with mock("--ttft-ms", 300, "--tokens-per-s", 20, "--output-tokens", 10, model="m-v1") as v1, \
            Gateway(route_yaml(v1)) as gw:
        direct, _ = sse_event_times(v1.port, chat(stream=True))
        through, text = sse_event_times(gw.port, chat(stream=True))
        assert "data: [DONE]" in text and "x-fledge-variant: stable" in text.lower()
        assert len(through) == len(direct) >= 11, (len(through), len(direct))
        # the first token is not held back: same TTFT as going direct, give or take scheduling noise
        assert through[0] - direct[0] < 0.05, (through[0], direct[0])
        assert through[0] < 0.4
        # and the events keep their spacing (20 tokens/s → ~50 ms apart), not one burst at the end
        assert through[-2] - through[0] > 0.35, through


def chunked_post(port, path, pieces, pause=0.05, headers=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\nConnection: close\r\n" + headers + b"\r\n")
    for p in pieces:
        s.sendall(b"%x\r\n%s\r\n" % (len(p), p))
        time.sleep(pause)
    s.sendall(b"0\r\n\r\n")
    out = read_to_close(s)
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    headers = dict(l.split(b": ", 1) for l in head.split(b"\r\n")[1:])
    return int(head.split(b" ")[1]), {k.decode().lower(): v.decode() for k, v in headers.items()}, body


def test_chunked_upload_reaches_the_backend_intact():
    body = json.dumps(chat(user="chunky")).encode()
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1, user_key="[json:user, ip]")) as gw:
        status, headers, _ = chunked_post(gw.port, b"/v1/chat/completions", pieces, pause=0.01)
        assert status == 200
        assert int(headers["x-mock-body-bytes"]) == len(body)
        assert headers["x-mock-saw-user"] == "chunky"


def test_large_chunked_upload_is_streamed_through_unchanged():
    blob = bytes(range(256)) * 4096 * 4            # 4 MiB, every byte value
    pieces = [blob[i:i + 65536] for i in range(0, len(blob), 65536)]
    with CaptureBackend() as be, Gateway(route_yaml(be.port)) as gw:
        status, _, _ = chunked_post(gw.port, b"/upload", pieces, pause=0)
        assert status == 200
        assert be.bodies[-1] == blob


def test_sigterm_lets_a_stream_in_flight_finish_and_refuses_new_connections():
    with mock("--ttft-ms", 100, "--tokens-per-s", 10, "--output-tokens", 10, model="m-v1") as v1, \
            Gateway(route_yaml(v1)) as gw:
        payload = json.dumps(chat(stream=True)).encode()
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(payload), payload))
        text = s.recv(65536)
        assert b"200 OK" in text
        gw.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        while b"[DONE]" not in text:
            chunk = s.recv(65536)
            if not chunk:
                break
            text += chunk
        s.close()
        assert b"data: [DONE]" in text, text[-200:]
        assert refused
        assert gw.p.wait(10) == 0


def test_a_reload_a_second_sigterm_and_the_drain_deadline_during_a_drain_end_in_a_clean_exit():
    # two workers: the idle one leaves at once; waking it afterwards once aborted the process
    with mock("--ttft-ms", 50, "--tokens-per-s", 4, "--output-tokens", 20, model="m-v1") as v1, \
            Gateway("timeouts: { drain: 1500ms }\n" + route_yaml(v1), workers=2) as gw:
        payload = json.dumps(chat(stream=True)).encode()
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(payload), payload))
        assert b"200 OK" in s.recv(65536)
        t0 = time.time()
        gw.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        gw.send_signal(signal.SIGHUP)                    # a reload while draining
        time.sleep(0.3)
        assert gw.p.poll() is None, gw.output()          # the stream (5 s) is still going
        code = gw.p.wait(10)                             # the deadline (1.5 s) cuts it
        took = time.time() - t0
        rest = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        s.close()
        assert code == 0, (code, gw.output())
        assert "drain deadline passed" in gw.output()
        assert took < 4 and b"[DONE]" not in rest, (took, rest[-100:])   # cut, not waited for
    with mock("--ttft-ms", 50, "--tokens-per-s", 4, "--output-tokens", 20, model="m-v1") as v1, \
            Gateway(route_yaml(v1), workers=2) as gw:
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(payload), payload))
        assert b"200 OK" in s.recv(65536)
        gw.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        gw.send_signal(signal.SIGTERM)                   # a second one: stop now, cleanly
        code = gw.p.wait(10)
        s.close()
        assert code == 0, (code, gw.output())


class SlowStreamBackend:
    """Answers each request with a chunked stream of one event every 50 ms for 10 s, and notes
    when the gateway hangs up on it."""

    def __init__(self):
        import threading
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.hangups = []                      # seconds from first byte sent to noticing the close
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        import threading
        while not self.stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.stream, args=(conn,), daemon=True).start()

    def stream(self, conn):
        conn.recv(65536)
        t0 = time.monotonic()
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(200):
                event = b"data: {\"i\": %d}\n\n" % i
                conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                time.sleep(0.05)
        except OSError:
            self.hangups.append(time.monotonic() - t0)
        conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.listener.close()


def test_a_client_leaving_mid_stream_cancels_the_upstream_request():
    with SlowStreamBackend() as be, Gateway(route_yaml(be.port), workers=1) as gw:
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while got.count(b"data:") < 3:
            got += s.recv(65536)
        s.close()                                  # the user closed the tab
        deadline = time.monotonic() + 3
        while not be.hangups and time.monotonic() < deadline:
            time.sleep(0.02)
        assert be.hangups and be.hangups[0] < 1.5, be.hangups     # not streamed on for 10 s
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"data:" not in got:                 # the head and the first event may come apart
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        s.close()
        assert be.connections == 2                 # the cut connection was not reused


def test_expect_100_continue_gets_the_go_ahead_from_the_gateway():
    body = json.dumps(chat(user="patient")).encode()
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1)) as gw:
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=2)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        out = read_to_close(s)
        s.close()
        assert out.startswith(b"HTTP/1.1 200 OK") and b"x-mock-body-bytes: %d" % len(body) in out.lower()


def test_sigterm_lets_a_slow_reader_take_every_byte_of_an_answer_already_finished_upstream():
    # The backend's whole answer is in the gateway (finished upstream) while most of it still waits
    # for a client that reads slowly: a drain must let that client take every byte, not close it.
    blob = bytes(range(256)) * (3_000_000 // 256) + b"x" * (3_000_000 % 256)
    with CaptureBackend(answer=blob, content_type="application/octet-stream") as be, \
            Gateway(route_yaml(be.port), workers=1) as gw:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", gw.port))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")     # keep-alive: the gateway holds the connection
        got = s.recv(4096)
        time.sleep(0.5)                 # the backend's answer is complete in the gateway by now
        gw.send_signal(signal.SIGTERM)
        while True:
            time.sleep(0.002)
            chunk = s.recv(8192)
            if not chunk:
                break
            got += chunk
        s.close()
        head, _, body = got.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0], head[:100]
        assert len(body) == len(blob), (len(body), len(blob))
        assert body == blob
        assert gw.p.wait(10) == 0
