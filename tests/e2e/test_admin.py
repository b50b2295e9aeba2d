"""The admin API as an operator uses it: read routes, change a canary's weight at run time with
the bearer token, and keep that weight across reloads unless the file itself changes it."""
import signal
import time

from harness import Gateway, mock, request, route_yaml, chat

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")


def share(gw, users=400):
    canary = 0
    for i in range(users):
        r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i}, chat())
        canary += r.header("x-fledge-variant") == "canary"
    return canary / users


def variants(gw, users):
    return {u: request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": u}, chat()).header("x-fledge-variant")
            for u in users}


def put_weight(gw, weight, headers=AUTH):
    return request(gw.admin, "PUT", "/api/v1/routes/chat/weight", headers, {"weight": weight})


def test_without_a_token_the_admin_api_is_read_only():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, Gateway(route_yaml(v1, v2, weight=20)) as gw:
        r = request(gw.admin, "GET", "/api/v1/routes/chat")
        assert r.status == 200 and r.json()["canary_weight"] == 20 and r.json()["canary"]["version"] == "v2"
        r = put_weight(gw, 50)
        assert r.status == 403 and "token_env" in r.json()["error"]["message"]
        assert request(gw.admin, "GET", "/api/v1/routes/chat").json()["canary_weight"] == 20


def test_a_weight_change_needs_the_right_bearer_token():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=20), **WITH_TOKEN) as gw:
        assert put_weight(gw, 50, headers={}).status == 401
        assert put_weight(gw, 50, headers={"authorization": "Bearer " + TOKEN[:-1] + "X"}).status == 401
        assert put_weight(gw, 50, headers={"authorization": TOKEN}).status == 401
        assert request(gw.admin, "GET", "/api/v1/routes/chat").json()["canary_weight"] == 20
        r = put_weight(gw, 50)
        assert r.status == 200 and r.json()["canary_weight"] == 50


def test_the_new_weight_applies_at_once_and_only_moves_users_towards_the_canary():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=10), **WITH_TOKEN) as gw:
        users = ["u%d" % i for i in range(400)]
        before = variants(gw, users)
        assert put_weight(gw, 35.5).status == 200
        after = variants(gw, users)
        assert not [u for u in users if before[u] == "canary" and after[u] != "canary"]
        assert 0.29 < sum(v == "canary" for v in after.values()) / len(users) < 0.42
        assert put_weight(gw, 0).status == 200
        assert share(gw, 100) == 0
        assert put_weight(gw, 100).status == 200
        assert share(gw, 100) == 1
        metrics = request(gw.admin, "GET", "/metrics").body.decode()
        assert 'fledge_canary_weight{route="chat"} 100' in metrics


def test_bad_requests_are_refused_with_a_reason():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        yaml = route_yaml(v1, v2, weight=10) + ("  - name: solo\n    match: { path_prefix: /solo/ }\n"
                                                  "    stable: { version: v1, backends: [127.0.0.1:%d] }\n" % v1.port)
        with Gateway(yaml, **WITH_TOKEN) as gw:
            for bad in (150, -1, 12.345, "ten", None):
                r = put_weight(gw, bad)
                assert r.status == 400 and "weight" in r.json()["error"]["message"], (bad, r.body)
            r = request(gw.admin, "PUT", "/api/v1/routes/solo/weight", AUTH, {"weight": 5})
            assert r.status == 409
            r = request(gw.admin, "PUT", "/api/v1/routes/nope/weight", AUTH, {"weight": 5})
            assert r.status == 404
            assert request(gw.admin, "DELETE", "/api/v1/routes/chat", AUTH).status == 405
            for method, path, status in (("POST", "/metrics", 405), ("DELETE", "/api/v1/routes", 405),
                                         ("GET", "/api/v1/routes/chat/foo", 404), ("GET", "/nothing/here", 404),
                                         ("GET", "/api/v1/events?limit=abc", 400), ("GET", "/api/v1/events?after=-3", 400)):
                r = request(gw.admin, method, path, AUTH)
                assert r.status == status and r.json()["error"]["message"], (method, path, r.status, r.body)
            import json as _json
            from harness import raw                                         # not UTF-8: still JSON
            answer = raw(gw.admin, b"GET /api/v1/routes/\xe9t\xe9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 404") and "no route named" in _json.loads(body)["error"]["message"], answer
            r = request(gw.admin, "PUT", "/api/v1/routes/chat/weight",
                        {"authorization": "bearer " + TOKEN}, {"weight": 5})      # the scheme's case is free
            assert r.status == 200, r.body


def test_the_admin_api_lets_go_of_silent_clients_and_caps_its_connections():
    import socket
    with mock(model="m-v1") as v1, Gateway("timeouts: { header: 1s }\n" + route_yaml(v1)) as gw:
        half = socket.create_connection(("127.0.0.1", gw.admin), timeout=5)
        half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")              # and then nothing
        idle = socket.create_connection(("127.0.0.1", gw.admin), timeout=5)
        answer = half.recv(4096)                                            # within a second or two
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert idle.recv(4096) == b""                                       # closed quietly
        half.close()
        idle.close()
        crowd = [socket.create_connection(("127.0.0.1", gw.admin), timeout=5) for _ in range(260)]
        try:
            crowd[-1].settimeout(2)
            assert crowd[-1].recv(10) == b""                                # over 256: closed at once
        finally:
            for c in crowd:
                c.close()
        deadline = time.time() + 3                                          # once the crowd is gone
        while True:
            try:
                assert request(gw.admin, "GET", "/health").status == 200
                break
            except ConnectionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)


def test_the_admin_api_refuses_what_the_gateway_refuses_as_smuggling_in_the_same_words():
    """The admin server (httpd.c) reads requests with the gateway's reader (h1.c): Content-Length
    with Transfer-Encoding, two lengths, a coding other than chunked, a chunk size over 64 bits or
    a space in a name get 400 Bad Request, saying why, and the connection closed."""
    from harness import raw
    with mock(model="m-v1") as v1, Gateway(route_yaml(v1), **WITH_TOKEN) as gw:
        cases = [(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  b"both Content-Length and Transfer-Encoding"),
                 (b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", b"more than one Content-Length"),
                 (b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", b"Transfer-Encoding other than chunked"),
                 (b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n", b"chunk size too large"),
                 (b"Content-Length : 0\r\n\r\n", b"invalid header name character")]
        for rest, words in cases:
            answer = raw(gw.admin, b"PUT /api/v1/routes/chat/weight HTTP/1.1\r\nHost: x\r\n"
                                   b"Authorization: Bearer " + TOKEN.encode() + b"\r\n" + rest)
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (rest, answer)
            assert answer.endswith(b"\r\n\r\nBad Request: " + words + b"\n"), (rest, answer)
        assert request(gw.admin, "GET", "/health").status == 200


def test_a_reload_keeps_a_weight_set_at_run_time_unless_the_file_changed_it():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=10), **WITH_TOKEN) as gw:
        assert put_weight(gw, 60).status == 200
        gw.reload(route_yaml(v1, v2, weight=10))          # the same file: the API's 60 stays
        assert request(gw.admin, "GET", "/api/v1/routes/chat").json()["canary_weight"] == 60
        gw.reload(route_yaml(v1, v2, weight=30))          # the file's weight changed: it wins
        assert request(gw.admin, "GET", "/api/v1/routes/chat").json()["canary_weight"] == 30
