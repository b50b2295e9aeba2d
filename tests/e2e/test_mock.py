"""`fledge mock` as the stand-in model server the other tests and the demo lean on: answers given
later (latency, streams) keep the connection alive like any other, and two mocks started without
--seed answer the same input with the same embedding, as two copies of one model would."""
import http.client
import json

from harness import mock


def test_an_answer_given_later_keeps_the_connection_for_the_next_request():
    with mock("--latency-ms", 30) as m:
        conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=5)
        for i in range(3):
            conn.request("POST", "/v1/chat/completions", body=json.dumps(
                {"model": "m", "messages": [{"role": "user", "content": "hi %d" % i}]}),
                headers={"content-type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["choices"], i
        conn.close()


def test_two_mocks_without_a_seed_give_one_input_the_same_embedding():
    def embed(m):
        conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=5)
        conn.request("POST", "/v1/embeddings", body=json.dumps({"model": "m", "input": "hello"}),
                     headers={"content-type": "application/json"})
        body = json.loads(conn.getresponse().read())
        conn.close()
        return body["data"][0]["embedding"]
    with mock() as a, mock() as b, mock("--seed", 7) as c:
        assert embed(a) == embed(b)
        assert embed(a) != embed(c)
