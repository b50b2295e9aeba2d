"""The admin listener under a flood: requests that trickle in are cut after timeouts.header in
all (not only after a silence), one address holds at most 16 connections, and the last slots are
kept for the host's own tools, so /metrics and the API answer within a second whatever strangers
do."""
import socket
import time

from harness import Gateway, mock, request, route_yaml

QUICK_HEAD = "timeouts: { header: 3s }\n"


def connect_from(source_ip, port):
    s = socket.socket()
    s.bind((source_ip, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def still_open(s):
    """True when the gateway has neither closed nor answered the connection."""
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)                 # an answer or the close: not open any more
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def timed_get(port, path):
    t0 = time.monotonic()
    r = request(port, "GET", path, timeout=5)
    return r, time.monotonic() - t0


def test_a_request_trickling_in_gets_408_after_timeouts_header_in_all():
    with mock() as v1, Gateway(QUICK_HEAD + route_yaml(v1)) as gw:
        s = connect_from("127.0.0.2", gw.admin)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        t0, got = time.monotonic(), b""
        s.settimeout(0.2)
        while time.monotonic() - t0 < 8 and b"\r\n\r\n" not in got:
            try:
                s.sendall(b"x")                    # one byte a second: never silent for 3 s
            except OSError:
                break
            try:
                got += s.recv(4096)
            except socket.timeout:
                pass
            time.sleep(0.8)
        took = time.monotonic() - t0
        s.close()
        assert got.startswith(b"HTTP/1.1 408"), got
        assert took < 6, took


def test_one_address_holds_at_most_16_admin_connections():
    with mock() as v1, Gateway(QUICK_HEAD + route_yaml(v1)) as gw:
        conns = [connect_from("127.0.0.2", gw.admin) for _ in range(40)]
        for s in conns:
            s.sendall(b"G")
        time.sleep(0.5)
        open_ = sum(still_open(s) for s in conns)
        for s in conns:
            s.close()
        assert open_ == 16, open_


def test_a_flood_from_many_addresses_leaves_metrics_and_the_api_answering_within_a_second():
    with mock() as v1, Gateway(QUICK_HEAD + route_yaml(v1)) as gw:
        flood = []
        try:
            for i in range(300):                   # 300 strangers, each trickling a request
                s = connect_from("127.0.%d.%d" % (1 + i // 200, 1 + i % 200), gw.admin)
                s.sendall(b"G")
                flood.append(s)
            held, before, deadline = -1, -2, time.monotonic() + 5
            while held != before and time.monotonic() < deadline:   # until the gateway has sorted them
                time.sleep(0.3)
                before, held = held, sum(still_open(s) for s in flood)
            # the last 32 slots are the host's own; a slot or two may still be held by the harness's
            # readiness probe, not yet seen closed by a slow (sanitizer) build
            assert 256 - 32 - 2 <= held <= 256 - 32, held
            for path in ("/metrics", "/api/v1/routes", "/metrics"):
                r, took = timed_get(gw.admin, path)
                assert r.status == 200 and took < 1, (path, r.status, took)
            for s in flood:                         # the held ones go on trickling
                try:
                    s.sendall(b"E")
                except OSError:
                    pass
            r, took = timed_get(gw.admin, "/metrics")
            assert r.status == 200 and took < 1, took
        finally:
            for s in flood:
                s.close()
